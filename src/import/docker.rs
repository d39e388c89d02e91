//! `docker save` / `skopeo copy … docker-archive:` archives, plain or
//! compressed, read in one pass like every archive ([`members`]).
//!
//! Three forms exist:
//! - current (docker 25+): an OCI image layout plus `manifest.json`. It is
//!   imported as the layout it is, so keys are the real manifest digests;
//!   `manifest.json`'s `RepoTags` name images the index leaves unnamed.
//! - `manifest.json` without a layout (skopeo, docker before 25): a list of
//!   `{Config, RepoTags, Layers}` naming files by path.
//! - legacy (before docker 1.10): `repositories` and `<id>/json` +
//!   `<id>/layer.tar` chained by `parent`, with no image config at all.
//!
//! The last two have no manifest, so the store writes one: an OCI image
//! manifest (`application/vnd.oci.image.manifest.v1+json`) over the config
//! and the layer files as they came (never recompressed; media type by
//! their magic bytes), serialized deterministically so that importing the
//! same archive twice gives the same key. For the legacy form the config
//! is made too, from the top layer's `json`, with the layers' digests as
//! diff_ids (legacy layers are plain tars). The generated manifest is
//! stored as a blob, and its digest is the image key.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::graph::{self, Closure, LayerChecker, Naming, new_blob};
use super::members::{self, Members, Mode};
use super::{Importer, layout};
use crate::compression::Compression;
use crate::digest::{Algorithm, Digest};
use crate::error::{ArchiveErrorKind, Error, IoContext};
use crate::image::ImageInfo;
use crate::index::NewImage;
use crate::oci::{self, Descriptor, ImageConfig};

/// One entry of `manifest.json`.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The manifest the store writes for an archive that has none.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedManifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

pub(super) fn import(ctx: &Importer, path: &Path) -> Result<Vec<ImageInfo>, Error> {
    if ctx.download.is_none() && path.is_dir() {
        return Err(Error::archive(
            path,
            ArchiveErrorKind::WrongFormat(
                "a docker archive is a tar file, not a directory (for an OCI layout directory use --format oci)",
            ),
        ));
    }
    let mut members = members::read(ctx, path, Mode::Docker)?;
    let entries = match members.metadata.remove("manifest.json") {
        Some(bytes) => Some(parse_manifest_json(path, &bytes)?),
        None => None,
    };
    if members.metadata.contains_key("oci-layout") && members.metadata.contains_key("index.json") {
        let mut fallback = HashMap::new();
        for entry in entries.iter().flatten() {
            let config = member(&members, path, &entry.config, "Config")?;
            if let Some(tag) = entry.repo_tags.iter().flatten().next() {
                fallback.insert(config, Naming::from_reference(tag));
            }
        }
        return layout::import_members(ctx, path, members, &fallback);
    }
    let images = match entries {
        Some(entries) => entries
            .iter()
            .enumerate()
            .map(|(i, entry)| from_entry(ctx, path, &mut members, i, entry))
            .collect::<Result<Vec<_>, _>>()?,
        None if members.metadata.contains_key("repositories") => legacy(ctx, path, &mut members)?,
        None => {
            return Err(Error::archive(
                path,
                ArchiveErrorKind::MissingFile {
                    container: "archive",
                    name: "manifest.json or repositories file",
                    note: "a docker archive needs one",
                },
            ));
        }
    };
    graph::commit(ctx, members.blobs, images)
}

/// Names by config digest from a `manifest.json` found in an archive read
/// as an OCI layout (docker 25+ writes both, and the sniffer may see the
/// layout first). There it is an extra file, which the layout spec says to
/// tolerate: entries that do not resolve are ignored.
pub(super) fn names_by_config(members: &Members) -> HashMap<Digest, Naming> {
    let mut names = HashMap::new();
    let Some(bytes) = members.metadata.get("manifest.json") else {
        return names;
    };
    let Ok(Some(entries)) = serde_json::from_slice::<Option<Vec<Entry>>>(bytes) else {
        return names;
    };
    for entry in entries {
        let config = members::normalize(entry.config.as_bytes())
            .ok()
            .and_then(|name| members.file(&name));
        if let (Some(config), Some(tag)) = (config, entry.repo_tags.iter().flatten().next()) {
            names.insert(config, Naming::from_reference(tag));
        }
    }
    names
}

