//! The fuzz targets' properties (`fuzz/checks.rs`), run in CI on the fuzz
//! corpus and on a bounded set of mutations of it: flipped bytes,
//! truncations and spliced garbage, for the archive readers (through real
//! imports) and for the digest, key prefix, label and selector parsers.
//! The open-ended run is `cargo +nightly fuzz run TARGET` (see
//! README.md); this is its deterministic floor.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// Deterministic mutants of an input: `n` single-byte changes, truncations
/// at a spread of lengths, and a block of garbage spliced in.
fn mutants(input: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    if input.is_empty() {
        return out;
    }
    for _ in 0..n {
        let mut m = input.to_vec();
        let i = next() as usize % m.len();
        m[i] = match next() % 4 {
            0 => m[i] ^ (1 << (next() % 8)),
            1 => 0,
            2 => 0xff,
            _ => next() as u8,
        };
        out.push(m);
    }
    for k in 1..8 {
        out.push(input[..input.len() * k / 8].to_vec());
    }
    let at = next() as usize % input.len();
    let mut spliced = input[..at].to_vec();
    spliced.extend((0..512).map(|_| next() as u8));
    spliced.extend_from_slice(&input[at..]);
    out.push(spliced);
    out
}

#[test]
fn key_parsers_hold_their_properties() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for (_, bytes) in corpus("parse_keys") {
        inputs.extend(mutants(&bytes, 300, bytes.len() as u64));
        inputs.push(bytes);
    }
    // Edge lengths around the minimum and full digest lengths.
    for alg in ["sha256:", "sha512-", ""] {
        for len in [0, 1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 129] {
            inputs.push(format!("{alg}{}", "a".repeat(len)).into_bytes());
        }
    }
    for input in &inputs {
        checks::parse_keys(input);
    }
}

#[test]
fn archive_readers_fail_cleanly_on_mutated_archives() {
    let dir = tempfile::tempdir().unwrap();
    let store = imgstore::Store::open(dir.path().join("store")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for (path, bytes) in corpus("import_archive") {
        checks::import_archive(&store, scratch.path(), &bytes);
        // Compressed inputs get fewer mutants: most die at the first check.
        let n = if path.extension().is_some_and(|e| e == "tar") {
            60
        } else {
            20
        };
        for m in mutants(&bytes, n, bytes.len() as u64 * 31) {
            checks::import_archive(&store, scratch.path(), &m);
            runs += 1;
        }
    }
    assert!(runs > 100);
    let report = store.fsck(&imgstore::FsckOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{report}");
}
