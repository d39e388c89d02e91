//! Value types the store hands out: image records, labels, selectors.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{ArchiveErrorKind, Error};

/// Longest image name the store records, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 1024;
/// Longest label name, in bytes.
pub(crate) const MAX_LABEL_NAME_BYTES: usize = 256;
/// Longest label value, in bytes.
pub(crate) const MAX_LABEL_VALUE_BYTES: usize = 4096;
/// Most labels an image may carry.
pub(crate) const MAX_LABELS: usize = 1024;

/// Checks what an image record holds against the limits above, naming the
/// field that is over one. The importers check their inputs' fields where
/// they read them, with the names the input gives; this is the last word
/// before a record is made, whatever its source.
pub(crate) fn check_record(name: &str, labels: &[Label]) -> Result<(), ArchiveErrorKind> {
    check_len("the image name", name, MAX_NAME_BYTES)?;
    check_count("the image", labels.len(), MAX_LABELS)?;
    for label in labels {
        check_label(|| format!("label {}", quoted(&label.name)), label)?;
    }
    Ok(())
}

/// Checks one label's name and value; `field` names it.
pub(crate) fn check_label(
    field: impl Fn() -> String,
    label: &Label,
) -> Result<(), ArchiveErrorKind> {
    if label.name.len() > MAX_LABEL_NAME_BYTES {
        check_len(
            &format!("{} name", field()),
            &label.name,
            MAX_LABEL_NAME_BYTES,
        )?;
    }
    if label.value.len() > MAX_LABEL_VALUE_BYTES {
        check_len(
            &format!("{} value", field()),
            &label.value,
            MAX_LABEL_VALUE_BYTES,
        )?;
    }
    Ok(())
}

/// Refuses a string longer than `limit` bytes.
pub(crate) fn check_len(field: &str, s: &str, limit: usize) -> Result<(), ArchiveErrorKind> {
    if s.len() > limit {
        return Err(ArchiveErrorKind::OverLimit {
            field: field.to_string(),
            size: s.len(),
            limit,
            unit: "bytes",
        });
    }
    Ok(())
}

/// Refuses more than `limit` labels in `field` (a list, or `the image`).
pub(crate) fn check_count(field: &str, count: usize, limit: usize) -> Result<(), ArchiveErrorKind> {
    if count > limit {
        return Err(ArchiveErrorKind::OverLimit {
            field: field.to_string(),
            size: count,
            limit,
            unit: "labels",
        });
    }
    Ok(())
}

/// A string for a message: quoted and escaped as Rust does, and cut to
/// its first 64 characters if longer.
pub(crate) fn quoted(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// The archive family an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// An appc ACI: the key is the sha512 of its tar.
    Aci,
    /// An OCI image (or docker image, stored as OCI): the key is its manifest's digest.
    Oci,
}

impl ImageFormat {
    /// The format's name: `aci` or `oci`.
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
    /// The image's name: the appc name, or the OCI reference's name part.
    pub name: String,
    /// Where it came from.
    pub format: ImageFormat,
    /// Sorted by name.
    pub labels: Vec<Label>,
    /// When it was first imported (a re-import keeps it).
    pub imported_at: DateTime<Utc>,
    /// When it was last used, to the minute (for `prune`).
    pub last_used: DateTime<Utc>,
    /// Whether it was imported with `--latest`.
    pub latest: bool,
    /// Bytes of every blob the image needs.
    pub size: u64,
    /// The blob holding the manifest exactly as imported.
    pub manifest: Digest,
}

impl ImageInfo {
    /// The value of a label, if the image has it.
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
    /// The label's name.
    pub name: String,
    /// The label's value.
    pub value: String,
}

impl Label {
    /// A label from its name and value.
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
    /// The image name.
    pub name: String,
    /// Labels the image must carry (`version` from `:VERSION`).
    pub labels: Vec<Label>,
}

impl NameSelector {
    /// Parses `name[:version][,label=value]…`.
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
    /// The URL fetched.
    pub url: String,
    /// The ETag the server gave, for the next conditional request.
    pub etag: Option<String>,
    /// Seconds the download stays fresh (Cache-Control: max-age).
    pub max_age: Option<u64>,
    /// When it was last downloaded or found unchanged.
    pub downloaded_at: DateTime<Utc>,
    /// The blob the URL was fetched as, which the remote holds.
    pub blob: Digest,
    /// The image imported from the blob, if any.
    pub image: Option<Digest>,
}

/// What `gc` did or, with a dry run, would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Whether nothing was removed (`--dry-run`).
    pub dry_run: bool,
    /// Unreferenced blobs whose rows and files were removed.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Files in the tree that no row names.
    pub orphans: u64,
    /// Their bytes.
    pub orphan_bytes: u64,
    /// Leftover files in `tmp/`.
    pub temp_files: u64,
    /// Their bytes.
    pub temp_bytes: u64,
    /// Whether the whole blob tree was walked for orphans (`gc --full`, or
    /// once for a store made by an older imgstore); otherwise orphans were
    /// found through the intent files alone.
    pub full_sweep: bool,
    /// Entries of `trees/` that no row names (renders cut short, removals
    /// cut short), removed.
    pub tree_dirs: u64,
    /// Rows of kept trees whose directory was gone, dropped.
    pub tree_rows: u64,
}

impl GcReport {
    /// Every byte freed (or, with a dry run, that would be).
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.orphan_bytes + self.temp_bytes
    }
}

/// Disk use by category, from the index (and a walk of `tmp/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiskUsage {
    /// Images recorded.
    pub images: u64,
    /// Bytes of blobs held by some owner.
    pub referenced_blobs: u64,
    /// Their bytes.
    pub referenced_bytes: u64,
    /// Blobs held by more than one owner (counted once in referenced).
    pub shared_blobs: u64,
    /// Their bytes.
    pub shared_bytes: u64,
    /// Blobs no owner holds: what gc would free.
    pub garbage_blobs: u64,
    /// Their bytes.
    pub garbage_bytes: u64,
    /// Rendered trees the store keeps (`trees/`).
    pub trees: u64,
    /// Their file bytes (hard links counted once), as rendered.
    pub tree_bytes: u64,
    /// Bytes in `tmp/`: imports in flight, partial downloads, leftovers.
    pub temp_bytes: u64,
    /// Bytes of the index database (with its WAL).
    pub index_bytes: u64,
}

/// A blob as `inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BlobInfo {
    /// The blob's digest.
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// Its media type, as the manifest that named it said.
    pub media_type: Option<String>,
    /// How many references hold it.
    pub refcount: u64,
    /// For a layer: the digest of its uncompressed bytes, once checked.
    pub diff_id: Option<Digest>,
}

/// An image with the blobs it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageDetails {
    #[serde(flatten)]
    /// The image's record.
    pub info: ImageInfo,
    /// Tags `NAME:TAG` pointing at it.
    pub tags: Vec<String>,
    /// Every blob of its closure.
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
