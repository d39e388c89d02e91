//! From an OCI layout's `index.json` to image records.
//!
//! The walk goes index → manifests (nested indexes included) → config and
//! layers. Every blob it meets is made available by a [`Source`] (the
//! layout directory, or the members of an archive already streamed to temp
//! files), which checks the bytes against the descriptor's digest and size.
//! Nothing is published while walking: [`commit`] publishes the staged blobs
//! only once every image checked out, then commits one image per manifest.
//!
//! Records: each image manifest becomes an image keyed by its digest, holding
//! the manifest, which holds the config and the layers. An image index met on
//! the way (a multi-platform image) is stored too and becomes an image of its
//! own, keyed by the index digest and holding its manifests, so that the
//! whole set can be exported again; it is committed after its platforms, so
//! that `latest NAME` picks it and `latest NAME --label arch=…` a platform.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::Importer;
use crate::blobs::StagedBlob;
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, DecompressError, Error, IoContext};
use crate::image::{ImageFormat, ImageInfo, Label};
use crate::index::{NewBlob, NewImage};
use crate::layer;
use crate::oci::{self, Descriptor, ImageConfig, ImageIndex, ImageManifest, Kind};
use crate::publish::Publication;

/// Blobs made available for an import: staged in temp files, or already in
/// the store.
#[derive(Default)]
pub(super) struct Blobs {
    pub staged: HashMap<Digest, StagedBlob>,
    /// Blobs the store has already, with their sizes; never rewritten.
    pub present: HashMap<Digest, u64>,
    /// Uncompressed sha256 digests computed while the bytes streamed in
    /// (with `--verify-layers`), or why decompressing failed.
    pub diffs: HashMap<Digest, Result<Digest, DecompressError>>,
}

