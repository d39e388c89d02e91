//! The store's own directory, defended (issue 13, defects 4, 5 and 10):
//!
//! - a directory that is not a store (a home directory with `tmp/` and
//!   `blobs/` folders) is refused, never adopted, and nothing in it is
//!   deleted by gc or `fsck --repair`; an empty or missing one becomes a
//!   store, which then carries its marker;
//! - a store whose own directories (`tmp/`, `intents/`, `blobs/`, a shard,
//!   `tmp/partial`) or files (`index.db`, `lock`) are symbolic links is
//!   refused, on open and again when a sweep starts (a link swapped in
//!   under an open store); a link found *inside* the store's directories
//!   is removed as a link, never followed;
//! - an index linked or copied from another store is refused, and the
//!   other store is left untouched.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use common::{AciBuilder, TestStore, write_file};
use imgstore::{Error, FsckOptions, GcOptions, ImportOptions, NotAStoreReason, Store};

/// Every entry under `dir` without following links: files with their
/// bytes, directories, links with their targets.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(rel, format!("-> {}", target.display()));
        } else if meta.is_dir() {
            out.insert(rel, "<dir>".into());
            walk(root, &path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

fn imgstore() -> Command {
    let mut cmd = Command::cargo_bin("imgstore").unwrap();
    cmd.env_remove("IMGSTORE_FAILPOINT")
        .env_remove("IMGSTORE_DIR");
    cmd
}

/// Runs `imgstore --store DIR ARGS…`.
fn run(store: &Path, args: &[&str]) -> Output {
    imgstore()
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// The one error line of a command that must fail with exit code 1.
fn error_line(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(out.status.code(), Some(1), "{what} must fail: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: one error line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    stderr
}

/// A digest-like name, as a file in a user's `blobs/` folder might have.
const HEX: &str = "ab01c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";

/// A home directory: dotfiles, and folders that happen to be called as
/// a store's are.
fn fake_home(dir: &Path) {
    std::fs::create_dir_all(dir.join("tmp/build")).unwrap();
    std::fs::write(dir.join("tmp/notes.txt"), "my notes").unwrap();
    std::fs::write(dir.join("tmp/build/out.o"), "object").unwrap();
    std::fs::create_dir_all(dir.join("blobs/sha256/ab")).unwrap();
    std::fs::write(dir.join("blobs/sha256/ab").join(HEX), "not a blob").unwrap();
    std::fs::write(dir.join("blobs/photo.jpg"), "jpeg").unwrap();
    std::fs::create_dir_all(dir.join("intents")).unwrap();
    std::fs::write(dir.join("intents/todo"), "sha256:".to_string() + HEX).unwrap();
    std::fs::write(dir.join(".bashrc"), "export PS1=$").unwrap();
}

/// Every command a user might run against the wrong directory.
const COMMANDS: &[&[&str]] = &[
    &["images"],
    &["gc", "--grace", "0"],
    &["gc", "--full", "--grace", "0"],
    &["fsck", "--repair"],
    &["rm", "example.com/x"],
    &["du"],
];

#[test]
fn a_directory_that_is_not_a_store_is_refused_and_nothing_in_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fake_home(&home);
    let aci = write_file(
        dir.path(),
        "x.aci",
        &AciBuilder::image("example.com/x", &[], b"x"),
    );
    let before = tree(&home);
    let mut commands: Vec<Vec<&str>> = COMMANDS.iter().map(|c| c.to_vec()).collect();
    commands.push(vec!["import", aci.to_str().unwrap()]);
    for args in &commands {
        for by_env in [false, true] {
            let out = if by_env {
                imgstore()
                    .env("IMGSTORE_DIR", &home)
                    .args(args)
                    .output()
                    .unwrap()
            } else {
                run(&home, args)
            };
            let err = error_line(&out, &format!("{args:?} (env: {by_env})"));
            assert!(
                err.contains(&format!("{} is not an imgstore store", home.display())),
                "{args:?}: {err}"
            );
            assert_eq!(tree(&home), before, "{args:?} changed the directory");
        }
    }

    // Through the library: the kind says why.
    match Store::open(&home) {
        Err(Error::NotAStore { path, reason }) => {
            assert_eq!(path, home);
            assert_eq!(reason, NotAStoreReason::NotEmpty);
        }
        other => panic!("opened a home directory: {:?}", other.err()),
    }
    assert_eq!(tree(&home), before);
}

#[test]
fn an_index_db_that_is_not_imgstore_s_does_not_make_a_store() {
    let dir = tempfile::tempdir().unwrap();
    // Another program's SQLite database called index.db, and a file that
    // is not SQLite at all.
    let sqlite = dir.path().join("app");
    std::fs::create_dir_all(sqlite.join("tmp")).unwrap();
    std::fs::write(sqlite.join("tmp/cache"), "cached").unwrap();
    let conn = rusqlite::Connection::open(sqlite.join("index.db")).unwrap();
    conn.execute_batch("CREATE TABLE pages (url TEXT); INSERT INTO pages VALUES ('x');")
        .unwrap();
    drop(conn);
    let text = dir.path().join("docs");
    std::fs::create_dir_all(&text).unwrap();
    std::fs::write(text.join("index.db"), "an index of my documents").unwrap();
    for home in [&sqlite, &text] {
        let before = tree(home);
        for args in COMMANDS {
            let err = error_line(&run(home, args), &format!("{args:?}"));
            assert!(
                err.contains("is not an imgstore store: its index.db is not an imgstore index"),
                "{err}"
            );
        }
        assert_eq!(tree(home), before);
    }
}

#[test]
fn an_empty_or_missing_directory_becomes_a_store_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("a/b/store");
    // An empty filesystem's root has lost+found.
    let fresh_fs = dir.path().join("mnt");
    std::fs::create_dir_all(fresh_fs.join("lost+found")).unwrap();
    for store in [&empty, &missing, &fresh_fs] {
        assert_eq!(run(store, &["images"]).status.code(), Some(0));
        let marker = std::fs::read_to_string(store.join("imgstore.id")).unwrap();
        let mut lines = marker.lines();
        assert_eq!(lines.next(), Some("imgstore store v1"), "{marker}");
        let id = lines
            .next()
            .unwrap()
            .strip_prefix("id ")
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 32, "{marker}");
        // The index knows it belongs to this store.
        let conn = rusqlite::Connection::open(store.join("index.db")).unwrap();
        let recorded: String = conn
            .query_row("SELECT store_id FROM store_identity", [], |r| r.get(0))
            .unwrap();
        assert_eq!(recorded, id);
        // A second open finds the same store.
        assert_eq!(run(store, &["gc"]).status.code(), Some(0));
        assert_eq!(
            std::fs::read_to_string(store.join("imgstore.id")).unwrap(),
            marker
        );
    }
}

#[test]
fn stores_created_at_once_by_many_processes_agree_on_one_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_imgstore"))
                .arg("--store")
                .arg(&store)
                .arg("images")
                .env_remove("IMGSTORE_DIR")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let marker = std::fs::read_to_string(store.join("imgstore.id")).unwrap();
    let id = marker.lines().nth(1).unwrap().strip_prefix("id ").unwrap();
    let conn = rusqlite::Connection::open(store.join("index.db")).unwrap();
    let recorded: String = conn
        .query_row("SELECT store_id FROM store_identity", [], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded, id);
    let leftovers: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("imgstore.id."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_marker_or_an_index_without_one_is_refused() {
    let t = TestStore::new();
    t.ok(&["images"]);
    let marker = t.path().join("imgstore.id");
    let good = std::fs::read(&marker).unwrap();

    std::fs::write(&marker, b"imgstore store v9\nid 00\n").unwrap();
    let err = t.fails(&["gc"]);
    assert!(err.contains("its marker imgstore.id is not one"), "{err}");

    // The index records a store id, the directory has no marker: the
    // index came from elsewhere (or the marker was deleted).
    std::fs::remove_file(&marker).unwrap();
    let before = tree(t.path());
    let err = t.fails(&["fsck", "--repair"]);
    assert!(
        err.contains("its index.db belongs to a store, but it has no marker"),
        "{err}"
    );
    assert_eq!(tree(t.path()), before);

    std::fs::write(&marker, good).unwrap();
    t.ok(&["fsck"]);
}

/// A directory full of files that a sweep through a link would delete.
fn canary(dir: &Path) -> PathBuf {
    let canary = dir.join("canary");
    std::fs::create_dir_all(canary.join("sub")).unwrap();
    std::fs::write(canary.join("precious.txt"), "keep me").unwrap();
    std::fs::write(canary.join("1234-0-00000000.tmp"), "looks like a temp file").unwrap();
    std::fs::write(canary.join("9-9-9.intent"), "sha256:".to_string() + HEX).unwrap();
    std::fs::write(canary.join(HEX), "looks like a blob").unwrap();
    std::fs::write(canary.join("sub/deep"), "deep").unwrap();
    canary
}

/// A store with one image, and its garbage (a removed image) for gc.
fn store_with_garbage() -> (TestStore, tempfile::TempDir) {
    let t = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    for name in ["kept", "gone"] {
        let aci = write_file(
            inputs.path(),
            &format!("{name}.aci"),
            &AciBuilder::image(&format!("example.com/{name}"), &[], name.as_bytes()),
        );
        t.ok(&["import", aci.to_str().unwrap()]);
    }
    t.ok(&["rm", "example.com/gone"]);
    (t, inputs)
}

/// Replaces a directory of the store by a link to `target`.
fn replace_by_link(dir: &Path, target: &Path) {
    std::fs::rename(dir, dir.with_extension("moved")).unwrap();
    symlink(target, dir).unwrap();
}

#[test]
fn a_store_whose_own_directories_are_links_is_refused_and_the_target_kept() {
    let shard_of_kept = {
        let (t, _inputs) = store_with_garbage();
        let key = t.ok(&["resolve", "example.com/kept"]);
        let hex = key.trim().split_once(':').unwrap().1.to_string();
        format!("blobs/sha512/{}", &hex[..2])
    };
    for own in [
        "tmp",
        "intents",
        "blobs",
        "blobs/sha512",
        &shard_of_kept,
        "tmp/partial",
    ] {
        let (t, _inputs) = store_with_garbage();
        let outside = tempfile::tempdir().unwrap();
        let canary = canary(outside.path());
        let before = tree(&canary);
        let dir = t.path().join(own);
        if own == "tmp/partial" {
            std::fs::create_dir_all(&dir).unwrap();
        }
        if own.starts_with("blobs/sha512/") {
            // The shard of a live image: the files go along to the canary,
            // so that a walk through the link would find blobs there too.
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), canary.join(entry.file_name())).unwrap();
            }
        }
        let before = if own.starts_with("blobs/sha512/") {
            tree(&canary)
        } else {
            before
        };
        replace_by_link(&dir, &canary);
        for args in [
            &["images"][..],
            &["gc", "--grace", "0"],
            &["gc", "--full", "--grace", "0"],
            &["fsck", "--repair"],
        ] {
            let err = t.fails(args);
            assert!(
                err.contains(&format!("{} is a symbolic link", dir.display())),
                "{own}: {args:?}: {err}"
            );
        }
        assert_eq!(tree(&canary), before, "{own}: the link's target changed");
    }
}

