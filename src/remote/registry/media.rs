//! Media types a registry client meets: the four manifest types a pull
//! accepts, the layer and config types inside them, and docker's schema 1,
//! which is refused with a message saying what to do instead.
//!
//! The media types themselves are [`crate::oci`]'s, not written twice. A registry
//! labels a manifest with `Content-Type`; some send `application/json` or
//! nothing useful, so [`classify_manifest`] falls back to the document's own
//! `mediaType` and then its shape, as containers/image does.

use crate::oci::{
    DOCKER_FOREIGN_LAYER, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX, OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_MANIFEST,
};

/// The manifest types a pull asks for, most wanted first.
pub(crate) const PULL_MANIFEST_TYPES: [&str; 4] =
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The `Accept` header of a manifest request: all four types. Schema 1 is
/// left out, so a registry that can convert serves schema 2 instead.
pub(crate) fn manifest_accept() -> String {
    PULL_MANIFEST_TYPES.join(", ")
}

/// The four manifest types the store takes from a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ManifestKind {
    OciIndex,
    OciManifest,
    DockerList,
    DockerManifest,
}

impl ManifestKind {
    pub(crate) fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        match essence(media_type).as_str() {
            OCI_INDEX => Some(ManifestKind::OciIndex),
            OCI_MANIFEST => Some(ManifestKind::OciManifest),
            DOCKER_LIST => Some(ManifestKind::DockerList),
            DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            _ => None,
        }
    }

    pub(crate) fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciIndex => OCI_INDEX,
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::DockerList => DOCKER_LIST,
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
        }
    }

    /// An index or manifest list, whose entries are other manifests.
    pub(crate) fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerList)
    }
}

/// Why a registry's manifest cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Docker's schema 1, which imgstore refuses.
    #[error(
        "the registry serves a docker schema 1 manifest ({media_type}), which imgstore does not support: \
         schema 1 is deprecated and unverifiable; push the image again with a current docker, podman or skopeo"
    )]
    Schema1 {
        /// The media type it came as.
        media_type: String,
    },
    /// Something that is not an image manifest or index.
    #[error("the registry sent {media_type:?}, which is not an image manifest or index")]
    NotAManifest {
        /// Its media type.
        media_type: String,
    },
    /// `Content-Type` and the document's `mediaType` disagree.
    #[error("the registry labels the manifest {header:?} but the document says it is {body:?}")]
    Mismatch {
        /// The `Content-Type`.
        header: String,
        /// The document's `mediaType`.
        body: String,
    },
}

/// The media type without parameters, trimmed and in lower case:
/// `Application/JSON; charset=utf-8` → `application/json`.
pub(crate) fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_schema1(media_type: &str) -> bool {
    matches!(media_type, DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)
}

/// Types that say nothing about what the JSON is.
fn is_generic(media_type: &str) -> bool {
    matches!(
        media_type,
        "" | "application/json" | "text/plain" | "application/octet-stream" | "binary/octet-stream"
    )
}

/// What a manifest response is, from its `Content-Type` and body.
///
/// A specific header is believed, but a document whose own `mediaType`
/// names a different manifest type is refused rather than stored under the
/// wrong type. A generic header (`application/json`, `text/plain`, none)
/// defers to the document: its `mediaType`, else `schemaVersion: 1`, else
/// its shape (`manifests` → OCI index, `config` → OCI manifest).
pub(crate) fn classify_manifest(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<ManifestKind, MediaError> {
    let header = content_type.map(essence).unwrap_or_default();
    if is_schema1(&header) {
        return Err(MediaError::Schema1 { media_type: header });
    }
    let document = Document::read(body);
    if let Some(kind) = ManifestKind::from_media_type(&header) {
        if let Some(declared) = document.media_type.as_deref()
            && let Some(other) = ManifestKind::from_media_type(declared)
            && other != kind
        {
            return Err(MediaError::Mismatch {
                header,
                body: declared.to_string(),
            });
        }
        return Ok(kind);
    }
    if !is_generic(&header) {
        return Err(MediaError::NotAManifest { media_type: header });
    }
    if let Some(declared) = document.media_type.as_deref() {
        let declared = essence(declared);
        if is_schema1(&declared) {
            return Err(MediaError::Schema1 {
                media_type: declared,
            });
        }
        return ManifestKind::from_media_type(&declared).ok_or(MediaError::NotAManifest {
            media_type: declared,
        });
    }
    if document.schema_version == Some(1) {
        return Err(MediaError::Schema1 {
            media_type: DOCKER_SCHEMA1.into(),
        });
    }
    match crate::oci::kind_by_shape(body) {
        Some(crate::oci::Kind::Index) => Ok(ManifestKind::OciIndex),
        Some(crate::oci::Kind::Manifest) => Ok(ManifestKind::OciManifest),
        None => Err(MediaError::NotAManifest {
            media_type: if header.is_empty() {
                "no media type".into()
            } else {
                header
            },
        }),
    }
}

/// The two fields classification reads; anything else may be anything.
#[derive(Default)]
struct Document {
    media_type: Option<String>,
    schema_version: Option<i64>,
}

impl Document {
    fn read(body: &[u8]) -> Document {
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body) else {
            return Document::default();
        };
        Document {
            media_type: object
                .get("mediaType")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            schema_version: object.get("schemaVersion").and_then(|v| v.as_i64()),
        }
    }
}

