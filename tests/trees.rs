//! The trees the store keeps (`imgstore render IMAGE` without DIR,
//! `imgstore trees`, `fsck --trees`; DESIGN.md §3, invariants 5 and 9):
//! a tree is rendered once and handed out again; options make distinct
//! trees; `rm`, `prune` and `gc` remove what they should; a tree holds the
//! blobs it was rendered from; a render killed with SIGKILL at each of its
//! failpoints, or stopped by a full disk, never leaves a tree that is
//! handed out, and what it left is garbage that gc removes; `fsck --trees`
//! finds a changed file and `--repair` drops the tree.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use builder::{Layout, desc, named, sha256};
use common::layers::{Layer, aci, aci_manifest};
use common::{TestStore, noise, store};
use serde_json::Value;

const DAY_MICROS: i64 = 86_400_000_000;

// ---------------------------------------------------------------- helpers

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgstore")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Adds an image of these layer tars (gzip) to a layout; returns its
/// manifest's descriptor.
fn add_image(l: &mut Layout, layers: &[Vec<u8>], arch: &str) -> Value {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for tar in layers {
        diff_ids.push(sha256(tar));
        let gz = builder::gzip(tar);
        let d = l.blob("sha256", &gz);
        descs.push(desc(builder::LAYER_GZ, &d, gz.len()));
    }
    let config = builder::config_json(arch, &diff_ids, &[]);
    let c = l.blob("sha256", &config);
    let manifest = builder::manifest_json(desc(builder::CONFIG, &c, config.len()), descs);
    let m = l.blob("sha256", &manifest);
    desc(builder::MANIFEST, &m, manifest.len())
}

fn import_layout(s: &TestStore, layout: &Layout) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout.write_dir(&dir);
    let out = s.ok(&["import", dir.to_str().unwrap()]);
    out.lines().next().unwrap().to_string()
}

fn import_file(s: &TestStore, bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = common::write_file(tmp.path(), "image", bytes);
    s.ok(&["import", path.to_str().unwrap()]).trim().to_string()
}

/// Two layers: files, a directory, a symlink, a hard link, and a second
/// layer that replaces one file and removes another.
fn layers(seed: u64) -> Vec<Vec<u8>> {
    vec![
        Layer::new()
            .dir("etc")
            .file("etc/os-release", b"ID=test\n")
            .file("etc/gone", b"removed by layer 2")
            .file_with("bin/tool", &noise(300 << 10, seed), 0o755, 0, 0)
            .hardlink("bin/tool-link", "bin/tool")
            .symlink("lib64", "/lib")
            .build(),
        Layer::new()
            .file("etc/os-release", b"ID=test\nVERSION=2\n")
            .whiteout("etc/gone")
            .file("data/blob", &noise(200 << 10, seed + 1))
            .build(),
    ]
}

/// A store holding one two-layer amd64 image, named `name:1`.
fn with_image(name: &str, seed: u64) -> (TestStore, String) {
    let s = store();
    let key = add_named(&s, name, seed);
    (s, key)
}

fn add_named(s: &TestStore, name: &str, seed: u64) -> String {
    let mut l = Layout::new();
    let d = add_image(&mut l, &layers(seed), "amd64");
    l.index.push(named(d, &format!("{name}:1")));
    import_layout(s, &l)
}

