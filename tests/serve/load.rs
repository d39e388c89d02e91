//! Sixteen pulls at once of an image of some 20 MB, while pushes, an
//! import and gcs run on the same store: every digest right, every push
//! published, the server's peak memory bounded.

use std::io::Read;
use std::time::Instant;

use crate::builder::{self as oci, LayerCompression, Layout};
use crate::common;
use crate::server::{Served, agent};
use crate::{import_layout, push_whole, to_push};

const PULLS: usize = 16;

/// Images pushed one after another while the pulls run.
const PUSHES: u64 = 4;

/// The server's peak resident memory may not pass this (issue 14).
const MAX_RSS_KIB: u64 = 64 * 1024;

/// Pulls an image as a client does: the manifest, then every blob, each
/// checked as it streams in against the bytes its digest names (those of
/// the layout the image came from: comparing costs less than hashing in a
/// debug build, and says the same).
fn pull(agent: &ureq::Agent, url: &str, name: &str, tag: &str, layout: &Layout) -> u64 {
    let mut manifest = agent
        .get(format!("{url}/v2/{name}/manifests/{tag}"))
        .header("Accept", oci::MANIFEST)
        .call()
        .expect("the manifest");
    assert_eq!(manifest.status(), 200);
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.body_mut().read_to_vec().unwrap()).unwrap();
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    let mut bytes = 0;
    for desc in descriptors {
        let digest = desc["digest"].as_str().unwrap();
        let expected = &layout.files[&Layout::blob_path(digest)];
        let mut response = agent
            .get(format!("{url}/v2/{name}/blobs/{digest}"))
            .call()
            .expect("a blob");
        assert_eq!(response.status(), 200, "{digest}");
        let mut reader = response.body_mut().with_config().limit(1 << 30).reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            let got = reader.read(&mut buf).expect("the blob's bytes");
            if got == 0 {
                break;
            }
            assert!(n + got <= expected.len(), "{digest}: too many bytes");
            assert!(
                buf[..got] == expected[n..n + got],
                "{digest}: wrong bytes at {n}"
            );
            n += got;
        }
        assert_eq!(n, expected.len(), "{digest}");
        bytes += n as u64;
    }
    bytes
}

#[test]
fn sixteen_pulls_at_once_beside_pushes_an_import_and_gc_stay_right_and_small() {
    let store = common::store();
    let mut layout = Layout::new();
    let big: Vec<Vec<u8>> = (0..3)
        .map(|i| common::noise(if i < 2 { 8 << 20 } else { 4 << 20 }, 100 + i))
        .collect();
    let built = layout.image(
        "sha256",
        "amd64",
        &[
            &[("a", &big[0][..])],
            &[("b", &big[1][..])],
            &[("c", &big[2][..])],
        ],
        LayerCompression::None,
        &[],
    );
    layout
        .index
        .push(oci::named(built.desc.clone(), "example.com/load:1"));
    import_layout(&store, &layout);
    // What the import beside the pulls brings in, and garbage for gc.
    let mut other = Layout::new();
    let other_image = other.image(
        "sha256",
        "amd64",
        &[&[("d", &common::noise(4 << 20, 200)[..])]],
        LayerCompression::None,
        &[],
    );
    other
        .index
        .push(oci::named(other_image.desc, "example.com/other:1"));
    let other_dir = tempfile::tempdir().unwrap();
    other.write_dir(other_dir.path());
    let (garbage, garbage_image) = Layout::simple("example.com/garbage:1", b"garbage");
    import_layout(&store, &garbage);
    store.ok(&["rm", &garbage_image.manifest]);

    let served = Served::start(&store, &[]);
    let url = served.url("");
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let pulls: Vec<_> = (0..PULLS)
            .map(|_| s.spawn(|| pull(&agent(), &url, "example.com/load", "1", &layout)))
            .collect();
        s.spawn(|| {
            store.ok(&["import", other_dir.path().to_str().unwrap()]);
        });
        s.spawn(|| {
            let agent = agent();
            for i in 0..PUSHES {
                push_whole(
                    &agent,
                    &url,
                    "pushed/load",
                    &format!("v{i}"),
                    &to_push(300 + i),
                );
            }
        });
        s.spawn(|| {
            for _ in 0..3 {
                store.ok(&["gc"]);
            }
        });
        pulls.into_iter().map(|p| p.join().unwrap()).sum()
    });
    let elapsed = started.elapsed();
    let peak = served.peak_rss_kib();
    eprintln!(
        "{PULLS} pulls, {} MiB in {elapsed:.2?} ({:.0} MiB/s); server peak RSS {} MiB",
        total >> 20,
        total as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        peak / 1024
    );
    let per_pull: u64 = std::iter::once(&built.config)
        .chain(&built.layers)
        .map(|d| layout.files[&Layout::blob_path(d)].len() as u64)
        .sum();
    assert_eq!(total, PULLS as u64 * per_pull);
    assert!(
        peak <= MAX_RSS_KIB,
        "server peak RSS {peak} KiB > {MAX_RSS_KIB} KiB"
    );
    store.ok(&["resolve", "example.com/other:1"]);
    for i in 0..PUSHES {
        let key = store.ok(&["resolve", &format!("pushed/load:v{i}")]);
        assert_eq!(key.trim(), to_push(300 + i).manifest_digest);
    }
    store.fails(&["resolve", &garbage_image.manifest]);
    store.ok(&["fsck"]);
}
