//! Importing docker archives: skopeo's form (manifest.json + legacy links),
//! the current form (OCI layout + manifest.json), the legacy form
//! (repositories + `<id>/json` chains), compressed or not, and bad input.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use builder::{DockerArchive, LayerCompression, Layout};
use common::{compress, inspect, label, noise, store, write_file};
use imgstore::Compression;
use serde_json::{Value, json};

const LAYERS: [&[(&str, &[u8])]; 2] = [&[("etc/a", b"first")], &[("etc/b", b"second")]];

#[test]
fn imports_skopeo_docker_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = DockerArchive::new("example.com/app:1.0", &LAYERS);
    let tar = archive.tar();
    let s = store();
    let mut keys = Vec::new();
    for (name, how) in [
        ("d.tar", Compression::None),
        ("d.tar.gz", Compression::Gzip),
        ("d.tar.zst", Compression::Zstd),
    ] {
        let path = write_file(tmp.path(), name, &compress(&tar, how));
        keys.push(s.ok(&["import", path.to_str().unwrap()]).trim().to_string());
        let forced = s.ok(&["import", "--format", "docker", path.to_str().unwrap()]);
        assert_eq!(forced.trim(), keys[0]);
    }
    assert!(
        keys.iter().all(|k| k == &keys[0]),
        "one key whatever the compression: {keys:?}"
    );
    let key = &keys[0];
    let info = inspect(&s, key);
    assert_eq!(info["name"], "example.com/app");
    assert_eq!(label(&info, "version"), Some("1.0"));
    assert_eq!(label(&info, "arch"), Some("amd64"));
    assert_eq!(label(&info, "from"), Some("docker"));
    assert_eq!(
        s.ok(&[
            "latest",
            "example.com/app",
            "--label",
            "arch=amd64",
            "--full"
        ])
        .trim(),
        key
    );

    // The generated manifest names the config and the layers as stored,
    // and each plain layer's diff_id is recorded (it is its digest).
    let manifest: Value = serde_json::from_str(&s.ok(&["manifest", key])).unwrap();
    assert_eq!(manifest["mediaType"], builder::MANIFEST);
    assert_eq!(manifest["config"]["digest"], archive.config);
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, archive.layers);
    for blob in info["blobs"].as_array().unwrap() {
        if archive.layers.iter().any(|l| blob["digest"] == *l) {
            assert_eq!(blob["diff_id"], blob["digest"]);
            assert_eq!(blob["media_type"], builder::LAYER);
        }
    }
}

#[test]
fn imports_the_current_form_by_its_real_manifest() {
    // docker 25+: an OCI layout plus manifest.json; the index has no name,
    // manifest.json's RepoTags gives it.
    let mut layout = Layout::new();
    let built = layout.image("sha256", "arm64", &LAYERS, LayerCompression::None, &[]);
    layout.index.push(built.desc.clone());
    let mut files = layout.all_files();
    let layers: Vec<String> = built.layers.iter().map(|d| Layout::blob_path(d)).collect();
    let manifest = json!([{ "Config": Layout::blob_path(&built.config), "RepoTags": ["busybox:latest"], "Layers": layers }]);
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "current.tar", &builder::tar_of(&files));
    let s = store();
    assert_eq!(
        s.ok(&["import", "--verify-layers", path.to_str().unwrap()])
            .trim(),
        built.manifest
    );
    let info = inspect(&s, &built.manifest);
    assert_eq!(info["name"], "busybox");
    assert_eq!(label(&info, "version"), Some("latest"));
    assert_eq!(label(&info, "arch"), Some("arm64"));
}