/// `render --json ARGS…`, which must succeed: what it handed out.
fn render(s: &TestStore, args: &[&str]) -> Value {
    let mut all = vec!["render", "--json"];
    all.extend_from_slice(args);
    let out = s.cmd(&all).output().unwrap();
    assert!(
        out.status.success(),
        "render {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On a pipe: no progress bar, and these images give no warning.
    assert!(
        out.stderr.is_empty(),
        "render wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn path_of(v: &Value) -> PathBuf {
    PathBuf::from(v["tree"]["path"].as_str().unwrap())
}

fn trees(s: &TestStore) -> Vec<Value> {
    let v: Value = serde_json::from_str(&s.ok(&["trees", "--json"])).unwrap();
    v.as_array().unwrap().clone()
}

/// The entries of `<store>/trees/` but its lock file.
fn tree_dirs(s: &TestStore) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(s.path().join("trees")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

fn gc(s: &TestStore) -> Value {
    serde_json::from_str(&s.ok(&["gc", "--json", "--grace", "0"])).unwrap()
}

/// The problems `fsck --json ARGS` reports, as (kind, key, detail).
fn fsck(s: &TestStore, args: &[&str]) -> Vec<(String, Option<String>, String)> {
    let mut all = vec!["fsck", "--json"];
    all.extend_from_slice(args);
    let out = s.cmd(&all).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let problems: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["key"].as_str().map(str::to_string),
                p["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let clean = problems.is_empty() || report["repaired"] == true;
    assert_eq!(out.status.success(), clean, "fsck exit code: {report}");
    problems
}

fn assert_clean(s: &TestStore, context: &str) {
    let problems = fsck(s, &["--trees"]);
    assert!(problems.is_empty(), "{context}: fsck --trees: {problems:?}");
}

fn sql(s: &TestStore) -> rusqlite::Connection {
    rusqlite::Connection::open(s.path().join("index.db")).unwrap()
}

/// Edges held by trees.
fn tree_edges(s: &TestStore) -> i64 {
    sql(s)
        .query_row("SELECT COUNT(*) FROM refs WHERE owner_kind = 5", [], |r| {
            r.get(0)
        })
        .unwrap()
}

fn blob_rows(s: &TestStore) -> i64 {
    sql(s)
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .unwrap()
}

/// Runs `imgstore render IMAGE` with a failpoint; it must be killed there.
fn render_killed(s: &TestStore, point: &str, image: &str) {
    let out = Command::new(bin())
        .arg("--store")
        .arg(s.path())
        .args(["render", image])
        .env("IMGSTORE_FAILPOINT", point)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "render with failpoint {point} should have been killed; status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn a_kept_tree_is_rendered_once_and_handed_out_again_at_once() {
    let (s, key) = with_image("example.com/app", 1);
    let first = render(&s, &["example.com/app:1"]);
    assert_eq!(first["reused"], false);
    assert_eq!(first["report"]["whiteouts"], 1, "{first}");
    let path = path_of(&first);
    assert_eq!(path.parent().unwrap(), s.path().join("trees"));
    let id = first["tree"]["id"].as_str().unwrap();
    assert_eq!(path.file_name().unwrap().to_str().unwrap(), id);
    // The report names the tree's final place, not where it was written.
    assert_eq!(first["report"]["rootfs"], first["tree"]["rootfs"]);
    assert_eq!(
        first["tree"]["rootfs"], first["tree"]["path"],
        "OCI: the tree is the rootfs"
    );
    assert_eq!(first["tree"]["image"], key);
    assert_eq!(first["tree"]["platform"], "linux/amd64");
    assert_eq!(first["tree"]["rootless"], !is_root());
    assert_eq!(
        std::fs::read(path.join("etc/os-release")).unwrap(),
        b"ID=test\nVERSION=2\n"
    );
    assert!(!path.join("etc/gone").exists());
    assert_eq!(
        std::fs::metadata(path.join("bin/tool")).unwrap().ino(),
        std::fs::metadata(path.join("bin/tool-link")).unwrap().ino()
    );
    assert_eq!(
        first["tree"]["size"],
        (300 << 10) + (200 << 10) + b"ID=test\nVERSION=2\n".len(),
        "file data, the hard link once"
    );
    let ino = std::fs::metadata(path.join("data/blob")).unwrap().ino();
    let mtime = std::fs::metadata(&path).unwrap().mtime_nsec();
    assert_eq!(
        tree_dirs(&s),
        vec![id.to_string()],
        "no temp directory left"
    );

    // Again: the same tree, nothing rendered, at once.
    let started = Instant::now();
    let plain = s.ok(&["render", &key]);
    let took = started.elapsed();
    assert_eq!(
        plain.trim(),
        path.to_str().unwrap(),
        "prints the rootfs path"
    );
    assert!(took < Duration::from_secs(2), "a kept tree took {took:?}");
    let again = render(&s, &[&key]);
    assert_eq!(again["reused"], true);
    assert_eq!(again["report"], Value::Null);
    assert_eq!(again["tree"], first["tree"]);
    assert_eq!(
        std::fs::metadata(path.join("data/blob")).unwrap().ino(),
        ino
    );
    assert_eq!(std::fs::metadata(&path).unwrap().mtime_nsec(), mtime);

    // It is listed, and it holds what it was rendered from.
    let listed = trees(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], first["tree"]);
    let table = s.ok(&["trees"]);
    assert!(table.starts_with("IMAGE"), "{table}");
    assert!(table.contains(path.to_str().unwrap()), "{table}");
    assert!(table.contains("linux/amd64"), "{table}");
    assert_eq!(tree_edges(&s), 3, "the manifest and two layers");
    let du: Value = serde_json::from_str(&s.ok(&["du", "--json"])).unwrap();
    assert_eq!(
        (&du["trees"], &du["tree_bytes"]),
        (&Value::from(1), &first["tree"]["size"]),
        "{du}"
    );
    assert!(s.ok(&["du"]).contains("kept trees"));
    let report: Value = serde_json::from_str(&s.ok(&["fsck", "--trees", "--json"])).unwrap();
    assert_eq!(report["trees_checked"], 1);
    assert_clean(&s, "after two renders");

    // A render into DIR is no kept tree.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    s.ok(&["render", &key, dir.to_str().unwrap()]);
    assert_eq!(trees(&s).len(), 1);
}

#[test]
fn an_appc_tree_keeps_its_manifest_beside_rootfs_and_holds_its_dependency() {
    let s = store();
    let base = aci(
        &aci_manifest("example.com/base", &[("version", "1")], &[], &[]),
        |r| r.dir("etc").file("etc/os-release", b"base"),
    );
    let base_key = import_file(&s, &base);
    let app_manifest = aci_manifest(
        "example.com/app",
        &[("version", "1")],
        &[("example.com/base", &[("version", "1")], None)],
        &[],
    );
    let app = aci(&app_manifest, |r| r.dir("bin").file("bin/app", b"app"));
    let app_key = import_file(&s, &app);

    let tree = render(&s, &["example.com/app:1"]);
    let path = path_of(&tree);
    assert_eq!(tree["tree"]["format"], "aci");
    assert_eq!(tree["tree"]["platform"], Value::Null);
    assert_eq!(
        PathBuf::from(tree["tree"]["rootfs"].as_str().unwrap()),
        path.join("rootfs")
    );
    assert_eq!(
        tree["report"]["manifest_file"],
        path.join("manifest").to_str().unwrap()
    );
    assert_eq!(
        std::fs::read(path.join("manifest")).unwrap(),
        app_manifest.as_bytes()
    );
    assert_eq!(
        std::fs::read(path.join("rootfs/etc/os-release")).unwrap(),
        b"base"
    );
    assert_eq!(std::fs::read(path.join("rootfs/bin/app")).unwrap(), b"app");
    let printed = s.ok(&["render", &app_key]);
    assert_eq!(printed.trim(), path.join("rootfs").to_str().unwrap());

    // The tree holds the dependency's ACI: removing the base image and
    // collecting garbage leaves it, and the tree checks out.
    s.ok(&["rm", &base_key]);
    let report = gc(&s);
    assert_eq!(
        report["blobs"], 1,
        "the base's manifest goes, its ACI stays: {report}"
    );
    let held: i64 = sql(&s)
        .query_row(
            "SELECT refcount FROM blobs WHERE digest = ?",
            [&base_key],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, 1, "held by the tree alone");
    assert_clean(&s, "after the dependency's removal");
    assert_eq!(trees(&s).len(), 1);
    // A render plans before it looks for a kept tree, and the plan needs
    // the dependency's image; imported again, the same tree is found.
    let err = s.fails(&["render", &app_key]);
    assert!(err.contains("depends on example.com/base"), "{err}");
    assert_eq!(import_file(&s, &base), base_key);
    let again = render(&s, &[&app_key]);
    assert_eq!(
        (again["reused"].clone(), path_of(&again)),
        (Value::Bool(true), path)
    );

    // Removing the image removes its tree, so nothing holds the blobs.
    s.ok(&["rm", &app_key]);
    assert!(tree_dirs(&s).is_empty());
    assert_eq!(tree_edges(&s), 0);
    gc(&s);
    assert_eq!(
        blob_rows(&s),
        2,
        "only the base image's ACI and manifest are left"
    );
    assert_clean(&s, "after rm and gc");
}

#[test]
fn options_make_distinct_trees() {
    let s = store();
    let mut l = Layout::new();
    let amd = add_image(
        &mut l,
        &[Layer::new().file("arch", b"amd64").build()],
        "amd64",
    );
    let arm = add_image(
        &mut l,
        &[Layer::new().file("arch", b"arm64").build()],
        "arm64",
    );
    let index_digest = l.platform_index(vec![(amd, "amd64"), (arm, "arm64")], "multi:1");
    import_layout(&s, &l);

    let a = render(&s, &["--platform", "linux/amd64", "multi:1"]);
    let b = render(&s, &["--platform", "linux/arm64", "multi:1"]);
    assert_ne!(path_of(&a), path_of(&b));
    assert_ne!(a["tree"]["manifest"], b["tree"]["manifest"]);
    assert_eq!(std::fs::read(path_of(&a).join("arch")).unwrap(), b"amd64");
    assert_eq!(std::fs::read(path_of(&b).join("arch")).unwrap(), b"arm64");
    assert_eq!(b["tree"]["platform"], "linux/arm64/v8", "normalised");
    // Each is handed out again for its own options.
    let b2 = render(&s, &["--platform", "linux/arm64/v8", "multi:1"]);
    assert_eq!(
        (b2["reused"].clone(), path_of(&b2)),
        (Value::Bool(true), path_of(&b))
    );
    let mut expected = 2;
    if is_root() {
        // Rendered as root and rootless: two trees of one platform.
        let r = render(&s, &["--rootless", "--platform", "linux/amd64", "multi:1"]);
        assert_eq!(r["reused"], false);
        assert_eq!(r["tree"]["rootless"], true);
        assert_ne!(path_of(&r), path_of(&a));
        expected += 1;
    }
    let listed = trees(&s);
    assert_eq!(listed.len(), expected, "{listed:?}");
    assert!(listed.iter().all(|t| t["image"] == index_digest));
    assert_eq!(tree_dirs(&s).len(), expected);
    assert_clean(&s, "several trees of one image");
}

#[test]
fn rm_removes_the_trees_of_an_image_and_gc_then_frees_its_blobs() {
    let (s, key) = with_image("example.com/app", 2);
    let other = add_named(&s, "example.com/other", 3);
    let kept = render(&s, &[&other]);
    let tree = render(&s, &[&key]);
    assert!(path_of(&tree).is_dir());
    let removed = s.ok(&["rm", &key]);
    assert_eq!(removed.trim(), key);
    assert!(!path_of(&tree).exists(), "rm removes the tree's directory");
    let listed = trees(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["image"], other);
    let report = gc(&s);
    assert_eq!(report["blobs"], 4, "manifest, config, two layers: {report}");
    assert_eq!(report["tree_dirs"], 0, "rm left nothing to gc in trees/");
    assert!(path_of(&kept).is_dir());
    assert_clean(&s, "after rm");
}

#[test]
fn prune_removes_trees_not_used_lately() {
    let (s, a) = with_image("example.com/a", 4);
    let b = add_named(&s, "example.com/b", 5);
    let ta = render(&s, &[&a]);
    let tb = render(&s, &[&b]);
    let conn = sql(&s);
    let age = |table: &str, key_column: &str, key: &str, days: i64| {
        conn.execute(
            &format!("UPDATE {table} SET last_used = last_used - ?1 WHERE {key_column} = ?2"),
            rusqlite::params![days * DAY_MICROS, key],
        )
        .unwrap();
    };
    // a's tree unused for 30 days, its image used today; b's image and
    // tree both unused for 30 days.
    age("trees", "name", ta["tree"]["id"].as_str().unwrap(), 30);
    age("trees", "name", tb["tree"]["id"].as_str().unwrap(), 30);
    age("images", "key", &b, 30);
    let out = s.ok(&["prune", "--unused-for", "15d"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&b.as_str()), "{out}");
    assert!(lines.contains(&path_of(&ta).to_str().unwrap()), "{out}");
    assert!(!path_of(&ta).exists() && !path_of(&tb).exists());
    assert!(trees(&s).is_empty());
    assert!(tree_dirs(&s).is_empty());
    assert_eq!(s.ok(&["resolve", &a]).trim(), a, "a's image stays");
    // A render after prune renders anew, and a tree in use is kept.
    let again = render(&s, &[&a]);
    assert_eq!(again["reused"], false);
    s.ok(&["prune", "--unused-for", "15d"]);
    assert!(path_of(&again).is_dir());
    assert_clean(&s, "after prune");
}

#[test]
fn fsck_trees_finds_a_changed_tree_and_repair_drops_it() {
    let (s, key) = with_image("example.com/app", 6);
    let tree = render(&s, &[&key]);
    let path = path_of(&tree);
    assert_clean(&s, "a fresh tree");

    // A changed byte: seen only by --trees, which names the tree.
    let file = path.join("data/blob");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(fsck(&s, &[]).is_empty(), "a plain fsck does not walk trees");
    let problems = fsck(&s, &["--trees"]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (kind, image, detail) = &problems[0];
    assert_eq!(
        (kind.as_str(), image.as_deref()),
        ("tree", Some(key.as_str()))
    );
    assert!(detail.contains(path.to_str().unwrap()), "{detail}");
    assert!(detail.contains("changed since it was rendered"), "{detail}");

    // --repair drops it, row and directory; the next render renders anew.
    let report: Value =
        serde_json::from_str(&s.ok(&["fsck", "--trees", "--repair", "--json"])).unwrap();
    assert_eq!(report["repaired"], true, "{report}");
    assert!(!path.exists());
    assert!(trees(&s).is_empty());
    assert_eq!(tree_edges(&s), 0);
    assert_clean(&s, "after the repair");
    let again = render(&s, &[&key]);
    assert_eq!(again["reused"], false);
    assert_eq!(
        again["tree"]["hash"], tree["tree"]["hash"],
        "the same tree again"
    );

    // A mode changed, and a file added, are changes too.
    let path = path_of(&again);
    std::fs::set_permissions(
        path.join("etc/os-release"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(fsck(&s, &["--trees"]).len(), 1);
    s.ok(&["fsck", "--trees", "--repair"]);
    let again = render(&s, &[&key]);
    std::fs::write(path_of(&again).join("etc/new"), b"").unwrap();
    assert_eq!(fsck(&s, &["--trees"]).len(), 1);

    // A tree directory removed by hand: even a plain fsck sees it; gc drops
    // the row, and a render renders anew.
    std::fs::remove_dir_all(path_of(&again)).unwrap();
    let problems = fsck(&s, &[]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "tree");
    assert!(
        problems[0].2.contains("its directory is gone"),
        "{problems:?}"
    );
    let report = gc(&s);
    assert_eq!(report["tree_rows"], 1, "{report}");
    assert_eq!(report["blobs"], 0, "the image still holds its blobs");
    assert!(trees(&s).is_empty());
    assert_eq!(render(&s, &[&key])["reused"], false);
    assert_clean(&s, "after all");
}

/// A render killed before its commit leaves no tree anyone is handed: no
/// row, only a directory that fsck calls an orphan and gc removes; the
/// next render renders anew.
#[test]
fn a_render_killed_before_its_commit_is_never_handed_out() {
    for point in [
        "render-after-layer:1",
        "render-before-publish",
        "render-after-rename",
    ] {
        for gc_first in [true, false] {
            let context = format!("{point}, gc first: {gc_first}");
            let (s, key) = with_image("example.com/app", 7);
            render_killed(&s, point, &key);
            assert!(trees(&s).is_empty(), "{context}: a tree was recorded");
            let left = tree_dirs(&s);
            assert_eq!(left.len(), 1, "{context}: {left:?}");
            let partial = point != "render-after-rename";
            assert_eq!(left[0].starts_with(".tmp-"), partial, "{context}: {left:?}");
            let problems = fsck(&s, &[]);
            assert!(
                !problems.is_empty()
                    && problems
                        .iter()
                        .all(|(kind, key, _)| kind == "orphan" && key.is_none()),
                "{context}: fsck should find the directory as an orphan and nothing else: {problems:?}"
            );
            if gc_first {
                let report = gc(&s);
                assert_eq!(report["tree_dirs"], 1, "{context}: {report}");
                assert!(tree_dirs(&s).is_empty(), "{context}");
                assert_clean(&s, &context);
            }
            let tree = render(&s, &[&key]);
            assert_eq!(tree["reused"], false, "{context}: rendered anew");
            assert_eq!(
                std::fs::read(path_of(&tree).join("etc/os-release")).unwrap(),
                b"ID=test\nVERSION=2\n"
            );
            // A leftover under the final name is replaced by the render; a
            // temp one waits for gc.
            if !gc_first && partial {
                assert_eq!(fsck(&s, &[]).len(), 1, "{context}");
                assert_eq!(gc(&s)["tree_dirs"], 1, "{context}");
            }
            assert_eq!(tree_dirs(&s).len(), 1, "{context}");
            assert_clean(&s, &context);
        }
    }
}

/// Killed after its commit, the tree is complete and recorded: the next
/// render hands it out.
#[test]
fn a_render_killed_after_its_commit_left_a_whole_tree() {
    let (s, key) = with_image("example.com/app", 8);
    render_killed(&s, "render-after-commit", &key);
    assert_eq!(trees(&s).len(), 1);
    assert_clean(&s, "killed after the commit");
    let tree = render(&s, &[&key]);
    assert_eq!(tree["reused"], true);
    assert_eq!(
        std::fs::read(path_of(&tree).join("etc/os-release")).unwrap(),
        b"ID=test\nVERSION=2\n"
    );
}

#[test]
fn concurrent_renders_of_one_tree_render_it_once() {
    let (s, key) = with_image("example.com/app", 9);
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(bin())
                .arg("--store")
                .arg(s.path())
                .args(["render", "--json", &key])
                .env_remove("IMGSTORE_FAILPOINT")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let rendered = results.iter().filter(|r| r["reused"] == false).count();
    assert_eq!(rendered, 1, "exactly one render: {results:?}");
    assert!(results.iter().all(|r| path_of(r) == path_of(&results[0])));
    assert_eq!(tree_dirs(&s).len(), 1);
    assert_clean(&s, "after concurrent renders");
}

#[test]
fn a_render_that_fills_the_disk_leaves_no_tree() {
    let s = store();
    let big = Layer::new().file("big", &noise(1 << 20, 10)).build();
    let mut l = Layout::new();
    let d = add_image(&mut l, &[big], "amd64");
    l.index.push(named(d, "big:1"));
    let key = import_layout(&s, &l);
    let before = s.snapshot();

    // Writes past 512 KiB fail with EFBIG, as on a full disk.
    let mut cmd = Command::new(bin());
    cmd.arg("--store")
        .arg(s.path())
        .args(["render", &key])
        .env_remove("IMGSTORE_FAILPOINT");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 512 << 10,
                rlim_max: 512 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    common::assert_error(&out, &["render", &key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("member \"big\""), "{err}");
    assert!(trees(&s).is_empty());
    assert!(tree_dirs(&s).is_empty(), "the partial tree was removed");
    assert_eq!(s.snapshot().rows, before.rows, "no row changed");
    assert_clean(&s, "after a full disk");
    let tree = render(&s, &[&key]);
    assert_eq!(
        std::fs::read(path_of(&tree).join("big")).unwrap().len(),
        1 << 20
    );
}

#[test]
fn a_trees_directory_that_is_a_symlink_is_refused() {
    let (s, key) = with_image("example.com/app", 11);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), s.path().join("trees")).unwrap();
    let err = s.fails(&["render", &key]);
    assert!(err.contains("trees"), "{err}");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing was written through the link"
    );
    // gc and fsck refuse it too, and leave the target alone.
    s.fails(&["gc"]);
    assert!(Path::new(outside.path()).is_dir());
}

/// Every way of naming one image — its key, a key prefix, name:version, a
/// tag — and importing it again lead to the one tree it has.
#[test]
fn every_reference_to_an_image_and_a_reimport_share_its_tree() {
    let s = store();
    let mut l = Layout::new();
    let d = add_image(&mut l, &layers(12), "amd64");
    l.index.push(named(d, "example.com/app:1"));
    let key = import_layout(&s, &l);
    let first = render(&s, &[&key]);
    assert_eq!(first["reused"], false);
    s.ok(&["tag", &key, "mine:stable"]);
    let prefix = &key[..key.find(':').unwrap() + 13];
    for reference in [prefix, "example.com/app:1", "mine:stable", key.as_str()] {
        let again = render(&s, &[reference]);
        assert_eq!(again["reused"], true, "{reference}");
        assert_eq!(again["tree"], first["tree"], "{reference}");
    }
    // Importing the same image again keeps its tree (DESIGN.md §4).
    assert_eq!(import_layout(&s, &l), key);
    let listed = trees(&s);
    assert_eq!(
        listed,
        vec![first["tree"].clone()],
        "re-import kept the tree row as it was"
    );
    let again = render(&s, &["example.com/app:1"]);
    assert_eq!(
        (again["reused"].clone(), path_of(&again)),
        (Value::Bool(true), path_of(&first))
    );
    assert_eq!(tree_dirs(&s).len(), 1);
    // Removing the tag leaves the tree, which belongs to the image.
    s.ok(&["untag", "mine:stable"]);
    assert_eq!(trees(&s).len(), 1);
    assert_clean(&s, "after renders by every reference");
}

/// gc, whatever its `--grace`, treats a kept tree as it treats an image:
/// unused for a month it stays, with its blobs (only `prune` removes
/// either). What a killed render left is removed by the first gc, however
/// young: no render runs while gc holds the store lock.
#[test]
fn gc_keeps_old_trees_and_removes_a_killed_render_at_once_whatever_the_grace() {
    let (s, key) = with_image("example.com/app", 13);
    let other = add_named(&s, "example.com/other", 14);
    let kept = render(&s, &[&key]);
    let conn = sql(&s);
    conn.execute(
        "UPDATE trees SET last_used = last_used - ?1, rendered_at = rendered_at - ?1",
        [30 * DAY_MICROS],
    )
    .unwrap();
    conn.execute(
        "UPDATE images SET last_used = last_used - ?1",
        [30 * DAY_MICROS],
    )
    .unwrap();
    render_killed(&s, "render-after-layer:1", &other);
    let left: Vec<String> = tree_dirs(&s)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert_eq!(left.len(), 1, "{:?}", tree_dirs(&s));
    let blobs = blob_rows(&s);

    // A dry run counts it and removes nothing.
    let dry: Value = serde_json::from_str(&s.ok(&["gc", "--json", "--dry-run"])).unwrap();
    assert_eq!(
        (dry["tree_dirs"].clone(), dry["tree_rows"].clone()),
        (1.into(), 0.into()),
        "{dry}"
    );
    assert_eq!(tree_dirs(&s).len(), 2);

    for grace in ["1h", "30d"] {
        let report: Value =
            serde_json::from_str(&s.ok(&["gc", "--json", "--grace", grace])).unwrap();
        let expected = if grace == "1h" { 1 } else { 0 };
        assert_eq!(report["tree_dirs"], expected, "--grace {grace}: {report}");
        assert_eq!(report["tree_rows"], 0, "--grace {grace}: {report}");
        assert_eq!(
            report["blobs"], 0,
            "--grace {grace}: the tree and images hold theirs"
        );
        assert_eq!(
            tree_dirs(&s),
            vec![kept["tree"]["id"].as_str().unwrap().to_string()]
        );
        assert_eq!(trees(&s).len(), 1);
        assert_eq!(blob_rows(&s), blobs);
    }
    assert_eq!(render(&s, &[&key])["reused"], true);
    assert_clean(&s, "after gc");
}

/// `rm` removes the rows (durably) before the directories; killed in
/// between, it leaves a directory no row names, which nothing hands out:
/// fsck calls it an orphan, and gc, or the next render of that tree,
/// removes it.
#[test]
fn rm_killed_before_removing_a_tree_leaves_only_garbage() {
    for then_render in [false, true] {
        let (s, key) = with_image("example.com/app", 15);
        let tree = render(&s, &[&key]);
        let out = s
            .cmd(&["rm", &key])
            .env("IMGSTORE_FAILPOINT", "trees-before-removal")
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
        assert!(trees(&s).is_empty(), "the row went first");
        assert!(
            !s.ok(&["images", "--json"]).contains(&key),
            "the image went"
        );
        assert!(path_of(&tree).is_dir(), "killed before its directory went");
        let problems = fsck(&s, &[]);
        assert!(
            problems.len() == 1
                && problems[0].0 == "orphan"
                && problems[0].2.contains("no row names"),
            "{problems:?}"
        );
        if then_render {
            // The image again: its tree has the same id, and the leftover
            // under that name is removed and rendered anew, not handed out.
            let mut l = Layout::new();
            let d = add_image(&mut l, &layers(15), "amd64");
            l.index.push(named(d, "example.com/app:1"));
            assert_eq!(import_layout(&s, &l), key);
            std::fs::write(path_of(&tree).join("planted"), b"").unwrap();
            let again = render(&s, &[&key]);
            assert_eq!(again["reused"], false);
            assert_eq!(path_of(&again), path_of(&tree));
            assert!(!path_of(&again).join("planted").exists());
        } else {
            let report = gc(&s);
            assert_eq!(report["tree_dirs"], 1, "{report}");
            assert_eq!(report["blobs"], 4, "{report}");
            assert!(tree_dirs(&s).is_empty());
        }
        assert_clean(&s, &format!("rm killed, then render: {then_render}"));
    }
}
