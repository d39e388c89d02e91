//! `pull`: images from a registry into the store, through the same staging,
//! hashing and commit path as an import (one way into the store).
//!
//! A pull goes in three steps, for all its references at once:
//!
//! 1. **Manifests.** Each reference's manifest is asked for with all four
//!    manifest types in `Accept`. Its bytes must hash to the registry's
//!    `Docker-Content-Digest` (when sent) and to the reference's digest
//!    (when it has one); schema 1 is refused. An index leads to the
//!    platform asked for (the host's by default), or with `--all-platforms`
//!    to every manifest it lists, each checked against the digest and size
//!    the index gives. Manifests the store has are read from it, not asked
//!    for; so is the manifest of a tag the store pulled before, when a
//!    `HEAD` says its digest has not changed.
//! 2. **Blobs.** Configs and layers the store lacks download `--jobs` at a
//!    time, one limit for the whole command, each into a staged blob that
//!    hashes as it is written; a dropped download resumes with `Range`.
//!    Every blob is checked against its digest and size before anything is
//!    published (invariant 8).
//! 3. **Commit.** Per reference, the walk that imports OCI layouts
//!    ([`crate::import::graph`]) builds the image rows from the staged and
//!    stored blobs, so a pulled image is recorded exactly as an imported
//!    layout would be: named `HOST/REPO`, `version` the tag. One
//!    [`Publication::commit`] then makes the blobs durable and records the
//!    images, the remote (the manifest's URL and ETag, which `remotes`
//!    lists and the next pull asks about) and the tag `HOST/REPO:TAG`.
//!
//! A re-pull of an unchanged tag whose image is whole in the store costs
//! one `HEAD` and one small transaction: no blob and no manifest body.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::RegistryError;
use super::auth::AuthEnv;
use super::challenge::ScopeSet;
use super::client::Session;
use super::media::{self, ManifestKind};
use super::reference::Reference;
use super::token::TokenCache;
use crate::blobs::{BlobTree, BlobWriter, FillError, StagedBlob};
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, DecompressError, Error, IoContext};
use crate::image::ImageInfo;
use crate::import::graph::{Blobs, Naming, Walk};
use crate::import::{ImportOptions, Importer, StagedSource};
use crate::index::{Commit, NewBlob, NewRemote};
use crate::layer::DiffHasher;
use crate::lock::LockMode;
use crate::oci::{self, Descriptor, ImageIndex, ImageManifest};
use crate::platform::{self, Platform};
use crate::progress::{Counter, Progress, ProgressTask};
use crate::publish::Publication;
use crate::remote::http::{Client, ClientOptions, DownloadOptions, DownloadSink, Op, Request};
use crate::store::Store;

/// Downloads at once when not told otherwise.
pub const DEFAULT_JOBS: usize = 4;

/// How deep indexes may nest before a pull gives up.
const MAX_NESTING: usize = 8;

/// Settings of a pull.
#[derive(Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// The platform to pull from an index; the host's by default.
    pub platform: Option<Platform>,
    /// Keep an index and every image it lists, as `import` does.
    pub all_platforms: bool,
    /// Plain HTTP for a registry that is not on loopback.
    pub plain_http: bool,
    /// Blobs downloaded at once, over every reference of the pull.
    pub jobs: usize,
    /// Decompress each layer as it arrives and check its diff_id.
    pub verify_layers: bool,
    /// Where to report each blob's download (one task per blob).
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            all_platforms: false,
            plain_http: false,
            jobs: DEFAULT_JOBS,
            verify_layers: false,
            progress: None,
        }
    }
}

impl PullOptions {
    /// The defaults: the host's platform, HTTPS unless on loopback,
    /// [`DEFAULT_JOBS`] downloads at once.
    pub fn new() -> PullOptions {
        PullOptions::default()
    }

    /// Pull this platform (`linux/arm64`, `linux/arm/v7`) from an index.
    pub fn platform(mut self, platform: Platform) -> PullOptions {
        self.platform = Some(platform);
        self
    }

