//! Fetch throughput through `Store::fetch`, against nginx on loopback: the
//! bench ACI (gzip) and the bench oci-archive (gzip layers) of
//! `common::archive`, each fetched into a fresh store, beside `import` of
//! the same local file and `curl -o` of it followed by `import`.
//!
//! Two paces: unthrottled (loopback, the download costs only CPU), where
//! the issue's target is fetch ≤ 1.2 × the local import; and nginx's
//! `limit_rate 100m` (a real network's pace), where it is fetch ≤ 0.8 ×
//! curl + import, because the download overlaps the import instead of
//! preceding it. Throughput is counted in archive bytes.
//!
//! nginx (Debian's `nginx-light`) and curl must be installed; a missing one
//! fails the bench with the package to install.
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench fetch
//! IMGSTORE_BENCH_ACI_MB=80 IMGSTORE_BENCH_OCI_MB=120 cargo bench --bench fetch -- 100m
//! ```

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use imgstore::{FetchOptions, ImportOptions, Store};
use testkit::Nginx;

use common::archive::{bench_aci, bench_oci_archive};

/// One way of getting an archive into a fresh store.
#[derive(Clone, Copy)]
enum Way {
    Fetch,
    Import,
    CurlThenImport,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Fetch => "fetch",
            Way::Import => "import_local",
            Way::CurlThenImport => "curl_then_import",
        }
    }
}

/// Benchmarks one way into a fresh, empty store per iteration (made and
/// removed outside the timing).
fn bench_way(
    group: &mut BenchmarkGroup<'_, WallTime>,
    stores: &Path,
    way: Way,
    file: &Path,
    url: &str,
    curl: &Path,
) {
    group.bench_function(way.name(), |b| {
        b.iter_batched(
            || {
                let tmp = tempfile::tempdir_in(stores).expect("temp store");
                let store = Store::open(tmp.path().join("store")).expect("open store");
                (tmp, store)
            },
            |(tmp, store)| {
                let images = match way {
                    Way::Fetch => store.fetch(url, &FetchOptions::new()).expect("fetch"),
                    Way::Import => store.import(file, &ImportOptions::new()).expect("import"),
                    Way::CurlThenImport => {
                        let local = tmp.path().join("download");
                        let status = Command::new(curl)
                            .args(["-sSf", "-o"])
                            .arg(&local)
                            .arg(url)
                            .status()
                            .expect("run curl");
                        assert!(status.success(), "curl {url}: {status}");
                        store.import(&local, &ImportOptions::new()).expect("import")
                    }
                };
                assert!(!images.is_empty());
                (tmp, store)
            },
            BatchSize::PerIteration,
        )
    });
}

fn fetch(c: &mut Criterion) {
    let dir = common::bench_dir();
    let curl = testkit::require_program("/usr/bin/curl", "curl");
    let aci_mb = common::env_size("IMGSTORE_BENCH_ACI_MB", 80, 2);
    let oci_mb = common::env_size("IMGSTORE_BENCH_OCI_MB", 120, 2);
    let (aci, _) = bench_aci(&dir, aci_mb);
    let (oci, _) = bench_oci_archive(&dir, oci_mb);
    // nginx serves a directory of links to the archives (and nothing else).
    let docroot = dir.join("bench-fetch-docroot");
    let _ = fs::remove_dir_all(&docroot);
    fs::create_dir_all(&docroot).expect("create docroot");
    let mut served: Vec<(&str, PathBuf)> = Vec::new();
    for (name, path) in [("aci_gzip", &aci), ("oci_archive_gzip", &oci)] {
        let link = docroot.join(path.file_name().expect("archive name"));
        std::os::unix::fs::symlink(fs::canonicalize(path).expect("archive path"), &link)
            .expect("link archive");
        served.push((name, path.to_path_buf()));
    }
    let stores = dir.join("bench-fetch-stores");
    fs::create_dir_all(&stores).expect("create store directory");

    for (pace, config, ways) in [
        (
            "loopback",
            "",
            &[Way::Fetch, Way::Import, Way::CurlThenImport][..],
        ),
        (
            "100m",
            "limit_rate 100m;",
            &[Way::Fetch, Way::CurlThenImport][..],
        ),
    ] {
        let server = Nginx::builder(&docroot).config(config).start();
        for (name, path) in &served {
            let url = server.url(&path.file_name().unwrap().to_string_lossy());
            let mut group = c.benchmark_group(format!("fetch/{pace}/{name}"));
            group.sample_size(10);
            group.throughput(Throughput::Bytes(
                fs::metadata(path).expect("stat archive").len(),
            ));
            for &way in ways {
                bench_way(&mut group, &stores, way, path, &url, &curl);
            }
            group.finish();
        }
    }
}

criterion_group!(benches, fetch);
criterion_main!(benches);
