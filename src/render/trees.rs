//! The trees the store keeps: `imgstore render IMAGE` without a DIR
//! renders into `<store>/trees/<id>/`, records it, and hands out the same
//! directory again for the same render asked twice (rkt's tree store, with
//! its gaps closed).
//!
//! **What makes a tree.** Its id is a hash of what was rendered: the image
//! key, the image manifest the platform chose, the rootless flag, and every
//! layer (or ACI, dependencies included) applied, in order. So two
//! platforms, or rootless and not, are two trees; and an appc image whose
//! dependency resolves to a newer image since makes a new tree, not a stale
//! hit.
//!
//! **How a tree comes to be** (the publish path's order, for a directory):
//!
//! 1. under the store lock (shared, as an import) and a lock of the tree's
//!    own (an OFD byte-range lock on `trees/.lock`, so that two processes
//!    asking for the same tree render it once), the tree is rendered into
//!    `trees/.tmp-<id>-<random>/`;
//! 2. made durable: one `syncfs(2)` of the store's filesystem, while the
//!    tree is walked for its [fingerprint](super::fingerprint) on the other
//!    cores;
//! 3. renamed to `trees/<id>` (`RENAME_NOREPLACE`) and `trees/` fsynced
//!    ([`crate::publish`]);
//! 4. recorded: its row, with edges holding the blobs it was rendered from,
//!    commits in one durable transaction.
//!
//! A row therefore only ever names a complete, durable directory. A crash
//! before 4 leaves a directory no row names — a `.tmp-` one, or a complete
//! one under its final name — which the next render of that tree removes
//! before rendering anew, and `gc` removes in any case. A second call finds
//! the row and the directory (a stat) and returns at once.
//!
//! **How trees go.** `rm IMAGE` and `prune` remove rows first, then
//! directories (each under its tree lock, and only if no new row of that
//! name appeared meanwhile). `prune --unused-for` also removes trees not
//! used for that long, whatever their image. `gc`, under the exclusive
//! store lock (so no render is running), removes every entry of `trees/`
//! no row names and drops rows whose directory vanished (their blobs become
//! garbage in the same gc); gc's `--grace` does not apply, as no writer
//! works in `trees/` without the store lock. `fsck` reports both; `fsck
//! --trees` also re-walks every tree against the fingerprint recorded when
//! it was rendered, and `--repair` drops a damaged tree (row, then
//! directory).
//!
//! `trees/` is opened without following a symbolic link, and everything in
//! it is made, renamed and removed relative to that descriptor, never
//! following a link inside it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::fingerprint::{Fingerprint, fingerprint};
use super::{RenderOptions, RenderPlan, RenderReport};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::fsck::{Problem, ProblemKind};
use crate::image::ImageFormat;
use crate::index::{Commit, NewTree, TreeRow};
use crate::lock::LockMode;
use crate::nofollow::{Dir, Kind};
use crate::publish::Publication;
use crate::store::Store;

/// The store's directory of trees.
const TREES: &str = "trees";
/// The lock file in `trees/`: never removed, so that a lock on it always
/// means the same file.
const LOCK_FILE: &[u8] = b".lock";
/// Names of trees being rendered start with this.
const STAGING_PREFIX: &str = ".tmp-";
/// Hex digits of a tree id.
const ID_LEN: usize = 32;

