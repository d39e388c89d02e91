//! Import throughput through `Store::import`: an ACI, an oci-archive and a
//! docker-archive of real files, in bytes per second.
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
//! Then a docker-archive with plain layers, in the form `skopeo copy …
//! docker-archive:` writes (`<hex>.tar` layers, `<hex>.json` config,
//! `manifest.json`), holding the same sample in the same four layers,
//! imported into a fresh store. Its throughput is counted in archive bytes.
//!
//! The archives are built by `common::archive`.
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench import
//! ```

mod common;

use std::fs;
use std::path::Path;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use imgstore::{ImportOptions, Store};

use common::archive::{bench_aci, bench_docker_archive, bench_oci_archive};

/// Benchmarks importing `archive` into a fresh, empty store per iteration
/// (its removal is dropped outside the timing).
fn bench_fresh(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    stores: &Path,
    archive: &Path,
    options: &ImportOptions,
) {
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let tmp = tempfile::tempdir_in(stores).expect("temp store");
                let store = Store::open(tmp.path()).expect("open store");
                (tmp, store)
            },
            |(tmp, store)| {
                let images = store.import(archive, options).expect("import");
                assert_eq!(images.len(), 1);
                (tmp, store)
            },
            BatchSize::PerIteration,
        )
    });
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

    bench_fresh(&mut group, "aci_gzip/fresh_store", &stores, &aci, &options);

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
    let verify = ImportOptions::new().verify_layers(true);
    bench_fresh(
        &mut group,
        "oci_archive_gzip/fresh_store",
        &stores,
        &oci,
        &options,
    );
    bench_fresh(
        &mut group,
        "oci_archive_gzip/verify_layers",
        &stores,
        &oci,
        &verify,
    );

    // A docker-archive of the same files in the same four layers, plain:
    // its throughput is its own size (layers and all).
    let (docker, archive_bytes) = bench_docker_archive(&dir, megabytes);
    group.throughput(Throughput::Bytes(archive_bytes));
    bench_fresh(
        &mut group,
        "docker_archive_plain/fresh_store",
        &stores,
        &docker,
        &options,
    );
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
