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
//! | `diff_id`  | (`--layers`) a layer does not decompress to the diff_id its config names (or that was recorded at import) | treated as corrupt |
//! | `refcount` | a count differs from the sum of its edges      | recounted                           |
//! | `orphan`   | a file in the tree no row names, or a temp file, or an entry of `trees/` no row names | deleted |
//! | `tree`     | a kept tree's directory is gone, or (`--trees`) its contents differ from its fingerprint | row dropped, then directory |
//!
//! With `--layers` every layer is decompressed and checked, whether or not
//! its diff_id was checked at import: the image manifests in the store are
//! read one at a time, each with its config, to learn the diff_id each
//! layer must decompress to; each layer is then decompressed once, during
//! the walk of its shard. An uncompressed layer is its own diff_id, so its
//! re-hash checks it.
//!
//! Every directory is reached without following links
//! ([`crate::nofollow`]): a store whose `tmp/`, `intents/`, `blobs/` or a
//! shard is a link fails the check before anything is repaired.
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
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blobs::{BlobTree, Shard};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{DecompressError, Error};
use crate::index::BlobRow;
use crate::lock::LockMode;
use crate::nofollow::Kind;
use crate::oci::{self, ImageConfig, ImageManifest};
use crate::signals::Critical;
use crate::store::Store;

