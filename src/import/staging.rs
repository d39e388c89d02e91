//! Staging: the bytes of members and files streamed into temp files of the
//! blob tree, hashed as they are written (and, with `--verify-layers`,
//! decompressed for their diff_ids on threads of their own), by up to one
//! thread per core ([`crate::parallel`]), largest first, with their fsyncs
//! started early. Nothing is published here: a [`crate::publish`] commit
//! does that once the whole input checked out.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use super::Importer;
use super::graph::Blobs;
use super::members::{Job, stream_error, truncated};
use crate::blobs::{FillError, StagedBlob, read_some};
use crate::compression::Compression;
use crate::digest::{Algorithm, Digest};
use crate::error::DecompressError;
use crate::error::Error;
use crate::input::open_input;
use crate::layer::DiffHasher;

/// The smallest blob whose flush [`Syncer`] starts early.
const EARLY_SYNC_MIN: u64 = 1 << 20;

/// Most workers staging members at once.
const MAX_WORKERS: usize = 4;

/// Stages whole files (the layers of a layout directory) on several
/// threads, largest first, each held to the digest it is named by. Only a
/// head start for a walk that asks for blobs one at a time: a file that
/// cannot be read or does not hash to its name is left out, for the walk
/// to meet and report.
pub(super) fn stage_files(ctx: &Importer, files: Vec<(PathBuf, Digest, u64)>) -> Blobs {
    let ranges: Vec<Range> = files
        .into_iter()
        .map(|(file, digest, size)| Range {
            file,
            offset: 0,
            size,
            job: Job {
                name: String::new(),
                named: None,
                alg: digest.algorithm(),
                claimed: Some(digest),
                present: false,
            },
        })
        .collect();
    let syncer = Syncer::start();
    let results = stage_ranges(ctx, &ranges, &syncer);
    syncer.finish();
    let mut blobs = Blobs::default();
    for (range, result) in ranges.iter().zip(results) {
        let Some(Ok((Landed::Staged(staged), diff))) = result else {
            continue;
        };
        if range.job.claimed.as_ref() != Some(&staged.digest) {
            continue;
        }
        if let Some(diff) = diff {
            blobs.diffs.insert(staged.digest.clone(), diff);
        }
        blobs.staged.insert(staged.digest.clone(), staged);
    }
    blobs
}

/// A member's bytes: a range of a plain archive, or a whole file.
pub(super) struct Range {
    pub file: PathBuf,
    pub job: Job,
    pub offset: u64,
    pub size: u64,
}

pub(super) type Staged = Result<(Landed, Option<Result<Digest, DecompressError>>), Error>;

/// Stages the ranges on a few threads, largest first; the results come
/// back in the ranges' order. After a failure the threads take no new
/// ranges, and those have no result.
pub(super) fn stage_ranges(
    ctx: &Importer,
    ranges: &[Range],
    syncer: &Syncer,
) -> Vec<Option<Staged>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ranges[i].size));
    crate::parallel::run(
        ranges,
        order,
        crate::parallel::workers(MAX_WORKERS),
        // A descriptor per thread, kept while the ranges are of one file:
        // the kernel keeps readahead state per open file, and two streams
        // sharing one would defeat it.
        || None::<(PathBuf, File)>,
        |open, range| {
            let result = match open {
                Some((path, file)) if *path == range.file => stage_range(ctx, path, file, range),
                _ => open_input(&range.file).and_then(|file| {
                    advise_sequential(&file);
                    let (path, file) = open.insert((range.file.clone(), file));
                    stage_range(ctx, path, file, range)
                }),
            };
            if let Ok((Landed::Staged(staged), _)) = &result {
                syncer.sync(staged);
            }
            result
        },
    )
}

/// Stages one member from its byte range.
fn stage_range(ctx: &Importer, path: &Path, file: &File, range: &Range) -> Staged {
    let mut reader = RangeReader {
        file,
        pos: range.offset,
        end: range.offset + range.size,
    };
    let (landed, diff) = stage(
        ctx,
        path,
        &mut ctx.progress.reader(&mut reader),
        range.job.alg,
        range.job.present,
    )?;
    let size = match &landed {
        Landed::Staged(s) => s.size,
        Landed::Present { size, .. } => *size,
    };
    if size != range.size {
        // The file shrank under us.
        return Err(truncated(path));
    }
    Ok((landed, diff))
}

