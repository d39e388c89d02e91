//! The command-line contract of DESIGN.md §5: output forms, exit codes,
//! the default store, and README's first command.

mod common;

use common::{TestStore, fixture};

#[test]
fn readme_main_command_works_on_the_default_store() {
    // README: `imgstore import tests/data/hello.aci && imgstore latest example.com/hello`
    // with no --store: the store comes from $IMGSTORE_DIR, else the data dir.
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("imgstore")
            .unwrap()
            .args(args)
            .env_remove("IMGSTORE_DIR")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home.path())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let key = run(&["import", "tests/data/hello.aci"]);
    let latest = run(&["latest", "example.com/hello"]);
    assert_eq!(key, latest);
    assert!(home.path().join(".local/share/imgstore/index.db").exists());

    let env_store = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("imgstore")
        .unwrap()
        .args(["import", fixture("hello.aci").to_str().unwrap()])
        .env("IMGSTORE_DIR", env_store.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(env_store.path().join("index.db").exists());
}

#[test]
fn every_listing_command_speaks_json() {
    let t = TestStore::new();
    let key = t.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    let key = key.trim();
    for args in [
        vec!["import", "--json", fixture("hello.aci").to_str().unwrap()],
        vec!["images", "--json"],
        vec!["latest", "--json", "example.com/hello"],
        vec!["resolve", "--json", "example.com/hello"],
        vec!["inspect", "--json", key],
        vec!["tag", "--json", key, "hello:1"],
        vec!["untag", "--json", "hello:1"],
        vec!["remotes", "--json"],
        vec!["du", "--json"],
        vec!["gc", "--json", "--dry-run"],
        vec!["rm", "--json", key],
    ] {
        let out = t.ok(&args);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert!(!v.is_null(), "{args:?}");
    }
}

#[test]
fn inspect_lists_blobs_with_sizes_and_counts() {
    let t = TestStore::new();
    let key = t.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["inspect", "--json", key.trim()])).unwrap();
    assert_eq!(v["key"], key.trim());
    assert_eq!(v["name"], "example.com/hello");
    let blobs = v["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 2);
    let total: u64 = blobs.iter().map(|b| b["size"].as_u64().unwrap()).sum();
    assert_eq!(v["size"].as_u64().unwrap(), total);
    assert!(blobs.iter().all(|b| b["refcount"] == 1));
    let human = t.ok(&["inspect", key.trim()]);
    assert!(
        human.contains("version=1.0.0") && human.contains("Blobs:"),
        "{human}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_describes_every_command() {
    let t = TestStore::new();
    let out = t.cmd(&["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = t.cmd(&["gc", "--grace", "forever"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = t.ok(&["--help"]);
    for cmd in [
        "import", "images", "latest", "resolve", "cat", "manifest", "inspect", "tag", "untag",
        "rm", "gc", "du",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "help lacks {cmd}: {help}"
        );
    }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    use std::io::Read;
    let t = TestStore::new();
    // A blob big enough that `cat` is still writing when the reader leaves.
    let tar = common::AciBuilder::image("example.com/big", &[], &vec![9u8; 4 << 20]);
    let files = tempfile::tempdir().unwrap();
    let path = common::write_file(files.path(), "big.aci", &tar);
    let key = t.ok(&["import", path.to_str().unwrap()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imgstore"))
        .args(["--store", t.path().to_str().unwrap(), "cat", key.trim()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then drop: pipe closed
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "cat into a closed pipe failed: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_store_from_a_newer_imgstore_is_refused_untouched() {
    // A rollback-journal database, as a newer imgstore might write: even
    // switching it to WAL would be a change.
    let t = TestStore::new();
    let db = t.path().join("index.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE future (x)").unwrap();
    conn.pragma_update(None, "user_version", imgstore::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    let err = t.fails(&["images"]);
    assert!(err.contains("newer") && err.contains("upgrade"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!t.path().join("index.db-wal").exists());
}

#[test]
fn a_closed_stdout_is_not_an_error_in_any_output_form() {
    // `imgstore images --json | head -c1`: the reader goes away and the
    // write fails with EPIPE (the SIGPIPE signal is ignored). A pipe whose
    // read end is already closed makes the first write fail every time.
    let s = common::store();
    s.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    for args in [
        &["images"][..],
        &["images", "--json"],
        &["inspect", "example.com/hello", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("imgstore"))
            .arg("--store")
            .arg(s.path())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