fn parse_manifest_json(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, Error> {
    let entries: Option<Vec<Entry>> = graph::parse_json(bytes, "manifest.json", "image list")
        .map_err(|kind| Error::archive(path, kind))?;
    let entries = entries.ok_or_else(|| {
        Error::archive(
            path,
            ArchiveErrorKind::Malformed {
                what: "manifest.json".into(),
                reason: "is null, not a list of images".into(),
            },
        )
    })?;
    if entries.is_empty() {
        return Err(Error::archive(
            path,
            ArchiveErrorKind::NoImages("manifest.json"),
        ));
    }
    Ok(entries)
}

/// The digest of the member a path in manifest.json names.
fn member(members: &Members, path: &Path, name: &str, field: &str) -> Result<Digest, Error> {
    let normal = members::normalize(name.as_bytes()).map_err(|why| {
        Error::archive(
            path,
            ArchiveErrorKind::Malformed {
                what: format!("manifest.json {field} {name:?}"),
                reason: why.to_string(),
            },
        )
    })?;
    members.file(&normal).ok_or_else(|| {
        Error::archive(
            path,
            ArchiveErrorKind::MissingMember {
                what: format!("manifest.json {field}"),
                name: name.to_string(),
            },
        )
    })
}

fn from_entry(
    ctx: &Importer,
    path: &Path,
    members: &mut Members,
    i: usize,
    entry: &Entry,
) -> Result<NewImage, Error> {
    let what = format!("manifest.json entry {i}");
    let config = member(members, path, &entry.config, "Config")?;
    let layers = entry
        .layers
        .iter()
        .map(|l| member(members, path, l, "Layers"))
        .collect::<Result<Vec<_>, _>>()?;
    let naming = entry
        .repo_tags
        .iter()
        .flatten()
        .next()
        .map(|t| Naming::from_reference(t))
        .unwrap_or_default();
    build(ctx, path, members, &what, config, layers, &naming)
}

/// Writes the manifest for a config and layers already staged, checks the
/// layers against the config, and makes the image record.
fn build(
    ctx: &Importer,
    path: &Path,
    members: &mut Members,
    what: &str,
    config: Digest,
    layers: Vec<Digest>,
    naming: &Naming,
) -> Result<NewImage, Error> {
    let bad = |kind| Error::archive(path, kind);
    let blobs = &members.blobs;
    let config_bytes = blobs.read_json(ctx, &config, "config", path)?;
    let parsed: ImageConfig =
        graph::parse_config(&config_bytes, format!("{what}: config {config}")).map_err(bad)?;
    let diff_ids = graph::config_diff_ids(&parsed, &config, what, layers.len()).map_err(bad)?;

    let checker = LayerChecker { ctx, input: path };
    let mut descriptors = Vec::with_capacity(layers.len());
    let mut checked = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let media_type = layer_media_type(&blobs.file(ctx, layer))?;
        let diff = match diff_ids.as_ref().map(|ids| &ids[i]) {
            Some(expected) => checker.check(
                blobs,
                layer,
                &media_type,
                expected,
                &format!("{what} layer {i}"),
            )?,
            None => None,
        };
        descriptors.push(descriptor(
            &media_type,
            layer,
            blobs.size(layer).unwrap_or(0),
        ));
        checked.push(diff);
    }
    let config_size = blobs.size(&config).unwrap_or(0);
    let manifest = GeneratedManifest {
        schema_version: 2,
        media_type: oci::OCI_MANIFEST,
        config: descriptor(oci::OCI_CONFIG, &config, config_size),
        layers: descriptors,
    };
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Internal(format!("cannot serialise a manifest: {e}")))?;
    let mut writer = ctx.tree.writer(Algorithm::Sha256)?;
    writer
        .write_all(&bytes)
        .ctx("write temp file", ctx.tree.tmp_dir())?;
    let staged = writer.finish()?;
    let key = staged.digest.clone();

    let closure = Closure::of_manifest(
        new_blob(&key, staged.size, oci::OCI_MANIFEST, None),
        new_blob(&config, config_size, oci::OCI_CONFIG, None),
        layers
            .iter()
            .zip(&manifest.layers)
            .zip(checked)
            .map(|((layer, desc), diff)| new_blob(layer, desc.size, &desc.media_type, diff))
            .collect(),
    );
    members.blobs.staged.insert(key.clone(), staged);
    let labels = graph::image_labels(&parsed, &config, None).map_err(bad)?;
    graph::new_image(ctx, &key, naming, labels, &closure).map_err(bad)
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size,
        annotations: None,
        platform: None,
    }
}

