//! Garbage collection: rows no owner holds, the files of those rows,
//! orphan files, and leftover temp files. Its cost follows the garbage, not
//! the store (DESIGN.md §6):
//!
//! - garbage rows come from the partial index on `refcount = 0`;
//! - orphan files (files no row names) come from the intent files that
//!   every writer leaves in `intents/` before it renames a file into the
//!   tree, and that gc itself leaves before it commits a row deletion
//!   ([`crate::intents`]);
//! - the whole tree is walked only when asked (`gc --full`) or when the
//!   index says orphans may exist that no intent records (a store made by
//!   an older imgstore, an `fsck --repair` cut short: migration 0004);
//! - temp files: `tmp/` holds only what writers in flight or dead left.
//!
//! Order: rows first, files second, and before the row-deleting commit the
//! doomed digests are in an intent, so a crash anywhere leaves at worst
//! orphans that the next gc finds without a walk.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::blobs::SweepDirs;
use crate::digest::Digest;
use crate::error::Error;
use crate::image::GcReport;
use crate::intents::{self, Intent};
use crate::lock::LockMode;
use crate::nofollow::{Dir, Kind, Meta};
use crate::reserve;
use crate::store::Store;

/// Settings of a garbage collection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Files in the tree with no row are removed only once older than this,
    /// so a writer that does not take the store lock is never raced.
    pub grace: Duration,
    /// Wait for running imports to finish (else fail at once).
    pub wait: bool,
    /// Walk the whole blob tree for orphans, including those no intent
    /// file records (files put there by hand or by another program). Costs
    /// time in proportion to the store, not the garbage.
    pub full: bool,
}

impl GcOptions {
    /// The defaults: remove everything unreferenced, orphans after an hour,
    /// waiting for running imports.
    pub fn new() -> GcOptions {
        GcOptions::default()
    }

    /// Report what would be removed, remove nothing.
    pub fn dry_run(mut self, dry_run: bool) -> GcOptions {
        self.dry_run = dry_run;
        self
    }

    /// Leave orphan files younger than `grace`.
    pub fn grace(mut self, grace: Duration) -> GcOptions {
        self.grace = grace;
        self
    }

    /// Wait for running imports (else fail at once with [`Error::Locked`]).
    pub fn wait(mut self, wait: bool) -> GcOptions {
        self.wait = wait;
        self
    }

    /// Walk the whole blob tree for orphans no intent records.
    pub fn full(mut self, full: bool) -> GcOptions {
        self.full = full;
        self
    }
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            wait: true,
            full: false,
        }
    }
}

/// One gc run's progress: what it found, and what it must still make
/// durable or clean up.
struct Sweep<'a> {
    store: &'a Store,
    /// tmp/ and intents/, opened afresh for this run.
    dirs: SweepDirs,
    options: &'a GcOptions,
    now: SystemTime,
    report: GcReport,
    /// Orphans met already (through another intent, or counted by a dry
    /// run that left the file in place).
    seen: HashSet<Digest>,
    /// Shard directories that files were removed from.
    touched: BTreeSet<PathBuf>,
    /// Intents whose work is done once `touched` is durable.
    finished: Vec<Intent>,
}

impl Store {
    /// Removes every blob nothing references, orphan files that an intent
    /// records (or, with `options.full` or when the store needs it, any
    /// file in the tree no row names) once older than the grace period,
    /// and leftover temp files.
    ///
    /// ```
    /// use imgstore::{GcOptions, ImportOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// let image = store.import("tests/data/hello.aci", &ImportOptions::new())?.remove(0);
    /// store.remove(&image.key)?;
    /// let report = store.gc(&GcOptions::new())?;
    /// assert_eq!(report.blobs, 2); // the ACI's tar and its manifest
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, Error> {
        let _lock = self.lock(LockMode::Exclusive, options.wait)?;
        let mut sweep = Sweep {
            store: self,
            // Opened again now, none through a link: one swapped in since
            // the store was opened is met here, before anything goes.
            dirs: self.tree.sweep_dirs()?,
            options,
            now: SystemTime::now(),
            report: GcReport {
                dry_run: options.dry_run,
                ..GcReport::default()
            },
            seen: HashSet::new(),
            touched: BTreeSet::new(),
            finished: Vec::new(),
        };
        sweep.leftover_intents()?;
        // Trees first: rows whose directory vanished free their blobs for
        // the garbage pass.
        (sweep.report.tree_dirs, sweep.report.tree_rows) = self.sweep_trees(options.dry_run)?;
        sweep.garbage()?;
        if options.full || self.index.full_sweep_needed()? {
            sweep.whole_tree()?;
        }
        sweep.finish()?;
        sweep.temp_files()?;
        let report = sweep.report;
        if !options.dry_run {
            self.index.checkpoint()?;
            reserve::try_ensure(&self.tree);
        }
        Ok(report)
    }
}