impl Blobs {
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        self.staged
            .get(digest)
            .map(|s| s.size)
            .or_else(|| self.present.get(digest).copied())
    }

    /// Reads a small blob (a JSON document) whole.
    pub fn read_json(
        &self,
        ctx: &Importer,
        digest: &Digest,
        what: &str,
        input: &Path,
    ) -> Result<Vec<u8>, Error> {
        let size = self.size(digest).unwrap_or(0);
        if size > oci::MAX_JSON {
            return Err(Error::archive(
                input,
                ArchiveErrorKind::TooLarge {
                    what: format!("{what} {digest}"),
                    size,
                    limit: oci::MAX_JSON,
                },
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        if let Some(staged) = self.staged.get(digest) {
            let p = staged.temp_path();
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .ctx("read temp file", p)?;
        } else {
            let p = ctx.tree.path(digest);
            ctx.tree
                .read(digest)?
                .read_to_end(&mut bytes)
                .ctx("read blob", &p)?;
        }
        Ok(bytes)
    }

    /// The file holding a blob's bytes.
    pub fn file(&self, ctx: &Importer, digest: &Digest) -> std::path::PathBuf {
        match self.staged.get(digest) {
            Some(s) => s.temp_path().to_path_buf(),
            None => ctx.tree.path(digest),
        }
    }
}

/// Where the blobs of a layout come from.
pub(super) trait Source {
    fn blobs(&self) -> &Blobs;

    /// Makes the blob available in [`Source::blobs`], checked against the
    /// descriptor's digest and size; `Ok(false)` if neither the input nor
    /// the store has it. `diff_alg` asks for the diff_id of a layer while
    /// its bytes stream in, if the source can.
    fn fetch(
        &mut self,
        digest: &Digest,
        size: u64,
        diff_alg: Option<Algorithm>,
    ) -> Result<bool, Error>;
}

/// A name and tag, from annotations or docker's RepoTags.
#[derive(Debug, Clone, Default)]
pub(super) struct Naming {
    pub name: String,
    pub tag: Option<String>,
}

impl Naming {
    /// The name a descriptor's annotations give, if any: containerd's full
    /// reference first, then the layout's ref.name. A ref.name may be a full
    /// reference (`example.com/app:1.0`: name and version) or, as umoci and
    /// skopeo write it, a bare tag (`v1`): that becomes the name, with no
    /// version, since the layout does not say what it is a tag of.
    pub fn from_descriptor(desc: &Descriptor) -> Option<Naming> {
        let reference = desc
            .annotation(oci::CONTAINERD_NAME)
            .or_else(|| desc.annotation(oci::REF_NAME))?;
        Some(Naming::from_reference(reference))
    }

    pub fn from_reference(reference: &str) -> Naming {
        let (name, tag) = oci::split_reference(reference);
        Naming { name, tag }
    }
}

/// The closure of one manifest or index: its blobs and edges.
#[derive(Clone, Default)]
pub(super) struct Closure {
    pub blobs: Vec<NewBlob>,
    pub links: Vec<(Digest, Digest)>,
}

impl Closure {
    /// The closure of an image manifest: the manifest, its config and its
    /// layers, with an edge from the manifest to each.
    pub fn of_manifest(manifest: NewBlob, config: NewBlob, layers: Vec<NewBlob>) -> Closure {
        let key = manifest.digest.clone();
        let mut links = Vec::with_capacity(layers.len() + 1);
        links.push((key.clone(), config.digest.clone()));
        links.extend(layers.iter().map(|l| (key.clone(), l.digest.clone())));
        let mut blobs = Vec::with_capacity(layers.len() + 2);
        blobs.push(manifest);
        blobs.push(config);
        blobs.extend(layers);
        Closure { blobs, links }
    }

    fn add(&mut self, other: &Closure) {
        self.blobs.extend(other.blobs.iter().cloned());
        self.links.extend(other.links.iter().cloned());
    }

    fn size(&self) -> u64 {
        let mut seen = HashSet::new();
        self.blobs
            .iter()
            .filter(|b| seen.insert(&b.digest))
            .map(|b| b.size)
            .sum()
    }
}

/// Walks a layout's index and builds the image records.
pub(super) struct Walk<'a, S: Source> {
    ctx: &'a Importer<'a>,
    /// The input, for error messages.
    input: &'a Path,
    pub source: S,
    closures: HashMap<Digest, Closure>,
    pub images: Vec<NewImage>,
    keys: HashSet<Digest>,
}

impl<'a, S: Source> Walk<'a, S> {
    pub fn new(ctx: &'a Importer<'a>, input: &'a Path, source: S) -> Self {
        Walk {
            ctx,
            input,
            source,
            closures: HashMap::new(),
            images: Vec::new(),
            keys: HashSet::new(),
        }
    }

    fn bad(&self, kind: ArchiveErrorKind) -> Error {
        Error::archive(self.input, kind)
    }

    fn missing(
        &self,
        what: impl Into<String>,
        digest: &Digest,
        allow_missing_helps: bool,
    ) -> Error {
        self.bad(ArchiveErrorKind::MissingBlob {
            what: what.into(),
            digest: digest.clone(),
            allow_missing_helps,
        })
    }

    /// Walks the layout's `index.json`. `fallback` names images whose
    /// descriptors carry no name (docker's manifest.json, by config digest).
    pub fn walk_layout_index(
        &mut self,
        index_json: &[u8],
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<(), Error> {
        let index: ImageIndex =
            parse_json(index_json, "index.json", "image index").map_err(|k| self.bad(k))?;
        for (i, desc) in index.manifests.iter().enumerate() {
            let what = format!("index.json manifests[{i}]");
            let naming = Naming::from_descriptor(desc);
            self.visit(desc, &what, naming.as_ref(), fallback)?;
        }
        Ok(())
    }

    /// Visits what a descriptor of an index points at; returns its closure
    /// (`None` for something that is neither an index nor a manifest).
    fn visit(
        &mut self,
        desc: &Descriptor,
        what: &str,
        naming: Option<&Naming>,
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<Option<Closure>, Error> {
        let digest = self.descriptor_digest(desc, what)?;
        if let Some(closure) = self.closures.get(&digest) {
            return Ok(Some(closure.clone()));
        }
        // A descriptor whose media type says it is neither an index nor a
        // manifest (nor JSON that could be one) is accepted and left alone.
        let may_be_json = desc.media_type.is_empty() || desc.media_type.ends_with("json");
        if oci::kind_of(&desc.media_type).is_none() && (!may_be_json || desc.size > oci::MAX_JSON) {
            return Ok(None);
        }
        if !self.source.fetch(&digest, desc.size, None)? {
            return Err(self.missing(what, &digest, false));
        }
        let bytes = self
            .source
            .blobs()
            .read_json(self.ctx, &digest, what, self.input)?;
        let kind = oci::kind_of(&desc.media_type).or_else(|| oci::kind_by_shape(&bytes));
        let closure = match kind {
            Some(Kind::Index) => self.index(desc, &digest, &bytes, what, naming, fallback)?,
            Some(Kind::Manifest) => self.manifest(desc, &digest, &bytes, what, naming, fallback)?,
            // Something else (an artifact, say): accepted, not recorded.
            None => return Ok(None),
        };
        self.closures.insert(digest, closure.clone());
        Ok(Some(closure))
    }

    fn descriptor_digest(&self, desc: &Descriptor, what: &str) -> Result<Digest, Error> {
        Digest::parse(&desc.digest).map_err(|e| {
            self.bad(ArchiveErrorKind::Malformed {
                what: format!("{what} digest"),
                reason: format!("is not valid: {e}"),
            })
        })
    }

    fn index(
        &mut self,
        desc: &Descriptor,
        digest: &Digest,
        bytes: &[u8],
        what: &str,
        naming: Option<&Naming>,
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<Closure, Error> {
        let index: ImageIndex = parse_json(bytes, format!("{what} ({digest})"), "image index")
            .map_err(|k| self.bad(k))?;
        let mut closure = Closure {
            blobs: vec![new_blob(digest, desc.size, &desc.media_type, None)],
            links: Vec::new(),
        };
        for (i, child) in index.manifests.iter().enumerate() {
            let child_what = format!("{what} → manifests[{i}]");
            let child_naming = Naming::from_descriptor(child);
            let child_naming = child_naming.as_ref().or(naming);
            if let Some(c) = self.visit(child, &child_what, child_naming, fallback)? {
                closure
                    .links
                    .push((digest.clone(), self.descriptor_digest(child, &child_what)?));
                closure.add(&c);
            }
        }
        let naming = naming.cloned().unwrap_or_default();
        self.push_image(digest, &naming, Vec::new(), &closure);
        Ok(closure)
    }

    fn manifest(
        &mut self,
        desc: &Descriptor,
        digest: &Digest,
        bytes: &[u8],
        what: &str,
        naming: Option<&Naming>,
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<Closure, Error> {
        let manifest: ImageManifest =
            parse_json(bytes, format!("{what} ({digest})"), "image manifest")
                .map_err(|k| self.bad(k))?;
        let what = format!("manifest {digest}");
        let config_digest = self.descriptor_digest(&manifest.config, &format!("{what} config"))?;
        if !self
            .source
            .fetch(&config_digest, manifest.config.size, None)?
        {
            return Err(self.missing(format!("{what} config"), &config_digest, false));
        }
        let config_is_image = oci::is_image_config(&manifest.config.media_type);
        let config: ImageConfig = if config_is_image {
            let bytes =
                self.source
                    .blobs()
                    .read_json(self.ctx, &config_digest, "config", self.input)?;
            parse_json(&bytes, format!("config {config_digest}"), "image config")
                .map_err(|k| self.bad(k))?
        } else {
            ImageConfig::default()
        };
        let diff_ids = if config_is_image {
            config_diff_ids(&config, &config_digest, &what, manifest.layers.len())
                .map_err(|k| self.bad(k))?
        } else {
            None
        };

        let mut layers = Vec::with_capacity(manifest.layers.len());
        let checker = LayerChecker {
            ctx: self.ctx,
            input: self.input,
        };
        for (i, layer) in manifest.layers.iter().enumerate() {
            let layer_what = format!("{what} layer {i}");
            let layer_digest = self.descriptor_digest(layer, &layer_what)?;
            let expected = diff_ids.as_ref().map(|ids| &ids[i]);
            let stream_alg = if self.ctx.options.verify_layers {
                expected.map(Digest::algorithm)
            } else {
                None
            };
            if !self.source.fetch(&layer_digest, layer.size, stream_alg)? {
                if self.ctx.options.allow_missing {
                    continue;
                }
                return Err(self.missing(layer_what, &layer_digest, true));
            }
            let diff = match expected {
                Some(expected) => checker.check(
                    self.source.blobs(),
                    &layer_digest,
                    &layer.media_type,
                    expected,
                    &layer_what,
                )?,
                None => None,
            };
            layers.push(new_blob(&layer_digest, layer.size, &layer.media_type, diff));
        }
        let closure = Closure::of_manifest(
            new_blob(digest, desc.size, &desc.media_type, None),
            new_blob(
                &config_digest,
                manifest.config.size,
                &manifest.config.media_type,
                None,
            ),
            layers,
        );

        let naming = naming
            .cloned()
            .or_else(|| fallback.get(&config_digest).cloned())
            .unwrap_or_default();
        let labels = image_labels(&config, desc.platform.as_ref());
        self.push_image(digest, &naming, labels, &closure);
        Ok(closure)
    }

    fn push_image(&mut self, key: &Digest, naming: &Naming, labels: Vec<Label>, closure: &Closure) {
        if self.keys.insert(key.clone()) {
            self.images
                .push(new_image(self.ctx, key, naming, labels, closure));
        }
    }
}

/// The labels of an image: the config's labels, then `os`, `arch` and
/// `variant` from the config (or the platform its index gives).
pub(super) fn image_labels(config: &ImageConfig, platform: Option<&oci::Platform>) -> Vec<Label> {
    let mut labels = Vec::new();
    if let Some(config_labels) = config.config.as_ref().and_then(|c| c.labels.as_ref()) {
        labels.extend(config_labels.iter().map(|(k, v)| Label::new(k, v)));
    }
    let os = config.os.clone().or_else(|| platform.map(|p| p.os.clone()));
    let arch = config
        .architecture
        .clone()
        .or_else(|| platform.map(|p| p.architecture.clone()));
    let variant = config
        .variant
        .clone()
        .or_else(|| platform.and_then(|p| p.variant.clone()));
    for (name, value) in [("os", os), ("arch", arch), ("variant", variant)] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            labels.push(Label::new(name, value));
        }
    }
    labels
}

/// The record of an image whose manifest (or index) is `key`.
pub(super) fn new_image(
    ctx: &Importer,
    key: &Digest,
    naming: &Naming,
    mut labels: Vec<Label>,
    closure: &Closure,
) -> NewImage {
    if let Some(tag) = &naming.tag {
        labels.push(Label::new("version", tag));
    }
    // Later labels win: the platform and tag over a config label of the
    // same name.
    let mut by_name = BTreeMap::new();
    for label in labels {
        by_name.insert(label.name.clone(), label);
    }
    NewImage {
        key: key.clone(),
        format: ImageFormat::Oci,
        name: naming.name.clone(),
        labels: by_name.into_values().collect(),
        manifest: key.clone(),
        size: closure.size(),
        blobs: closure.blobs.clone(),
        roots: vec![key.clone()],
        links: closure.links.clone(),
        latest: ctx.options.latest,
    }
}

/// Checks layers against the diff_ids of their config.
pub(super) struct LayerChecker<'a> {
    pub ctx: &'a Importer<'a>,
    pub input: &'a Path,
}

impl LayerChecker<'_> {
    /// Checks a layer's diff_id where that is known or asked for; returns
    /// it for the record once checked. An uncompressed layer's diff_id is
    /// its digest, so that check is free and always made; a compressed one
    /// is decompressed only with `--verify-layers`.
    pub fn check(
        &self,
        blobs: &Blobs,
        digest: &Digest,
        media_type: &str,
        expected: &Digest,
        what: &str,
    ) -> Result<Option<Digest>, Error> {
        let mismatch = |found: &Digest| {
            Error::archive(
                self.input,
                ArchiveErrorKind::DiffIdMismatch {
                    what: what.to_string(),
                    layer: digest.clone(),
                    expected: expected.clone(),
                    found: found.clone(),
                },
            )
        };
        if oci::is_uncompressed_layer(media_type) && digest.algorithm() == expected.algorithm() {
            if digest != expected {
                return Err(mismatch(digest));
            }
            return Ok(Some(digest.clone()));
        }
        if !self.ctx.options.verify_layers {
            return Ok(None);
        }
        let computed = match blobs.diffs.get(digest) {
            Some(Ok(d)) if d.algorithm() == expected.algorithm() => Ok(d.clone()),
            Some(Err(e)) => Err(e.clone()),
            _ => {
                // A blob already in the store whose pair is on record
                // needs no second decompression.
                match self.ctx.index.blob(digest)?.and_then(|b| b.diff_id) {
                    Some(d) if d.algorithm() == expected.algorithm() => Ok(d),
                    _ => layer::of_file(&blobs.file(self.ctx, digest), expected.algorithm()),
                }
            }
        };
        match computed {
            Ok(found) if &found == expected => Ok(Some(found)),
            Ok(found) => Err(mismatch(&found)),
            Err(cause) => Err(Error::archive(
                self.input,
                ArchiveErrorKind::BadLayer {
                    what: what.to_string(),
                    layer: digest.clone(),
                    cause,
                },
            )),
        }
    }
}

pub(super) fn new_blob(
    digest: &Digest,
    size: u64,
    media_type: &str,
    diff_id: Option<Digest>,
) -> NewBlob {
    NewBlob {
        digest: digest.clone(),
        size,
        media_type: (!media_type.is_empty()).then(|| media_type.to_string()),
        diff_id,
    }
}

/// Parses a JSON document `what` that should be a `expected`; the error
/// keeps serde's message, which names the line and column.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl Into<String>,
    expected: &str,
) -> Result<T, ArchiveErrorKind> {
    serde_json::from_slice(bytes).map_err(|e| ArchiveErrorKind::Malformed {
        what: what.into(),
        reason: format!("is not a valid {expected}: {e}"),
    })
}

