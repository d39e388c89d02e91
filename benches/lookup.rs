//! Lookups and gc on a store at the scale of DESIGN.md §6: 100,000 images
//! and 1,000,000 blobs, a tenth of them garbage.
//!
//! Importing 100,000 real archives would take hours, so the store is written
//! directly: `Store::open` applies the real migrations, then one rusqlite
//! transaction fills `blobs`, `images`, `labels`, `tags` and `refs` the way
//! imports would (the schema's triggers keep the reference counts). Each
//! image is an ACI: a sha512 key that is also its tar blob, a sha256
//! manifest blob, both held by the image; the remaining live blobs hang off
//! the manifests as layers would. The blob tree gets an empty file for every
//! live blob (unless `IMGSTORE_BENCH_TREE=0`), so that gc's walk of the tree
//! sees a tree of the right size.
//!
//! The store is built once under the bench directory as
//! `bench-store-<images>-<blobs>` and reused by later runs. Sizes come from
//! `IMGSTORE_BENCH_IMAGES` (default 100000) and `IMGSTORE_BENCH_BLOBS`
//! (default 1000000); garbage is a tenth of the blobs.
//!
//! Besides criterion's means, the p50/p90/p99 of single calls are printed
//! to stderr before the benchmarks run.
//!
//! ```text
//! IMGSTORE_BENCH_DIR=/mnt/imgstore-bench cargo bench --bench lookup -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The gc benchmark copies the index for every iteration and runs at least
//! eleven of them, so at full scale it takes several minutes. (With schema
//! 1, deleting a blob row scanned the whole `images` table for the foreign
//! key `images.manifest`, and one gc at full scale took 17 minutes;
//! migration 0002 indexes it: 24 s.) For a quick run, leave it out or run
//! it at a tenth of the scale:
//!
//! ```text
//! cargo bench --bench lookup -- '^(lookup|listing)/'
//! IMGSTORE_BENCH_IMAGES=10000 IMGSTORE_BENCH_BLOBS=100000 cargo bench --bench lookup -- '^gc/'
//! ```

mod common;

use std::fs::{self, File};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use imgstore::{Algorithm, Digest, GcOptions, Label, Store};
use rusqlite::{Connection, params};

use common::Rng;

/// Images per name: each name has this many versions.
const VERSIONS_PER_NAME: u64 = 50;
/// Import times start here (2026-01-01, unix microseconds) and are a second
/// apart.
const T0: i64 = 1_767_225_600_000_000;

/// The shape of the bench store.
#[derive(Clone, Copy)]
struct Scale {
    images: u64,
    blobs: u64,
    garbage: u64,
    tree: bool,
}

impl Scale {
    fn from_env() -> Scale {
        let images = common::env_size("IMGSTORE_BENCH_IMAGES", 100_000, 1_000);
        let blobs = common::env_size("IMGSTORE_BENCH_BLOBS", 1_000_000, 10_000);
        let garbage = blobs / 10;
        assert!(
            blobs - garbage >= 2 * images,
            "{blobs} blobs cannot hold {images} images (two blobs each) and {garbage} garbage"
        );
        Scale {
            images,
            blobs,
            garbage,
            tree: std::env::var("IMGSTORE_BENCH_TREE").map_or(true, |v| v != "0"),
        }
    }

    fn names(&self) -> u64 {
        (self.images / VERSIONS_PER_NAME).max(1)
    }

    fn live(&self) -> u64 {
        self.blobs - self.garbage
    }

    /// Blobs that hang off manifests (layers, configs).
    fn extra(&self) -> u64 {
        self.live() - 2 * self.images
    }
}

/// What the generator makes of image `i`: its name and version.
fn image_name(scale: &Scale, i: u64) -> String {
    format!("example.com/app-{:05}", i % scale.names())
}

fn image_version(scale: &Scale, i: u64) -> u64 {
    i / scale.names()
}

fn image_key(i: u64) -> Digest {
    Digest::of(Algorithm::Sha512, format!("bench image {i}").as_bytes())
}

