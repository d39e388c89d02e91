//! Errors have kinds (issue 9): every class of bad input comes back from
//! the library as an `ArchiveErrorKind` a caller can match, naming the
//! input, with the store left as it was; I/O failures keep their cause as
//! a `source()` chain. The CLI's wording of each is tested beside the
//! feature (`tests/import.rs`, `tests/oci.rs`, `tests/docker.rs`).

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::error::Error as _;
use std::path::Path;

use builder::{Layout, desc, named};
use common::{AciBuilder, TestStore, write_file};
use imgstore::{ArchiveErrorKind, Compression, Error, ImportOptions};

/// Imports `path`, which must fail; checks that the error names it and the
/// store did not change, and returns the kind.
fn kind_of(store: &TestStore, path: &Path, options: &ImportOptions) -> ArchiveErrorKind {
    let opened = store.open();
    let before = store.snapshot();
    let err = opened.import(path, options).unwrap_err();
    assert_eq!(before, store.snapshot(), "the store changed after {err}");
    let Error::Archive(archive) = &err else {
        panic!("not an archive error: {err:?}");
    };
    assert_eq!(archive.input(), path.display().to_string());
    assert!(err.to_string().starts_with(&path.display().to_string()));
    archive.kind().clone()
}

fn layout_dir(tmp: &Path, layout: &Layout) -> std::path::PathBuf {
    let dir = tmp.join(format!("layout-{}", rand_suffix()));
    layout.write_dir(&dir);
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn archives_that_are_not_images_have_their_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestStore::new();
    let none = ImportOptions::new();

    let empty = write_file(tmp.path(), "empty", b"");
    assert_eq!(kind_of(&s, &empty, &none), ArchiveErrorKind::Empty);

    let text = write_file(tmp.path(), "text", &[b'x'; 2000]);
    assert!(matches!(
        kind_of(&s, &text, &none),
        ArchiveErrorKind::NotATar {
            compression: Compression::None
        }
    ));

    let gz = write_file(
        tmp.path(),
        "text.gz",
        &common::compress(&[b'x'; 2000], Compression::Gzip),
    );
    assert!(matches!(
        kind_of(&s, &gz, &none),
        ArchiveErrorKind::NotATar {
            compression: Compression::Gzip
        }
    ));

    let other = builder::tar_of(&[("hello.txt".to_string(), b"hi".to_vec())].into());
    let other = write_file(tmp.path(), "other.tar", &other);
    assert_eq!(kind_of(&s, &other, &none), ArchiveErrorKind::UnknownFormat);

    let dir = tmp.path().join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let aci = ImportOptions::new().format(imgstore::ArchiveFormat::Aci);
    assert!(matches!(
        kind_of(&s, &dir, &aci),
        ArchiveErrorKind::WrongFormat(_)
    ));
}

