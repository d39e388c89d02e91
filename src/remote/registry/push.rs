//! `push`: an OCI image, or a multi-platform set (an index and its
//! images), from the store to a registry.
//!
//! Order matters to a registry, which refuses a manifest naming what it
//! does not hold: blobs first, then each manifest, then the index that
//! lists them, each manifest with its bytes and media type as stored, so
//! that its digest is the image's key.
//!
//! A blob goes up the cheapest way there is, `--jobs` at a time:
//! 1. `HEAD`: the registry has it already; nothing to send.
//! 2. A cross-repository mount (`POST …/uploads/?mount=D&from=OTHER`), when
//!    the store knows the blob is in another repository of the same
//!    registry (it was pulled from there, or pushed there:
//!    [`crate::index`]'s blob sources). A registry that will not mount
//!    answers with an upload session instead, which is used as below.
//! 3. An upload: `POST` for a session, then one `PUT …?digest=D` streamed
//!    from the blob file (or, with `--chunk-size`, `PATCH` chunks first).
//!
//! Chunks are never smaller than the registry's `OCI-Chunk-Min-Length`
//! (distribution spec 1.1: a header of the `POST` answer that bounds the
//! chunks of a chunked upload, the last excepted; it does not forbid a
//! monolithic `PUT`). A registry, or a proxy before it, that refuses the
//! monolithic `PUT` (a body too large, a method it does not take) gets the
//! blob once more in chunks, in a new session: what regclient does;
//! containerd and containers/image only ever send one request body. The
//! refusals that chunks cannot mend (credentials, rate limits) are not
//! tried again.
//!
//! Every answer that names a digest (`Docker-Content-Digest`) must name
//! the one pushed.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use super::RegistryError;
use super::auth::AuthEnv;
use super::challenge::{Scope, ScopeSet};
use super::client::Session;
use super::media;
use super::paths::{resolve_location, upload_completion};
use super::reference::Reference;
use super::token::TokenCache;
use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::image::ImageFormat;
use crate::lock::LockMode;
use crate::oci::{self, ImageIndex, ImageManifest, Kind};
use crate::progress::Progress;
use crate::remote::http::{Body, Client, ClientOptions, Method, Op, Request, Response};
use crate::store::Store;

/// Settings of a push.
#[derive(Clone)]
#[non_exhaustive]
pub struct PushOptions {
    /// Plain HTTP for a registry that is not on loopback.
    pub plain_http: bool,
    /// Blobs sent at once.
    pub jobs: usize,
    /// Upload blobs in `PATCH` chunks of this many bytes (or the
    /// registry's `OCI-Chunk-Min-Length`, when larger) instead of one
    /// `PUT`, for registries or proxies that limit request sizes.
    pub chunk_size: Option<u64>,
    /// Where to report each blob (one task per blob).
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions {
            plain_http: false,
            jobs: super::pull::DEFAULT_JOBS,
            chunk_size: None,
            progress: None,
        }
    }
}

impl PushOptions {
    /// The defaults: HTTPS unless on loopback, monolithic uploads.
    pub fn new() -> PushOptions {
        PushOptions::default()
    }

    /// Use plain HTTP whatever the host.
    pub fn plain_http(mut self, plain: bool) -> PushOptions {
        self.plain_http = plain;
        self
    }

    /// Send this many blobs at once (at least one).
    pub fn jobs(mut self, jobs: usize) -> PushOptions {
        self.jobs = jobs;
        self
    }

    /// Upload in chunks of `bytes` (at least 1).
    pub fn chunk_size(mut self, bytes: u64) -> PushOptions {
        self.chunk_size = Some(bytes.max(1));
        self
    }

    /// Report each blob to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> PushOptions {
        self.progress = Some(progress);
        self
    }
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("plain_http", &self.plain_http)
            .field("jobs", &self.jobs)
            .field("chunk_size", &self.chunk_size)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Pushed {
    /// Where it went, normalised.
    pub reference: String,
    /// The image's key: the digest of the manifest (or index) pushed last.
    pub key: Digest,
    /// Blobs the registry had already.
    pub blobs_present: usize,
    /// Blobs the registry mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Manifests and indexes put.
    pub manifests: usize,
}

/// How one blob got there.
enum Outcome {
    Present,
    Mounted,
    Uploaded(u64),
}

/// A manifest or index to put, with its bytes as stored.
struct ManifestToPut {
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
}

/// The chunk size of an upload in chunks after a refused `PUT`, when the
/// registry names no larger minimum: regclient's, and no more than the
/// 1 MiB body nginx takes by default.
const FALLBACK_CHUNK: u64 = 1 << 20;

/// An upload session: where to send next, and the least chunk the
/// registry takes (`OCI-Chunk-Min-Length`; 0 when it named none).
struct Upload {
    location: String,
    min_chunk: u64,
}