/// Settings of a check.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Fix what can be fixed (see the table at the top of this module).
    pub repair: bool,
    /// Also decompress every layer and check it against the diff_id its
    /// config names.
    pub layers: bool,
    /// Also re-walk every tree the store keeps against its fingerprint.
    pub trees: bool,
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

    /// With `trees`, also re-walk the kept trees against their fingerprints.
    pub fn trees(mut self, trees: bool) -> FsckOptions {
        self.trees = trees;
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
    /// A layer does not decompress to the diff_id its config names
    /// (`--layers`).
    DiffId,
    /// A count differs from the sum of its edges.
    Refcount,
    /// A file no row names, or a temp file, or an entry of `trees/` no
    /// row names.
    Orphan,
    /// A kept tree's directory is gone, or its contents changed since it
    /// was rendered (`--trees`).
    Tree,
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
            ProblemKind::Tree => "tree",
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
    /// Kept trees re-walked (`--trees`).
    pub trees_checked: u64,
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
        let trees = match self.trees_checked {
            0 => String::new(),
            n => format!(" and {n} trees"),
        };
        writeln!(
            f,
            "checked {} blobs ({} bytes){trees}: {} problems{}",
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
    /// Kept trees whose rows must go.
    trees: Vec<String>,
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

/// A diff_id a layer must decompress to, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    diff_id: Digest,
    /// The manifest whose config names it; `None`: recorded at import.
    manifest: Option<Digest>,
}

/// The diff_ids layers must decompress to, by layer digest.
type LayerDiffIds = HashMap<Digest, Vec<Expected>>;

/// The verdict on one blob file.
#[derive(Debug)]
struct FileCheck {
    len: u64,
    /// What the bytes hash to, or why they could not be read.
    found: Result<Digest, io::Error>,
    /// With `--layers`: for each diff_id the layer must have, what its
    /// decompressed bytes hash to, or why they could not be had.
    diffs: Vec<(Digest, Result<Digest, DecompressError>)>,
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
            trees,
        } = findings;
        // Rows first, files second (as gc). Files in the tree are recorded
        // by no intent, so the repair's commit asks the next gc to walk the
        // tree: cut short after it, the files left are orphans that gc
        // removes.
        let in_tree = doomed.iter().any(|p| !p.starts_with(self.tree.tmp_dir()));
        // From the repair's commit to the last removal, SIGINT and SIGTERM
        // wait: the rows are gone, the files must follow.
        let critical = Critical::enter();
        let repair = self.index.repair(&lost, &resize, in_tree)?;
        report.removed_images = repair.images_removed;
        crate::failpoint::hit("fsck-after-index-repair");
        let mut touched = BTreeSet::new();
        for path in doomed {
            // Reached from the store's root without following links.
            self.tree.remove_path(&path)?;
            touched.extend(path.parent().map(Path::to_path_buf));
        }
        self.repair_trees(&trees)?;
        drop(critical);
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
                self.tree.sync_path(&dir)?;
            }
            self.index.set_full_sweep_needed(false)?;
        }
        Ok(report)
    }

    /// One pass over the store, shard by shard: each shard's files against
    /// its rows (one range scan), so memory follows a shard, not the store.
    fn check(&self, options: &FsckOptions) -> Result<Findings, Error> {
        let mut f = Findings::default();
        // Opened again now, none through a link, before anything is read.
        let dirs = self.tree.sweep_dirs()?;
        for line in self.index.quick_check()? {
            f.problem(ProblemKind::Index, None, format!("quick_check: {line}"));
        }
        let expected = if options.layers {
            self.layer_diff_ids()?
        } else {
            LayerDiffIds::new()
        };
        let mut pending = Vec::new();
        self.tree.for_each_shard(|shard| {
            self.check_shard(shard, options, &expected, &mut pending, &mut f)
        })?;
        self.hash_pending(&mut pending, &mut f);
        for entry in dirs.tmp.entries()? {
            // Subdirectories hold partial downloads and upload sessions,
            // which live on purpose until gc's grace period ends.
            if entry.kind == Kind::Dir {
                continue;
            }
            let path = dirs.tmp.child_path(&entry.name);
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
        let trees = self.check_trees(options.trees)?;
        f.report.trees_checked = trees.checked;
        f.report.problems.extend(trees.problems);
        f.trees = trees.damaged;
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

    /// What each layer must decompress to: every image manifest in the
    /// store with its config, read one at a time (each at most
    /// [`oci::MAX_JSON`] bytes, verified against its digest). Manifests
    /// and configs that cannot be read are left out: the walk of the tree
    /// reports them.
    fn layer_diff_ids(&self) -> Result<LayerDiffIds, Error> {
        let mut expected = LayerDiffIds::new();
        for manifest_digest in self.index.oci_manifests()? {
            let Some(manifest) = self.small_json::<ImageManifest>(&manifest_digest) else {
                continue;
            };
            if !oci::is_image_config(&manifest.config.media_type) {
                continue;
            }
            let Ok(config_digest) = Digest::parse(&manifest.config.digest) else {
                continue;
            };
            let Some(config) = self.small_json::<ImageConfig>(&config_digest) else {
                continue;
            };
            let Some(rootfs) = config.rootfs else {
                continue;
            };
            if rootfs.diff_ids.len() != manifest.layers.len() {
                continue;
            }
            for (layer, diff_id) in manifest.layers.iter().zip(&rootfs.diff_ids) {
                let (Ok(layer), Ok(diff_id)) =
                    (Digest::parse(&layer.digest), Digest::parse(diff_id))
                else {
                    continue;
                };
                let wanted = Expected {
                    diff_id,
                    manifest: Some(manifest_digest.clone()),
                };
                let list = expected.entry(layer).or_default();
                if !list.iter().any(|e| e.diff_id == wanted.diff_id) {
                    list.push(wanted);
                }
            }
        }
        Ok(expected)
    }

    /// A small JSON blob of the store, read whole and verified; `None` if
    /// it is missing, too large, corrupt or not that document.
    fn small_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> Option<T> {
        if !self.index.has_blob(digest).ok()? {
            return None;
        }
        let mut bytes = Vec::new();
        self.tree
            .read(digest)
            .ok()?
            .take(oci::MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        // Below the limit the reader reached the end, where it verifies.
        if bytes.len() as u64 > oci::MAX_JSON {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    fn check_shard(
        &self,
        shard: Shard,
        options: &FsckOptions,
        expected: &LayerDiffIds,
        pending: &mut Vec<(BlobRow, Vec<Expected>)>,
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

        // With --layers: each row's diff_ids, from the configs and from
        // the import's record.
        for row in to_hash {
            let mut wanted = Vec::new();
            if options.layers {
                wanted = expected.get(&row.digest).cloned().unwrap_or_default();
                if let Some(recorded) = &row.diff_id
                    && !wanted.iter().any(|e| &e.diff_id == recorded)
                {
                    wanted.push(Expected {
                        diff_id: recorded.clone(),
                        manifest: None,
                    });
                }
            }
            pending.push((row.clone(), wanted));
        }
        if pending.len() >= HASH_BATCH {
            self.hash_pending(pending, f);
        }
        Ok(())
    }

    /// Re-hashes the files of the rows gathered so far on every core (and
    /// with `--layers` decompresses them for their diff_ids), and judges
    /// them. Rows are gathered over several shards, so that the threads
    /// seldom wait for each other at the end of a batch.
    fn hash_pending(&self, pending: &mut Vec<(BlobRow, Vec<Expected>)>, f: &mut Findings) {
        let rows = std::mem::take(pending);
        let order = (0..rows.len()).collect();
        let checks = crate::parallel::run(
            &rows,
            order,
            crate::parallel::workers(MAX_WORKERS),
            || (),
            |_, (row, wanted)| {
                Ok::<_, std::convert::Infallible>(check_file(&self.tree, &row.digest, wanted))
            },
        );
        for ((row, wanted), check) in rows.iter().zip(checks) {
            let Some(Ok(check)) = check else {
                unreachable!("an infallible check is never skipped")
            };
            self.judge(row, wanted, check, f);
        }
    }

    /// Turns one file's check into problems.
    fn judge(&self, row: &BlobRow, wanted: &[Expected], check: FileCheck, f: &mut Findings) {
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
        if !corrupt {
            for expected in wanted {
                let Some((_, diff)) = check.diffs.iter().find(|(d, _)| *d == expected.diff_id)
                else {
                    continue;
                };
                let whose = match &expected.manifest {
                    Some(m) => format!("the diff_id the config of manifest {m} names"),
                    None => "the diff_id recorded at import".to_string(),
                };
                let detail = match diff {
                    Ok(found) if *found == expected.diff_id => continue,
                    Ok(found) => format!(
                        "decompresses to {found}, not to {}, {whose}",
                        expected.diff_id
                    ),
                    Err(why) => format!(
                        "cannot decompress ({why}) to check {}, {whose}",
                        expected.diff_id
                    ),
                };
                f.problem(ProblemKind::DiffId, Some(&row.digest), detail);
                bad_layer = true;
                // One problem per layer: it is lost either way.
                break;
            }
        }
        if corrupt || bad_layer {
            f.lost.push(row.digest.clone());
            f.doomed.push(path);
        }
    }
}

const READ_BUFFER: usize = 1 << 20;

/// Re-hashes one blob file and, for each diff_id it must have,
/// decompresses it. The file is opened through the tree's directories,
/// without following links, and read through that one descriptor.
fn check_file(tree: &BlobTree, digest: &Digest, wanted: &[Expected]) -> FileCheck {
    let unreadable = |e: io::Error| FileCheck {
        len: 0,
        found: Err(e),
        diffs: Vec::new(),
    };
    let mut file = match tree.open_file(digest) {
        Ok(f) => f,
        Err(Error::Io { source, .. }) => return unreadable(source),
        Err(e) => return unreadable(io::Error::other(e.to_string())),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let found = hash_stream(&mut file, digest.algorithm().hasher());
    // Decompressed once per algorithm, whatever the number of configs.
    let mut decompressed: Vec<(Algorithm, Result<Digest, DecompressError>)> = Vec::new();
    let mut diffs = Vec::new();
    for expected in wanted {
        // An uncompressed layer is its own diff_id: the hash just taken
        // checks it, and reading the file a second time would only repeat
        // it.
        if let Ok(found) = &found
            && expected.diff_id == *digest
        {
            diffs.push((expected.diff_id.clone(), Ok(found.clone())));
            continue;
        }
        let alg = expected.diff_id.algorithm();
        let diff = match decompressed.iter().find(|(a, _)| *a == alg) {
            Some((_, diff)) => diff.clone(),
            None => {
                let diff = match file.try_clone().and_then(|mut f| f.rewind().map(|_| f)) {
                    Ok(f) => crate::layer::of_open_file(f, alg),
                    Err(e) => Err(DecompressError::Read(e.to_string())),
                };
                decompressed.push((alg, diff.clone()));
                diff
            }
        };
        diffs.push((expected.diff_id.clone(), diff));
    }
    FileCheck { len, found, diffs }
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
