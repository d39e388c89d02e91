//! Importing OCI image layouts: directories and oci-archives (plain, gzip,
//! zstd), nested indexes, sha512, layer checks and every kind of bad input.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::path::Path;

use builder::{LayerCompression, Layout, desc, named};
use common::{TestStore, compress, inspect, label, noise, store, write_file};
use imgstore::Compression;

fn keys(out: &str) -> Vec<String> {
    out.lines().map(str::to_string).collect()
}

/// Whether `cat` can read a blob (verified) from the store.
fn has(s: &TestStore, digest: &str) -> bool {
    s.cmd(&["cat", digest]).output().unwrap().status.success()
}

fn dir_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn imports_a_layout_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("example.com/app:1.0", b"hello");
    let dir = tmp.path().join("layout");
    layout.write_dir(&dir);
    let s = store();
    let out = s.ok(&["import", dir_arg(&dir)]);
    assert_eq!(keys(&out), vec![built.manifest.clone()]);

    let info = inspect(&s, &built.manifest);
    assert_eq!(info["name"], "example.com/app");
    assert_eq!(info["format"], "oci");
    assert_eq!(label(&info, "version"), Some("1.0"));
    assert_eq!(label(&info, "arch"), Some("amd64"));
    assert_eq!(label(&info, "os"), Some("linux"));
    assert_eq!(label(&info, "maintainer"), Some("tests"));
    assert_eq!(info["blobs"].as_array().unwrap().len(), 3);

    let latest = s.ok(&[
        "latest",
        "example.com/app",
        "--label",
        "arch=amd64",
        "--full",
    ]);
    assert_eq!(latest.trim(), built.manifest);
    assert_eq!(
        s.ok(&["resolve", "example.com/app:1.0"]).trim(),
        built.manifest
    );
    let manifest = s.ok(&["manifest", &built.manifest]);
    assert_eq!(
        manifest.as_bytes(),
        &layout.files[&Layout::blob_path(&built.manifest)][..]
    );
}

#[test]
fn names_from_containerd_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut layout, built) = Layout::simple("latest", b"x");
    layout.index[0]["annotations"]["io.containerd.image.name"] =
        "docker.io/library/busybox:1.36".into();
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let s = store();
    s.ok(&["import", dir_arg(&dir)]);
    assert_eq!(
        s.ok(&["resolve", "docker.io/library/busybox:1.36"]).trim(),
        built.manifest
    );
}

#[test]
fn imports_oci_archives_plain_and_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("app:2", b"archived");
    let tar = layout.tar();
    let s = store();
    for (name, how) in [
        ("a.tar", Compression::None),
        ("a.tar.gz", Compression::Gzip),
        ("a.tar.zst", Compression::Zstd),
    ] {
        let path = write_file(tmp.path(), name, &compress(&tar, how));
        let out = s.ok(&["import", path.to_str().unwrap()]);
        assert_eq!(keys(&out), vec![built.manifest.clone()], "{name}");
        let forced = s.ok(&["import", "--format", "oci", path.to_str().unwrap()]);
        assert_eq!(keys(&forced), vec![built.manifest.clone()], "{name}");
    }
    assert_eq!(s.ok(&["images", "--json"]).matches("\"key\"").count(), 1);
}