/// Layers whose bytes registries usually do not hold (their descriptors
/// carry `urls` to fetch them from elsewhere), and that a push must not
/// upload.
pub(crate) fn is_nondistributable(media_type: &str) -> bool {
    matches!(
        essence(media_type).as_str(),
        OCI_LAYER_NONDISTRIBUTABLE
            | OCI_LAYER_NONDISTRIBUTABLE_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_ZSTD
            | DOCKER_FOREIGN_LAYER
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::OCI_CONFIG;

    #[test]
    fn accept_names_all_four_and_no_schema1() {
        let accept = manifest_accept();
        assert_eq!(
            accept,
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json"
        );
        assert!(!accept.contains(DOCKER_SCHEMA1_SIGNED) && !accept.contains(DOCKER_SCHEMA1));
        for t in PULL_MANIFEST_TYPES {
            assert_eq!(ManifestKind::from_media_type(t).unwrap().media_type(), t);
        }
    }

    #[test]
    fn kinds() {
        assert!(ManifestKind::OciIndex.is_index());
        assert!(ManifestKind::DockerList.is_index());
        assert!(!ManifestKind::OciManifest.is_index());
        assert!(!ManifestKind::DockerManifest.is_index());
        assert_eq!(
            ManifestKind::from_media_type(
                "Application/VND.OCI.image.index.v1+json ; charset=utf-8"
            ),
            Some(ManifestKind::OciIndex)
        );
        assert_eq!(ManifestKind::from_media_type(OCI_CONFIG), None);
    }

    #[test]
    fn classifies_by_header() {
        let body = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            classify_manifest(Some(DOCKER_MANIFEST), body),
            Ok(ManifestKind::DockerManifest)
        );
        assert_eq!(
            classify_manifest(Some(&format!("{OCI_MANIFEST}; charset=utf-8")), body),
            Ok(ManifestKind::OciManifest)
        );
        // The document agreeing is fine; disagreeing is refused.
        let oci = format!(r#"{{"mediaType":"{OCI_MANIFEST}","config":{{}}}}"#);
        assert_eq!(
            classify_manifest(Some(OCI_MANIFEST), oci.as_bytes()),
            Ok(ManifestKind::OciManifest)
        );
        assert!(matches!(
            classify_manifest(Some(OCI_INDEX), oci.as_bytes()),
            Err(MediaError::Mismatch { .. })
        ));
        // A document mediaType that is no manifest type does not conflict.
        let odd = br#"{"mediaType":"application/x-other","manifests":[]}"#;
        assert_eq!(
            classify_manifest(Some(OCI_INDEX), odd),
            Ok(ManifestKind::OciIndex)
        );
    }

    #[test]
    fn falls_back_to_the_document() {
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        for header in [
            None,
            Some("application/json"),
            Some("text/plain; charset=utf-8"),
            Some(""),
        ] {
            assert_eq!(
                classify_manifest(header, list.as_bytes()),
                Ok(ManifestKind::DockerList),
                "{header:?}"
            );
        }
        assert_eq!(
            classify_manifest(Some("application/json"), br#"{"manifests":[]}"#),
            Ok(ManifestKind::OciIndex)
        );
        assert_eq!(
            classify_manifest(
                None,
                br#"{"schemaVersion":2,"config":{"digest":"x"},"layers":[]}"#
            ),
            Ok(ManifestKind::OciManifest)
        );
        assert!(matches!(
            classify_manifest(None, b"[1,2]"),
            Err(MediaError::NotAManifest { .. })
        ));
        assert!(matches!(
            classify_manifest(None, b"not json"),
            Err(MediaError::NotAManifest { .. })
        ));
        assert!(matches!(
            classify_manifest(
                Some("application/json"),
                br#"{"mediaType":"application/x-art"}"#
            ),
            Err(MediaError::NotAManifest { .. })
        ));
    }

    #[test]
    fn refuses_schema1_clearly() {
        let signed = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[],"signatures":[]}"#;
        for header in [
            Some(DOCKER_SCHEMA1_SIGNED),
            Some(DOCKER_SCHEMA1),
            Some("application/json"),
            None,
        ] {
            let e = classify_manifest(header, signed).unwrap_err();
            assert!(matches!(e, MediaError::Schema1 { .. }), "{header:?}: {e}");
            assert!(e.to_string().contains("schema 1"), "{e}");
        }
        let declared = format!(r#"{{"mediaType":"{DOCKER_SCHEMA1_SIGNED}"}}"#);
        assert!(matches!(
            classify_manifest(None, declared.as_bytes()),
            Err(MediaError::Schema1 { .. })
        ));
    }

    #[test]
    fn other_types_are_not_manifests() {
        for t in [
            OCI_CONFIG,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "text/html",
        ] {
            assert!(
                matches!(
                    classify_manifest(Some(t), b"{}"),
                    Err(MediaError::NotAManifest { .. })
                ),
                "{t}"
            );
        }
    }

    #[test]
    fn nondistributable_layers() {
        assert!(is_nondistributable(DOCKER_FOREIGN_LAYER));
        assert!(is_nondistributable(OCI_LAYER_NONDISTRIBUTABLE_GZIP));
        assert!(is_nondistributable(&format!(
            "{OCI_LAYER_NONDISTRIBUTABLE}; x=y"
        )));
        assert!(!is_nondistributable(crate::oci::OCI_LAYER));
        assert!(!is_nondistributable(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
    }
}
