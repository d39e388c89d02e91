//! The HTTP transport every network feature shares (fetch by URL, registry
//! pull and push, login): a blocking [`Client`] over ureq and rustls that
//! sends a [`Request`] and hands back a [`Response`] whose body streams.
//!
//! What it promises, whoever calls it:
//! - **Bytes as sent.** No `Accept-Encoding` is sent and nothing is decoded:
//!   a body is the server's bytes, since digests are of the bytes as stored.
//! - **Credentials stay home.** A request's credentials (its `Authorization`)
//!   go only to the origin (scheme, host, port) of the URL asked for. The
//!   client follows redirects itself (bounded; `303` turns into `GET`) and
//!   drops them on a hop to any other origin, as registries' blob redirects
//!   to storage hosts need.
//! - **Bounded patience.** `429` and `503` are retried after `Retry-After`
//!   (seconds or a date, capped) or an exponential backoff; connection
//!   resets and timeouts are retried for `GET` and `HEAD`; each a bounded
//!   number of times. Other statuses come back as they are, for the caller
//!   to read (a `401` carries its challenge); [`Response::status_error`]
//!   is the error naming the URL and status.
//! - **Trust as curl and git do.** HTTPS trusts the system's roots plus
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR` ([`TrustRoots`]); they are loaded on
//!   the first HTTPS request, so plain-HTTP work never pays for them.
//!
//! Downloads into a sink, with conditional requests and resume, are in
//! [`download`].

mod download;
mod error;
mod headers;
#[cfg(test)]
mod tests;
mod trust;
mod url;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub(crate) use download::{Download, DownloadOptions, DownloadSink};
pub(crate) use error::reason_phrase;
pub use error::{Op, RateLimit, RemoteError, RemoteErrorKind};
pub(crate) use headers::{ContentRange, Headers, retry_after};
pub(crate) use trust::TrustRoots;
pub(crate) use url::{Origin, resolve};

use error::Cause;

/// How a [`Client`] behaves. `Default` is what the command line uses.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) user_agent: String,
    /// Time to establish a TCP connection.
    pub(crate) connect_timeout: Duration,
    /// Time any single read may wait (headers or body): a stalled server
    /// fails instead of hanging; a slow but moving one is fine.
    pub(crate) read_timeout: Duration,
    /// Retries after the first attempt, for `429`/`503`, connection
    /// failures of `GET`/`HEAD`, and (per download) broken bodies.
    pub(crate) max_retries: u32,
    pub(crate) max_redirects: u32,
    /// The longest wait `Retry-After` or the backoff may impose.
    pub(crate) retry_after_cap: Duration,
    /// The first backoff; each retry doubles it (tests set it low).
    pub(crate) backoff_base: Duration,
    pub(crate) trust: TrustRoots,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            user_agent: concat!("imgstore/", env!("CARGO_PKG_VERSION")).to_string(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_retries: 5,
            max_redirects: 10,
            retry_after_cap: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            trust: TrustRoots::from_env(),
        }
    }
}

/// HTTP methods the distribution protocol and fetch use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }

    /// Whether a request may be sent again after the connection failed
    /// mid-way: only reads, since a write may have taken effect.
    fn retries_on_connection_error(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }

    fn carries_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// A request body. Files are opened afresh for each attempt, so a body
/// survives a retry or a `307`/`308` redirect, and is streamed, never read
/// into memory.
#[derive(Debug, Clone, Default)]
pub(crate) enum Body {
    #[default]
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of the file at `path`, from `offset`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// One request to send with [`Client::send`].
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Headers,
    pub(crate) body: Body,
    /// An `Authorization` value, sent only to the origin of `url`.
    pub(crate) credentials: Option<String>,
}

impl Request {
    pub(crate) fn new(op: Op, method: Method, url: impl Into<String>) -> Request {
        Request {
            op,
            method,
            url: url.into(),
            headers: Headers::new(),
            body: Body::Empty,
            credentials: None,
        }
    }

    pub(crate) fn get(op: Op, url: impl Into<String>) -> Request {
        Request::new(op, Method::Get, url)
    }

    pub(crate) fn head(op: Op, url: impl Into<String>) -> Request {
        Request::new(op, Method::Head, url)
    }

    pub(crate) fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.set(name, value);
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    pub(crate) fn credentials(mut self, authorization: Option<String>) -> Request {
        self.credentials = authorization;
        self
    }
}

/// A response whose body has not been read yet.
pub(crate) struct Response {
    op: Op,
    /// The URL asked for, which errors name.
    request_url: String,
    /// The URL that answered, after redirects.
    url: String,
    status: u16,
    headers: Headers,
    body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    pub(crate) fn headers(&self) -> &Headers {
        &self.headers
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The URL that answered, after redirects.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body, streamed.
    pub(crate) fn into_reader(self) -> Box<dyn Read + Send> {
        self.body
    }

    /// The whole body, refused when longer than `limit` (for manifests,
    /// tokens and error documents, never for blobs).
    pub(crate) fn read_body(self, limit: u64) -> Result<Vec<u8>, RemoteError> {
        let op = self.op;
        let url = self.request_url.clone();
        let host = host_of(&self.url);
        let mut buf = Vec::new();
        self.body
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                RemoteError::new(
                    op,
                    url.clone(),
                    RemoteErrorKind::Connection {
                        host,
                        source: Box::new(e),
                    },
                )
            })?;
        if buf.len() as u64 > limit {
            return Err(RemoteError::new(
                op,
                url,
                RemoteErrorKind::BodyTooLong { limit },
            ));
        }
        Ok(buf)
    }

    /// The error this response's status stands for.
    pub(crate) fn status_error(&self) -> RemoteError {
        let final_url = (self.url != self.request_url).then(|| self.url.clone());
        RemoteError::new(
            self.op,
            self.request_url.clone(),
            RemoteErrorKind::Status {
                status: self.status,
                reason: reason_phrase(self.status),
                final_url,
            },
        )
    }
}

/// A blocking HTTP client; cheap to share between threads by reference.
pub(crate) struct Client {
    opts: ClientOptions,
    /// For `http://` URLs: no certificate is ever loaded for it.
    plain: ureq::Agent,
    /// For `https://` URLs, made on first use (loading the roots costs a
    /// few milliseconds that plain-HTTP work should not pay).
    tls: Mutex<Option<ureq::Agent>>,
}