#[test]
fn imports_the_legacy_form() {
    let mut files = std::collections::BTreeMap::new();
    let base = format!("{:064x}", 0xa);
    let top = format!("{:064x}", 0xb);
    let base_tar = builder::layer_tar(LAYERS[0]);
    let top_tar = builder::layer_tar(LAYERS[1]);
    files.insert(format!("{base}/layer.tar"), base_tar.clone());
    files.insert(
        format!("{base}/json"),
        format!(r#"{{"id":"{base}","os":"linux"}}"#).into_bytes(),
    );
    files.insert(format!("{top}/layer.tar"), top_tar.clone());
    files.insert(
        format!("{top}/json"),
        format!(r#"{{"id":"{top}","parent":"{base}","architecture":"amd64","os":"linux","config":{{"Labels":{{"old":"yes"}}}}}}"#)
            .into_bytes(),
    );
    files.insert(
        "repositories".into(),
        format!(r#"{{"oldapp":{{"7":"{top}"}}}}"#).into_bytes(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "legacy.tar", &builder::tar_of(&files));
    let s = store();
    let key = s.ok(&["import", path.to_str().unwrap()]).trim().to_string();
    assert_eq!(
        s.ok(&["import", path.to_str().unwrap()]).trim(),
        key,
        "the same archive, the same key"
    );
    let info = inspect(&s, &key);
    assert_eq!(info["name"], "oldapp");
    assert_eq!(label(&info, "version"), Some("7"));
    assert_eq!(label(&info, "arch"), Some("amd64"));
    assert_eq!(label(&info, "old"), Some("yes"));
    let manifest: Value = serde_json::from_str(&s.ok(&["manifest", &key])).unwrap();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        vec![builder::sha256(&base_tar), builder::sha256(&top_tar)]
    );
}

#[test]
fn detects_docker_archives_whose_metadata_comes_last() {
    // Layers larger than the format sniffer reads come before manifest.json.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let layers: [&[(&str, &[u8])]; 1] = [&[("big", &big)]];
    let archive = DockerArchive::new("big:1", &layers);
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "big.tar", &archive.tar());
    let s = store();
    let key = s.ok(&["import", path.to_str().unwrap()]);
    assert_eq!(s.ok(&["resolve", "big:1"]), key);

    // The current form, blobs first: read as the OCI layout it is, named
    // by manifest.json since the index names nothing.
    let mut layout = Layout::new();
    let built = layout.image("sha256", "amd64", &layers, LayerCompression::None, &[]);
    layout.index.push(built.desc.clone());
    let mut files = layout.all_files();
    let manifest = json!([{ "Config": Layout::blob_path(&built.config), "RepoTags": ["big:2"], "Layers": [Layout::blob_path(&built.layers[0])] }]);
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    );
    let path = write_file(tmp.path(), "current.tar", &builder::tar_of(&files));
    assert_eq!(
        s.ok(&["import", path.to_str().unwrap()]).trim(),
        built.manifest
    );
    assert_eq!(s.ok(&["resolve", "big:2"]).trim(), built.manifest);
}

/// Fails an import, checks the error names the input and the problem, and
/// that the store did not change.
fn rejects(tar: &[u8], expect: &str, args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "bad-docker.tar", tar);
    let s = store();
    let before = s.snapshot();
    let mut all = vec!["import", "--format", "docker"];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    let err = s.fails(&all);
    assert!(
        err.contains(expect) && err.contains("bad-docker.tar"),
        "expected {expect:?} in {err:?}"
    );
    assert_eq!(before, s.snapshot(), "store changed after {err}");
}

#[test]
fn refuses_a_directory_forced_to_docker() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let err = s.fails(&["import", "--format", "docker", tmp.path().to_str().unwrap()]);
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn rejects_bad_manifest_json() {
    let mut a = DockerArchive::new("app:1", &LAYERS);
    a.files.insert("manifest.json".into(), b"null".to_vec());
    rejects(&a.tar(), "manifest.json is null", &[]);

    let mut a = DockerArchive::new("app:1", &LAYERS);
    a.files.insert("manifest.json".into(), b"[]".to_vec());
    rejects(&a.tar(), "manifest.json lists no image", &[]);

    let mut a = DockerArchive::new("app:1", &LAYERS);
    let m: Value = serde_json::from_slice(&a.files["manifest.json"]).unwrap();
    let mut bad = m.clone();
    bad[0]["Layers"][0] = "../../etc/passwd".into();
    a.files
        .insert("manifest.json".into(), serde_json::to_vec(&bad).unwrap());
    rejects(&a.tar(), "'..'", &[]);

    let mut bad = m.clone();
    bad[0]["Config"] = "/etc/passwd".into();
    a.files
        .insert("manifest.json".into(), serde_json::to_vec(&bad).unwrap());
    rejects(&a.tar(), "absolute", &[]);

    let mut bad = m.clone();
    bad[0]["Layers"][1] = "missing.tar".into();
    a.files
        .insert("manifest.json".into(), serde_json::to_vec(&bad).unwrap());
    rejects(&a.tar(), "does not hold", &[]);

    let mut bad = m;
    bad[0]["Layers"].as_array_mut().unwrap().pop();
    a.files
        .insert("manifest.json".into(), serde_json::to_vec(&bad).unwrap());
    rejects(&a.tar(), "1 layers but its config lists 2 diff_ids", &[]);
}

