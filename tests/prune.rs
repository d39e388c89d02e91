//! `prune --unused-for D [--keep N]` and the last-use time it reads, which
//! every command that uses an image updates.

mod common;

use common::{AciBuilder, TestStore, sha512_key, write_file};

const DAY_MICROS: i64 = 86_400_000_000;

/// Moves an image's last use `days` back.
fn age(store: &TestStore, key: &str, days: i64) {
    let conn = rusqlite::Connection::open(store.path().join("index.db")).unwrap();
    conn.execute(
        "UPDATE images SET last_used = last_used - ?1, imported_at = imported_at - ?1 WHERE key = ?2",
        rusqlite::params![days * DAY_MICROS, key],
    )
    .unwrap();
}

fn last_used(store: &TestStore, key: &str) -> i64 {
    let conn = rusqlite::Connection::open(store.path().join("index.db")).unwrap();
    conn.query_row("SELECT last_used FROM images WHERE key = ?", [key], |r| {
        r.get(0)
    })
    .unwrap()
}

fn keys(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut keys: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

struct Images {
    store: TestStore,
    _inputs: tempfile::TempDir,
    /// `a` versions 1..=3 then `b` versions 1..=2, oldest first per name.
    a: Vec<String>,
    b: Vec<String>,
}

fn images() -> Images {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let import = |name: &str, version: usize| {
        let tar = AciBuilder::image(name, &[("version", &version.to_string())], name.as_bytes());
        let path = write_file(
            inputs.path(),
            &format!("{}-{version}.aci", name.replace('/', "_")),
            &tar,
        );
        store.ok(&["import", path.to_str().unwrap()]);
        sha512_key(&tar)
    };
    let a: Vec<String> = (1..=3).map(|v| import("example.com/a", v)).collect();
    let b: Vec<String> = (1..=2).map(|v| import("example.com/b", v)).collect();
    // Older versions were imported (and last used) longer ago.
    for (i, key) in a.iter().enumerate() {
        age(&store, key, 10 * (3 - i as i64));
    }
    for (i, key) in b.iter().enumerate() {
        age(&store, key, 10 * (2 - i as i64));
    }
    Images {
        store,
        _inputs: inputs,
        a,
        b,
    }
}

#[test]
fn prune_removes_unused_images_keeping_the_newest() {
    let t = images();
    // Unused for 15 days: a1 (30d), a2 (20d), b1 (20d).
    let removed = keys(
        &t.store
            .ok(&["prune", "--unused-for", "15d", "--keep", "1", "--json"]),
    );
    let mut expected = vec![t.a[0].clone(), t.a[1].clone(), t.b[0].clone()];
    expected.sort();
    assert_eq!(removed, expected);
    let left = keys(&t.store.ok(&["images", "--json"]));
    let mut expected = vec![t.a[2].clone(), t.b[1].clone()];
    expected.sort();
    assert_eq!(left, expected);
    // Their blobs are garbage now, and gc frees them.
    let report: serde_json::Value = serde_json::from_str(&t.store.ok(&["gc", "--json"])).unwrap();
    assert!(report["blobs"].as_u64().unwrap() >= 3, "{report}");
    assert!(t.store.cmd(&["fsck"]).output().unwrap().status.success());
}

#[test]
fn keep_protects_the_newest_of_each_name() {
    let t = images();
    // Everything is unused for a day, but --keep 2 spares a2, a3, b1, b2.
    for key in t.a.iter().chain(&t.b) {
        age(&t.store, key, 1);
    }
    let removed = keys(
        &t.store
            .ok(&["prune", "--unused-for", "1h", "--keep", "2", "--json"]),
    );
    assert_eq!(removed, vec![t.a[0].clone()]);
    // Without --keep, everything unused goes; the human output lists keys.
    let out = t.store.ok(&["prune", "--unused-for", "1h"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(
        keys(&t.store.ok(&["images", "--json"])),
        Vec::<String>::new()
    );
}

#[test]
fn every_use_of_an_image_counts() {
    let t = images();
    let (a1, a2, b1) = (t.a[0].clone(), t.a[1].clone(), t.b[0].clone());
    let before = last_used(&t.store, &a1);
    // latest by name (with a version label), manifest, cat of its blob.
    t.store
        .ok(&["latest", "example.com/a", "--label", "version=1"]);
    assert!(last_used(&t.store, &a1) > before, "latest records a use");
    let before = last_used(&t.store, &a2);
    t.store.ok(&["manifest", &a2]);
    assert!(last_used(&t.store, &a2) > before, "manifest records a use");
    let before = last_used(&t.store, &b1);
    assert!(
        t.store
            .cmd(&["cat", &b1])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        last_used(&t.store, &b1) > before,
        "cat of an image's blob records a use"
    );

    // Just used, so nothing older than 15 days is left to prune but none.
    let removed = keys(&t.store.ok(&["prune", "--unused-for", "15d", "--json"]));
    assert_eq!(removed, Vec::<String>::new());
    // Re-importing counts as a use too.
    age(&t.store, &a1, 100);
    let tar = AciBuilder::image("example.com/a", &[("version", "1")], b"example.com/a");
    let path = write_file(t._inputs.path(), "again.aci", &tar);
    t.store.ok(&["import", path.to_str().unwrap()]);
    assert_eq!(
        keys(&t.store.ok(&["prune", "--unused-for", "15d", "--json"])),
        Vec::<String>::new()
    );
}

#[test]
fn a_use_is_recorded_once_a_minute_so_hot_lookups_do_not_write() {
    let t = images();
    let a1 = t.a[0].clone();
    t.store
        .ok(&["latest", "example.com/a", "--label", "version=1"]);
    let first = last_used(&t.store, &a1);
    let index = t.store.path().join("index.db");
    let wal = t.store.path().join("index.db-wal");
    // A write would show in the WAL, or in the main file once the closing
    // process checkpoints it.
    let state = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None))
    };
    let before = (state(&index), state(&wal));
    for _ in 0..5 {
        t.store
            .ok(&["latest", "example.com/a", "--label", "version=1"]);
        t.store.ok(&["manifest", &a1]);
    }
    assert_eq!(last_used(&t.store, &a1), first, "used within the minute");
    assert_eq!(
        (state(&index), state(&wal)),
        before,
        "lookups of a recently used image write nothing"
    );
    // An hour later the next use is recorded again.
    let conn = rusqlite::Connection::open(&index).unwrap();
    conn.execute(
        "UPDATE images SET last_used = last_used - 3600000000 WHERE key = ?1",
        [&a1],
    )
    .unwrap();
    drop(conn);
    let aged = last_used(&t.store, &a1);
    t.store.ok(&["manifest", &a1]);
    assert!(
        last_used(&t.store, &a1) > aged,
        "an hour-old use is renewed"
    );
}
