//! Exporting images as OCI image layouts: byte-identical blobs, names in
//! index.json, round trips, several images in one layout.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::path::Path;

use builder::{LayerCompression, Layout, desc, named};
use common::{AciBuilder, store, write_file};
use serde_json::Value;

fn read_index(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

#[test]
fn round_trips_a_layout_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("example.com/app:1.0", b"round trip");
    let src = tmp.path().join("src");
    layout.write_dir(&src);
    let s = store();
    s.ok(&["import", src.to_str().unwrap()]);

    let out = tmp.path().join("out");
    s.ok(&[
        "export",
        "example.com/app:1.0",
        "--oci",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    for (name, bytes) in &layout.files {
        if name.starts_with("blobs/") {
            assert_eq!(&std::fs::read(out.join(name)).unwrap(), bytes, "{name}");
        }
    }
    let index = read_index(&out);
    assert_eq!(index["manifests"][0]["digest"], built.manifest);
    // Both naming conventions: the tag as ref.name (skopeo, umoci), the
    // full reference as containerd's name (ctr, podman load).
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "example.com/app:1.0"
    );
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    // Nothing but the layout is left next to it.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Into a fresh store: the same key, the same name.
    let s2 = store();
    assert_eq!(
        s2.ok(&["import", out.to_str().unwrap()]).trim(),
        built.manifest
    );
    assert_eq!(
        s2.ok(&["resolve", "example.com/app:1.0"]).trim(),
        built.manifest
    );
}

#[test]
fn exports_an_archive_and_several_images() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, a) = Layout::simple("one:1", b"one");
    let (two, b) = Layout::simple("two:2", b"two");
    let s = store();
    for (name, l) in [("one", &one), ("two", &two)] {
        let dir = tmp.path().join(name);
        l.write_dir(&dir);
        s.ok(&["import", dir.to_str().unwrap()]);
    }
    let archive = tmp.path().join("both.tar");
    s.ok(&["export", "one:1", "two", "--oci", archive.to_str().unwrap()]);
    let s2 = store();
    let keys = s2.ok(&["import", archive.to_str().unwrap()]);
    assert_eq!(
        keys.lines().collect::<Vec<_>>(),
        vec![a.manifest.as_str(), b.manifest.as_str()]
    );

    // An existing destination is refused, an empty directory accepted.
    let err = s.fails(&["export", "one:1", "--oci", archive.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    s.ok(&["export", "one:1", "--oci", empty.to_str().unwrap()]);
    assert_eq!(read_index(&empty)["manifests"].as_array().unwrap().len(), 1);
    let err = s.fails(&["export", "one:1", "--oci", empty.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn exports_a_multi_platform_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new();
    let amd = layout.image(
        "sha256",
        "amd64",
        &[&[("a", b"amd")]],
        LayerCompression::Gzip,
        &[],
    );
    let arm = layout.image(
        "sha256",
        "arm64",
        &[&[("a", b"arm")]],
        LayerCompression::Gzip,
        &[],
    );
    let index = builder::index_json(vec![amd.desc.clone(), arm.desc.clone()]);
    let index_digest = layout.blob("sha256", &index);
    layout.index.push(named(
        desc(builder::INDEX, &index_digest, index.len()),
        "multi:1",
    ));
    let src = tmp.path().join("src");
    layout.write_dir(&src);
    let s = store();
    s.ok(&["import", src.to_str().unwrap()]);
    let out = tmp.path().join("out");
    s.ok(&["export", &index_digest, "--oci", out.to_str().unwrap()]);
    for (name, bytes) in &layout.files {
        if name.starts_with("blobs/") {
            assert_eq!(&std::fs::read(out.join(name)).unwrap(), bytes, "{name}");
        }
    }
    assert_eq!(
        read_index(&out)["manifests"][0]["mediaType"],
        builder::INDEX
    );
}

#[test]
fn refuses_aci_images_and_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let aci = write_file(
        tmp.path(),
        "a.aci",
        &AciBuilder::image("example.com/aci", &[], b"x"),
    );
    let s = store();
    let key = s.ok(&["import", aci.to_str().unwrap()]);
    let out = tmp.path().join("out");
    let err = s.fails(&["export", key.trim(), "--oci", out.to_str().unwrap()]);
    assert!(err.contains("ACI"), "{err}");
    assert!(!out.exists());
    s.fails(&["export", "sha256:abcd", "--oci", out.to_str().unwrap()]);
    assert!(!out.exists());
}

#[test]
fn a_corrupt_blob_fails_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("app:1", b"will rot");
    let src = tmp.path().join("src");
    layout.write_dir(&src);
    let s = store();
    s.ok(&["import", src.to_str().unwrap()]);
    let hex = built.layers[0].strip_prefix("sha256:").unwrap();
    let blob = s.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    let len = std::fs::metadata(&blob).unwrap().len() as usize;
    std::fs::write(&blob, vec![0u8; len]).unwrap();
    for dest in ["out", "out.tar"] {
        let out = tmp.path().join(dest);
        let err = s.fails(&["export", "app:1", "--oci", out.to_str().unwrap()]);
        assert!(err.contains("corrupt") && err.contains(hex), "{err}");
        assert!(!out.exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "temp files left: {left:?}");
    }
}

#[test]
fn refuses_images_imported_without_their_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut layout, built) = Layout::simple("app:1", b"partial");
    layout.files.remove(&Layout::blob_path(&built.layers[0]));
    let src = tmp.path().join("src");
    layout.write_dir(&src);
    let s = store();
    s.ok(&["import", "--allow-missing", src.to_str().unwrap()]);
    let out = tmp.path().join("out");
    let err = s.fails(&["export", "app:1", "--oci", out.to_str().unwrap()]);
    assert!(
        err.contains(&built.layers[0]) && err.contains("--allow-missing"),
        "{err}"
    );
    assert!(!out.exists());
}