    /// Keep an index and every platform.
    pub fn all_platforms(mut self, all: bool) -> PullOptions {
        self.all_platforms = all;
        self
    }

    /// Use plain HTTP whatever the host.
    pub fn plain_http(mut self, plain: bool) -> PullOptions {
        self.plain_http = plain;
        self
    }

    /// Download this many blobs at once (at least one).
    pub fn jobs(mut self, jobs: usize) -> PullOptions {
        self.jobs = jobs;
        self
    }

    /// Check each layer's diff_id.
    pub fn verify_layers(mut self, verify: bool) -> PullOptions {
        self.verify_layers = verify;
        self
    }

    /// Report each blob's download to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> PullOptions {
        self.progress = Some(progress);
        self
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("all_platforms", &self.all_platforms)
            .field("plain_http", &self.plain_http)
            .field("jobs", &self.jobs)
            .field("verify_layers", &self.verify_layers)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What the pull of one reference did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Pulled {
    /// The reference, normalised (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image the reference leads to: its platform's, or with
    /// `--all-platforms` the index.
    pub image: ImageInfo,
    /// Every image recorded: the platforms before their index.
    pub images: Vec<ImageInfo>,
    /// The tag's manifest had not changed and the image was whole in the
    /// store: nothing was downloaded.
    pub unchanged: bool,
    /// Blobs downloaded for this reference.
    pub blobs_downloaded: usize,
    /// Bytes that came over the network for them (a resume counts only
    /// what it moved).
    pub bytes_downloaded: u64,
}

impl Store {
    /// Pulls images from registries (DESIGN.md §5, Registries) and returns
    /// what each reference led to. Every reference is checked before any
    /// request; blobs download with one limit over all of them; each
    /// reference commits once its blobs are all durable. A failure changes
    /// nothing for the references not committed yet, and the error names
    /// the URL (and digest) at fault.
    pub fn pull(
        &self,
        references: &[impl AsRef<str>],
        options: &PullOptions,
    ) -> Result<Vec<Pulled>, Error> {
        let references = references
            .iter()
            .map(|r| {
                Reference::parse(r.as_ref()).map_err(|e| Error::from(RegistryError::Reference(e)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        let _lock = self.lock(LockMode::Shared, true)?;
        let http = Client::new(ClientOptions::default());
        let tokens = TokenCache::new();
        let env = AuthEnv::from_process();
        let puller = Puller {
            store: self,
            options,
            platform,
        };
        let mut plans = Vec::with_capacity(references.len());
        for reference in references {
            let session = Session::for_reference(
                &http,
                &tokens,
                Op::Pull,
                &reference,
                options.plain_http,
                &env,
            )?;
            plans.push(puller.plan(reference, session)?);
        }
        let mut fetched = puller.download(&plans)?;
        plans
            .into_iter()
            .map(|plan| puller.commit(plan, &mut fetched))
            .collect()
    }
}

struct Puller<'s> {
    store: &'s Store,
    options: &'s PullOptions,
    platform: Platform,
}

/// A manifest or index at hand: its bytes, and where they wait.
struct Manifest {
    digest: Digest,
    kind: Option<ManifestKind>,
    bytes: Vec<u8>,
    /// Downloaded now; `None` when the store has it.
    staged: Option<StagedBlob>,
}

impl Manifest {
    fn media_type(&self, declared: &str) -> String {
        match self.kind {
            Some(kind) => kind.media_type().to_string(),
            None => declared.to_string(),
        }
    }
}

/// A blob the store lacks.
struct Wanted {
    digest: Digest,
    size: u64,
    /// A layer, whose diff_id `--verify-layers` computes on the way.
    layer: bool,
}

/// What one reference needs, once its manifests are known.
struct Plan<'h> {
    reference: Reference,
    session: Session<'h>,
    /// The manifest's URL: what the remote row is keyed by.
    url: String,
    top: Manifest,
    etag: Option<String>,
    /// What the reference leads to: the top manifest, or the platform's.
    root: Descriptor,
    /// Manifests besides the top one (an index's entries).
    children: Vec<Manifest>,
    wanted: Vec<Wanted>,
    /// The top manifest came from the store, unchanged.
    top_unchanged: bool,
}

impl Plan<'_> {
    fn root_digest(&self) -> Digest {
        Digest::parse(&self.root.digest).expect("checked when planned")
    }
}

/// A downloaded blob, staged.
struct Fetched {
    staged: StagedBlob,
    diff: Option<Result<Digest, DecompressError>>,
    bytes: u64,
}

impl Puller<'_> {
    fn tree(&self) -> &BlobTree {
        &self.store.tree
    }

