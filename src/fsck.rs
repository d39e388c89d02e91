//! `fsck`: verify the tree against the index and the counts against the
//! edges; `--repair` brings the store back to a consistent state.
//!
//! A check holds the store lock exclusive, as gc does: an import publishes
//! its files before it commits their rows, so while one runs its files
//! would look like orphans, and a repair would delete them under it.
//!
//! What is checked, and what `--repair` does about it:
//!
//! | kind       | found when                                    | repair                              |
//! |------------|-----------------------------------------------|-------------------------------------|
//! | `index`    | `PRAGMA quick_check` fails, or an edge's owner is gone | dangling edges removed     |
//! | `missing`  | a row names a blob whose file is gone          | row dropped, with the images needing it |
//! | `corrupt`  | a file's bytes do not hash to its name         | file deleted, row dropped as above  |
//! | `size`     | a file's length differs from its row's size    | row's size fixed (if the hash is right) |
//! | `diff_id`  | (`--layers`) a layer does not decompress to its diff_id | treated as corrupt         |
//! | `refcount` | a count differs from the sum of its edges      | recounted                           |
//! | `orphan`   | a file in the tree no row names, or a temp file | deleted                            |
//!
//! Rows are repaired first and files removed second, the order gc keeps,
//! so a repair cut short leaves at worst orphans. No intent file records
//! them (a repair may delete stray names that are no digest), so the
//! repair's commit, made durable before any file goes, asks the next gc to
//! walk the whole tree; a repair whose re-check finds no orphan clears
//! that request again. A failed `quick_check` (a damaged SQLite page) is
//! reported but not repaired: SQLite cannot rebuild a damaged b-tree in
//! place, so the report says it remains.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blobs::Shard;
use crate::digest::{Digest, Hasher};
use crate::error::{DecompressError, Error};
use crate::index::BlobRow;
use crate::lock::LockMode;
use crate::store::Store;

/// Settings of a check.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Fix what can be fixed (see the table at the top of this module).
    pub repair: bool,
    /// Also decompress layers and check their diff_ids.
    pub layers: bool,
}

impl FsckOptions {
    /// A plain check, nothing repaired.
    pub fn new() -> FsckOptions {
        FsckOptions::default()
    }

    /// With `repair`, fix what the check finds.
    pub fn repair(mut self, repair: bool) -> FsckOptions {
        self.repair = repair;
        self
    }

    /// With `layers`, also decompress layers to check their diff_ids.
    pub fn layers(mut self, layers: bool) -> FsckOptions {
        self.layers = layers;
        self
    }
}

/// What kind of thing is wrong (the table at the top of this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// The index itself: a failed `quick_check`, or an edge whose owner is gone.
    Index,
    /// A row names a blob whose file is gone.
    Missing,
    /// A file's bytes do not hash to its name.
    Corrupt,
    /// A file's length differs from its row's size.
    Size,
    /// A layer does not decompress to its diff_id (`--layers`).
    DiffId,
    /// A count differs from the sum of its edges.
    Refcount,
    /// A file no row names, or a temp file.
    Orphan,
}

impl ProblemKind {
    /// The kind's name, as `--json` writes it.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Index => "index",
            ProblemKind::Missing => "missing",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Size => "size",
            ProblemKind::DiffId => "diff_id",
            ProblemKind::Refcount => "refcount",
            ProblemKind::Orphan => "orphan",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// What kind of thing is wrong.
    pub kind: ProblemKind,
    /// The blob concerned, if one is.
    pub key: Option<Digest>,
    /// What was found, for a reader.
    pub detail: String,
}

/// What a check found and, with `--repair`, did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct FsckReport {
    /// Blob files re-hashed.
    pub blobs_checked: u64,
    /// Their bytes.
    pub bytes_checked: u64,
    /// What the check found.
    pub problems: Vec<Problem>,
    /// Whether `--repair` ran and a check afterwards found the store
    /// consistent.
    pub repaired: bool,
    /// Images `--repair` removed because a blob they needed was lost.
    pub removed_images: Vec<Digest>,
    /// What a check after `--repair` still found (empty when `repaired`).
    pub remaining: Vec<Problem>,
}

impl FsckReport {
    /// Whether the store is consistent now (after any repair).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() || self.repaired
    }

    /// The problems of one kind.
    pub fn of_kind(&self, kind: ProblemKind) -> impl Iterator<Item = &Problem> + '_ {
        self.problems.iter().filter(move |p| p.kind == kind)
    }
}

fn key_or_dash(key: &Option<Digest>) -> String {
    key.as_ref()
        .map_or_else(|| "-".to_string(), Digest::to_string)
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}: {} {}", p.kind, key_or_dash(&p.key), p.detail)?;
        }
        for key in &self.removed_images {
            writeln!(f, "removed image {key}: a blob it needs is lost")?;
        }
        for p in &self.remaining {
            writeln!(
                f,
                "still wrong after repair: {}: {} {}",
                p.kind,
                key_or_dash(&p.key),
                p.detail
            )?;
        }
        writeln!(
            f,
            "checked {} blobs ({} bytes): {} problems{}",
            self.blobs_checked,
            self.bytes_checked,
            self.problems.len(),
            if self.repaired { ", repaired" } else { "" }
        )
    }
}

