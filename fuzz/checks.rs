#![allow(dead_code)] // each fuzz target uses one of the checks
//! The properties the fuzz targets check, shared with the bounded run of the
//! same checks in `tests/fuzz_parsers.rs` (so CI exercises them on the
//! corpus without a nightly toolchain).

use std::path::Path;

use imgstore::{Digest, ImportOptions, KeyPrefix, Label, NameSelector, Store};

/// Digests, key prefixes, labels and name selectors: any string either
/// parses or is refused, never panics; what parses is consistent.
pub fn parse_keys(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.hex().len(), d.algorithm().hex_len(), "{s:?}: full length");
        let shown = d.to_string();
        assert_eq!(
            Digest::parse(&shown).as_ref(),
            Ok(&d),
            "{s:?}: display parses back"
        );
        assert_eq!(
            Digest::parse(&d.appc()).as_ref(),
            Ok(&d),
            "{s:?}: appc form parses back"
        );
        // A full digest is also a prefix of itself.
        let p = KeyPrefix::parse(&shown).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let (low, high) = p.range(d.algorithm());
        assert!(low <= shown && shown < high, "{s:?}: not in its own range");
        assert!(KeyPrefix::looks_like_key(&shown), "{s:?}");
    }
    if let Ok(p) = KeyPrefix::parse(s) {
        let again =
            KeyPrefix::parse(&p.to_string()).unwrap_or_else(|e| panic!("{s:?}: display: {e}"));
        assert_eq!(again, p, "{s:?}: display parses back");
        for alg in p.algorithms() {
            let (low, high) = p.range(alg);
            assert!(low < high, "{s:?}: empty range");
            assert!(
                p.hex().len() <= alg.hex_len() || p.algorithm().is_none(),
                "{s:?}"
            );
        }
    }
    let _ = KeyPrefix::looks_like_key(s);
    if let Ok(sel) = NameSelector::parse(s) {
        assert!(!sel.name.is_empty(), "{s:?}: empty name accepted");
    }
    if let Ok(label) = Label::parse(s) {
        assert!(!label.name.is_empty(), "{s:?}: empty label name accepted");
    }
}

/// Any bytes as an archive: the import either succeeds with a complete
/// image or fails leaving no image row and no temp file (invariant 7).
pub fn import_archive(store: &Store, scratch: &Path, data: &[u8]) {
    let path = scratch.join("input");
    std::fs::write(&path, data).expect("write fuzz input");
    let before = store.images(None, &[]).expect("list images").len();
    match store.import(&path, &ImportOptions::default()) {
        Ok(images) => {
            for image in images {
                store
                    .manifest(&image.key)
                    .expect("an imported image's manifest reads back");
                for blob in store.inspect(&image.key).expect("inspect").blobs {
                    store
                        .read_blob(&blob.digest)
                        .expect("an imported blob reads back verified");
                }
            }
        }
        Err(_) => {
            let after = store.images(None, &[]).expect("list images").len();
            assert_eq!(after, before, "a failed import added an image");
        }
    }
    let tmp = store.root().join("tmp");
    let left = std::fs::read_dir(&tmp).expect("read tmp").count();
    assert_eq!(left, 0, "an import left a temp file behind");
}