#[test]
fn a_link_swapped_in_under_an_open_store_is_met_when_the_sweep_starts() {
    for own in ["tmp", "intents", "blobs/sha512"] {
        let (t, _inputs) = store_with_garbage();
        let store = t.open();
        let outside = tempfile::tempdir().unwrap();
        let canary = canary(outside.path());
        let before = tree(&canary);
        let dir = t.path().join(own);
        replace_by_link(&dir, &canary);
        let gc = store.gc(&GcOptions::new().grace(std::time::Duration::ZERO).full(true));
        assert!(
            matches!(&gc, Err(Error::StoreLink { path }) if *path == dir),
            "{own}: gc {gc:?}"
        );
        let fsck = store.fsck(&FsckOptions::new().repair(true));
        assert!(
            matches!(&fsck, Err(Error::StoreLink { path }) if *path == dir),
            "{own}: fsck {fsck:?}"
        );
        assert_eq!(tree(&canary), before, "{own}: the link's target changed");
    }
}

#[test]
fn an_import_never_writes_through_a_linked_shard() {
    let t = TestStore::new();
    t.ok(&["images"]);
    let store = t.open();
    let outside = tempfile::tempdir().unwrap();
    let canary = canary(outside.path());
    let before = tree(&canary);
    // Every shard an import of this image could need is a link.
    for alg in ["sha256", "sha512"] {
        for n in 0..=255u8 {
            symlink(&canary, t.path().join(format!("blobs/{alg}/{n:02x}"))).unwrap();
        }
    }
    let inputs = tempfile::tempdir().unwrap();
    let aci = write_file(
        inputs.path(),
        "x.aci",
        &AciBuilder::image("example.com/x", &[], b"x"),
    );
    let err = store.import(&aci, &ImportOptions::new()).unwrap_err();
    assert!(matches!(err, Error::StoreLink { .. }), "{err}");
    assert_eq!(tree(&canary), before);
    assert!(store.images(None, &[]).unwrap().is_empty());
}

