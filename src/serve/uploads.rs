//! Blob uploads: sessions (`POST`, chunked `PATCH` with `Content-Range`,
//! `GET` of the session's `Range`, `PUT ?digest=` to finish, `DELETE`), a
//! monolithic `POST ?digest=`, and cross-repository `mount`.
//!
//! A session is a [`BlobWriter`] whose temp file lives in `tmp/uploads/`
//! (kept by gc until its grace period is over, ignored by fsck), hashed as
//! the bytes arrive; between requests it waits in memory with its hashing
//! state. A request that writes to it takes it out (a [`Lease`]) and puts
//! it back when its body was read whole. A body that breaks off (the
//! client went away), a chunk that is not what its `Content-Range` said,
//! or a failed write drops the session with its file: a client that drops
//! mid-upload leaves nothing behind, and resumes only from what a `GET` of
//! the session reports.
//!
//! A finished upload whose digest matched waits, staged, in `tmp/uploads/`
//! until the manifest that names it is pushed ([`super::push`]), and is
//! visible to `HEAD` and `mount` meanwhile. Sessions and finished uploads
//! idle longer than the upload timeout are dropped with their files; every
//! use of a finished one counts as activity, and touches its file so that
//! gc's grace counts from then too.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};

use super::State;
use super::blobs;
use super::body::Body;
use super::range;
use super::reply::{self, ApiError, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID};
use super::route::{Query, check_name, parse_digest};
use crate::blobs::{BlobWriter, StagedBlob};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::remote::registry::errors::ErrorCode;
use crate::store::Store;

/// Most upload sessions open at once; more are refused with `429`.
const MAX_SESSIONS: usize = 256;

/// Bytes of a request body gathered before they are written.
const BATCH_BYTES: usize = 256 << 10;

/// The sessions and finished uploads of one server.
pub(super) struct Uploads {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    finished: Mutex<HashMap<Digest, Finished>>,
}

struct Session {
    repository: String,
    algorithm: Algorithm,
    /// `None` while a request writes to it.
    writer: Option<BlobWriter>,
    size: u64,
    touched: Instant,
}

struct Finished {
    blob: StagedBlob,
    touched: Instant,
}

/// What the expiry takes out, to be dropped (files removed) off the
/// runtime's threads.
pub(super) struct Expired {
    _writers: Vec<BlobWriter>,
    _blobs: Vec<StagedBlob>,
}

