//! The JSON documents of the OCI image spec (and their docker v2 schema 2
//! equivalents) as far as the store reads them, with the media types that
//! tell them apart.
//!
//! Parsing is lenient where the spec is: unknown fields and media types are
//! accepted. What the store builds paths or records from (digests, sizes,
//! names) is checked strictly by the callers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Windows base layers, served from Microsoft's URLs rather than the registry.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The annotation OCI layouts name images by (a tag, or a full reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (and `docker save` since 25) names images by.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The largest JSON document (index.json, manifest, config) held in memory.
pub const MAX_JSON: u64 = 16 << 20;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(name).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `oci-layout`: only its version field is required.
#[derive(Debug, Deserialize)]
pub struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    pub image_layout_version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config the store records.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What a descriptor points at, as far as walking the graph goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
}

/// The kind a media type names; `None` for anything else (configs, layers,
/// artifacts, or no media type at all).
pub fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => None,
    }
}

/// The kind a JSON document has by its shape, for descriptors whose media
/// type is missing or unknown (the spec lets an index omit it).
pub fn kind_by_shape(bytes: &[u8]) -> Option<Kind> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object()?;
    if let Some(mt) = object.get("mediaType").and_then(|m| m.as_str())
        && let Some(kind) = kind_of(mt)
    {
        return Some(kind);
    }
    if object.get("manifests").is_some_and(|m| m.is_array()) {
        Some(Kind::Index)
    } else if object.get("config").is_some_and(|c| c.is_object()) {
        Some(Kind::Manifest)
    } else {
        None
    }
}

/// Whether a config media type is an image config (whose `rootfs.diff_ids`
/// must match the layers), as opposed to an artifact's.
pub fn is_image_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// Whether a layer media type says the bytes are a tar as is, so that the
/// layer's digest is its diff_id.
pub fn is_uncompressed_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER | OCI_LAYER_NONDISTRIBUTABLE | DOCKER_LAYER
    )
}

/// Splits a reference into name and tag: `example.com:5000/app:1.0` gives
/// (`example.com:5000/app`, `1.0`). A ':' before the last '/' is a port.
pub fn split_reference(reference: &str) -> (String, Option<String>) {
    let reference = reference.split('@').next().unwrap_or_default();
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            (name.to_string(), Some(tag.to_string()))
        }
        _ => (reference.to_string(), None),
    }
}

/// Whether a ref.name is a bare tag (`1.0.0`, `latest`), as the layout
/// spec and umoci and skopeo use it, rather than a full reference
/// (`example.com/app:1.0`): it holds no `/`, `:` or `@`.
pub fn is_bare_tag(ref_name: &str) -> bool {
    !ref_name.is_empty() && !ref_name.contains(['/', ':', '@'])
}

/// Whether `name` is valid as `org.opencontainers.image.ref.name` by the
/// grammar of the image-layout spec: components of alphanumerics joined by
/// `-._:@+` (or `--`), separated by `/`.
pub fn is_valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            let b = component.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._:@+".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(
            split_reference("busybox:latest"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app".into(), None)
        );
        assert_eq!(
            split_reference("docker.io/library/alpine:3.19"),
            ("docker.io/library/alpine".into(), Some("3.19".into()))
        );
        assert_eq!(split_reference("v1"), ("v1".into(), None));
        assert!(is_bare_tag("1.0.0"));
        assert!(is_bare_tag("latest"));
        assert!(!is_bare_tag("app:1"));
        assert!(!is_bare_tag("example.com/app"));
        assert!(!is_bare_tag("app@sha256:00"));
    }

    #[test]
    fn ref_names() {
        assert!(is_valid_ref_name("example.com/app:1.0"));
        assert!(is_valid_ref_name("latest"));
        assert!(!is_valid_ref_name(""));
        assert!(!is_valid_ref_name("a b"));
        assert!(!is_valid_ref_name("/abs"));
        assert!(!is_valid_ref_name("x:"));
    }

    #[test]
    fn shapes() {
        assert_eq!(kind_by_shape(br#"{"manifests":[]}"#), Some(Kind::Index));
        assert_eq!(
            kind_by_shape(br#"{"config":{},"layers":[]}"#),
            Some(Kind::Manifest)
        );
        assert_eq!(kind_by_shape(b"[1]"), None);
    }
}
