//! A `GET` of one body into a [`DownloadSink`], the way fetch and pull
//! need it: conditional (`If-None-Match` → `304`, no body), resumable, and
//! bounded in memory (the body moves in chunks of at most [`CHUNK`] bytes).
//!
//! Resume follows one rule, after containers/image: bytes are appended to
//! what the sink holds only when the server answers `206` with a
//! `Content-Range` that starts exactly at the sink's length (and whose total,
//! when known, is the one seen before). A `200` means the server sends the
//! whole body again: the sink restarts and takes it from byte 0. Anything
//! else is never spliced: the sink restarts and the next attempt asks for
//! the whole body. The request carries `Range: bytes=N-` and, unless the
//! content is [`immutable`](DownloadOptions::immutable) (named by the digest
//! it is checked against afterwards), `If-Range` with the strong ETag or the
//! Last-Modified of the bytes already held; a weak ETag cannot be used for
//! that, so such a body starts over instead.
//!
//! A body that breaks (an I/O error, or it ends short of its length) is
//! resumed this way within the same call, a bounded number of times.

use std::io::{self, Read};

use super::error::{RemoteError, RemoteErrorKind};
use super::headers::{Headers, cache_max_age, content_range, is_weak_etag};
use super::{Client, Op, Request, Response, host_of};
use crate::ProgressTask;
pub(crate) use crate::blobs::FillError;

/// The most bytes held in memory at once by a download.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Where a download's bytes go: typically a staging file that hashes as it
/// writes.
pub(crate) trait DownloadSink {
    /// Appends the next bytes of the body.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reads the next bytes of the body from `body`, at most `max` of them,
    /// and appends them; returns how many (0: the body ended). By default
    /// they pass through `scratch` (at least `max` long) to
    /// [`append`](Self::append); a sink with buffers of its own reads into
    /// them, saving the copy.
    fn append_from(
        &mut self,
        body: &mut dyn Read,
        max: usize,
        scratch: &mut [u8],
    ) -> Result<usize, FillError> {
        let n = body.read(&mut scratch[..max]).map_err(FillError::Read)?;
        self.append(&scratch[..n]).map_err(FillError::Write)?;
        Ok(n)
    }
    /// Forgets every byte appended: the body starts over from byte 0.
    fn restart(&mut self) -> io::Result<()>;
    /// How many bytes the sink holds.
    fn len(&self) -> u64;
    /// A response's body is about to be appended at byte `self.len()`.
    /// `validator` is what a later download may pass as
    /// [`resume_validator`](DownloadOptions::resume_validator) to continue
    /// from what the sink then holds (`None`: it cannot be, unless the
    /// content is immutable); `total` is the whole body's size, when known.
    /// Called once per response, before its first byte: a sink that keeps
    /// partial downloads across runs records these with them.
    fn begin(&mut self, validator: Option<&str>, total: Option<u64>) -> io::Result<()> {
        let _ = (validator, total);
        Ok(())
    }
}

impl DownloadSink for Vec<u8> {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }

    fn len(&self) -> u64 {
        Vec::len(self) as u64
    }
}

/// How to download.
#[derive(Debug, Clone)]
pub(crate) struct DownloadOptions {
    pub(crate) op: Op,
    /// Extra request headers (`Accept` for a manifest, say).
    pub(crate) headers: Headers,
    /// An `Authorization` value, sent only to the URL's origin.
    pub(crate) credentials: Option<String>,
    /// The ETag of the copy the caller has: sent as `If-None-Match` (when
    /// the sink is empty), so that an unchanged body comes back as
    /// `not_modified` without a byte of it.
    pub(crate) if_none_match: Option<String>,
    /// The validator (ETag or Last-Modified) of the bytes the sink already
    /// holds, from an earlier, interrupted download: they are resumed from.
    /// Without one (or with a weak ETag) a non-empty sink starts over,
    /// unless the content is `immutable`.
    pub(crate) resume_validator: Option<String>,
    /// The content is named by a digest it will be checked against (a
    /// registry blob): resuming needs no validator.
    pub(crate) immutable: bool,
    /// The size the caller knows the body must have (a descriptor's): a
    /// server announcing another is refused at once, and no more than this
    /// is read.
    pub(crate) expected_size: Option<u64>,
}

