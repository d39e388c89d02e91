//! Removal and garbage collection: exactly the unreferenced blobs go,
//! shared blobs stay, orphans respect the grace period, temp files are
//! swept, and a dry run changes nothing.

mod common;

use common::{AciBuilder, TestStore, manifest, write_file};
use std::time::Duration;

use imgstore::{Algorithm, Digest, GcOptions, ImportOptions};

fn blob_path(t: &TestStore, d: &Digest) -> std::path::PathBuf {
    common::blob_file(t.path(), d)
}

#[test]
fn gc_removes_exactly_what_removed_images_left_unreferenced() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    // Same manifest, different rootfs: two images share the manifest blob.
    let m = manifest("example.com/shared", &[("version", "1")]);
    let a = AciBuilder::new()
        .manifest(&m)
        .dir("rootfs")
        .entry("rootfs/a", b"a")
        .build();
    let b = AciBuilder::new()
        .manifest(&m)
        .dir("rootfs")
        .entry("rootfs/b", b"b")
        .build();
    let ka = s
        .import(
            write_file(files.path(), "a.aci", &a),
            &ImportOptions::default(),
        )
        .unwrap()
        .remove(0);
    let kb = s
        .import(
            write_file(files.path(), "b.aci", &b),
            &ImportOptions::default(),
        )
        .unwrap()
        .remove(0);
    assert_eq!(ka.manifest, kb.manifest);
    assert_eq!(s.refcount(&ka.manifest).unwrap(), Some(2));

    t.ok(&["rm", &ka.key.to_string()]);
    assert_eq!(s.refcount(&ka.manifest).unwrap(), Some(1));
    assert_eq!(s.refcount(&ka.key).unwrap(), Some(0));
    let du: serde_json::Value = serde_json::from_str(&t.ok(&["du", "--json"])).unwrap();
    assert_eq!(du["garbage_blobs"], 1);
    assert_eq!(du["garbage_bytes"], a.len() as u64);

    let report: serde_json::Value = serde_json::from_str(&t.ok(&["gc", "--json"])).unwrap();
    assert_eq!(report["blobs"], 1);
    assert_eq!(report["blob_bytes"], a.len() as u64);
    assert!(!blob_path(&t, &ka.key).exists());
    assert!(
        blob_path(&t, &ka.manifest).exists(),
        "a shared blob was collected"
    );
    assert!(blob_path(&t, &kb.key).exists());
    assert_eq!(s.refcount(&ka.key).unwrap(), None);
    // The survivor is whole.
    assert_eq!(s.read_blob(&kb.key).unwrap(), b);
    assert_eq!(s.manifest(&kb.key).unwrap(), m.as_bytes());

    // Removing the last image frees the rest; a second gc finds nothing.
    t.ok(&["rm", &kb.key.to_string()]);
    let report = s.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.blobs, 2);
    assert_eq!(s.gc(&GcOptions::default()).unwrap().blobs, 0);
    assert!(!blob_path(&t, &kb.key).exists());
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let t = TestStore::new();
    let s = t.open();
    let key = s
        .import(common::fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    s.remove(&key.key).unwrap();
    std::fs::write(t.path().join("tmp/1-2-3.tmp"), b"leftover").unwrap();
    let before = t.snapshot();
    let out = t.ok(&["gc", "--dry-run", "--grace", "0"]);
    assert!(out.contains("would free"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&t.ok(&["gc", "--dry-run", "--json"])).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["blobs"], 2);
    assert_eq!(report["temp_files"], 1);
    assert_eq!(t.snapshot(), before);
}

/// Plants a file in the tree that no row names and no intent records, as
/// a hand or another program would.
fn plant_orphan(t: &TestStore, bytes: &[u8]) -> std::path::PathBuf {
    let digest = Digest::of(Algorithm::Sha256, bytes);
    let path = blob_path(t, &digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every file in the blob tree, relative to the store.
fn tree_files(t: &TestStore) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&t.path().join("blobs"), &mut files);
    files.sort();
    files
}