    /// Whether the store has the blob, row and file.
    fn stored(&self, digest: &Digest) -> Result<bool, Error> {
        Ok(self.store.index.has_blob(digest)? && self.tree().contains(digest))
    }

    /// A small stored blob, verified as it is read.
    fn read_stored(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.tree().path(digest);
        let mut bytes = Vec::new();
        self.tree()
            .read(digest)?
            .take(oci::MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .ctx("read blob", &path)?;
        Ok(bytes)
    }

    /// Step 1 for one reference: its manifests, and the blobs they need
    /// that the store lacks.
    fn plan<'h>(&self, reference: Reference, session: Session<'h>) -> Result<Plan<'h>, Error> {
        let url = session
            .base()
            .manifest(reference.repository(), &reference.manifest_reference());
        let scopes = session.scopes(&["pull"]);
        let (top, etag, top_unchanged) = self.top_manifest(&session, &reference, &url, &scopes)?;
        if top.kind.is_none() {
            // A digest the store has, but not of a manifest (a layer's).
            return Err(RegistryError::Manifest {
                op: Op::Pull,
                url,
                source: media::MediaError::NotAManifest {
                    media_type: self
                        .store
                        .index
                        .blob(&top.digest)?
                        .and_then(|b| b.media_type)
                        .unwrap_or_else(|| "no media type".into()),
                },
            }
            .into());
        }
        let top_desc = Descriptor {
            media_type: top.media_type(""),
            digest: top.digest.to_string(),
            size: top.bytes.len() as u64,
            annotations: None,
            platform: None,
        };
        let mut children = Vec::new();
        let root = match top.kind {
            Some(kind) if kind.is_index() && self.options.all_platforms => {
                self.all_children(&session, &scopes, &url, &top, &mut children, 0)?;
                top_desc
            }
            Some(kind) if kind.is_index() => {
                self.platform_child(&session, &scopes, &reference, &url, &top, &mut children)?
            }
            _ => top_desc,
        };
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        for manifest in std::iter::once(&top).chain(&children) {
            if manifest.kind.is_some_and(|k| !k.is_index()) {
                self.wanted_by(&url, manifest, &mut seen, &mut wanted)?;
            }
        }
        Ok(Plan {
            reference,
            session,
            url,
            top,
            etag,
            root,
            children,
            wanted,
            top_unchanged,
        })
    }

