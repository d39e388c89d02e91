//! appc ACI import. The image key is the sha512 of the uncompressed tar (the
//! appc image ID) and the stored blob is that tar, so the one pass that
//! decompresses the input also hashes and writes the blob, while the tar
//! parser checks the layout and keeps the manifest.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::Path;

use super::members::{normalize, stream_error, truncated};
use super::{Importer, appc, pipeline};
use crate::digest::Algorithm;
use crate::error::{ArchiveErrorKind, Error, IoContext};
use crate::image::{ImageFormat, ImageInfo};
use crate::index::{NewBlob, NewImage};
use crate::publish::Publication;

/// Media type recorded for the uncompressed ACI tar.
const ACI_MEDIA_TYPE: &str = "application/vnd.appc.image.tar";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.appc.image-manifest+json";
/// A manifest larger than this is refused rather than held in memory.
const MAX_MANIFEST: u64 = 16 << 20;

pub(super) fn import(ctx: &Importer, path: &Path) -> Result<ImageInfo, Error> {
    let mut writer = ctx.tree.writer(Algorithm::Sha512)?;
    // The sink's own error (a full disk, say) is kept aside: by the time it
    // surfaces through the tar parser it has lost its OS error code.
    let mut write_error: Option<io::Error> = None;
    let mut sink = |chunk: &[u8]| {
        writer.write_all(chunk).map_err(|e| {
            let msg = e.to_string();
            write_error = Some(e);
            io::Error::other(msg)
        })
    };
    let scanned = {
        let mut stream = pipeline::start(ctx, path, Some(&mut sink))?;
        let scanned = scan(&mut stream, path).and_then(|manifest| {
            stream.drain().map_err(|e| stream_error(path, e))?;
            if !stream.ends_in_zero_blocks() {
                return Err(truncated(path));
            }
            Ok(manifest)
        });
        drop(stream);
        scanned
    };
    if let Some(e) = write_error {
        return Err(Error::io("write temp file", path, e));
    }
    let manifest_bytes = scanned?;
    let manifest = appc::parse(&manifest_bytes)
        .and_then(|m| crate::image::check_record(&m.name, &m.labels).map(|()| m))
        .map_err(|kind| Error::archive(path, kind))?;
    let tar = writer.finish()?;

    let mut manifest_writer = ctx.tree.writer(Algorithm::Sha256)?;
    manifest_writer
        .write_all(&manifest_bytes)
        .ctx("write temp file", path)?;
    let manifest_blob = manifest_writer.finish()?;

    let image = NewImage {
        key: tar.digest.clone(),
        format: ImageFormat::Aci,
        name: manifest.name,
        labels: manifest.labels,
        manifest: manifest_blob.digest.clone(),
        size: tar.size + manifest_blob.size,
        blobs: vec![
            NewBlob {
                digest: tar.digest.clone(),
                size: tar.size,
                media_type: Some(ACI_MEDIA_TYPE.into()),
                diff_id: None,
            },
            NewBlob {
                digest: manifest_blob.digest.clone(),
                size: manifest_blob.size,
                media_type: Some(MANIFEST_MEDIA_TYPE.into()),
                diff_id: None,
            },
        ],
        roots: vec![tar.digest.clone(), manifest_blob.digest.clone()],
        links: Vec::new(),
        latest: ctx.options.latest,
    };
    let mut publication = Publication::new(ctx.tree, ctx.index);
    publication.stage(tar);
    publication.stage(manifest_blob);
    let info = publication
        .commit(&ctx.rows(vec![image])?)?
        .pop()
        .ok_or_else(|| Error::Internal("an ACI import committed no image".into()))?;
    Ok(info)
}

/// Walks the tar entries: checks the ACI layout and returns the manifest.
fn scan(stream: &mut impl Read, path: &Path) -> Result<Vec<u8>, Error> {
    let entry_error = |entry: &str, reason: String| {
        Error::archive(
            path,
            ArchiveErrorKind::Entry {
                entry: entry.to_string(),
                reason,
            },
        )
    };
    let missing = |name| {
        Error::archive(
            path,
            ArchiveErrorKind::MissingFile {
                container: "archive",
                name,
                note: "",
            },
        )
    };
    let mut archive = tar::Archive::new(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let mut manifest: Option<Vec<u8>> = None;
    let mut has_rootfs = false;
    for entry in archive.entries().map_err(|e| stream_error(path, e))? {
        let mut entry = entry.map_err(|e| stream_error(path, e))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = normalize(&raw)
            .map_err(|why| entry_error(&String::from_utf8_lossy(&raw), why.to_string()))?;
        if name.is_empty() {
            continue; // the archive's own root, "./"
        }
        if !seen.insert(name.clone()) {
            return Err(entry_error(&name, "appears twice".into()));
        }
        if kind.is_hard_link()
            && let Some(target) = entry.link_name_bytes().map(|t| t.into_owned())
        {
            let target = normalize(&target).map_err(|why| {
                entry_error(
                    &name,
                    format!(
                        "is a hard link to {:?}, which {why}",
                        String::from_utf8_lossy(&target)
                    ),
                )
            })?;
            if !target.starts_with("rootfs/") {
                return Err(entry_error(
                    &name,
                    format!("is a hard link pointing outside rootfs/ to {target:?}"),
                ));
            }
        }
        let top = name.split('/').next().unwrap_or_default();
        match top {
            "manifest" if name == "manifest" => {
                if !kind.is_file() {
                    return Err(entry_error(&name, "is not a regular file".into()));
                }
                if entry.size() > MAX_MANIFEST {
                    return Err(Error::archive(
                        path,
                        ArchiveErrorKind::TooLarge {
                            what: "manifest".into(),
                            size: entry.size(),
                            limit: MAX_MANIFEST,
                        },
                    ));
                }
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| stream_error(path, e))?;
                manifest = Some(bytes);
            }
            "rootfs" => {
                if name == "rootfs" && !kind.is_dir() {
                    return Err(entry_error(&name, "is not a directory".into()));
                }
                has_rootfs = true;
            }
            _ => {
                return Err(entry_error(
                    &name,
                    "is unexpected: an ACI holds only manifest and rootfs/".into(),
                ));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| missing("manifest file"))?;
    if !has_rootfs {
        return Err(missing("rootfs/ directory"));
    }
    Ok(manifest)
}
