//! `Store::render` throughput, in bytes of uncompressed layers per second.
//!
//! The bench archives of `common::archive` (real files of this machine,
//! `IMGSTORE_BENCH_RENDER_MB`, default 200 MB of layers before compression)
//! are imported once into a store of their own; each iteration renders the
//! image into a fresh directory beside the store, removed again outside the
//! timing. Two images:
//!
//! - `oci_gzip`: the oci-archive with four gzip layers (decompress, hash for
//!   the diff_id and write, on three threads);
//! - `docker_plain`: the docker-archive of the same files in plain layers
//!   (read, hash and write).
//!
//! The layers are in the page cache after the import, so this measures the
//! CPU and the writes, not reading the store; the filesystem is synced
//! before each iteration, so that the writeback of the last tree is not
//! counted against the next. The rendered files go to the
//! bench directory's filesystem: a loop-mounted ext4 for serious runs
//! (DESIGN.md §6).
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench render
//! ```

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use imgstore::{Digest, ImportOptions, RenderOptions, Store};

use common::archive::{bench_docker_archive, bench_oci_archive};

/// A rendered tree, removed when dropped (outside the timing).
struct Rendered(PathBuf);

impl Drop for Rendered {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn import(stores: &Path, name: &str, archive: &Path) -> (Store, Digest) {
    let dir = stores.join(name);
    let _ = fs::remove_dir_all(&dir);
    let store = Store::open(&dir).expect("open bench store");
    let images = store
        .import(archive, &ImportOptions::default())
        .expect("import bench archive");
    let key = images[0].key.clone();
    (store, key)
}

fn render(c: &mut Criterion) {
    let dir = common::bench_dir();
    let megabytes = common::env_size("IMGSTORE_BENCH_RENDER_MB", 200, 2);
    let (oci, uncompressed) = bench_oci_archive(&dir, megabytes);
    let (docker, _) = bench_docker_archive(&dir, megabytes);
    let stores = dir.join("bench-render-stores");
    fs::create_dir_all(&stores).expect("create store directory");
    let targets = dir.join("bench-render-trees");
    let _ = fs::remove_dir_all(&targets);
    fs::create_dir_all(&targets).expect("create target directory");
    let options = RenderOptions::default();
    let next = AtomicU64::new(0);

    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(if common::benchmarking() {
        30
    } else {
        1
    }));
    group.throughput(Throughput::Bytes(uncompressed));
    for (name, archive) in [("oci_gzip", &oci), ("docker_plain", &docker)] {
        let (store, key) = import(&stores, name, archive);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // The last tree's writeback (and its removal) is not
                    // this render's work: let it finish first.
                    rustix::fs::sync();
                    targets.join(next.fetch_add(1, Ordering::Relaxed).to_string())
                },
                |target| {
                    let report = store.render(&key, &target, &options).expect("render");
                    assert!(report.files > 0);
                    Rendered(target)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
    let _ = fs::remove_dir_all(&targets);
}

criterion_group!(benches, render);
criterion_main!(benches);