    /// The reference's own manifest: from the store when its digest is
    /// known and stored (by the reference, or by a `HEAD` of a tag pulled
    /// before), else from the registry. Returns it, the ETag to record, and
    /// whether it is what the reference led to last time (a digest the
    /// store has, or the manifest the tag's remote holds).
    fn top_manifest(
        &self,
        session: &Session,
        reference: &Reference,
        url: &str,
        scopes: &ScopeSet,
    ) -> Result<(Manifest, Option<String>, bool), Error> {
        if let Some(digest) = reference.digest()
            && self.stored(digest)?
        {
            let manifest = self.stored_manifest(digest, None)?;
            return Ok((manifest, Some(format!("\"{digest}\"")), true));
        }
        if let Some(remote) = self.store.index.remote(url)?
            && self.stored(&remote.blob)?
        {
            let head = session.send(
                Request::head(Op::Pull, url).header("accept", media::manifest_accept()),
                scopes,
            )?;
            if !head.is_success() {
                return Err(session.refused(url, head));
            }
            let etag = head.header("etag").map(str::to_string);
            let current = match head.header("docker-content-digest") {
                Some(value) => Digest::parse(value.trim()).ok(),
                None if remote.etag.is_some() && etag == remote.etag => Some(remote.blob.clone()),
                None => None,
            };
            // Unchanged, or moved to a manifest the store has (back to an
            // older image, say): no body to ask for either way.
            if let Some(digest) = current
                && self.stored(&digest)?
            {
                let manifest = self.stored_manifest(&digest, None)?;
                let unchanged = digest == remote.blob;
                return Ok((manifest, etag.or(remote.etag), unchanged));
            }
        }
        let (manifest, etag) = self.get_manifest(
            session,
            scopes,
            url,
            reference.digest(),
            "the reference",
            None,
        )?;
        Ok((manifest, etag, false))
    }

    /// A manifest the store has, classified by its record's media type.
    fn stored_manifest(&self, digest: &Digest, declared: Option<&str>) -> Result<Manifest, Error> {
        let bytes = self.read_stored(digest)?;
        let row = self.store.index.blob(digest)?;
        let media_type = row
            .and_then(|b| b.media_type)
            .or_else(|| declared.map(str::to_string));
        Ok(Manifest {
            digest: digest.clone(),
            kind: media::classify_manifest(media_type.as_deref(), &bytes).ok(),
            bytes,
            staged: None,
        })
    }

    /// GETs a manifest and checks it: against `Docker-Content-Digest`, and
    /// against `expected` (claimed by `claimed_by`) when given. `declared`
    /// is the media type an index gives it, for entries that are not one of
    /// the four manifest types.
    fn get_manifest(
        &self,
        session: &Session,
        scopes: &ScopeSet,
        url: &str,
        expected: Option<&Digest>,
        claimed_by: &'static str,
        declared: Option<&str>,
    ) -> Result<(Manifest, Option<String>), Error> {
        let mut accept = media::manifest_accept();
        if let Some(declared) = declared.filter(|d| oci::kind_of(d).is_none() && !d.is_empty()) {
            accept = format!("{accept}, {declared}");
        }
        let response =
            session.send(Request::get(Op::Pull, url).header("accept", accept), scopes)?;
        if !response.is_success() {
            return Err(session.refused(url, response));
        }
        let content_type = response.header("content-type").map(str::to_string);
        let etag = response.header("etag").map(str::to_string);
        let header =
            match response.header("docker-content-digest") {
                Some(value) => Some(Digest::parse(value.trim()).map_err(|_| {
                    RegistryError::BadDigestHeader {
                        op: Op::Pull,
                        url: url.to_string(),
                        value: value.to_string(),
                    }
                })?),
                None => None,
            };
        let bytes = response.read_body(oci::MAX_JSON)?;
        let algorithm = expected
            .or(header.as_ref())
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let mismatch = |expected: &Digest, claimed_by| {
            let found = Digest::of(expected.algorithm(), &bytes);
            (&found != expected).then(|| RegistryError::ManifestDigest {
                op: Op::Pull,
                url: url.to_string(),
                expected: expected.clone(),
                found,
                claimed_by,
            })
        };
        if let Some(header) = &header
            && let Some(e) = mismatch(header, "Docker-Content-Digest")
        {
            return Err(e.into());
        }
        if let Some(expected) = expected
            && let Some(e) = mismatch(expected, claimed_by)
        {
            return Err(e.into());
        }
        let kind = match media::classify_manifest(content_type.as_deref(), &bytes) {
            Ok(kind) => Some(kind),
            // An index entry of another type (an artifact) is kept as it
            // is; the walk tells what it is by its shape.
            Err(media::MediaError::NotAManifest { .. }) if declared.is_some() => None,
            Err(source) => {
                return Err(RegistryError::Manifest {
                    op: Op::Pull,
                    url: url.to_string(),
                    source,
                }
                .into());
            }
        };
        let staged = self.stage_bytes(algorithm, &bytes)?;
        Ok((
            Manifest {
                digest: staged.digest.clone(),
                kind,
                bytes,
                staged: Some(staged),
            },
            etag,
        ))
    }

