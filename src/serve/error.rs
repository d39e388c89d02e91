//! Why a registry server could not start. Refusals of requests are no
//! errors of the library: they are answers, with the spec's codes.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be listened on.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A line of the htpasswd file cannot be used.
    #[error("htpasswd file {}, line {line}: {reason}", path.display())]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// The line, from 1 (0: the file as a whole).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TLS certificate or key cannot be used.
    #[error("TLS {what} {}: {reason}", path.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
        /// The TLS library's error, when it had one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A certificate was given without its key, or a key without its
    /// certificate.
    #[error("TLS needs both a certificate and its key (--tls-cert and --tls-key)")]
    TlsIncomplete,
    /// The server's runtime could not be started.
    #[error("cannot start the server's threads")]
    Runtime(#[source] io::Error),
    /// SIGINT and SIGTERM could not be handled.
    #[error("cannot handle SIGINT and SIGTERM")]
    Signals(#[source] io::Error),
}