/// What a check found that a repair acts on.
#[derive(Debug, Default)]
struct Findings {
    report: FsckReport,
    /// Blobs whose bytes are gone or wrong: their rows must go.
    lost: Vec<Digest>,
    /// Files to delete: corrupt blobs, orphans, temp files.
    doomed: Vec<PathBuf>,
    /// Rows whose size is wrong though the bytes are right.
    resize: Vec<(Digest, u64)>,
}

impl Findings {
    fn problem(&mut self, kind: ProblemKind, key: Option<&Digest>, detail: String) {
        self.report.problems.push(Problem {
            kind,
            key: key.cloned(),
            detail,
        });
    }
}

/// The verdict on one blob file.
#[derive(Debug)]
struct FileCheck {
    len: u64,
    /// What the bytes hash to, or why they could not be read.
    found: Result<Digest, io::Error>,
    /// With `--layers`: what the decompressed bytes hash to, or why not.
    diff: Option<Result<Digest, DecompressError>>,
}

/// Most threads re-hashing blobs at once.
const MAX_WORKERS: usize = 8;

/// Rows gathered before their files are re-hashed: enough that a batch
/// keeps every core busy, few enough that memory stays small (a row is a
/// digest, a size and perhaps a diff_id).
const HASH_BATCH: usize = 4096;

