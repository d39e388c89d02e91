//! Removal and garbage collection: exactly the unreferenced blobs go,
//! shared blobs stay, orphans respect the grace period, temp files are
//! swept, and a dry run changes nothing.

mod common;

use common::{AciBuilder, TestStore, manifest, write_file};
use imgstore::{Algorithm, Digest, GcOptions, ImportOptions};

fn blob_path(t: &TestStore, d: &Digest) -> std::path::PathBuf {
    t.path()
        .join("blobs")
        .join(d.algorithm().name())
        .join(&d.hex()[..2])
        .join(d.hex())
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

#[test]
fn orphans_wait_for_the_grace_period_and_temp_files_go_at_once() {
    let t = TestStore::new();
    let s = t.open();
    s.import(common::fixture("hello.aci"), &ImportOptions::default())
        .unwrap();
    // A file in the tree with no row (as a crash after rename leaves), a
    // stray name, and a leftover temp file.
    let orphan = Digest::of(Algorithm::Sha256, b"orphan bytes");
    let path = blob_path(&t, &orphan);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"orphan bytes").unwrap();
    let stray = t.path().join("blobs/sha256/zz-not-a-digest");
    std::fs::write(&stray, b"?").unwrap();
    let temp = t.path().join("tmp/999-0-0.tmp");
    std::fs::write(&temp, b"half").unwrap();

    let report = s.gc(&GcOptions::default()).unwrap();
    assert_eq!((report.orphans, report.temp_files), (0, 1));
    assert!(path.exists() && stray.exists(), "young orphans must stay");
    assert!(!temp.exists());

    let out = t.ok(&["gc", "--grace", "0"]);
    assert!(out.contains("orphans:    2"), "{out}");
    assert!(!path.exists() && !stray.exists());
    // Images are untouched.
    assert_eq!(s.images(None, &[]).unwrap().len(), 1);
    t.ok(&["cat", &s.images(None, &[]).unwrap()[0].key.to_string()]);
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
