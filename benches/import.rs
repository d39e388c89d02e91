//! ACI import throughput through `Store::import`, in bytes of uncompressed
//! tar per second.
//!
//! The archive is a real gzip ACI: a `manifest` and a `rootfs/` holding an
//! even sample of this machine's `/usr/lib` and `/usr/share` (binaries,
//! shared libraries, text, locales, icons), about `IMGSTORE_BENCH_ACI_MB`
//! megabytes (default 80) before compression. It is built once and kept in
//! the bench directory (see `common::bench_dir`), so later runs import the
//! very same bytes.
//!
//! Two cases: a fresh, empty store per iteration (the first import of an
//! image), and a re-import into a store that already holds it.
//!
//! Then an oci-archive of the same kind of files (`IMGSTORE_BENCH_OCI_MB`,
//! default 120) in four gzip layers, imported into a fresh store as it is
//! (layers stored as they came) and with `verify_layers` (each layer
//! decompressed beside the write to check its diff_id). Its throughput is
//! counted in uncompressed layer bytes too.
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench import
//! ```

mod common;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression as GzLevel;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use imgstore::{Algorithm, Digest, ImportOptions, Store};

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

/// Layers in the bench oci-archive.
const OCI_LAYERS: usize = 4;

/// Writes an oci-archive of the files: `OCI_LAYERS` gzip layers, a config
/// with their diff_ids, a manifest and an index naming it.
fn write_oci_archive(out: &Path, files: &[Candidate]) -> io::Result<u64> {
    let sha256 = |b: &[u8]| Digest::of(Algorithm::Sha256, b);
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut uncompressed = 0;
    for part in files.chunks(files.len().div_ceil(OCI_LAYERS).max(1)) {
        let mut tar = tar::Builder::new(Vec::new());
        append_tree(&mut tar, "", part)?;
        let tar = tar.into_inner()?;
        uncompressed += tar.len() as u64;
        diff_ids.push(sha256(&tar).to_string());
        let mut gz = GzEncoder::new(Vec::new(), GzLevel::default());
        gz.write_all(&tar)?;
        let gz = gz.finish()?;
        let d = sha256(&gz);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(), "size": gz.len() }));
        blobs.push((d, gz));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids } }))?;
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

    let mut tar = tar::Builder::new(BufWriter::new(File::create(out)?));
    let mut add = |name: &str, bytes: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, name, bytes)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (digest, bytes) in &blobs {
        add(&format!("blobs/sha256/{}", digest.hex()), bytes)?;
    }
    tar.into_inner()?.into_inner()?.sync_all()?;
    Ok(uncompressed)
}

/// The bench oci-archive, built on first use; returns its path and the
/// uncompressed size of its layers.
fn bench_oci_archive(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let path = dir.join(format!("bench-import-{megabytes}mb.oci.tar"));
    let size_file = path.with_extension("tar.size");
    if !path.exists() || !size_file.exists() {
        let mut candidates = Vec::new();
        for source in SOURCES {
            collect(Path::new(source), &mut candidates);
        }
        let files = sample(candidates, megabytes << 20);
        let partial = path.with_extension("tar.partial");
        let size = write_oci_archive(&partial, &files)
            .unwrap_or_else(|e| panic!("build {}: {e}", partial.display()));
        fs::write(&size_file, size.to_string()).expect("record layer size");
        fs::rename(&partial, &path).expect("publish bench oci-archive");
    }
    let uncompressed: u64 = fs::read_to_string(&size_file)
        .expect("read layer size")
        .trim()
        .parse()
        .expect("layer size");
    let archive = fs::metadata(&path).expect("stat bench oci-archive").len();
    eprintln!(
        "bench oci-archive {}: {:.1} MB of layers uncompressed, {:.1} MB archive",
        path.display(),
        uncompressed as f64 / 1e6,
        archive as f64 / 1e6
    );
    (path, uncompressed)
}

/// The bench ACI, built on first use; returns its path and the size of the
/// tar inside it.
fn bench_aci(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let path = dir.join(format!("bench-import-{megabytes}mb.aci"));
    if !path.exists() {
        let mut candidates = Vec::new();
        for source in SOURCES {
            collect(Path::new(source), &mut candidates);
        }
        let files = sample(candidates, megabytes << 20);
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

fn import(c: &mut Criterion) {
    let dir = common::bench_dir();
    let megabytes = common::env_size("IMGSTORE_BENCH_ACI_MB", 80, 2);
    let (aci, tar_size) = bench_aci(&dir, megabytes);
    // Stores live beside the archive, on the filesystem under test.
    let stores = dir.join("bench-import-stores");
    fs::create_dir_all(&stores).expect("create store directory");
    let options = ImportOptions::default();

    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar_size));

    group.bench_function("aci_gzip/fresh_store", |b| {
        b.iter_batched(
            || {
                let tmp = tempfile::tempdir_in(&stores).expect("temp store");
                let store = Store::open(tmp.path()).expect("open store");
                (tmp, store)
            },
            |(tmp, store)| {
                let images = store.import(&aci, &options).expect("import");
                assert_eq!(images.len(), 1);
                // Removing the store is dropped outside the timing.
                (tmp, store)
            },
            BatchSize::PerIteration,
        )
    });

    let tmp = tempfile::tempdir_in(&stores).expect("temp store");
    let store = Store::open(tmp.path()).expect("open store");
    store.import(&aci, &options).expect("first import");
    group.bench_function("aci_gzip/reimport", |b| {
        b.iter(|| store.import(&aci, &options).expect("re-import"))
    });

    // An oci-archive with gzip layers, at least 100 MB uncompressed;
    // throughput is counted in uncompressed layer bytes, as for the ACI.
    let megabytes = common::env_size("IMGSTORE_BENCH_OCI_MB", 120, 2);
    let (oci, layer_bytes) = bench_oci_archive(&dir, megabytes);
    group.throughput(Throughput::Bytes(layer_bytes));
    let verify = ImportOptions {
        verify_layers: true,
        ..ImportOptions::default()
    };
    for (name, opts) in [
        ("oci_archive_gzip/fresh_store", &options),
        ("oci_archive_gzip/verify_layers", &verify),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let tmp = tempfile::tempdir_in(&stores).expect("temp store");
                    let store = Store::open(tmp.path()).expect("open store");
                    (tmp, store)
                },
                |(tmp, store)| {
                    let images = store.import(&oci, opts).expect("import");
                    assert_eq!(images.len(), 1);
                    (tmp, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