/// The OCI layer media type for a layer file, by its magic bytes.
fn layer_media_type(file: &Path) -> Result<String, Error> {
    let head = crate::compression::read_head(file, 8)?;
    Ok(match Compression::sniff(&head) {
        Compression::Gzip => format!("{}+gzip", oci::OCI_LAYER),
        Compression::Zstd => format!("{}+zstd", oci::OCI_LAYER),
        _ => oci::OCI_LAYER.to_string(),
    })
}

/// A legacy layer's `json`, as far as the store reads it.
#[derive(Deserialize)]
struct LegacyLayer {
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    created: Option<String>,
}

/// Images of a legacy archive: one per tag in `repositories`.
fn legacy(ctx: &Importer, path: &Path, members: &mut Members) -> Result<Vec<NewImage>, Error> {
    let bad = |what: String, reason: String| {
        Error::archive(path, ArchiveErrorKind::Malformed { what, reason })
    };
    let repositories: Option<HashMap<String, HashMap<String, String>>> = graph::parse_json(
        &members.metadata["repositories"],
        "repositories",
        "map of repositories to tags",
    )
    .map_err(|kind| Error::archive(path, kind))?;
    let repositories = repositories.ok_or_else(|| bad("repositories".into(), "is null".into()))?;
    let mut tags: Vec<(String, String)> = repositories
        .into_iter()
        .flat_map(|(repo, tags)| {
            tags.into_iter()
                .map(move |(tag, id)| (format!("{repo}:{tag}"), id))
        })
        .collect();
    tags.sort();
    let mut images = Vec::new();
    for (reference, top) in tags {
        let mut chain = Vec::new();
        let mut id = Some(top.clone());
        let mut top_json: Option<LegacyLayer> = None;
        while let Some(current) = id {
            if chain.len() > 1000 || chain.contains(&current) {
                return Err(bad(
                    format!("the parent chain of {reference}"),
                    "loops".into(),
                ));
            }
            if !current.bytes().all(|b| b.is_ascii_hexdigit()) || current.is_empty() {
                return Err(bad(
                    format!("layer id {current:?} of {reference}"),
                    "is not hex".into(),
                ));
            }
            let json = member(members, path, &format!("{current}/json"), "layer json")?;
            let bytes = members.blobs.read_json(ctx, &json, "layer json", path)?;
            let layer: LegacyLayer = graph::parse_json(
                &bytes,
                format!("{current}/json"),
                "legacy layer description",
            )
            .map_err(|kind| Error::archive(path, kind))?;
            id = layer.parent.clone().filter(|p| !p.is_empty());
            chain.push(current);
            if top_json.is_none() {
                top_json = Some(layer);
            }
        }
        chain.reverse();
        let layers = chain
            .iter()
            .map(|id| member(members, path, &format!("{id}/layer.tar"), "layer"))
            .collect::<Result<Vec<_>, _>>()?;
        let top_json = top_json.expect("the chain has its top");
        let config = serde_json::json!({
            "architecture": top_json.architecture.unwrap_or_default(),
            "os": top_json.os.unwrap_or_else(|| "linux".into()),
            "config": top_json.config.unwrap_or(serde_json::Value::Null),
            "created": top_json.created,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(Digest::to_string).collect::<Vec<_>>(),
            },
        });
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| Error::Internal(format!("cannot serialise a config: {e}")))?;
        let mut writer = ctx.tree.writer(Algorithm::Sha256)?;
        writer
            .write_all(&bytes)
            .ctx("write temp file", ctx.tree.tmp_dir())?;
        let staged = writer.finish()?;
        let config_digest = staged.digest.clone();
        members.blobs.staged.insert(config_digest.clone(), staged);
        let naming = Naming::from_reference(&reference);
        images.push(build(
            ctx,
            path,
            members,
            &format!("legacy image {reference}"),
            config_digest,
            layers,
            &naming,
        )?);
    }
    if images.is_empty() {
        return Err(Error::archive(
            path,
            ArchiveErrorKind::NoImages("repositories"),
        ));
    }
    Ok(images)
}

/// The digest a docker archive member named `<sha256 hex>.json` or
/// `<sha256 hex>.tar` claims to have.
pub(super) fn digest_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_suffix(".tar")
        .or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}
