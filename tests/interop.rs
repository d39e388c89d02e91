//! Interop with the real tools of the OCI ecosystem: umoci builds an image
//! from files the test writes, skopeo converts it to oci-archive and
//! docker-archive, imgstore imports all three forms and exports them, and
//! skopeo and umoci read the export back with equal digests; `podman load`
//! (on private vfs storage in a temp dir) and `ctr images import` (into a
//! testkit containerd) load the export under the name the store gave it.
//!
//! These tests never skip: `.ci/run` installs skopeo, umoci, podman and
//! containerd, and a missing tool fails the test with a message saying so.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestStore;
use serde_json::Value;

/// Runs a peer tool; panics with its output if it fails or is missing.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (install it: apt-get install {tool}): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

fn umoci_unpack(image: &str, bundle: &Path) {
    // umoci needs --rootless to unpack as an ordinary user.
    let rootless = unsafe { libc::geteuid() } != 0;
    let mut args = vec!["unpack"];
    if rootless {
        args.push("--rootless");
    }
    args.extend_from_slice(&["--image", image, bundle.to_str().unwrap()]);
    run("umoci", &args);
}

/// Builds `LAYOUT:TAG` with umoci: a new image holding `files` at `at`.
/// Returns the image reference.
fn umoci_build(layout: &str, tag: &str, files: &str, at: &str) -> String {
    let image = format!("{layout}:{tag}");
    run("umoci", &["init", "--layout", layout]);
    run("umoci", &["new", "--image", &image]);
    run("umoci", &["insert", "--image", &image, files, at]);
    image
}

fn inspect_digest(reference: &str) -> String {
    let v: Value = serde_json::from_str(&skopeo(&["inspect", reference])).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

fn index_digest(layout: &Path) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    v["manifests"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn umoci_and_skopeo_images_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p);
    let s = |p: &str| t(p).to_str().unwrap().to_string();

    // A small image built by umoci from files made here.
    std::fs::create_dir_all(t("files/etc")).unwrap();
    std::fs::write(t("files/etc/hello.txt"), b"hello from interop\n").unwrap();
    std::fs::write(t("files/etc/other.conf"), vec![b'z'; 70_000]).unwrap();
    let built_ref = umoci_build(&s("built"), "v1", &s("files/etc"), "/etc");
    run(
        "umoci",
        &[
            "config",
            "--image",
            &built_ref,
            "--os",
            "linux",
            "--architecture",
            "amd64",
            "--config.label",
            "made.by=umoci",
        ],
    );
    let key = index_digest(&t("built"));

    // skopeo converts it to the two archive forms.
    skopeo(&[
        "copy",
        &format!("oci:{built_ref}"),
        &format!("oci-archive:{}:v1", s("image.oci.tar")),
    ]);
    skopeo(&[
        "copy",
        &format!("oci:{built_ref}"),
        &format!(
            "docker-archive:{}:example.com/interop:1.0",
            s("image.docker.tar")
        ),
    ]);

    // imgstore imports all three forms.
    let store = TestStore::new();
    assert_eq!(store.ok(&["import", &s("built")]).trim(), key);
    assert_eq!(
        store
            .ok(&["import", "--verify-layers", &s("image.oci.tar")])
            .trim(),
        key
    );
    let docker_key = store
        .ok(&["import", "--verify-layers", &s("image.docker.tar")])
        .trim()
        .to_string();
    // umoci's ref.name "v1" is a tag: the version, not a name.
    let built = common::inspect(&store, &key);
    assert_eq!(built["name"], "", "{built}");
    assert_eq!(common::label(&built, "version"), Some("v1"));
    assert_eq!(common::label(&built, "arch"), Some("amd64"));
    assert_eq!(
        store
            .ok(&[
                "latest",
                "example.com/interop",
                "--label",
                "made.by=umoci",
                "--full"
            ])
            .trim(),
        docker_key
    );

    // Both into one layout, and into an archive.
    store.ok(&[
        "export",
        &key,
        "example.com/interop:1.0",
        "--oci",
        &s("export"),
    ]);
    store.ok(&[
        "export",
        &key,
        "example.com/interop:1.0",
        "--oci",
        &s("export.tar"),
    ]);

    // skopeo reads the export with the digests the store has.
    assert_eq!(inspect_digest(&format!("oci:{}:v1", s("export"))), key);
    assert_eq!(
        inspect_digest(&format!("oci:{}:1.0", s("export"))),
        docker_key
    );
    assert_eq!(
        inspect_digest(&format!("oci-archive:{}:v1", s("export.tar"))),
        key
    );
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", s("export"))]);
    assert_eq!(raw, store.ok(&["manifest", &key]));

    // skopeo copies out of it, digests intact.
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", s("export")),
        &format!("oci:{}:copied", s("copy")),
    ]);
    assert_eq!(index_digest(&t("copy")), key);
    // The docker image's layers are plain tars, which skopeo would
    // compress on the way to an OCI layout unless told not to.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        &format!("oci:{}:1.0", s("export")),
        &format!("oci:{}:copied", s("copy2")),
    ]);
    assert_eq!(index_digest(&t("copy2")), docker_key);

    // umoci unpacks both images from the export.
    for (reference, bundle) in [("v1", "bundle1"), ("1.0", "bundle2")] {
        umoci_unpack(&format!("{}:{reference}", s("export")), &t(bundle));
        assert_eq!(
            std::fs::read(t(bundle).join("rootfs/etc/hello.txt")).unwrap(),
            b"hello from interop\n"
        );
        assert_eq!(
            std::fs::read(t(bundle).join("rootfs/etc/other.conf"))
                .unwrap()
                .len(),
            70_000
        );
    }

    // And imgstore reads its own export back to the same keys.
    let again = TestStore::new();
    let keys = again.ok(&["import", &s("export.tar")]);
    assert_eq!(
        keys.lines().collect::<Vec<_>>(),
        vec![key.as_str(), docker_key.as_str()]
    );
}