fn manifest_digest(i: u64) -> Digest {
    Digest::of(Algorithm::Sha256, format!("bench manifest {i}").as_bytes())
}

fn extra_digest(k: u64) -> Digest {
    Digest::of(Algorithm::Sha256, format!("bench layer {k}").as_bytes())
}

fn garbage_digest(g: u64) -> Digest {
    Digest::of(Algorithm::Sha256, format!("bench garbage {g}").as_bytes())
}

fn blob_path(store: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    store
        .join("blobs")
        .join(d.algorithm().name())
        .join(&hex[..2])
        .join(hex)
}

/// Writes the rows of the bench store into `dir`, whose schema `Store::open`
/// has just created.
fn fill_index(dir: &Path, scale: &Scale) -> rusqlite::Result<()> {
    let mut conn = Connection::open(dir.join("index.db"))?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -1_000_000)?;
    let tx = conn.transaction()?;
    {
        let mut blob = tx.prepare(
            "INSERT INTO blobs (id, digest, size, media_type, created_at) VALUES (?, ?, ?, ?, ?)",
        )?;
        let mut image = tx.prepare(
            "INSERT INTO images (id, key, format, name, manifest, imported_at, last_used, latest, size) \
             VALUES (?, ?, 'aci', ?, ?, ?, ?, ?, ?)",
        )?;
        let mut label =
            tx.prepare("INSERT INTO labels (image_id, name, value) VALUES (?, ?, ?)")?;
        let mut tag =
            tx.prepare("INSERT INTO tags (name, image_id, updated_at) VALUES (?, ?, ?)")?;
        let mut edge =
            tx.prepare("INSERT INTO refs (owner_kind, owner, blob_id) VALUES (?, ?, ?)")?;
        let mut rng = Rng::new(1);

        for i in 0..scale.images {
            let (id, tar_id, manifest_id) = (i as i64 + 1, 2 * i as i64 + 1, 2 * i as i64 + 2);
            let at = T0 + i as i64 * 1_000_000;
            let tar_size = (rng.below(200 << 20) + 1024) as i64;
            let manifest_size = 300 + rng.below(400) as i64;
            blob.execute(params![
                tar_id,
                image_key(i).to_string(),
                tar_size,
                "application/vnd.appc.image.tar",
                at
            ])?;
            blob.execute(params![
                manifest_id,
                manifest_digest(i).to_string(),
                manifest_size,
                "application/vnd.appc.image-manifest+json",
                at
            ])?;
            let name = image_name(scale, i);
            let v = image_version(scale, i);
            // One image per name is flagged latest, and it is not the newest,
            // so the latest-by-name rule has something to decide.
            let latest = v == VERSIONS_PER_NAME / 2;
            image.execute(params![
                id,
                image_key(i).to_string(),
                name,
                manifest_id,
                at,
                at,
                latest,
                tar_size + manifest_size
            ])?;
            let arch = if v % 2 == 0 { "amd64" } else { "arm64" };
            for (k, val) in [
                ("arch", arch.to_string()),
                ("os", "linux".into()),
                ("version", format!("1.{v}.0")),
            ] {
                label.execute(params![id, k, val])?;
            }
            tag.execute(params![format!("{name}:1.{v}.0"), id, at])?;
            edge.execute(params![1, id, tar_id])?;
            edge.execute(params![1, id, manifest_id])?;
        }
        let first_extra = 2 * scale.images as i64 + 1;
        for k in 0..scale.extra() {
            let id = first_extra + k as i64;
            let owner_image = k % scale.images;
            blob.execute(params![
                id,
                extra_digest(k).to_string(),
                rng.below(50 << 20) as i64,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                T0
            ])?;
            edge.execute(params![2, 2 * owner_image as i64 + 2, id])?;
        }
        let first_garbage = scale.live() as i64 + 1;
        for g in 0..scale.garbage {
            blob.execute(params![
                first_garbage + g as i64,
                garbage_digest(g).to_string(),
                rng.below(50 << 20) as i64,
                "application/octet-stream",
                T0
            ])?;
        }
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// An empty file for every live blob; garbage blobs have none (gc removes
/// missing files without complaint).
fn fill_tree(dir: &Path, scale: &Scale) {
    let mut digests: Vec<Digest> = Vec::new();
    for i in 0..scale.images {
        digests.push(image_key(i));
        digests.push(manifest_digest(i));
    }
    digests.extend((0..scale.extra()).map(extra_digest));
    for alg in Algorithm::ALL {
        for shard in 0..=255u8 {
            let d = dir
                .join("blobs")
                .join(alg.name())
                .join(format!("{shard:02x}"));
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
    }
    for d in digests {
        let path = blob_path(dir, &d);
        File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    }
}

/// The bench store, built on first use.
fn bench_store(scale: &Scale) -> PathBuf {
    let dir = common::bench_dir().join(format!("bench-store-{}-{}", scale.images, scale.blobs));
    if dir.exists() {
        return dir;
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).expect("remove half-built store");
    }
    let start = Instant::now();
    drop(Store::open(&partial).expect("create bench store"));
    fill_index(&partial, scale).expect("fill bench index");
    eprintln!(
        "filled index of {} ({} images, {} blobs, {} garbage) in {:.1?}",
        dir.display(),
        scale.images,
        scale.blobs,
        scale.garbage,
        start.elapsed()
    );
    if scale.tree {
        let start = Instant::now();
        fill_tree(&partial, scale);
        eprintln!(
            "created {} blob files in {:.1?}",
            scale.live(),
            start.elapsed()
        );
    }
    fs::rename(&partial, &dir).expect("publish bench store");
    dir
}

/// A bare 12-digit prefix of a random image's key, as a user would paste it.
fn prefixes(scale: &Scale, n: usize) -> Vec<String> {
    let mut rng = Rng::new(2);
    (0..n)
        .map(|_| image_key(rng.below(scale.images)).hex()[..12].to_string())
        .collect()
}

fn names(scale: &Scale, n: usize) -> Vec<String> {
    let mut rng = Rng::new(3);
    (0..n)
        .map(|_| image_name(scale, rng.below(scale.images)))
        .collect()
}

fn tags(scale: &Scale, n: usize) -> Vec<String> {
    let mut rng = Rng::new(4);
    (0..n)
        .map(|_| {
            let i = rng.below(scale.images);
            format!("{}:1.{}.0", image_name(scale, i), image_version(scale, i))
        })
        .collect()
}

fn keys(scale: &Scale, n: usize) -> Vec<Digest> {
    let mut rng = Rng::new(5);
    (0..n).map(|_| image_key(rng.below(scale.images))).collect()
}

/// Labels that half the images of a name carry.
fn amd64() -> Vec<Label> {
    vec![Label::new("os", "linux"), Label::new("arch", "amd64")]
}

/// The tag the `tag` benchmarks move around: 1000 of them, so that most
/// calls update an existing tag and some create one.
fn moving_tag(i: usize) -> String {
    format!("bench.example.com/moving:t{}", i % 1000)
}

fn print_tail_latencies(store: &Store, scale: &Scale) {
    let calls = if common::benchmarking() { 10_000 } else { 100 };
    let prefixes = prefixes(scale, calls);
    let names = names(scale, calls);
    let tags = tags(scale, calls);
    let keys = keys(scale, calls);
    common::print_percentiles("resolve key prefix", calls, |i| {
        black_box(store.resolve(&prefixes[i]).expect("resolve prefix"));
    });
    common::print_percentiles("resolve NAME:TAG", calls, |i| {
        black_box(store.resolve(&tags[i]).expect("resolve tag"));
    });
    common::print_percentiles("latest name", calls, |i| {
        black_box(store.latest(&names[i], &[]).expect("latest"));
    });
    common::print_percentiles("latest name os,arch", calls, |i| {
        black_box(
            store
                .latest(&names[i], &amd64())
                .expect("latest with labels"),
        );
    });
    common::print_percentiles("images --name", calls, |i| {
        black_box(store.images(Some(&names[i]), &[]).expect("images"));
    });
    common::print_percentiles("tag", calls, |i| {
        store.tag(&keys[i], &moving_tag(i), None).expect("tag");
    });
}

fn lookup(c: &mut Criterion) {
    let scale = Scale::from_env();
    let dir = bench_store(&scale);
    let store = Store::open(&dir).expect("open bench store");
    print_tail_latencies(&store, &scale);

    const N: usize = 4096;
    let prefixes = prefixes(&scale, N);
    let names = names(&scale, N);
    let tags = tags(&scale, N);
    let keys = keys(&scale, N);
    let mut group = c.benchmark_group("lookup");

    let mut i = 0;
    let mut next = || {
        i = (i + 1) % N;
        i
    };
    group.bench_function("resolve/key_prefix", |b| {
        b.iter(|| store.resolve(&prefixes[next()]).expect("resolve prefix"))
    });
    group.bench_function("resolve/sha512_prefix", |b| {
        b.iter(|| {
            store
                .resolve(&format!("sha512-{}", prefixes[next()]))
                .expect("resolve prefix")
        })
    });
    group.bench_function("resolve/tag", |b| {
        b.iter(|| store.resolve(&tags[next()]).expect("resolve tag"))
    });
    group.bench_function("resolve/name_labels", |b| {
        b.iter(|| {
            store
                .resolve(&format!("{},os=linux,arch=amd64", names[next()]))
                .expect("resolve name")
        })
    });
    group.bench_function("latest/name", |b| {
        b.iter(|| store.latest(&names[next()], &[]).expect("latest"))
    });
    group.bench_function("latest/name_os_arch", |b| {
        b.iter(|| store.latest(&names[next()], &amd64()).expect("latest"))
    });
    group.bench_function("latest/name_version", |b| {
        b.iter(|| {
            store
                .latest(&names[next()], &[Label::new("version", "1.7.0")])
                .expect("latest")
        })
    });
    group.bench_function("images/name", |b| {
        b.iter(|| store.images(Some(&names[next()]), &[]).expect("images"))
    });
    group.bench_function("tag", |b| {
        b.iter(|| {
            let i = next();
            store.tag(&keys[i], &moving_tag(i), None).expect("tag")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("listing");
    group.sample_size(10);
    group.bench_function("images/all", |b| {
        b.iter(|| store.images(None, &[]).expect("images"))
    });
    group.finish();

    gc(c, &dir, &scale);
}

/// gc of a tenth of the blobs, on a fresh copy of the index each time. The
/// copy shares the (read-only for gc) blob tree through a symlink: gc walks
/// it and finds every file named, and the garbage has no files.
fn gc(c: &mut Criterion, dir: &Path, scale: &Scale) {
    let copies = common::bench_dir().join("bench-gc-copies");
    fs::create_dir_all(&copies).expect("create gc copies directory");
    let mut group = c.benchmark_group("gc");
    group.sample_size(10);
    group.bench_function(
        format!("remove_{}_of_{}_blobs", scale.garbage, scale.blobs),
        |b| {
            b.iter_batched(
                || {
                    let tmp = tempfile::tempdir_in(&copies).expect("temp store");
                    for file in ["index.db", "index.db-wal"] {
                        let from = dir.join(file);
                        if from.exists() {
                            fs::copy(&from, tmp.path().join(file)).expect("copy index");
                        }
                    }
                    std::os::unix::fs::symlink(dir.join("blobs"), tmp.path().join("blobs"))
                        .expect("link blob tree");
                    let store = Store::open(tmp.path()).expect("open copy");
                    (tmp, store)
                },
                |(tmp, store)| {
                    let report = store.gc(&GcOptions::default()).expect("gc");
                    assert_eq!(report.blobs, scale.garbage);
                    assert_eq!(report.orphans, 0);
                    (tmp, store)
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