/// A tree the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TreeInfo {
    /// Its id: the name of its directory under `trees/`.
    pub id: String,
    /// The image rendered.
    pub image: Digest,
    /// The image's name.
    pub image_name: String,
    /// The image's format.
    pub format: ImageFormat,
    /// The image manifest whose layers were applied (for an OCI index, the
    /// one the platform chose; for appc, the image's manifest).
    pub manifest: Digest,
    /// `os/arch[/variant]` of an OCI tree, as its config says.
    pub platform: Option<String>,
    /// Whether it was rendered rootless ([`RenderOptions::rootless`]).
    pub rootless: bool,
    /// The tree's directory, `<store>/trees/<id>`.
    pub path: PathBuf,
    /// The root filesystem: the directory itself (OCI), or its `rootfs/`
    /// beside the image manifest in `manifest` (appc).
    pub rootfs: PathBuf,
    /// When it was rendered.
    pub rendered_at: DateTime<Utc>,
    /// When it was last handed out, to the minute (for `prune`).
    pub last_used: DateTime<Utc>,
    /// Bytes of file data in it, hard links counted once.
    pub size: u64,
    /// Its fingerprint when it was rendered, which `fsck --trees` checks.
    pub hash: Digest,
}

/// What [`Store::render_tree`] handed out.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeptTree {
    /// The tree.
    pub tree: TreeInfo,
    /// Whether the tree was there already, and nothing was rendered.
    pub reused: bool,
    /// What the render wrote, when this call rendered the tree (its paths
    /// are the tree's final ones).
    pub report: Option<RenderReport>,
}

impl Store {
    /// Renders an image into a tree the store keeps, or hands out the one
    /// kept already for the same image and options (see the module
    /// documentation). The tree is complete and durable when this returns.
    ///
    /// ```
    /// use imgstore::{ImportOptions, RenderOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// let key = store.import("tests/data/hello.aci", &ImportOptions::new())?[0].key.clone();
    /// let first = store.render_tree(&key, &RenderOptions::default())?;
    /// assert!(!first.reused && first.tree.rootfs.is_dir());
    /// let again = store.render_tree(&key, &RenderOptions::default())?;
    /// assert!(again.reused);
    /// assert_eq!(again.tree.path, first.tree.path);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn render_tree(&self, key: &Digest, options: &RenderOptions) -> Result<KeptTree, Error> {
        let _lock = self.lock(LockMode::Shared, true)?;
        let info = self.image(key)?;
        let plan = self.plan_render(&info, options)?;
        let id = tree_id(&plan, options.rootless);
        let trees = TreesDir::open(self.tree.root(), true)?
            .ok_or_else(|| Error::Internal("trees/ vanished as it was made".into()))?;
        if let Some(kept) = self.kept_tree(&trees, &id, &info)? {
            return Ok(kept);
        }
        let _held = trees.lock(&id)?;
        // Another process may have rendered it while this one waited.
        if let Some(kept) = self.kept_tree(&trees, &id, &info)? {
            return Ok(kept);
        }
        // No complete tree has this id, so whatever has its name is a
        // leftover (a render killed between its rename and its commit, a
        // removal cut short), and no one can be handed it.
        trees.remove(id.as_bytes())?;

