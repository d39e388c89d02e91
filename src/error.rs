//! Typed errors of the library. Each variant names the thing that failed —
//! the file, the key, the field — so that the command line can print one
//! line a user can act on, and a library user can match on what happened.
//!
//! Causes are kept as [`source`](std::error::Error::source) chains and are
//! not repeated in the message: print an error with its chain (anyhow's
//! `{:#}`, or by walking `source()`) to get the whole line, as the command
//! line does: `cannot open x.aci: No such file or directory (os error 2)`.
//!
//! Errors of one input (an archive, a layout directory, a download) are an
//! [`ArchiveError`]: the input's name and an [`ArchiveErrorKind`].

use std::io;
use std::path::{Path, PathBuf};

use crate::compression::Compression;
use crate::digest::{Digest, DigestError, KeyPrefix};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating system call on a file or directory failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: `open`, `read`, `write temp file in`…
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The index (the SQLite database) failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The store was written by a newer imgstore.
    #[error(
        "the store at {} has schema version {found}, newer than this imgstore understands ({supported}); upgrade imgstore",
        path.display()
    )]
    SchemaTooNew {
        /// The index file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// A stored blob's bytes do not hash to its name.
    #[error("blob {expected} is corrupt: its bytes hash to {found} ({})", path.display())]
    DigestMismatch {
        /// The blob's name.
        expected: Digest,
        /// What its bytes hash to.
        found: Digest,
        /// Its file.
        path: PathBuf,
    },
    /// A stored blob has another length than its row says.
    #[error("blob {digest} has {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The length on record.
        expected: u64,
        /// The length found.
        found: u64,
    },
    /// A string is not a digest or key prefix.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// An IMAGE argument or key prefix did not lead to exactly one key.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// An input (archive, layout, download) was refused.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A server or registry refused, failed or lied.
    #[error(transparent)]
    Remote(#[from] crate::remote::http::RemoteError),
    /// A registry refused, sent what the store does not take, or lied; or a
    /// reference, platform or credentials were not usable.
    #[error(transparent)]
    // Boxed: registry errors carry URLs and digests, and every Result of
    // the crate carries an Error.
    Registry(Box<crate::remote::registry::RegistryError>),
    /// A registry server could not start.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// The store has no such blob.
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    /// A blob to release holds no pin.
    #[error("blob {0} is not pinned")]
    NotPinned(Digest),
    /// A label argument is malformed.
    #[error("invalid label {input:?}: {reason}")]
    BadLabel {
        /// The argument.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An image name given to the store (`import --name`) is unusable.
    #[error("invalid image name {input:?}: {reason}")]
    BadName {
        /// The name, shortened if long.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag argument is malformed.
    #[error("invalid tag {input:?}: {reason}")]
    BadTag {
        /// The argument.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A compare-and-set of a tag found another target.
    #[error("tag {tag} points to {actual}, not the expected {expected}")]
    TagConflict {
        /// The tag.
        tag: String,
        /// The key it was expected to point at (`none`: not to exist).
        expected: String,
        /// Where it points (`none`: it does not exist).
        actual: String,
    },
    /// No such tag.
    #[error("tag {0} does not exist")]
    TagNotFound(String),
    /// Another process holds the store lock and waiting was not asked for.
    #[error("the store is locked by another process (pid {pid}): {what}")]
    Locked {
        /// The pids holding the lock, as far as they can be told.
        pid: String,
        /// What they are doing.
        what: &'static str,
    },
    /// An operation that needs an OCI image was given an appc ACI.
    #[error("image {key} is an appc ACI; only OCI images can be {operation}")]
    NotOci {
        /// The image.
        key: Digest,
        /// What was asked: `exported as an OCI layout`, `pushed`…
        operation: &'static str,
    },
    /// An image whose closure lacks a blob (imported with
    /// `--allow-missing`) cannot be written out whole.
    #[error(
        "image {key} is incomplete: its blob {blob} is not in the store (imported with --allow-missing?)"
    )]
    IncompleteImage {
        /// The image.
        key: Digest,
        /// The blob it lacks.
        blob: Digest,
    },
    /// A destination exists and may not be replaced.
    #[error("{} already exists{}", path.display(), if *.non_empty_dir { " and is not empty" } else { "" })]
    DestinationExists {
        /// The destination.
        path: PathBuf,
        /// Whether it is a directory with something in it.
        non_empty_dir: bool,
    },
    /// One of the store's own directories or files (`tmp/`, `intents/`,
    /// `blobs/` and its shards, `index.db`…) is a symbolic link: the store
    /// never follows a link out of its own directories.
    #[error(
        "{} is a symbolic link; a store's own directories and files may not be links (imgstore never follows a link out of its store)",
        path.display()
    )]
    StoreLink {
        /// The link.
        path: PathBuf,
    },
    /// The directory given as the store is not one, and is not empty: it
    /// is refused rather than adopted.
    #[error(
        "{} is not an imgstore store: {reason}; give an empty or new directory as the store (--store or $IMGSTORE_DIR)",
        path.display()
    )]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it is not taken for a store.
        reason: NotAStoreReason,
    },
    /// The index belongs to another store (it is linked or copied from
    /// one), so that repairing it from this store's tree would damage the
    /// other's.
    #[error(
        "{} belongs to another store (id {index_store}), not to the store at {}{}; a store uses only the index it made",
        index.display(),
        store.display(),
        store_id.as_ref().map(|id| format!(" (id {id})")).unwrap_or_default()
    )]
    ForeignIndex {
        /// The index file.
        index: PathBuf,
        /// The store directory.
        store: PathBuf,
        /// The id of the store the index belongs to.
        index_store: String,
        /// The id of this store, if it has one yet.
        store_id: Option<String>,
    },
    /// The disk (or quota) holding the store has no space left for a write
    /// that would use space. The store's reserve is kept for `rm` and `gc`.
    #[error(
        "the disk holding the store {} is full; `imgstore rm` and `imgstore gc` can still free space",
        store.display()
    )]
    DiskFull {
        /// The store directory.
        store: PathBuf,
        /// The write that failed.
        #[source]
        source: Box<Error>,
    },
    /// A bug: the store broke one of its own rules.
    #[error("internal error: {0}")]
    Internal(String),
    /// A platform argument is malformed, or an index has no image for it.
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
    /// Rendering an image into a directory failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
}

