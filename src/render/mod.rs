//! Rendering images into root filesystems: `imgstore render IMAGE DIR`.
//!
//! What a render writes into DIR (created; an existing one must be empty):
//!
//! - an **OCI** image: DIR *is* the root filesystem, its layers applied in
//!   order with their whiteouts, as `umoci raw unpack` makes it. A
//!   multi-platform image renders the manifest for
//!   [`RenderOptions::platform`], or for the host's platform.
//! - an **appc** image: DIR holds the image as an ACI does, unpacked:
//!   `DIR/manifest` (the image's manifest, byte for byte as imported) beside
//!   `DIR/rootfs/` (the root filesystem: its dependencies' `rootfs/` and its
//!   own, in the appc spec's order, filtered by `pathWhitelist`). This is the
//!   layout of rkt's tree store and of `rkt image render`, which appc
//!   runtimes read; the manifest stays out of the root filesystem, so the
//!   app never sees it and a `pathWhitelist` means what it says.
//!
//! [`RenderReport::rootfs`] says where the root filesystem is, either way.
//!
//! What a render promises (DESIGN.md §3, invariant 9): nothing outside DIR
//! is created, changed or followed, whatever the archives say; every path is
//! resolved inside DIR as if DIR were `/` ([`root`]). Each layer's bytes are
//! hashed as they are applied and checked against the image's record of
//! them (an OCI layer's diff_id, an ACI's image ID); a mismatch, a truncated
//! or corrupt layer, or a member that cannot be written fails the render,
//! and what the render created is removed again: DIR itself, or, if it
//! existed, what was put into it. The error names the layer (by position
//! and digest) and the member. The store is only read (the image's last use
//! is recorded after a render that succeeded), under the store lock held
//! shared, so gc cannot remove a blob from under it.
//!
//! The engine works on a directory descriptor once the root filesystem's
//! directory is open (only the appc manifest is written by path, beside
//! it, at the end), so a tree rendered into a temporary directory can be
//! renamed into place afterwards ([`Store::render_planned`]). Nothing is
//! fsynced: durability of the tree is for whoever keeps it. A render that is
//! killed leaves what it wrote in DIR; only a render into a temporary name
//! (the store-kept trees) can promise never to show half a tree.
//!
//! Without DIR, [`Store::render_tree`] renders into a tree the store keeps
//! under `trees/` and hands out again ([`trees`]): written under a temp
//! name, synced, renamed into place and only then recorded, so that a
//! half-written tree is never handed out (invariant 9).
//!
//! The parts: [`oci`] and [`appc`] work out what to apply; [`stream`]
//! decompresses and hashes layers on threads of their own; [`archive`]
//! reads tar members; [`apply`] writes them through [`root`]; [`trees`]
//! keeps rendered trees, and [`fingerprint`] hashes one for `fsck --trees`.

mod appc;
mod apply;
mod archive;
mod error;
mod fingerprint;
mod names;
mod oci;
mod root;
mod stream;
mod trees;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use self::apply::{Applier, Counts, Failure, Rules};
use self::archive::{TarError, TarReader};
use self::root::Root;
use self::stream::{Input, LayerStream, StreamError};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{ImageFormat, ImageInfo};
use crate::lock::LockMode;
use crate::progress::{Counter, Progress};
use crate::store::Store;

pub use self::error::{DependencySpec, LayerName, LayerProblem, MemberProblem, RenderError};
pub use self::root::Resolver;
pub(crate) use self::trees::StagedTree;
pub use self::trees::{KeptTree, TreeInfo};
pub use crate::platform::Platform;