    fn stage_bytes(&self, algorithm: Algorithm, bytes: &[u8]) -> Result<StagedBlob, Error> {
        let mut writer = self.tree().writer(algorithm)?;
        writer
            .write_all(bytes)
            .ctx("write temp file in", self.tree().tmp_dir())?;
        writer.finish()
    }

    /// An entry of an index: from the store, or from the registry, checked
    /// against the digest and size the index gives.
    fn child(
        &self,
        session: &Session,
        scopes: &ScopeSet,
        index_url: &str,
        desc: &Descriptor,
        what: &str,
    ) -> Result<Manifest, Error> {
        let digest = descriptor_digest(index_url, desc, what)?;
        let declared = Some(desc.media_type.as_str());
        let manifest = if self.stored(&digest)? {
            self.stored_manifest(&digest, declared)?
        } else {
            let url = session
                .base()
                .manifest(session.repository(), &digest.to_string());
            self.get_manifest(session, scopes, &url, Some(&digest), "the index", declared)?
                .0
        };
        if manifest.bytes.len() as u64 != desc.size {
            return Err(RegistryError::ManifestSize {
                op: Op::Pull,
                url: session
                    .base()
                    .manifest(session.repository(), &digest.to_string()),
                expected: desc.size,
                found: manifest.bytes.len() as u64,
            }
            .into());
        }
        Ok(manifest)
    }

    /// Every entry of an index that the import walk would read (indexes,
    /// manifests, and other JSON it tells by shape), nested ones too.
    fn all_children(
        &self,
        session: &Session,
        scopes: &ScopeSet,
        url: &str,
        index: &Manifest,
        out: &mut Vec<Manifest>,
        depth: usize,
    ) -> Result<(), Error> {
        if depth >= MAX_NESTING {
            return Err(too_deep(url));
        }
        let parsed = parse_index(url, index)?;
        for (i, desc) in parsed.manifests.iter().enumerate() {
            let may_be_json = desc.media_type.is_empty() || desc.media_type.ends_with("json");
            if oci::kind_of(&desc.media_type).is_none()
                && (!may_be_json || desc.size > oci::MAX_JSON)
            {
                continue;
            }
            let digest = descriptor_digest(url, desc, &format!("manifests[{i}]"))?;
            if out.iter().any(|m| m.digest == digest) {
                continue;
            }
            let child = self.child(session, scopes, url, desc, &format!("manifests[{i}]"))?;
            let nested = child.kind.is_some_and(ManifestKind::is_index);
            out.push(child);
            if nested {
                let child = out.pop().expect("just pushed");
                self.all_children(session, scopes, url, &child, out, depth + 1)?;
                out.push(child);
            }
        }
        Ok(())
    }