/// Why a directory is not taken for a store ([`Error::NotAStore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAStoreReason {
    /// Something is in it, but neither the marker a store writes when it is
    /// created nor the index of a store made by an earlier imgstore.
    #[error(
        "it is not empty, and has neither a store's marker (imgstore.id) nor a store's index.db"
    )]
    NotEmpty,
    /// It has an `index.db` that is not an imgstore index.
    #[error("its index.db is not an imgstore index")]
    NotAnIndex,
    /// Its marker file is not one an imgstore writes (or one of a newer
    /// imgstore).
    #[error(
        "its marker imgstore.id is not one this imgstore writes (damaged, or from a newer imgstore)"
    )]
    BadMarker,
    /// Its index belongs to a store, but the directory has no marker: the
    /// index was linked or copied here from another store, or the marker
    /// was deleted.
    #[error(
        "its index.db belongs to a store, but it has no marker imgstore.id (copied or linked from another store, or the marker was deleted)"
    )]
    IndexWithoutMarker,
}

/// Why an IMAGE argument or key prefix did not lead to exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Not a key prefix at all.
    #[error(transparent)]
    Malformed(#[from] DigestError),
    /// No key starts with the prefix.
    #[error("no image or blob matches key {0}")]
    NotFound(KeyPrefix),
    /// Several keys start with the prefix.
    #[error("key prefix {prefix} is ambiguous: {count} keys match; give more digits")]
    Ambiguous {
        /// The prefix.
        prefix: KeyPrefix,
        /// How many keys match.
        count: u64,
    },
    /// No image has the name and labels.
    #[error("no image named {name}{}", labels_suffix(.labels))]
    NoSuchName {
        /// The name.
        name: String,
        /// The labels asked for, as `(name, value)`.
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

/// A failure of the index database. Opaque: the database library behind
/// it is not part of the API; [`source`](std::error::Error::source) gives
/// its error as a `dyn Error`.
#[derive(Debug, thiserror::Error)]
#[error("index: {context}")]
pub struct IndexError {
    context: String,
    #[source]
    cause: IndexCause,
}

#[derive(Debug, thiserror::Error)]
enum IndexCause {
    #[error(transparent)]
    Sql(rusqlite::Error),
    #[error(transparent)]
    Pool(r2d2::Error),
}

impl IndexError {
    /// What the index was doing.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Whether the database could not write for want of space.
    pub fn is_disk_full(&self) -> bool {
        match &self.cause {
            IndexCause::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
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

/// An input the store refused: its name (a file, a directory, a URL) and
/// what is wrong with it. Displayed as `NAME: WHAT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input}: {kind}")]
pub struct ArchiveError {
    input: String,
    // Boxed: kinds carry digests and names, and every Result of the crate
    // carries an Error.
    kind: Box<ArchiveErrorKind>,
}

impl ArchiveError {
    pub(crate) fn new(input: &Path, kind: ArchiveErrorKind) -> ArchiveError {
        ArchiveError {
            input: input.display().to_string(),
            kind: Box::new(kind),
        }
    }

    /// The input: a path as given, or a URL.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong.
    pub fn kind(&self) -> &ArchiveErrorKind {
        &self.kind
    }
}

/// What is wrong with an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveErrorKind {
    /// Nothing at all.
    #[error("the file is empty, not an image archive")]
    Empty,
    /// Bytes that hold no tar archive.
    #[error(
        "{}: not an image archive (expected an ACI, OCI or docker archive, plain or gzip/zstd/xz/bzip2)",
        match .compression { Compression::None => "not a tar archive".to_string(), c => format!("{} data that does not hold a tar archive", c.name()) }
    )]
    NotATar {
        /// The compression its magic bytes claimed.
        compression: Compression,
    },
    /// A tar archive of no known image format.
    #[error(
        "a tar archive, but not an ACI (no manifest or rootfs/), OCI layout or docker archive; use --format to force one"
    )]
    UnknownFormat,
    /// The input is of another kind than the format asked for.
    #[error("{0}")]
    WrongFormat(&'static str),
    /// The data ends early.
    #[error("{}", match .compression {
        Compression::None => "the tar archive is truncated (it does not end in two zero blocks)".to_string(),
        c => format!("its {} data is truncated", c.name()),
    })]
    Truncated {
        /// The compression of the stream that ends early (`None` for the
        /// tar itself).
        compression: Compression,
    },
    /// The data cannot be read as what it claims to be.
    #[error("{}: {detail}", match .compression {
        Compression::None => "cannot read the archive (truncated or corrupt?)".to_string(),
        c => format!("its {} data is corrupt", c.name()),
    })]
    Corrupt {
        /// The compression of the stream (`None`: the tar itself).
        compression: Compression,
        /// What the decoder or parser said.
        detail: String,
    },
    /// A member's or file's bytes do not hash to the digest naming it.
    #[error("{member}: the content hashes to {found}, not to the digest {expected} it is named by")]
    DigestMismatch {
        /// The member or file.
        member: String,
        /// The digest it is named by.
        expected: Digest,
        /// What its bytes hash to.
        found: Digest,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("blob {digest} has {found} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size its descriptor gives.
        expected: u64,
        /// Its length.
        found: u64,
    },
    /// A descriptor names a blob the input does not hold.
    #[error("{what} names blob {digest}, which the input does not hold{}", if *.allow_missing_helps { " (use --allow-missing to import without it)" } else { "" })]
    MissingBlob {
        /// Which descriptor: `index.json manifests[0]`, `manifest … layer 2`.
        what: String,
        /// The blob.
        digest: Digest,
        /// Whether `--allow-missing` would accept the input without it.
        allow_missing_helps: bool,
    },
    /// A document names a member the archive does not hold.
    #[error("{what} names {name:?}, which the archive does not hold")]
    MissingMember {
        /// Which reference: `manifest.json Config`.
        what: String,
        /// The member's path.
        name: String,
    },
    /// A file the format requires is absent.
    #[error("the {container} has no {name}{}", if .note.is_empty() { String::new() } else { format!(": {}", .note) })]
    MissingFile {
        /// `archive` or `layout directory`.
        container: &'static str,
        /// The file: `manifest file`, `index.json`…
        name: &'static str,
        /// What that means, if anything.
        note: &'static str,
    },
    /// A layer does not decompress to the diff_id its config names.
    #[error(
        "{what} ({layer}) uncompresses to {found}, but the config's rootfs.diff_ids says {expected}"
    )]
    DiffIdMismatch {
        /// Which layer: `manifest … layer 1`.
        what: String,
        /// The layer blob.
        layer: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// What the layer decompresses to.
        found: Digest,
    },
    /// A layer cannot be decompressed.
    #[error("{what} ({layer}): {cause}")]
    BadLayer {
        /// Which layer.
        what: String,
        /// The layer blob.
        layer: Digest,
        /// Why.
        cause: DecompressError,
    },
    /// A manifest's layers and its config's diff_ids do not pair up.
    #[error("{what} has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCount {
        /// The manifest.
        what: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A document or one of its fields is invalid.
    #[error("{what} {reason}")]
    Malformed {
        /// The document or field: `index.json`, `config sha256:… rootfs.diff_ids`.
        what: String,
        /// What is wrong, as a predicate: `is not a valid image index: …`.
        reason: String,
    },
    /// An appc image manifest is invalid (the appc spec's rules).
    #[error("manifest {}{reason}", .field.as_ref().map(|f| format!("field {f} ")).unwrap_or_default())]
    Manifest {
        /// The field, if one is to blame.
        field: Option<String>,
        /// What is wrong, as a predicate: `is empty`, `is not valid JSON: …`.
        reason: String,
    },
    /// A tar entry that may not be there, or not like that.
    #[error("entry {entry:?} {reason}")]
    Entry {
        /// The entry's path as the archive gives it.
        entry: String,
        /// What is wrong, as a predicate: `appears twice`, `leads outside the archive with '..'`.
        reason: String,
    },
    /// A file that must be a regular file or directory is not: a FIFO, a
    /// socket or a device node is never opened for reading (it could block
    /// or never end).
    #[error("{name} is {found}, not a {expected}")]
    NotRegular {
        /// The file.
        name: String,
        /// `regular file` or `directory`.
        expected: &'static str,
        /// What it is: `a named pipe (FIFO)`, `a character device`…
        found: &'static str,
    },
    /// Image indexes nested deeper than the store follows.
    #[error("{what} nests image indexes more than {limit} deep")]
    TooDeep {
        /// The descriptor at which the limit was reached.
        what: String,
        /// The deepest nesting followed.
        limit: usize,
    },
    /// A name, label or list longer than the store records.
    #[error("{field} has {size} {unit}, more than the {limit} allowed")]
    OverLimit {
        /// The field: `manifest field name`, `config sha256:… label "k"`…
        field: String,
        /// Its length or count.
        size: usize,
        /// The limit.
        limit: usize,
        /// What is counted: `bytes` or `labels`.
        unit: &'static str,
    },
    /// A JSON document gives one key twice in an object.
    #[error("{what} gives the key {key} twice (in {path})")]
    DuplicateKey {
        /// The document: `index.json`, `manifest`, `config sha256:…`.
        what: String,
        /// The key, quoted as Rust quotes strings, shortened if long.
        key: String,
        /// Where, as a JSON path: `$`, `$.config.Labels`, `$.manifests[0]`.
        path: String,
    },
    /// A document larger than the store holds in memory.
    #[error("{what} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The document.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A layout version the store cannot read.
    #[error("oci-layout has imageLayoutVersion {0:?}; only 1.x layouts are supported")]
    UnsupportedLayoutVersion(String),
    /// The input lists no image.
    #[error("{0} lists no image")]
    NoImages(&'static str),
}