impl DownloadOptions {
    pub(crate) fn new(op: Op) -> DownloadOptions {
        DownloadOptions {
            op,
            headers: Headers::new(),
            credentials: None,
            if_none_match: None,
            resume_validator: None,
            immutable: false,
            expected_size: None,
        }
    }
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Download {
    /// The URL that answered, after redirects.
    pub(crate) url: String,
    /// The last response's status: 200, 206 (resumed) or 304.
    pub(crate) status: u16,
    /// `304`: the caller's copy is current and the sink was not touched.
    pub(crate) not_modified: bool,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// Freshness from `Cache-Control`, in seconds (`no-cache`/`no-store`
    /// count as 0); `None` when it says nothing.
    pub(crate) max_age: Option<u64>,
    /// The whole body's size, when the server said (Content-Length of a
    /// `200`, the total of a `206`'s Content-Range).
    pub(crate) size: Option<u64>,
    pub(crate) docker_content_digest: Option<String>,
    pub(crate) content_type: Option<String>,
    /// Body bytes that came over the network in this call, across every
    /// attempt (a resume moves only the missing ones).
    pub(crate) bytes_transferred: u64,
    /// Every header of the last response.
    pub(crate) headers: Headers,
}

/// How a body transfer ended, when it did not complete.
enum Broke {
    /// The connection broke or the body ended early: try again.
    Retry(RemoteErrorKind),
    /// The sink failed, or the server sent too much: stop.
    Fatal(RemoteErrorKind),
}

impl Client {
    /// Downloads `url` into `sink` (see the module header for the rules).
    /// On success the sink holds the whole body, or is untouched when the
    /// answer is `not_modified`. On failure it holds what arrived, which a
    /// later call may resume from.
    pub(crate) fn download(
        &self,
        url: &str,
        opts: &DownloadOptions,
        sink: &mut dyn DownloadSink,
        mut progress: Option<&mut dyn ProgressTask>,
    ) -> Result<Download, RemoteError> {
        let fail = |kind| RemoteError::new(opts.op, url, kind);
        let sink_error = |source| fail(RemoteErrorKind::Sink { source });
        // What If-Range carries: the validator of the bytes in the sink.
        let mut validator = opts.resume_validator.clone();
        // The whole body's size, once known; a resumed range must agree.
        let mut known_total = opts.expected_size;
        let mut transferred = 0u64;
        // Bytes reported to `progress`. Bytes thrown away by a restart stay
        // reported, and the total grows by as much, so the bar ends full.
        let mut advanced = 0u64;
        let mut failures = 0u32;
        let mut buf = vec![0u8; CHUNK];

        if sink.len() > 0 {
            if usable_validator(validator.as_deref(), opts.immutable) {
                advanced = sink.len();
                if let Some(p) = progress.as_deref_mut() {
                    p.advance(advanced);
                }
            } else {
                sink.restart().map_err(sink_error)?;
            }
        }

        loop {
            let offset = sink.len();
            let mut req = Request::get(opts.op, url).credentials(opts.credentials.clone());
            req.headers = opts.headers.clone();
            let conditional = offset == 0 && opts.if_none_match.is_some();
            if conditional && let Some(etag) = &opts.if_none_match {
                req.headers.set("if-none-match", etag.as_str());
            }
            if offset > 0 {
                req.headers.set("range", format!("bytes={offset}-"));
                if let Some(v) = validator.as_deref().filter(|v| !is_weak_etag(v)) {
                    req.headers.set("if-range", v);
                }
            }
            let response = self.send(&req)?;
            let answer = Answer::of(&response);
            // What this response's body must be: its length, and the whole
            // body's size.
            let (body_len, total) = match answer.status {
                304 if conditional => return Ok(answer.into_download(None, transferred)),
                200 => {
                    if offset > 0 {
                        sink.restart().map_err(sink_error)?;
                    }
                    // A new body: what was known of the old one is void.
                    validator = strong_validator(&answer.headers);
                    known_total = opts.expected_size;
                    let len = answer.headers.content_length();
                    (len, len)
                }
                206 if offset > 0 => match check_range(&answer.headers, offset, known_total) {
                    Ok(range) => (Some(range.len()), range.total),
                    Err(kind) => {
                        // Never splice a range other than the one asked
                        // for: start over with the whole body.
                        tracing::debug!("{url}: {kind}; starting over");
                        drop(response);
                        failures += 1;
                        if failures > self.opts.max_retries {
                            return Err(fail(kind));
                        }
                        sink.restart().map_err(sink_error)?;
                        continue;
                    }
                },
                206 => {
                    let value = answer.headers.get("content-range").unwrap_or("");
                    return Err(fail(RemoteErrorKind::BadContentRange {
                        value: value.to_string(),
                        asked: 0,
                    }));
                }
                // The bytes held do not fit the body any more (it shrank):
                // start over.
                416 if offset > 0 => {
                    failures += 1;
                    if failures > self.opts.max_retries {
                        return Err(response.status_error());
                    }
                    drop(response);
                    sink.restart().map_err(sink_error)?;
                    continue;
                }
                _ => return Err(response.status_error()),
            };
            if let (Some(expected), Some(announced)) = (opts.expected_size, total)
                && expected != announced
            {
                return Err(fail(RemoteErrorKind::SizeMismatch {
                    announced,
                    expected,
                }));
            }
            known_total = known_total.or(total);
            if let (Some(p), Some(t)) = (progress.as_deref_mut(), total) {
                // For a 200 `offset` is now 0: every byte advanced so far
                // was thrown away.
                p.set_total(advanced + t.saturating_sub(sink.len()));
            }

            sink.begin(validator.as_deref(), known_total)
                .map_err(sink_error)?;
            let limit = body_len.or_else(|| known_total.map(|t| t.saturating_sub(sink.len())));
            let host = host_of(&answer.url);
            let mut body = response.into_reader();
            let copied = copy_body(
                &mut body,
                sink,
                limit,
                &mut buf,
                &host,
                &mut progress,
                &mut transferred,
                &mut advanced,
            );
            drop(body);
            match copied {
                Ok(()) => return Ok(answer.into_download(total.or(known_total), transferred)),
                Err(Broke::Fatal(kind)) => return Err(fail(kind)),
                Err(Broke::Retry(kind)) => {
                    failures += 1;
                    if failures > self.opts.max_retries {
                        return Err(fail(kind));
                    }
                    tracing::debug!("{url}: {kind}; resuming at {}", sink.len());
                    if !usable_validator(validator.as_deref(), opts.immutable) {
                        sink.restart().map_err(sink_error)?;
                    }
                    std::thread::sleep(self.backoff(failures - 1));
                }
            }
        }
    }
}

/// The parts of a response a download reports, kept past its body.
struct Answer {
    url: String,
    status: u16,
    headers: Headers,
}

impl Answer {
    fn of(response: &Response) -> Answer {
        Answer {
            url: response.url().to_string(),
            status: response.status(),
            headers: response.headers().clone(),
        }
    }

