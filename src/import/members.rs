//! One pass over an image archive (oci-archive or docker-archive), whose
//! members come in any order.
//!
//! Each member is dealt with as it streams past, never extracted first:
//! - `blobs/<alg>/<hex>` is hashed as it is written to a temp file and must
//!   hash to its name; if the store already has that blob it is only hashed,
//!   not written.
//! - the layout's and docker's metadata files (`oci-layout`, `index.json`,
//!   `manifest.json`, `repositories`) are kept in memory (they are small).
//! - in a docker archive every other regular file is staged too, keyed by
//!   its path, since `manifest.json` (which may come last) names layers and
//!   configs by path; in an OCI archive other files are skipped.
//!
//! With `--verify-layers`, a member whose first bytes look like a gzip or
//! zstd stream also feeds a [`DiffHasher`] on its own thread.
//!
//! Symbolic and hard links (docker's legacy `<id>/layer.tar` often is one)
//! are recorded and resolved by [`Members::file`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use super::diff_id::DiffHasher;
use super::graph::Blobs;
use super::pipeline::{self, Compression};
use super::{Importer, spec};
use crate::blobs::{FillError, StagedBlob, read_some};
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, DecompressError, Error, IoContext};

/// Metadata files read into memory.
const METADATA: [&str; 4] = ["oci-layout", "index.json", "manifest.json", "repositories"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Keep `blobs/…` and the metadata files only.
    Oci,
    /// Stage every regular file.
    Docker,
}

/// What one pass over an archive found.
#[derive(Default)]
pub(super) struct Members {
    pub blobs: Blobs,
    /// Metadata files by name.
    pub metadata: HashMap<String, Vec<u8>>,
    /// Other staged files by path, with their sha256 digests.
    pub files: HashMap<String, Digest>,
    /// Links by path: normalized target path.
    pub links: HashMap<String, String>,
}

