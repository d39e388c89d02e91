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
use std::rc::Rc;

use super::Importer;
use crate::blobs::StagedBlob;
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, DecompressError, Error, IoContext};
use crate::image::{self, ImageFormat, ImageInfo, Label};
use crate::index::{NewBlob, NewImage};
use crate::json;
use crate::layer;
use crate::oci::{self, Descriptor, ImageConfig, ImageIndex, ImageManifest, Kind};
use crate::publish::Publication;

/// Blobs made available for an import: staged in temp files, or already in
/// the store.
#[derive(Default)]
pub(crate) struct Blobs {
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
pub(crate) trait Source {
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

/// A name and tag, from annotations or docker's RepoTags. The name may be
/// empty: a layout that gives only a tag names no image.
#[derive(Debug, Clone, Default)]
pub(crate) struct Naming {
    pub name: String,
    pub tag: Option<String>,
}

impl Naming {
    /// The naming a descriptor's annotations give, if any.
    ///
    /// containerd's `io.containerd.image.name` is a full reference (name
    /// and tag). `org.opencontainers.image.ref.name` is, by the layout
    /// spec and as umoci and `skopeo copy … oci:DIR:TAG` write it, a bare
    /// tag (`1.0.0`): that gives the version only, since the layout does
    /// not say what it is a tag of; a ref.name that is a full reference
    /// (`example.com/app:1.0`, as older imgstores wrote) gives both.
    pub fn from_descriptor(desc: &Descriptor) -> Option<Naming> {
        let non_empty = |s: &&str| !s.is_empty();
        let full = desc.annotation(oci::CONTAINERD_NAME).filter(non_empty);
        let ref_name = desc.annotation(oci::REF_NAME).filter(non_empty);
        let bare_tag = ref_name.filter(|r| oci::is_bare_tag(r));
        let reference = full.or(ref_name.filter(|r| !oci::is_bare_tag(r)));
        match reference {
            Some(reference) => {
                let mut naming = Naming::from_reference(reference);
                if naming.tag.is_none() {
                    naming.tag = bare_tag.map(str::to_string);
                }
                Some(naming)
            }
            None => bare_tag.map(|tag| Naming {
                name: String::new(),
                tag: Some(tag.to_string()),
            }),
        }
    }

    pub fn from_reference(reference: &str) -> Naming {
        let (name, tag) = oci::split_reference(reference);
        Naming { name, tag }
    }
}

/// What one image record names: its own blob and those it links to, the
/// edges, and the bytes of its whole closure. An index's record names only
/// its manifests: their own records, committed with it, carry the rest,
/// so records stay linear in the input however the indexes nest.
#[derive(Clone, Default)]
pub(crate) struct Closure {
    pub blobs: Vec<NewBlob>,
    pub links: Vec<(Digest, Digest)>,
    /// Bytes of every distinct blob the image needs.
    pub size: u64,
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
        let mut seen = HashSet::new();
        let size = blobs
            .iter()
            .filter(|b| seen.insert(&b.digest))
            .map(|b| b.size)
            .sum();
        Closure { blobs, links, size }
    }
}

/// How deep image indexes may nest below `index.json` (whose descriptors
/// are at depth 1). Real images nest one or two; the bound keeps a crafted
/// layout from costing more than this many times its distinct blobs.
pub(super) const MAX_DEPTH: usize = 64;

/// A document walked: its blob record, and the distinct blobs of its
/// closure (ids into [`Walk::sizes`], sorted).
struct Walked {
    blob: NewBlob,
    closure: Vec<u32>,
}

/// One step of the walk, kept on an explicit stack: the input decides how
/// deep indexes nest, and the call stack must not.
enum Step {
    /// Walk what a descriptor points at.
    Enter {
        desc: Descriptor,
        digest: Digest,
        /// Which descriptor, for messages; `root` is the index.json one it
        /// was reached from.
        what: String,
        root: Rc<str>,
        naming: Option<Rc<Naming>>,
        depth: usize,
    },
    /// Every child of an index has been walked: make its record.
    Leave {
        blob: NewBlob,
        children: Vec<Digest>,
        naming: Option<Rc<Naming>>,
    },
}

/// Where a descriptor is: for messages, and for the depth bound.
struct At {
    what: String,
    root: Rc<str>,
    depth: usize,
}

/// Walks a layout's index and builds the image records. Each distinct
/// descriptor is walked once, however often indexes name it.
pub(crate) struct Walk<'a, S: Source> {
    ctx: &'a Importer<'a>,
    /// The input, for error messages.
    input: &'a Path,
    pub source: S,
    /// Every document walked, by digest; `None` for one that is neither an
    /// index nor a manifest (accepted, not recorded).
    walked: HashMap<Digest, Option<Walked>>,
    /// Indexes whose children are being walked.
    open: HashSet<Digest>,
    /// Blob ids for closures, and each id's size.
    ids: HashMap<Digest, u32>,
    sizes: Vec<u64>,
    pub images: Vec<NewImage>,
    keys: HashSet<Digest>,
}