        let mut staged = trees.stage(&id)?;
        let mut report = self.render_planned(&plan, &staged.path(), options)?;
        let print = staged.seal()?;
        crate::failpoint::hit("render-before-publish");
        let row = NewTree {
            name: id.clone(),
            image: info.key.clone(),
            manifest: plan.manifest.clone(),
            platform: plan.platform().map(ToString::to_string),
            rootless: options.rootless,
            size: print.size,
            hash: print.hash,
            blobs: std::iter::once(plan.manifest.clone())
                .chain(plan.applied())
                .collect(),
        };
        let mut publication = Publication::new(&self.tree, &self.index);
        publication.stage_tree(staged);
        publication.commit(&Commit {
            trees: vec![row],
            ..Commit::default()
        })?;
        crate::failpoint::hit("render-after-commit");
        if let Err(e) = self.index.touch_image(&plan.info) {
            tracing::debug!("cannot record the use of {key}: {e}");
        }
        let row = self
            .index
            .tree(&id)?
            .ok_or_else(|| Error::Internal(format!("tree {id} vanished as it was recorded")))?;
        let tree = tree_info(&trees, row);
        report.rootfs = tree.rootfs.clone();
        if report.manifest_file.is_some() {
            report.manifest_file = Some(tree.path.join("manifest"));
        }
        Ok(KeptTree {
            tree,
            reused: false,
            report: Some(report),
        })
    }

    /// The trees the store keeps, by image name.
    pub fn trees(&self) -> Result<Vec<TreeInfo>, Error> {
        let rows = self.index.trees()?;
        let dir = trees_path(&self.root);
        Ok(rows
            .into_iter()
            .map(|row| tree_info_at(&dir, row))
            .collect())
    }

    /// Removes the trees not handed out for `unused_for`, rows first, then
    /// directories; returns them. (`prune` removes the trees of the images
    /// it removes; this removes unused trees of images that stay.)
    pub fn prune_trees(&self, unused_for: std::time::Duration) -> Result<Vec<TreeInfo>, Error> {
        let unused = i64::try_from(unused_for.as_micros()).unwrap_or(i64::MAX);
        let cutoff = crate::index::now_micros().saturating_sub(unused);
        let rows = self.index.prune_trees(cutoff)?;
        let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        self.remove_tree_dirs(&names)?;
        let dir = trees_path(&self.root);
        Ok(rows.into_iter().map(|r| tree_info_at(&dir, r)).collect())
    }

    /// The recorded tree `id`, if its directory is there; records its use
    /// (and its image's).
    fn kept_tree(
        &self,
        trees: &TreesDir,
        id: &str,
        image: &crate::image::ImageInfo,
    ) -> Result<Option<KeptTree>, Error> {
        let Some(row) = self.index.tree(id)? else {
            return Ok(None);
        };
        // A row whose directory someone removed: rendered anew, and the
        // new row replaces it.
        if trees.kind(id.as_bytes())? != Some(Kind::Dir) {
            return Ok(None);
        }
        // Last use is a hint for prune: handing out a tree does not fail
        // for want of recording it.
        if let Err(e) = self.index.touch_tree(&row) {
            tracing::debug!("cannot record the use of tree {id}: {e}");
        }
        if let Err(e) = self.index.touch_image(image) {
            tracing::debug!("cannot record the use of {}: {e}", image.key);
        }
        Ok(Some(KeptTree {
            tree: tree_info(trees, row),
            reused: true,
            report: None,
        }))
    }

    /// Removes the directories of trees whose rows were just removed (`rm`,
    /// `prune`): each under its tree lock, and only if no row of that name
    /// came back meanwhile (a render of the image imported again).
    pub(crate) fn remove_tree_dirs(&self, names: &[String]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        // Shared, as a render: a gc sweeping trees/ waits, and waits for us.
        let _lock = self.lock(LockMode::Shared, true)?;
        let Some(trees) = TreesDir::open(self.tree.root(), false)? else {
            return Ok(());
        };
        for name in names {
            let _held = trees.lock(name)?;
            if self.index.tree(name)?.is_none() {
                crate::failpoint::hit("trees-before-removal");
                trees.remove(name.as_bytes())?;
            }
        }
        Ok(())
    }

    /// gc's part, under the exclusive store lock (no render runs, so an
    /// entry of `trees/` without a row is never one in the making): drops
    /// the rows whose directory is gone, so that their blobs become
    /// garbage, and removes every entry no row names. Returns how many
    /// directories and rows went (or, with `dry_run`, would go).
    pub(crate) fn sweep_trees(&self, dry_run: bool) -> Result<(u64, u64), Error> {
        let Some(trees) = TreesDir::open(self.tree.root(), false)? else {
            return Ok((0, 0));
        };
        let rows = self.index.trees()?;
        let mut vanished = Vec::new();
        for row in &rows {
            if trees.kind(row.name.as_bytes())? != Some(Kind::Dir) {
                vanished.push(row.name.clone());
            }
        }
        if !dry_run {
            self.index.remove_trees(&vanished, true)?;
        }
        let kept: HashSet<&[u8]> = rows
            .iter()
            .filter(|r| !vanished.contains(&r.name))
            .map(|r| r.name.as_bytes())
            .collect();
        let mut dirs = 0;
        for entry in trees.entries()? {
            if kept.contains(entry.as_slice()) {
                continue;
            }
            if !dry_run {
                trees.remove(&entry)?;
            }
            dirs += 1;
        }
        if dirs > 0 && !dry_run {
            trees.sync()?;
        }
        Ok((dirs, vanished.len() as u64))
    }

    /// fsck's part: rows whose directory is gone, entries of `trees/` no
    /// row names and, with `rehash`, trees whose contents no longer match
    /// their fingerprint.
    pub(crate) fn check_trees(&self, rehash: bool) -> Result<TreeCheck, Error> {
        let mut check = TreeCheck::default();
        let Some(trees) = TreesDir::open(self.tree.root(), false)? else {
            return Ok(check);
        };
        let rows = self.index.trees()?;
        for row in &rows {
            let path = trees.path_of(row.name.as_bytes());
            let what = describe(row, &path);
            let found = if trees.kind(row.name.as_bytes())? != Some(Kind::Dir) {
                Some(format!("{what}: its directory is gone"))
            } else if rehash {
                check.checked += 1;
                match fingerprint(&path) {
                    Ok(print) if print.hash == row.hash => None,
                    Ok(print) => Some(format!(
                        "{what}: it changed since it was rendered (its walk hashes to {}, not {})",
                        print.hash, row.hash
                    )),
                    Err(e) => Some(format!("{what}: cannot walk it: {}", chain(&e))),
                }
            } else {
                None
            };
            if let Some(detail) = found {
                check.problems.push(Problem {
                    kind: ProblemKind::Tree,
                    key: Some(row.image.clone()),
                    detail,
                });
                check.damaged.push(row.name.clone());
            }
        }
        let named: HashSet<&[u8]> = rows.iter().map(|r| r.name.as_bytes()).collect();
        for entry in trees.entries()? {
            if !named.contains(entry.as_slice()) {
                check.problems.push(Problem {
                    kind: ProblemKind::Orphan,
                    key: None,
                    detail: format!(
                        "no row names the tree directory {} (a render cut short, or a removal)",
                        trees.path_of(&entry).display()
                    ),
                });
            }
        }
        Ok(check)
    }

    /// fsck --repair's part, under the exclusive store lock: drops the rows
    /// of damaged trees (durably), then removes every entry of `trees/` no
    /// row names — theirs, orphans, and the trees of images the repair of
    /// the blobs removed.
    pub(crate) fn repair_trees(&self, damaged: &[String]) -> Result<(), Error> {
        self.index.remove_trees(damaged, true)?;
        self.sweep_trees(false).map(|_| ())
    }
}

