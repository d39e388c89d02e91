//! What an appc image renders from: its dependencies, resolved in the store,
//! in the order the appc spec gives (ace.md, "Filesystem Setup"), then the
//! image itself, each filtered by the `pathWhitelist`s above it.
//!
//! A dependency is found by its `imageID` when it has one (the image must
//! then carry the dependency's name and labels), else by `imageName` and
//! `labels` with the latest-by-name rule (DESIGN.md §4). Dependencies are
//! rendered depth first, each one's own dependencies before it, in the
//! order they are listed; an image reached twice (a diamond) is rendered
//! once, where it is first reached, so that a later dependency's files are
//! not overwritten again by a common base. A cycle is an error.
//!
//! `pathWhitelist`: a non-directory is written only if every image on the
//! way from the top image down to the one holding it, that has a
//! whitelist, lists it; a directory only if it is listed or lies above a
//! listed path. Nothing else is written, so nothing has to be removed
//! afterwards.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::{DependencySpec, LayerName, RenderError};
use super::names;
use super::oci::read_json;
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{ImageFormat, ImageInfo};
use crate::import::appc::{self, AciManifest, Dependency};
use crate::store::Store;

/// Dependencies nested deeper than this are refused.
const MAX_DEPTH: usize = 32;

/// One ACI to apply (its uncompressed tar, as the store keeps it).
pub(super) struct Aci {
    pub name: LayerName,
    pub path: PathBuf,
    /// The image ID: the sha512 of the tar.
    pub key: Digest,
    pub filter: PathFilter,
}

pub(super) struct AciPlan {
    /// Dependencies first, the image last.
    pub images: Vec<Aci>,
    /// The image's manifest, byte for byte as imported.
    pub manifest: Vec<u8>,
}

pub(super) fn plan(store: &Store, info: &ImageInfo) -> Result<AciPlan, Error> {
    let mut planner = Planner {
        store,
        images: Vec::new(),
        done: HashSet::new(),
        path: Vec::new(),
    };
    let manifest = planner.visit(info, &[])?;
    Ok(AciPlan {
        images: planner.images,
        manifest,
    })
}

struct Planner<'s> {
    store: &'s Store,
    images: Vec<Aci>,
    done: HashSet<Digest>,
    /// The images from the top down to the one being visited.
    path: Vec<Digest>,
}

impl Planner<'_> {
    /// Plans `info` and its dependencies; returns its manifest's bytes.
    fn visit(&mut self, info: &ImageInfo, above: &[Arc<Whitelist>]) -> Result<Vec<u8>, Error> {
        let bytes = read_json(self.store, &info.key, &info.manifest, "manifest")?;
        let manifest = appc::parse(&bytes).map_err(|reason| RenderError::BadImage {
            image: info.key.clone(),
            reason: format!("its {reason}"),
        })?;
        let mut lists = above.to_vec();
        if !manifest.path_whitelist.is_empty() {
            lists.push(Arc::new(Whitelist::new(&manifest.path_whitelist)));
        }
        self.path.push(info.key.clone());
        for dep in &manifest.dependencies {
            let found = self.resolve(info, &manifest, dep)?;
            if self.path.contains(&found.key) {
                return Err(RenderError::BadDependencies {
                    image: info.key.clone(),
                    name: manifest.name.clone(),
                    reason: "form a cycle",
                }
                .into());
            }
            if self.path.len() >= MAX_DEPTH {
                return Err(RenderError::BadDependencies {
                    image: info.key.clone(),
                    name: manifest.name.clone(),
                    reason: "nest more than 32 deep",
                }
                .into());
            }
            if !self.done.contains(&found.key) {
                self.visit(&found, &lists)?;
            }
        }
        self.path.pop();
        if !self.store.tree.contains(&info.key) {
            return Err(RenderError::MissingBlob {
                image: info.key.clone(),
                what: "ACI".into(),
                digest: info.key.clone(),
            }
            .into());
        }
        let what = if self.path.is_empty() {
            format!("ACI {}", manifest.name)
        } else {
            format!("dependency {}", manifest.name)
        };
        self.done.insert(info.key.clone());
        self.images.push(Aci {
            name: LayerName {
                what,
                digest: info.key.clone(),
            },
            path: self.store.tree.path(&info.key),
            key: info.key.clone(),
            filter: PathFilter { lists },
        });
        Ok(bytes)
    }

    fn resolve(
        &self,
        of: &ImageInfo,
        manifest: &AciManifest,
        dep: &Dependency,
    ) -> Result<ImageInfo, Error> {
        let spec = || {
            Box::new(DependencySpec {
                name: dep.image_name.clone(),
                labels: dep.labels.clone(),
                image_id: dep.image_id.clone(),
            })
        };
        let missing = || -> Error {
            RenderError::MissingDependency {
                image: of.key.clone(),
                name: manifest.name.clone(),
                dependency: spec(),
            }
            .into()
        };
        let found = match &dep.image_id {
            Some(id) => {
                let found = self.store.index.image(id)?.ok_or_else(missing)?;
                if found.name != dep.image_name {
                    return Err(RenderError::DependencyNameMismatch {
                        image: of.key.clone(),
                        name: manifest.name.clone(),
                        dependency: spec(),
                        found: found.name,
                    }
                    .into());
                }
                if !dep
                    .labels
                    .iter()
                    .all(|l| found.label(&l.name) == Some(&l.value))
                {
                    return Err(missing());
                }
                found
            }
            None => self
                .store
                .index
                .latest_by_name(&dep.image_name, &dep.labels)?
                .ok_or_else(missing)?,
        };
        if found.format != ImageFormat::Aci {
            return Err(missing());
        }
        Ok(found)
    }
}