/// The diff_ids an image config names, one per layer of the manifest
/// `what` with `layers` layers; `None` if the config has no rootfs.
pub(super) fn config_diff_ids(
    config: &ImageConfig,
    config_digest: &Digest,
    what: &str,
    layers: usize,
) -> Result<Option<Vec<Digest>>, ArchiveErrorKind> {
    let Some(rootfs) = &config.rootfs else {
        return Ok(None);
    };
    let ids = rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| bad_diff_id(config_digest, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() != layers {
        return Err(ArchiveErrorKind::LayerCount {
            what: what.to_string(),
            layers,
            diff_ids: ids.len(),
        });
    }
    Ok(Some(ids))
}

/// A diff_id in a config's `rootfs.diff_ids` that is no digest.
fn bad_diff_id(config: &Digest, e: crate::digest::DigestError) -> ArchiveErrorKind {
    ArchiveErrorKind::Malformed {
        what: format!("config {config} rootfs.diff_ids"),
        reason: format!("holds a bad digest: {e}"),
    }
}

/// Publishes every staged blob the images name, then commits the images
/// (DESIGN.md §3.2: bytes durable first, index second).
pub(super) fn commit(
    ctx: &Importer,
    blobs: Blobs,
    images: Vec<NewImage>,
) -> Result<Vec<ImageInfo>, Error> {
    let mut publication = Publication::new(ctx.tree, ctx.index);
    publication.stage_all(blobs.staged.into_values());
    publication.commit(&ctx.rows(images)?)
}