/// A config or layer to send.
struct BlobToPush {
    digest: Digest,
    size: u64,
}

impl Store {
    /// Pushes an OCI image (or an index with its images) to `reference`
    /// (DESIGN.md §5). An ACI cannot go to an OCI registry: that is refused
    /// before any request.
    pub fn push(
        &self,
        image: &Digest,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Pushed, Error> {
        let reference = Reference::parse(reference).map_err(RegistryError::Reference)?;
        let info = self.image(image)?;
        if info.format != ImageFormat::Oci {
            return Err(Error::NotOci {
                key: image.clone(),
                operation: "pushed to a registry",
            });
        }
        if let Some(digest) = reference.digest()
            && digest != &info.key
        {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                key: info.key.clone(),
            }
            .into());
        }
        let _lock = self.lock(LockMode::Shared, true)?;
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        self.push_plan(
            &info.key,
            &info.manifest,
            &mut HashSet::new(),
            &mut manifests,
            &mut blobs,
        )?;

        let http = Client::new(ClientOptions::default());
        let tokens = TokenCache::new();
        let env = AuthEnv::from_process();
        let session = Session::for_reference(
            &http,
            &tokens,
            Op::Push,
            &reference,
            options.plain_http,
            &env,
        )?;
        let pusher = Pusher {
            store: self,
            session: &session,
            options,
        };
        let mut order: Vec<usize> = (0..blobs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(blobs[i].size));
        let results = crate::parallel::run(
            &blobs,
            order,
            options.jobs.max(1),
            || (),
            |_, blob| pusher.push_blob(blob),
        );
        let mut report = Pushed {
            reference: reference.to_string(),
            key: info.key.clone(),
            blobs_present: 0,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            manifests: 0,
        };
        for result in results.into_iter().flatten() {
            match result? {
                Outcome::Present => report.blobs_present += 1,
                Outcome::Mounted => report.blobs_mounted += 1,
                Outcome::Uploaded(bytes) => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += bytes;
                }
            }
        }
        let top = manifests.len() - 1;
        for (i, manifest) in manifests.iter().enumerate() {
            // The last is the image itself: under the tag, if there is one.
            let name = if i == top && reference.digest().is_none() {
                reference.tag_or_latest().to_string()
            } else {
                manifest.digest.to_string()
            };
            pusher.put_manifest(manifest, &name)?;
            report.manifests += 1;
        }
        let pushed: Vec<Digest> = blobs
            .iter()
            .map(|b| b.digest.clone())
            .chain(manifests.iter().map(|m| m.digest.clone()))
            .collect();
        if let Err(e) =
            self.index
                .record_blob_sources(session.registry(), session.repository(), &pushed)
        {
            tracing::debug!("cannot record that {reference} holds what was pushed: {e}");
        }
        self.index.touch(&info.key)?;
        Ok(report)
    }

    /// The manifests of an image (children before the index that lists
    /// them) and the blobs they name, each once. Everything must be in the
    /// store: a registry refuses a manifest that names a blob it lacks.
    fn push_plan(
        &self,
        key: &Digest,
        manifest: &Digest,
        seen: &mut HashSet<Digest>,
        manifests: &mut Vec<ManifestToPut>,
        blobs: &mut Vec<BlobToPush>,
    ) -> Result<(), Error> {
        if !seen.insert(manifest.clone()) {
            return Ok(());
        }
        let incomplete = |blob: &Digest| Error::IncompleteImage {
            key: key.clone(),
            blob: blob.clone(),
        };
        let Some(row) = self.index.blob(manifest)? else {
            return Err(incomplete(manifest));
        };
        if !self.tree.contains(manifest) {
            return Err(incomplete(manifest));
        }
        let bytes = self.read_small(manifest)?;
        let media_type = row
            .media_type
            .filter(|m| !m.is_empty())
            .or_else(|| {
                oci::kind_by_shape(&bytes).map(|k| match k {
                    Kind::Index => oci::OCI_INDEX.to_string(),
                    Kind::Manifest => oci::OCI_MANIFEST.to_string(),
                })
            })
            .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
        let bad = |what: &str, e: serde_json::Error| {
            Error::Internal(format!("stored {what} {manifest} cannot be read: {e}"))
        };
        match oci::kind_of(&media::essence(&media_type)).or_else(|| oci::kind_by_shape(&bytes)) {
            Some(Kind::Index) => {
                let index: ImageIndex =
                    serde_json::from_slice(&bytes).map_err(|e| bad("index", e))?;
                for child in &index.manifests {
                    let Ok(digest) = Digest::parse(&child.digest) else {
                        continue;
                    };
                    // What an import kept of an index: its manifests and
                    // indexes. Anything else it lists was left out, and the
                    // registry must have it already.
                    if self.index.has_blob(&digest)? {
                        self.push_plan(key, &digest, seen, manifests, blobs)?;
                    } else if oci::kind_of(&child.media_type).is_some() {
                        return Err(incomplete(&digest));
                    }
                }
            }
            Some(Kind::Manifest) => {
                let parsed: ImageManifest =
                    serde_json::from_slice(&bytes).map_err(|e| bad("manifest", e))?;
                for desc in std::iter::once(&parsed.config).chain(&parsed.layers) {
                    // Foreign layers live at their own URLs, not in registries.
                    if media::is_nondistributable(&desc.media_type) {
                        continue;
                    }
                    let digest = Digest::parse(&desc.digest)
                        .map_err(|e| Error::Internal(format!("stored manifest {manifest}: {e}")))?;
                    if !seen.insert(digest.clone()) {
                        continue;
                    }
                    if !(self.index.has_blob(&digest)? && self.tree.contains(&digest)) {
                        return Err(incomplete(&digest));
                    }
                    blobs.push(BlobToPush {
                        digest,
                        size: desc.size,
                    });
                }
            }
            None => {}
        }
        manifests.push(ManifestToPut {
            digest: manifest.clone(),
            media_type,
            bytes,
        });
        Ok(())
    }

    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.tree.path(digest);
        let mut bytes = Vec::new();
        self.tree
            .read(digest)?
            .take(oci::MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .ctx("read blob", &path)?;
        Ok(bytes)
    }
}

