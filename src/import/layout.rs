//! OCI image layouts: a directory, or a tar of one (oci-archive, plain or
//! compressed).
//!
//! A directory is read by walking its `index.json`: a blob the store has
//! already is never opened, so re-importing a layout costs what is new in
//! it, not its size. An archive is read in one pass ([`members`]), then
//! walked the same way over the staged members. Either way every blob is
//! checked against its descriptor's digest and size before anything is
//! published ([`graph`]).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::graph::{self, Blobs, Naming, Source, Walk};
use super::members::{self, Members, Mode};
use super::staging;
use super::{Importer, docker};
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, Error, IoContext};
use crate::image::ImageInfo;
use crate::input::{OpenRefused, open_regular};
use crate::layer::DiffHasher;
use crate::oci::{self, OciLayout};

pub(super) fn import(ctx: &Importer, path: &Path, is_dir: bool) -> Result<Vec<ImageInfo>, Error> {
    if is_dir {
        import_dir(ctx, path)
    } else {
        let members = members::read(ctx, path, Mode::Oci)?;
        let names = docker::names_by_config(&members);
        import_members(ctx, path, members, &names)
    }
}

/// Imports an archive's members as a layout. `fallback` names images by
/// config digest where the index does not (docker's manifest.json).
pub(super) fn import_members(
    ctx: &Importer,
    path: &Path,
    mut members: Members,
    fallback: &HashMap<Digest, Naming>,
) -> Result<Vec<ImageInfo>, Error> {
    let layout = members
        .metadata
        .remove("oci-layout")
        .ok_or_else(|| not_a_layout(path, "archive", "oci-layout file"))?;
    check_layout_file(path, &layout)?;
    let index = members
        .metadata
        .remove("index.json")
        .ok_or_else(|| not_a_layout(path, "archive", "index.json"))?;
    let source = StagedSource {
        ctx,
        input: path,
        blobs: members.blobs,
    };
    let mut walk = Walk::new(ctx, path, source);
    walk.walk_layout_index(&index, fallback)?;
    finish(ctx, path, walk.source.blobs, walk.images)
}

fn finish(
    ctx: &Importer,
    path: &Path,
    blobs: Blobs,
    images: Vec<crate::index::NewImage>,
) -> Result<Vec<ImageInfo>, Error> {
    if images.is_empty() {
        return Err(Error::archive(
            path,
            ArchiveErrorKind::NoImages("index.json"),
        ));
    }
    graph::commit(ctx, blobs, images)
}

fn import_dir(ctx: &Importer, dir: &Path) -> Result<Vec<ImageInfo>, Error> {
    let layout_path = require(dir, "oci-layout", "oci-layout file", false)?;
    let layout = read_small(dir, "oci-layout", &layout_path)?;
    check_layout_file(dir, &layout)?;
    require(dir, "blobs", "blobs directory", true)?;
    let index_path = require(dir, "index.json", "index.json", false)?;
    let index = read_small(dir, "index.json", &index_path)?;
    let source = DirSource {
        ctx,
        dir,
        blobs: staging::stage_files(ctx, layers_to_stage(ctx, dir, &index)),
    };
    let mut walk = Walk::new(ctx, dir, source);
    walk.walk_layout_index(&index, &HashMap::new())?;
    finish(ctx, dir, walk.source.blobs, walk.images)
}

