//! Lookups: ports of rkt's store tests (resolve, latest, re-import, remove,
//! remotes) plus the IMAGE argument order, tags and verified reads.

mod common;

use std::collections::HashMap;

use common::{AciBuilder, TestStore, fixture, write_file};
use imgstore::{Digest, Error, ImportOptions, Label, ResolveError, Store};

fn import(
    store: &Store,
    dir: &std::path::Path,
    name: &str,
    labels: &[(&str, &str)],
    content: &[u8],
) -> Digest {
    import_with(store, dir, name, labels, content, false)
}

fn import_with(
    store: &Store,
    dir: &std::path::Path,
    name: &str,
    labels: &[(&str, &str)],
    content: &[u8],
    latest: bool,
) -> Digest {
    let tar = AciBuilder::image(name, labels, content);
    let path = write_file(dir, "img.aci", &tar);
    let options = ImportOptions::new().latest(latest);
    store.import(&path, &options).unwrap().remove(0).key
}

fn resolve_err(store: &Store, arg: &str) -> ResolveError {
    match store.resolve(arg) {
        Err(Error::Resolve(e)) => e,
        Err(Error::Digest(e)) => ResolveError::Malformed(e),
        other => panic!("{arg}: expected a resolve error, got {other:?}"),
    }
}

#[test]
fn resolve_full_key_rkt_key_and_unique_prefix() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    let key = import(&s, files.path(), "example.com/app", &[], b"one");
    let hex = key.hex();
    // Full key in both forms.
    assert_eq!(s.resolve(&key.to_string()).unwrap(), key);
    assert_eq!(s.resolve(&key.appc()).unwrap(), key);
    // rkt's keys: "sha512-" and the first 64 hex digits.
    assert_eq!(s.resolve(&format!("sha512-{}", &hex[..64])).unwrap(), key);
    // Unique prefixes, with and without the algorithm, any case.
    assert_eq!(s.resolve(&format!("sha512-{}", &hex[..2])).unwrap(), key);
    assert_eq!(s.resolve(&hex[..8]).unwrap(), key);
    assert_eq!(s.resolve(&hex[..8].to_uppercase()).unwrap(), key);
    // Through the CLI too.
    assert_eq!(t.ok(&["resolve", &hex[..10]]).trim(), key.to_string());
}

#[test]
fn resolve_ambiguous_prefix_says_how_many_match() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    // Import images until two keys share their first two hex digits.
    let mut by_prefix: HashMap<String, Vec<Digest>> = HashMap::new();
    let mut shared = None;
    for i in 0..400 {
        let key = import(
            &s,
            files.path(),
            "example.com/many",
            &[],
            format!("{i}").as_bytes(),
        );
        let p = key.hex()[..2].to_string();
        let keys = by_prefix.entry(p.clone()).or_default();
        keys.push(key);
        if keys.len() == 2 {
            shared = Some(p);
            break;
        }
    }
    let p = shared.expect("a shared prefix among 400 keys");
    match resolve_err(&s, &format!("sha512-{p}")) {
        ResolveError::Ambiguous { count, .. } => assert_eq!(count, 2),
        e => panic!("expected ambiguous, got {e:?}"),
    }
    let err = t.fails(&["resolve", &format!("sha512:{p}")]);
    assert!(err.contains("ambiguous") && err.contains("2 keys"), "{err}");
    // One more digit picks one.
    let keys = &by_prefix[&p];
    let longer = &keys[0].hex()[..12];
    assert_eq!(s.resolve(&format!("sha512-{longer}")).unwrap(), keys[0]);
}