    /// The entry of an index (nested indexes followed) that serves the
    /// platform best; returns its descriptor, with the platform the index
    /// gives it.
    fn platform_child(
        &self,
        session: &Session,
        scopes: &ScopeSet,
        reference: &Reference,
        url: &str,
        top: &Manifest,
        out: &mut Vec<Manifest>,
    ) -> Result<Descriptor, Error> {
        let mut parsed = parse_index(url, top)?;
        for _ in 0..MAX_NESTING {
            let desc = platform::select_manifest(&parsed.manifests, &self.platform)
                .map_err(|source| RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    source,
                })?
                .clone();
            let child = self.child(session, scopes, url, &desc, "the platform's manifest")?;
            match child.kind {
                Some(kind) if kind.is_index() => {
                    parsed = parse_index(url, &child)?;
                    out.push(child);
                }
                _ => {
                    let desc = Descriptor {
                        media_type: child.media_type(&desc.media_type),
                        ..desc
                    };
                    out.push(child);
                    return Ok(desc);
                }
            }
        }
        Err(too_deep(url))
    }

    /// The config and layers of a manifest that the store lacks.
    fn wanted_by(
        &self,
        url: &str,
        manifest: &Manifest,
        seen: &mut HashSet<Digest>,
        out: &mut Vec<Wanted>,
    ) -> Result<(), Error> {
        let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            Error::archive(
                Path::new(url),
                ArchiveErrorKind::Malformed {
                    what: format!("manifest {}", manifest.digest),
                    reason: format!("is not a valid image manifest: {e}"),
                },
            )
        })?;
        let what = format!("manifest {}", manifest.digest);
        let config = std::iter::once((&parsed.config, false, format!("{what} config")));
        let layers = parsed
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l, true, format!("{what} layer {i}")));
        for (desc, layer, what) in config.chain(layers) {
            let digest = descriptor_digest(url, desc, &what)?;
            if seen.insert(digest.clone()) && !self.stored(&digest)? {
                out.push(Wanted {
                    digest,
                    size: desc.size,
                    layer,
                });
            }
        }
        Ok(())
    }

    /// Step 2: every blob the plans want, `jobs` at a time, largest first.
    fn download(&self, plans: &[Plan]) -> Result<HashMap<Digest, Fetched>, Error> {
        let mut items: Vec<(&Session, &Wanted)> = Vec::new();
        let mut seen = HashSet::new();
        for plan in plans {
            for wanted in &plan.wanted {
                if seen.insert(wanted.digest.clone()) {
                    items.push((&plan.session, wanted));
                }
            }
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(items[i].1.size));
        let results = crate::parallel::run(
            &items,
            order,
            self.options.jobs.max(1),
            || (),
            |_, (session, wanted)| self.download_blob(session, wanted),
        );
        let mut fetched = HashMap::with_capacity(items.len());
        let mut failure = None;
        for ((_, wanted), result) in items.iter().zip(results) {
            match result {
                Some(Ok(f)) => {
                    fetched.insert(wanted.digest.clone(), f);
                }
                Some(Err(e)) if failure.is_none() => failure = Some(e),
                _ => {}
            }
        }
        match failure {
            // Dropping what was fetched removes its temp files.
            Some(e) => Err(e),
            None => Ok(fetched),
        }
    }

    fn download_blob(&self, session: &Session, wanted: &Wanted) -> Result<Fetched, Error> {
        let url = session.base().blob(session.repository(), &wanted.digest);
        let diff = (self.options.verify_layers && wanted.layer).then_some(Algorithm::Sha256);
        let mut sink = StagingSink::new(self.tree(), wanted.digest.algorithm(), diff)?;
        let mut opts = DownloadOptions::new(Op::Pull);
        opts.immutable = true;
        opts.expected_size = Some(wanted.size);
        let mut task = self
            .options
            .progress
            .as_ref()
            .map(|p| p.begin(&wanted.digest.short(), Some(wanted.size)));
        let scopes = session.scopes(&["pull"]);
        let download = session.download(
            &url,
            &opts,
            &scopes,
            &mut sink,
            task.as_mut()
                .map(|t| -> &mut dyn ProgressTask { t.as_mut() }),
        )?;
        let (mut staged, diff) = sink.finish()?;
        if staged.digest != wanted.digest {
            return Err(RegistryError::BlobDigest {
                url,
                expected: wanted.digest.clone(),
                found: staged.digest.clone(),
            }
            .into());
        }
        if staged.size != wanted.size {
            return Err(RegistryError::BlobSize {
                url,
                digest: wanted.digest.clone(),
                expected: wanted.size,
                found: staged.size,
            }
            .into());
        }
        // Durable now, beside the downloads still running, rather than one
        // after another in the commit.
        staged.make_durable()?;
        if let Some(task) = task {
            task.finish();
        }
        Ok(Fetched {
            staged,
            diff,
            bytes: download.bytes_transferred,
        })
    }

    /// Step 3 for one reference.
    fn commit(&self, plan: Plan, fetched: &mut HashMap<Digest, Fetched>) -> Result<Pulled, Error> {
        let root = plan.root_digest();
        let name = plan.reference.name();
        let tag = match (plan.reference.tag(), plan.reference.digest()) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(plan.reference.tag_or_latest().to_string()),
            (None, Some(_)) => None,
        };
        let remote = NewRemote {
            url: plan.url.clone(),
            etag: plan.etag.clone(),
            max_age: None,
            blob: plan.top.digest.clone(),
            image: Some(root.clone()),
        };
        let tags: Vec<(String, Digest)> = tag
            .iter()
            .map(|t| (format!("{name}:{t}"), root.clone()))
            .collect();
        let reference = plan.reference.to_string();

        let unchanged = plan.top_unchanged
            && plan.wanted.is_empty()
            && plan.children.iter().all(|c| c.staged.is_none())
            && self.store.index.image(&root)?.is_some();
        if unchanged {
            // The image is whole (invariant 3): only the remote's time and
            // the tag move.
            Publication::new(self.tree(), &self.store.index).commit(&Commit {
                remotes: vec![remote],
                tags,
                ..Commit::default()
            })?;
            let image = self.store.image(&root)?;
            return Ok(Pulled {
                reference,
                image: image.clone(),
                images: vec![image],
                unchanged: true,
                blobs_downloaded: 0,
                bytes_downloaded: 0,
            });
        }

        let mut blobs = Blobs::default();
        let (mut count, mut bytes) = (0, 0);
        for wanted in &plan.wanted {
            // A blob two references share was taken, and published, by the
            // first: the walk finds it in the store.
            if let Some(f) = fetched.remove(&wanted.digest) {
                count += 1;
                bytes += f.bytes;
                if let Some(diff) = f.diff {
                    blobs.diffs.insert(wanted.digest.clone(), diff);
                }
                blobs.staged.insert(wanted.digest.clone(), f.staged);
            }
        }
        for child in plan.children {
            if let Some(staged) = child.staged {
                blobs.staged.insert(child.digest, staged);
            }
        }
        let root_is_top = root == plan.top.digest;
        let top_media_type = plan.top.media_type("");
        let mut top_row = Vec::new();
        if let Some(staged) = plan.top.staged {
            blobs.staged.insert(plan.top.digest.clone(), staged);
        }
        if !root_is_top {
            // The index a platform was chosen from is kept for the remote
            // alone, so that the next pull of the tag can choose again
            // without asking for it.
            top_row.push(NewBlob {
                digest: plan.top.digest.clone(),
                size: plan.top.bytes.len() as u64,
                media_type: Some(top_media_type),
                diff_id: None,
            });
        }

        let import_options = ImportOptions::new().verify_layers(self.options.verify_layers);
        let importer = Importer {
            tree: self.tree(),
            index: &self.store.index,
            options: &import_options,
            progress: Counter::default(),
            download: None,
        };
        let input = Path::new(&plan.url);
        let mut walk = Walk::new(
            &importer,
            input,
            StagedSource {
                ctx: &importer,
                input,
                blobs,
            },
        );
        walk.walk_descriptor(&plan.root, "the manifest", Some(&Naming { name, tag }))?;
        let new_images = std::mem::take(&mut walk.images);
        let mut publication = Publication::new(self.tree(), &self.store.index);
        publication.stage_all(walk.source.blobs.staged.into_values());
        let sources: Vec<Digest> = new_images
            .iter()
            .flat_map(|i| i.blobs.iter().map(|b| b.digest.clone()))
            .collect();
        let images = publication.commit(&Commit {
            images: new_images,
            remotes: vec![remote],
            tags,
            blobs: top_row,
            ..Commit::default()
        })?;
        // A hint for pushes to other repositories: losing it costs an
        // upload, never correctness.
        if let Err(e) = self.store.index.record_blob_sources(
            plan.session.registry(),
            plan.session.repository(),
            &sources,
        ) {
            tracing::debug!("cannot record where the blobs of {reference} came from: {e}");
        }
        let image = images
            .iter()
            .find(|i| i.key == root)
            .cloned()
            .ok_or_else(|| {
                Error::Internal(format!("the pull of {reference} recorded no image {root}"))
            })?;
        Ok(Pulled {
            reference,
            image,
            images,
            unchanged: false,
            blobs_downloaded: count,
            bytes_downloaded: bytes,
        })
    }
}