impl<'a, S: Source> Walk<'a, S> {
    pub fn new(ctx: &'a Importer<'a>, input: &'a Path, source: S) -> Self {
        Walk {
            ctx,
            input,
            source,
            walked: HashMap::new(),
            open: HashSet::new(),
            ids: HashMap::new(),
            sizes: Vec::new(),
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
        let mut stack = Vec::new();
        for (i, desc) in index.manifests.into_iter().enumerate().rev() {
            let what = format!("index.json manifests[{i}]");
            let naming = Naming::from_descriptor(&desc).map(Rc::new);
            stack.push(self.first_step(desc, what, naming)?);
        }
        self.run(stack, fallback)
    }

    /// Walks from one descriptor, as if it were the only entry of a
    /// layout's `index.json`: a pull walks the manifest or index a
    /// reference led to, `serve` a pushed one, named by `naming`.
    pub fn walk_descriptor(
        &mut self,
        desc: &Descriptor,
        what: &str,
        naming: Option<&Naming>,
    ) -> Result<(), Error> {
        let naming = naming.cloned().map(Rc::new);
        let step = self.first_step(desc.clone(), what.to_string(), naming)?;
        self.run(vec![step], &HashMap::new())
    }

    /// The step that enters a descriptor of `index.json` (depth 1).
    fn first_step(
        &self,
        desc: Descriptor,
        what: String,
        naming: Option<Rc<Naming>>,
    ) -> Result<Step, Error> {
        let digest = self.descriptor_digest(&desc, &what)?;
        Ok(Step::Enter {
            desc,
            digest,
            root: what.as_str().into(),
            what,
            naming,
            depth: 1,
        })
    }

    /// Runs the walk until the stack is empty: depth first, children in
    /// order, each index recorded after its children (the order a
    /// recursive walk would have).
    fn run(
        &mut self,
        mut stack: Vec<Step>,
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<(), Error> {
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter {
                    desc,
                    digest,
                    what,
                    root,
                    naming,
                    depth,
                } => {
                    let at = At { what, root, depth };
                    self.enter(desc, digest, at, naming, fallback, &mut stack)?
                }
                Step::Leave {
                    blob,
                    children,
                    naming,
                } => self.leave(blob, &children, naming.as_deref())?,
            }
        }
        Ok(())
    }

    /// Walks what a descriptor points at: a manifest at once, an index by
    /// pushing its children (and its own record after them).
    fn enter(
        &mut self,
        desc: Descriptor,
        digest: Digest,
        at: At,
        naming: Option<Rc<Naming>>,
        fallback: &HashMap<Digest, Naming>,
        stack: &mut Vec<Step>,
    ) -> Result<(), Error> {
        let At { what, root, depth } = at;
        if let Some(walked) = self.walked.get(&digest) {
            // Named again: the same document, which must be the same size.
            if let Some(w) = walked
                && w.blob.size != desc.size
            {
                return Err(self.bad(ArchiveErrorKind::SizeMismatch {
                    digest,
                    expected: desc.size,
                    found: w.blob.size,
                }));
            }
            return Ok(());
        }
        if self.open.contains(&digest) {
            // Only a broken hash could make an index hold itself.
            return Err(self.bad(ArchiveErrorKind::Malformed {
                what,
                reason: format!("names {digest}, an index it is inside of"),
            }));
        }
        if depth > MAX_DEPTH {
            return Err(self.bad(ArchiveErrorKind::TooDeep {
                what,
                limit: MAX_DEPTH,
            }));
        }
        // A descriptor whose media type says it is neither an index nor a
        // manifest (nor JSON that could be one) is accepted and left alone.
        let may_be_json = desc.media_type.is_empty() || desc.media_type.ends_with("json");
        if oci::kind_of(&desc.media_type).is_none() && (!may_be_json || desc.size > oci::MAX_JSON) {
            self.walked.insert(digest, None);
            return Ok(());
        }
        if !self.source.fetch(&digest, desc.size, None)? {
            return Err(self.missing(what, &digest, false));
        }
        let bytes = self
            .source
            .blobs()
            .read_json(self.ctx, &digest, &what, self.input)?;
        let kind = oci::kind_of(&desc.media_type).or_else(|| oci::kind_by_shape(&bytes));
        let blob = new_blob(&digest, desc.size, &desc.media_type, None);
        match kind {
            Some(Kind::Index) => {
                let index: ImageIndex =
                    parse_json(&bytes, format!("{what} ({digest})"), "image index")
                        .map_err(|k| self.bad(k))?;
                let mut children = Vec::with_capacity(index.manifests.len());
                let mut enters = Vec::with_capacity(index.manifests.len());
                for (i, child) in index.manifests.into_iter().enumerate() {
                    let child_what = if depth < 3 {
                        format!("{what} → manifests[{i}]")
                    } else {
                        // A deep chain is cut short in messages.
                        format!("{root} → … → manifests[{i}] (at depth {})", depth + 1)
                    };
                    let child_digest = self.descriptor_digest(&child, &child_what)?;
                    let child_naming = match Naming::from_descriptor(&child) {
                        Some(n) => Some(Rc::new(n)),
                        None => naming.clone(),
                    };
                    children.push(child_digest.clone());
                    enters.push(Step::Enter {
                        desc: child,
                        digest: child_digest,
                        what: child_what,
                        root: root.clone(),
                        naming: child_naming,
                        depth: depth + 1,
                    });
                }
                self.open.insert(digest);
                stack.push(Step::Leave {
                    blob,
                    children,
                    naming,
                });
                stack.extend(enters.into_iter().rev());
            }
            Some(Kind::Manifest) => {
                let walked =
                    self.manifest(&desc, blob, &bytes, &what, naming.as_deref(), fallback)?;
                self.walked.insert(digest, Some(walked));
            }
            // Something else (an artifact, say): accepted, not recorded.
            None => {
                self.walked.insert(digest, None);
            }
        }
        Ok(())
    }