#[test]
fn imports_every_platform_of_a_nested_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new();
    let amd = layout.image(
        "sha256",
        "amd64",
        &[&[("a", b"amd")]],
        LayerCompression::Gzip,
        &[],
    );
    let mut arm_desc;
    let arm = layout.image(
        "sha256",
        "arm64",
        &[&[("a", b"arm")]],
        LayerCompression::Zstd,
        &[],
    );
    arm_desc = arm.desc.clone();
    arm_desc["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = builder::index_json(vec![amd.desc.clone(), arm_desc]);
    let index_digest = layout.blob("sha256", &index);
    layout.index.push(named(
        desc(builder::INDEX, &index_digest, index.len()),
        "multi:3",
    ));
    let dir = tmp.path().join("multi");
    layout.write_dir(&dir);

    let s = store();
    let out = keys(&s.ok(&["import", dir_arg(&dir)]));
    assert_eq!(
        out,
        vec![
            amd.manifest.clone(),
            arm.manifest.clone(),
            index_digest.clone()
        ]
    );
    let arm_key = s.ok(&["latest", "multi", "--label", "arch=arm64", "--full"]);
    assert_eq!(arm_key.trim(), arm.manifest);
    assert_eq!(label(&inspect(&s, &arm.manifest), "variant"), Some("v8"));
    assert_eq!(label(&inspect(&s, &arm.manifest), "version"), Some("3"));
    assert_eq!(s.ok(&["latest", "multi", "--full"]).trim(), index_digest);
    // The index image holds all of it.
    assert_eq!(
        inspect(&s, &index_digest)["blobs"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    // gc keeps exactly the closure of what is named.
    s.ok(&["rm", &index_digest, &arm.manifest]);
    s.ok(&["gc", "--grace", "0s"]);
    assert!(has(&s, &amd.layers[0]));
    assert!(has(&s, &amd.config));
    assert!(has(&s, &amd.manifest));
    assert!(!has(&s, &arm.layers[0]));
    assert!(!has(&s, &arm.manifest));
    assert!(!has(&s, &index_digest));
}

#[test]
fn sha512_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new();
    let built = layout.image(
        "sha512",
        "amd64",
        &[&[("x", b"512")]],
        LayerCompression::Gzip,
        &[],
    );
    assert!(built.manifest.starts_with("sha512:"));
    layout.index.push(named(built.desc.clone(), "five:12"));
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let s = store();
    assert_eq!(
        keys(&s.ok(&["import", "--verify-layers", dir_arg(&dir)])),
        vec![built.manifest.clone()]
    );
    let archive = write_file(tmp.path(), "l.tar", &layout.tar());
    let s2 = store();
    assert_eq!(
        keys(&s2.ok(&["import", archive.to_str().unwrap()])),
        vec![built.manifest.clone()]
    );
    let info = inspect(&s, &built.manifest);
    let layer = info["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == built.layers[0])
        .unwrap();
    assert!(layer["diff_id"].as_str().unwrap().starts_with("sha512:"));
}

#[test]
fn reimport_reads_only_what_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("app:1", b"once");
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let s = store();
    s.ok(&["import", dir_arg(&dir)]);
    // Spoil the layer in the layout (same size): a re-import must not read
    // it, since the store has it already.
    let layer_path = dir.join(Layout::blob_path(&built.layers[0]));
    let len = std::fs::metadata(&layer_path).unwrap().len() as usize;
    std::fs::write(&layer_path, vec![b'x'; len]).unwrap();
    let before = s.snapshot();
    assert_eq!(
        keys(&s.ok(&["import", dir_arg(&dir)])),
        vec![built.manifest.clone()]
    );
    assert_eq!(before.files, s.snapshot().files, "nothing was rewritten");
    assert!(has(&s, &built.layers[0]));
}

#[test]
fn verify_layers_records_the_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, built) = Layout::simple("app:1", b"verified");
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let archive = write_file(
        tmp.path(),
        "l.tar.gz",
        &compress(&layout.tar(), Compression::Gzip),
    );
    for input in [dir.as_path(), archive.as_path()] {
        let s = store();
        s.ok(&["import", "--verify-layers", input.to_str().unwrap()]);
        let info = inspect(&s, &built.manifest);
        let layer = info["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == built.layers[0])
            .unwrap();
        let tar = builder::layer_tar(&[("etc/hello.txt", b"verified")]);
        assert_eq!(layer["diff_id"], builder::sha256(&tar));
    }
    // Without the flag the compressed layer is not decompressed, and no
    // pair is recorded.
    let s = store();
    s.ok(&["import", dir_arg(&dir)]);
    let info = inspect(&s, &built.manifest);
    let layer = info["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == built.layers[0])
        .unwrap();
    assert!(layer["diff_id"].is_null());
    // Verifying later fills the pair in, from the stored blob.
    s.ok(&["import", "--verify-layers", dir_arg(&dir)]);
    let info = inspect(&s, &built.manifest);
    let layer = info["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == built.layers[0])
        .unwrap();
    let tar = builder::layer_tar(&[("etc/hello.txt", b"verified")]);
    assert_eq!(layer["diff_id"], builder::sha256(&tar));
}

#[test]
fn unknown_media_types_and_extra_files_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut layout, built) = Layout::simple("app:1", b"x");
    // An artifact: unknown config and layer media types.
    let cfg = layout.blob("sha256", b"{}");
    let data = layout.blob("sha256", b"artifact bytes");
    let manifest = builder::manifest_json(
        desc("application/vnd.example.config+json", &cfg, 2),
        vec![desc("application/vnd.example.data", &data, 14)],
    );
    let m = layout.blob("sha256", &manifest);
    layout.index.push(named(
        desc(builder::MANIFEST, &m, manifest.len()),
        "artifact:1",
    ));
    // A descriptor of something that is neither index nor manifest.
    layout
        .index
        .push(desc("application/octet-stream", &data, 14));
    layout.files.insert("README.md".into(), b"extra".to_vec());
    layout
        .files
        .insert("blobs/sha256/not-a-digest".into(), b"extra".to_vec());
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let s = store();
    assert_eq!(
        keys(&s.ok(&["import", dir_arg(&dir)])),
        vec![built.manifest.clone(), m.clone()]
    );
    let archive = write_file(tmp.path(), "l.tar", &layout.tar());
    assert_eq!(
        keys(&s.ok(&["import", archive.to_str().unwrap()])),
        vec![built.manifest, m]
    );
}