fn intent_files(t: &TestStore) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(t.path().join("intents"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn gc_json(t: &TestStore, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["gc", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&t.ok(&all)).unwrap()
}

#[test]
fn a_planted_orphan_is_left_by_plain_gc_reported_by_fsck_and_removed_by_gc_full() {
    let t = TestStore::new();
    let s = t.open();
    s.import(common::fixture("hello.aci"), &ImportOptions::default())
        .unwrap();
    let orphan = plant_orphan(&t, b"orphan bytes");
    let stray = t.path().join("blobs/sha256/zz-not-a-digest");
    std::fs::write(&stray, b"?").unwrap();

    // No intent names them and a new store needs no walk: plain gc, even
    // with no grace, does not look at the tree.
    let report = gc_json(&t, &["--grace", "0"]);
    assert_eq!(report["orphans"], 0, "{report}");
    assert_eq!(report["full_sweep"], false, "{report}");
    assert!(orphan.exists() && stray.exists());

    // fsck walks the tree and reports both.
    let out = t.cmd(&["fsck", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let fsck: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orphans: Vec<&serde_json::Value> = fsck["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "orphan")
        .collect();
    assert_eq!(orphans.len(), 2, "{fsck}");

    // The dry run of --full reports exactly what --full then removes.
    let before = t.snapshot();
    let dry = gc_json(&t, &["--full", "--grace", "0", "--dry-run"]);
    assert_eq!(t.snapshot(), before);
    let report = gc_json(&t, &["--full", "--grace", "0"]);
    assert_eq!(report["full_sweep"], true, "{report}");
    assert_eq!(report["orphans"], 2, "{report}");
    assert_eq!(dry["orphans"], report["orphans"]);
    assert_eq!(dry["orphan_bytes"], report["orphan_bytes"]);
    assert!(!orphan.exists() && !stray.exists());
    assert!(t.cmd(&["fsck"]).output().unwrap().status.success());
    // Images are untouched.
    assert_eq!(s.images(None, &[]).unwrap().len(), 1);
    t.ok(&["cat", &s.images(None, &[]).unwrap()[0].key.to_string()]);
}

#[test]
fn orphans_wait_for_the_grace_period_and_temp_files_go_at_once() {
    let t = TestStore::new();
    let s = t.open();
    s.import(common::fixture("hello.aci"), &ImportOptions::default())
        .unwrap();
    // A file in the tree with no row (as a crash after rename leaves), a
    // stray name, and a leftover temp file.
    let path = plant_orphan(&t, b"orphan bytes");
    let stray = t.path().join("blobs/sha256/zz-not-a-digest");
    std::fs::write(&stray, b"?").unwrap();
    let temp = t.path().join("tmp/999-0-0.tmp");
    std::fs::write(&temp, b"half").unwrap();

    let full = GcOptions::new().full(true);
    let report = s.gc(&full).unwrap();
    assert_eq!((report.orphans, report.temp_files), (0, 1));
    assert!(path.exists() && stray.exists(), "young orphans must stay");
    assert!(!temp.exists());
    // The young orphan with a digest name is now recorded in an intent,
    // so a plain gc finds it once it is old enough; the young stray has no
    // digest to record, so the next gc walks the tree again.
    assert_eq!(intent_files(&t).len(), 1);

    let out = t.ok(&["gc", "--grace", "0"]);
    assert!(out.contains("orphans:    2"), "{out}");
    assert!(!path.exists() && !stray.exists());
    assert!(intent_files(&t).is_empty());
    // Nothing left to walk for: the next plain gc does not.
    assert_eq!(gc_json(&t, &["--grace", "0"])["full_sweep"], false);
    // Images are untouched.
    assert_eq!(s.images(None, &[]).unwrap().len(), 1);
    t.ok(&["cat", &s.images(None, &[]).unwrap()[0].key.to_string()]);
}

#[test]
fn gc_removes_the_orphans_an_intent_lists_once_old_enough_and_dry_run_reports_them() {
    let t = TestStore::new();
    let s = t.open();
    let kept = s.put_blob(Algorithm::Sha256, &b"kept"[..]).unwrap();
    // What an import killed between its renames and its commit leaves: an
    // intent naming its blobs, some of them renamed into the tree.
    let orphan = plant_orphan(&t, b"renamed, never committed");
    let never = Digest::of(Algorithm::Sha256, b"never renamed");
    let listed = Digest::of(Algorithm::Sha256, b"renamed, never committed");
    let intent = t.path().join("intents/4242-0-0.intent");
    std::fs::write(&intent, format!("{listed}\n{never}\n{kept}\n")).unwrap();

    // Younger than the default grace: kept, and so is its intent.
    let report = s.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.orphans, 0);
    assert!(orphan.exists() && intent.exists());

    let before = t.snapshot();
    let dry = gc_json(&t, &["--grace", "0", "--dry-run"]);
    assert_eq!(t.snapshot(), before, "a dry run changes nothing");
    assert_eq!(dry["orphans"], 1, "{dry}");
    assert_eq!(dry["full_sweep"], false, "{dry}");

    let report = gc_json(&t, &["--grace", "0"]);
    assert_eq!(report["orphans"], 1, "{report}");
    assert_eq!(report["orphan_bytes"], 24, "{report}");
    assert_eq!(report["full_sweep"], false, "{report}");
    assert_eq!(dry["orphan_bytes"], report["orphan_bytes"]);
    assert!(!orphan.exists());
    assert!(intent_files(&t).is_empty());
    assert_eq!(s.read_blob(&kept).unwrap(), b"kept");
    assert!(t.cmd(&["fsck"]).output().unwrap().status.success());
}

#[test]
fn a_leftover_intent_whose_blobs_all_have_rows_is_just_deleted() {
    let t = TestStore::new();
    let s = t.open();
    let info = s
        .import(common::fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    let pinned = s.put_blob(Algorithm::Sha256, &b"pinned"[..]).unwrap();
    // An import killed after its commit, before it unlinked its intent.
    let intent = t.path().join("intents/4242-1-0.intent");
    std::fs::write(
        &intent,
        format!("{}\n{}\n{pinned}\n", info.key, info.manifest),
    )
    .unwrap();
    let files = tree_files(&t);
    let stamps: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    let before = t.snapshot();

    let report = gc_json(&t, &["--grace", "0"]);
    assert_eq!(
        (&report["blobs"], &report["orphans"]),
        (&0.into(), &0.into()),
        "{report}"
    );
    assert!(!intent.exists());
    assert_eq!(tree_files(&t), files, "no blob file touched");
    let after: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    assert_eq!(after, stamps);
    // Apart from the intent, the store is as it was.
    let mut expected = before;
    expected
        .files
        .remove(std::path::Path::new("intents/4242-1-0.intent"));
    assert_eq!(t.snapshot(), expected);
}

#[test]
fn gc_keeps_blobs_pinned_or_held_by_a_remote() {
    let t = TestStore::new();
    let s = t.open();
    let pinned = s.put_blob(Algorithm::Sha256, &b"pinned bytes"[..]).unwrap();
    let held = s.put_blob(Algorithm::Sha256, &b"remote bytes"[..]).unwrap();
    s.set_remote("https://example.com/x", None, None, &held, None)
        .unwrap();
    s.deref_blob(&held).unwrap();
    assert_eq!(s.refcount(&held).unwrap(), Some(1));
    assert_eq!(s.gc(&GcOptions::default()).unwrap().blobs, 0);
    assert!(blob_path(&t, &pinned).exists() && blob_path(&t, &held).exists());
    s.deref_blob(&pinned).unwrap();
    assert_eq!(s.gc(&GcOptions::default()).unwrap().blobs, 1);
    assert!(!blob_path(&t, &pinned).exists());
    assert!(s.deref_blob(&held).is_err(), "held has no pin left");
}

#[test]
fn kept_temp_files_wait_for_the_grace_period_and_fsck_leaves_them_alone() {
    let t = TestStore::new();
    let s = t.open();
    // What a killed fetch leaves to resume from, and an upload session of
    // `serve`: one old, one young; beside them a writer's stale temp file.
    let kept = t.path().join("tmp/partial");
    std::fs::create_dir_all(&kept).unwrap();
    let old = kept.join("old.partial");
    let young = kept.join("young.partial");
    std::fs::write(&old, b"half a download").unwrap();
    std::fs::write(&young, b"a download under way").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let stale = t.path().join("tmp/999-0-0.tmp");
    std::fs::write(&stale, b"half").unwrap();

    let fsck = s.fsck(&imgstore::FsckOptions::new()).unwrap();
    assert_eq!(fsck.problems.len(), 1, "only the stale temp file: {fsck}");
    // du counts the bytes of kept files, not the size of their directory.
    assert_eq!(s.du().unwrap().temp_bytes, 15 + 20 + 4);

    let report = s
        .gc(&GcOptions::new().grace(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(report.temp_files, 2, "{report:?}");
    assert_eq!(report.temp_bytes, 4 + 15);
    assert!(!old.exists() && !stale.exists());
    assert!(young.exists(), "a young partial download must stay");
}
