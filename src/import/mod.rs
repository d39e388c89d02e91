//! Importing archives: format detection and one streaming reader per format.
//!
//! Every reader follows the same shape: bytes are decompressed, hashed,
//! written to temp files and parsed in one pass over the input
//! ([`pipeline`]); blobs are published (made durable at their final paths)
//! only once the whole archive has been read and checked; and the image rows
//! are committed last, in one transaction. A failure anywhere before the
//! commit drops the temp files and leaves the index untouched.

mod aci;
pub(crate) mod appc;
mod docker;
pub(crate) mod graph;
mod input;
mod layout;
mod members;
pub(crate) mod pipeline;
mod staging;

use std::path::Path;
use std::sync::Arc;

use crate::blobs::BlobTree;
use crate::compression::Compression;
use crate::error::{ArchiveErrorKind, Error};
use crate::image::ImageInfo;
use crate::index::{FileIdentity, Index};
use crate::progress::{Counter, Progress};

pub(crate) use input::{Arriving, RemoteFacts};
pub(crate) use layout::StagedSource;

/// Which reader to use for an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// Tell by the contents.
    #[default]
    Auto,
    /// appc ACI: a tar of `manifest` and `rootfs/`.
    Aci,
    /// OCI image layout: a directory, or a tar of one.
    Oci,
    /// `docker save` output.
    Docker,
}

/// Settings of one import.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Flag the image as the latest of its name.
    pub latest: bool,
    /// Which reader to use; told by the contents by default.
    pub format: ArchiveFormat,
    /// Decompress each layer while importing and check its diff_id.
    pub verify_layers: bool,
    /// Accept an OCI layout that leaves referenced blobs to another store.
    pub allow_missing: bool,
    /// The name of images the input leaves unnamed: an OCI layout whose
    /// `org.opencontainers.image.ref.name` is only a tag (as umoci and
    /// `skopeo copy … oci:DIR:TAG` write), or a docker archive without
    /// `RepoTags`. A name the input gives wins. Without it such images
    /// are imported with an empty name.
    pub name: Option<String>,
    /// Where to report the bytes read (one task per input).
    pub progress: Option<Arc<dyn Progress>>,
}

impl ImportOptions {
    /// The defaults: format told by the contents, nothing flagged latest.
    pub fn new() -> ImportOptions {
        ImportOptions::default()
    }

    /// Flag the images as the latest of their names.
    pub fn latest(mut self, latest: bool) -> ImportOptions {
        self.latest = latest;
        self
    }

    /// Use this reader instead of telling the format by the contents.
    pub fn format(mut self, format: ArchiveFormat) -> ImportOptions {
        self.format = format;
        self
    }

    /// Decompress each layer and check its diff_id.
    pub fn verify_layers(mut self, verify: bool) -> ImportOptions {
        self.verify_layers = verify;
        self
    }

    /// Accept an OCI layout that leaves referenced blobs to another store.
    pub fn allow_missing(mut self, allow: bool) -> ImportOptions {
        self.allow_missing = allow;
        self
    }

    /// Name the images the input leaves unnamed (see [`ImportOptions::name`]).
    pub fn name(mut self, name: impl Into<String>) -> ImportOptions {
        self.name = Some(name.into());
        self
    }

    /// Report the bytes read to `progress`.
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> ImportOptions {
        self.progress = Some(progress);
        self
    }
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("latest", &self.latest)
            .field("format", &self.format)
            .field("verify_layers", &self.verify_layers)
            .field("allow_missing", &self.allow_missing)
            .field("name", &self.name)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What an import needs of the store.
pub(crate) struct Importer<'a> {
    pub tree: &'a BlobTree,
    pub index: &'a Index,
    pub options: &'a ImportOptions,
    /// The bytes read of the input.
    pub progress: Counter,
    /// The download being imported as it arrives (`fetch`), instead of a
    /// file at the input's path; its images commit with its remote row.
    pub download: Option<Arc<dyn Arriving>>,
}

impl Importer<'_> {
    /// Imports one file or directory; returns the images it held.
    pub fn import(&self, path: &Path) -> Result<Vec<ImageInfo>, Error> {
        if let Some(name) = &self.options.name {
            check_name_option(name)?;
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
        if !meta.is_file() && !meta.is_dir() {
            // Never opened: a FIFO would block, a device never end.
            return Err(Error::archive(
                path,
                ArchiveErrorKind::NotRegular {
                    name: "the input".into(),
                    expected: "regular file or directory",
                    found: crate::input::describe(meta.file_type()),
                },
            ));
        }
        if let Some(image) = self.unchanged_source(&meta)? {
            return Ok(vec![image]);
        }
        let format = match self.options.format {
            ArchiveFormat::Auto if meta.is_dir() => ArchiveFormat::Oci,
            ArchiveFormat::Auto => sniff_archive(self, path)?,
            forced => forced,
        };
        match format {
            ArchiveFormat::Aci => {
                if meta.is_dir() {
                    return Err(Error::archive(
                        path,
                        ArchiveErrorKind::WrongFormat("an ACI must be a file, not a directory"),
                    ));
                }
                let image = aci::import(self, path)?;
                self.index
                    .record_source(&FileIdentity::of(&meta), &image.key)?;
                Ok(vec![image])
            }
            ArchiveFormat::Oci => layout::import(self, path, meta.is_dir()),
            ArchiveFormat::Docker => docker::import(self, path),
            ArchiveFormat::Auto => unreachable!("resolved above"),
        }
    }
}

