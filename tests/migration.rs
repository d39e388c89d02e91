//! Schema evolution: a store written with the version-1 schema (the first
//! release's `migrations/0001_initial.sql`, kept frozen in
//! `tests/data/schema-v1.sql`) opens with this binary, is migrated to the
//! current version, and keeps every image, blob, tag and count. A store
//! from a newer imgstore is refused untouched.

mod common;

use std::path::Path;

use common::{AciBuilder, TestStore, manifest};
use imgstore::{Algorithm, Digest, SCHEMA_VERSION};

const SCHEMA_V1: &str = include_str!("data/schema-v1.sql");

fn put_file(store: &Path, digest: &Digest, bytes: &[u8]) {
    let path = common::blob_file(store, digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes a version-1 store by hand, as the first release left it: one ACI
/// image with its two blobs, a label, a tag and a pinned blob.
fn v1_store(dir: &Path) -> (Digest, Digest) {
    let json = manifest("example.com/old", &[("version", "1.0"), ("os", "linux")]);
    let tar = AciBuilder::new()
        .manifest(&json)
        .dir("rootfs")
        .entry("rootfs/f", b"old")
        .build();
    let key = Digest::of(Algorithm::Sha512, &tar);
    let man = Digest::of(Algorithm::Sha256, json.as_bytes());
    let pinned = Digest::of(Algorithm::Sha256, b"pinned");
    put_file(dir, &key, &tar);
    put_file(dir, &man, json.as_bytes());
    put_file(dir, &pinned, b"pinned");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();

    let conn = rusqlite::Connection::open(dir.join("index.db")).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let now = 1_700_000_000_000_000i64;
    let blob = |d: &Digest, size: usize| {
        conn.execute(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
            rusqlite::params![d.to_string(), size as i64, now],
        )
        .unwrap();
        conn.last_insert_rowid()
    };
    let (tar_id, man_id, pin_id) = (
        blob(&key, tar.len()),
        blob(&man, json.len()),
        blob(&pinned, 6),
    );
    conn.execute(
        "INSERT INTO images (key, format, name, manifest, imported_at, last_used, latest, size) \
         VALUES (?, 'aci', 'example.com/old', ?, ?, ?, 1, ?)",
        rusqlite::params![
            key.to_string(),
            man_id,
            now,
            now,
            (tar.len() + json.len()) as i64
        ],
    )
    .unwrap();
    let image_id = conn.last_insert_rowid();
    for (k, v) in [("version", "1.0"), ("os", "linux")] {
        conn.execute(
            "INSERT INTO labels VALUES (?, ?, ?)",
            rusqlite::params![image_id, k, v],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO tags VALUES ('old:stable', ?, ?)",
        rusqlite::params![image_id, now],
    )
    .unwrap();
    for id in [tar_id, man_id] {
        conn.execute(
            "INSERT INTO refs (owner_kind, owner, blob_id) VALUES (1, ?, ?)",
            rusqlite::params![image_id, id],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO refs (owner_kind, owner, blob_id, n) VALUES (4, 0, ?, 2)",
        [pin_id],
    )
    .unwrap();
    (key, pinned)
}

#[test]
fn a_version_1_store_opens_and_keeps_everything() {
    let t = TestStore::new();
    let (key, pinned) = v1_store(t.path());

    // Every query works on the old store, and fsck finds it consistent.
    assert_eq!(t.ok(&["resolve", "old:stable"]).trim(), key.to_string());
    assert_eq!(t.ok(&["latest", "example.com/old"]).trim(), key.to_string());
    assert_eq!(
        t.ok(&["resolve", "example.com/old:1.0,os=linux"]).trim(),
        key.to_string()
    );
    let out = t.cmd(&["fsck"]).output().unwrap();
    assert!(
        out.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        t.cmd(&["cat", &key.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    );

    let conn = rusqlite::Connection::open(t.path().join("index.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION, "migrated to the current schema");
    // Version 2: the foreign keys into blobs are indexed, so deleting a
    // blob row (gc) checks its referrers by search, not by a table scan.
    for (sql, index) in [
        (
            "SELECT 1 FROM images WHERE manifest = 1",
            "images_by_manifest",
        ),
        ("SELECT 1 FROM remotes WHERE blob_id = 1", "remotes_by_blob"),
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains(index)), "{sql}: {plan:?}");
    }
    drop(conn);

    // Counts survived, and the store keeps working: gc keeps what is held,
    // new imports and removals work.
    let store = t.open();
    assert_eq!(store.refcount(&pinned).unwrap(), Some(2));
    assert_eq!(store.refcount(&key).unwrap(), Some(1));
    t.ok(&["gc", "--grace", "0"]);
    assert_eq!(store.read_blob(&pinned).unwrap(), b"pinned");
    let inputs = tempfile::tempdir().unwrap();
    let new = common::write_file(
        inputs.path(),
        "new.aci",
        &AciBuilder::image("example.com/new", &[], b"new"),
    );
    t.ok(&["import", new.to_str().unwrap()]);
    t.ok(&["rm", "example.com/old"]);
    let report: serde_json::Value = serde_json::from_str(&t.ok(&["gc", "--json"])).unwrap();
    assert_eq!(report["blobs"], 2, "{report}");
    assert!(t.cmd(&["fsck"]).output().unwrap().status.success());
}

#[test]
fn the_frozen_v1_schema_is_the_first_migration() {
    // The first migration must never change once released: stores in the
    // field were made by it.
    let current = include_str!("../migrations/0001_initial.sql");
    assert_eq!(
        current, SCHEMA_V1,
        "migrations/0001_initial.sql was edited; add a new migration instead"
    );
}

#[test]
fn a_store_from_a_newer_imgstore_is_refused_untouched() {
    let t = TestStore::new();
    v1_store(t.path());
    let conn = rusqlite::Connection::open(t.path().join("index.db")).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let before = std::fs::read(t.path().join("index.db")).unwrap();
    let err = t.fails(&["images"]);
    assert!(err.contains("newer"), "{err}");
    assert_eq!(std::fs::read(t.path().join("index.db")).unwrap(), before);
    assert!(
        !t.path().join("index.db-wal").exists(),
        "not even opened for writing"
    );
    assert!(
        !t.path().join("imgstore.id").exists(),
        "a refused store gets no marker"
    );
}

fn marker_id(store: &Path) -> String {
    let marker = std::fs::read_to_string(store.join("imgstore.id")).unwrap();
    assert!(marker.starts_with("imgstore store v1\n"), "{marker}");
    marker.lines().nth(1).unwrap()["id ".len()..].to_string()
}

fn index_id(store: &Path) -> String {
    let conn = rusqlite::Connection::open(store.join("index.db")).unwrap();
    conn.query_row("SELECT store_id FROM store_identity", [], |r| r.get(0))
        .unwrap()
}

/// A store made before stores had markers (no `imgstore.id`, a `tmp/`
/// with a leftover temp file, a `blobs/` tree) is a store all the same: its
/// index says so. It is adopted once: it gets a marker, its index the same
/// id, and nothing in it is lost.
#[test]
fn a_store_from_before_markers_is_adopted_with_one_id() {
    let t = TestStore::new();
    let (key, pinned) = v1_store(t.path());
    std::fs::write(t.path().join("tmp/123-0-0.tmp"), b"left by a killed import").unwrap();
    assert!(!t.path().join("imgstore.id").exists());

    assert_eq!(t.ok(&["resolve", "old:stable"]).trim(), key.to_string());
    let id = marker_id(t.path());
    assert_eq!(id.len(), 32);
    assert_eq!(index_id(t.path()), id);

    // Opened again, it is the same store; it works as any other.
    t.ok(&["gc", "--grace", "0"]);
    assert!(!t.path().join("tmp/123-0-0.tmp").exists(), "gc swept tmp/");
    assert_eq!(marker_id(t.path()), id);
    assert_eq!(index_id(t.path()), id);
    assert_eq!(t.open().read_blob(&pinned).unwrap(), b"pinned");
    assert!(t.cmd(&["fsck"]).output().unwrap().status.success());
}

fn gc_json(t: &TestStore) -> serde_json::Value {
    serde_json::from_str(&t.ok(&["gc", "--json", "--grace", "0"])).unwrap()
}

#[test]
fn the_first_gc_of_a_migrated_store_walks_the_tree_once() {
    let t = TestStore::new();
    let (key, pinned) = v1_store(t.path());
    // Left by the old version, which wrote no intents: only a walk finds it.
    let old = Digest::of(Algorithm::Sha256, b"left by an old imgstore");
    put_file(t.path(), &old, b"left by an old imgstore");

    // Migration 0004 marks the store as needing one walk.
    t.ok(&["images"]);
    let conn = rusqlite::Connection::open(t.path().join("index.db")).unwrap();
    let needed: i64 = conn
        .query_row("SELECT full_sweep_needed FROM gc_state", [], |r| r.get(0))
        .unwrap();
    assert_eq!(needed, 1);
    drop(conn);

    let report = gc_json(&t);
    assert_eq!(report["full_sweep"], true, "{report}");
    assert_eq!(report["orphans"], 1, "{report}");
    assert!(!common::blob_file(t.path(), &old).exists());
    for kept in [&key, &pinned] {
        assert!(common::blob_file(t.path(), kept).exists());
    }

    // The second gc does not walk: an orphan planted now stays (fsck, which
    // walks, still sees it).
    let later = Digest::of(Algorithm::Sha256, b"planted after the walk");
    put_file(t.path(), &later, b"planted after the walk");
    let report = gc_json(&t);
    assert_eq!(report["full_sweep"], false, "{report}");
    assert_eq!(report["orphans"], 0, "{report}");
    assert!(common::blob_file(t.path(), &later).exists());
    let out = t.cmd(&["fsck", "--json"]).output().unwrap();
    let fsck: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orphans: Vec<_> = fsck["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "orphan")
        .map(|p| p["key"].clone())
        .collect();
    assert_eq!(orphans, vec![serde_json::json!(later.to_string())]);
}

#[test]
fn a_new_store_needs_no_walk() {
    let t = TestStore::new();
    t.ok(&["images"]);
    let conn = rusqlite::Connection::open(t.path().join("index.db")).unwrap();
    let needed: i64 = conn
        .query_row("SELECT full_sweep_needed FROM gc_state", [], |r| r.get(0))
        .unwrap();
    assert_eq!(needed, 0);
    drop(conn);
    assert_eq!(gc_json(&t)["full_sweep"], false);
}