#[test]
fn resolve_wrong_prefix_too_short_and_malformed() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    let key = import(&s, files.path(), "example.com/app", &[], b"one");
    let other = if key.hex().starts_with("00") {
        "ff"
    } else {
        "00"
    };
    assert!(matches!(
        resolve_err(&s, &format!("sha512-{other}")),
        ResolveError::NotFound(_)
    ));
    assert!(matches!(
        resolve_err(&s, &format!("sha256-{}", &key.hex()[..8])),
        ResolveError::NotFound(_)
    ));
    for short in ["sha512-a", "sha256:"] {
        let err = t.fails(&["resolve", short]);
        assert!(err.contains("too short"), "{short}: {err}");
    }
    for bad in ["sha512-xyz0", "sha256:abcz", "sha512-g000"] {
        let err = t.fails(&["resolve", bad]);
        assert!(
            err.contains("malformed") || err.contains("unsupported"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn latest_unknown_name_errors() {
    let t = TestStore::new();
    let s = t.open();
    assert!(matches!(
        s.latest("example.com/nothing", &[]),
        Err(Error::Resolve(ResolveError::NoSuchName { .. }))
    ));
    let err = t.fails(&["latest", "example.com/nothing"]);
    assert!(err.contains("example.com/nothing"), "{err}");
}

#[test]
fn latest_without_labels_and_by_version() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    let labels = |v| [("version", v), ("os", "linux"), ("arch", "amd64")];
    let v1 = import(&s, files.path(), "example.com/app", &labels("1.0.0"), b"1");
    let v2 = import(&s, files.path(), "example.com/app", &labels("2.0.0"), b"2");
    // No labels: the newest import.
    assert_eq!(s.latest("example.com/app", &[]).unwrap().key, v2);
    // A version picks that version, whatever came later.
    let want = |v: &str| vec![Label::new("version", v)];
    assert_eq!(s.latest("example.com/app", &want("1.0.0")).unwrap().key, v1);
    assert_eq!(s.latest("example.com/app", &want("2.0.0")).unwrap().key, v2);
    assert!(s.latest("example.com/app", &want("3.0.0")).is_err());
    // Every requested label must match exactly.
    let arm = vec![Label::new("arch", "arm64")];
    assert!(s.latest("example.com/app", &arm).is_err());
    let amd = vec![Label::new("arch", "amd64"), Label::new("version", "1.0.0")];
    assert_eq!(s.latest("example.com/app", &amd).unwrap().key, v1);
    // The CLI and the name:version IMAGE form agree.
    assert_eq!(
        t.ok(&["latest", "example.com/app", "--label", "version=1.0.0"])
            .trim(),
        v1.to_string()
    );
    assert_eq!(
        t.ok(&["resolve", "example.com/app:1.0.0"]).trim(),
        v1.to_string()
    );
    assert_eq!(
        t.ok(&["resolve", "example.com/app,version=2.0.0,os=linux"])
            .trim(),
        v2.to_string()
    );
}

#[test]
fn latest_flag_beats_a_newer_import_unless_a_version_is_asked() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    let flagged = import_with(
        &s,
        files.path(),
        "example.com/app",
        &[("version", "1.0.0")],
        b"1",
        true,
    );
    let newer = import(
        &s,
        files.path(),
        "example.com/app",
        &[("version", "2.0.0")],
        b"2",
    );
    assert_eq!(s.latest("example.com/app", &[]).unwrap().key, flagged);
    assert_eq!(
        s.latest("example.com/app", &[Label::new("version", "2.0.0")])
            .unwrap()
            .key,
        newer
    );
}

#[test]
fn a_tag_wins_over_a_name_and_tags_compare_and_set() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    let v1 = import(
        &s,
        files.path(),
        "example.com/app",
        &[("version", "1.0.0")],
        b"1",
    );
    let v2 = import(
        &s,
        files.path(),
        "example.com/app",
        &[("version", "2.0.0")],
        b"2",
    );
    // "example.com/app:1.0.0" is a name:version until a tag of that name exists.
    assert_eq!(s.resolve("example.com/app:1.0.0").unwrap(), v1);
    t.ok(&["tag", &v2.to_string(), "example.com/app:1.0.0"]);
    assert_eq!(s.resolve("example.com/app:1.0.0").unwrap(), v2);
    // Compare-and-set: the wrong expectation fails and changes nothing.
    let err = t.fails(&[
        "tag",
        &v1.to_string(),
        "example.com/app:1.0.0",
        "--expect",
        &v1.to_string(),
    ]);
    assert!(err.contains("points to"), "{err}");
    assert_eq!(s.resolve("example.com/app:1.0.0").unwrap(), v2);
    t.ok(&[
        "tag",
        &v1.to_string(),
        "example.com/app:1.0.0",
        "--expect",
        &v2.hex()[..12],
    ]);
    assert_eq!(s.resolve("example.com/app:1.0.0").unwrap(), v1);
    // --expect none: only create.
    let err = t.fails(&[
        "tag",
        &v1.to_string(),
        "example.com/app:1.0.0",
        "--expect",
        "none",
    ]);
    assert!(err.contains("points to"), "{err}");
    t.ok(&["tag", &v1.to_string(), "mine:stable", "--expect", "none"]);
    let details = s.inspect(&v1).unwrap();
    assert_eq!(details.tags, vec!["example.com/app:1.0.0", "mine:stable"]);
    // Untag.
    t.ok(&["untag", "mine:stable"]);
    let err = t.fails(&["untag", "mine:stable"]);
    assert!(err.contains("does not exist"), "{err}");
    let err = t.fails(&["tag", &v1.to_string(), "no-colon"]);
    assert!(err.contains("NAME:TAG"), "{err}");
}