impl Sweep<'_> {
    /// Acts on the intents of writers (and gcs) that finished or died:
    /// every digest they list that has no row is an orphan if its file is
    /// there. An intent listing an orphan younger than the grace period
    /// stays for a later gc.
    fn leftover_intents(&mut self) -> Result<(), Error> {
        let tree = &self.store.tree;
        for leftover in intents::leftovers(&self.dirs.intents)? {
            let mut keep = false;
            for digest in leftover.digests {
                if self.seen.contains(&digest) || self.store.index.has_blob(&digest)? {
                    continue;
                }
                let path = tree.path(&digest);
                let Some(meta) = tree.meta_path(&path)? else {
                    continue;
                };
                let young = self.age(&meta) < self.options.grace;
                self.seen.insert(digest);
                if young {
                    // Its intent stays, so a walk need not record it again.
                    keep = true;
                    continue;
                }
                self.remove_orphan(path, meta.len)?;
            }
            if !keep && !self.options.dry_run {
                self.finished.push(leftover.intent);
            }
        }
        Ok(())
    }

    /// Takes the garbage rows out of the index and deletes their files.
    fn garbage(&mut self) -> Result<(), Error> {
        let store = self.store;
        if self.options.dry_run {
            for (_, size) in store.index.garbage_closure()? {
                self.report.blobs += 1;
                self.report.blob_bytes += size;
            }
            return Ok(());
        }
        let intents_dir = &self.dirs.intents;
        loop {
            let mut intent = None;
            let removed = reserve::retry_when_full(store.tree.root(), || {
                store.index.gc_pass(|batch| {
                    let recorded = Intent::record(intents_dir, batch.iter().map(|(d, _)| d))?;
                    // A first try that failed for want of space committed
                    // nothing: its intent has nothing to record.
                    if let Some(stale) = std::mem::replace(&mut intent, recorded) {
                        stale.done();
                    }
                    Ok(())
                })
            })?;
            if removed.is_empty() {
                break;
            }
            crate::failpoint::hit("gc-after-commit");
            for (digest, size) in removed {
                if let Some(shard) = store.tree.remove(&digest)? {
                    self.touched.insert(shard);
                }
                crate::failpoint::hit("gc-mid-sweep");
                self.report.blobs += 1;
                self.report.blob_bytes += size;
            }
            // Its batch is done: an interruption need not wait any more,
            // and the intent goes once the shards are fsynced.
            self.finished.extend(intent.map(Intent::settled));
        }
        Ok(())
    }

    /// Walks the whole tree, one shard at a time against one range scan of
    /// the index, so memory follows a shard, not the tree. Afterwards the
    /// index no longer asks for a walk, unless a stray file (a name that is
    /// no digest) was too young to go: no intent can name it. A young
    /// orphan with a digest name is recorded in a new intent instead.
    fn whole_tree(&mut self) -> Result<(), Error> {
        let store = self.store;
        self.report.full_sweep = true;
        let mut young = Vec::new();
        let mut young_strays = false;
        store.tree.for_each_shard(|shard| {
            if shard.files.is_empty() {
                return Ok(());
            }
            let named = match shard.algorithm {
                Some(alg) => store.index.blob_hexes_in_shard(alg, &shard.prefix)?,
                None => Default::default(),
            };
            for (digest, path) in shard.files {
                if let Some(d) = &digest
                    && (named.contains(d.hex()) || self.seen.contains(d))
                {
                    continue;
                }
                let Some(meta) = store.tree.meta_path(&path)? else {
                    continue;
                };
                if self.age(&meta) < self.options.grace {
                    match digest {
                        Some(d) => young.push(d),
                        None => young_strays = true,
                    }
                    continue;
                }
                self.remove_orphan(path, meta.len)?;
            }
            Ok(())
        })?;
        if !self.options.dry_run {
            // Kept on purpose: this intent is for a later gc.
            let _kept = Intent::record(&self.dirs.intents, &young)?;
            store.index.set_full_sweep_needed(young_strays)?;
        }
        Ok(())
    }

    fn remove_orphan(&mut self, path: PathBuf, len: u64) -> Result<(), Error> {
        if !self.options.dry_run {
            self.store.tree.remove_path(&path)?;
            if let Some(shard) = path.parent() {
                self.touched.insert(shard.to_path_buf());
            }
        }
        self.report.orphans += 1;
        self.report.orphan_bytes += len;
        Ok(())
    }

    fn age(&self, meta: &Meta) -> Duration {
        age(self.now, meta)
    }

    /// Every writer holds the store lock shared while its temp files
    /// live, so under the exclusive lock every temp file is stale. The
    /// subdirectories of tmp/ hold what outlives a process on purpose
    /// (partial downloads to resume, upload sessions of `serve`): those
    /// files go once older than the grace period. A link in tmp/ is
    /// removed as a link; one of the kept directories that is a link fails
    /// the sweep.
    fn temp_files(&mut self) -> Result<(), Error> {
        let now = SystemTime::now();
        let tmp = &self.dirs.tmp;
        for entry in tmp.entries()? {
            if entry.kind == Kind::Dir {
                let kept = tmp.sub(&entry.name)?;
                for file in kept.entries()? {
                    let Some(meta) = kept.meta(&file.name)? else {
                        continue;
                    };
                    if age(now, &meta) < self.options.grace {
                        continue;
                    }
                    // A fetch waiting its turn for a URL holds its lock
                    // file, however old: gc removes a kept file under a
                    // lock of its own, taken without waiting, so that no
                    // one takes one in between.
                    let Some(_claimed) = claim(&kept, &file.name) else {
                        continue;
                    };
                    if !self.options.dry_run {
                        kept.remove(&file.name)?;
                    }
                    self.report.temp_files += 1;
                    self.report.temp_bytes += meta.len;
                }
                continue;
            }
            let len = tmp.meta(&entry.name)?.map_or(0, |m| m.len);
            if !self.options.dry_run {
                tmp.remove(&entry.name)?;
            }
            self.report.temp_files += 1;
            self.report.temp_bytes += len;
        }
        Ok(())
    }

    /// Makes the removals durable, then drops the intents that recorded
    /// them: the other way round, a power cut could keep a file and lose
    /// the only record of it. One fsync per shard directory touched, at
    /// most a few hundred whatever the garbage.
    fn finish(&mut self) -> Result<(), Error> {
        for shard in std::mem::take(&mut self.touched) {
            match self.store.tree.sync_path(&shard) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        for intent in self.finished.drain(..) {
            intent.done();
        }
        Ok(())
    }
}

fn age(now: SystemTime, meta: &Meta) -> Duration {
    now.duration_since(meta.modified).unwrap_or_default()
}

/// An exclusive flock on a kept file, taken without waiting, held while gc
/// removes it; `None` if another process holds a lock on it. A file that
/// cannot be opened (gone, or not a regular file) is held by no one
/// (`Some(None)`).
fn claim(dir: &Dir, name: &OsStr) -> Option<Option<std::fs::File>> {
    use std::os::unix::io::AsRawFd;
    let Ok(file) = dir.open_file(name) else {
        return Some(None);
    };
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Some(Some(file));
    }
    let err = std::io::Error::last_os_error();
    (err.raw_os_error() != Some(libc::EWOULDBLOCK)).then_some(None)
}