/// What fsck found in `trees/`.
#[derive(Debug, Default)]
pub(crate) struct TreeCheck {
    pub problems: Vec<Problem>,
    /// Trees re-walked.
    pub checked: u64,
    /// Rows to drop: their trees are gone or changed.
    pub damaged: Vec<String>,
}

fn describe(row: &TreeRow, path: &Path) -> String {
    let mut options = Vec::new();
    if let Some(p) = &row.platform {
        options.push(p.clone());
    }
    if row.rootless {
        options.push("rootless".into());
    }
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(", {}", options.join(", "))
    };
    format!("{} ({}{options})", path.display(), row.image_name)
}

/// An error with its causes, on one line.
fn chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The id of the tree a plan renders (see the module documentation).
fn tree_id(plan: &RenderPlan, rootless: bool) -> String {
    let mut h = Algorithm::Sha256.hasher();
    let mut add = |part: &str| {
        h.update(part.as_bytes());
        h.update(b"\0");
    };
    add("imgstore tree 1");
    add(&plan.info.key.to_string());
    add(&plan.manifest.to_string());
    add(if rootless { "rootless" } else { "root" });
    for digest in plan.applied() {
        add(&digest.to_string());
    }
    h.finish().hex()[..ID_LEN].to_string()
}

fn trees_path(root: &Path) -> PathBuf {
    root.join(TREES)
}

