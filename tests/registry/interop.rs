//! Interop with skopeo both ways, through a real registry: what skopeo
//! pushes, imgstore pulls with the digests skopeo reports, named and tagged
//! so that `resolve REF` and `latest HOST/REPO` find it, and recorded as an
//! import of the same layout would be; what imgstore pushes, skopeo copies
//! back out byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use testkit::Registry;

use crate::common::{self, TestStore};
use crate::support::{
    Env, host_arch, image_layout, sha256, skopeo, skopeo_digest, skopeo_push, skopeo_raw,
    two_platform_layout,
};

/// Every blob file of a layout directory, by path.
fn layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for alg in std::fs::read_dir(dir.join("blobs")).unwrap() {
        let alg = alg.unwrap().path();
        for blob in std::fs::read_dir(&alg).unwrap() {
            let blob = blob.unwrap().path();
            let name = blob.strip_prefix(dir).unwrap().display().to_string();
            out.insert(name, std::fs::read(&blob).unwrap());
        }
    }
    out
}

fn inspect(env: &Env, key: &str) -> Value {
    common::inspect(&env.store, key)
}

/// The blobs `inspect` lists, as (digest, size, media type), sorted.
fn closure(store: &TestStore, key: &str) -> Vec<(String, u64, String)> {
    let v = common::inspect(store, key);
    let mut blobs: Vec<(String, u64, String)> = v["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
                b["media_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    blobs.sort();
    blobs
}

#[test]
fn skopeo_pushes_an_image_that_imgstore_pulls_with_its_digests() {
    let registry = Registry::start();
    let env = Env::new();
    let (dir, _layout, built) = image_layout(1, 64 * 1024);
    let host = registry.host();
    let reference = format!("{host}/interop/one:v1");
    skopeo_push(dir.path(), "v1", &reference);
    let digest = skopeo_digest(&reference);
    assert_eq!(digest, built.manifest, "skopeo kept the manifest as built");

    let pulled = env.pull_json(&[&reference]);
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0]["image"]["key"], digest.as_str());
    assert_eq!(pulled[0]["reference"], reference.as_str());
    assert_eq!(pulled[0]["unchanged"], false);
    assert_eq!(pulled[0]["blobs_downloaded"], 3, "config and two layers");

    // Found the ways DESIGN.md §5 promises.
    assert_eq!(env.ok(&["resolve", &reference]).trim(), digest);
    let name = format!("{host}/interop/one");
    assert_eq!(env.ok(&["latest", &name]).trim(), digest);
    let v = inspect(&env, &digest);
    assert_eq!(v["name"], name.as_str());
    assert_eq!(common::label(&v, "version"), Some("v1"));
    assert_eq!(common::label(&v, "arch"), Some("amd64"));
    assert_eq!(common::label(&v, "maintainer"), Some("registry tests"));
    assert_eq!(v["tags"][0], reference.as_str());

    // Byte for byte: the manifest, and every blob.
    let manifest = env.ok(&["manifest", &digest]);
    assert_eq!(sha256(manifest.as_bytes()), digest);
    for blob in std::iter::once(&built.config).chain(&built.layers) {
        let out = env.cmd(&["cat", blob]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(sha256(&out.stdout), *blob);
    }

    // The remote row fetch uses, so that `remotes` lists pulls.
    let remotes: Value = serde_json::from_str(&env.ok(&["remotes", "--json"])).unwrap();
    let remote = &remotes[0];
    assert_eq!(
        remote["url"],
        format!("http://{host}/v2/interop/one/manifests/v1").as_str()
    );
    assert_eq!(remote["blob"], digest.as_str());
    assert_eq!(remote["image"], digest.as_str());

    // Recorded as an import of the same layout is (names aside).
    let imported = common::store();
    imported.ok(&["import", dir.path().to_str().unwrap()]);
    assert_eq!(closure(&imported, &digest), closure(&env.store, &digest));
    env.ok(&["fsck", "--layers"]);

    // --verify-layers: each layer's diff_id, computed as it arrived, is
    // checked against the config and recorded.
    let verified = Env::new();
    verified.pull_json(&["--verify-layers", &reference]);
    let v = inspect(&verified, &digest);
    for layer in &built.layers {
        let row = v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == layer.as_str())
            .unwrap();
        assert!(row["diff_id"].is_string(), "{row}");
    }
}