/// Why compressed data could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The data ends early.
    #[error("its {} data is truncated", .0.name())]
    Truncated(Compression),
    /// The data is not valid for its compression.
    #[error("its {} data is corrupt: {detail}", .compression.name())]
    Corrupt {
        /// The compression its magic bytes claimed.
        compression: Compression,
        /// What the decoder said.
        detail: String,
    },
    /// The file holding it could not be read.
    #[error("cannot read it: {0}")]
    Read(String),
    /// A worker thread could not be started or stopped early.
    #[error("the decompressing thread stopped")]
    Thread,
}

impl DecompressError {
    /// Classifies a decoder's error: an unexpected end of the input is a
    /// truncation, anything else corruption.
    pub(crate) fn of(compression: Compression, e: &io::Error) -> DecompressError {
        if let Some(known) = DecompressError::in_io(e) {
            return known.clone();
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            DecompressError::Truncated(compression)
        } else {
            DecompressError::Corrupt {
                compression,
                detail: e.to_string(),
            }
        }
    }
}

impl DecompressError {
    /// The decompression error an `io::Error` from a
    /// [`Compression::decoder`] carries, if it is one.
    pub fn in_io(e: &io::Error) -> Option<&DecompressError> {
        e.get_ref()?.downcast_ref::<DecompressError>()
    }
}