impl Expired {
    fn is_empty(&self) -> bool {
        self._writers.is_empty() && self._blobs.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Uploads {
    pub(super) fn open(store: &Store) -> Result<Uploads, Error> {
        Ok(Uploads {
            dir: store.tree.kept_dir("uploads")?,
            sessions: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
        })
    }

    /// A writer for a new blob in `tmp/uploads/`.
    fn writer(&self, store: &Store, algorithm: Algorithm) -> Result<BlobWriter, ApiError> {
        Ok(store.tree.writer_in("uploads", algorithm)?)
    }

    /// Opens a session for `repository`; returns its id.
    fn create(
        &self,
        store: &Store,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<String, ApiError> {
        if lock(&self.sessions).len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                format!("{MAX_SESSIONS} uploads are open already; finish or cancel one"),
            )
            .header(header::RETRY_AFTER, "10"));
        }
        let writer = self.writer(store, algorithm)?;
        let id = session_id();
        lock(&self.sessions).insert(
            id.clone(),
            Session {
                repository: repository.to_string(),
                algorithm,
                writer: Some(writer),
                size: 0,
                touched: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Takes a session's writer out for one request.
    fn checkout(&self, id: &str, repository: &str) -> Result<(Lease<'_>, BlobWriter), ApiError> {
        let mut sessions = lock(&self.sessions);
        let session = sessions
            .get_mut(id)
            .filter(|s| s.repository == repository)
            .ok_or_else(|| upload_unknown(id))?;
        let writer = session.writer.take().ok_or_else(|| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("upload {id} is busy with another request"),
            )
            .status(StatusCode::CONFLICT)
        })?;
        session.touched = Instant::now();
        Ok((
            Lease {
                uploads: self,
                id: id.to_string(),
                algorithm: session.algorithm,
                done: false,
            },
            writer,
        ))
    }

    /// The bytes a session holds.
    fn size(&self, id: &str, repository: &str) -> Result<u64, ApiError> {
        let mut sessions = lock(&self.sessions);
        let session = sessions
            .get_mut(id)
            .filter(|s| s.repository == repository)
            .ok_or_else(|| upload_unknown(id))?;
        session.touched = Instant::now();
        Ok(session.size)
    }

    /// Drops a session (a request writing to it loses its writer when it
    /// ends).
    fn cancel(&self, id: &str, repository: &str) -> Result<Option<BlobWriter>, ApiError> {
        let mut sessions = lock(&self.sessions);
        if sessions.get(id).is_none_or(|s| s.repository != repository) {
            return Err(upload_unknown(id));
        }
        Ok(sessions.remove(id).and_then(|s| s.writer))
    }

    /// Keeps a finished upload for the manifest to come, unless the store
    /// or another upload has it already (then it is dropped).
    fn add_finished(&self, blob: StagedBlob, stored: bool) -> Option<StagedBlob> {
        let mut finished = lock(&self.finished);
        if stored || finished.contains_key(&blob.digest) {
            return Some(blob);
        }
        finished.insert(
            blob.digest.clone(),
            Finished {
                blob,
                touched: Instant::now(),
            },
        );
        None
    }

    /// The size of a finished upload, which counts as a use of it.
    pub(super) fn finished_size(&self, digest: &Digest) -> Option<u64> {
        let mut finished = lock(&self.finished);
        let entry = finished.get_mut(digest)?;
        entry.touched = Instant::now();
        touch(&entry.blob);
        Some(entry.blob.size)
    }

    /// A finished upload's file, to serve it.
    pub(super) fn open_finished(&self, digest: &Digest) -> Option<(File, u64)> {
        let mut finished = lock(&self.finished);
        let entry = finished.get_mut(digest)?;
        entry.touched = Instant::now();
        touch(&entry.blob);
        let file = File::open(entry.blob.temp_path()).ok()?;
        Some((file, entry.blob.size))
    }

    /// Takes a finished upload out, for a manifest that names it.
    pub(super) fn take_finished(&self, digest: &Digest) -> Option<StagedBlob> {
        lock(&self.finished).remove(digest).map(|f| f.blob)
    }

    /// Puts finished uploads back, after a manifest that took them failed.
    pub(super) fn give_back(&self, blobs: impl IntoIterator<Item = StagedBlob>) {
        let mut finished = lock(&self.finished);
        for blob in blobs {
            finished.entry(blob.digest.clone()).or_insert(Finished {
                blob,
                touched: Instant::now(),
            });
        }
    }

    /// Takes out what has been idle for `timeout`.
    pub(super) fn expire(&self, timeout: Duration) -> Expired {
        let now = Instant::now();
        let old = |touched: Instant| now.duration_since(touched) >= timeout;
        let mut writers = Vec::new();
        lock(&self.sessions).retain(|id, s| {
            // A session a request is writing to is not idle.
            if s.writer.is_some() && old(s.touched) {
                tracing::info!("upload {id} to {} expired after {timeout:?}", s.repository);
                writers.extend(s.writer.take());
                return false;
            }
            true
        });
        let mut blobs = Vec::new();
        let expired: Vec<Digest> = lock(&self.finished)
            .iter()
            .filter(|(_, f)| old(f.touched))
            .map(|(d, _)| d.clone())
            .collect();
        let mut finished = lock(&self.finished);
        for digest in expired {
            if let Some(f) = finished.remove(&digest) {
                tracing::info!(
                    "upload of {digest} expired: no manifest named it within {timeout:?}"
                );
                blobs.push(f.blob);
            }
        }
        Expired {
            _writers: writers,
            _blobs: blobs,
        }
    }

    /// Drops every session and finished upload, with their files.
    pub(super) fn clear(&self) {
        lock(&self.sessions).clear();
        lock(&self.finished).clear();
    }
}

/// Sets a finished upload's file time to now: gc's grace counts from its
/// last use, not from its upload.
fn touch(blob: &StagedBlob) {
    if let Err(e) = File::options()
        .write(true)
        .open(blob.temp_path())
        .and_then(|f| f.set_modified(SystemTime::now()))
    {
        tracing::debug!("cannot touch {}: {e}", blob.temp_path().display());
    }
}

/// A session's writer, taken out for one request. Dropped without being
/// returned (the request failed, or its connection went away), it drops
/// the session.
struct Lease<'a> {
    uploads: &'a Uploads,
    id: String,
    algorithm: Algorithm,
    done: bool,
}