    /// Makes an index's record once its children are walked: it links to
    /// each that is a manifest or index, and its closure is the union of
    /// theirs.
    fn leave(
        &mut self,
        blob: NewBlob,
        children: &[Digest],
        naming: Option<&Naming>,
    ) -> Result<(), Error> {
        let digest = blob.digest.clone();
        self.open.remove(&digest);
        let mut closure = vec![self.id(&digest, blob.size)];
        let mut blobs = vec![blob.clone()];
        let mut links = Vec::new();
        let mut linked = HashSet::new();
        for child in children {
            let Some(Some(walked)) = self.walked.get(child) else {
                continue;
            };
            if !linked.insert(child) {
                continue;
            }
            links.push((digest.clone(), child.clone()));
            blobs.push(walked.blob.clone());
            closure.extend_from_slice(&walked.closure);
        }
        closure.sort_unstable();
        closure.dedup();
        let size = closure.iter().map(|&id| self.sizes[id as usize]).sum();
        let record = Closure { blobs, links, size };
        let naming = naming.cloned().unwrap_or_default();
        self.push_image(&digest, &naming, Vec::new(), &record)?;
        self.walked.insert(digest, Some(Walked { blob, closure }));
        Ok(())
    }

    /// The id of a blob in closures.
    fn id(&mut self, digest: &Digest, size: u64) -> u32 {
        if let Some(&id) = self.ids.get(digest) {
            return id;
        }
        let id = self.sizes.len() as u32;
        self.sizes.push(size);
        self.ids.insert(digest.clone(), id);
        id
    }

    fn descriptor_digest(&self, desc: &Descriptor, what: &str) -> Result<Digest, Error> {
        Digest::parse(&desc.digest).map_err(|e| {
            self.bad(ArchiveErrorKind::Malformed {
                what: format!("{what} digest"),
                reason: format!("is not valid: {e}"),
            })
        })
    }

    fn manifest(
        &mut self,
        desc: &Descriptor,
        blob: NewBlob,
        bytes: &[u8],
        what: &str,
        naming: Option<&Naming>,
        fallback: &HashMap<Digest, Naming>,
    ) -> Result<Walked, Error> {
        let digest = blob.digest.clone();
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
            parse_config(&bytes, format!("config {config_digest}")).map_err(|k| self.bad(k))?
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
        let labels = image_labels(&config, &config_digest, desc.platform.as_ref())
            .map_err(|k| self.bad(k))?;
        let record = Closure::of_manifest(
            blob.clone(),
            new_blob(
                &config_digest,
                manifest.config.size,
                &manifest.config.media_type,
                None,
            ),
            layers,
        );
        let mut closure: Vec<u32> = record
            .blobs
            .iter()
            .map(|b| self.id(&b.digest, b.size))
            .collect();
        closure.sort_unstable();
        closure.dedup();

        let naming = naming
            .cloned()
            .or_else(|| fallback.get(&config_digest).cloned())
            .unwrap_or_default();
        self.push_image(&digest, &naming, labels, &record)?;
        Ok(Walked { blob, closure })
    }