fn tree_info(trees: &TreesDir, row: TreeRow) -> TreeInfo {
    tree_info_at(&trees.path, row)
}

fn tree_info_at(dir: &Path, row: TreeRow) -> TreeInfo {
    let path = dir.join(&row.name);
    let rootfs = match row.format {
        ImageFormat::Oci => path.clone(),
        ImageFormat::Aci => path.join("rootfs"),
    };
    TreeInfo {
        id: row.name,
        image: row.image,
        image_name: row.image_name,
        format: row.format,
        manifest: row.manifest,
        platform: row.platform,
        rootless: row.rootless,
        path,
        rootfs,
        rendered_at: row.rendered_at,
        last_used: row.last_used,
        size: row.size,
        hash: row.hash,
    }
}

/// `<store>/trees`, open: reached from the store's root without following
/// a link ([`crate::nofollow`]), like every directory of the store.
pub(crate) struct TreesDir {
    dir: Dir,
    path: PathBuf,
}

impl TreesDir {
    /// Opens `<store>/trees` (a link there is refused), making it with
    /// `create`; `None` if it is not there and not to be made.
    fn open(root: &Dir, create: bool) -> Result<Option<TreesDir>, Error> {
        let dir = if create {
            let (dir, created) = root.sub_or_create(TREES)?;
            if created {
                root.sync()?;
            }
            dir
        } else {
            match root.try_sub(TREES)? {
                Some(dir) => dir,
                None => return Ok(None),
            }
        };
        let path = dir.path().to_path_buf();
        Ok(Some(TreesDir { dir, path }))
    }

    fn path_of(&self, name: &[u8]) -> PathBuf {
        self.dir.child_path(OsStr::from_bytes(name))
    }

    /// What `name` is, not following a link; `None` if nothing.
    fn kind(&self, name: &[u8]) -> Result<Option<Kind>, Error> {
        Ok(self.dir.meta(OsStr::from_bytes(name))?.map(|m| m.kind))
    }

    /// Every entry but the lock file.
    fn entries(&self) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self
            .dir
            .entries()?
            .into_iter()
            .map(|e| e.name.into_vec())
            .filter(|name| name != LOCK_FILE)
            .collect())
    }

    /// Removes an entry and all it holds, following no link; nothing there
    /// is no error.
    fn remove(&self, name: &[u8]) -> Result<(), Error> {
        self.dir.remove(OsStr::from_bytes(name))
    }

    fn sync(&self) -> Result<(), Error> {
        self.dir.sync()
    }

    fn try_clone(&self) -> Result<TreesDir, Error> {
        Ok(TreesDir {
            dir: self.dir.reopen()?,
            path: self.path.clone(),
        })
    }

    /// Makes a new temp directory to render tree `id` into.
    fn stage(&self, id: &str) -> Result<StagedTree, Error> {
        loop {
            // RandomState is seeded from the OS's randomness, per instance.
            let random = std::hash::BuildHasher::hash_one(
                &std::hash::RandomState::new(),
                std::process::id(),
            ) as u32;
            let staging = format!("{STAGING_PREFIX}{id}-{random:08x}");
            match rustix::fs::mkdirat(&self.dir, staging.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    return Ok(StagedTree {
                        dir: self.try_clone()?,
                        staging,
                        id: id.to_string(),
                        state: Stage::Rendering,
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(Error::io(
                        "create",
                        &self.path_of(staging.as_bytes()),
                        e.into(),
                    ));
                }
            }
        }
    }

    /// Takes the lock of tree `id`, waiting for whoever holds it: an OFD
    /// lock (`F_OFD_SETLKW`) on one byte of the lock file, chosen by the
    /// id. An OFD lock belongs to its open file, so two in one process
    /// exclude each other as two processes do, and the kernel drops it
    /// when the process dies. Two ids that share a byte only wait for each
    /// other.
    fn lock(&self, id: &str) -> Result<TreeLock, Error> {
        let path = self.path_of(LOCK_FILE);
        let fd = rustix::fs::openat(
            &self.dir,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io("open lock file", &path, e.into()))?;
        let file = File::from(fd);
        // 60 bits of the id: an offset well inside off_t.
        let offset = id
            .get(..15)
            .and_then(|h| i64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        // SAFETY: a plain C struct; all-zero is a valid value of it.
        let mut request: libc::flock = unsafe { std::mem::zeroed() };
        request.l_type = libc::F_WRLCK as libc::c_short;
        request.l_whence = libc::SEEK_SET as libc::c_short;
        request.l_start = offset;
        request.l_len = 1;
        loop {
            // SAFETY: fcntl on a descriptor we own, with a valid flock.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &request) } == 0 {
                return Ok(TreeLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::io("lock", &path, e));
            }
        }
    }
}

