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
//! into a temp file under `<store>/tmp/` while hashing; [`StagedBlob::publish`]
//! then runs the durability sequence of DESIGN.md §3.2: fsync the file, make
//! it read-only, rename it into its shard, fsync the shard directory. Only
//! after that may the index name the blob. A staged blob that is dropped
//! without being published removes its temp file.
//!
//! The tree knows nothing of images or reference counts; that is the index's
//! business.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext};

/// Buffer size for blob writes: large enough that the write syscalls vanish
/// next to hashing.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct BlobTree {
    blobs: PathBuf,
    tmp: PathBuf,
    intents: PathBuf,
}

impl BlobTree {
    pub fn open(store: &Path) -> Result<BlobTree, Error> {
        let blobs = store.join("blobs");
        let tmp = store.join("tmp");
        let intents = store.join("intents");
        for dir in [&blobs, &tmp, &intents] {
            fs::create_dir_all(dir).ctx("create directory", dir)?;
        }
        Ok(BlobTree {
            blobs,
            tmp,
            intents,
        })
    }

    /// Temp files of running writers: stale once no writer holds the
    /// store lock, so gc removes them all.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// A directory under `tmp/` for files that outlive a process on
    /// purpose (`partial`: downloads to resume; `uploads`: upload sessions
    /// of `serve`); gc removes what is older than its grace period.
    /// Created on first use.
    pub fn kept_dir(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.tmp.join(name);
        fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        Ok(dir)
    }

    /// Where writers record the blobs they may leave without a row
    /// ([`crate::intents`]).
    pub fn intents_dir(&self) -> &Path {
        &self.intents
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Opens a blob for reading, verifying its digest as it is read.
    pub fn read(&self, digest: &Digest) -> Result<VerifiedReader<File>, Error> {
        let path = self.path(digest);
        let file = File::open(&path).ctx("open blob", &path)?;
        Ok(VerifiedReader::new(file, digest.clone(), path))
    }

    /// Starts a new blob, hashed with `algorithm` as it is written.
    pub fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        self.writer_in(&self.tmp, algorithm)
    }

    /// Starts a new blob in `dir`, a [`kept_dir`](Self::kept_dir) of
    /// `tmp/`: for a writer that does not hold the store lock all along,
    /// such as an upload session of `serve`, whose file gc must leave alone
    /// until the grace period is over.
    pub fn writer_in(&self, dir: &Path, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        let (temp, file) = TempFile::create(dir)?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: HashSink::new(algorithm.hasher()),
            size: 0,
            writeback_from: 0,
            temp,
        })
    }

    /// Removes a blob file (gc, repair). A file already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("remove blob", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Visits the tree one shard at a time, in order: every shard a digest
    /// can have (`sha256/00` to `sha512/ff`, missing ones as empty), each
    /// sorted by name, so that a sweep holds one shard in memory, never the
    /// whole tree. Entries where a shard or algorithm directory should be
    /// (stray files, unknown names) come last, as shards with no algorithm.
    pub fn for_each_shard(
        &self,
        mut visit: impl FnMut(Shard) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut strays = Vec::new();
        for alg_dir in read_dir_sorted(&self.blobs)? {
            let name = alg_dir.file_name().unwrap_or_default().to_string_lossy();
            let known = Algorithm::from_name(&name).is_some() && alg_dir.is_dir();
            if !known {
                strays.push(alg_dir);
            }
        }
        for algorithm in Algorithm::ALL {
            let alg_dir = self.blobs.join(algorithm.name());
            let mut shard_dirs = Vec::new();
            if alg_dir.is_dir() {
                for shard_dir in read_dir_sorted(&alg_dir)? {
                    let name = shard_dir.file_name().unwrap_or_default().to_string_lossy();
                    if is_shard_name(&name) && shard_dir.is_dir() {
                        shard_dirs.push(shard_dir);
                    } else {
                        strays.push(shard_dir);
                    }
                }
            }
            let mut existing = shard_dirs.into_iter().peekable();
            for n in 0..=255u8 {
                let prefix = format!("{n:02x}");
                let dir = alg_dir.join(&prefix);
                let files = if existing.peek() == Some(&dir) {
                    existing.next();
                    read_dir_sorted(&dir)?
                        .into_iter()
                        .map(|file| {
                            let name = file.file_name().unwrap_or_default().to_string_lossy();
                            let digest = Digest::parse(&format!("{algorithm}:{name}"))
                                .ok()
                                .filter(|d| file == self.path(d));
                            (digest, file)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
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

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).ctx("read directory", dir)? {
        entries.push(entry.ctx("read directory", dir)?.path());
    }
    entries.sort();
    Ok(entries)
}

/// A temp file in `<store>/tmp/`, removed on drop unless kept. It holds
/// only the name: an archive import may stage thousands of blobs before it
/// publishes any, and must not hold a descriptor open for each.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub path: PathBuf,
    keep: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a file of a name no other one has in `dir`, `<pid>-<n>-<nanos>`
/// plus `suffix`, open for reading and writing, mode 0600. The pid in the
/// name tells whose it is.
pub(crate) fn create_unique(
    dir: &Path,
    suffix: &str,
    what: &'static str,
) -> Result<(PathBuf, File), Error> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("{pid}-{n}-{nanos:08x}{suffix}"));
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(what, &path, e)),
        }
    }
}