/// Swaps the first layer of an archive for other bytes under a name that
/// claims no digest (a legacy `<id>/layer.tar`).
fn replace_first_layer(a: &mut DockerArchive, bytes: Vec<u8>) {
    let mut m: Value = serde_json::from_slice(&a.files["manifest.json"]).unwrap();
    let first = m[0]["Layers"][0].as_str().unwrap().to_string();
    a.files.remove(&first);
    a.links.clear();
    a.files.insert("custom/layer.tar".into(), bytes);
    m[0]["Layers"][0] = "custom/layer.tar".into();
    a.files
        .insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
}

#[test]
fn rejects_diff_id_mismatches_and_truncation() {
    // A layer whose bytes are not what the config's diff_id says.
    let mut a = DockerArchive::new("app:1", &LAYERS);
    replace_first_layer(&mut a, builder::layer_tar(&[("etc/a", b"tampered")]));
    rejects(&a.tar(), "the config's rootfs.diff_ids says", &[]);

    // A layer whose name says another digest than its bytes have.
    let mut a = DockerArchive::new("app:1", &LAYERS);
    let first = a.layers[0].strip_prefix("sha256:").unwrap().to_string();
    a.files.insert(
        format!("{first}.tar"),
        builder::layer_tar(&[("etc/a", b"tampered")]),
    );
    rejects(&a.tar(), "it is named by", &[]);

    // A gzip layer cut short, with --verify-layers.
    let mut a = DockerArchive::new("app:1", &LAYERS);
    let gz = builder::gzip(&builder::layer_tar(LAYERS[0]));
    replace_first_layer(&mut a, gz[..gz.len() - 10].to_vec());
    rejects(&a.tar(), "data is truncated", &["--verify-layers"]);

    // The archive cut short.
    let tar = DockerArchive::new("app:1", &LAYERS).tar();
    rejects(&tar[..tar.len() - 1024], "truncated", &[]);
    rejects(&tar[..1000], "bad-docker.tar", &[]);
}

#[test]
fn a_plain_archive_is_staged_in_parallel_with_the_same_checks() {
    // A plain archive on disk is read by seeking, its layers staged on
    // several threads; a compressed one streams. Both must give the same
    // image and refuse the same damage.
    let (a, b, c) = (noise(3 << 20, 1), noise(2 << 20, 2), noise(5 << 20, 3));
    let layers: [&[(&str, &[u8])]; 3] = [&[("a", &a)], &[("b", &b)], &[("c", &c)]];
    let archive = DockerArchive::new("example.com/big:1", &layers);
    let tar = archive.tar();
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let plain = write_file(tmp.path(), "big.tar", &tar);
    let key = s
        .ok(&["import", plain.to_str().unwrap()])
        .trim()
        .to_string();
    for layer in &archive.layers {
        let bytes = s.cmd(&["cat", layer]).output().unwrap();
        assert!(bytes.status.success(), "layer {layer} must read back");
        assert_eq!(&builder::sha256(&bytes.stdout), layer);
    }
    let fresh = store();
    let gz = write_file(tmp.path(), "big.tar.gz", &compress(&tar, Compression::Gzip));
    assert_eq!(fresh.ok(&["import", gz.to_str().unwrap()]).trim(), key);

    // Zero padding after the end blocks (tar pads to whole records) is
    // fine; anything else after them, or a cut inside a layer, is not.
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0u8; 10240]);
    let path = write_file(tmp.path(), "padded.tar", &padded);
    assert_eq!(store().ok(&["import", path.to_str().unwrap()]).trim(), key);
    let mut junk = tar.clone();
    junk.extend_from_slice(b"junk after the end");
    rejects(&junk, "truncated", &[]);
    rejects(&tar[..tar.len() / 2], "truncated", &[]);
    rejects(&tar[..tar.len() - 1536], "truncated", &[]);
}
