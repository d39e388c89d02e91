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
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench import
//! ```

mod common;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression as GzLevel;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use imgstore::{ImportOptions, Store};

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

/// Writes the ACI to `out`: manifest, `rootfs/`, each parent directory once,
/// then the sampled files and symlinks with their modes and times.
fn write_aci(out: &Path, files: &[Candidate]) -> io::Result<()> {
    let gz = GzEncoder::new(BufWriter::new(File::create(out)?), GzLevel::default());
    let mut tar = tar::Builder::new(gz);

    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(MANIFEST.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    tar.append_data(&mut h, "manifest", MANIFEST.as_bytes())?;

    let mut dirs = std::collections::BTreeSet::new();
    let mut add_dir = |tar: &mut tar::Builder<_>, name: String| -> io::Result<()> {
        if dirs.insert(name.clone()) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            tar.append_data(&mut h, format!("{name}/"), io::empty())?;
        }
        Ok(())
    };
    add_dir(&mut tar, "rootfs".into())?;
    for file in files {
        let rel = file.path.strip_prefix("/").expect("absolute source path");
        let mut parent = PathBuf::from("rootfs");
        for part in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(part);
            add_dir(&mut tar, parent.to_string_lossy().into_owned())?;
        }
        let name = Path::new("rootfs").join(rel);
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
    tar.into_inner()?.finish()?.into_inner()?.sync_all()?;
    Ok(())
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
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