/// One image's `pathWhitelist`: the paths, and the directories above them.
#[derive(Debug)]
pub(super) struct Whitelist {
    paths: HashSet<Vec<u8>>,
    parents: HashSet<Vec<u8>>,
}

impl Whitelist {
    fn new(paths: &[String]) -> Whitelist {
        let mut list = Whitelist {
            paths: HashSet::new(),
            parents: HashSet::from([Vec::new()]),
        };
        for path in paths {
            let Ok(path) = names::normalize(path.as_bytes()) else {
                continue; // a name no member can have
            };
            for (i, &b) in path.iter().enumerate() {
                if b == b'/' {
                    list.parents.insert(path[..i].to_vec());
                }
            }
            list.paths.insert(path);
        }
        list
    }
}

/// The whitelists a member must pass, from the top image down.
#[derive(Debug, Clone, Default)]
pub(super) struct PathFilter {
    lists: Vec<Arc<Whitelist>>,
}

impl PathFilter {
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Whether a member at `path` (normalized, relative to the rootfs) is
    /// written.
    pub fn allows(&self, path: &[u8], is_dir: bool) -> bool {
        self.lists
            .iter()
            .all(|w| w.paths.contains(path) || (is_dir && w.parents.contains(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelists_filter() {
        let top = Arc::new(Whitelist::new(&[
            "/etc/app.conf".into(),
            "/usr/bin/app".into(),
            "/etc/systemd/system/".into(),
        ]));
        let f = PathFilter {
            lists: vec![top.clone()],
        };
        assert!(f.allows(b"etc/app.conf", false));
        assert!(f.allows(b"usr/bin/app", false));
        assert!(!f.allows(b"usr/bin/other", false));
        assert!(f.allows(b"usr/bin", true));
        assert!(f.allows(b"", true));
        assert!(f.allows(b"etc/systemd/system", true));
        assert!(!f.allows(b"var", true));
        assert!(
            !f.allows(b"usr/bin", false),
            "a file where a listed directory lies above a path"
        );
        let mid = Arc::new(Whitelist::new(&["/usr/bin/app".into()]));
        let both = PathFilter {
            lists: vec![top, mid],
        };
        assert!(both.allows(b"usr/bin/app", false));
        assert!(!both.allows(b"etc/app.conf", false));
        assert!(PathFilter::default().allows(b"anything", false));
    }
}
