//! Export images as an OCI image layout that skopeo and umoci read.
//!
//! The layout is flat and minimal: `oci-layout`, `blobs/<alg>/<hex>` holding
//! every blob of each image's closure byte for byte (read through the
//! verified reader, so a corrupt blob fails the export rather than being
//! copied), and an `index.json` with one descriptor per image. Digests
//! therefore survive a round trip.
//!
//! Each descriptor names its image in both conventions the tools read:
//! `io.containerd.image.name` = `NAME:VERSION` (or `NAME`), the full
//! reference, which containerd (`ctr images import`) and podman (`podman
//! load`) name the image by; and `org.opencontainers.image.ref.name` =
//! `VERSION`, the tag, as the layout spec and skopeo (`oci:DIR:TAG`) and
//! umoci (`--image DIR:TAG`) use it. Two images of one export with the
//! same version get the full reference as ref.name instead, so that each
//! can still be picked out; an image without a version gets no ref.name.
//!
//! The layout is written under a temp name next to `dest` and renamed into
//! place at the end, so `dest` never holds half a layout: a directory, or a
//! tar file when `dest` ends in `.tar`. An existing `dest` is refused, but
//! for an empty directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blobs::sync_dir;
use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::image::{ImageFormat, ImageInfo};
use crate::oci::{self, Descriptor, Kind, Platform};
use crate::store::Store;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl Store {
    /// Writes the images as one OCI image layout: a directory, or a tar
    /// file when `dest` ends in `.tar`.
    pub fn export(&self, keys: &[Digest], dest: &Path) -> Result<(), Error> {
        let mut images = Vec::new();
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for key in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            let info = self.image(key)?;
            if info.format != ImageFormat::Oci {
                return Err(Error::NotOci {
                    key: key.clone(),
                    operation: "exported as an OCI layout",
                });
            }
            let closure = self.index.image_blobs(key)?;
            for blob in &closure {
                if !self.tree.contains(&blob.digest) {
                    return Err(Error::IncompleteImage {
                        key: key.clone(),
                        blob: blob.digest.clone(),
                    });
                }
                blobs.insert(blob.digest.clone());
            }
            let row = closure.iter().find(|b| b.digest == info.manifest);
            // Layers an import left out (--allow-missing) are not in the
            // closure, but a manifest still names them: a layout without
            // them would be refused by every reader.
            for blob in &closure {
                if blob.media_type.as_deref().and_then(oci::kind_of) == Some(Kind::Manifest) {
                    self.check_manifest_complete(key, &blob.digest, &blobs)?;
                }
            }
            let manifest = self.read_blob(&info.manifest)?;
            let media_type = row
                .and_then(|b| b.media_type.clone())
                .or_else(|| {
                    oci::kind_by_shape(&manifest).map(|k| match k {
                        Kind::Index => oci::OCI_INDEX.to_string(),
                        Kind::Manifest => oci::OCI_MANIFEST.to_string(),
                    })
                })
                .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
            images.push((info, media_type, manifest.len() as u64));
        }
        // Tags shared by several images cannot tell them apart.
        let mut tag_uses: BTreeMap<&str, usize> = BTreeMap::new();
        for (info, _, _) in &images {
            if let Some(v) = info.label("version") {
                *tag_uses.entry(v).or_default() += 1;
            }
        }
        let descriptors = images
            .iter()
            .map(|(info, media_type, size)| {
                let shared = info
                    .label("version")
                    .is_some_and(|v| tag_uses.get(v).copied().unwrap_or(0) > 1);
                descriptor(info, media_type.clone(), *size, shared)
            })
            .collect();
        let index = IndexJson {
            schema_version: 2,
            media_type: oci::OCI_INDEX,
            manifests: descriptors,
        };
        let index_json = serde_json::to_vec(&index)
            .map_err(|e| Error::Internal(format!("cannot serialise index.json: {e}")))?;
        check_dest(dest)?;
        let temp = temp_name(dest);
        let written = if dest.extension().is_some_and(|e| e == "tar") {
            self.write_tar(&temp, &index_json, &blobs)
        } else {
            self.write_dir(&temp, &index_json, &blobs)
        };
        let placed = written.and_then(|()| {
            fs::rename(&temp, dest).ctx("move the layout into place at", dest)?;
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        });
        if placed.is_err() {
            let _ = if temp.is_dir() {
                fs::remove_dir_all(&temp)
            } else {
                fs::remove_file(&temp)
            };
        }
        placed?;
        for key in keys {
            self.index.touch(key)?;
        }
        Ok(())
    }

    fn check_manifest_complete(
        &self,
        key: &Digest,
        manifest: &Digest,
        have: &BTreeSet<Digest>,
    ) -> Result<(), Error> {
        let bytes = self.read_blob(manifest)?;
        let Ok(m) = serde_json::from_slice::<oci::ImageManifest>(&bytes) else {
            return Ok(());
        };
        for layer in std::iter::once(&m.config).chain(&m.layers) {
            match Digest::parse(&layer.digest) {
                Ok(d) if have.contains(&d) => {}
                Ok(blob) => {
                    return Err(Error::IncompleteImage {
                        key: key.clone(),
                        blob,
                    });
                }
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "manifest {manifest} of image {key} names a bad digest: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn write_dir(
        &self,
        dir: &Path,
        index_json: &[u8],
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), Error> {
        fs::create_dir(dir).ctx("create directory", dir)?;
        write_file(&dir.join("oci-layout"), OCI_LAYOUT)?;
        let mut dirs: BTreeMap<PathBuf, ()> = BTreeMap::new();
        for digest in blobs {
            let alg_dir = dir.join("blobs").join(digest.algorithm().name());
            if dirs.insert(alg_dir.clone(), ()).is_none() {
                fs::create_dir_all(&alg_dir).ctx("create directory", &alg_dir)?;
            }
            let path = alg_dir.join(digest.hex());
            let mut out = File::create(&path).ctx("create", &path)?;
            let mut reader = self.tree.read(digest)?;
            io::copy(&mut reader, &mut out).map_err(|e| Error::io("copy blob to", &path, e))?;
            out.sync_all().ctx("fsync", &path)?;
        }
        fs::create_dir_all(dir.join("blobs")).ctx("create directory", dir)?;
        // index.json last: a layout is only whole once it names its blobs.
        write_file(&dir.join("index.json"), index_json)?;
        for d in dirs.keys() {
            sync_dir(d)?;
        }
        sync_dir(dir)
    }

    fn write_tar(
        &self,
        path: &Path,
        index_json: &[u8],
        blobs: &BTreeSet<Digest>,
    ) -> Result<(), Error> {
        let file = File::create(path).ctx("create", path)?;
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
        let add = |tar: &mut tar::Builder<_>, name: &str, size: u64, data: &mut dyn io::Read| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(size);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data)
                .map_err(|e| Error::io("write", path, e))
        };
        let add_dir = |tar: &mut tar::Builder<_>, name: &str| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, name, io::empty())
                .map_err(|e| Error::io("write", path, e))
        };
        add(
            &mut tar,
            "oci-layout",
            OCI_LAYOUT.len() as u64,
            &mut &OCI_LAYOUT[..],
        )?;
        add_dir(&mut tar, "blobs/")?;
        let mut alg_dirs = BTreeSet::new();
        for digest in blobs {
            let alg = digest.algorithm().name();
            if alg_dirs.insert(alg) {
                add_dir(&mut tar, &format!("blobs/{alg}/"))?;
            }
            let blob_path = self.tree.path(digest);
            let size = fs::metadata(&blob_path).ctx("read", &blob_path)?.len();
            let mut reader = self.tree.read(digest)?;
            add(
                &mut tar,
                &format!("blobs/{alg}/{}", digest.hex()),
                size,
                &mut reader,
            )?;
        }
        add(
            &mut tar,
            "index.json",
            index_json.len() as u64,
            &mut &index_json[..],
        )?;
        let mut out = tar.into_inner().map_err(|e| Error::io("write", path, e))?;
        out.flush().ctx("write", path)?;
        out.get_ref().sync_all().ctx("fsync", path)
    }
}

