//! The bench archives, built from real files of this machine: an even
//! sample of `/usr/lib` and `/usr/share` (binaries, shared libraries, text,
//! locales, icons), packed as a gzip ACI, an oci-archive with gzip layers or
//! a docker-archive with plain layers. Each is built once into the bench
//! directory and reused by later runs, so that they import the very same
//! bytes. The oci- and docker-archive of one size hold the same sample in
//! the same `LAYERS` layers: the docker-archive's layers are the tars the
//! oci-archive's gzip layers decompress to.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::Compression as GzLevel;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use imgstore::{Algorithm, Digest};

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

/// Where the sample comes from.
const SOURCES: [&str; 2] = ["/usr/lib", "/usr/share"];

/// Files larger than this are left out, so that one big library cannot make
/// up most of the image.
const MAX_FILE: u64 = 16 << 20;

/// A file or symlink the archive will hold.
struct Candidate {
    path: PathBuf,
    size: u64,
}

/// Every regular file and symlink under `dir` with a UTF-8 name, in sorted
/// order so that the sample is the same from run to run.
fn collect(dir: &Path, out: &mut Vec<Candidate>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.to_str().is_none() {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(&path, out);
        } else if meta.file_type().is_symlink() || (meta.is_file() && meta.len() <= MAX_FILE) {
            // Unreadable files would fail the build below; skip them here.
            if meta.is_file() && File::open(&path).is_err() {
                continue;
            }
            out.push(Candidate {
                size: meta.len(),
                path,
            });
        }
    }
}

/// Picks files spread evenly over all the sources, by bytes: a candidate is
/// taken while the sample is behind `target / total` of the bytes seen.
fn sample(candidates: Vec<Candidate>, target: u64) -> Vec<Candidate> {
    let total: u64 = candidates.iter().map(|c| c.size).sum::<u64>().max(1);
    let mut picked = Vec::new();
    let (mut seen, mut bytes) = (0u128, 0u128);
    for c in candidates {
        seen += u128::from(c.size);
        if bytes * u128::from(total) <= seen * u128::from(target) {
            bytes += u128::from(c.size);
            picked.push(c);
        }
    }
    picked
}

fn header_for(meta: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.permissions().mode() & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(meta.mtime().max(0) as u64);
    h
}

/// Writes the ACI to `out`: manifest, then the files under `rootfs/`.
fn write_aci(out: &Path, files: &[Candidate]) -> io::Result<()> {
    let gz = GzEncoder::new(BufWriter::new(File::create(out)?), GzLevel::default());
    let mut tar = tar::Builder::new(gz);

    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(MANIFEST.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    tar.append_data(&mut h, "manifest", MANIFEST.as_bytes())?;
    append_tree(&mut tar, "rootfs", files)?;
    tar.into_inner()?.finish()?.into_inner()?.sync_all()?;
    Ok(())
}

/// Appends the files (and each parent directory once) under `root`, or at
/// the top when `root` is empty, with their modes, times and symlinks.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &str,
    files: &[Candidate],
) -> io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_dir = |tar: &mut tar::Builder<W>, name: String| -> io::Result<()> {
        if !name.is_empty() && dirs.insert(name.clone()) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            tar.append_data(&mut h, format!("{name}/"), io::empty())?;
        }
        Ok(())
    };
    add_dir(tar, root.into())?;
    for file in files {
        let rel = file.path.strip_prefix("/").expect("absolute source path");
        let mut parent = PathBuf::from(root);
        for part in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(part);
            add_dir(tar, parent.to_string_lossy().into_owned())?;
        }
        let name = Path::new(root).join(rel);
        let meta = fs::symlink_metadata(&file.path)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&file.path)?;
            let mut h = header_for(&meta, tar::EntryType::Symlink, 0);
            tar.append_link(&mut h, &name, &target)?;
        } else {
            let mut h = header_for(&meta, tar::EntryType::Regular, meta.len());
            tar.append_data(&mut h, &name, File::open(&file.path)?)?;
        }
    }
    Ok(())
}

/// Layers in the bench oci- and docker-archives.
pub const LAYERS: usize = 4;

/// Every candidate file of `SOURCES`, sampled down to about `megabytes`.
fn sampled(megabytes: u64) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    for source in SOURCES {
        collect(Path::new(source), &mut candidates);
    }
    sample(candidates, megabytes << 20)
}

/// The files as `LAYERS` plain layer tars (fewer when there are fewer
/// files), each holding a consecutive run of them.
fn layer_tars(files: &[Candidate]) -> io::Result<Vec<Vec<u8>>> {
    files
        .chunks(files.len().div_ceil(LAYERS).max(1))
        .map(|part| {
            let mut tar = tar::Builder::new(Vec::new());
            append_tree(&mut tar, "", part)?;
            tar.into_inner()
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// An image config naming the layers' diff_ids.
fn image_config(diff_ids: &[Digest]) -> serde_json::Result<Vec<u8>> {
    let diff_ids: Vec<String> = diff_ids.iter().map(Digest::to_string).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids } }))
}

/// Writes a plain tar of regular files, in the given order, and syncs it.
fn write_outer_tar<'a>(
    out: &Path,
    members: impl IntoIterator<Item = (String, &'a [u8])>,
) -> io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(out)?));
    for (name, bytes) in members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, name, bytes)?;
    }
    tar.into_inner()?.into_inner()?.sync_all()
}