impl Store {
    /// Checks the store and, with `options.repair`, fixes what it found.
    /// Waits for running imports and gc to finish first.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), imgstore::Error> {
    /// let store = imgstore::Store::open("/var/lib/imgstore")?;
    /// let report = store.fsck(&imgstore::FsckOptions::new())?;
    /// if !report.is_clean() {
    ///     eprint!("{report}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport, Error> {
        let _lock = self.lock(LockMode::Exclusive, true)?;
        let findings = self.check(options)?;
        if !options.repair || findings.report.problems.is_empty() {
            return Ok(findings.report);
        }
        let Findings {
            mut report,
            lost,
            doomed,
            resize,
        } = findings;
        // Rows first, files second (as gc). Files in the tree are recorded
        // by no intent, so the repair's commit asks the next gc to walk the
        // tree: cut short after it, the files left are orphans that gc
        // removes.
        let in_tree = doomed.iter().any(|p| !p.starts_with(self.tree.tmp_dir()));
        let repair = self.index.repair(&lost, &resize, in_tree)?;
        report.removed_images = repair.images_removed;
        crate::failpoint::hit("fsck-after-index-repair");
        let mut touched = BTreeSet::new();
        for path in doomed {
            crate::store::remove_path(&path)?;
            touched.extend(path.parent().map(Path::to_path_buf));
        }
        report.remaining = self.check(options)?.report.problems;
        report.repaired = report.remaining.is_empty();
        // The check walked the whole tree: if it found no orphan, gc need
        // not walk it again, once the removals are on disk.
        if !report
            .remaining
            .iter()
            .any(|p| p.kind == ProblemKind::Orphan)
        {
            for dir in touched {
                crate::blobs::sync_dir(&dir)?;
            }
            self.index.set_full_sweep_needed(false)?;
        }
        Ok(report)
    }

    /// One pass over the store, shard by shard: each shard's files against
    /// its rows (one range scan), so memory follows a shard, not the store.
    fn check(&self, options: &FsckOptions) -> Result<Findings, Error> {
        let mut f = Findings::default();
        for line in self.index.quick_check()? {
            f.problem(ProblemKind::Index, None, format!("quick_check: {line}"));
        }
        let mut pending = Vec::new();
        self.tree
            .for_each_shard(|shard| self.check_shard(shard, options, &mut pending, &mut f))?;
        self.hash_pending(&mut pending, options, &mut f);
        let tmp = self.tree.tmp_dir();
        for entry in std::fs::read_dir(tmp).map_err(|e| Error::io("read directory", tmp, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", tmp, e))?;
            // Subdirectories hold partial downloads and upload sessions,
            // which live on purpose until gc's grace period ends.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            f.problem(
                ProblemKind::Orphan,
                None,
                format!("stale temp file {}", path.display()),
            );
            f.doomed.push(path);
        }
        for drift in self.index.count_drift()? {
            f.problem(
                ProblemKind::Refcount,
                Some(&drift.digest),
                format!(
                    "count is {}, its edges sum to {}",
                    drift.stored, drift.counted
                ),
            );
        }
        for edge in self.index.dangling_refs()? {
            f.problem(
                ProblemKind::Index,
                Some(&edge.blob),
                format!(
                    "held by {} row {} that no longer exists",
                    edge.owner_kind.name(),
                    edge.owner
                ),
            );
        }
        Ok(f)
    }

    fn check_shard(
        &self,
        shard: Shard,
        options: &FsckOptions,
        pending: &mut Vec<BlobRow>,
        f: &mut Findings,
    ) -> Result<(), Error> {
        let Some(algorithm) = shard.algorithm else {
            for (_, path) in shard.files {
                f.problem(
                    ProblemKind::Orphan,
                    None,
                    format!("stray file {} in the blob tree", path.display()),
                );
                f.doomed.push(path);
            }
            return Ok(());
        };
        let rows = self.index.blob_rows_in_shard(algorithm, &shard.prefix)?;
        if rows.is_empty() && shard.files.is_empty() {
            return Ok(());
        }
        let mut by_digest: HashMap<&Digest, &BlobRow> =
            rows.iter().map(|r| (&r.digest, r)).collect();
        let mut to_hash: Vec<&BlobRow> = Vec::new();
        for (digest, path) in &shard.files {
            match digest.as_ref().and_then(|d| by_digest.remove(d)) {
                Some(row) => to_hash.push(row),
                None => {
                    let detail = match digest {
                        Some(_) => format!("no row names the file {}", path.display()),
                        None => format!("stray file {} in the blob tree", path.display()),
                    };
                    f.problem(ProblemKind::Orphan, digest.as_ref(), detail);
                    f.doomed.push(path.clone());
                }
            }
        }
        // Rows left over have no file, in the order of the index.
        for row in &rows {
            if by_digest.contains_key(&row.digest) {
                f.problem(
                    ProblemKind::Missing,
                    Some(&row.digest),
                    format!("the file {} is gone", self.tree.path(&row.digest).display()),
                );
                f.lost.push(row.digest.clone());
            }
        }

        pending.extend(to_hash.into_iter().cloned());
        if pending.len() >= HASH_BATCH {
            self.hash_pending(pending, options, f);
        }
        Ok(())
    }

    /// Re-hashes the files of the rows gathered so far on every core, and
    /// judges them. Rows are gathered over several shards, so that the
    /// threads seldom wait for each other at the end of a batch.
    fn hash_pending(&self, pending: &mut Vec<BlobRow>, options: &FsckOptions, f: &mut Findings) {
        let rows = std::mem::take(pending);
        let order = (0..rows.len()).collect();
        let checks = crate::parallel::run(
            &rows,
            order,
            crate::parallel::workers(MAX_WORKERS),
            || (),
            |_, row| {
                let diff_id = row.diff_id.as_ref().filter(|_| options.layers);
                Ok::<_, std::convert::Infallible>(check_file(
                    &self.tree.path(&row.digest),
                    &row.digest,
                    diff_id,
                ))
            },
        );
        for (row, check) in rows.iter().zip(checks) {
            let Some(Ok(check)) = check else {
                unreachable!("an infallible check is never skipped")
            };
            self.judge(row, check, f);
        }
    }

    /// Turns one file's check into problems.
    fn judge(&self, row: &BlobRow, check: FileCheck, f: &mut Findings) {
        f.report.blobs_checked += 1;
        f.report.bytes_checked += check.len;
        let path = self.tree.path(&row.digest);
        let corrupt = match &check.found {
            Ok(found) if *found == row.digest => false,
            Ok(found) => {
                f.problem(
                    ProblemKind::Corrupt,
                    Some(&row.digest),
                    format!("its bytes hash to {found}"),
                );
                true
            }
            Err(why) => {
                f.problem(
                    ProblemKind::Corrupt,
                    Some(&row.digest),
                    format!("cannot read {}: {why}", path.display()),
                );
                true
            }
        };
        if check.len != row.size {
            f.problem(
                ProblemKind::Size,
                Some(&row.digest),
                format!(
                    "the file has {} bytes, the index says {}",
                    check.len, row.size
                ),
            );
            if !corrupt {
                f.resize.push((row.digest.clone(), check.len));
            }
        }
        let mut bad_layer = false;
        if !corrupt && let (Some(expected), Some(diff)) = (&row.diff_id, &check.diff) {
            match diff {
                Ok(found) if found == expected => {}
                Ok(found) => {
                    f.problem(
                        ProblemKind::DiffId,
                        Some(&row.digest),
                        format!("decompresses to {found}, not its diff_id {expected}"),
                    );
                    bad_layer = true;
                }
                Err(why) => {
                    f.problem(
                        ProblemKind::DiffId,
                        Some(&row.digest),
                        format!("cannot decompress: {why}"),
                    );
                    bad_layer = true;
                }
            }
        }
        if corrupt || bad_layer {
            f.lost.push(row.digest.clone());
            f.doomed.push(path);
        }
    }
}

const READ_BUFFER: usize = 1 << 20;

fn check_file(path: &Path, digest: &Digest, diff_id: Option<&Digest>) -> FileCheck {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return FileCheck {
                len: 0,
                found: Err(e),
                diff: None,
            };
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let found = hash_stream(&mut file, digest.algorithm().hasher());
    // An uncompressed layer is its own diff_id: the hash just taken checks
    // it, and reading the file a second time would only repeat it.
    let diff = diff_id.and_then(|expected| match expected == digest {
        true => found.as_ref().ok().cloned().map(Ok),
        false => Some(crate::layer::of_file(path, expected.algorithm())),
    });
    FileCheck { len, found, diff }
}

fn hash_stream(r: &mut dyn Read, mut hasher: Hasher) -> io::Result<Digest> {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