impl Members {
    /// The digest of the file at `name`, following links (a bounded number
    /// of them, so that a link cycle ends).
    pub fn file(&self, name: &str) -> Option<Digest> {
        let mut name = name.to_string();
        for _ in 0..16 {
            if let Some(d) = self.files.get(&name) {
                return Some(d.clone());
            }
            if let Some(d) = blob_name(&name).filter(|d| self.blobs.size(d).is_some()) {
                return Some(d);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }
}

/// Reads an archive through once. The tar must be complete.
pub(super) fn read(ctx: &Importer, path: &Path, mode: Mode) -> Result<Members, Error> {
    if let Some(members) = read_seekable(ctx, path, mode)? {
        return Ok(members);
    }
    let mut stream = pipeline::start(path, ctx.progress.clone(), None)?;
    let syncer = Syncer::start();
    let members = scan(ctx, path, mode, &mut stream, &syncer)?;
    syncer.finish();
    stream.drain().map_err(|e| stream_error(path, e))?;
    if !stream.ends_in_zero_blocks() {
        return Err(truncated(path));
    }
    Ok(members)
}

/// Most workers staging the members of a plain archive at once.
const MAX_WORKERS: usize = 4;

/// Reads a plain (uncompressed) tar file by seeking instead of streaming:
/// one pass over the headers only, then the members are staged from their
/// byte ranges by up to [`MAX_WORKERS`] threads, largest first. Hashing
/// dominates a plain import and the layers of an image are independent, so
/// hashing two of them at once uses both cores where one stream would
/// leave one idle. `None` if the input is compressed, not a regular file or
/// holds sparse members: the streaming reader takes those.
fn read_seekable(ctx: &Importer, path: &Path, mode: Mode) -> Result<Option<Members>, Error> {
    use std::os::unix::fs::FileExt;

    let file = File::open(path).ctx("open", path)?;
    let meta = file.metadata().ctx("read", path)?;
    if !meta.is_file() {
        return Ok(None);
    }
    let len = meta.len();
    let mut head = [0u8; 8];
    let n = file.read_at(&mut head, 0).ctx("read", path)?;
    if Compression::sniff(&head[..n]) != Compression::None {
        return Ok(None);
    }
    let mut members = Members::default();
    let mut jobs = Vec::new();
    // Where the next header would start: the end-of-archive blocks must be
    // there.
    let mut end = 0u64;
    let mut archive = tar::Archive::new(&file);
    for entry in archive
        .entries_with_seek()
        .map_err(|e| stream_error(path, e))?
    {
        let mut entry = entry.map_err(|e| stream_error(path, e))?;
        if entry.header().entry_type() == tar::EntryType::GNUSparse {
            return Ok(None);
        }
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset.saturating_add(size) > len {
            return Err(truncated(path));
        }
        end = (offset + size).div_ceil(512) * 512;
        if let Some(job) = classify(ctx, path, mode, &mut entry, &mut members)? {
            jobs.push(Range {
                file: path.to_path_buf(),
                job,
                offset,
                size,
            });
        }
    }
    if end + 1024 > len || !only_zeros(&file, path, end, len)? {
        return Err(truncated(path));
    }
    let syncer = Syncer::start();
    let results = stage_ranges(ctx, &jobs, &syncer);
    syncer.finish();
    // After a failure the ranges not yet taken have no result: report the
    // first failure in archive order, not their absence.
    let mut staged = Vec::with_capacity(results.len());
    let mut failure = None;
    for result in results {
        match result {
            Some(Ok(landed)) => staged.push(Some(landed)),
            Some(Err(e)) => {
                failure.get_or_insert(e);
                staged.push(None);
            }
            None => staged.push(None),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    for (range, landed) in jobs.into_iter().zip(staged) {
        let (landed, diff) = landed.expect("without a failure every range is staged");
        members.record(path, range.job, landed, diff)?;
    }
    Ok(Some(members))
}

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
struct Range {
    file: PathBuf,
    job: Job,
    offset: u64,
    size: u64,
}

/// A tar archive that ends early.
pub(super) fn truncated(path: &Path) -> Error {
    Error::archive(
        path,
        ArchiveErrorKind::Truncated {
            compression: Compression::None,
        },
    )
}

/// Whether the file holds only zero bytes from `from` to `to`: after the
/// last entry, a complete tar has its two end-of-archive blocks and at most
/// zero padding.
fn only_zeros(file: &File, path: &Path, from: u64, to: u64) -> Result<bool, Error> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos < to {
        let want = buf.len().min((to - pos) as usize);
        let n = file.read_at(&mut buf[..want], pos).ctx("read", path)?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

type Staged = Result<(Landed, Option<Result<Digest, DecompressError>>), Error>;

/// Stages the ranges on a few threads, largest first; the results come
/// back in the ranges' order. After a failure the threads take no new
/// ranges, and those have no result.
fn stage_ranges(ctx: &Importer, ranges: &[Range], syncer: &Syncer) -> Vec<Option<Staged>> {
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
                _ => File::open(&range.file)
                    .ctx("open", &range.file)
                    .and_then(|file| {
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

/// Turns a read error of the decompressed stream into a message about the
/// archive.
pub(super) fn stream_error(path: &Path, e: io::Error) -> Error {
    Error::archive(
        path,
        ArchiveErrorKind::Corrupt {
            compression: Compression::None,
            detail: e.to_string(),
        },
    )
}

/// Flushes staged temp files to disk on a thread of its own while the
/// archive is still being read, so that the disk writes of one member
/// overlap the reading of the next instead of all waiting for the fsyncs at
/// publish. Only a head start: publish still fsyncs every blob before
/// renaming it (DESIGN.md §3.2), and finds little left to do.
struct Syncer {
    tx: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start() -> Syncer {
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

    fn sync(&self, staged: &StagedBlob) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(staged.temp_path().to_path_buf());
        }
    }

    /// Waits for the fsyncs asked for so far.
    fn finish(mut self) {
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

fn scan(
    ctx: &Importer,
    path: &Path,
    mode: Mode,
    stream: &mut impl Read,
    syncer: &Syncer,
) -> Result<Members, Error> {
    let mut members = Members::default();
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(|e| stream_error(path, e))? {
        let mut entry = entry.map_err(|e| stream_error(path, e))?;
        match classify(ctx, path, mode, &mut entry, &mut members)? {
            None => {}
            Some(job) => {
                let (landed, diff) = stage(ctx, path, &mut entry, job.alg, job.present)?;
                if let Landed::Staged(staged) = &landed {
                    syncer.sync(staged);
                }
                members.record(path, job, landed, diff)?;
            }
        }
    }
    Ok(members)
}

/// A member to stage: a blob or (in a docker archive) any other file.
struct Job {
    name: String,
    /// The digest its path names (`blobs/<alg>/<hex>`).
    named: Option<Digest>,
    /// The digest it must hash to: its path's, or docker's `<hex>.tar`.
    claimed: Option<Digest>,
    alg: Algorithm,
    /// The store has the claimed blob already: hash, do not write.
    present: bool,
}

/// Deals with one entry's header: links and metadata files are recorded
/// in `members` at once (metadata is read whole); a member worth staging
/// comes back as a [`Job`]; anything else is skipped.
fn classify<R: Read>(
    ctx: &Importer,
    path: &Path,
    mode: Mode,
    entry: &mut tar::Entry<'_, R>,
    members: &mut Members,
) -> Result<Option<Job>, Error> {
    let bad = |entry: &str, reason: String| {
        Error::archive(
            path,
            ArchiveErrorKind::Entry {
                entry: entry.to_string(),
                reason,
            },
        )
    };
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
        return Ok(None);
    }
    let raw = entry.path_bytes().into_owned();
    let name =
        normalize(&raw).map_err(|why| bad(&String::from_utf8_lossy(&raw), why.to_string()))?;
    if kind.is_symlink() || kind.is_hard_link() {
        let Some(target) = entry.link_name_bytes().map(|t| t.into_owned()) else {
            return Ok(None);
        };
        let target = String::from_utf8_lossy(&target).into_owned();
        // A symlink's target is relative to its directory; a hard
        // link's to the archive root.
        let joined = match (kind.is_symlink(), name.rsplit_once('/')) {
            (true, Some((dir, _))) => format!("{dir}/{target}"),
            _ => target.clone(),
        };
        let resolved = resolve_dots(&joined).ok_or_else(|| {
            bad(
                &name,
                format!("is a link to {target:?}, which leads outside the archive"),
            )
        })?;
        members.links.insert(name, resolved);
        return Ok(None);
    }
    if !kind.is_file() && kind != tar::EntryType::Continuous && kind != tar::EntryType::GNUSparse {
        return Ok(None);
    }
    if METADATA.contains(&name.as_str()) {
        if entry.size() > spec::MAX_JSON {
            return Err(Error::archive(
                path,
                ArchiveErrorKind::TooLarge {
                    what: name,
                    size: entry.size(),
                    limit: spec::MAX_JSON,
                },
            ));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| stream_error(path, e))?;
        members.metadata.insert(name, bytes);
        return Ok(None);
    }
    let named = blob_name(&name);
    if name.starts_with("blobs/") && named.is_none() {
        // Under blobs/ but not a digest we know: an extra file, or an
        // algorithm we do not support. Only a descriptor naming it
        // makes it matter, and that is checked when the graph is walked.
        return Ok(None);
    }
    if named.is_none() && mode == Mode::Oci {
        return Ok(None); // an unknown extra file
    }
    if name.ends_with("/VERSION") {
        // Docker's legacy `<id>/VERSION` ("1.0"): nothing names it.
        // Every staged member holds a file open until the end, so the
        // useless ones are not staged.
        return Ok(None);
    }
    // Docker names configs and layers `<sha256 hex>.json|.tar` by
    // their digests: use that to skip writing what the store has, and
    // hold the member to it.
    let claimed = named.clone().or_else(|| docker_digest_name(&name));
    let alg = named.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
    let present = match &claimed {
        Some(d) => ctx.index.has_blob(d)? && ctx.tree.contains(d),
        None => false,
    };
    Ok(Some(Job {
        name,
        named,
        claimed,
        alg,
        present,
    }))
}

impl Members {
    /// Files a staged (or only hashed) member, after checking that it
    /// hashes to the digest its name claims.
    fn record(
        &mut self,
        path: &Path,
        job: Job,
        landed: Landed,
        diff: Option<Result<Digest, DecompressError>>,
    ) -> Result<(), Error> {
        let digest = match &landed {
            Landed::Staged(s) => s.digest.clone(),
            Landed::Present { digest, .. } => digest.clone(),
        };
        if let Some(expected) = &job.claimed
            && expected != &digest
        {
            return Err(Error::archive(
                path,
                ArchiveErrorKind::DigestMismatch {
                    member: job.name,
                    expected: expected.clone(),
                    found: digest,
                },
            ));
        }
        if let Some(diff) = diff {
            self.blobs.diffs.insert(digest.clone(), diff);
        }
        match landed {
            Landed::Staged(staged) => {
                self.blobs.staged.insert(digest.clone(), staged);
            }
            Landed::Present { size, .. } => {
                self.blobs.present.insert(digest.clone(), size);
            }
        }
        if job.named.is_none() {
            self.files.insert(job.name, digest);
        }
        Ok(())
    }
}

/// Where a member's bytes went.
enum Landed {
    Staged(StagedBlob),
    /// The store has the blob: hashed only.
    Present {
        digest: Digest,
        size: u64,
    },
}

/// Streams one member into a blob writer (or only a hasher, if the store
/// has it already), feeding a diff hasher when layers are verified.
fn stage(
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

/// The digest a docker archive member named `<sha256 hex>.json` or
/// `<sha256 hex>.tar` claims to have.
fn docker_digest_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_suffix(".tar")
        .or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// The digest a path under `blobs/` names, if it is `blobs/<alg>/<hex>` with
/// a valid digest.
pub(super) fn blob_name(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// An entry name without `./` and trailing slashes; refuses absolute names
/// and `..`.
pub(super) fn normalize(raw: &[u8]) -> Result<String, &'static str> {
    let s = std::str::from_utf8(raw).map_err(|_| "is not valid UTF-8")?;
    if s.starts_with('/') {
        return Err("is an absolute path");
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("leads outside the archive with '..'"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves `.` and `..` in a path relative to the archive root; `None` if
/// it climbs out of it.
fn resolve_dots(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize(b"./blobs/sha256/").unwrap(), "blobs/sha256");
        assert!(normalize(b"../x").is_err());
        assert_eq!(resolve_dots("abc/../def.tar").as_deref(), Some("def.tar"));
        assert_eq!(resolve_dots("../x"), None);
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(blob_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(blob_name(&format!("blobs/sha256/{}", hex.to_uppercase())).is_none());
    }
}
