//! Builds OCI image layouts and docker archives in code, for the OCI,
//! docker and export tests: small, exact, and easy to break on purpose.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub fn digest(alg: &str, bytes: &[u8]) -> String {
    let alg = match alg {
        "sha512" => imgstore::Algorithm::Sha512,
        _ => imgstore::Algorithm::Sha256,
    };
    imgstore::Digest::of(alg, bytes).to_string()
}

pub fn sha256(bytes: &[u8]) -> String {
    digest("sha256", bytes)
}

/// A tar of the given files, as a layer holds.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn desc(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An image config.
pub fn config_json(arch: &str, diff_ids: &[String], labels: &[(&str, &str)]) -> Vec<u8> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Labels": labels },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

pub fn manifest_json(config: Value, layers: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

pub fn index_json(manifests: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

/// Adds a ref.name annotation (and a platform, if given) to a descriptor.
pub fn named(mut d: Value, ref_name: &str) -> Value {
    d["annotations"] = json!({ "org.opencontainers.image.ref.name": ref_name });
    d
}

/// Which compression an image's layers get.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// What one built image is made of.
#[derive(Clone, Debug)]
pub struct Built {
    /// The manifest's descriptor (no annotations).
    pub desc: Value,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
}

/// An OCI image layout in memory: files by path.
#[derive(Default, Clone)]
pub struct Layout {
    pub files: BTreeMap<String, Vec<u8>>,
    pub index: Vec<Value>,
}

impl Layout {
    pub fn new() -> Layout {
        let mut l = Layout::default();
        l.files.insert(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        );
        l
    }

    /// Stores a blob; returns its digest.
    pub fn blob(&mut self, alg: &str, bytes: &[u8]) -> String {
        let d = digest(alg, bytes);
        let (a, hex) = d.split_once(':').unwrap();
        self.files
            .insert(format!("blobs/{a}/{hex}"), bytes.to_vec());
        d
    }

    /// Adds an image index over these manifest descriptors, each given
    /// the platform `linux/ARCH`, named `ref_name` in the layout's
    /// index.json; returns the index's digest.
    pub fn platform_index(&mut self, manifests: Vec<(Value, &str)>, ref_name: &str) -> String {
        let manifests = manifests
            .into_iter()
            .map(|(mut d, arch)| {
                d["platform"] = json!({ "os": "linux", "architecture": arch });
                d
            })
            .collect();
        let index = index_json(manifests);
        let digest = self.blob("sha256", &index);
        self.index
            .push(named(desc(INDEX, &digest, index.len()), ref_name));
        digest
    }

    pub fn blob_path(digest: &str) -> String {
        let (a, hex) = digest.split_once(':').unwrap();
        format!("blobs/{a}/{hex}")
    }

    /// A whole image: one layer per file list, a config and a manifest.
    pub fn image(
        &mut self,
        alg: &str,
        arch: &str,
        layers: &[&[(&str, &[u8])]],
        compression: LayerCompression,
        labels: &[(&str, &str)],
    ) -> Built {
        let mut diff_ids = Vec::new();
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        for files in layers {
            let tar = layer_tar(files);
            diff_ids.push(digest(alg, &tar));
            let (bytes, media_type) = match compression {
                LayerCompression::None => (tar, LAYER),
                LayerCompression::Gzip => (gzip(&tar), LAYER_GZ),
                LayerCompression::Zstd => (zstd::encode_all(&tar[..], 3).unwrap(), LAYER_ZSTD),
            };
            let d = self.blob(alg, &bytes);
            layer_descs.push(desc(media_type, &d, bytes.len()));
            layer_digests.push(d);
        }
        let config = config_json(arch, &diff_ids, labels);
        let config_digest = self.blob(alg, &config);
        let manifest = manifest_json(desc(CONFIG, &config_digest, config.len()), layer_descs);
        let manifest_digest = self.blob(alg, &manifest);
        Built {
            desc: desc(MANIFEST, &manifest_digest, manifest.len()),
            manifest: manifest_digest,
            config: config_digest,
            layers: layer_digests,
        }
    }

    /// The usual test image: one gzip layer, amd64, named by ref.name.
    pub fn simple(ref_name: &str, content: &[u8]) -> (Layout, Built) {
        let mut l = Layout::new();
        let built = l.image(
            "sha256",
            "amd64",
            &[&[("etc/hello.txt", content)]],
            LayerCompression::Gzip,
            &[("maintainer", "tests")],
        );
        l.index.push(named(built.desc.clone(), ref_name));
        (l, built)
    }

    pub fn index_bytes(&self) -> Vec<u8> {
        index_json(self.index.clone())
    }

    /// Every file, with index.json unless one was set by hand.
    pub fn all_files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = self.files.clone();
        files
            .entry("index.json".into())
            .or_insert_with(|| self.index_bytes());
        files
    }

    pub fn write_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        for (name, bytes) in self.all_files() {
            let path = dir.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }

    /// The layout as a tar (oci-archive), index.json first as skopeo does
    /// not: order must not matter.
    pub fn tar(&self) -> Vec<u8> {
        tar_of(&self.all_files())
    }
}

pub fn tar_of(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        if !name.contains("..") {
            b.append_data(&mut h, name, &data[..]).unwrap();
            continue;
        }
        // set_path refuses `..`: write the name field directly so tests
        // can build hostile archives.
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Appends a symlink entry to a tar built by [`tar_of`] (before its end).
pub fn tar_with_symlinks(files: &BTreeMap<String, Vec<u8>>, links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    for (name, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o777);
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A docker archive as skopeo writes it: `manifest.json` naming
/// `<hex>.json` and `<hex>.tar`, plus legacy `<id>/layer.tar` symlinks and
/// `repositories`.
pub struct DockerArchive {
    pub files: BTreeMap<String, Vec<u8>>,
    pub links: Vec<(String, String)>,
    pub config: String,
    pub layers: Vec<String>,
}

impl DockerArchive {
    pub fn new(repo_tag: &str, layers: &[&[(&str, &[u8])]]) -> DockerArchive {
        let mut files = BTreeMap::new();
        let mut links = Vec::new();
        let mut names = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let tar = layer_tar(layer);
            let d = sha256(&tar);
            let hex = d.strip_prefix("sha256:").unwrap().to_string();
            files.insert(format!("{hex}.tar"), tar);
            let id = format!("{:064x}", i + 1);
            files.insert(format!("{id}/VERSION"), b"1.0".to_vec());
            files.insert(
                format!("{id}/json"),
                format!(r#"{{"id":"{id}"}}"#).into_bytes(),
            );
            links.push((format!("{id}/layer.tar"), format!("../{hex}.tar")));
            names.push(format!("{hex}.tar"));
            diff_ids.push(d);
        }
        let config = config_json("amd64", &diff_ids, &[("from", "docker")]);
        let config_digest = sha256(&config);
        let config_name = format!("{}.json", config_digest.strip_prefix("sha256:").unwrap());
        files.insert(config_name.clone(), config);
        let manifest = json!([{ "Config": config_name, "RepoTags": [repo_tag], "Layers": names }]);
        files.insert(
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        );
        let (repo, tag) = repo_tag.rsplit_once(':').unwrap();
        files.insert(
            "repositories".into(),
            serde_json::to_vec(&json!({ repo: { tag: format!("{:064x}", layers.len()) } }))
                .unwrap(),
        );
        DockerArchive {
            files,
            links,
            config: config_digest,
            layers: diff_ids,
        }
    }

    pub fn tar(&self) -> Vec<u8> {
        let links: Vec<(&str, &str)> = self
            .links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        tar_with_symlinks(&self.files, &links)
    }
}

/// The shapes that once made the graph walk explode (issue 13, defect 1).
/// `doubling_index(n)`: one image under `n` indexes, each listing the one
/// below twice, so that a walk following every path visits 2^n of them
/// while the layout holds `n + 4` blobs. `index_chain(n)`: the image
/// under `n` indexes, each listing the next once. The top index is
/// named `shape:1` in `index.json`.
pub fn doubling_index(n: usize) -> Layout {
    nested_indexes(n, 2)
}

pub fn index_chain(n: usize) -> Layout {
    nested_indexes(n, 1)
}

fn nested_indexes(n: usize, fan_out: usize) -> Layout {
    let mut l = Layout::new();
    let built = l.image(
        "sha256",
        "amd64",
        &[&[("shape", b"nested")]],
        LayerCompression::None,
        &[],
    );
    let mut top = built.desc;
    for _ in 0..n {
        let index = index_json(vec![top; fan_out]);
        let d = l.blob("sha256", &index);
        top = desc(INDEX, &d, index.len());
    }
    l.index.push(named(top, "shape:1"));
    l
}