/// Why one attempt failed, and whether trying again may help.
struct Failure {
    kind: RemoteErrorKind,
    transient: bool,
}

impl Client {
    pub(crate) fn new(opts: ClientOptions) -> Client {
        let plain = agent(&opts, Vec::new());
        Client {
            opts,
            plain,
            tls: Mutex::new(None),
        }
    }

    /// Sends `req`, following redirects and retrying as the module header
    /// says. Any final status comes back as a response, except `429`/`503`
    /// after the last retry (an error saying so).
    pub(crate) fn send(&self, req: &Request) -> Result<Response, RemoteError> {
        let fail = |kind| RemoteError::new(req.op, req.url.clone(), kind);
        let origin =
            Origin::of(&req.url).map_err(|reason| fail(RemoteErrorKind::InvalidUrl { reason }))?;
        if let Some(name) = invalid_header(req) {
            return Err(fail(RemoteErrorKind::InvalidHeader { name }));
        }
        let mut url = req.url.clone();
        let mut method = req.method;
        let mut keep_body = true;
        let mut redirects = 0;
        let mut retries = 0;
        loop {
            let hop = Origin::of(&url).map_err(|reason| {
                fail(RemoteErrorKind::BadRedirect {
                    location: url.clone(),
                    reason,
                })
            })?;
            let agent = self.agent_for(&hop).map_err(fail)?;
            let body = if keep_body { &req.body } else { &Body::Empty };
            let attempt = self.send_once(&agent, req, &url, method, body, hop == origin);
            let response = match attempt {
                Ok(r) => r,
                Err(f) => {
                    if f.transient
                        && method.retries_on_connection_error()
                        && retries < self.opts.max_retries
                    {
                        tracing::debug!("{} {url}: {}; retrying", method.as_str(), f.kind);
                        std::thread::sleep(self.backoff(retries));
                        retries += 1;
                        continue;
                    }
                    return Err(fail(f.kind));
                }
            };
            let status = response.status;
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = response.header("location")
            {
                if redirects == self.opts.max_redirects {
                    return Err(fail(RemoteErrorKind::TooManyRedirects {
                        max: self.opts.max_redirects,
                    }));
                }
                url = resolve(&url, location);
                // 303 always, and 301/302 after a POST by long practice,
                // repeat as a GET without the body; 307/308 keep both.
                if status == 303 || (matches!(status, 301 | 302) && method == Method::Post) {
                    method = Method::Get;
                    keep_body = false;
                }
                redirects += 1;
                continue;
            }
            if matches!(status, 429 | 503) {
                if retries == self.opts.max_retries {
                    return Err(fail(exhausted(&response, retries + 1)));
                }
                let wait = response
                    .header("retry-after")
                    .and_then(|v| retry_after(v, SystemTime::now()))
                    .map(|d| d.min(self.opts.retry_after_cap))
                    .unwrap_or_else(|| self.backoff(retries));
                tracing::debug!("{url}: {status}; retrying in {wait:?}");
                drop(response);
                std::thread::sleep(wait);
                retries += 1;
                continue;
            }
            return Ok(Response {
                request_url: req.url.clone(),
                ..response
            });
        }
    }