#[test]
fn missing_blobs_need_allow_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut layout, built) = Layout::simple("app:1", b"gone");
    layout.files.remove(&Layout::blob_path(&built.layers[0]));
    let dir = tmp.path().join("l");
    layout.write_dir(&dir);
    let archive = write_file(tmp.path(), "l.tar", &layout.tar());
    let s = store();
    let before = s.snapshot();
    for input in [dir_arg(&dir), archive.to_str().unwrap()] {
        let err = s.fails(&["import", input]);
        assert!(
            err.contains(&built.layers[0]) && err.contains("--allow-missing"),
            "{err}"
        );
        assert_eq!(before, s.snapshot());
    }
    assert_eq!(
        keys(&s.ok(&["import", "--allow-missing", dir_arg(&dir)])),
        vec![built.manifest.clone()]
    );
    // A layout may leave blobs to the store that has them.
    let (full, _) = Layout::simple("app:1", b"gone");
    let full_dir = tmp.path().join("full");
    full.write_dir(&full_dir);
    let s2 = store();
    s2.ok(&["import", dir_arg(&full_dir)]);
    s2.ok(&["import", archive.to_str().unwrap()]);
}

/// Fails an import of a layout directory and of the same layout as a tar,
/// checks the error names the problem and the store did not change.
fn rejects(layout: &Layout, expect: &str, args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    layout.write_dir(&dir);
    let archive = write_file(tmp.path(), "bad.tar", &layout.tar());
    let s = store();
    let before = s.snapshot();
    for input in [dir_arg(&dir), archive.to_str().unwrap()] {
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        all.push(input);
        let err = s.fails(&all);
        assert!(err.contains(expect), "expected {expect:?} in {err:?}");
        assert!(err.contains("bad"), "the error must name the input: {err}");
        assert_eq!(before, s.snapshot(), "store changed after {err}");
    }
}

#[test]
fn rejects_bad_layout_files() {
    let (good, _) = Layout::simple("app:1", b"x");
    let mut l = good.clone();
    l.files.remove("oci-layout");
    rejects(&l, "oci-layout", &[]);
    let mut l = good.clone();
    l.files.insert("oci-layout".into(), b"not json".to_vec());
    rejects(&l, "oci-layout is not a valid layout file", &[]);
    let mut l = good.clone();
    l.files.insert("oci-layout".into(), b"{}".to_vec());
    rejects(&l, "oci-layout is not a valid layout file", &[]);
    let mut l = good.clone();
    l.files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec(),
    );
    rejects(&l, "only 1.x layouts", &[]);
    let mut l = good.clone();
    l.files
        .insert("index.json".into(), b"{\"manifests\": 3}".to_vec());
    rejects(&l, "index.json is not a valid image index", &[]);
    let mut l = good.clone();
    l.files.insert("index.json".into(), b"null".to_vec());
    rejects(&l, "index.json", &[]);
}

/// A named way to spoil a layout directory, and what the error must say.
type Spoiler<'a> = (&'a str, Box<dyn Fn(&Path)>, &'a str);