#[test]
fn a_two_platform_index_pulls_one_platform_or_all_of_them() {
    let registry = Registry::start();
    let (dir, _layout, index, amd64, arm64) = two_platform_layout(2);
    let host = registry.host();
    let reference = format!("{host}/multi/app:v2");
    skopeo_push(dir.path(), "multi", &reference);
    let raw = skopeo_raw(&reference);
    assert_eq!(sha256(raw.as_bytes()), index);
    // What skopeo reads from the registry: the index, and what it lists.
    let listed: Value = serde_json::from_str(&raw).unwrap();
    let by_arch = |arch: &str| {
        listed["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(by_arch("arm64"), arm64.manifest);
    assert_eq!(by_arch("amd64"), amd64.manifest);
    let name = format!("{host}/multi/app");

    // The host's platform by default, another with --platform: the tag
    // follows the last pull.
    let env = Env::new();
    let native = if host_arch() == "arm64" {
        &arm64
    } else {
        &amd64
    };
    let pulled = env.pull_json(&[&reference]);
    assert_eq!(pulled[0]["image"]["key"], native.manifest.as_str());
    assert_eq!(pulled[0]["images"].as_array().unwrap().len(), 1);
    let pulled = env.pull_json(&["--platform", "linux/arm64", &reference]);
    assert_eq!(pulled[0]["image"]["key"], arm64.manifest.as_str());
    let v = inspect(&env, &arm64.manifest);
    assert_eq!(common::label(&v, "arch"), Some("arm64"));
    assert_eq!(common::label(&v, "variant"), Some("v8"));
    assert_eq!(common::label(&v, "version"), Some("v2"));
    assert_eq!(env.ok(&["resolve", &reference]).trim(), arm64.manifest);
    let err = env.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(
        err.contains("no image for linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );

    // --all-platforms keeps the index and both images, as import does.
    let all = Env::new();
    let pulled = all.pull_json(&["--all-platforms", &reference]);
    assert_eq!(pulled[0]["image"]["key"], index.as_str());
    let keys: Vec<&str> = pulled[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2], index, "the index after its platforms");
    assert_eq!(all.ok(&["latest", &name]).trim(), index);
    assert_eq!(
        all.ok(&["latest", &name, "--label", "arch=arm64"]).trim(),
        arm64.manifest
    );
    assert_eq!(all.ok(&["resolve", &reference]).trim(), index);
    let imported = common::store();
    imported.ok(&["import", dir.path().to_str().unwrap()]);
    for key in [&index, &amd64.manifest, &arm64.manifest] {
        assert_eq!(closure(&imported, key), closure(&all.store, key), "{key}");
    }
}

#[test]
fn imgstore_pushes_images_that_skopeo_reads_back_byte_for_byte() {
    let registry = Registry::start();
    let host = registry.host();
    let env = Env::new();
    let (dir, _layout, built) = image_layout(3, 32 * 1024);
    env.ok(&["import", dir.path().to_str().unwrap()]);
    let reference = format!("{host}/pushed/one:v1");
    assert_eq!(
        env.ok(&["push", &built.manifest, &reference]).trim(),
        built.manifest
    );
    assert_eq!(skopeo_digest(&reference), built.manifest);
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:v1", copy.display()),
    ]);
    assert_eq!(layout_blobs(&copy), layout_blobs(dir.path()));

    // A multi-platform set: the index goes last, every byte as stored.
    let (multi, _layout, index, _, _) = two_platform_layout(4);
    env.ok(&["import", multi.path().to_str().unwrap()]);
    let reference = format!("{host}/pushed/multi:v2");
    let pushed: Value =
        serde_json::from_str(&env.ok(&["push", "--json", &index, &reference])).unwrap();
    assert_eq!(pushed["key"], index.as_str());
    assert_eq!(pushed["manifests"], 3);
    assert_eq!(pushed["blobs_uploaded"], 4, "two configs, two layers");
    let raw = skopeo_raw(&reference);
    assert_eq!(sha256(raw.as_bytes()), index);
    let copy = out.path().join("multi");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:v2", copy.display()),
    ]);
    assert_eq!(layout_blobs(&copy), layout_blobs(multi.path()));
}