impl From<DecompressError> for ArchiveErrorKind {
    /// A whole input's compressed stream that cannot be read.
    fn from(e: DecompressError) -> ArchiveErrorKind {
        match e {
            DecompressError::Truncated(compression) => ArchiveErrorKind::Truncated { compression },
            DecompressError::Corrupt {
                compression,
                detail,
            } => ArchiveErrorKind::Corrupt {
                compression,
                detail,
            },
            other => ArchiveErrorKind::Corrupt {
                compression: Compression::None,
                detail: other.to_string(),
            },
        }
    }
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
            source,
        }
    }

    pub(crate) fn sql(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |cause| {
            Error::Index(IndexError {
                context,
                cause: IndexCause::Sql(cause),
            })
        }
    }

    /// An input refused for `kind`.
    pub(crate) fn archive(input: &Path, kind: ArchiveErrorKind) -> Error {
        Error::Archive(ArchiveError::new(input, kind))
    }

    /// The kind of archive error this is, if it is one.
    pub fn archive_kind(&self) -> Option<&ArchiveErrorKind> {
        match self {
            Error::Archive(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether the error came from a full disk (ENOSPC, EDQUOT or EFBIG),
    /// in the tree or in the index (no room for its WAL or shared memory).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
            ),
            Error::Index(e) => e.is_disk_full(),
            Error::DiskFull { .. } => true,
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

/// A pooled connection that could not be had, as an error of the index.
pub(crate) fn pool_error(e: r2d2::Error) -> Error {
    Error::Index(IndexError {
        context: "cannot get a database connection".into(),
        cause: IndexCause::Pool(e),
    })
}
