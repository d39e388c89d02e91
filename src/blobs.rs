//! The blob tree: immutable files named by the digest of their bytes.
//!
//! A digest becomes a path by splitting off the first two hex digits as a
//! shard directory, so that no directory holds more than 1/256 of the store:
//!
//! ```text
//! sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//!   -> <store>/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//! ```
//!
//! Bytes never appear at a final path half-written. A [`BlobWriter`] streams
//! into a temp file under `<store>/tmp/` while hashing; [`publish_all`]
//! then runs the durability sequence of DESIGN.md §3.2: fsync the file, make
//! it read-only, rename it into its shard, fsync the shard directory. Only
//! after that may the index name the blob. A staged blob that is dropped
//! without being published removes its temp file.
//!
//! The tree knows nothing of images or reference counts; that is the index's
//! business.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext};
use crate::nofollow::{Dir, Kind, Meta};
use crate::signals::{self, Staged};

/// Buffer size for blob writes: large enough that the write syscalls vanish
/// next to hashing.
const WRITE_BUFFER: usize = 1 << 20;

/// The directories under `tmp/` whose files outlive a process on purpose
/// ([`BlobTree::kept_dir`]).
pub(crate) const KEPT_DIRS: [&str; 2] = ["partial", "uploads"];

/// The store's own directories besides the shards: none may be a link.
const OWN_DIRS: [&str; 4] = ["blobs", "tmp", "intents", "trees"];

/// The blob tree and the store directories it writes through. Every
/// directory is reached from the store root's descriptor without following
/// links ([`crate::nofollow`]); the paths are kept for messages and for
/// readers of single files.
#[derive(Debug, Clone)]
pub(crate) struct BlobTree {
    root: Arc<Dir>,
    blobs: PathBuf,
    tmp: Arc<Dir>,
    intents: Arc<Dir>,
}

/// The directories a sweep (gc, fsck) works in, opened afresh when it
/// starts, so that a link swapped in since the store was opened is met.
pub(crate) struct SweepDirs {
    pub tmp: Arc<Dir>,
    pub intents: Arc<Dir>,
}