#[test]
fn reimport_keeps_one_row() {
    let t = TestStore::new();
    let s = t.open();
    for _ in 0..3 {
        s.import(fixture("hello.aci"), &ImportOptions::default())
            .unwrap();
    }
    assert_eq!(s.images(Some("example.com/hello"), &[]).unwrap().len(), 1);
}

#[test]
fn removing_an_image_removes_its_remote_and_tags() {
    let t = TestStore::new();
    let s = t.open();
    let key = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0)
        .key;
    let url = "https://example.com/hello.aci";
    s.set_remote(url, Some("\"etag-1\""), Some(600), &key, Some(&key))
        .unwrap();
    s.tag(&key, "hello:prod", None).unwrap();
    let remote = s.remote(url).unwrap().expect("remote recorded");
    assert_eq!(remote.etag.as_deref(), Some("\"etag-1\""));
    assert_eq!(remote.max_age, Some(600));
    assert_eq!(remote.image.as_ref(), Some(&key));
    // The remote holds the blob too.
    assert_eq!(s.refcount(&key).unwrap(), Some(2));
    t.ok(&["rm", "hello:prod"]);
    assert!(s.remote(url).unwrap().is_none());
    assert!(s.remotes().unwrap().is_empty());
    assert_eq!(s.refcount(&key).unwrap(), Some(0));
    assert!(s.resolve("hello:prod").is_err());
}

#[test]
fn removing_an_unknown_key_errors() {
    let t = TestStore::new();
    let s = t.open();
    let ghost = Digest::of(imgstore::Algorithm::Sha512, b"ghost");
    assert!(matches!(
        s.remove(&ghost),
        Err(Error::Resolve(ResolveError::NotFound(_)))
    ));
    let err = t.fails(&["rm", &ghost.to_string()]);
    assert!(err.contains(&ghost.to_string()), "{err}");
}

#[test]
fn cat_verifies_the_digest_while_streaming() {
    let t = TestStore::new();
    let s = t.open();
    let key = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0)
        .key;
    let path = t
        .path()
        .join("blobs/sha512")
        .join(&key.hex()[..2])
        .join(key.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        t.cmd(&["cat", &key.to_string()]).output().unwrap().stdout,
        bytes
    );
    // Flip one byte on disk.
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    assert!(perms.readonly(), "blob files are read-only");
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    bytes[600] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = t.fails(&["cat", &key.hex()[..16]]);
    assert!(
        err.contains(&key.to_string()) && err.contains("corrupt"),
        "{err}"
    );
    assert!(s.read_blob(&key).is_err());
}