/// How to render.
#[derive(Clone)]
pub struct RenderOptions {
    /// The platform to render from a multi-platform image (`None`: the
    /// host's). Given for a single-platform image, it must match it.
    pub platform: Option<Platform>,
    /// Render as an ordinary user can, as `umoci unpack --rootless` does:
    /// files owned by the caller, no device nodes (skipped, with a
    /// warning), no setuid or setgid bits. The default is whether the
    /// process lacks root's effective user ID.
    pub rootless: bool,
    /// Where to report progress: one task per render, the bytes of the
    /// layer blobs read as they are applied (the pipeline holds only a few
    /// MiB, so read is as good as applied), out of their total.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for RenderOptions {
    fn default() -> RenderOptions {
        RenderOptions {
            platform: None,
            rootless: !rustix::process::geteuid().is_root(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for RenderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderOptions")
            .field("platform", &self.platform)
            .field("rootless", &self.rootless)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a render wrote.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RenderReport {
    /// The image rendered.
    pub image: Digest,
    /// The image's format: OCI, or appc.
    pub format: ImageFormat,
    /// The OCI image manifest whose layers were applied (for an index, the
    /// one the platform chose); for appc, the image's manifest blob.
    pub manifest: Digest,
    /// What was applied, in order: OCI layers, or ACIs (dependencies first).
    pub layers: Vec<Digest>,
    /// The root filesystem: DIR (OCI) or DIR/rootfs (appc).
    pub rootfs: PathBuf,
    /// Where the appc image manifest was written (DIR/manifest).
    pub manifest_file: Option<PathBuf>,
    /// Regular files written (a file written again by a later layer
    /// counts again).
    pub files: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Directories made.
    pub directories: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Hard links made.
    pub hardlinks: u64,
    /// Device nodes and FIFOs made.
    pub special_files: u64,
    /// Whiteouts applied (each removal counts once).
    pub whiteouts: u64,
    /// Device nodes left out for want of privilege.
    pub skipped_devices: u64,
    /// Whether the render ran without privilege ([`RenderOptions::rootless`]).
    pub rootless: bool,
    /// How paths were resolved inside the target.
    pub resolver: Resolver,
    /// Things left out that a user should know of, one sentence each.
    pub warnings: Vec<String>,
}

/// What a render will apply, worked out (and checked against the store)
/// before anything is written.
pub(crate) struct RenderPlan {
    info: ImageInfo,
    manifest: Digest,
    kind: PlanKind,
}

enum PlanKind {
    Oci(oci::OciPlan),
    Appc(appc::AciPlan),
}

impl RenderPlan {
    /// What the render applies, in order: the OCI layers, or the ACIs
    /// (dependencies first). Together with the image, the manifest and the
    /// options, this is what makes one rendered tree differ from another.
    fn applied(&self) -> Vec<Digest> {
        match &self.kind {
            PlanKind::Oci(p) => p.layers.iter().map(|l| l.name.digest.clone()).collect(),
            PlanKind::Appc(p) => p.images.iter().map(|a| a.key.clone()).collect(),
        }
    }

    /// The platform an OCI image's config names.
    fn platform(&self) -> Option<&Platform> {
        match &self.kind {
            PlanKind::Oci(p) => p.platform.as_ref(),
            PlanKind::Appc(_) => None,
        }
    }
}

/// One stream to apply: a layer or an ACI.
struct Step<'p> {
    name: &'p LayerName,
    path: &'p Path,
    expected: &'p Digest,
    rules: Rules<'p>,
}

impl Store {
    /// Renders an image's root filesystem into `dir` (see the module
    /// documentation for the layout). `dir` is created; an existing one
    /// must be an empty directory. On failure, what the render created is
    /// removed.
    pub fn render(
        &self,
        key: &Digest,
        dir: &Path,
        options: &RenderOptions,
    ) -> Result<RenderReport, Error> {
        let _lock = self.lock(LockMode::Shared, true)?;
        let info = self.image(key)?;
        let plan = self.plan_render(&info, options)?;
        let target = Target::prepare(dir)?;
        match self.render_planned(&plan, dir, options) {
            Ok(report) => {
                // Last use is a hint for prune: a render does not fail for
                // want of recording it.
                if let Err(e) = self.index.touch_image(&plan.info) {
                    tracing::debug!("cannot record the use of {key}: {e}");
                }
                Ok(report)
            }
            Err(e) => {
                if let Err(cleanup) = target.discard() {
                    tracing::warn!(
                        "cannot remove the partial render in {}: {cleanup}",
                        dir.display()
                    );
                }
                Err(e)
            }
        }
    }

    /// Works out what rendering `info` applies; fails (naming the missing
    /// layer or dependency) before anything is written.
    pub(crate) fn plan_render(
        &self,
        info: &ImageInfo,
        options: &RenderOptions,
    ) -> Result<RenderPlan, Error> {
        let (manifest, kind) = match info.format {
            ImageFormat::Oci => {
                let plan = oci::plan(self, info, options.platform.as_ref())?;
                (plan.manifest.clone(), PlanKind::Oci(plan))
            }
            ImageFormat::Aci => (
                info.manifest.clone(),
                PlanKind::Appc(appc::plan(self, info)?),
            ),
        };
        Ok(RenderPlan {
            info: info.clone(),
            manifest,
            kind,
        })
    }

    /// Renders a plan into `dir`, an existing empty directory. On failure
    /// what was written stays: the caller removes `dir`. The caller holds
    /// the store lock (shared) from planning to here.
    pub(crate) fn render_planned(
        &self,
        plan: &RenderPlan,
        dir: &Path,
        options: &RenderOptions,
    ) -> Result<RenderReport, Error> {
        let (rootfs, manifest_file) = match &plan.kind {
            PlanKind::Oci(_) => (dir.to_path_buf(), None),
            PlanKind::Appc(_) => {
                let rootfs = dir.join("rootfs");
                fs::create_dir(&rootfs).map_err(|cause| RenderError::Target {
                    action: "create",
                    path: rootfs.clone(),
                    cause,
                })?;
                (rootfs, Some(dir.join("manifest")))
            }
        };
        let root = Root::open(&rootfs).map_err(|cause| RenderError::Target {
            action: "open",
            path: rootfs.clone(),
            cause,
        })?;
        let mut applier = Applier::new(&root, options.rootless);
        let steps: Vec<Step> = match &plan.kind {
            PlanKind::Oci(p) => p
                .layers
                .iter()
                .map(|l| Step {
                    name: &l.name,
                    path: &l.path,
                    expected: &l.diff_id,
                    rules: Rules {
                        whiteouts: true,
                        prefix: None,
                        filter: None,
                    },
                })
                .collect(),
            PlanKind::Appc(p) => p
                .images
                .iter()
                .map(|a| Step {
                    name: &a.name,
                    path: &a.path,
                    expected: &a.key,
                    rules: Rules {
                        whiteouts: false,
                        prefix: Some(b"rootfs"),
                        filter: (!a.filter.is_empty()).then_some(&a.filter),
                    },
                })
                .collect(),
        };
        let total = steps
            .iter()
            .filter_map(|s| fs::metadata(s.path).ok())
            .map(|m| m.len())
            .sum();
        let progress = Counter::begin(options.progress.as_deref(), &plan.info.name, Some(total));
        apply_all(&mut applier, &steps, &rootfs, &progress)?;
        applier.finish().map_err(|f| {
            let last = steps
                .last()
                .map(|s| s.name.clone())
                .unwrap_or_else(|| LayerName {
                    what: "image".into(),
                    digest: plan.info.key.clone(),
                });
            Error::from(failure(&last, f))
        })?;
        if let (PlanKind::Appc(p), Some(path)) = (&plan.kind, &manifest_file) {
            fs::write(path, &p.manifest).map_err(|cause| RenderError::Target {
                action: "write",
                path: path.clone(),
                cause,
            })?;
        }
        Ok(report(
            plan,
            &steps,
            rootfs,
            manifest_file,
            &applier.counts,
            options,
            root.resolver(),
        ))
    }
}

/// Streams every step through the decompressing and hashing threads and
/// applies it; checks each one's digest once its bytes have all passed.
fn apply_all(
    applier: &mut Applier,
    steps: &[Step],
    rootfs: &Path,
    progress: &Counter,
) -> Result<(), Error> {
    std::thread::scope(|scope| {
        let inputs = steps
            .iter()
            .map(|s| Input {
                path: s.path.to_path_buf(),
                algorithm: s.expected.algorithm(),
            })
            .collect();
        let streams = stream::start(scope, inputs, progress.clone()).map_err(|cause| {
            RenderError::Target {
                action: "start the decompressing threads for",
                path: rootfs.to_path_buf(),
                cause,
            }
        })?;
        let result = (|| {
            for step in steps {
                let mut layer = LayerStream::new(&streams.events);
                {
                    let mut tar = TarReader::new(&mut layer);
                    applier
                        .apply_layer(&mut tar, &step.rules)
                        .map_err(|f| failure(step.name, f))?;
                }
                layer
                    .drain()
                    .map_err(|e| failure(step.name, Failure::Tar(TarError::Stream(e))))?;
                let found = streams.digests.recv().map_err(|_| RenderError::BadLayer {
                    layer: step.name.clone(),
                    problem: LayerProblem::Read(io::Error::other("the hashing thread stopped")),
                })?;
                if &found != step.expected {
                    return Err(RenderError::DigestMismatch {
                        layer: step.name.clone(),
                        expected: step.expected.clone(),
                        found,
                    });
                }
                crate::failpoint::hit("render-after-layer");
            }
            Ok(())
        })();
        // Closed channels stop the threads before the scope joins them.
        drop(streams);
        result.map_err(Error::from)
    })
}

fn failure(layer: &LayerName, f: Failure) -> RenderError {
    let layer = layer.clone();
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match f {
        Failure::Tar(TarError::Stream(StreamError::Truncated)) => RenderError::BadLayer {
            layer,
            problem: LayerProblem::Truncated,
        },
        Failure::Tar(TarError::Stream(StreamError::Read(e))) => RenderError::BadLayer {
            layer,
            problem: LayerProblem::Read(e),
        },
        Failure::Tar(TarError::BadHeader { offset, reason }) => RenderError::BadLayer {
            layer,
            problem: LayerProblem::BadHeader { offset, reason },
        },
        Failure::Tar(TarError::Unsupported { name, what }) => RenderError::BadMember {
            layer,
            member: lossy(&name),
            problem: MemberProblem::Unsupported(what),
        },
        Failure::Member { member, problem } => RenderError::BadMember {
            layer,
            member: lossy(&member),
            problem,
        },
        Failure::Io {
            member,
            action,
            cause,
        } => RenderError::Write {
            layer,
            member: lossy(&member),
            action,
            cause,
        },
    }
}

fn report(
    plan: &RenderPlan,
    steps: &[Step],
    rootfs: PathBuf,
    manifest_file: Option<PathBuf>,
    counts: &Counts,
    options: &RenderOptions,
    resolver: Resolver,
) -> RenderReport {
    let mut warnings = Vec::new();
    if counts.skipped_devices > 0 {
        warnings.push(format!(
            "left out {} device node{}: making device nodes needs root (CAP_MKNOD)",
            counts.skipped_devices,
            if counts.skipped_devices == 1 { "" } else { "s" }
        ));
    }
    if counts.skipped_xattrs > 0 {
        warnings.push(format!(
            "left out {} extended attribute{} that the filesystem of {} or this user cannot set",
            counts.skipped_xattrs,
            if counts.skipped_xattrs == 1 { "" } else { "s" },
            rootfs.display()
        ));
    }
    RenderReport {
        image: plan.info.key.clone(),
        format: plan.info.format,
        manifest: plan.manifest.clone(),
        layers: steps.iter().map(|s| s.name.digest.clone()).collect(),
        rootfs,
        manifest_file,
        files: counts.files,
        bytes: counts.bytes,
        directories: counts.dirs,
        symlinks: counts.symlinks,
        hardlinks: counts.hardlinks,
        special_files: counts.specials,
        whiteouts: counts.whiteouts,
        skipped_devices: counts.skipped_devices,
        rootless: options.rootless,
        resolver,
        warnings,
    }
}

/// The target directory of [`Store::render`], and what to remove if the
/// render fails.
struct Target {
    dir: PathBuf,
    /// The topmost directory the render created (DIR or a parent of it);
    /// `None` if DIR existed.
    created: Option<PathBuf>,
}

impl Target {
    fn prepare(dir: &Path) -> Result<Target, Error> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |cause| RenderError::Target {
                action,
                path,
                cause,
            }
        };
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                let mut entries = fs::read_dir(dir).map_err(io("read", dir))?;
                if entries.next().is_some() {
                    return Err(RenderError::TargetNotEmpty {
                        path: dir.to_path_buf(),
                    }
                    .into());
                }
                Ok(Target {
                    dir: dir.to_path_buf(),
                    created: None,
                })
            }
            Ok(_) => Err(RenderError::TargetNotDirectory {
                path: dir.to_path_buf(),
            }
            .into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut top = dir.to_path_buf();
                while let Some(parent) = top.parent().filter(|p| !p.as_os_str().is_empty()) {
                    if fs::symlink_metadata(parent).is_ok() {
                        break;
                    }
                    top = parent.to_path_buf();
                }
                fs::create_dir_all(dir).map_err(io("create", dir))?;
                Ok(Target {
                    dir: dir.to_path_buf(),
                    created: Some(top),
                })
            }
            Err(e) => Err(io("read", dir)(e).into()),
        }
    }

    /// Removes what the render created.
    fn discard(self) -> io::Result<()> {
        match &self.created {
            Some(top) => root::remove_path(top),
            None => root::empty_dir(&self.dir),
        }
    }
}
