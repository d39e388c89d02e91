//! ACI import through the CLI and the library: every compression, the key
//! and blob semantics of appc, re-imports, and every bad input the core
//! issue names, each leaving the store exactly as it was.

mod common;

use common::{AciBuilder, TestStore, compress, fixture, manifest, sha512_key, write_file};
use imgstore::{Compression, ImportOptions};

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Zstd,
    Compression::Xz,
    Compression::Bzip2,
];

#[test]
fn imports_every_compression_with_the_uncompressed_tar_as_key_and_blob() {
    let store = TestStore::new();
    let files = tempfile::tempdir().unwrap();
    let tar = AciBuilder::image("example.com/comp", &[("version", "1")], b"payload");
    let key = sha512_key(&tar);
    for how in ALL {
        // Names say nothing: the format is told by magic bytes.
        let path = write_file(
            files.path(),
            &format!("image-{}.bin", how.name()),
            &compress(&tar, how),
        );
        let out = store.ok(&["import", path.to_str().unwrap()]);
        assert_eq!(out.trim(), key, "{how:?}");
    }
    let images: serde_json::Value = serde_json::from_str(&store.ok(&["images", "--json"])).unwrap();
    assert_eq!(
        images.as_array().unwrap().len(),
        1,
        "one image for five imports"
    );
    // The stored blob is the uncompressed tar itself.
    let cat = store.cmd(&["cat", &key]).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout, tar);
}

#[test]
fn manifest_is_printed_byte_for_byte() {
    let store = TestStore::new();
    let files = tempfile::tempdir().unwrap();
    // Odd spacing and key order must survive.
    let odd = "{ \"name\" : \"example.com/odd\",\n  \"acVersion\":\"0.8.11\", \"acKind\": \"ImageManifest\" }\n";
    let tar = AciBuilder::new().manifest(odd).dir("rootfs").build();
    let path = write_file(files.path(), "odd.aci", &tar);
    store.ok(&["import", path.to_str().unwrap()]);
    let out = store
        .cmd(&["manifest", "example.com/odd"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), odd);
}

#[test]
fn fixture_imports_with_labels_from_the_manifest() {
    let store = TestStore::new();
    let s = store.open();
    let images = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap();
    assert_eq!(images.len(), 1);
    let info = &images[0];
    assert_eq!(info.name, "example.com/hello");
    assert_eq!(info.label("version"), Some("1.0.0"));
    assert_eq!(info.label("os"), Some("linux"));
    assert_eq!(info.label("arch"), Some("amd64"));
    assert_eq!(info.format, imgstore::ImageFormat::Aci);
    assert!(!info.latest);
    assert_eq!(info.key.algorithm(), imgstore::Algorithm::Sha512);
}