impl BlobTree {
    /// Refuses a store whose own directories are links (or not
    /// directories), and whose shard directories are links, before
    /// anything is written to it. Reads the algorithm directories, no more:
    /// a few system calls.
    pub fn check(root: &Dir) -> Result<(), Error> {
        for name in OWN_DIRS {
            root.try_sub(name)?;
        }
        if let Some(tmp) = root.try_sub("tmp")? {
            for name in KEPT_DIRS {
                tmp.try_sub(name)?;
            }
        }
        if let Some(blobs) = root.try_sub("blobs")? {
            for algorithm in Algorithm::ALL {
                let Some(alg) = blobs.try_sub(algorithm.name())? else {
                    continue;
                };
                for entry in alg.entries()? {
                    if entry.kind == Kind::Link && is_shard_name(&entry.name.to_string_lossy()) {
                        return Err(Error::StoreLink {
                            path: alg.child_path(&entry.name),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the tree of the store whose root is `root`, creating its
    /// directories where missing.
    pub fn open(root: Arc<Dir>) -> Result<BlobTree, Error> {
        let (blobs, _) = root.sub_or_create("blobs")?;
        for algorithm in Algorithm::ALL {
            blobs.sub_or_create(algorithm.name())?;
        }
        let tmp = Arc::new(root.sub_or_create("tmp")?.0);
        let intents = Arc::new(root.sub_or_create("intents")?.0);
        Ok(BlobTree {
            blobs: blobs.path().to_path_buf(),
            root,
            tmp,
            intents,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Arc<Dir> {
        &self.root
    }

    /// Temp files of running writers: stale once no writer holds the
    /// store lock, so gc removes them all.
    pub fn tmp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The temp directory itself, for writers that make files in it.
    pub fn tmp_dir_handle(&self) -> &Arc<Dir> {
        &self.tmp
    }

    /// Checks the store's directories again (as [`BlobTree::check`]) and
    /// opens the ones a sweep works in, from the root, none of them
    /// through a link.
    pub fn sweep_dirs(&self) -> Result<SweepDirs, Error> {
        BlobTree::check(&self.root)?;
        let tmp = self.root.sub("tmp")?;
        for name in KEPT_DIRS {
            tmp.try_sub(name)?;
        }
        Ok(SweepDirs {
            tmp: Arc::new(tmp),
            intents: Arc::new(self.root.sub("intents")?),
        })
    }

    /// A directory under `tmp/` for files that outlive a process on
    /// purpose (`partial`: downloads to resume; `uploads`: upload sessions
    /// of `serve`); gc removes what is older than its grace period.
    /// Created on first use.
    pub fn kept_dir(&self, name: &str) -> Result<PathBuf, Error> {
        let (dir, _) = self.tmp.sub_or_create(name)?;
        Ok(dir.path().to_path_buf())
    }

    /// Where writers record the blobs they may leave without a row
    /// ([`crate::intents`]).
    pub fn intents_dir(&self) -> &Arc<Dir> {
        &self.intents
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The shard directory of a digest, reached from the root without
    /// following links; `None` if it does not exist.
    fn shard(&self, digest: &Digest) -> Result<Option<Dir>, Error> {
        let Some(alg) = self.root.sub("blobs")?.try_sub(digest.algorithm().name())? else {
            return Ok(None);
        };
        alg.try_sub(&digest.hex()[..2])
    }

    /// The shard directory of a digest, created (durably) if missing.
    /// The shard a blob goes into, created when missing; with it, the
    /// algorithm directory when the shard is new (its entry is not durable
    /// until that directory is fsynced, which is the caller's business).
    fn shard_for_write(&self, digest: &Digest) -> Result<(Dir, Option<Dir>), Error> {
        let (alg, _) = self
            .root
            .sub("blobs")?
            .sub_or_create(digest.algorithm().name())?;
        let (shard, created) = alg.sub_or_create(&digest.hex()[..2])?;
        Ok((shard, created.then_some(alg)))
    }

    /// Whether the tree holds the blob: a regular file at its path, reached
    /// without following a link.
    pub fn contains(&self, digest: &Digest) -> bool {
        matches!(
            self.shard(digest).and_then(|s| match s {
                Some(shard) => shard.meta(digest.hex()),
                None => Ok(None),
            }),
            Ok(Some(meta)) if meta.kind == Kind::File
        )
    }

    /// Opens a blob's file, reached without following links.
    pub fn open_file(&self, digest: &Digest) -> Result<File, Error> {
        match self.shard(digest)? {
            Some(shard) => shard.open_file(digest.hex()),
            None => Err(Error::io(
                "open blob",
                &self.path(digest),
                io::ErrorKind::NotFound.into(),
            )),
        }
    }

    /// Opens a blob for reading, verifying its digest as it is read.
    pub fn read(&self, digest: &Digest) -> Result<VerifiedReader<File>, Error> {
        let file = self.open_file(digest)?;
        Ok(VerifiedReader::new(file, digest.clone(), self.path(digest)))
    }

    /// Starts a new blob, hashed with `algorithm` as it is written.
    /// The store's reserve must be in place first: a writer never spends
    /// it ([`crate::reserve`]).
    pub fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        self.writer_at(&self.tmp, algorithm)
    }

    /// Starts a new blob in the [`kept_dir`](Self::kept_dir) `kept` of
    /// `tmp/`: for a writer that does not hold the store lock all along,
    /// such as an upload session of `serve`, whose file gc must leave alone
    /// until the grace period is over.
    pub fn writer_in(&self, kept: &str, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        let (dir, _) = self.tmp.sub_or_create(kept)?;
        self.writer_at(&Arc::new(dir), algorithm)
    }

    fn writer_at(&self, dir: &Arc<Dir>, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        crate::reserve::require(self)?;
        let (temp, file) = TempFile::create(dir)?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: HashSink::new(algorithm.hasher()),
            size: 0,
            writeback_from: 0,
            unwritten: 0,
            temp,
        })
    }

    /// Removes a blob file (gc, repair); returns the shard directory it was
    /// in, for an fsync. A file already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<Option<PathBuf>, Error> {
        let Some(shard) = self.shard(digest)? else {
            return Ok(None);
        };
        shard.remove(digest.hex())?;
        Ok(Some(shard.path().to_path_buf()))
    }

    /// Visits the tree one shard at a time, in order: every shard a digest
    /// can have (`sha256/00` to `sha512/ff`, missing ones as empty), each
    /// sorted by name, so that a sweep holds one shard in memory, never the
    /// whole tree. Entries where a shard or algorithm directory should be
    /// (stray files, unknown names, links) come last, as shards with no
    /// algorithm. Every directory is opened without following links: a
    /// shard or algorithm directory that is a link fails the walk.
    pub fn for_each_shard(
        &self,
        mut visit: impl FnMut(Shard) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let blobs = self.root.sub("blobs")?;
        let mut strays = Vec::new();
        for entry in blobs.entries()? {
            let name = entry.name.to_string_lossy();
            let known = Algorithm::from_name(&name).is_some()
                && matches!(entry.kind, Kind::Dir | Kind::Link);
            if !known {
                strays.push(blobs.child_path(&entry.name));
            }
        }
        for algorithm in Algorithm::ALL {
            let alg_dir = blobs.try_sub(algorithm.name())?;
            let mut shard_names = Vec::new();
            if let Some(alg_dir) = &alg_dir {
                for entry in alg_dir.entries()? {
                    let name = entry.name.to_string_lossy();
                    if is_shard_name(&name) && matches!(entry.kind, Kind::Dir | Kind::Link) {
                        shard_names.push(entry.name);
                    } else {
                        strays.push(alg_dir.child_path(&entry.name));
                    }
                }
            }
            let mut existing = shard_names.into_iter().peekable();
            for n in 0..=255u8 {
                let prefix = format!("{n:02x}");
                let mut files = Vec::new();
                if let Some(alg_dir) = &alg_dir
                    && existing.peek().is_some_and(|name| *name == *prefix)
                {
                    existing.next();
                    // A link here fails the walk (Error::StoreLink).
                    let shard = alg_dir.sub(&prefix)?;
                    for entry in shard.entries()? {
                        let path = shard.child_path(&entry.name);
                        let name = entry.name.to_string_lossy();
                        let digest = Digest::parse(&format!("{algorithm}:{name}"))
                            .ok()
                            .filter(|d| entry.kind == Kind::File && path == self.path(d));
                        files.push((digest, path));
                    }
                }
                visit(Shard {
                    algorithm: Some(algorithm),
                    prefix,
                    files,
                })?;
            }
        }
        for stray in strays {
            visit(Shard::stray(stray))?;
        }
        Ok(())
    }

    /// Removes the entry at `path`, a path under the store's root (a file,
    /// a link, a directory with everything in it), reaching it from the
    /// root's descriptor without following links.
    pub fn remove_path(&self, path: &Path) -> Result<(), Error> {
        self.root.remove_at(self.relative(path)?)
    }

    /// The `lstat` of the entry at `path`, a path under the store's root,
    /// reached without following links; `None` if it (or its directory)
    /// is gone.
    pub fn meta_path(&self, path: &Path) -> Result<Option<Meta>, Error> {
        let rel = self.relative(path)?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(None);
        };
        match self.root.walk(parent) {
            Ok(dir) => dir.meta(name),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn relative<'p>(&self, path: &'p Path) -> Result<&'p Path, Error> {
        path.strip_prefix(self.root.path()).map_err(|_| {
            Error::Internal(format!(
                "{} is not inside the store {}",
                path.display(),
                self.root.path().display()
            ))
        })
    }

    /// fsyncs a directory under the store's root, reached without
    /// following links.
    pub fn sync_path(&self, dir: &Path) -> Result<(), Error> {
        self.root.walk(self.relative(dir)?)?.sync()
    }
}

/// A shard directory's name: two lower-case hex digits.
fn is_shard_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One shard directory's files, as (digest or `None` for a stray name, path).
pub(crate) struct Shard {
    pub algorithm: Option<Algorithm>,
    /// The directory's name: the first two hex digits of its blobs.
    pub prefix: String,
    pub files: Vec<(Option<Digest>, PathBuf)>,
}

impl Shard {
    fn stray(path: PathBuf) -> Shard {
        Shard {
            algorithm: None,
            prefix: String::new(),
            files: vec![(None, path)],
        }
    }
}

/// A temp file in `<store>/tmp/`, removed on drop unless kept, and on
/// SIGINT or SIGTERM ([`crate::signals`]). It holds only the name: an
/// archive import may stage thousands of blobs before it publishes any,
/// and must not hold a descriptor open for each.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub path: PathBuf,
    dir: Arc<Dir>,
    name: OsString,
    keep: bool,
    _staged: Staged,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other file of this process has, `<pid>-<n>-<nanos>` plus
/// `suffix`. The pid in the name tells whose it is.
fn unique_name(suffix: &str) -> OsString {
    let pid = std::process::id();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    OsString::from(format!("{pid}-{n}-{nanos:08x}{suffix}"))
}

/// Creates a file of a name no other one has in `dir` (see
/// [`unique_name`]), open for reading and writing, mode 0600; with
/// `staged`, registered for removal on interruption before it exists.
fn create_in(
    dir: &Arc<Dir>,
    suffix: &str,
    what: &'static str,
    staged: bool,
) -> Result<(OsString, File, Option<Staged>), Error> {
    loop {
        let name = unique_name(suffix);
        let created = if staged {
            signals::create_staged(dir, &name, || dir.create_file(&name)).map(|(s, f)| (f, Some(s)))
        } else {
            dir.create_file(&name).map(|f| (f, None))
        };
        match created {
            Ok((file, staged)) => return Ok((name, file, staged)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(what, &dir.child_path(&name), e)),
        }
    }
}

/// Creates a file of a name no other one has in `dir`, not registered for
/// removal on interruption (intent files must outlive the process).
pub(crate) fn create_unique(
    dir: &Dir,
    suffix: &str,
    what: &'static str,
) -> Result<(OsString, File), Error> {
    loop {
        let name = unique_name(suffix);
        match dir.create_file(&name) {
            Ok(file) => return Ok((name, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(what, &dir.child_path(&name), e)),
        }
    }
}

impl TempFile {
    /// Creates a new temp file in `dir`; returns it and a handle open for
    /// writing.
    pub fn create(dir: &Arc<Dir>) -> Result<(TempFile, File), Error> {
        let (name, file, staged) = create_in(dir, ".tmp", "create temp file", true)?;
        let temp = TempFile {
            path: dir.child_path(&name),
            dir: Arc::clone(dir),
            name,
            keep: false,
            _staged: staged.expect("created staged"),
        };
        Ok((temp, file))
    }

    /// Renames the file to `to` in `dest`; it is no temp file any more.
    pub fn rename_into(mut self, dest: &Dir, to: impl AsRef<std::ffi::OsStr>) -> io::Result<()> {
        self.dir.rename(&self.name, dest, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Removed before `_staged` unregisters it (fields drop after this).
        if !self.keep {
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// Streams bytes into a temp file while hashing them.
pub(crate) struct BlobWriter {
    out: BufWriter<File>,
    hasher: HashSink,
    size: u64,
    /// Bytes already handed to the kernel for writeback.
    writeback_from: u64,
    /// Where the bytes [`fill_from`](Self::fill_from) read into the
    /// hasher's pending buffer and did not write yet begin: they go to the
    /// file from that buffer, a chunk at a time, never copied.
    unwritten: usize,
    temp: TempFile,
}

/// Start writeback every this many bytes, so that the fsync at publish
/// finds little left to do instead of stalling on the whole blob.
const WRITEBACK_EVERY: u64 = 16 << 20;

impl BlobWriter {
    /// The bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the buffer, closes the file and returns the blob's digest,
    /// not yet durable.
    pub fn finish(mut self) -> Result<StagedBlob, Error> {
        self.write_pending()
            .and_then(|()| self.out.flush())
            .ctx("write temp file", &self.temp.path)?;
        drop(self.out);
        crate::failpoint::hit("blob-after-temp-write");
        Ok(StagedBlob {
            digest: self
                .hasher
                .finish()
                .ctx("hash temp file", &self.temp.path)?,
            size: self.size,
            temp: self.temp,
            durable: false,
        })
    }
}

/// Why [`BlobWriter::fill_from`] failed: reading the input or writing the
/// temp file.
#[derive(Debug)]
pub(crate) enum FillError {
    Read(io::Error),
    Write(io::Error),
}

impl BlobWriter {
    /// Reads the next bytes of the blob from `input` straight into the
    /// buffer the hasher takes them from; that buffer goes to the temp file
    /// once full (or at [`finish`](Self::finish)), in one write: two copies
    /// fewer than [`Write::write_all`], which must copy what it is given
    /// into the hasher's buffer and the file's. Returns the bytes read,
    /// empty at the end of `input`; they stay readable until the next call.
    pub fn fill_from(&mut self, input: &mut impl Read) -> Result<&[u8], FillError> {
        if self.hasher.filled == HASH_CHUNK {
            // The hasher is about to take the buffer, and to start afresh.
            self.write_pending().map_err(FillError::Write)?;
            self.unwritten = 0;
        }
        let room = self.hasher.room().map_err(FillError::Write)?;
        let n = read_some(input, room).map_err(FillError::Read)?;
        self.size += n as u64;
        Ok(self.hasher.commit(n))
    }

    /// Writes what [`fill_from`](Self::fill_from) left in the hasher's
    /// buffer, so that the file has every byte given before.
    fn write_pending(&mut self) -> io::Result<()> {
        let end = self.hasher.filled;
        if self.unwritten < end {
            self.out
                .write_all(&self.hasher.pending[self.unwritten..end])?;
            self.unwritten = end;
            self.writeback();
        }
        Ok(())
    }

    /// Counts `n` bytes just written through `out` and hashed.
    fn wrote(&mut self, n: usize) {
        self.size += n as u64;
        // Nothing of the hasher's buffer is waiting for the file.
        self.unwritten = self.hasher.filled;
        self.writeback();
    }

    /// Starts writeback of what reached the file since the last time, once
    /// there is enough of it.
    fn writeback(&mut self) {
        let waiting = self.out.buffer().len() + (self.hasher.filled - self.unwritten);
        let written = self.size - waiting as u64;
        if written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(self.out.get_ref(), self.writeback_from, written);
            self.writeback_from = written;
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_pending()?;
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n])?;
        self.wrote(n);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_pending()?;
        self.out.write_all(buf)?;
        self.hasher.update(buf)?;
        self.wrote(buf.len());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }
}

/// `Read::read`, retried when interrupted.
pub(crate) fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Asks the kernel to start writing a range of a file to disk without
/// waiting for it (Linux `sync_file_range`). Only a hint: durability still
/// comes from the fsync at publish, so a failure here is ignored.
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Bytes gathered before they go to the hasher, and how many such buffers
/// a blob may have in flight: 4 MiB at most per writer.
const HASH_CHUNK: usize = 1 << 20;
const HASH_CHUNKS: usize = 4;

/// The hashing side of a [`BlobWriter`]. A blob larger than one chunk is
/// hashed on a thread of its own, so that hashing (the costliest stage of a
/// plain import) runs beside the writing and the parsing instead of after
/// them; a small one is hashed in place and costs no thread.
///
/// Buffers keep their full length for life (`filled` says how much holds
/// bytes), so that reading into one never pays for zeroing it first.
struct HashSink {
    /// Bytes not yet hashed: the first `filled` of a chunk-long buffer
    /// (empty until the first byte comes).
    pending: Vec<u8>,
    filled: usize,
    state: HashState,
}

enum HashState {
    Here(Hasher),
    Thread {
        full: SyncSender<(Vec<u8>, usize)>,
        empty: Receiver<Vec<u8>>,
        /// Buffers that may still be made before one must come back.
        spare: usize,
        thread: JoinHandle<Hasher>,
    },
    /// Poisoned by a failure of the hashing thread.
    Gone,
}

impl HashSink {
    fn new(hasher: Hasher) -> HashSink {
        HashSink {
            pending: Vec::new(),
            filled: 0,
            state: HashState::Here(hasher),
        }
    }

    fn update(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = self.room()?;
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// The free end of the pending buffer, handing a full one over first.
    fn room(&mut self) -> io::Result<&mut [u8]> {
        if self.filled == HASH_CHUNK {
            self.hand_over()?;
        }
        if self.pending.is_empty() {
            self.pending = vec![0; HASH_CHUNK];
        }
        Ok(&mut self.pending[self.filled..])
    }

    /// Counts `n` bytes just put into [`room`](Self::room) and returns them.
    fn commit(&mut self, n: usize) -> &[u8] {
        let start = self.filled;
        self.filled += n;
        &self.pending[start..self.filled]
    }

    /// Sends the full pending buffer to the hashing thread, starting it
    /// with the hasher's state the first time.
    fn hand_over(&mut self) -> io::Result<()> {
        if let HashState::Here(_) = self.state {
            let HashState::Here(hasher) = std::mem::replace(&mut self.state, HashState::Gone)
            else {
                unreachable!()
            };
            let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(HASH_CHUNKS);
            let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(HASH_CHUNKS);
            let thread = std::thread::Builder::new()
                .name("blob-hash".into())
                .spawn(move || {
                    let mut hasher = hasher;
                    for (buf, filled) in full_rx {
                        hasher.update(&buf[..filled]);
                        let _ = empty_tx.send(buf);
                    }
                    hasher
                })?;
            self.state = HashState::Thread {
                full: full_tx,
                empty: empty_rx,
                spare: HASH_CHUNKS,
                thread,
            };
        }
        let HashState::Thread {
            full, empty, spare, ..
        } = &mut self.state
        else {
            return Err(hash_thread_gone());
        };
        let next = if *spare > 0 {
            *spare -= 1;
            vec![0; HASH_CHUNK]
        } else {
            empty.recv().map_err(|_| hash_thread_gone())?
        };
        let buf = std::mem::replace(&mut self.pending, next);
        let filled = std::mem::take(&mut self.filled);
        full.send((buf, filled)).map_err(|_| hash_thread_gone())
    }

    fn finish(mut self) -> io::Result<Digest> {
        match std::mem::replace(&mut self.state, HashState::Gone) {
            HashState::Here(mut hasher) => {
                hasher.update(&self.pending[..self.filled]);
                Ok(hasher.finish())
            }
            HashState::Thread {
                full,
                empty,
                thread,
                ..
            } => {
                // Buffers coming back have nowhere to go now: the thread
                // must not wait for a place to put them.
                drop(empty);
                let sent = full.send((std::mem::take(&mut self.pending), self.filled));
                drop(full);
                let hasher = thread.join().map_err(|_| hash_thread_gone())?;
                sent.map_err(|_| hash_thread_gone())?;
                Ok(hasher.finish())
            }
            HashState::Gone => Err(hash_thread_gone()),
        }
    }
}

fn hash_thread_gone() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

/// A fully written, hashed temp file waiting to be published or dropped.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    pub digest: Digest,
    pub size: u64,
    temp: TempFile,
    /// The temp file's bytes are on disk already ([`Self::make_durable`]).
    durable: bool,
}

impl StagedBlob {
    /// Where the bytes wait, for a reader that needs them before publish
    /// (an archive's manifests and configs).
    pub fn temp_path(&self) -> &Path {
        &self.temp.path
    }

    /// Fsyncs the temp file now, so that [`publish_all`] need not: a writer
    /// with blobs still to come (a pull's other downloads) does it beside
    /// them instead of in the commit. A temp file is nobody's until it is
    /// renamed, so this changes nothing a crash could leave.
    pub fn make_durable(&mut self) -> Result<(), Error> {
        if !self.durable {
            File::open(&self.temp.path)
                .and_then(|f| f.sync_all())
                .ctx("fsync temp file", &self.temp.path)?;
            self.durable = true;
        }
        Ok(())
    }
}

/// Makes staged blobs durable at their final paths (DESIGN.md §3.2): each
/// temp file fsynced (unless it was already), made read-only and renamed
/// into its shard; then every directory a rename or a new shard changed is
/// fsynced, once each, before this returns. A blob the tree already has is
/// dropped without an fsync.
pub(crate) fn publish_all(
    tree: &BlobTree,
    blobs: impl IntoIterator<Item = StagedBlob>,
) -> Result<(), Error> {
    // The directories to fsync, once each: algorithm directories that got
    // a new shard, and the shards renamed into.
    let mut algs: Vec<Dir> = Vec::new();
    let mut shards: Vec<Dir> = Vec::new();
    let note = |dirs: &mut Vec<Dir>, dir: Dir| {
        if !dirs.iter().any(|d| d.path() == dir.path()) {
            dirs.push(dir);
        }
    };
    for mut blob in blobs {
        if tree.contains(&blob.digest) {
            continue;
        }
        let dest = tree.path(&blob.digest);
        crate::failpoint::hit("publish-before-fsync");
        blob.make_durable()?;
        fs::set_permissions(&blob.temp.path, fs::Permissions::from_mode(0o444))
            .ctx("make blob read-only", &blob.temp.path)?;
        // Reached without following links: a shard that is a link fails
        // here, before anything lands outside the store.
        let (shard, new_in) = tree.shard_for_write(&blob.digest)?;
        blob.temp
            .rename_into(&shard, blob.digest.hex())
            .ctx("rename blob into place", &dest)?;
        crate::failpoint::hit("publish-after-rename");
        if let Some(alg) = new_in {
            note(&mut algs, alg);
        }
        note(&mut shards, shard);
        // Each directory held is a descriptor: an image of thousands of
        // blobs must not run out of them.
        if algs.len() + shards.len() >= MAX_DIRS_HELD {
            sync_dirs(&mut algs, &mut shards)?;
        }
    }
    sync_dirs(&mut algs, &mut shards)
}

/// Directories [`publish_all`] keeps open before it fsyncs them.
const MAX_DIRS_HELD: usize = 16;

/// Fsyncs and closes the directories renamed into, parents first: a new
/// shard's entry, then what was renamed into it.
fn sync_dirs(algs: &mut Vec<Dir>, shards: &mut Vec<Dir>) -> Result<(), Error> {
    for dir in algs.drain(..).chain(shards.drain(..)) {
        dir.sync()?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

/// Reads a blob and fails at end of file if its bytes do not hash to the
/// expected digest, so a reader never silently passes on corrupted data.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    path: PathBuf,
}

impl<R: Read> VerifiedReader<R> {
    pub(crate) fn new(inner: R, expected: Digest, path: PathBuf) -> Self {
        VerifiedReader {
            inner,
            hasher: Some(expected.algorithm().hasher()),
            expected,
            path,
        }
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let found = h.finish();
            if found != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Error::DigestMismatch {
                        expected: self.expected.clone(),
                        found,
                        path: self.path.clone(),
                    },
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_hashed_on_a_thread_has_the_digest_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tree = BlobTree::open(Arc::new(Dir::open_root(dir.path()).unwrap())).unwrap();
        // Several chunks and a ragged end, in pieces that straddle chunks.
        let bytes: Vec<u8> = (0..(5 * HASH_CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut w = tree.writer(alg).unwrap();
            for piece in bytes.chunks(300_001) {
                w.write_all(piece).unwrap();
            }
            let staged = w.finish().unwrap();
            assert_eq!(staged.digest, Digest::of(alg, &bytes));
            assert_eq!(staged.size, bytes.len() as u64);
            assert_eq!(fs::read(staged.temp_path()).unwrap(), bytes);
        }
    }

    #[test]
    fn fill_from_and_write_all_mixed_keep_the_bytes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let tree = BlobTree::open(Arc::new(Dir::open_root(dir.path()).unwrap())).unwrap();
        let bytes: Vec<u8> = (0..(3 * HASH_CHUNK + 4321))
            .map(|i| (i * 31 % 239) as u8)
            .collect();
        let mut w = tree.writer(Algorithm::Sha256).unwrap();
        let mut at = 0;
        let mut turn = 0;
        while at < bytes.len() {
            // Pieces that end short of, on and past chunk boundaries.
            let len = [70_001, HASH_CHUNK / 2, 5, HASH_CHUNK][turn % 4].min(bytes.len() - at);
            if turn % 3 == 0 {
                w.write_all(&bytes[at..at + len]).unwrap();
                at += len;
            } else {
                let mut input = &bytes[at..at + len];
                while !input.is_empty() {
                    let n = w.fill_from(&mut input).unwrap().len();
                    at += n;
                }
            }
            turn += 1;
        }
        assert_eq!(w.size(), bytes.len() as u64);
        let staged = w.finish().unwrap();
        assert_eq!(staged.digest, Digest::of(Algorithm::Sha256, &bytes));
        assert_eq!(fs::read(staged.temp_path()).unwrap(), bytes);
    }

    #[test]
    fn a_blob_filled_from_a_reader_matches_one_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let tree = BlobTree::open(Arc::new(Dir::open_root(dir.path()).unwrap())).unwrap();
        for len in [0, 1, HASH_CHUNK - 1, HASH_CHUNK, 3 * HASH_CHUNK + 777] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 241) as u8).collect();
            // A reader that hands out ragged pieces, as a tar entry does.
            let mut input = io::Cursor::new(&bytes).take(len as u64);
            let mut w = tree.writer(Algorithm::Sha256).unwrap();
            let mut seen = Vec::new();
            loop {
                let chunk = w.fill_from(&mut (&mut input).take(300_001)).unwrap();
                if chunk.is_empty() {
                    break;
                }
                seen.extend_from_slice(chunk);
            }
            assert_eq!(seen, bytes);
            let staged = w.finish().unwrap();
            assert_eq!(staged.digest, Digest::of(Algorithm::Sha256, &bytes));
            assert_eq!(staged.size, len as u64);
            assert_eq!(fs::read(staged.temp_path()).unwrap(), bytes);
        }
    }
}