fn too_deep(url: &str) -> Error {
    RegistryError::TooDeep {
        op: Op::Pull,
        url: url.to_string(),
        max: MAX_NESTING,
    }
    .into()
}

fn parse_index(url: &str, manifest: &Manifest) -> Result<ImageIndex, Error> {
    serde_json::from_slice(&manifest.bytes).map_err(|e| {
        Error::archive(
            Path::new(url),
            ArchiveErrorKind::Malformed {
                what: format!("index {}", manifest.digest),
                reason: format!("is not a valid image index: {e}"),
            },
        )
    })
}

fn descriptor_digest(url: &str, desc: &Descriptor, what: &str) -> Result<Digest, Error> {
    Digest::parse(&desc.digest).map_err(|e| {
        Error::archive(
            Path::new(url),
            ArchiveErrorKind::Malformed {
                what: format!("{what} digest"),
                reason: format!("is not valid: {e}"),
            },
        )
    })
}

/// A download's bytes going into a staged blob, hashed as they are
/// written (and decompressed for their diff_id, when asked).
struct StagingSink<'t> {
    tree: &'t BlobTree,
    algorithm: Algorithm,
    writer: Option<BlobWriter>,
    len: u64,
    diff_algorithm: Option<Algorithm>,
    diff: Option<DiffHasher>,
}