/// Reads a byte range of a file with `pread`, so threads share no offset.
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Tells the kernel a file is read front to back (a larger readahead).
fn advise_sequential(file: &File) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; only a hint.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Flushes staged temp files to disk on a thread of its own while the
/// archive is still being read, so that the disk writes of one member
/// overlap the reading of the next instead of all waiting for the fsyncs at
/// publish. Only a head start: publish still fsyncs every blob before
/// renaming it (DESIGN.md §3.2), and finds little left to do.
pub(super) struct Syncer {
    tx: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub fn start() -> Syncer {
        let (tx, rx) = channel::<PathBuf>();
        let thread = std::thread::Builder::new()
            .name("early-fsync".into())
            .spawn(move || {
                for path in rx {
                    // A failure is left for publish to find and report.
                    let _ = File::open(&path).and_then(|f| f.sync_all());
                }
            });
        match thread {
            Ok(thread) => Syncer {
                tx: Some(tx),
                thread: Some(thread),
            },
            Err(_) => Syncer {
                tx: None,
                thread: None,
            },
        }
    }

    /// Starts flushing a staged blob, unless it is small: a small file's
    /// flush gains little from a head start, and an archive of thousands
    /// of small documents (a crafted index chain, say) would wait for
    /// thousands of fsyncs before its graph is even checked. Publish
    /// flushes every blob, small or not.
    pub fn sync(&self, staged: &StagedBlob) {
        if staged.size < EARLY_SYNC_MIN {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(staged.temp_path().to_path_buf());
        }
    }

    /// Waits for the fsyncs asked for so far.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a member's bytes went.
pub(super) enum Landed {
    Staged(StagedBlob),
    /// The store has the blob: hashed only.
    Present {
        digest: Digest,
        size: u64,
    },
}

/// Streams one member into a blob writer (or only a hasher, if the store
/// has it already), feeding a diff hasher when layers are verified.
pub(super) fn stage(
    ctx: &Importer,
    path: &Path,
    entry: &mut impl Read,
    alg: Algorithm,
    present: bool,
) -> Result<(Landed, Option<Result<Digest, DecompressError>>), Error> {
    let mut writer = if present {
        None
    } else {
        Some(ctx.tree.writer(alg)?)
    };
    let mut hasher = alg.hasher();
    let mut size = 0u64;
    let mut diff: Option<DiffHasher> = None;
    // With --verify-layers, the first bytes until there are enough to tell
    // a compressed layer by its magic (a read may return only a few).
    let mut head: Option<Vec<u8>> = ctx.options.verify_layers.then(Vec::new);
    let mut buf = Vec::new();
    loop {
        let chunk = match writer.as_mut() {
            Some(w) => w.fill_from(entry).map_err(|e| match e {
                FillError::Read(e) => stream_error(path, e),
                FillError::Write(e) => Error::io("write temp file", ctx.tree.tmp_dir(), e),
            })?,
            None => {
                buf.resize(1 << 20, 0);
                let n = read_some(entry, &mut buf).map_err(|e| stream_error(path, e))?;
                hasher.update(&buf[..n]);
                &buf[..n]
            }
        };
        if chunk.is_empty() {
            break;
        }
        size += chunk.len() as u64;
        match head.as_mut() {
            Some(h) => {
                h.extend_from_slice(chunk);
                if h.len() >= SNIFF_BYTES {
                    diff = start_diff(h);
                    head = None;
                }
            }
            None => {
                if let Some(d) = diff.as_mut() {
                    d.feed(chunk);
                }
            }
        }
    }
    if let Some(h) = head {
        diff = start_diff(&h);
    }
    let diff = diff.map(DiffHasher::finish);
    let landed = match writer {
        Some(w) => Landed::Staged(w.finish()?),
        None => Landed::Present {
            digest: hasher.finish(),
            size,
        },
    };
    Ok((landed, diff))
}

/// Bytes enough to tell gzip and zstd data by their magic.
const SNIFF_BYTES: usize = 8;

/// A diff hasher fed with a member's first bytes, if they look like a
/// compressed layer.
fn start_diff(head: &[u8]) -> Option<DiffHasher> {
    looks_like_layer(head).then(|| {
        let mut d = DiffHasher::start(Algorithm::Sha256);
        d.feed(head);
        d
    })
}

/// Whether the first bytes of a member look like a compressed layer (gzip
/// or zstd data). A plain tar needs no decompressing: its diff_id is its
/// digest, which the writer computes anyway.
fn looks_like_layer(head: &[u8]) -> bool {
    matches!(
        Compression::sniff(head),
        Compression::Gzip | Compression::Zstd
    )
}
