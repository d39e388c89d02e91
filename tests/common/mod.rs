//! Helpers shared by the black-box tests: a temporary store, a runner for
//! the `imgstore` binary, builders for real archives, and a snapshot of a
//! store's whole state for "bad input changes nothing" assertions.
#![allow(dead_code)]

pub mod layers;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use imgstore::Compression;

/// A store in a temp directory that is removed with it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn open(&self) -> imgstore::Store {
        imgstore::Store::open(self.path()).expect("open store")
    }

    /// `imgstore --store DIR ARGS…`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("imgstore").expect("binary");
        cmd.arg("--store").arg(self.path()).args(args);
        cmd.env_remove("IMGSTORE_FAILPOINT");
        cmd
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run imgstore");
        assert!(
            out.status.success(),
            "imgstore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs a command that must fail with exit code 1 and one `error:` line
    /// on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run imgstore");
        assert_error(&out, args);
        String::from_utf8(out.stderr)
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// Every file under the store (but the lock) with its bytes, and every
    /// row of every table: equal snapshots mean nothing changed.
    pub fn snapshot(&self) -> Snapshot {
        let mut files = BTreeMap::new();
        walk(self.path(), self.path(), &mut files);
        let conn = rusqlite::Connection::open(self.path().join("index.db")).expect("open index");
        let mut rows = Vec::new();
        for table in ["blobs", "images", "labels", "tags", "remotes", "refs"] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                let vals: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                rows.push(format!("{table}: {}", vals.join(" | ")));
            }
        }
        Snapshot { files, rows }
    }
}

/// A store whose index exists already, so that a snapshot can be taken.
pub fn store() -> TestStore {
    let s = TestStore::new();
    s.ok(&["images"]);
    s
}

/// `imgstore inspect --json IMAGE`, parsed.
pub fn inspect(s: &TestStore, image: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["inspect", "--json", image])).unwrap()
}

/// A label of an image as `inspect --json` shows it.
pub fn label<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v["labels"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["value"].as_str())
}

#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    pub rows: Vec<String>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let name = rel.to_string_lossy();
        // The SQLite files change on every open (WAL frames, shm); the rows
        // are compared instead. The lock file is empty and always present;
        // the disk-full reserve is zeros.
        if name.starts_with("index.db") || name == "lock" || name == "reserve" {
            continue;
        }
        if path.is_dir() {
            out.insert(rel.clone(), b"<dir>".to_vec());
            walk(root, &path, out);
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

pub fn assert_error(out: &Output, args: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "imgstore {args:?} should fail with exit code 1; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "bad error line: {stderr}");
}

/// The fixtures kept in `tests/data/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A manifest for an ACI named `name` with the given labels.
pub fn manifest(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!(r#"{{"name":"{k}","value":"{v}"}}"#))
        .collect();
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{}]}}"#,
        labels.join(",")
    )
}

/// Builds ACI tar bytes by hand: a `manifest` and `rootfs/` with files.
pub struct AciBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl AciBuilder {
    pub fn new() -> AciBuilder {
        AciBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Any entry, under any name (for building bad archives too).
    pub fn entry(mut self, name: &str, bytes: &[u8]) -> AciBuilder {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the name field directly so tests can
        // build hostile archives.
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.builder.append(&h, bytes).unwrap();
        self
    }

    pub fn dir(mut self, name: &str) -> AciBuilder {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(name).unwrap();
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    pub fn manifest(self, json: &str) -> AciBuilder {
        self.entry("manifest", json.as_bytes())
    }

    /// A finished, valid-looking image: manifest, rootfs/ and one file.
    pub fn image(name: &str, labels: &[(&str, &str)], content: &[u8]) -> Vec<u8> {
        AciBuilder::new()
            .manifest(&manifest(name, labels))
            .dir("rootfs")
            .entry("rootfs/data", content)
            .build()
    }

    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn compress(bytes: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(bytes, 3).unwrap(),
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
    }
}

/// Writes bytes to a file in a temp dir the caller keeps alive.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// sha512 of bytes in the store's key form.
pub fn sha512_key(bytes: &[u8]) -> String {
    imgstore::Digest::of(imgstore::Algorithm::Sha512, bytes).to_string()
}

/// Bytes that do not compress (xorshift), so that the store holds as much
/// as the input and layers stay their size when gzipped.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where a store keeps a blob's file: `blobs/<alg>/<2 hex>/<hex>`.
pub fn blob_file(store: &Path, digest: &imgstore::Digest) -> PathBuf {
    store
        .join("blobs")
        .join(digest.algorithm().name())
        .join(&digest.hex()[..2])
        .join(digest.hex())
}

/// Runs a program that must succeed, with nothing on its stdin; returns
/// its stdout.
#[track_caller]
pub fn run(command: &mut std::process::Command) -> String {
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
