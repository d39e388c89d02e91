//! `Store::fsck` throughput, in blob bytes checked per second.
//!
//! An image of real files (`IMGSTORE_BENCH_FSCK_MB`, default 300 MB of
//! layers before compression; the archives of `common::archive`) is
//! imported once into a store of its own, then checked over and over:
//! plain (every blob re-hashed, the tree walked, the index checked) and with
//! `layers` (`fsck --layers`: each layer with a diff_id on record also
//! decompressed and hashed). Two stores:
//!
//! - `oci_gzip`: the oci-archive with four gzip layers, imported with
//!   `verify_layers` so that their diff_ids are on record for `--layers`;
//! - `docker_plain`: the docker-archive of the same files in plain layers,
//!   whose diff_ids are their digests, so `--layers` hashes them twice.
//!
//! The throughput is the report's `bytes_checked` (all blob bytes of the
//! store); every check must find no problem. The store's files are in the
//! page cache after the import, so this measures hashing and decompression,
//! not the disk.
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench fsck
//! ```

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use imgstore::{FsckOptions, FsckReport, ImportOptions, Store};

use common::archive::{bench_docker_archive, bench_oci_archive};

/// Runs fsck and fails loudly on any problem: a bench that measured a
/// failing check would be measuring the wrong thing.
fn check(store: &Store, options: &FsckOptions) -> FsckReport {
    let report = store.fsck(options).expect("fsck");
    assert!(
        report.problems.is_empty(),
        "fsck found problems in the bench store:\n{report}"
    );
    report
}

fn fsck(c: &mut Criterion) {
    let dir = common::bench_dir();
    let megabytes = common::env_size("IMGSTORE_BENCH_FSCK_MB", 300, 2);
    let (oci, _) = bench_oci_archive(&dir, megabytes);
    let (docker, _) = bench_docker_archive(&dir, megabytes);
    let stores = dir.join("bench-fsck-stores");
    fs::create_dir_all(&stores).expect("create store directory");
    let verify = ImportOptions::new().verify_layers(true);

    let mut group = c.benchmark_group("fsck");
    group.sample_size(10);
    // Checks take a tenth of a second to a second: the same number of them
    // per sample keeps a run near the measurement time.
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    let plain = FsckOptions::default();
    let layers = FsckOptions::new().layers(true);
    for (name, archive) in [("oci_gzip", &oci), ("docker_plain", &docker)] {
        let tmp = tempfile::tempdir_in(&stores).expect("temp store");
        let store = Store::open(tmp.path()).expect("open store");
        let images = store.import(Path::new(archive), &verify).expect("import");
        assert_eq!(images.len(), 1);
        let report = check(&store, &layers);
        eprintln!(
            "bench fsck store {name}: {} blobs, {:.1} MB",
            report.blobs_checked,
            report.bytes_checked as f64 / 1e6
        );
        group.throughput(Throughput::Bytes(report.bytes_checked));
        for (case, options) in [("plain", &plain), ("layers", &layers)] {
            group.bench_function(format!("{name}/{case}"), |b| {
                b.iter(|| {
                    let r = check(&store, options);
                    assert_eq!(r.blobs_checked, report.blobs_checked);
                    assert_eq!(r.bytes_checked, report.bytes_checked);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fsck);
criterion_main!(benches);
