//! Errors of the HTTP transport. Every [`RemoteError`] says what the user
//! was doing (the [`Op`]: fetch, pull, push, login), the URL asked for, and
//! what went wrong ([`RemoteErrorKind`]), as one line:
//! `fetch http://127.0.0.1:8080/x.aci: 404 Not Found`. The underlying cause
//! (an I/O or TLS error) is the `source()`, never repeated in the message,
//! so a chain printer shows each part once.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// What the user was doing when a request failed; the first word of the
/// error line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `imgstore fetch`: an archive by URL.
    Fetch,
    /// `imgstore pull`: from a registry.
    Pull,
    /// `imgstore push`: to a registry.
    Push,
    /// `imgstore login`: checking credentials.
    Login,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Fetch => "fetch",
            Op::Pull => "pull",
            Op::Push => "push",
            Op::Login => "login",
        })
    }
}

/// A request that failed: `{op} {url}: {kind}`.
#[derive(Debug)]
pub struct RemoteError {
    op: Op,
    url: String,
    kind: RemoteErrorKind,
}

impl RemoteError {
    pub(crate) fn new(op: Op, url: impl Into<String>, kind: RemoteErrorKind) -> RemoteError {
        RemoteError {
            op,
            url: url.into(),
            kind,
        }
    }

    /// What the user was doing.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The URL that was asked for (before any redirect).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What went wrong.
    pub fn kind(&self) -> &RemoteErrorKind {
        &self.kind
    }

    /// The HTTP status the server answered with, for a status error or a
    /// status that retries did not get past.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            RemoteErrorKind::Status { status, .. }
            | RemoteErrorKind::RetriesExhausted { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.url, self.kind)
    }
}

impl StdError for RemoteError {
    // The kind is part of this error's own message; its cause is next.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.kind.source()
    }
}

/// The cause of a failure, below [`RemoteError`].
pub(crate) type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The server answered with an error status.
    #[error("{status} {reason}{}", redirected(.final_url))]
    Status {
        /// The status.
        status: u16,
        /// Its reason phrase.
        reason: &'static str,
        /// Where a redirect led, when that is not the URL asked for.
        final_url: Option<String>,
    },
    /// `429` or `503` on every attempt.
    #[error("gave up after {attempts} attempts: {status} {reason}{}", rate_limit_note(*.status, .rate_limit))]
    RetriesExhausted {
        /// Requests made.
        attempts: u32,
        /// The last status.
        status: u16,
        /// Its reason phrase.
        reason: &'static str,
        /// Docker Hub's `ratelimit-remaining` and `ratelimit-limit`, when sent.
        rate_limit: Option<RateLimit>,
    },
    /// No connection could be made (refused, unknown host, unreachable).
    #[error("cannot connect to {host}")]
    Connect {
        /// The host, with its port.
        host: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The server's certificate does not chain to a trusted root, or does
    /// not name the host.
    #[error("TLS certificate of {host} not trusted")]
    Certificate {
        /// The host, with its port.
        host: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// Any other TLS failure.
    #[error("TLS with {host} failed")]
    Tls {
        /// The host, with its port.
        host: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The connection broke or stalled, or the server spoke bad HTTP.
    #[error("the connection to {host} failed")]
    Connection {
        /// The host, with its port.
        host: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The response body ended before its announced length, on every attempt.
    #[error("the body ended after {received} of {expected} bytes")]
    BodyTooShort {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// More bytes arrived than announced (or than the caller expected).
    #[error("the body is longer than the {limit} bytes expected")]
    BodyTooLong {
        /// The most bytes expected.
        limit: u64,
    },
    /// The announced size differs from the one the caller expected.
    #[error("the server announces {announced} bytes, expected {expected}")]
    SizeMismatch {
        /// The server's `Content-Length`.
        announced: u64,
        /// The size the caller expected (a descriptor's).
        expected: u64,
    },
    /// A `206` that does not answer the range asked for.
    #[error("bad Content-Range {value:?} in reply to a request for bytes {asked}-")]
    BadContentRange {
        /// The header's value.
        value: String,
        /// The offset asked for.
        asked: u64,
    },
    /// Redirects beyond the bound.
    #[error("too many redirects (more than {max})")]
    TooManyRedirects {
        /// The bound.
        max: u32,
    },
    /// The URL asked for cannot be requested.
    #[error("not a valid URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A redirect led to a URL that cannot be requested.
    #[error("redirected to {location:?}, which is not a valid URL: {reason}")]
    BadRedirect {
        /// The `Location` header.
        location: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request header (named; its value may be a secret) is not valid HTTP.
    #[error("request header {name:?} is not valid HTTP")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// A request body file could not be read.
    #[error("cannot read {}", .path.display())]
    BodyFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The download sink refused bytes (a full disk, say).
    #[error("cannot store the downloaded bytes")]
    Sink {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The CA certificates named by `SSL_CERT_FILE`/`SSL_CERT_DIR` (or the
    /// system's) could not be loaded.
    #[error("cannot load CA certificates from {}", .path.display())]
    TrustStore {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Cause,
    },
}

/// A registry's account of its rate limit (Docker Hub sends these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// `ratelimit-remaining`, e.g. `0;w=21600`.
    pub remaining: Option<String>,
    /// `ratelimit-limit`, e.g. `100;w=21600`.
    pub limit: Option<String>,
}

fn redirected(final_url: &Option<String>) -> String {
    match final_url {
        Some(u) => format!(" (redirected to {u})"),
        None => String::new(),
    }
}

fn rate_limit_note(status: u16, rate_limit: &Option<RateLimit>) -> String {
    if status != 429 {
        return String::new();
    }
    let mut note = String::from(" (the server is rate-limiting us");
    if let Some(r) = rate_limit {
        if let Some(v) = &r.remaining {
            note.push_str(&format!("; ratelimit-remaining: {v}"));
        }
        if let Some(v) = &r.limit {
            note.push_str(&format!("; ratelimit-limit: {v}"));
        }
    }
    note.push(')');
    note
}

/// The reason phrase of a status code, as RFC 9110 names it.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_op_url_and_status() {
        let e = RemoteError::new(
            Op::Fetch,
            "http://127.0.0.1:1/x.aci",
            RemoteErrorKind::Status {
                status: 404,
                reason: reason_phrase(404),
                final_url: None,
            },
        );
        assert_eq!(
            e.to_string(),
            "fetch http://127.0.0.1:1/x.aci: 404 Not Found"
        );
        assert_eq!(e.status(), Some(404));

        let e = RemoteError::new(
            Op::Pull,
            "https://r/v2/a/manifests/b",
            RemoteErrorKind::RetriesExhausted {
                attempts: 6,
                status: 429,
                reason: reason_phrase(429),
                rate_limit: Some(RateLimit {
                    remaining: Some("0;w=21600".into()),
                    limit: Some("100;w=21600".into()),
                }),
            },
        );
        assert_eq!(
            e.to_string(),
            "pull https://r/v2/a/manifests/b: gave up after 6 attempts: 429 Too Many Requests \
             (the server is rate-limiting us; ratelimit-remaining: 0;w=21600; ratelimit-limit: 100;w=21600)"
        );
    }

    #[test]
    fn the_cause_is_the_source_not_the_message() {
        let e = RemoteError::new(
            Op::Fetch,
            "http://h:1/",
            RemoteErrorKind::Connect {
                host: "h:1".into(),
                source: Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
            },
        );
        assert_eq!(e.to_string(), "fetch http://h:1/: cannot connect to h:1");
        let source = e.source().expect("a source");
        assert!(source.to_string().contains("refused"), "{source}");
    }
}