impl Lease<'_> {
    /// Puts the writer back, for the next chunk.
    fn checkin(mut self, writer: BlobWriter) {
        self.done = true;
        let mut sessions = lock(&self.uploads.sessions);
        if let Some(session) = sessions.get_mut(&self.id) {
            session.size = writer.size();
            session.touched = Instant::now();
            session.writer = Some(writer);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.uploads.sessions).remove(&self.id);
        }
    }
}

/// 32 hex digits from the system's random source: a session id is all a
/// client needs to write to the session.
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom(2) writes at most the given length into the
        // buffer, which we own.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No random source: unique still, by time, pid and a counter.
            let seed = format!(
                "{:?}-{}-{:?}",
                SystemTime::now(),
                std::process::id(),
                std::thread::current().id()
            );
            let d = Digest::of(Algorithm::Sha256, seed.as_bytes());
            return d.hex()[..32].to_string();
        }
    }
    hex::encode(bytes)
}

fn upload_unknown(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUploadUnknown,
        format!("upload {id} is unknown: it never existed, finished, failed or expired"),
    )
}

fn location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `202` for a session holding `size` bytes.
fn accepted(name: &str, id: &str, size: u64, status: StatusCode) -> Response<Body> {
    reply::response(status)
        .header(header::LOCATION, location(name, id))
        .header(header::RANGE, range::session_range(size))
        .header(DOCKER_UPLOAD_UUID, id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::Empty)
        .expect("a valid response")
}

/// `201` for a blob the registry now has.
fn created(name: &str, digest: &Digest) -> Response<Body> {
    reply::response(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::Empty)
        .expect("a valid response")
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload, or a new
/// session.
pub(super) async fn start(
    state: &Arc<State>,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = query.get("from") {
            check_name(from)?;
        }
        let found = {
            let (state, digest) = (state.clone(), digest.clone());
            reply::blocking(move || blobs::exists(&state, &digest)).await?
        };
        if found.is_some() {
            return Ok(created(name, &digest));
        }
        // Not here: the spec's answer is a new session, as if no mount had
        // been asked for.
    }
    if let Some(digest) = query.get("digest") {
        let digest = parse_digest(digest)?;
        let writer = {
            let (state, alg) = (state.clone(), digest.algorithm());
            reply::blocking(move || state.uploads.writer(&state.store, alg)).await?
        };
        let (writer, _) = pump(state, req.into_body(), writer).await?;
        return complete(state, name, writer, digest).await;
    }
    let id = {
        let (state, name) = (state.clone(), name.to_string());
        reply::blocking(move || state.uploads.create(&state.store, &name, Algorithm::Sha256))
            .await?
    };
    Ok(accepted(name, &id, 0, StatusCode::ACCEPTED))
}

/// `GET` of a session: how much it holds.
pub(super) async fn status(
    state: &Arc<State>,
    name: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let size = state.uploads.size(id, name)?;
    Ok(accepted(name, id, size, StatusCode::NO_CONTENT))
}

