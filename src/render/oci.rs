//! What an OCI image renders from: the manifest (chosen by platform from an
//! index), its config's `rootfs.diff_ids`, and its layers in order, each
//! checked to be in the store and to be a tar layer before anything is
//! written.

use std::io::Read;
use std::path::PathBuf;

use super::error::{LayerName, RenderError};
use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::image::ImageInfo;
use crate::oci::{self, ImageConfig, ImageIndex, ImageManifest, Kind};
use crate::platform::{self, Platform, PlatformError};
use crate::store::Store;

/// Indexes within indexes followed before giving up.
const MAX_NESTING: usize = 4;

/// Layer media types that hold a tar (their compression is told by the
/// bytes, as everywhere in the store).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// One layer to apply.
pub(super) struct Layer {
    pub name: LayerName,
    pub path: PathBuf,
    /// Its diff_id: the digest of its uncompressed tar.
    pub diff_id: Digest,
}

pub(super) struct OciPlan {
    /// The image manifest the layers come from (for an index, the one the
    /// platform chose).
    pub manifest: Digest,
    pub layers: Vec<Layer>,
    /// The platform its config names, if it names one.
    pub platform: Option<Platform>,
}

/// Works out what `info` renders from. `platform` chooses from an index
/// (the host's when `None`) and, when given, must match a single image.
pub(super) fn plan(
    store: &Store,
    info: &ImageInfo,
    platform: Option<&Platform>,
) -> Result<OciPlan, Error> {
    let image = &info.key;
    let bad = |reason: String| -> Error {
        RenderError::BadImage {
            image: image.clone(),
            reason,
        }
        .into()
    };
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let mut digest = info.manifest.clone();
    let mut bytes = read_json(store, image, &digest, "manifest")?;
    let mut nesting = 0;
    while oci::kind_by_shape(&bytes) == Some(Kind::Index) {
        nesting += 1;
        if nesting > MAX_NESTING {
            return Err(bad(format!(
                "its indexes nest more than {MAX_NESTING} deep"
            )));
        }
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("index {digest} is not a valid image index: {e}")))?;
        // An image for the platform, or else a nested index to look in.
        let desc = match platform::select_manifest(&index.manifests, &wanted) {
            Ok(desc) => desc,
            Err(PlatformError::NoMatch { available, .. }) => {
                let nested = index
                    .manifests
                    .iter()
                    .find(|d| oci::kind_of(&d.media_type) == Some(Kind::Index));
                let Some(nested) = nested else {
                    return Err(RenderError::NoPlatform {
                        image: image.clone(),
                        wanted: wanted.to_string(),
                        available,
                    }
                    .into());
                };
                nested
            }
            Err(e) => return Err(e.into()),
        };
        digest = Digest::parse(&desc.digest)
            .map_err(|e| bad(format!("index {digest} names a manifest badly: {e}")))?;
        bytes = read_json(store, image, &digest, &format!("manifest for {wanted}"))?;
    }
    if oci::kind_by_shape(&bytes) != Some(Kind::Manifest) {
        return Err(bad(format!(
            "{digest} is neither an image manifest nor an image index"
        )));
    }
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "manifest {digest} is not a valid image manifest: {e}"
        ))
    })?;
    if !oci::is_image_config(&manifest.config.media_type) {
        return Err(bad(format!(
            "its config has media type {:?}: an artifact, not an image with a root filesystem",
            manifest.config.media_type
        )));
    }
    let config_digest = Digest::parse(&manifest.config.digest)
        .map_err(|e| bad(format!("manifest {digest} names its config badly: {e}")))?;
    let config_bytes = read_json(store, image, &config_digest, "config")?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
        bad(format!(
            "config {config_digest} is not a valid image config: {e}"
        ))
    })?;
    if let (Some(wanted), Some(os), Some(arch)) = (platform, &config.os, &config.architecture)
        && wanted
            .rank(&Platform::new(os, arch, config.variant.as_deref()))
            .is_none()
    {
        let found = match &config.variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        };
        return Err(RenderError::WrongPlatform {
            image: image.clone(),
            wanted: wanted.to_string(),
            found,
        }
        .into());
    }
    let diff_ids = config
        .rootfs
        .map(|r| r.diff_ids)
        .unwrap_or_default()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("config {config_digest} rootfs.diff_ids: {e}")))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(bad(format!(
            "manifest {digest} has {} layers but its config lists {} diff_ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let count = manifest.layers.len();
    let mut layers = Vec::with_capacity(count);
    for (i, (desc, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        let layer_digest = Digest::parse(&desc.digest)
            .map_err(|e| bad(format!("manifest {digest} layer {}: {e}", i + 1)))?;
        let name = LayerName {
            what: format!("layer {} of {count}", i + 1),
            digest: layer_digest.clone(),
        };
        if !LAYER_TYPES.contains(&desc.media_type.as_str()) {
            return Err(RenderError::UnknownMediaType {
                layer: name,
                media_type: desc.media_type.clone(),
            }
            .into());
        }
        if !store.tree.contains(&layer_digest) {
            return Err(RenderError::MissingBlob {
                image: image.clone(),
                what: name.what,
                digest: layer_digest,
            }
            .into());
        }
        layers.push(Layer {
            path: store.tree.path(&layer_digest),
            name,
            diff_id,
        });
    }
    let platform = match (&config.os, &config.architecture) {
        (Some(os), Some(arch)) => Some(Platform::new(os, arch, config.variant.as_deref())),
        _ => None,
    };
    Ok(OciPlan {
        manifest: digest,
        layers,
        platform,
    })
}

/// A JSON blob of the image, verified against its digest, at most
/// [`oci::MAX_JSON`] bytes.
pub(super) fn read_json(
    store: &Store,
    image: &Digest,
    digest: &Digest,
    what: &str,
) -> Result<Vec<u8>, Error> {
    if !store.tree.contains(digest) {
        return Err(RenderError::MissingBlob {
            image: image.clone(),
            what: what.to_string(),
            digest: digest.clone(),
        }
        .into());
    }
    let path = store.tree.path(digest);
    let mut bytes = Vec::new();
    store
        .tree
        .read(digest)?
        .take(oci::MAX_JSON + 1)
        .read_to_end(&mut bytes)
        .ctx("read blob", &path)?;
    if bytes.len() as u64 > oci::MAX_JSON {
        return Err(RenderError::BadImage {
            image: image.clone(),
            reason: format!("its {what} {digest} is larger than {} bytes", oci::MAX_JSON),
        }
        .into());
    }
    Ok(bytes)
}