#[test]
fn skopeo_layouts_with_gzip_and_zstd_layers() {
    // skopeo can recompress while copying: the store must keep each form
    // as it came, so keys are skopeo's digests.
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &str| tmp.path().join(p).to_str().unwrap().to_string();
    std::fs::create_dir_all(tmp.path().join("files")).unwrap();
    std::fs::write(tmp.path().join("files/data"), b"compressed layers").unwrap();
    let built = umoci_build(&s("built"), "t", &s("files/data"), "/data");
    let store = TestStore::new();
    for format in ["gzip", "zstd"] {
        let dest = format!("{}:t", s(format));
        skopeo(&[
            "copy",
            "--dest-compress-format",
            format,
            "--dest-compress",
            &format!("oci:{built}"),
            &format!("oci:{dest}"),
        ]);
        let key = index_digest(&tmp.path().join(format));
        assert_eq!(
            store.ok(&["import", "--verify-layers", &s(format)]).trim(),
            key,
            "{format}"
        );
        let out = s(&format!("{format}-export"));
        store.ok(&["export", &key, "--oci", &out]);
        assert_eq!(inspect_digest(&format!("oci:{out}:t")), key);
    }
}

/// Issue 13, defect 12: a ref.name that is a bare tag (as umoci and
/// `skopeo copy … oci:DIR:TAG` write it) is the image's version, not its
/// name; and an export carries both naming conventions, so that skopeo
/// and umoci find it by tag, and `podman load` and `ctr images import`
/// name it by its full reference (before: `localhost/1.0.0:latest`).
#[test]
fn a_tag_in_ref_name_is_a_version_and_every_peer_loads_the_export_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &str| tmp.path().join(p);
    let s = |p: &str| t(p).to_str().unwrap().to_string();
    std::fs::create_dir_all(t("files")).unwrap();
    std::fs::write(t("files/greeting"), b"named by its tag\n").unwrap();
    let built = umoci_build(&s("umoci"), "1.0.0", &s("files/greeting"), "/greeting");
    run(
        "umoci",
        &[
            "config",
            "--image",
            &built,
            "--os",
            "linux",
            "--architecture",
            "amd64",
        ],
    );
    skopeo(&[
        "copy",
        &format!("oci:{built}"),
        &format!("oci:{}:1.0.0", s("skopeo")),
    ]);
    let key = index_digest(&t("umoci"));
    assert_eq!(index_digest(&t("skopeo")), key);

    // Both layouts: the tag is the version; without --name the image is
    // unnamed, and the import says so.
    let store = TestStore::new();
    for layout in ["umoci", "skopeo"] {
        let out = store.cmd(&["import", &s(layout)]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key);
        let warning = String::from_utf8_lossy(&out.stderr);
        assert!(
            warning.contains("1 of 1 images imported without a name")
                && warning.contains("import --name"),
            "{layout}: {warning}"
        );
        let image = common::inspect(&store, &key);
        assert_eq!(image["name"], "", "{layout}: {image}");
        assert_eq!(common::label(&image, "version"), Some("1.0.0"), "{layout}");
    }
    store.ok(&["rm", &key]);
    let out = store.ok(&["import", "--name", "example.com/app", &s("skopeo")]);
    assert_eq!(out.trim(), key);
    assert_eq!(
        store.ok(&["latest", "example.com/app", "--full"]).trim(),
        key
    );
    let image = common::inspect(&store, &key);
    assert_eq!(image["name"], "example.com/app");
    assert_eq!(common::label(&image, "version"), Some("1.0.0"));

    store.ok(&["export", "example.com/app:1.0.0", "--oci", &s("export")]);
    store.ok(&["export", "example.com/app:1.0.0", "--oci", &s("export.tar")]);

    // skopeo and umoci address it by its tag.
    assert_eq!(inspect_digest(&format!("oci:{}:1.0.0", s("export"))), key);
    assert_eq!(
        inspect_digest(&format!("oci-archive:{}:1.0.0", s("export.tar"))),
        key
    );
    umoci_unpack(&format!("{}:1.0.0", s("export")), &t("bundle"));
    assert_eq!(
        std::fs::read(t("bundle/rootfs/greeting")).unwrap(),
        b"named by its tag\n"
    );

    // podman, on storage of its own in the temp dir.
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            s("podman/root"),
            "--runroot".to_string(),
            s("podman/run"),
            "--storage-driver".to_string(),
            "vfs".to_string(),
            "--events-backend".to_string(),
            "none".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run("podman", &all)
    };
    podman(&["load", "--input", &s("export.tar")]);
    let names = podman(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"]);
    assert_eq!(
        names.trim(),
        format!("example.com/app:1.0.0 {key}"),
        "{names}"
    );

    // containerd, through ctr.
    let containerd = testkit::Containerd::start();
    let ctr = |args: &[&str]| {
        let out = containerd.ctr_in("interop").args(args).output().unwrap();
        assert!(out.status.success(), "ctr {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    ctr(&["images", "import", "--no-unpack", &s("export.tar")]);
    let listed = ctr(&["images", "ls"]);
    let row: Vec<&str> = listed
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(row[0], "example.com/app:1.0.0", "{listed}");
    assert_eq!(row[2], key, "{listed}");
}