/// `PATCH`: one more chunk.
pub(super) async fn patch(
    state: &Arc<State>,
    name: &str,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (lease, writer) = state.uploads.checkout(id, name)?;
    let (lease, writer) = take_chunk(state, lease, writer, req).await?;
    let size = writer.size();
    lease.checkin(writer);
    Ok(accepted(name, id, size, StatusCode::ACCEPTED))
}

/// `PUT ?digest=`: the last chunk (maybe none), and the digest to check.
pub(super) async fn finish(
    state: &Arc<State>,
    name: &str,
    id: &str,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(query.get("digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "finishing an upload takes the blob's digest: PUT …?digest=<algorithm>:<hex>",
        )
    })?)?;
    let (lease, mut writer) = state.uploads.checkout(id, name)?;
    if digest.algorithm() != lease.algorithm {
        if writer.size() > 0 {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!(
                    "upload {id} was hashed with {} as it came; it cannot be checked against {digest}",
                    lease.algorithm
                ),
            ));
        }
        // Nothing written yet: start again with the algorithm asked for.
        let (state, alg) = (state.clone(), digest.algorithm());
        writer = reply::blocking(move || {
            drop(writer);
            state.uploads.writer(&state.store, alg)
        })
        .await?;
    }
    let (lease, writer) = take_chunk(state, lease, writer, req).await?;
    // The session ends here, whatever the digest says.
    drop(lease);
    complete(state, name, writer, digest).await
}

/// `DELETE` of a session.
pub(super) async fn cancel(
    state: &Arc<State>,
    name: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    if let Some(writer) = state.uploads.cancel(id, name)? {
        reply::blocking(move || {
            drop(writer);
            Ok(())
        })
        .await?;
    }
    Ok(reply::response(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .expect("a valid response"))
}

/// Hashes out a finished upload and keeps it if its digest is `digest`.
async fn complete(
    state: &Arc<State>,
    name: &str,
    writer: BlobWriter,
    digest: Digest,
) -> Result<Response<Body>, ApiError> {
    let state2 = state.clone();
    let expected = digest.clone();
    reply::blocking(move || {
        let staged = writer.finish()?;
        if staged.digest != expected {
            // Dropped here: its temp file goes with it.
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!(
                    "the upload's content hashes to {}, not to the digest {expected} given",
                    staged.digest
                ),
            )
            .detail(serde_json::json!({
                "expected": expected.to_string(),
                "found": staged.digest.to_string(),
            })));
        }
        let stored =
            state2.store.index.has_blob(&expected)? && state2.store.tree.contains(&expected);
        drop(state2.uploads.add_finished(staged, stored));
        Ok(())
    })
    .await?;
    Ok(created(name, &digest))
}

/// Takes a request's body into a session as its next chunk: the
/// `Content-Range` is checked first (a refusal leaves the session as it
/// was), then the body streamed in and its length held to what the range
/// declared (a body that breaks off or differs ends the session).
async fn take_chunk<'a>(
    state: &State,
    lease: Lease<'a>,
    writer: BlobWriter,
    req: Request<Incoming>,
) -> Result<(Lease<'a>, BlobWriter), ApiError> {
    let declared = match chunk_length(req.headers(), writer.size()) {
        Ok(declared) => declared,
        Err(e) => {
            lease.checkin(writer);
            return Err(e);
        }
    };
    let (writer, received) = pump(state, req.into_body(), writer).await?;
    check_chunk(declared, received)?;
    Ok((lease, writer))
}

/// The length a chunk's `Content-Range` declares, which must start where
/// the session ends (`416` with the session's `Range` otherwise).
fn chunk_length(headers: &HeaderMap, size: u64) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    let (start, end) = range::content_range(value).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range {value:?} is not <start>-<end>"),
        )
        .header(header::RANGE, range::session_range(size))
    })?;
    if start != size {
        return Err(ApiError::new(
            ErrorCode::RangeInvalid,
            format!("the chunk starts at byte {start}, but the upload holds {size} bytes"),
        )
        .header(header::RANGE, range::session_range(size)));
    }
    let len = end - start + 1;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if content_length.is_some_and(|n| n != len) {
        return Err(ApiError::new(
            ErrorCode::SizeInvalid,
            format!(
                "Content-Length says {} bytes, Content-Range {len}",
                content_length.unwrap_or_default()
            ),
        ));
    }
    Ok(Some(len))
}