struct Pusher<'a> {
    store: &'a Store,
    session: &'a Session<'a>,
    options: &'a PushOptions,
}

impl Pusher<'_> {
    fn scopes(&self) -> ScopeSet {
        self.session.scopes(&["pull", "push"])
    }

    fn push_blob(&self, blob: &BlobToPush) -> Result<Outcome, Error> {
        let mut task = self
            .options
            .progress
            .as_ref()
            .map(|p| p.begin(&blob.digest.short(), Some(blob.size)));
        let outcome = self.send_blob(blob)?;
        if let Some(task) = task.as_mut() {
            task.advance(blob.size);
        }
        if let Some(task) = task {
            task.finish();
        }
        Ok(outcome)
    }

    fn send_blob(&self, blob: &BlobToPush) -> Result<Outcome, Error> {
        let session = self.session;
        let base = session.base();
        let repository = session.repository();
        let scopes = self.scopes();
        let url = base.blob(repository, &blob.digest);
        let head = session.send(Request::head(Op::Push, &url), &scopes)?;
        match head.status() {
            200..=299 => return Ok(Outcome::Present),
            404 => {}
            _ => return Err(session.refused(&url, head)),
        }
        let from = self
            .store
            .index
            .blob_source(&blob.digest, session.registry(), repository)?;
        let mut upload = None;
        if let Some(from) = from {
            let mount = base.mount(repository, &blob.digest, &from);
            let scopes = scopes.clone().with(Scope::repository(&from, &["pull"]));
            let answer = session.send(Request::new(Op::Push, Method::Post, &mount), &scopes)?;
            match answer.status() {
                201 => {
                    self.check_digest(&mount, &answer, &blob.digest)?;
                    return Ok(Outcome::Mounted);
                }
                // Not mounted: the answer opened an upload session.
                202 => upload = Some(self.upload(&mount, &answer)?),
                // A registry that cannot mount at all (or not from there):
                // upload as if it had not been asked.
                _ => tracing::debug!("{mount}: {}; uploading instead", answer.status()),
            }
        }
        let upload = match upload {
            Some(u) => u,
            None => self.open_upload()?,
        };
        if let Some(chunk) = self.options.chunk_size {
            self.upload_chunked(upload, blob, chunk)?;
            return Ok(Outcome::Uploaded(blob.size));
        }
        let put = upload_completion(&upload.location, &blob.digest);
        let answer = session.send(
            Request::new(Op::Push, Method::Put, &put)
                .header("content-type", "application/octet-stream")
                .body(Body::File {
                    path: self.store.tree.path(&blob.digest),
                    offset: 0,
                    len: blob.size,
                }),
            &scopes,
        )?;
        if answer.is_success() {
            self.check_digest(&put, &answer, &blob.digest)?;
        } else if chunks_may_do(answer.status()) {
            // That session is left to expire: a registry's DELETE of it
            // wants a scope this push did not ask for.
            tracing::debug!(
                "{put}: {} to one PUT; uploading in chunks instead",
                answer.status()
            );
            let upload = self.open_upload()?;
            let chunk = upload.min_chunk.max(FALLBACK_CHUNK);
            self.upload_chunked(upload, blob, chunk)?;
        } else {
            return Err(session.refused(&put, answer));
        }
        Ok(Outcome::Uploaded(blob.size))
    }

    /// `POST` for a new upload session.
    fn open_upload(&self) -> Result<Upload, Error> {
        let uploads = self.session.base().uploads(self.session.repository());
        let answer = self.session.send(
            Request::new(Op::Push, Method::Post, &uploads),
            &self.scopes(),
        )?;
        if answer.status() != 202 {
            return Err(self.session.refused(&uploads, answer));
        }
        self.upload(&uploads, &answer)
    }

    /// The upload session a `202` to a `POST` opened.
    fn upload(&self, url: &str, answer: &Response) -> Result<Upload, Error> {
        Ok(Upload {
            location: self.location(url, answer)?,
            min_chunk: min_chunk(url, answer),
        })
    }

    /// Sends the blob in `PATCH` chunks of `chunk` bytes (or the session's
    /// minimum, when larger), then closes the session with an empty `PUT`.
    fn upload_chunked(&self, upload: Upload, blob: &BlobToPush, chunk: u64) -> Result<(), Error> {
        let chunk = chunk.max(upload.min_chunk).max(1);
        let location = self.patch_chunks(upload.location, blob, chunk)?;
        let put = upload_completion(&location, &blob.digest);
        let answer = self.session.send(
            Request::new(Op::Push, Method::Put, &put)
                .header("content-type", "application/octet-stream")
                .body(Body::Empty),
            &self.scopes(),
        )?;
        if !answer.is_success() {
            return Err(self.session.refused(&put, answer));
        }
        self.check_digest(&put, &answer, &blob.digest)
    }

    /// Sends the blob in `PATCH` chunks; returns the location to finish at.
    fn patch_chunks(
        &self,
        mut location: String,
        blob: &BlobToPush,
        chunk: u64,
    ) -> Result<String, Error> {
        let scopes = self.scopes();
        let mut offset = 0;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            let answer = self.session.send(
                Request::new(Op::Push, Method::Patch, &location)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{offset}-{}", offset + len - 1))
                    .body(Body::File {
                        path: self.store.tree.path(&blob.digest),
                        offset,
                        len,
                    }),
                &scopes,
            )?;
            if answer.status() != 202 {
                return Err(self.session.refused(&location, answer));
            }
            location = self.location(&location, &answer)?;
            offset += len;
        }
        Ok(location)
    }

    fn put_manifest(&self, manifest: &ManifestToPut, name: &str) -> Result<(), Error> {
        let url = self
            .session
            .base()
            .manifest(self.session.repository(), name);
        let answer = self.session.send(
            Request::new(Op::Push, Method::Put, &url)
                .header("content-type", manifest.media_type.as_str())
                .body(Body::Bytes(manifest.bytes.clone())),
            &self.scopes(),
        )?;
        if !answer.is_success() {
            return Err(self.session.refused(&url, answer));
        }
        self.check_digest(&url, &answer, &manifest.digest)
    }

    /// An upload session's location, resolved against the URL it answered.
    fn location(&self, url: &str, answer: &Response) -> Result<String, Error> {
        let location = answer
            .header("location")
            .ok_or_else(|| RegistryError::NoLocation {
                url: url.to_string(),
                status: answer.status(),
            })?;
        Ok(
            resolve_location(url, location).map_err(|source| RegistryError::Location {
                url: url.to_string(),
                source,
            })?,
        )
    }

    /// The digest the registry answered, when it said one, must be ours.
    fn check_digest(&self, url: &str, answer: &Response, expected: &Digest) -> Result<(), Error> {
        let Some(value) = answer.header("docker-content-digest") else {
            return Ok(());
        };
        let found = Digest::parse(value.trim()).map_err(|_| RegistryError::BadDigestHeader {
            op: Op::Push,
            url: url.to_string(),
            value: value.to_string(),
        })?;
        if &found != expected {
            return Err(RegistryError::PushDigest {
                url: url.to_string(),
                expected: expected.clone(),
                found,
            }
            .into());
        }
        Ok(())
    }
}

/// Whether an upload in chunks may succeed where one `PUT` was refused
/// with `status`: not when the refusal is of the credentials or a rate
/// limit, which chunks would meet again.
fn chunks_may_do(status: u16) -> bool {
    (400..=599).contains(&status) && !matches!(status, 401 | 403 | 429)
}

/// The `OCI-Chunk-Min-Length` of an answer opening an upload session; 0
/// when there is none, or it is not a number (it is a hint: a push does
/// not fail for it).
fn min_chunk(url: &str, answer: &Response) -> u64 {
    let Some(value) = answer.header("oci-chunk-min-length") else {
        return 0;
    };
    value.trim().parse().unwrap_or_else(|_| {
        tracing::debug!("{url}: OCI-Chunk-Min-Length {value:?} is not a size; ignored");
        0
    })
}