/// Writes an oci-archive of the files: `LAYERS` gzip layers, a config with
/// their diff_ids, a manifest and an index naming it. Returns the
/// uncompressed size of the layers.
fn write_oci_archive(out: &Path, files: &[Candidate]) -> io::Result<u64> {
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut uncompressed = 0;
    for tar in layer_tars(files)? {
        uncompressed += tar.len() as u64;
        diff_ids.push(sha256(&tar));
        let mut gz = GzEncoder::new(Vec::new(), GzLevel::default());
        gz.write_all(&tar)?;
        let gz = gz.finish()?;
        let d = sha256(&gz);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(), "size": gz.len() }));
        blobs.push((d, gz));
    }
    let config = image_config(&diff_ids)?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest.to_string(), "size": config.len() },
        "layers": layers }))?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest.to_string(), "size": manifest.len(),
                        "annotations": { "org.opencontainers.image.ref.name": "example.com/bench:1.0.0" } }] }))?;
    blobs.push((config_digest, config));
    blobs.push((manifest_digest, manifest));

    let layout: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let metadata = [
        ("oci-layout".to_string(), layout),
        ("index.json".to_string(), index.as_slice()),
    ];
    let blobs = blobs
        .iter()
        .map(|(digest, bytes)| (format!("blobs/sha256/{}", digest.hex()), bytes.as_slice()));
    write_outer_tar(out, metadata.into_iter().chain(blobs))?;
    Ok(uncompressed)
}

/// Writes a docker-archive of the files as `skopeo copy … docker-archive:`
/// does: `LAYERS` plain layers `<hex>.tar`, the config `<hex>.json` (its
/// diff_ids are the layers' digests), then `manifest.json` listing them
/// under the tag `bench/docker:latest`. (skopeo also writes a legacy
/// `repositories` file, which the importer ignores beside a manifest.json;
/// it is left out.) Returns the size of the layers.
fn write_docker_archive(out: &Path, files: &[Candidate]) -> io::Result<u64> {
    let tars = layer_tars(files)?;
    let digests: Vec<Digest> = tars.iter().map(|t| sha256(t)).collect();
    let config = image_config(&digests)?;
    let config_name = format!("{}.json", sha256(&config).hex());
    let layer_names: Vec<String> = digests.iter().map(|d| format!("{}.tar", d.hex())).collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["bench/docker:latest"],
        "Layers": layer_names }]))?;
    let layers = layer_names
        .iter()
        .cloned()
        .zip(tars.iter().map(Vec::as_slice));
    let rest = [
        (config_name.clone(), config.as_slice()),
        ("manifest.json".to_string(), manifest.as_slice()),
    ];
    write_outer_tar(out, layers.chain(rest))?;
    Ok(tars.iter().map(|t| t.len() as u64).sum())
}

/// A bench archive of `megabytes` of sampled files, built by `write` on
/// first use; returns its path and the size `write` reported (kept in a
/// `.size` file beside it).
fn bench_archive(
    dir: &Path,
    name: &str,
    megabytes: u64,
    write: fn(&Path, &[Candidate]) -> io::Result<u64>,
) -> (PathBuf, u64) {
    let path = dir.join(format!("bench-import-{megabytes}mb.{name}"));
    let size_file = path.with_extension("tar.size");
    if !path.exists() || !size_file.exists() {
        let files = sampled(megabytes);
        let partial = path.with_extension("tar.partial");
        let size =
            write(&partial, &files).unwrap_or_else(|e| panic!("build {}: {e}", partial.display()));
        fs::write(&size_file, size.to_string()).expect("record layer size");
        fs::rename(&partial, &path).expect("publish bench archive");
    }
    let size: u64 = fs::read_to_string(&size_file)
        .expect("read layer size")
        .trim()
        .parse()
        .expect("layer size");
    (path, size)
}

/// The bench oci-archive (`bench-import-<N>mb.oci.tar`), built on first
/// use; returns its path and the uncompressed size of its layers.
pub fn bench_oci_archive(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let (path, uncompressed) = bench_archive(dir, "oci.tar", megabytes, write_oci_archive);
    let archive = fs::metadata(&path).expect("stat bench oci-archive").len();
    eprintln!(
        "bench oci-archive {}: {:.1} MB of layers uncompressed, {:.1} MB archive",
        path.display(),
        uncompressed as f64 / 1e6,
        archive as f64 / 1e6
    );
    (path, uncompressed)
}

/// The bench docker-archive with plain layers
/// (`bench-import-<N>mb.docker.tar`), built on first use from the same
/// sample as the oci-archive of that size; returns its path and its size.
pub fn bench_docker_archive(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let (path, layers) = bench_archive(dir, "docker.tar", megabytes, write_docker_archive);
    let archive = fs::metadata(&path)
        .expect("stat bench docker-archive")
        .len();
    eprintln!(
        "bench docker-archive {}: {:.1} MB of plain layers, {:.1} MB archive",
        path.display(),
        layers as f64 / 1e6,
        archive as f64 / 1e6
    );
    (path, archive)
}

/// The bench ACI, built on first use; returns its path and the size of the
/// tar inside it.
pub fn bench_aci(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let path = dir.join(format!("bench-import-{megabytes}mb.aci"));
    if !path.exists() {
        let files = sampled(megabytes);
        let partial = path.with_extension("aci.partial");
        write_aci(&partial, &files).unwrap_or_else(|e| panic!("build {}: {e}", partial.display()));
        fs::rename(&partial, &path).expect("publish bench ACI");
        eprintln!("built {} from {} files", path.display(), files.len());
    }
    let tar_size = io::copy(
        &mut GzDecoder::new(io::BufReader::new(
            File::open(&path).expect("open bench ACI"),
        )),
        &mut io::sink(),
    )
    .expect("read bench ACI");
    let gz_size = fs::metadata(&path).expect("stat bench ACI").len();
    eprintln!(
        "bench ACI {}: {:.1} MB tar, {:.1} MB gzip",
        path.display(),
        tar_size as f64 / 1e6,
        gz_size as f64 / 1e6
    );
    (path, tar_size)
}
