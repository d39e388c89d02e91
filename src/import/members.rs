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
//! A plain archive that is a regular file is not streamed: one pass over
//! its headers finds the members, which are then staged from their byte
//! ranges in parallel ([`staging`]). With `--verify-layers`, a member whose
//! first bytes look like a gzip or zstd stream is also decompressed for its
//! diff_id.
//!
//! Symbolic and hard links (docker's legacy `<id>/layer.tar` often is one)
//! are recorded and resolved by [`Members::file`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::Importer;
use super::graph::Blobs;
use super::pipeline;
use super::staging::{self, Landed, Range, Syncer};
use crate::compression::Compression;
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, DecompressError, Error, IoContext};
use crate::input::open_input;
use crate::oci;

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
    let mut stream = pipeline::start(ctx, path, None)?;
    let syncer = Syncer::start();
    let members = scan(ctx, path, mode, &mut stream, &syncer)?;
    syncer.finish();
    stream.drain().map_err(|e| stream_error(path, e))?;
    if !stream.ends_in_zero_blocks() {
        return Err(truncated(path));
    }
    Ok(members)
}

/// Reads a plain (uncompressed) tar file by seeking instead of streaming:
/// one pass over the headers only, then the members are staged from their
/// byte ranges on several threads, largest first. Hashing
/// dominates a plain import and the layers of an image are independent, so
/// hashing two of them at once uses both cores where one stream would
/// leave one idle. `None` if the input is compressed, a download still
/// arriving, or holds sparse members: the streaming
/// reader takes those.
fn read_seekable(ctx: &Importer, path: &Path, mode: Mode) -> Result<Option<Members>, Error> {
    use std::os::unix::fs::FileExt;

    if ctx.download.is_some() {
        return Ok(None); // still arriving: only a stream can read it
    }
    let file = open_input(path)?;
    let len = file.metadata().ctx("read", path)?.len();
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
    let results = staging::stage_ranges(ctx, &jobs, &syncer);
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

/// Turns a read error of the decompressed stream into a message about the
/// archive: a truncated or corrupt compressed stream says so and names its
/// compression; anything else is the tar's own.
pub(super) fn stream_error(path: &Path, e: io::Error) -> Error {
    if let Some(d) = DecompressError::in_io(&e) {
        return Error::archive(path, d.clone().into());
    }
    Error::archive(
        path,
        ArchiveErrorKind::Corrupt {
            compression: Compression::None,
            detail: e.to_string(),
        },
    )
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
                let (landed, diff) = staging::stage(ctx, path, &mut entry, job.alg, job.present)?;
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
pub(super) struct Job {
    pub name: String,
    /// The digest its path names (`blobs/<alg>/<hex>`).
    pub named: Option<Digest>,
    /// The digest it must hash to: its path's, or docker's `<hex>.tar`.
    pub claimed: Option<Digest>,
    pub alg: Algorithm,
    /// The store has the claimed blob already: hash, do not write.
    pub present: bool,
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
        if entry.size() > oci::MAX_JSON {
            return Err(Error::archive(
                path,
                ArchiveErrorKind::TooLarge {
                    what: name,
                    size: entry.size(),
                    limit: oci::MAX_JSON,
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
    let claimed = named.clone().or_else(|| super::docker::digest_name(&name));
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