/// A chunk that was not what its `Content-Range` said has been written
/// already: the session goes (its lease is dropped with the error).
fn check_chunk(declared: Option<u64>, received: u64) -> Result<(), ApiError> {
    match declared {
        Some(len) if len != received => Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!(
                "the chunk has {received} bytes but its Content-Range names {len}; the upload is dropped"
            ),
        )
        .status(StatusCode::BAD_REQUEST)),
        _ => Ok(()),
    }
}

/// A batch of body frames, written to the blob on the blocking pool while
/// the next batch comes in.
type Batch = Vec<Bytes>;

/// Writes a batch; returns the writer with the outcome.
fn write_batch(
    mut writer: BlobWriter,
    batch: Batch,
    dir: PathBuf,
) -> (BlobWriter, Result<(), Error>) {
    for bytes in &batch {
        if let Err(e) = std::io::Write::write_all(&mut writer, bytes) {
            return (writer, Err(Error::io("write upload in", &dir, e)));
        }
    }
    (writer, Ok(()))
}

/// Streams a request body into a writer; returns the writer and the bytes
/// it took. Frames are gathered into batches of [`BATCH_BYTES`], each
/// written on the blocking pool while the next one arrives: memory stays
/// at two batches, and a slow client holds no thread. If the body breaks
/// off, stalls, or the server stops, or a write fails, the writer is
/// dropped (its file with it).
async fn pump(
    state: &State,
    mut body: Incoming,
    writer: BlobWriter,
) -> Result<(BlobWriter, u64), ApiError> {
    let dir = state.uploads.dir.clone();
    let mut idle = Some(writer);
    let mut writing: Option<tokio::task::JoinHandle<(BlobWriter, Result<(), Error>)>> = None;
    let mut batch = Batch::new();
    let mut batched = 0usize;
    let mut received = 0u64;
    let mut stopping = state.stopping.clone();
    loop {
        let frame = tokio::select! {
            frame = super::next_frame(&mut body) => frame?,
            _ = super::stopped_signal(&mut stopping) => {
                return Err(ApiError::new(ErrorCode::Unavailable, "the registry is stopping"));
            }
        };
        let data = match frame {
            None => None,
            Some(Err(e)) => {
                return Err(ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("the upload's body broke off: {e}; the upload is dropped"),
                )
                .status(StatusCode::BAD_REQUEST));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Some(data),
                // Trailers carry nothing to store.
                Err(_) => continue,
            },
        };
        let end = data.is_none();
        if let Some(data) = data.filter(|d| !d.is_empty()) {
            received += data.len() as u64;
            batched += data.len();
            batch.push(data);
        }
        if batched < BATCH_BYTES && !end {
            continue;
        }
        if let Some(task) = writing.take() {
            let (writer, written) = task.await.map_err(writer_failed)?;
            written?;
            idle = Some(writer);
        }
        let writer = idle.take().expect("a writer between batches");
        let full = std::mem::take(&mut batch);
        batched = 0;
        let task = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || write_batch(writer, full, dir)
        });
        if end {
            let (writer, written) = task.await.map_err(writer_failed)?;
            written?;
            return Ok((writer, received));
        }
        writing = Some(task);
    }
}

fn writer_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("the upload's writer failed: {e}"))
}

/// Drops idle sessions and finished uploads now and then.
pub(super) async fn expire_periodically(state: Arc<State>) {
    let timeout = state.options.upload_timeout;
    let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let expired = state.uploads.expire(timeout);
        if !expired.is_empty() {
            tokio::task::spawn_blocking(move || drop(expired));
        }
    }
}
