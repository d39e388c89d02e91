//! Value types the store hands out: image records, labels, selectors.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::Error;

/// The archive family an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Aci,
    Oci,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Aci => "aci",
            ImageFormat::Oci => "oci",
        }
    }

    pub(crate) fn from_db(s: &str) -> ImageFormat {
        if s == "aci" {
            ImageFormat::Aci
        } else {
            ImageFormat::Oci
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageInfo {
    /// Digest of the ACI tar, or of the OCI manifest.
    pub key: Digest,
    pub name: String,
    pub format: ImageFormat,
    /// Sorted by name.
    pub labels: Vec<Label>,
    pub imported_at: DateTime<Utc>,
    pub last_used: DateTime<Utc>,
    pub latest: bool,
    /// Bytes of every blob the image needs.
    pub size: u64,
    /// The blob holding the manifest exactly as imported.
    pub manifest: Digest,
}

impl ImageInfo {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

/// A `name=value` pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Parses `KEY=VALUE` as given on the command line.
    pub fn parse(input: &str) -> Result<Label, Error> {
        let bad = |reason| Error::BadLabel {
            input: input.to_string(),
            reason,
        };
        let (name, value) = input
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        if name.is_empty() {
            return Err(bad("the label name is empty"));
        }
        if name.contains([',', ' ']) {
            return Err(bad("a label name cannot hold ',' or spaces"));
        }
        Ok(Label::new(name, value))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// `name[:version][,label=value]…`: an image chosen by name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSelector {
    pub name: String,
    pub labels: Vec<Label>,
}

impl NameSelector {
    pub fn parse(input: &str) -> Result<NameSelector, Error> {
        let mut parts = input.split(',');
        let head = parts.next().unwrap_or_default();
        let mut labels = Vec::new();
        let name = match head.rsplit_once(':') {
            // A ':' after the last '/' separates a version, as in
            // `example.com/app:1.0`; one before it is a registry port.
            Some((name, version)) if !version.contains('/') => {
                if version.is_empty() {
                    return Err(Error::BadLabel {
                        input: input.to_string(),
                        reason: "empty version after ':'",
                    });
                }
                labels.push(Label::new("version", version));
                name
            }
            _ => head,
        };
        if name.is_empty() {
            return Err(Error::BadLabel {
                input: input.to_string(),
                reason: "the image name is empty",
            });
        }
        for part in parts {
            labels.push(Label::parse(part)?);
        }
        Ok(NameSelector {
            name: name.to_string(),
            labels,
        })
    }
}

/// Where a blob was downloaded from, with its HTTP cache facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Remote {
    pub url: String,
    pub etag: Option<String>,
    /// Seconds the download stays fresh (Cache-Control: max-age).
    pub max_age: Option<u64>,
    pub downloaded_at: DateTime<Utc>,
    pub blob: Digest,
    /// The image imported from the blob, if any.
    pub image: Option<Digest>,
}

/// What `gc` did or, with a dry run, would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    pub dry_run: bool,
    /// Unreferenced blobs whose rows and files were removed.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Files in the tree that no row names.
    pub orphans: u64,
    pub orphan_bytes: u64,
    /// Leftover files in `tmp/`.
    pub temp_files: u64,
    pub temp_bytes: u64,
    /// Whether the whole blob tree was walked for orphans (`gc --full`, or
    /// once for a store made by an older imgstore); otherwise orphans were
    /// found through the intent files alone.
    pub full_sweep: bool,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.orphan_bytes + self.temp_bytes
    }
}

/// Disk use by category, from the index (and a walk of `tmp/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiskUsage {
    pub images: u64,
    /// Bytes of blobs held by some owner.
    pub referenced_blobs: u64,
    pub referenced_bytes: u64,
    /// Blobs held by more than one owner (counted once in referenced).
    pub shared_blobs: u64,
    pub shared_bytes: u64,
    /// Blobs no owner holds: what gc would free.
    pub garbage_blobs: u64,
    pub garbage_bytes: u64,
    pub temp_bytes: u64,
    pub index_bytes: u64,
}

/// A blob as `inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: Option<String>,
    pub refcount: u64,
    pub diff_id: Option<Digest>,
}

/// An image with the blobs it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageDetails {
    #[serde(flatten)]
    pub info: ImageInfo,
    pub tags: Vec<String>,
    pub blobs: Vec<BlobInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let s = NameSelector::parse("example.com/app:1.0.0,os=linux").unwrap();
        assert_eq!(s.name, "example.com/app");
        assert_eq!(
            s.labels,
            vec![Label::new("version", "1.0.0"), Label::new("os", "linux")]
        );
        let s = NameSelector::parse("localhost:5000/app").unwrap();
        assert_eq!(s.name, "localhost:5000/app");
        assert!(s.labels.is_empty());
        assert!(NameSelector::parse("app,os").is_err());
        assert!(NameSelector::parse(",os=linux").is_err());
        assert!(NameSelector::parse("app:").is_err());
    }
}
