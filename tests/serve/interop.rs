//! Real clients against `imgstore serve`: skopeo copies out of it into OCI
//! layouts and pushes into it, one image and a multi-platform index whole
//! (`--all`); containerd pulls from it. Digests are the store's keys and
//! blobs are byte for byte the store's files.

use std::path::Path;

use serde_json::Value;
use testkit::Containerd;

use crate::builder::{self as oci, LayerCompression, Layout};
use crate::common::{self, TestStore, run};
use crate::server::{Served, skopeo, upload_files};
use crate::{import_layout, multi_platform, simple_image};

/// The digest of the one manifest an OCI layout's index.json lists.
fn layout_top(dir: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every blob of a layout equals the store's file of that digest, and the
/// layout holds every blob of the store's image `key`.
fn assert_blobs_are_the_stores(store: &TestStore, dir: &Path, key: &str) {
    let blobs = dir.join("blobs/sha256");
    let mut copied = 0;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let digest: imgstore::Digest =
            format!("sha256:{}", path.file_name().unwrap().to_str().unwrap())
                .parse()
                .unwrap();
        let stored = common::blob_file(store.path(), &digest);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&stored).unwrap_or_else(|e| panic!("{}: {e}", stored.display())),
            "{digest}"
        );
        copied += 1;
    }
    let inspect = common::inspect(store, key);
    let needed = inspect["blobs"].as_array().unwrap();
    for blob in needed {
        let digest = blob["digest"].as_str().unwrap();
        assert!(
            blobs.join(&digest["sha256:".len()..]).is_file(),
            "{digest} was not copied"
        );
    }
    assert_eq!(copied, needed.len());
}

#[test]
fn skopeo_copies_images_out_with_the_stores_digests_and_bytes() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/app:1.0", &common::noise(200_000, 1));
    let (layout, index, _) = multi_platform("example.com/multi:2", 2);
    import_layout(&store, &layout);
    let served = Served::start(&store, &[]);
    let out = tempfile::tempdir().unwrap();

    let one = out.path().join("one");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/example.com/app:1.0", served.host()),
        &format!("oci:{}:1.0", one.display()),
    ]);
    assert_eq!(layout_top(&one), built.manifest);
    assert_blobs_are_the_stores(&store, &one, &built.manifest);

    let all = out.path().join("all");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/example.com/multi:2", served.host()),
        &format!("oci:{}:2", all.display()),
    ]);
    assert_eq!(layout_top(&all), index);
    assert_blobs_are_the_stores(&store, &all, &index);

    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/example.com/multi:2", served.host()),
    ]);
    assert_eq!(oci::sha256(raw.as_bytes()), index);
    let tags: Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/example.com/multi", served.host()),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["2"]));
}

#[test]
fn skopeo_pushes_images_in_and_the_store_lists_them_whole() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let dir = tempfile::tempdir().unwrap();

    let mut single = Layout::new();
    let built = single.image(
        "sha256",
        "amd64",
        &[
            &[("etc/one", &common::noise(150_000, 3)[..])],
            &[("etc/two", b"second layer")],
        ],
        LayerCompression::Gzip,
        &[("org.example.pushed", "by-skopeo")],
    );
    single.index.push(oci::named(built.desc.clone(), "v1"));
    let single_dir = dir.path().join("single");
    single.write_dir(&single_dir);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", single_dir.display()),
        &format!("docker://{}/pushed/one:v1", served.host()),
    ]);

    let (multi, index, platforms) = multi_platform("2", 4);
    let multi_dir = dir.path().join("multi");
    multi.write_dir(&multi_dir);
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:2", multi_dir.display()),
        &format!("docker://{}/pushed/multi:2", served.host()),
    ]);

    assert_eq!(
        store.ok(&["resolve", "pushed/one:v1"]).trim(),
        built.manifest
    );
    assert_eq!(store.ok(&["resolve", "pushed/multi:2"]).trim(), index);
    let info = common::inspect(&store, "pushed/one:v1");
    assert_eq!(
        common::label(&info, "org.example.pushed"),
        Some("by-skopeo")
    );
    assert_eq!(common::label(&info, "version"), Some("v1"));
    let images: Value = serde_json::from_str(&store.ok(&["images", "--json"])).unwrap();
    let mut listed: Vec<(String, String)> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        ("pushed/multi".to_string(), index.clone()),
        ("pushed/multi".to_string(), platforms[0].manifest.clone()),
        ("pushed/multi".to_string(), platforms[1].manifest.clone()),
        ("pushed/one".to_string(), built.manifest.clone()),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    for platform in &platforms {
        let arch = common::inspect(&store, &platform.manifest);
        assert!(common::label(&arch, "arch").is_some());
    }
    // Every blob is in the store, byte for byte as pushed.
    for (name, bytes) in single.all_files().iter().chain(multi.all_files().iter()) {
        let Some(hex) = name.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let digest: imgstore::Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(
            &std::fs::read(common::blob_file(store.path(), &digest)).unwrap(),
            bytes,
            "{digest}"
        );
    }
    assert!(upload_files(store.path()).is_empty());
    store.ok(&["fsck"]);

    // And it all comes back out.
    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/pushed/multi:2", served.host()),
        &format!("oci:{}:2", back.display()),
    ]);
    assert_eq!(layout_top(&back), index);
    assert_blobs_are_the_stores(&store, &back, &index);
}

#[test]
fn containerd_pulls_one_image_and_a_whole_index() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/ctr:1", &common::noise(100_000, 5));
    let (layout, index, platforms) = multi_platform("example.com/ctrmulti:2", 6);
    import_layout(&store, &layout);
    let served = Served::start(&store, &[]);
    let containerd = Containerd::start();

    let one = format!("{}/example.com/ctr:1", served.host());
    run(containerd.ctr_in("x").args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &one,
    ]));
    let multi = format!("{}/example.com/ctrmulti:2", served.host());
    run(containerd.ctr_in("x").args([
        "images",
        "pull",
        "--plain-http",
        "--all-platforms",
        "--snapshotter",
        "native",
        &multi,
    ]));
    let listed = run(containerd.ctr_in("x").args(["images", "ls"]));
    let digest_of = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_else(|| panic!("{name} not in:\n{listed}"))
            .to_string()
    };
    assert_eq!(digest_of(&one), built.manifest);
    assert_eq!(digest_of(&multi), index);
    let content = run(containerd.ctr_in("x").args(["content", "ls", "-q"]));
    let info = common::inspect(&store, &index);
    for blob in info["blobs"].as_array().unwrap() {
        let digest = blob["digest"].as_str().unwrap();
        assert!(content.lines().any(|l| l == digest), "{digest} not pulled");
    }
    for platform in &platforms {
        assert!(content.lines().any(|l| l == platform.manifest));
    }
}