#[test]
fn images_filters_by_name_and_label_and_sorts() {
    let t = TestStore::new();
    let s = t.open();
    let files = tempfile::tempdir().unwrap();
    import(
        &s,
        files.path(),
        "example.com/b",
        &[("arch", "amd64"), ("os", "linux")],
        b"1",
    );
    import(
        &s,
        files.path(),
        "example.com/a",
        &[("arch", "aarch64"), ("os", "linux")],
        b"22",
    );
    import(
        &s,
        files.path(),
        "example.com/a",
        &[("arch", "amd64"), ("os", "linux")],
        b"333",
    );
    let list = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut full = vec!["images", "--json"];
        full.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&t.ok(&full))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(list(&[]).len(), 3);
    assert_eq!(list(&["--name", "example.com/a"]).len(), 2);
    assert_eq!(list(&["--label", "arch=amd64"]).len(), 2);
    assert_eq!(
        list(&["--name", "example.com/a", "--label", "arch=amd64"]).len(),
        1
    );
    let by_name: Vec<String> = list(&["--sort", "name"])
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(by_name, ["example.com/a", "example.com/a", "example.com/b"]);
    let by_size: Vec<u64> = list(&["--sort", "size"])
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .collect();
    assert!(by_size.windows(2).all(|w| w[0] <= w[1]), "{by_size:?}");
    // Tables shorten keys to 12 hex digits; --full prints them whole.
    let table = t.ok(&["images"]);
    let first_key = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(first_key.len(), "sha512:".len() + 12, "{table}");
    let full = t.ok(&["images", "--full"]);
    let first_key = full
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(first_key.len(), "sha512:".len() + 128);
}

#[test]
fn lookups_record_last_use() {
    let t = TestStore::new();
    let s = t.open();
    let info = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    // Uses are recorded to the minute: move the last one two minutes back
    // before each lookup that must record one.
    let two_minutes_back = || {
        let conn = rusqlite::Connection::open(t.path().join("index.db")).unwrap();
        conn.execute(
            "UPDATE images SET last_used = last_used - 120000000 WHERE key = ?1",
            [info.key.to_string()],
        )
        .unwrap();
        s.image(&info.key).unwrap().last_used
    };
    let before = two_minutes_back();
    s.latest("example.com/hello", &[]).unwrap();
    let after_latest = s.image(&info.key).unwrap().last_used;
    assert!(after_latest > before);
    // A second use within the minute is not written again.
    s.manifest(&info.key).unwrap();
    assert_eq!(s.image(&info.key).unwrap().last_used, after_latest);
    let before = two_minutes_back();
    s.manifest(&info.key).unwrap();
    assert!(s.image(&info.key).unwrap().last_used > before);
}

#[test]
fn bad_lookups_say_what_is_wrong_and_change_nothing() {
    let t = TestStore::new();
    t.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    let before = t.snapshot();
    for (args, needle) in [
        (
            vec!["resolve", "example.com/hello,os"],
            "expected KEY=VALUE",
        ),
        (
            vec!["resolve", "example.com/hello,=linux"],
            "label name is empty",
        ),
        (
            vec!["latest", "example.com/hello", "--label", "os=plan9"],
            "with labels os=plan9",
        ),
        (vec!["resolve", "sha512-q1"], "malformed"),
        (vec!["resolve", "sha512-1"], "too short"),
        (vec!["rm", "sha256:0000"], "no image or blob matches"),
        (vec!["cat", "sha256:0000"], "no image or blob matches"),
        (
            vec!["manifest", "example.com/nothing"],
            "no image named example.com/nothing",
        ),
    ] {
        let err = t.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A malformed --label is a usage error (exit 2), before anything runs.
    let out = t.cmd(&["images", "--label", "os"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(t.snapshot(), before);
}
