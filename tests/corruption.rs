//! Corruption: a flipped byte, a truncated blob, a deleted blob file and a
//! row with a wrong count. `cat` fails on a bad blob, `fsck` reports each
//! with its key and exits non-zero, and `fsck --repair` leaves a store that
//! a second fsck finds clean.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{AciBuilder, TestStore, sha512_key, write_file};
use imgstore::{Algorithm, Digest, FsckOptions, ProblemKind};

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    store.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

fn writable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn fsck_json(store: &TestStore, args: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["fsck", "--json"];
    all.extend_from_slice(args);
    let out = store.cmd(&all).output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn has_problem(report: &serde_json::Value, kind: &str, key: &str) -> bool {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["kind"] == kind && p["key"] == key)
}

fn sql(store: &TestStore, statement: &str) {
    let conn = rusqlite::Connection::open(store.path().join("index.db")).unwrap();
    conn.execute_batch(statement).unwrap();
}

#[test]
fn fsck_finds_each_corruption_and_repair_restores_consistency() {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    let mut paths = Vec::new();
    for (i, name) in ["flipped", "truncated", "deleted", "miscounted", "healthy"]
        .iter()
        .enumerate()
    {
        let tar = AciBuilder::image(
            &format!("example.com/{name}"),
            &[],
            &vec![i as u8 + 1; 50_000],
        );
        keys.push(sha512_key(&tar));
        paths.push(write_file(inputs.path(), &format!("{name}.aci"), &tar));
    }
    let mut args = vec!["import"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    store.ok(&args);
    let (clean, report) = fsck_json(&store, &[]);
    assert!(clean, "a fresh store is clean: {report}");
    assert_eq!(report["blobs_checked"], 10);

    let root = store.path();
    let flipped = blob_path(root, &keys[0]);
    writable(&flipped);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[1000] ^= 0x20;
    std::fs::write(&flipped, bytes).unwrap();

    let truncated = blob_path(root, &keys[1]);
    writable(&truncated);
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    std::fs::remove_file(blob_path(root, &keys[2])).unwrap();

    // Bypass the triggers: a count that no longer matches its edges.
    sql(
        &store,
        &format!("UPDATE blobs SET refcount = 7 WHERE digest = '{}'", keys[3]),
    );

    // A verified read refuses the bad blobs, each with one error line.
    let err = store.fails(&["cat", &keys[0]]);
    assert!(err.contains("corrupt"), "{err}");
    let err = store.fails(&["cat", &keys[1]]);
    assert!(err.contains("corrupt"), "{err}");
    store.fails(&["cat", &keys[2]]);
    assert!(
        store
            .cmd(&["cat", &keys[3]])
            .output()
            .unwrap()
            .status
            .success()
    );

    let (clean, report) = fsck_json(&store, &[]);
    assert!(!clean, "fsck must exit non-zero: {report}");
    assert!(
        has_problem(&report, "corrupt", &keys[0]),
        "flipped byte: {report}"
    );
    assert!(
        has_problem(&report, "corrupt", &keys[1]),
        "truncated: {report}"
    );
    assert!(
        has_problem(&report, "size", &keys[1]),
        "truncated: {report}"
    );
    assert!(
        has_problem(&report, "missing", &keys[2]),
        "deleted: {report}"
    );
    assert!(
        has_problem(&report, "refcount", &keys[3]),
        "wrong count: {report}"
    );
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        5,
        "nothing else: {report}"
    );
    // The human report names each key too.
    let out = store.cmd(&["fsck"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for key in &keys[..4] {
        assert!(text.contains(key.as_str()), "{key} missing from: {text}");
    }

    let (clean, report) = fsck_json(&store, &["--repair"]);
    assert!(clean, "repair: {report}");
    assert_eq!(report["repaired"], true);
    let mut removed: Vec<&str> = report["removed_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    removed.sort();
    let mut expected = vec![keys[0].as_str(), keys[1].as_str(), keys[2].as_str()];
    expected.sort();
    assert_eq!(removed, expected, "the images needing lost blobs go");

    let (clean, report) = fsck_json(&store, &[]);
    assert!(clean, "after repair: {report}");
    for key in &keys[3..] {
        assert!(store.cmd(&["cat", key]).output().unwrap().status.success());
        store.ok(&["manifest", key]);
    }
    assert!(
        !flipped.exists() && !truncated.exists(),
        "bad files are removed"
    );
    // gc collects the manifests the removed images left, and the lost
    // images import again.
    store.ok(&["gc", "--grace", "0"]);
    store.ok(&[
        "import",
        paths[0].to_str().unwrap(),
        paths[1].to_str().unwrap(),
        paths[2].to_str().unwrap(),
    ]);
    let (clean, report) = fsck_json(&store, &[]);
    assert!(clean, "after re-import: {report}");
}

#[test]
fn fsck_reports_orphans_wrong_sizes_and_dangling_edges() {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let tar = AciBuilder::image("example.com/one", &[], b"one");
    let key = sha512_key(&tar);
    store.ok(&[
        "import",
        write_file(inputs.path(), "one.aci", &tar).to_str().unwrap(),
    ]);

    let stray = Digest::of(Algorithm::Sha256, b"stray");
    let orphan = blob_path(store.path(), &stray.to_string());
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"stray").unwrap();
    std::fs::write(store.path().join("tmp/123-0-0.tmp"), b"half").unwrap();
    sql(
        &store,
        &format!("UPDATE blobs SET size = size + 1 WHERE digest = '{key}'"),
    );
    sql(
        &store,
        &format!(
            "INSERT INTO refs (owner_kind, owner, blob_id) SELECT 3, 999, id FROM blobs WHERE digest = '{key}'"
        ),
    );

    let (clean, report) = fsck_json(&store, &[]);
    assert!(!clean);
    assert!(
        has_problem(&report, "orphan", &stray.to_string()),
        "{report}"
    );
    assert!(has_problem(&report, "size", &key), "{report}");
    assert!(
        has_problem(&report, "index", &key),
        "edge of a remote that is gone: {report}"
    );
    let temp = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["kind"] == "orphan" && p["detail"].as_str().unwrap().contains("temp"));
    assert!(temp, "{report}");

    let (clean, report) = fsck_json(&store, &["--repair"]);
    assert!(clean, "{report}");
    assert_eq!(
        report["removed_images"].as_array().unwrap().len(),
        0,
        "a wrong size loses nothing"
    );
    assert!(!orphan.exists());
    let (clean, report) = fsck_json(&store, &[]);
    assert!(clean, "{report}");
    assert!(store.cmd(&["cat", &key]).output().unwrap().status.success());
    // The repair deleted a file from the tree, and its re-check walked the
    // whole tree and found no orphan left: gc need not walk it again.
    let gc: serde_json::Value =
        serde_json::from_str(&store.ok(&["gc", "--json", "--grace", "0"])).unwrap();
    assert_eq!(gc["full_sweep"], false, "{gc}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `--layers` decompresses blobs that carry a diff_id and checks it. The
/// blob is put through the library and given its diff_id in SQL, as an OCI
/// import would record it.
#[test]
fn fsck_layers_checks_diff_ids() {
    let store = TestStore::new();
    let layer = vec![42u8; 100_000];
    let diff_id = Digest::of(Algorithm::Sha256, &layer);
    let digest = store
        .open()
        .put_blob(Algorithm::Sha256, gzip(&layer).as_slice())
        .unwrap();
    let set_diff_id = |d: &Digest| {
        sql(
            &store,
            &format!("UPDATE blobs SET diff_id = '{d}' WHERE digest = '{digest}'"),
        )
    };

    set_diff_id(&diff_id);
    let report = store.open().fsck(&FsckOptions::new().layers(true)).unwrap();
    assert!(report.problems.is_empty(), "{report}");

    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    set_diff_id(&wrong);
    let plain = store.open().fsck(&FsckOptions::default()).unwrap();
    assert!(
        plain.problems.is_empty(),
        "without --layers diff_ids are not read: {plain}"
    );
    let (clean, report) = fsck_json(&store, &["--layers"]);
    assert!(!clean);
    assert!(
        has_problem(&report, "diff_id", &digest.to_string()),
        "{report}"
    );

    // A blob that claims a diff_id but does not decompress.
    let junk = store
        .open()
        .put_blob(Algorithm::Sha256, &[0x1f, 0x8b, 0x08, 0, 1, 2, 3][..])
        .unwrap();
    sql(
        &store,
        &format!("UPDATE blobs SET diff_id = '{diff_id}' WHERE digest = '{junk}'"),
    );
    let report = store
        .open()
        .fsck(&FsckOptions::new().repair(true).layers(true))
        .unwrap();
    assert!(
        report
            .of_kind(ProblemKind::DiffId)
            .any(|p| p.key.as_ref() == Some(&junk)),
        "{report}"
    );
    assert!(report.repaired, "{report}");
    assert_eq!(
        store.open().refcount(&digest).unwrap(),
        None,
        "a bad layer is dropped"
    );
    let (clean, report) = fsck_json(&store, &["--layers"]);
    assert!(clean, "{report}");
}

/// `--layers` checks every layer against the diff_id its config names,
/// whether or not that was checked (and recorded) at import (issue 13,
/// defect 7). Imported without `--verify-layers`, a gzip layer is never
/// decompressed, so a config naming a wrong diff_id went unseen: `fsck
/// --layers` passed it in milliseconds with "0 problems".
#[test]
fn fsck_layers_checks_layers_that_were_never_decompressed() {
    use builder::{CONFIG, LAYER, LAYER_GZ, MANIFEST};
    let store = TestStore::new();
    let mut layout = builder::Layout::new();
    let image =
        |layout: &mut builder::Layout, name: &str, tar: Vec<u8>, gz: bool, diff_id: String| {
            let (bytes, media_type) = if gz {
                (builder::gzip(&tar), LAYER_GZ)
            } else {
                (tar, LAYER)
            };
            let layer = layout.blob("sha256", &bytes);
            let config = builder::config_json("amd64", &[diff_id], &[("name", name)]);
            let config_digest = layout.blob("sha256", &config);
            let manifest = builder::manifest_json(
                builder::desc(CONFIG, &config_digest, config.len()),
                vec![builder::desc(media_type, &layer, bytes.len())],
            );
            let manifest_digest = layout.blob("sha256", &manifest);
            layout.index.push(builder::named(
                builder::desc(MANIFEST, &manifest_digest, manifest.len()),
                name,
            ));
            (manifest_digest, layer)
        };
    let bad_tar = builder::layer_tar(&[("etc/bad", b"bad")]);
    let (bad_image, bad_layer) = image(
        &mut layout,
        "bad",
        bad_tar,
        true,
        builder::sha256(b"not what the layer holds"),
    );
    let good_tar = builder::layer_tar(&[("etc/good", b"good")]);
    let good_diff = builder::sha256(&good_tar);
    let (good_image, _) = image(&mut layout, "good", good_tar, true, good_diff);
    // An uncompressed layer is its own diff_id.
    let plain_tar = builder::layer_tar(&[("etc/plain", b"plain")]);
    let plain_diff = builder::sha256(&plain_tar);
    let (plain_image, _) = image(&mut layout, "plain", plain_tar, false, plain_diff);
    let inputs = tempfile::tempdir().unwrap();
    let dir = inputs.path().join("layout");
    layout.write_dir(&dir);
    store.ok(&["import", dir.to_str().unwrap()]);

    let (clean, report) = fsck_json(&store, &[]);
    assert!(clean, "without --layers no layer is decompressed: {report}");
    let (clean, report) = fsck_json(&store, &["--layers"]);
    assert!(!clean, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(has_problem(&report, "diff_id", &bad_layer), "{report}");
    let detail = problems[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&bad_image), "names the manifest: {detail}");

    let (clean, report) = fsck_json(&store, &["--layers", "--repair"]);
    assert!(clean, "{report}");
    assert_eq!(
        report["removed_images"],
        serde_json::json!([bad_image]),
        "{report}"
    );
    assert!(!blob_path(store.path(), &bad_layer).exists());
    let mut left: Vec<String> =
        serde_json::from_str::<serde_json::Value>(&store.ok(&["images", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_string())
            .collect();
    let mut kept = vec![good_image, plain_image];
    kept.sort();
    left.sort();
    assert_eq!(left, kept);
    let (clean, report) = fsck_json(&store, &["--layers"]);
    assert!(clean, "{report}");
}

/// A damaged page of an SQLite index: `PRAGMA quick_check` fails, fsck
/// says so and exits non-zero, and `--repair` does not pretend to have
/// fixed it (rebuilding a damaged b-tree is beyond what it can do).
#[test]
fn fsck_reports_a_failed_quick_check() {
    let store = TestStore::new();
    store.ok(&["import", common::fixture("hello.aci").to_str().unwrap()]);
    store.ok(&[
        "import",
        common::fixture("hello-2.0.0.aci").to_str().unwrap(),
    ]);
    let db = store.path().join("index.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'labels_by_value'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    // An invalid b-tree page type in the index's root page.
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[((root - 1) * page) as usize] = 0;
    std::fs::write(&db, bytes).unwrap();

    let (clean, report) = fsck_json(&store, &[]);
    assert!(!clean);
    let index = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["kind"] == "index" && p["detail"].as_str().unwrap().contains("quick_check"));
    assert!(index, "{report}");
    let (clean, report) = fsck_json(&store, &["--repair"]);
    assert!(!clean, "{report}");
    assert_eq!(report["repaired"], false);
    assert!(
        !report["remaining"].as_array().unwrap().is_empty(),
        "{report}"
    );
}