/// The path of `name` in a layout directory, which must be there as a
/// regular file (or, with `dir`, a directory); `what` names it when not.
fn require(layout: &Path, name: &str, what: &'static str, dir: bool) -> Result<PathBuf, Error> {
    let path = layout.join(name);
    match fs::metadata(&path) {
        Ok(m) if (dir && m.is_dir()) || (!dir && m.is_file()) => Ok(path),
        Ok(m) => Err(Error::archive(
            layout,
            ArchiveErrorKind::NotRegular {
                name: name.to_string(),
                expected: if dir { "directory" } else { "regular file" },
                found: crate::input::describe(m.file_type()),
            },
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(not_a_layout(layout, "layout directory", what))
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Most manifests and indexes [`layers_to_stage`] reads.
const PREFETCH_DOCUMENTS: usize = 4096;

/// The layers a layout directory's manifests name that the store lacks and
/// the directory holds at the size their descriptors say: what can be
/// staged on several threads before the walk, which would otherwise read
/// them one after another. Reads only `index.json` and the indexes and
/// manifests it leads to, and passes over anything odd without a word: the
/// walk that follows checks everything and reports it.
fn layers_to_stage(ctx: &Importer, dir: &Path, index: &[u8]) -> Vec<(PathBuf, Digest, u64)> {
    let stored = |d: &Digest| ctx.index.has_blob(d).unwrap_or(false) && ctx.tree.contains(d);
    let Ok(index) = serde_json::from_slice::<oci::ImageIndex>(index) else {
        return Vec::new();
    };
    // Each document is read once however often it is named, and no
    // deeper than the walk goes.
    let mut queue: Vec<(oci::Descriptor, usize)> =
        index.manifests.into_iter().map(|d| (d, 1)).collect();
    let mut read = HashSet::new();
    let mut layers = Vec::new();
    let mut wanted = HashSet::new();
    while let Some((desc, depth)) = queue.pop() {
        let Ok(digest) = Digest::parse(&desc.digest) else {
            continue;
        };
        // A manifest or index the store has comes with its closure: none of
        // it is read again (a re-import of a stored layout reads nothing).
        if read.len() >= PREFETCH_DOCUMENTS
            || depth > graph::MAX_DEPTH
            || desc.size > oci::MAX_JSON
            || stored(&digest)
            || !read.insert(digest.clone())
        {
            continue;
        }
        let path = layout_blob(dir, &digest);
        let Ok(bytes) = read_small(dir, "a blob", &path) else {
            continue;
        };
        match oci::kind_of(&desc.media_type).or_else(|| oci::kind_by_shape(&bytes)) {
            Some(oci::Kind::Index) => {
                if let Ok(nested) = serde_json::from_slice::<oci::ImageIndex>(&bytes) {
                    queue.extend(nested.manifests.into_iter().map(|d| (d, depth + 1)));
                }
            }
            Some(oci::Kind::Manifest) => {
                let Ok(manifest) = serde_json::from_slice::<oci::ImageManifest>(&bytes) else {
                    continue;
                };
                for layer in manifest.layers {
                    let Ok(d) = Digest::parse(&layer.digest) else {
                        continue;
                    };
                    if stored(&d) || !wanted.insert(d.clone()) {
                        continue;
                    }
                    let path = layout_blob(dir, &d);
                    if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == layer.size) {
                        layers.push((path, d, layer.size));
                    }
                }
            }
            None => {}
        }
    }
    layers
}

/// Reads a small file `name` of the layout directory `dir` whole, opened so
/// that it cannot block ([`crate::input`]).
fn read_small(dir: &Path, name: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let file = open_regular(path).map_err(|e| e.into_error(dir, name, path))?;
    let mut bytes = Vec::new();
    file.take(oci::MAX_JSON + 1)
        .read_to_end(&mut bytes)
        .ctx("read", path)?;
    if bytes.len() as u64 > oci::MAX_JSON {
        return Err(Error::archive(
            path,
            ArchiveErrorKind::TooLarge {
                what: "the file".into(),
                size: bytes.len() as u64,
                limit: oci::MAX_JSON,
            },
        ));
    }
    Ok(bytes)
}

/// `oci-layout` must be a JSON object with a version string (umoci refuses
/// `{}` too).
fn check_layout_file(input: &Path, bytes: &[u8]) -> Result<(), Error> {
    let layout: OciLayout = graph::parse_json(bytes, "oci-layout", "layout file")
        .map_err(|kind| Error::archive(input, kind))?;
    // Versions 1.x are compatible by semver; anything else may lay blobs
    // out differently.
    if layout.image_layout_version.split('.').next() != Some("1") {
        return Err(Error::archive(
            input,
            ArchiveErrorKind::UnsupportedLayoutVersion(layout.image_layout_version),
        ));
    }
    Ok(())
}

/// Where a layout directory keeps a blob: `blobs/<alg>/<hex>`.
fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(layout_blob_name(digest))
}

fn layout_blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// An input without a file every OCI layout has.
fn not_a_layout(input: &Path, container: &'static str, name: &'static str) -> Error {
    Error::archive(
        input,
        ArchiveErrorKind::MissingFile {
            container,
            name,
            note: "not an OCI image layout",
        },
    )
}

/// Whether the blob is at hand already, staged from the input or in the
/// store, checked against the descriptor's size either way.
fn at_hand(
    ctx: &Importer,
    input: &Path,
    blobs: &mut Blobs,
    digest: &Digest,
    size: u64,
) -> Result<bool, Error> {
    if let Some(found) = blobs.size(digest) {
        check_size(input, digest, size, found)?;
        return Ok(true);
    }
    // The spec lets a layout leave blobs to another store; this one may be
    // it.
    from_store(ctx, input, blobs, digest, size)
}

fn from_store(
    ctx: &Importer,
    input: &Path,
    blobs: &mut Blobs,
    digest: &Digest,
    size: u64,
) -> Result<bool, Error> {
    let Some(row) = ctx.index.blob(digest)? else {
        return Ok(false);
    };
    if !ctx.tree.contains(digest) {
        return Ok(false);
    }
    check_size(input, digest, size, row.size)?;
    blobs.present.insert(digest.clone(), row.size);
    Ok(true)
}

fn check_size(input: &Path, digest: &Digest, expected: u64, found: u64) -> Result<(), Error> {
    if expected != found {
        return Err(Error::archive(
            input,
            ArchiveErrorKind::SizeMismatch {
                digest: digest.clone(),
                expected,
                found,
            },
        ));
    }
    Ok(())
}

/// Blobs already staged (an archive's members, a pull's downloads), and
/// those the store has: all the walk may find.
pub(crate) struct StagedSource<'a> {
    pub(crate) ctx: &'a Importer<'a>,
    /// What errors name: the archive, or the manifest's URL.
    pub(crate) input: &'a Path,
    pub(crate) blobs: Blobs,
}

impl Source for StagedSource<'_> {
    fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn fetch(
        &mut self,
        digest: &Digest,
        size: u64,
        _diff_alg: Option<Algorithm>,
    ) -> Result<bool, Error> {
        at_hand(self.ctx, self.input, &mut self.blobs, digest, size)
    }
}

