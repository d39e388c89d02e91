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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::digest::{Digest, Hasher};
use crate::error::Error;
use crate::index::BlobRow;
use crate::lock::LockMode;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct FsckOptions {
    pub repair: bool,
    /// Also decompress layers and check their diff_ids.
    pub layers: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `corrupt`, `missing`, `orphan`, `size`, `refcount`, `diff_id`, `index`.
    pub kind: String,
    /// The blob digest or image key concerned, in full.
    pub key: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<Problem>,
    /// Whether `--repair` ran and a check afterwards found the store
    /// consistent.
    pub repaired: bool,
    /// Images `--repair` removed because a blob they needed was lost.
    pub removed_images: Vec<String>,
    /// What a check after `--repair` still found (empty when `repaired`).
    pub remaining: Vec<Problem>,
}

impl FsckReport {
    /// Whether the store is consistent now (after any repair).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() || self.repaired
    }

    /// The problems of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems.iter().filter(move |p| p.kind == kind)
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(
                f,
                "{}: {} {}",
                p.kind,
                p.key.as_deref().unwrap_or("-"),
                p.detail
            )?;
        }
        for key in &self.removed_images {
            writeln!(f, "removed image {key}: a blob it needs is lost")?;
        }
        for p in &self.remaining {
            writeln!(
                f,
                "still wrong after repair: {}: {} {}",
                p.kind,
                p.key.as_deref().unwrap_or("-"),
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
    fn problem(&mut self, kind: &str, key: Option<&Digest>, detail: String) {
        self.report.problems.push(Problem {
            kind: kind.to_string(),
            key: key.map(Digest::to_string),
            detail,
        });
    }
}

/// The verdict on one blob file.
#[derive(Debug)]
struct FileCheck {
    len: u64,
    /// What the bytes hash to, or why they could not be read.
    found: Result<Digest, String>,
    /// With `--layers`: what the decompressed bytes hash to, or why not.
    diff: Option<Result<Digest, String>>,
}

impl Store {
    /// Checks the store and, with `options.repair`, fixes what it found.
    /// Waits for running imports and gc to finish first.
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
        report.removed_images = repair
            .images_removed
            .iter()
            .map(Digest::to_string)
            .collect();
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
        if !report.remaining.iter().any(|p| p.kind == "orphan") {
            for dir in touched {
                crate::blobs::sync_dir(&dir)?;
            }
            self.index.set_full_sweep_needed(false)?;
        }
        Ok(report)
    }

    fn check(&self, options: &FsckOptions) -> Result<Findings, Error> {
        let mut f = Findings::default();
        for line in self.index.quick_check()? {
            f.problem("index", None, format!("quick_check: {line}"));
        }

        let rows = self.index.all_blobs()?;
        let named: HashSet<&Digest> = rows.iter().map(|r| &r.digest).collect();
        let mut present: HashSet<Digest> = HashSet::new();
        for (digest, path) in self.tree.walk()? {
            match digest {
                Some(d) if named.contains(&d) => {
                    present.insert(d);
                }
                Some(d) => {
                    f.problem(
                        "orphan",
                        Some(&d),
                        format!("no row names the file {}", path.display()),
                    );
                    f.doomed.push(path);
                }
                None => {
                    f.problem(
                        "orphan",
                        None,
                        format!("stray file {} in the blob tree", path.display()),
                    );
                    f.doomed.push(path);
                }
            }
        }
        let tmp = self.tree.tmp_dir();
        for entry in std::fs::read_dir(tmp).map_err(|e| Error::io("read directory", tmp, e))? {
            let path = entry
                .map_err(|e| Error::io("read directory", tmp, e))?
                .path();
            f.problem(
                "orphan",
                None,
                format!("stale temp file {}", path.display()),
            );
            f.doomed.push(path);
        }

        let mut to_hash = Vec::new();
        for row in &rows {
            if present.contains(&row.digest) {
                to_hash.push(row);
            } else {
                f.problem(
                    "missing",
                    Some(&row.digest),
                    format!("the file {} is gone", self.tree.path(&row.digest).display()),
                );
                f.lost.push(row.digest.clone());
            }
        }

        let checks = hash_all(&to_hash, |d| self.tree.path(d), options.layers);
        for (row, check) in to_hash.iter().zip(checks) {
            f.report.blobs_checked += 1;
            f.report.bytes_checked += check.len;
            let path = self.tree.path(&row.digest);
            let corrupt = match &check.found {
                Ok(found) if *found == row.digest => false,
                Ok(found) => {
                    f.problem(
                        "corrupt",
                        Some(&row.digest),
                        format!("its bytes hash to {found}"),
                    );
                    true
                }
                Err(why) => {
                    f.problem(
                        "corrupt",
                        Some(&row.digest),
                        format!("cannot read {}: {why}", path.display()),
                    );
                    true
                }
            };
            if check.len != row.size {
                f.problem(
                    "size",
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
                            "diff_id",
                            Some(&row.digest),
                            format!("decompresses to {found}, not its diff_id {expected}"),
                        );
                        bad_layer = true;
                    }
                    Err(why) => {
                        f.problem(
                            "diff_id",
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

        for drift in self.index.count_drift()? {
            f.problem(
                "refcount",
                Some(&drift.digest),
                format!(
                    "count is {}, its edges sum to {}",
                    drift.stored, drift.counted
                ),
            );
        }
        for edge in self.index.dangling_refs()? {
            let owner = edge.owner_kind.name();
            f.problem(
                "index",
                Some(&edge.blob),
                format!("held by {owner} row {} that no longer exists", edge.owner),
            );
        }
        Ok(f)
    }
}

/// Hashes the files of `rows` on every core; results in the order given.
fn hash_all(
    rows: &[&BlobRow],
    path_of: impl Fn(&Digest) -> PathBuf + Sync,
    layers: bool,
) -> Vec<FileCheck> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(rows.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<usize, FileCheck>> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(row) = rows.get(i) else { break };
                    let path = path_of(&row.digest);
                    let diff_id = row.diff_id.as_ref().filter(|_| layers);
                    let check = check_file(&path, &row.digest, diff_id);
                    results.lock().expect("no worker panics").insert(i, check);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no worker panics");
    (0..rows.len())
        .map(|i| {
            results.remove(&i).unwrap_or(FileCheck {
                len: 0,
                found: Err("not checked".into()),
                diff: None,
            })
        })
        .collect()
}

const READ_BUFFER: usize = 1 << 20;

fn check_file(path: &Path, digest: &Digest, diff_id: Option<&Digest>) -> FileCheck {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return FileCheck {
                len: 0,
                found: Err(e.to_string()),
                diff: None,
            };
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let found = hash_stream(&mut file, digest.algorithm().hasher()).map_err(|e| e.to_string());
    // An uncompressed layer is its own diff_id: the hash just taken checks
    // it, and reading the file a second time would only repeat it.
    let diff = diff_id.map(|expected| match expected == digest {
        true => found.clone(),
        false => crate::import::diff_id::of_file(path, expected.algorithm()),
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