    fn into_download(self, size: Option<u64>, transferred: u64) -> Download {
        let h = &self.headers;
        let text = |name: &str| h.get(name).map(str::to_string);
        Download {
            status: self.status,
            not_modified: self.status == 304,
            etag: text("etag"),
            last_modified: text("last-modified"),
            max_age: cache_max_age(h.get_all("cache-control")),
            size,
            docker_content_digest: text("docker-content-digest"),
            content_type: text("content-type"),
            bytes_transferred: transferred,
            url: self.url,
            headers: self.headers,
        }
    }
}

/// Whether the sink's bytes may be resumed from with this validator.
fn usable_validator(validator: Option<&str>, immutable: bool) -> bool {
    immutable || validator.is_some_and(|v| !is_weak_etag(v))
}

/// What `If-Range` can carry for this response: its strong ETag, else its
/// Last-Modified.
fn strong_validator(headers: &Headers) -> Option<String> {
    headers
        .get("etag")
        .filter(|e| !is_weak_etag(e))
        .or_else(|| headers.get("last-modified"))
        .map(str::to_string)
}

/// A `206` is the continuation asked for only if its range starts at
/// `offset`, its total is the one known (when both are), and its length
/// agrees with Content-Length.
fn check_range(
    headers: &Headers,
    offset: u64,
    known_total: Option<u64>,
) -> Result<super::ContentRange, RemoteErrorKind> {
    let value = headers.get("content-range").unwrap_or("");
    let bad = || RemoteErrorKind::BadContentRange {
        value: value.to_string(),
        asked: offset,
    };
    let range = content_range(value).ok_or_else(bad)?;
    let total_ok = match (range.total, known_total) {
        (Some(t), Some(k)) => t == k,
        _ => true,
    };
    let length_ok = headers.content_length().is_none_or(|l| l == range.len());
    let reaches_end = range.total.is_none_or(|t| range.end + 1 == t);
    if range.start != offset || !total_ok || !length_ok || !reaches_end {
        return Err(bad());
    }
    Ok(range)
}

/// Moves the body into the sink, at most `limit` bytes.
#[allow(clippy::too_many_arguments)]
fn copy_body(
    body: &mut dyn Read,
    sink: &mut dyn DownloadSink,
    limit: Option<u64>,
    buf: &mut [u8],
    host: &str,
    progress: &mut Option<&mut dyn ProgressTask>,
    transferred: &mut u64,
    advanced: &mut u64,
) -> Result<(), Broke> {
    let mut received = 0u64;
    let connection = |e| {
        Broke::Retry(RemoteErrorKind::Connection {
            host: host.to_string(),
            source: Box::new(e),
        })
    };
    loop {
        let max = match limit {
            Some(limit) => (limit - received).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        if max == 0 {
            // Every byte expected came: the body must end here.
            return match body.read(buf) {
                Ok(0) => Ok(()),
                Ok(_) => Err(Broke::Fatal(RemoteErrorKind::BodyTooLong {
                    limit: received,
                })),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(connection(e)),
            };
        }
        let n = match sink.append_from(body, max, buf) {
            Ok(n) => n,
            Err(FillError::Read(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(FillError::Read(e)) => return Err(connection(e)),
            Err(FillError::Write(source)) => {
                return Err(Broke::Fatal(RemoteErrorKind::Sink { source }));
            }
        };
        if n == 0 {
            return match limit {
                Some(expected) if received < expected => {
                    Err(Broke::Retry(RemoteErrorKind::BodyTooShort {
                        received,
                        expected,
                    }))
                }
                _ => Ok(()),
            };
        }
        *transferred += n as u64;
        received += n as u64;
        *advanced += n as u64;
        if let Some(p) = progress.as_deref_mut() {
            p.advance(n as u64);
        }
    }
}