impl TempFile {
    /// Creates a new temp file; returns it and a handle open for writing.
    pub fn create(dir: &Path) -> Result<(TempFile, File), Error> {
        let (path, file) = create_unique(dir, ".tmp", "create temp file")?;
        Ok((TempFile { path, keep: false }, file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
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
        self.out.flush().ctx("write temp file", &self.temp.path)?;
        drop(self.out);
        crate::failpoint::hit("blob-after-temp-write");
        Ok(StagedBlob {
            digest: self
                .hasher
                .finish()
                .ctx("hash temp file", &self.temp.path)?,
            size: self.size,
            temp: self.temp,
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
    /// buffer the hasher takes them from, and writes them to the temp file:
    /// one copy fewer than [`Write::write_all`], which must copy what it is
    /// given. Returns the bytes read, empty at the end of `input`; they stay
    /// readable until the next call.
    pub fn fill_from(&mut self, input: &mut impl Read) -> Result<&[u8], FillError> {
        let room = self.hasher.room().map_err(FillError::Write)?;
        let n = read_some(input, room).map_err(FillError::Read)?;
        let bytes = self.hasher.commit(n);
        self.out.write_all(bytes).map_err(FillError::Write)?;
        self.size += n as u64;
        writeback(&self.out, self.size, &mut self.writeback_from);
        Ok(bytes)
    }

    fn wrote(&mut self, n: usize) {
        self.size += n as u64;
        writeback(&self.out, self.size, &mut self.writeback_from);
    }
}

/// Starts writeback of what reached the file since the last time, once
/// there is enough of it.
fn writeback(out: &BufWriter<File>, size: u64, from: &mut u64) {
    let written = size - out.buffer().len() as u64;
    if written - *from >= WRITEBACK_EVERY {
        start_writeback(out.get_ref(), *from, written);
        *from = written;
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n])?;
        self.wrote(n);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)?;
        self.hasher.update(buf)?;
        self.wrote(buf.len());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
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
}

impl StagedBlob {
    /// Where the bytes wait, for a reader that needs them before publish
    /// (an archive's manifests and configs).
    pub fn temp_path(&self) -> &Path {
        &self.temp.path
    }

    /// Makes the blob durable at its final path. If the tree already has the
    /// blob, the temp file is dropped without an fsync.
    pub fn publish(mut self, tree: &BlobTree) -> Result<(), Error> {
        if tree.contains(&self.digest) {
            return Ok(());
        }
        let dest = tree.path(&self.digest);
        crate::failpoint::hit("publish-before-fsync");
        File::open(&self.temp.path)
            .and_then(|f| f.sync_all())
            .ctx("fsync temp file", &self.temp.path)?;
        fs::set_permissions(&self.temp.path, fs::Permissions::from_mode(0o444))
            .ctx("make blob read-only", &self.temp.path)?;
        let shard = dest.parent().expect("blob path has a shard");
        if !shard.is_dir() {
            fs::create_dir_all(shard).ctx("create shard directory", shard)?;
            sync_dir(shard.parent().expect("shard has a parent"))?;
        }
        fs::rename(&self.temp.path, &dest).ctx("rename blob into place", &dest)?;
        self.temp.keep = true;
        crate::failpoint::hit("publish-after-rename");
        sync_dir(shard)
    }
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
        let tree = BlobTree::open(dir.path()).unwrap();
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
    fn a_blob_filled_from_a_reader_matches_one_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let tree = BlobTree::open(dir.path()).unwrap();
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