#[test]
fn rejects_bad_layout_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let before = s.snapshot();
    let (good, _) = Layout::simple("app:1", b"x");
    let cases: Vec<Spoiler> = vec![
        (
            "no-oci-layout",
            Box::new(|d: &Path| std::fs::remove_file(d.join("oci-layout")).unwrap()),
            "oci-layout",
        ),
        (
            "blobs-file",
            Box::new(|d: &Path| {
                std::fs::remove_dir_all(d.join("blobs")).unwrap();
                std::fs::write(d.join("blobs"), b"").unwrap();
            }),
            "blobs is a regular file, not a directory",
        ),
        (
            "no-index",
            Box::new(|d: &Path| std::fs::remove_file(d.join("index.json")).unwrap()),
            "index.json",
        ),
        (
            "index-dir",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("index.json")).unwrap();
                std::fs::create_dir(d.join("index.json")).unwrap();
            }),
            "index.json is a directory, not a regular file",
        ),
    ];
    for (name, spoil, expect) in cases {
        let dir = tmp.path().join(name);
        good.write_dir(&dir);
        spoil(&dir);
        let err = s.fails(&["import", dir_arg(&dir)]);
        assert!(err.contains(expect) && err.contains(name), "{name}: {err}");
        assert_eq!(before, s.snapshot());
    }
    let err = s.fails(&[
        "import",
        tmp.path().join("does-not-exist").to_str().unwrap(),
    ]);
    assert!(err.contains("does-not-exist"), "{err}");
    assert_eq!(before, s.snapshot());
}

#[test]
fn rejects_blobs_that_differ_from_their_descriptors() {
    // Content does not hash to the name.
    let (good, built) = Layout::simple("app:1", b"x");
    let mut l = good.clone();
    let path = Layout::blob_path(&built.layers[0]);
    let len = l.files[&path].len();
    l.files.insert(path.clone(), vec![0u8; len]);
    rejects(&l, "hashes to", &[]);

    // The descriptor's size is wrong.
    let mut l = good.clone();
    let mut d = built.desc.clone();
    d["size"] = (d["size"].as_u64().unwrap() + 1).into();
    l.index = vec![named(d, "app:1")];
    rejects(&l, "bytes, but its descriptor says", &[]);
}

#[test]
fn rejects_malformed_digests() {
    let (good, built) = Layout::simple("app:1", b"x");
    for bad in [
        built.manifest.to_uppercase().replace("SHA256", "sha256"),
        "sha256:../../../etc/passwd".to_string(),
        "sha256:abc".to_string(),
        format!("md5:{}", &built.manifest[7..]),
    ] {
        let mut l = good.clone();
        let mut d = built.desc.clone();
        d["digest"] = bad.clone().into();
        l.index = vec![named(d, "app:1")];
        rejects(&l, "index.json manifests[0]", &[]);
    }
}

#[test]
fn rejects_layer_count_and_diff_id_mismatches() {
    // Config lists two diff_ids for one layer.
    let mut l = Layout::new();
    let tar = builder::layer_tar(&[("a", b"a")]);
    let layer = l.blob("sha256", &tar);
    let config = builder::config_json(
        "amd64",
        &[builder::sha256(&tar), builder::sha256(b"other")],
        &[],
    );
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![desc(builder::LAYER, &layer, tar.len())],
    );
    let m = l.blob("sha256", &manifest);
    l.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
    rejects(&l, "1 layers but its config lists 2 diff_ids", &[]);

    // An uncompressed layer's diff_id is its digest: checked always.
    let mut l = Layout::new();
    let layer = l.blob("sha256", &tar);
    let config = builder::config_json("amd64", &[builder::sha256(b"wrong")], &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![desc(builder::LAYER, &layer, tar.len())],
    );
    let m = l.blob("sha256", &manifest);
    l.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
    rejects(&l, "the config's rootfs.diff_ids says", &[]);

    // A gzip layer's diff_id: checked with --verify-layers.
    let mut l = Layout::new();
    let gz = builder::gzip(&tar);
    let layer = l.blob("sha256", &gz);
    let config = builder::config_json("amd64", &[builder::sha256(b"wrong")], &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![desc(builder::LAYER_GZ, &layer, gz.len())],
    );
    let m = l.blob("sha256", &manifest);
    l.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
    rejects(
        &l,
        "the config's rootfs.diff_ids says",
        &["--verify-layers"],
    );
}

