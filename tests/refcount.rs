//! Reference counts and gc (DESIGN.md §3, invariants 4 and 5): counts move
//! with their edges (image → blobs, blob → blob, pins); a blob whose count
//! reaches zero is garbage; gc removes garbage, old orphans and stale temp
//! files, honours `--dry-run`, `--grace` and `--no-wait`, and checkpoints
//! the WAL.

mod common;

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, SystemTime};

use common::{AciBuilder, TestStore, sha512_key, write_file};
use imgstore::{Algorithm, Digest, FsckOptions, GcOptions};

fn gc_now() -> GcOptions {
    GcOptions::new().grace(Duration::ZERO)
}

#[test]
fn pins_and_links_count_references() {
    let t = TestStore::new();
    let store = t.open();
    let parent = store.put_blob(Algorithm::Sha256, &b"parent"[..]).unwrap();
    let child = store.put_blob(Algorithm::Sha256, &b"child"[..]).unwrap();
    assert_eq!(store.refcount(&parent).unwrap(), Some(1), "put pins once");
    assert_eq!(store.ref_blob(&parent).unwrap(), 2);
    assert_eq!(store.deref_blob(&parent).unwrap(), 1);

    store.link_blobs(&parent, &child).unwrap();
    store.link_blobs(&parent, &child).unwrap();
    assert_eq!(
        store.refcount(&child).unwrap(),
        Some(2),
        "a link counts once however often made"
    );
    assert_eq!(store.deref_blob(&child).unwrap(), 1, "the link holds it");
    assert!(store.deref_blob(&child).is_err(), "no pin left to release");

    // The child lives while its parent does.
    store.gc(&gc_now()).unwrap();
    assert!(store.read_blob(&child).is_ok());
    // Unpinning the parent makes it garbage, and removing it frees the child.
    assert_eq!(store.deref_blob(&parent).unwrap(), 0);
    let dry = store.gc(&gc_now().dry_run(true)).unwrap();
    assert_eq!(
        (dry.blobs, dry.blob_bytes),
        (2, 11),
        "dry run sees the whole closure: {dry:?}"
    );
    assert!(
        store.read_blob(&parent).is_ok(),
        "a dry run removes nothing"
    );
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!((report.blobs, report.blob_bytes), (2, 11), "{report:?}");
    assert_eq!(store.refcount(&parent).unwrap(), None);
    assert_eq!(store.refcount(&child).unwrap(), None);
    assert!(store.read_blob(&child).is_err());

    // unlink releases too.
    let a = store.put_blob(Algorithm::Sha256, &b"a"[..]).unwrap();
    let b = store.put_blob(Algorithm::Sha256, &b"b"[..]).unwrap();
    store.link_blobs(&a, &b).unwrap();
    store.deref_blob(&b).unwrap();
    store.unlink_blobs(&a, &b).unwrap();
    assert_eq!(store.refcount(&b).unwrap(), Some(0));
    assert_eq!(store.gc(&gc_now()).unwrap().blobs, 1);
    assert!(
        store
            .fsck(&FsckOptions::default())
            .unwrap()
            .problems
            .is_empty()
    );
}