impl<'t> StagingSink<'t> {
    fn new(
        tree: &'t BlobTree,
        algorithm: Algorithm,
        diff_algorithm: Option<Algorithm>,
    ) -> Result<StagingSink<'t>, Error> {
        Ok(StagingSink {
            tree,
            algorithm,
            writer: Some(tree.writer(algorithm)?),
            len: 0,
            diff_algorithm,
            diff: diff_algorithm.map(DiffHasher::start),
        })
    }

    fn finish(mut self) -> Result<(StagedBlob, Option<Result<Digest, DecompressError>>), Error> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("a download sink lost its writer".into()))?;
        let staged = writer.finish()?;
        Ok((staged, self.diff.take().map(DiffHasher::finish)))
    }
}

impl DownloadSink for StagingSink<'_> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the staging file is gone"))?;
        writer.write_all(bytes)?;
        if let Some(diff) = self.diff.as_mut() {
            diff.feed(bytes);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn append_from(
        &mut self,
        body: &mut dyn Read,
        max: usize,
        _scratch: &mut [u8],
    ) -> Result<usize, FillError> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| FillError::Write(std::io::Error::other("the staging file is gone")))?;
        // Straight into the hasher's buffer, written to the file from there.
        let bytes = writer.fill_from(&mut body.take(max as u64))?;
        if let Some(diff) = self.diff.as_mut() {
            diff.feed(bytes);
        }
        self.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn restart(&mut self) -> std::io::Result<()> {
        // The old temp file goes with its writer.
        self.writer = None;
        self.writer = Some(
            self.tree
                .writer(self.algorithm)
                .map_err(std::io::Error::other)?,
        );
        self.diff = self.diff_algorithm.map(DiffHasher::start);
        self.len = 0;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}