#[test]
fn links_inside_the_store_are_removed_as_links_never_followed() {
    let (t, _inputs) = store_with_garbage();
    let outside = tempfile::tempdir().unwrap();
    let canary = canary(outside.path());
    let before = tree(&canary);
    // A link in tmp/ (gc's temp sweep), one in tmp/partial (the grace
    // sweep), a stray one in blobs/ and one with a blob's name in a shard
    // (gc --full and fsck --repair).
    symlink(&canary, t.path().join("tmp/evil")).unwrap();
    std::fs::create_dir_all(t.path().join("tmp/partial")).unwrap();
    symlink(&canary, t.path().join("tmp/partial/evil")).unwrap();
    symlink(&canary, t.path().join("blobs/evil")).unwrap();
    std::fs::create_dir_all(t.path().join("blobs/sha256/ab")).unwrap();
    symlink(canary.join(HEX), t.path().join("blobs/sha256/ab").join(HEX)).unwrap();

    let out = run(t.path(), &["fsck", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orphans = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "orphan")
        .count();
    // tmp/evil, blobs/evil and the shard's link; tmp/partial is gc's.
    assert_eq!(orphans, 3, "{report}");
    t.ok(&["fsck", "--repair"]);
    for link in ["tmp/evil", "blobs/evil"] {
        assert!(
            std::fs::symlink_metadata(t.path().join(link)).is_err(),
            "{link}"
        );
    }
    t.ok(&["gc", "--grace", "0"]);
    assert!(std::fs::symlink_metadata(t.path().join("tmp/partial/evil")).is_err());
    assert_eq!(tree(&canary), before);
    t.ok(&["fsck"]);
    t.ok(&["resolve", "example.com/kept"]);
}

#[test]
fn a_store_whose_own_files_are_links_is_refused() {
    for own in ["index.db", "lock", "imgstore.id"] {
        let t = TestStore::new();
        // gc takes the lock, so the lock file is there.
        t.ok(&["gc"]);
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        let path = t.path().join(own);
        std::fs::rename(&path, &target).unwrap();
        symlink(&target, &path).unwrap();
        let before = std::fs::read(&target).unwrap();
        let err = t.fails(&["gc"]);
        assert!(
            err.contains(&format!("{} is a symbolic link", path.display())),
            "{own}: {err}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), before, "{own}");
    }
}

/// Store A with an image; store B, a store of its own.
fn two_stores() -> (TestStore, TestStore, tempfile::TempDir) {
    let a = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let aci = write_file(
        inputs.path(),
        "a.aci",
        &AciBuilder::image("example.com/a", &[], b"a"),
    );
    a.ok(&["import", aci.to_str().unwrap()]);
    let b = TestStore::new();
    b.ok(&["images"]);
    (a, b, inputs)
}

#[test]
fn an_index_linked_or_copied_from_another_store_is_refused() {
    for how in ["symlink", "hard link", "copy"] {
        let (a, b, _inputs) = two_stores();
        let a_index = a.path().join("index.db");
        let b_index = b.path().join("index.db");
        for f in ["index.db", "index.db-wal", "index.db-shm"] {
            let _ = std::fs::remove_file(b.path().join(f));
        }
        match how {
            "symlink" => symlink(&a_index, &b_index).unwrap(),
            "hard link" => std::fs::hard_link(&a_index, &b_index).unwrap(),
            _ => {
                std::fs::copy(&a_index, &b_index).unwrap();
            }
        }
        let a_before = a.snapshot();
        for args in [
            &["images"][..],
            &["fsck", "--repair"],
            &["gc", "--grace", "0"],
        ] {
            let err = b.fails(args);
            let expected = if how == "symlink" {
                format!("{} is a symbolic link", b_index.display())
            } else {
                format!("{} belongs to another store", b_index.display())
            };
            assert!(err.contains(&expected), "{how}: {args:?}: {err}");
        }
        // A keeps its image, whole.
        assert_eq!(a.snapshot(), a_before, "{how}");
        a.ok(&["fsck"]);
        a.ok(&["resolve", "example.com/a"]);
    }
}

#[test]
fn an_index_linked_into_a_directory_without_a_marker_is_refused() {
    let (a, _b, _inputs) = two_stores();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    std::fs::hard_link(a.path().join("index.db"), c.join("index.db")).unwrap();
    let a_before = a.snapshot();
    let err = error_line(&run(&c, &["fsck", "--repair"]), "fsck --repair");
    assert!(
        err.contains("its index.db belongs to a store, but it has no marker"),
        "{err}"
    );
    assert!(!c.join("imgstore.id").exists());
    assert_eq!(a.snapshot(), a_before);
    a.ok(&["fsck"]);
}