/// A layout directory, read blob by blob as the walk asks.
struct DirSource<'a> {
    ctx: &'a Importer<'a>,
    dir: &'a Path,
    blobs: Blobs,
}

impl Source for DirSource<'_> {
    fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn fetch(
        &mut self,
        digest: &Digest,
        size: u64,
        diff_alg: Option<Algorithm>,
    ) -> Result<bool, Error> {
        if at_hand(self.ctx, self.dir, &mut self.blobs, digest, size)? {
            return Ok(true);
        }
        let path = layout_blob(self.dir, digest);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(OpenRefused::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into_error(self.dir, layout_blob_name(digest), &path)),
        };
        let meta = file.metadata().ctx("read", &path)?;
        // A wrong size is told without reading the blob.
        check_size(self.dir, digest, size, meta.len())?;
        let mut writer = self.ctx.tree.writer(digest.algorithm())?;
        let mut diff = diff_alg.map(DiffHasher::start);
        let mut reader = self.ctx.progress.reader(file);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", &path, e)),
            };
            if let Some(d) = diff.as_mut() {
                d.feed(&buf[..n]);
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| Error::io("write temp file", self.ctx.tree.tmp_dir(), e))?;
        }
        let staged = writer.finish()?;
        if &staged.digest != digest {
            return Err(Error::archive(
                self.dir,
                ArchiveErrorKind::DigestMismatch {
                    member: layout_blob_name(digest),
                    expected: digest.clone(),
                    found: staged.digest.clone(),
                },
            ));
        }
        check_size(self.dir, digest, size, staged.size)?;
        if let Some(d) = diff {
            self.blobs.diffs.insert(digest.clone(), d.finish());
        }
        self.blobs.staged.insert(digest.clone(), staged);
        Ok(true)
    }
}