/// The index.json descriptor of an image, named as the module says;
/// `shared_tag` if another image of the export has the same version.
fn descriptor(info: &ImageInfo, media_type: String, size: u64, shared_tag: bool) -> Descriptor {
    let version = info
        .label("version")
        .filter(|v| oci::is_bare_tag(v) && oci::is_valid_ref_name(v));
    let name = Some(info.name.as_str()).filter(|n| oci::is_valid_ref_name(n));
    let reference = name.map(|n| match version {
        Some(v) => format!("{n}:{v}"),
        None => n.to_string(),
    });
    let mut annotations = BTreeMap::new();
    if let Some(reference) = &reference {
        annotations.insert(oci::CONTAINERD_NAME.to_string(), reference.clone());
    }
    let ref_name = match (version, &reference) {
        (Some(_), Some(reference)) if shared_tag => Some(reference.clone()),
        (Some(v), _) => Some(v.to_string()),
        (None, _) => None,
    };
    if let Some(ref_name) = ref_name {
        annotations.insert(oci::REF_NAME.to_string(), ref_name);
    }
    let platform = match (info.label("os"), info.label("arch")) {
        (Some(os), Some(arch)) if oci::kind_of(&media_type) == Some(Kind::Manifest) => {
            Some(Platform {
                architecture: arch.to_string(),
                os: os.to_string(),
                variant: info.label("variant").map(str::to_string),
            })
        }
        _ => None,
    };
    Descriptor {
        media_type,
        digest: info.manifest.to_string(),
        size,
        annotations: (!annotations.is_empty()).then_some(annotations),
        platform,
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = File::create(path).ctx("create", path)?;
    f.write_all(bytes).ctx("write", path)?;
    f.sync_all().ctx("fsync", path)
}

/// Refuses a destination that exists, but for an empty directory (which the
/// rename replaces).
fn check_dest(dest: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("read", dest, e)),
        Ok(m) if m.is_dir() && dest.extension().is_none_or(|e| e != "tar") => {
            let empty = fs::read_dir(dest)
                .ctx("read directory", dest)?
                .next()
                .is_none();
            if empty {
                Ok(())
            } else {
                Err(Error::DestinationExists {
                    path: dest.to_path_buf(),
                    non_empty_dir: true,
                })
            }
        }
        Ok(_) => Err(Error::DestinationExists {
            path: dest.to_path_buf(),
            non_empty_dir: false,
        }),
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.imgstore-{}.tmp", std::process::id()))
}