    fn push_image(
        &mut self,
        key: &Digest,
        naming: &Naming,
        labels: Vec<Label>,
        closure: &Closure,
    ) -> Result<(), Error> {
        if self.keys.insert(key.clone()) {
            let image =
                new_image(self.ctx, key, naming, labels, closure).map_err(|k| self.bad(k))?;
            self.images.push(image);
        }
        Ok(())
    }
}

/// The labels of an image: the config's labels, then `os`, `arch` and
/// `variant` from the config (or the platform its index gives). Refuses
/// more labels, or longer ones, than the store records
/// ([`crate::image::check_record`]), naming the config.
pub(crate) fn image_labels(
    config: &ImageConfig,
    config_digest: &Digest,
    platform: Option<&oci::Platform>,
) -> Result<Vec<Label>, ArchiveErrorKind> {
    let mut labels = Vec::new();
    if let Some(config_labels) = config.config.as_ref().and_then(|c| c.labels.as_ref()) {
        image::check_count(
            &format!("config {config_digest} Labels"),
            config_labels.len(),
            image::MAX_LABELS,
        )?;
        for (k, v) in config_labels {
            let label = Label::new(k, v);
            image::check_label(
                || format!("config {config_digest} label {}", image::quoted(k)),
                &label,
            )?;
            labels.push(label);
        }
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
    Ok(labels)
}

/// The record of an image whose manifest (or index) is `key`. An image the
/// input leaves unnamed takes `--name`, if given. Names and labels over
/// the store's limits are refused.
pub(crate) fn new_image(
    ctx: &Importer,
    key: &Digest,
    naming: &Naming,
    mut labels: Vec<Label>,
    closure: &Closure,
) -> Result<NewImage, ArchiveErrorKind> {
    if let Some(tag) = &naming.tag {
        labels.push(Label::new("version", tag));
    }
    // Later labels win: the platform and tag over a config label of the
    // same name.
    let mut by_name = BTreeMap::new();
    for label in labels {
        by_name.insert(label.name.clone(), label);
    }
    let name = match (&naming.name, &ctx.options.name) {
        (name, Some(given)) if name.is_empty() => given.clone(),
        (name, _) => name.clone(),
    };
    let labels: Vec<Label> = by_name.into_values().collect();
    image::check_record(&name, &labels)?;
    Ok(NewImage {
        key: key.clone(),
        format: ImageFormat::Oci,
        name,
        labels,
        manifest: key.clone(),
        size: closure.size,
        blobs: closure.blobs.clone(),
        roots: vec![key.clone()],
        links: closure.links.clone(),
        latest: ctx.options.latest,
    })
}

/// Checks layers against the diff_ids of their config.
pub(crate) struct LayerChecker<'a> {
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

pub(crate) fn new_blob(
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
///
/// A key given twice in an object is refused, naming the key, whatever
/// the type reads ([`crate::json`]).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl Into<String>,
    expected: &str,
) -> Result<T, ArchiveErrorKind> {
    parse_counted(bytes, what, expected, &[])
}

/// Parses an image config `what`: as [`parse_json`], and a `config.Labels`
/// over the store's limit is refused before it is parsed.
pub(super) fn parse_config(
    bytes: &[u8],
    what: impl Into<String>,
) -> Result<ImageConfig, ArchiveErrorKind> {
    const COUNTED: &[json::Counted] = &[(&["config", "Labels"], image::MAX_LABELS)];
    parse_counted(bytes, what, "image config", COUNTED)
}

fn parse_counted<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl Into<String>,
    expected: &str,
    counted: &[json::Counted],
) -> Result<T, ArchiveErrorKind> {
    match json::check(bytes, counted) {
        None => {}
        Some(json::Flaw::DuplicateKey { key, path }) => {
            return Err(ArchiveErrorKind::DuplicateKey {
                what: what.into(),
                key,
                path,
            });
        }
        Some(json::Flaw::TooMany { path, count, limit }) => {
            return Err(ArchiveErrorKind::OverLimit {
                field: format!("{} {}", what.into(), path.trim_start_matches("$.")),
                size: count,
                limit,
                unit: "labels",
            });
        }
    }
    serde_json::from_slice(bytes).map_err(|e| ArchiveErrorKind::Malformed {
        what: what.into(),
        reason: format!("is not a valid {expected}: {e}"),
    })
}

/// The diff_ids an image config names, one per layer of the manifest
/// `what` with `layers` layers; `None` if the config has no rootfs.
pub(crate) fn config_diff_ids(
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
pub(crate) fn commit(
    ctx: &Importer,
    blobs: Blobs,
    images: Vec<NewImage>,
) -> Result<Vec<ImageInfo>, Error> {
    let mut publication = Publication::new(ctx.tree, ctx.index);
    publication.stage_all(blobs.staged.into_values());
    publication.commit(&ctx.rows(images)?)
}