#[test]
fn rejects_truncated_layers_and_archives() {
    // A gzip layer cut short (its descriptor matches the cut bytes).
    let mut l = Layout::new();
    let tar = builder::layer_tar(&[("a", &vec![7u8; 100_000][..])]);
    let gz = builder::gzip(&tar);
    let cut = &gz[..gz.len() / 2];
    let layer = l.blob("sha256", cut);
    let config = builder::config_json("amd64", &[builder::sha256(&tar)], &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![desc(builder::LAYER_GZ, &layer, cut.len())],
    );
    let m = l.blob("sha256", &manifest);
    l.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
    rejects(&l, "data is truncated", &["--verify-layers"]);

    // The archive itself cut short.
    let tmp = tempfile::tempdir().unwrap();
    let (good, _) = Layout::simple("app:1", &vec![1u8; 50_000]);
    let tar = good.tar();
    let s = store();
    let before = s.snapshot();
    for cut in [tar.len() - 1024, tar.len() / 2, 700] {
        let path = write_file(tmp.path(), "cut.tar", &tar[..cut]);
        let err = s.fails(&["import", "--format", "oci", path.to_str().unwrap()]);
        assert!(err.contains("cut.tar"), "{err}");
        assert_eq!(before, s.snapshot());
    }
}

#[test]
fn rejects_dot_dot_in_archive_member_names() {
    let (good, _) = Layout::simple("app:1", b"x");
    let mut files = good.all_files();
    files.insert("../evil".into(), b"x".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "evil.tar", &builder::tar_of(&files));
    let s = store();
    let before = s.snapshot();
    let err = s.fails(&["import", "--format", "oci", path.to_str().unwrap()]);
    assert!(err.contains("'..'"), "{err}");
    assert_eq!(before, s.snapshot());
}

#[test]
fn an_archive_with_more_blobs_than_open_files_allowed_imports() {
    // Every member is staged before anything is published; staged blobs
    // must not each hold a file descriptor. 300 layers under a limit of 64.
    let tmp = tempfile::tempdir().unwrap();
    let contents: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("layer {i}").into_bytes())
        .collect();
    let files: Vec<Vec<(&str, &[u8])>> = contents
        .iter()
        .map(|c| vec![("etc/file", c.as_slice())])
        .collect();
    let layers: Vec<&[(&str, &[u8])]> = files.iter().map(Vec::as_slice).collect();
    let mut layout = Layout::new();
    let built = layout.image(
        "sha256",
        "amd64",
        &layers,
        builder::LayerCompression::Gzip,
        &[],
    );
    layout.index.push(named(built.desc.clone(), "many:1"));
    let archive = write_file(tmp.path(), "many.tar", &layout.tar());
    let s = store();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --store \"$1\" import \"$2\"")
        .arg(env!("CARGO_BIN_EXE_imgstore"))
        .arg(s.path())
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), built.manifest);
    assert_eq!(
        inspect(&s, &built.manifest)["blobs"]
            .as_array()
            .unwrap()
            .len(),
        302
    );
}

#[test]
fn a_layout_directory_stages_its_layers_ahead_with_the_same_checks() {
    // A directory's layers are staged on several threads before the walk
    // asks for them; the walk must still find each one checked, with its
    // diff_id, and a tampered layer must still be refused by its digest.
    let (a, b, c) = (noise(2 << 20, 1), noise(3 << 20, 2), noise(1 << 20, 3));
    let files: [&[(&str, &[u8])]; 3] = [&[("a", &a)], &[("b", &b)], &[("c", &c)]];
    let mut l = Layout::new();
    let built = l.image("sha256", "amd64", &files, LayerCompression::Gzip, &[]);
    l.index.push(named(built.desc.clone(), "big:1"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("good");
    l.write_dir(&dir);
    let s = store();
    s.ok(&["import", "--verify-layers", dir_arg(&dir)]);
    let info = inspect(&s, &built.manifest);
    for (layer, files) in built.layers.iter().zip(files) {
        let blob = info["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == *layer)
            .unwrap();
        assert_eq!(blob["diff_id"], builder::sha256(&builder::layer_tar(files)));
        assert!(has(&s, layer), "layer {layer} reads back");
    }

    let mut bad = l.clone();
    let path = Layout::blob_path(&built.layers[1]);
    bad.files.get_mut(&path).unwrap()[100] ^= 0xff;
    let dir = tmp.path().join("bad");
    bad.write_dir(&dir);
    let s = store();
    let before = s.snapshot();
    let err = s.fails(&["import", "--verify-layers", dir_arg(&dir)]);
    assert!(
        err.contains("not to the digest")
            && err.contains(built.layers[1].trim_start_matches("sha256:")),
        "{err}"
    );
    assert_eq!(before, s.snapshot(), "store changed after {err}");
}