    /// The wait before retry number `n` (from 0): base × 2ⁿ, capped.
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX);
        self.opts
            .backoff_base
            .saturating_mul(factor)
            .min(self.opts.retry_after_cap)
    }

    fn agent_for(&self, origin: &Origin) -> Result<ureq::Agent, RemoteErrorKind> {
        if !origin.is_https() {
            return Ok(self.plain.clone());
        }
        let mut tls = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(agent) = tls.as_ref() {
            return Ok(agent.clone());
        }
        let roots = self.opts.trust.load()?;
        let agent = agent(&self.opts, roots);
        *tls = Some(agent.clone());
        Ok(agent)
    }

    fn send_once(
        &self,
        agent: &ureq::Agent,
        req: &Request,
        url: &str,
        method: Method,
        body: &Body,
        same_origin: bool,
    ) -> Result<Response, Failure> {
        let host = host_of(url);
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url);
        for (name, value) in req.headers.iter() {
            // An Authorization among the headers is credentials too: it
            // stays home, and `credentials`, when given, replaces it.
            if name.eq_ignore_ascii_case("authorization")
                && (!same_origin || req.credentials.is_some())
            {
                continue;
            }
            builder = builder.header(name, value);
        }
        if same_origin && let Some(c) = &req.credentials {
            builder = builder.header("authorization", c.as_str());
        }
        // Headers were checked before the first attempt, so only the URL
        // can be refused here.
        let invalid = || Failure {
            kind: url_error(&req.url, url, "it is not a valid URI"),
            transient: false,
        };
        let result = match body {
            Body::Empty if method.carries_body() => {
                agent.run(builder.body(&[][..]).map_err(|_| invalid())?)
            }
            Body::Empty => agent.run(builder.body(()).map_err(|_| invalid())?),
            Body::Bytes(bytes) => agent.run(builder.body(&bytes[..]).map_err(|_| invalid())?),
            Body::File { path, offset, len } => {
                let file = open_body_file(path, *offset, *len).map_err(|source| Failure {
                    kind: RemoteErrorKind::BodyFile {
                        path: path.clone(),
                        source,
                    },
                    transient: false,
                })?;
                let reader = ureq::SendBody::from_owned_reader(file.take(*len));
                let request = builder
                    .header("content-length", body.len())
                    .body(reader)
                    .map_err(|_| invalid())?;
                agent.run(request)
            }
        };
        let response = result.map_err(|e| match e {
            ureq::Error::BadUri(_) => invalid(),
            e => classify(e, &host),
        })?;
        let (parts, body) = response.into_parts();
        let mut headers = Headers::new();
        for (name, value) in &parts.headers {
            headers.append(
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
        Ok(Response {
            op: req.op,
            request_url: req.url.clone(),
            url: url.to_string(),
            status: parts.status.as_u16(),
            headers,
            body: Box::new(body.into_reader()),
        })
    }
}

