//! Typed errors of the library. Each variant names the thing that failed —
//! the file, the key, the field — so the command line can print one line
//! that a user can act on.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestError, KeyPrefix};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // The cause is part of the message and deliberately not also exposed as
    // `source()`: a chain printer (anyhow's `{:#}`) would print it twice.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("index: {context}: {cause}")]
    Sql {
        context: String,
        cause: rusqlite::Error,
    },
    #[error("index: cannot get a database connection: {0}")]
    Pool(r2d2::Error),
    #[error(
        "the store at {} has schema version {found}, newer than this imgstore understands ({supported}); upgrade imgstore",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("blob {expected} is corrupt: its bytes hash to {found} ({})", path.display())]
    DigestMismatch {
        expected: Digest,
        found: Digest,
        path: PathBuf,
    },
    #[error("blob {digest} has {found} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        found: u64,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{}: {reason}", path.display())]
    BadArchive { path: PathBuf, reason: String },
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("invalid label {input:?}: {reason}")]
    BadLabel { input: String, reason: &'static str },
    #[error("invalid tag {input:?}: {reason}")]
    BadTag { input: String, reason: &'static str },
    #[error("tag {tag} points to {actual}, not the expected {expected}")]
    TagConflict {
        tag: String,
        expected: String,
        actual: String,
    },
    #[error("tag {0} does not exist")]
    TagNotFound(String),
    #[error("the store is locked by another process (pid {pid}): {what}")]
    Locked { pid: String, what: &'static str },
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error("{0}")]
    Other(String),
}

/// Why an IMAGE argument or key prefix did not lead to exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error(transparent)]
    Malformed(#[from] DigestError),
    #[error("no image or blob matches key {0}")]
    NotFound(KeyPrefix),
    #[error("key prefix {prefix} is ambiguous: {count} keys match; give more digits")]
    Ambiguous { prefix: KeyPrefix, count: u64 },
    #[error("no image named {name}{}", labels_suffix(.labels))]
    NoSuchName {
        name: String,
        labels: Vec<(String, String)>,
    },
}

fn labels_suffix(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" with labels {}", parts.join(","))
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        // A digest mismatch found by a VerifiedReader travels inside an
        // io::Error; unwrap it so callers can match on it.
        if source.kind() == io::ErrorKind::InvalidData
            && source.get_ref().is_some_and(|e| e.is::<Error>())
        {
            let inner = source.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::Io {
            action,
            path: path.to_path_buf(),
            cause: source,
        }
    }

    pub(crate) fn sql(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |cause| Error::Sql { context, cause }
    }

    pub(crate) fn bad_archive(path: &Path, reason: impl Into<String>) -> Error {
        Error::BadArchive {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Whether the error came from a full disk (ENOSPC or EDQUOT), in the
    /// tree or in the index (SQLITE_FULL, or no room to grow its shared
    /// memory or write its WAL).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { cause, .. } => matches!(
                cause.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
            ),
            Error::Sql {
                cause: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => {
                e.code == rusqlite::ErrorCode::DiskFull
                    || matches!(
                        e.extended_code,
                        rusqlite::ffi::SQLITE_IOERR_SHMSIZE
                            | rusqlite::ffi::SQLITE_IOERR_WRITE
                            | rusqlite::ffi::SQLITE_IOERR_TRUNCATE
                    )
            }
            _ => false,
        }
    }
}

/// Attaches an action and a path to an I/O result.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(cause: rusqlite::Error) -> Error {
        Error::Sql {
            context: "query failed".into(),
            cause,
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Error {
        Error::Pool(e)
    }
}