impl Importer<'_> {
    /// Imports the download in [`Importer::download`], named `name` (its
    /// URL) in errors; returns the images it held.
    pub fn import_download(&self, name: &Path) -> Result<Vec<ImageInfo>, Error> {
        let format = match self.options.format {
            ArchiveFormat::Auto => sniff_archive(self, name)?,
            forced => forced,
        };
        match format {
            ArchiveFormat::Aci => Ok(vec![aci::import(self, name)?]),
            ArchiveFormat::Oci => layout::import(self, name, false),
            ArchiveFormat::Docker => docker::import(self, name),
            ArchiveFormat::Auto => unreachable!("resolved above"),
        }
    }

    /// A re-import of a file that an ACI came from and that has not changed
    /// since: the image, if the store still has it whole, without reading
    /// the file.
    fn unchanged_source(&self, meta: &std::fs::Metadata) -> Result<Option<ImageInfo>, Error> {
        if !meta.is_file() || self.options.format.is_forced_other_than_aci() {
            return Ok(None);
        }
        let Some(key) = self.index.source_image(&FileIdentity::of(meta))? else {
            return Ok(None);
        };
        let Some(info) = self.index.image(&key)? else {
            return Ok(None);
        };
        if !(self.tree.contains(&info.key) && self.tree.contains(&info.manifest)) {
            return Ok(None);
        }
        self.index.reimport(&key, self.options.latest)
    }
}

impl ArchiveFormat {
    fn is_forced_other_than_aci(self) -> bool {
        !matches!(self, ArchiveFormat::Auto | ArchiveFormat::Aci)
    }
}

/// Checks the name `--name` gives: a name within the store's limits,
/// without a tag (the tag comes from the input) or control characters.
fn check_name_option(name: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::BadName {
        input: crate::image::quoted(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > crate::image::MAX_NAME_BYTES {
        return Err(bad(format!(
            "it has {} bytes, more than the {} allowed",
            name.len(),
            crate::image::MAX_NAME_BYTES
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it holds control characters".into()));
    }
    if crate::oci::split_reference(name).1.is_some() || name.contains('@') {
        return Err(bad(
            "give the name without a tag or digest (the version comes from the input)".into(),
        ));
    }
    Ok(())
}

/// How many decompressed bytes the format sniffer may read.
const SNIFF_LIMIT: u64 = 1 << 20;

/// Tells the archive format from the names of its first entries.
fn sniff_archive(ctx: &Importer, path: &Path) -> Result<ArchiveFormat, Error> {
    use std::io::Read;
    let (compression, reader) = ctx.open_decompressed(path)?;
    let mut head = Vec::new();
    // Sniffing works with what it got: a stream that breaks after the
    // first names is reported by the real import, with the whole stream
    // in view; one that gives too little to tell is reported here.
    let failed = reader.take(SNIFF_LIMIT).read_to_end(&mut head).err();
    let broken = || match &failed {
        Some(e) => match crate::error::DecompressError::in_io(e) {
            Some(d) => Error::archive(path, d.clone().into()),
            None => Error::io("read", path, clone_io(e)),
        },
        None => Error::archive(path, ArchiveErrorKind::Empty),
    };
    if head.is_empty() {
        return Err(broken());
    }
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(head.as_slice());
    if let Ok(entries) = archive.entries() {
        for entry in entries {
            let Ok(entry) = entry else { break };
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            names.push(name.trim_start_matches("./").to_string());
        }
    }
    let is = |pred: &dyn Fn(&str) -> bool| names.iter().any(|n| pred(n));
    if is(&|n| n == "manifest" || n == "rootfs" || n.starts_with("rootfs/")) {
        Ok(ArchiveFormat::Aci)
    } else if is(&|n| n == "manifest.json" || n == "repositories" || is_docker_member(n)) {
        Ok(ArchiveFormat::Docker)
    } else if is(&|n| n == "oci-layout" || n == "index.json" || n.starts_with("blobs/")) {
        Ok(ArchiveFormat::Oci)
    } else if failed.is_some() {
        Err(broken())
    } else if let Some(cut) = Compression::sniff_cut_magic(&head) {
        Err(Error::archive(
            path,
            ArchiveErrorKind::Truncated { compression: cut },
        ))
    } else if names.is_empty() {
        Err(Error::archive(
            path,
            ArchiveErrorKind::NotATar { compression },
        ))
    } else {
        Err(Error::archive(path, ArchiveErrorKind::UnknownFormat))
    }
}

/// An I/O error again, for a second report of it.
fn clone_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Whether an entry name is one only docker archives use: `<id>/layer.tar`,
/// `<id>/json`, `<id>/VERSION`, `<hex>.tar` or `<hex>.json`. The metadata
/// files of a docker archive often come last, after layers larger than the
/// sniffer reads, so the first names must be enough.
fn is_docker_member(name: &str) -> bool {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.split_once('/') {
        Some((id, rest)) => is_id(id) && matches!(rest, "layer.tar" | "json" | "VERSION" | ""),
        None => name
            .strip_suffix(".tar")
            .or_else(|| name.strip_suffix(".json"))
            .is_some_and(is_id),
    }
}