#[test]
fn bad_acis_have_their_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestStore::new();
    let none = ImportOptions::new();

    let good = AciBuilder::image("example.com/app", &[], b"data");
    let cut = write_file(tmp.path(), "cut.aci", &good[..good.len() - 1024]);
    assert_eq!(
        kind_of(&s, &cut, &none),
        ArchiveErrorKind::Truncated {
            compression: Compression::None
        }
    );

    let bad_field = AciBuilder::new()
        .manifest(r#"{"acKind":"ImageManifest","acVersion":"x","name":"example.com/app"}"#)
        .dir("rootfs")
        .build();
    let bad_field = write_file(tmp.path(), "field.aci", &bad_field);
    match kind_of(&s, &bad_field, &none) {
        ArchiveErrorKind::Manifest { field, .. } => assert_eq!(field.as_deref(), Some("acVersion")),
        other => panic!("{other:?}"),
    }

    let no_rootfs = AciBuilder::new()
        .manifest(&common::manifest("example.com/app", &[]))
        .build();
    let no_rootfs = write_file(tmp.path(), "no-rootfs.aci", &no_rootfs);
    assert!(matches!(
        kind_of(&s, &no_rootfs, &none),
        ArchiveErrorKind::MissingFile {
            name: "rootfs/ directory",
            ..
        }
    ));

    let stray = AciBuilder::image("example.com/app", &[], b"data");
    let mut stray = stray[..stray.len() - 1024].to_vec();
    stray.extend(AciBuilder::new().entry("extra", b"?").build());
    let stray = write_file(tmp.path(), "stray.aci", &stray);
    match kind_of(&s, &stray, &none) {
        ArchiveErrorKind::Entry { entry, .. } => assert_eq!(entry, "extra"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_layouts_have_their_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestStore::new();
    let none = ImportOptions::new();
    let (good, built) = Layout::simple("app:1", b"content");

    // A blob whose bytes are not its name.
    let mut l = good.clone();
    let path = Layout::blob_path(&built.layers[0]);
    let len = l.files[&path].len();
    l.files.insert(path, vec![0; len]);
    let dir = layout_dir(tmp.path(), &l);
    match kind_of(&s, &dir, &none) {
        ArchiveErrorKind::DigestMismatch { expected, .. } => {
            assert_eq!(expected.to_string(), built.layers[0])
        }
        other => panic!("{other:?}"),
    }

    // A descriptor with the wrong size.
    let mut l = good.clone();
    let mut d = built.desc.clone();
    d["size"] = (d["size"].as_u64().unwrap() + 1).into();
    l.index = vec![named(d, "app:1")];
    let dir = layout_dir(tmp.path(), &l);
    assert!(matches!(
        kind_of(&s, &dir, &none),
        ArchiveErrorKind::SizeMismatch { .. }
    ));

    // A layer the layout does not hold.
    let mut l = good.clone();
    l.files.remove(&Layout::blob_path(&built.layers[0]));
    let dir = layout_dir(tmp.path(), &l);
    match kind_of(&s, &dir, &none) {
        ArchiveErrorKind::MissingBlob {
            digest,
            allow_missing_helps,
            ..
        } => {
            assert_eq!(digest.to_string(), built.layers[0]);
            assert!(allow_missing_helps);
        }
        other => panic!("{other:?}"),
    }

    // index.json that is no index, a layout of version 2, no images.
    let mut l = good.clone();
    l.files.insert("index.json".into(), b"[1, 2]".to_vec());
    let dir = layout_dir(tmp.path(), &l);
    match kind_of(&s, &dir, &none) {
        ArchiveErrorKind::Malformed { what, .. } => assert_eq!(what, "index.json"),
        other => panic!("{other:?}"),
    }
    let mut l = good.clone();
    l.files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec(),
    );
    let dir = layout_dir(tmp.path(), &l);
    assert_eq!(
        kind_of(&s, &dir, &none),
        ArchiveErrorKind::UnsupportedLayoutVersion("2.0.0".into())
    );
    let mut l = good.clone();
    l.index.clear();
    let dir = layout_dir(tmp.path(), &l);
    assert_eq!(
        kind_of(&s, &dir, &none),
        ArchiveErrorKind::NoImages("index.json")
    );

    // No oci-layout file, and one that is a directory.
    let mut l = good.clone();
    l.files.remove("oci-layout");
    let dir = layout_dir(tmp.path(), &l);
    assert!(matches!(
        kind_of(&s, &dir, &none),
        ArchiveErrorKind::MissingFile {
            name: "oci-layout file",
            ..
        }
    ));
    std::fs::create_dir(dir.join("oci-layout")).unwrap();
    assert!(matches!(
        kind_of(&s, &dir, &none),
        ArchiveErrorKind::NotRegular {
            expected: "regular file",
            ..
        }
    ));
}

#[test]
fn bad_layers_have_their_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestStore::new();
    let verify = ImportOptions::new().verify_layers(true);
    let tar = builder::layer_tar(&[("a", &[7u8; 50_000][..])]);

    // One image per case: a gzip layer (or a cut one) and a config whose
    // diff_ids say `diff_ids`.
    let image = |layer: &[u8], diff_ids: &[String]| {
        let mut l = Layout::new();
        let d = l.blob("sha256", layer);
        let config = builder::config_json("amd64", diff_ids, &[]);
        let c = l.blob("sha256", &config);
        let manifest = builder::manifest_json(
            desc(builder::CONFIG, &c, config.len()),
            vec![desc(builder::LAYER_GZ, &d, layer.len())],
        );
        let m = l.blob("sha256", &manifest);
        l.index
            .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
        (l, d)
    };
    let gz = builder::gzip(&tar);

    let (l, layer) = image(&gz, &[builder::sha256(b"wrong")]);
    match kind_of(&s, &layout_dir(tmp.path(), &l), &verify) {
        ArchiveErrorKind::DiffIdMismatch {
            layer: d, found, ..
        } => {
            assert_eq!(d.to_string(), layer);
            assert_eq!(found.to_string(), builder::sha256(&tar));
        }
        other => panic!("{other:?}"),
    }

    let (l, _) = image(&gz[..gz.len() / 2], &[builder::sha256(&tar)]);
    match kind_of(&s, &layout_dir(tmp.path(), &l), &verify) {
        ArchiveErrorKind::BadLayer { cause, .. } => assert_eq!(
            cause,
            imgstore::DecompressError::Truncated(Compression::Gzip)
        ),
        other => panic!("{other:?}"),
    }

    let (l, _) = image(&gz, &[builder::sha256(&tar), builder::sha256(b"x")]);
    assert!(matches!(
        kind_of(&s, &layout_dir(tmp.path(), &l), &verify),
        ArchiveErrorKind::LayerCount {
            layers: 1,
            diff_ids: 2,
            ..
        }
    ));
}

#[test]
fn io_errors_name_the_path_and_keep_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestStore::new();
    let missing = tmp.path().join("no-such.aci");
    let err = s
        .open()
        .import(&missing, &ImportOptions::new())
        .unwrap_err();
    let Error::Io { path, source, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &missing);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    // The message names the path; the cause is the source, not repeated.
    assert!(err.to_string().contains("no-such.aci"), "{err}");
    let cause = err.source().expect("a source").to_string();
    assert!(!err.to_string().contains(&cause), "{err} repeats {cause}");
}