/// A tree's lock, held until dropped.
struct TreeLock {
    _file: File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Being written under its temp name.
    Rendering,
    /// Durable under its temp name.
    Sealed,
    /// Renamed to its final name, not recorded yet.
    Published,
    /// Recorded: the store keeps it.
    Kept,
}

/// A tree in the making, under `trees/`. Until it is kept, dropping it
/// removes whatever it left (its temp directory, or its final one if the
/// commit that was to record it failed).
pub(crate) struct StagedTree {
    dir: TreesDir,
    staging: String,
    id: String,
    state: Stage,
}

impl StagedTree {
    /// Where it is being written.
    fn path(&self) -> PathBuf {
        self.dir.path_of(self.staging.as_bytes())
    }

    /// Its final name under `trees/`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes the rendered tree durable — one `syncfs` of the filesystem,
    /// cheaper than an fsync per file and directory (see docs/benchmarks.md)
    /// — while its fingerprint is taken on the other cores.
    fn seal(&mut self) -> Result<Fingerprint, Error> {
        let path = self.path();
        let (synced, print) = std::thread::scope(|scope| {
            let sync = scope.spawn(|| rustix::fs::syncfs(&self.dir.dir));
            let print = fingerprint(&path);
            (sync.join(), print)
        });
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::io("sync the filesystem of", &path, e.into())),
            Err(_) => return Err(Error::Internal("the syncing thread panicked".into())),
        }
        let print = print?;
        self.state = Stage::Sealed;
        Ok(print)
    }

    /// Renames the sealed tree to its final name (which must be free) and
    /// makes the rename durable. Only [`Publication`] calls this.
    pub fn publish(&mut self) -> Result<(), Error> {
        if self.state != Stage::Sealed {
            return Err(Error::Internal(format!(
                "tree {} published before it was made durable",
                self.id
            )));
        }
        rustix::fs::renameat_with(
            &self.dir.dir,
            self.staging.as_str(),
            &self.dir.dir,
            self.id.as_str(),
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| {
            Error::io(
                "rename a rendered tree to",
                &self.dir.path_of(self.id.as_bytes()),
                e.into(),
            )
        })?;
        self.state = Stage::Published;
        self.dir.sync()?;
        crate::failpoint::hit("render-after-rename");
        Ok(())
    }

    /// The row naming it committed: it stays.
    pub fn keep(mut self) {
        self.state = Stage::Kept;
    }
}

impl Drop for StagedTree {
    fn drop(&mut self) {
        let name = match self.state {
            Stage::Kept => return,
            Stage::Rendering | Stage::Sealed => self.staging.as_bytes(),
            Stage::Published => self.id.as_bytes(),
        };
        // What is left is garbage for gc, if it cannot go now.
        if let Err(e) = self.dir.remove(name) {
            tracing::warn!("{e}");
        }
    }
}