/// A URL that cannot be requested: the one asked for, or a redirect's.
fn url_error(requested: &str, url: &str, reason: &'static str) -> RemoteErrorKind {
    if url == requested {
        RemoteErrorKind::InvalidUrl { reason }
    } else {
        RemoteErrorKind::BadRedirect {
            location: url.to_string(),
            reason,
        }
    }
}

/// The name of the first header (or credentials) that HTTP cannot carry:
/// a bad name, or a value with a line break or other control character.
/// Only the name is told, since values may be secrets.
fn invalid_header(req: &Request) -> Option<String> {
    let credentials = req
        .credentials
        .iter()
        .map(|c| ("authorization", c.as_str()));
    req.headers
        .iter()
        .chain(credentials)
        .find(|(name, value)| {
            ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || ureq::http::HeaderValue::from_str(value).is_err()
        })
        .map(|(name, _)| name.to_string())
}

fn open_body_file(path: &std::path::Path, offset: u64, len: u64) -> io::Result<File> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < offset.saturating_add(len) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file has {size} bytes, fewer than {offset} + {len}"),
        ));
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// A ureq agent that leaves redirects, statuses and encodings to us.
fn agent(opts: &ClientOptions, roots: Vec<Vec<u8>>) -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = roots
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .accept_encoding("")
        // Half a megabyte per read keeps a loopback download's CPU cost
        // at curl's (at 128 KiB, ureq's default, it was a third more).
        .input_buffer_size(512 * 1024)
        .user_agent(opts.user_agent.as_str())
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .tls_config(tls)
        .build()
        .new_agent()
}

/// `host:port` of a URL, for messages.
fn host_of(url: &str) -> String {
    Origin::of(url).map_or_else(|_| url.to_string(), |o| o.host_port())
}

fn exhausted(response: &Response, attempts: u32) -> RemoteErrorKind {
    let remaining = response.header("ratelimit-remaining").map(str::to_string);
    let limit = response.header("ratelimit-limit").map(str::to_string);
    RemoteErrorKind::RetriesExhausted {
        attempts,
        status: response.status,
        reason: reason_phrase(response.status),
        rate_limit: (remaining.is_some() || limit.is_some())
            .then_some(RateLimit { remaining, limit }),
    }
}

/// Sorts a ureq error into what the user is told and whether a retry may
/// help. A refused connection or an unknown host is not retried: it is a
/// wrong address far more often than a blip, and retrying would make a
/// typo wait out the whole backoff.
fn classify(e: ureq::Error, host: &str) -> Failure {
    let host = host.to_string();
    let connect = |source: Cause, transient| Failure {
        kind: RemoteErrorKind::Connect {
            host: host.clone(),
            source,
        },
        transient,
    };
    let connection = |source: Cause| Failure {
        kind: RemoteErrorKind::Connection {
            host: host.clone(),
            source,
        },
        transient: true,
    };
    match e {
        ureq::Error::Io(io) => {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return tls_failure(tls.clone(), host.clone());
            }
            match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::PermissionDenied => connect(Box::new(io), false),
                _ => connection(Box::new(io)),
            }
        }
        ureq::Error::Rustls(tls) => tls_failure(tls, host),
        ureq::Error::HostNotFound => connect(Box::new(ureq::Error::HostNotFound), false),
        ureq::Error::ConnectionFailed => connect(Box::new(ureq::Error::ConnectionFailed), true),
        e @ ureq::Error::Timeout(_) => connection(Box::new(e)),
        // Protocol errors (a garbled status line, oversized headers) do
        // not get better by asking again.
        e => Failure {
            kind: RemoteErrorKind::Connection {
                host,
                source: Box::new(e),
            },
            transient: false,
        },
    }
}

fn tls_failure(e: rustls::Error, host: String) -> Failure {
    let source: Cause = Box::new(e.clone());
    let kind = match e {
        rustls::Error::InvalidCertificate(_) => RemoteErrorKind::Certificate { host, source },
        _ => RemoteErrorKind::Tls { host, source },
    };
    Failure {
        kind,
        transient: false,
    }
}