#[test]
fn reimport_keeps_one_row_and_its_import_time() {
    let store = TestStore::new();
    let s = store.open();
    let first = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = s
        .import(fixture("hello.aci"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(first.key, again.key);
    assert_eq!(first.imported_at, again.imported_at);
    assert_eq!(s.images(None, &[]).unwrap().len(), 1);
    // No temp file is left from the second pass.
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn latest_flag_is_set_by_import_and_never_cleared_by_reimport() {
    let store = TestStore::new();
    let key = store.ok(&["import", "--latest", fixture("hello.aci").to_str().unwrap()]);
    let info: serde_json::Value =
        serde_json::from_str(&store.ok(&["inspect", "--json", key.trim()])).unwrap();
    assert_eq!(info["latest"], true);
    store.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    let info: serde_json::Value =
        serde_json::from_str(&store.ok(&["inspect", "--json", key.trim()])).unwrap();
    assert_eq!(info["latest"], true);
}

#[test]
fn imports_several_paths_in_one_command() {
    let store = TestStore::new();
    let out = store.ok(&[
        "import",
        fixture("hello.aci").to_str().unwrap(),
        fixture("hello-2.0.0.aci").to_str().unwrap(),
    ]);
    assert_eq!(out.lines().count(), 2);
}

/// Runs `import` on bytes that must be refused; checks the error names the
/// file and says `needle`, and that the store did not change.
fn refuses(bytes: &[u8], needle: &str) {
    let store = TestStore::new();
    store.ok(&["import", fixture("hello.aci").to_str().unwrap()]);
    let before = store.snapshot();
    let files = tempfile::tempdir().unwrap();
    let path = write_file(files.path(), "bad.aci", bytes);
    let err = store.fails(&["import", path.to_str().unwrap()]);
    assert!(
        err.contains(path.to_str().unwrap()),
        "error does not name the file: {err}"
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "error does not say {needle:?}: {err}"
    );
    assert_eq!(
        store.snapshot(),
        before,
        "a refused import changed the store"
    );
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn refuses_an_html_error_page() {
    refuses(
        b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
        "not an image archive",
    );
}

#[test]
fn refuses_a_text_file() {
    refuses(b"just some notes\nin a text file\n", "not an image archive");
}

#[test]
fn refuses_an_empty_file() {
    refuses(b"", "empty");
}

#[test]
fn refuses_a_truncated_gzip() {
    let tar = AciBuilder::image("example.com/t", &[], &vec![7u8; 200_000]);
    let gz = compress(&tar, Compression::Gzip);
    refuses(&gz[..gz.len() / 2], "truncated");
}

#[test]
fn refuses_a_truncated_zstd_and_xz() {
    let tar = AciBuilder::image("example.com/t", &[], &vec![7u8; 200_000]);
    for how in [Compression::Zstd, Compression::Xz, Compression::Bzip2] {
        let c = compress(&tar, how);
        refuses(&c[..c.len() - 8], "truncated");
    }
}

#[test]
fn refuses_a_plain_tar_cut_at_an_entry_boundary() {
    let tar = AciBuilder::image("example.com/t", &[], b"x");
    // Drop the end-of-archive blocks: every header is intact, but the
    // archive never says it ended.
    let cut = &tar[..tar.len() - 1024];
    assert!(cut.len() % 512 == 0);
    refuses(cut, "truncated");
}

#[test]
fn refuses_a_tar_without_manifest() {
    let tar = AciBuilder::new()
        .dir("rootfs")
        .entry("rootfs/a", b"a")
        .build();
    refuses(&tar, "no manifest");
}

#[test]
fn refuses_a_tar_without_rootfs() {
    let tar = AciBuilder::new()
        .manifest(&manifest("example.com/a", &[]))
        .build();
    refuses(&tar, "no rootfs");
}

#[test]
fn refuses_invalid_manifests_naming_the_field() {
    let cases = [
        (
            r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"UPPER"}"#,
            "field name",
        ),
        (
            r#"{"acKind":"Pod","acVersion":"0.8.11","name":"a"}"#,
            "acKind",
        ),
        (
            r#"{"acKind":"ImageManifest","acVersion":"one","name":"a"}"#,
            "acVersion",
        ),
        (&manifest("example.com/a", &[("os", "windows")]), "os"),
        (
            &manifest("example.com/a", &[("os", "linux"), ("arch", "x86_64")]),
            "arch",
        ),
        (&manifest("example.com/a", &[("name", "x")]), "labels[0]"),
        (
            r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{"exec":["/x"]}}"#,
            "app.user",
        ),
        ("{not json", "JSON"),
    ];
    for (json, field) in cases {
        let tar = AciBuilder::new().manifest(json).dir("rootfs").build();
        refuses(&tar, field);
    }
}

#[test]
fn refuses_duplicate_entries() {
    let tar = AciBuilder::new()
        .manifest(&manifest("example.com/a", &[]))
        .dir("rootfs")
        .entry("rootfs/etc/passwd", b"one")
        .entry("./rootfs/etc/passwd", b"two")
        .build();
    refuses(&tar, "appears twice");
}

#[test]
fn refuses_path_traversal_and_absolute_names() {
    for name in ["rootfs/../../etc/evil", "/etc/evil"] {
        let tar = AciBuilder::new()
            .manifest(&manifest("example.com/a", &[]))
            .dir("rootfs")
            .entry(name, b"x")
            .build();
        refuses(&tar, name);
    }
}

#[test]
fn refuses_unexpected_top_level_entries() {
    let tar = AciBuilder::new()
        .manifest(&manifest("example.com/a", &[]))
        .dir("rootfs")
        .entry("extra.txt", b"x")
        .build();
    refuses(&tar, "is unexpected");
}

#[test]
fn refuses_a_missing_file() {
    let store = TestStore::new();
    let err = store.fails(&["import", "/no/such/image.aci"]);
    assert!(err.contains("/no/such/image.aci"), "{err}");
    // The cause is said once, not once per layer of the error chain.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Imports with a failpoint that kills the process when a blob is written:
/// success means the import wrote no blob.
fn import_writing_no_blob(store: &TestStore, path: &std::path::Path) -> std::process::Output {
    store
        .cmd(&["import", path.to_str().unwrap()])
        .env("IMGSTORE_FAILPOINT", "blob-after-temp-write")
        .output()
        .unwrap()
}

#[test]
fn reimport_of_an_unchanged_file_reads_nothing_again() {
    let store = TestStore::new();
    let files = tempfile::tempdir().unwrap();
    let path = write_file(
        files.path(),
        "hello.aci",
        &std::fs::read(fixture("hello.aci")).unwrap(),
    );
    let key = store.ok(&["import", path.to_str().unwrap()]);
    // The same file again: recognised by identity, no blob is written.
    let out = import_writing_no_blob(&store, &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), key);
    // --latest still takes effect on that path.
    store.ok(&["import", "--latest", path.to_str().unwrap()]);
    let info: serde_json::Value =
        serde_json::from_str(&store.ok(&["inspect", "--json", key.trim()])).unwrap();
    assert_eq!(info["latest"], true);
    // A copy is another file: it is read (and the failpoint fires).
    let copy = write_file(files.path(), "copy.aci", &std::fs::read(&path).unwrap());
    let out = import_writing_no_blob(&store, &copy);
    assert!(!out.status.success(), "a copy must be read in full");
}

#[test]
fn a_file_rewritten_in_place_is_read_again() {
    let store = TestStore::new();
    let files = tempfile::tempdir().unwrap();
    let a = AciBuilder::image("example.com/same", &[("version", "1")], b"aaaa");
    let b = AciBuilder::image("example.com/same", &[("version", "1")], b"bbbb");
    assert_eq!(a.len(), b.len());
    let path = write_file(files.path(), "img.aci", &a);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(
        store.ok(&["import", path.to_str().unwrap()]).trim(),
        sha512_key(&a)
    );
    // Same inode, same size, mtime set back: only the ctime tells.
    std::thread::sleep(std::time::Duration::from_millis(10));
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&b).unwrap();
        f.set_modified(mtime).unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert_eq!(
        store.ok(&["import", path.to_str().unwrap()]).trim(),
        sha512_key(&b)
    );
}

#[test]
fn reimport_after_rm_and_gc_restores_the_image() {
    let store = TestStore::new();
    let files = tempfile::tempdir().unwrap();
    let path = write_file(
        files.path(),
        "hello.aci",
        &std::fs::read(fixture("hello.aci")).unwrap(),
    );
    let key = store.ok(&["import", path.to_str().unwrap()]);
    store.ok(&["rm", key.trim()]);
    store.ok(&["gc"]);
    assert_eq!(store.ok(&["import", path.to_str().unwrap()]), key);
    store.ok(&["cat", key.trim()]);
    store.ok(&["manifest", key.trim()]);
}