#[test]
fn images_hold_their_blobs_and_share_them() {
    let t = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    // Same manifest, different rootfs: the manifest blob is shared.
    let one = AciBuilder::image("example.com/shared", &[("version", "1")], b"one");
    let two = AciBuilder::image("example.com/shared", &[("version", "1")], b"two");
    let p1 = write_file(inputs.path(), "1.aci", &one);
    let p2 = write_file(inputs.path(), "2.aci", &two);
    t.ok(&["import", p1.to_str().unwrap(), p2.to_str().unwrap()]);
    let store = t.open();
    let k1: Digest = sha512_key(&one).parse().unwrap();
    let k2: Digest = sha512_key(&two).parse().unwrap();
    let manifest = store.image(&k1).unwrap().manifest;
    assert_eq!(manifest, store.image(&k2).unwrap().manifest);
    assert_eq!(store.refcount(&manifest).unwrap(), Some(2));
    assert_eq!(store.refcount(&k1).unwrap(), Some(1));

    // A pin keeps an image's blob after the image goes.
    store.ref_blob(&k1).unwrap();
    t.ok(&["rm", &k1.to_string()]);
    assert_eq!(store.refcount(&manifest).unwrap(), Some(1));
    assert_eq!(store.refcount(&k1).unwrap(), Some(1));
    let out = t.ok(&["gc", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["blobs"], 0, "nothing is garbage yet: {report}");

    store.deref_blob(&k1).unwrap();
    t.ok(&["rm", &k2.to_string()]);
    let manifest_len = store.read_blob(&manifest).unwrap().len();
    let report: serde_json::Value =
        serde_json::from_str(&t.ok(&["gc", "--json", "--dry-run"])).unwrap();
    assert_eq!(report["blobs"], 3, "{report}");
    let report: serde_json::Value = serde_json::from_str(&t.ok(&["gc", "--json"])).unwrap();
    assert_eq!(report["blobs"], 3, "{report}");
    assert_eq!(
        report["blob_bytes"],
        (one.len() + two.len() + manifest_len) as u64,
        "{report}"
    );
    let human = t.ok(&["gc"]);
    assert!(human.contains("freed"), "a summary: {human}");
}

#[test]
fn gc_sweeps_old_orphans_and_temp_files_and_checkpoints() {
    let t = TestStore::new();
    let store = t.open();
    let kept = store.put_blob(Algorithm::Sha256, &b"kept"[..]).unwrap();
    let tree = t.path().join("blobs/sha256");
    let orphan = |name: &[u8], age: Duration| {
        let d = Digest::of(Algorithm::Sha256, name);
        let dir = tree.join(&d.hex()[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(d.hex());
        std::fs::write(&path, name).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        path
    };
    let old = orphan(b"old", Duration::from_secs(7200));
    let young = orphan(b"young", Duration::from_secs(60));
    let temp = t.path().join("tmp/99999-1-0.tmp");
    std::fs::write(&temp, b"partial").unwrap();

    // Planted by hand, the orphans are recorded nowhere: only a walk of
    // the whole tree finds them.
    let full = GcOptions::new().full(true);
    let dry = store.gc(&full.clone().dry_run(true)).unwrap();
    assert_eq!((dry.orphans, dry.temp_files), (1, 1), "{dry:?}");
    assert!(old.exists() && temp.exists());

    // WAL frames pile up while the store is open; gc's checkpoint empties it.
    for i in 0..50u32 {
        store
            .put_blob(Algorithm::Sha256, &i.to_be_bytes()[..])
            .unwrap();
    }
    let wal = t.path().join("index.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let report = store.gc(&full).unwrap();
    assert_eq!((report.orphans, report.orphan_bytes), (1, 3), "{report:?}");
    assert_eq!((report.temp_files, report.temp_bytes), (1, 7), "{report:?}");
    assert!(!old.exists() && !temp.exists());
    assert!(young.exists(), "younger than the grace period");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL is checkpointed and truncated"
    );
    assert!(store.read_blob(&kept).is_ok());
    // The walk recorded the young orphan in an intent: a plain gc finds it.
    let report = store.gc(&gc_now()).unwrap();
    assert!(!report.full_sweep);
    assert_eq!(report.orphans, 1);
    assert!(!young.exists());
}

#[test]
fn gc_no_wait_names_the_holder() {
    let t = TestStore::new();
    t.ok(&["images"]);
    // Hold the store lock shared, as a running import does.
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(t.path().join("lock"))
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) }, 0);
    let err = t.fails(&["gc", "--no-wait"]);
    assert!(
        err.contains(&std::process::id().to_string()),
        "names our pid: {err}"
    );
    // Without --no-wait, gc waits for the import, then runs.
    let mut waiting = std::process::Command::new(env!("CARGO_BIN_EXE_imgstore"))
        .arg("--store")
        .arg(t.path())
        .arg("gc")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "gc waits for the lock"
    );
    drop(lock);
    assert!(waiting.wait().unwrap().success());
    t.ok(&["gc", "--no-wait"]);
}
