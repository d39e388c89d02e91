//! Hostile and unlucky input (issue 13): pathological OCI graphs, special
//! files, names and labels past the limits, many labels, broken
//! compressed streams, control characters and duplicate JSON keys. Each
//! case runs the real binary; where the bound is the point, the test
//! measures the child's time and peak RSS itself, and
//! every refused input must leave the store byte-for-byte unchanged.
//!
//! Peak RSS is the child's `VmHWM` (its high-water mark since `exec`),
//! read from `/proc/PID/status` every few milliseconds while it runs:
//! `ru_maxrss` from `wait4` would not do, since Linux carries into it the
//! RSS of the test process the child was forked from.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use builder::{Layout, desc, doubling_index, index_chain, named};
use common::{AciBuilder, TestStore, compress, manifest, write_file};
use imgstore::Compression;
use serde_json::{Value, json};

/// What a measured run of `imgstore` did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// Peak resident set size of the child, in KiB.
    max_rss_kib: u64,
}

impl Run {
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(self.code, Some(1), "expected a failure: {}", self.stderr);
        assert_eq!(lines.len(), 1, "expected one error line: {}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        lines[0]
    }

    fn assert_within(&self, time: Duration, rss_mib: u64) {
        assert!(
            self.elapsed < time,
            "took {:?}, more than {time:?}",
            self.elapsed
        );
        assert!(
            self.max_rss_kib < rss_mib * 1024,
            "peak RSS {} KiB, more than {rss_mib} MiB",
            self.max_rss_kib
        );
    }
}

/// The child's `VmHWM` in KiB, if it is still running.
fn high_water_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `imgstore --store DIR ARGS…`, killing it if it runs longer than
/// `limit` (then the test fails saying so), and measures it.
fn run(s: &TestStore, args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgstore"))
        .arg("--store")
        .arg(s.path())
        .args(args)
        .env_remove("IMGSTORE_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imgstore");
    let start = Instant::now();
    let pid = child.id() as libc::pid_t;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let mut max_rss_kib = 0;
    let status = loop {
        if let Some(kib) = high_water_kib(pid) {
            max_rss_kib = max_rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for imgstore") {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for imgstore");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    eprintln!("imgstore {args:?}: {elapsed:?}, peak RSS {max_rss_kib} KiB");
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        !timed_out,
        "imgstore {args:?} still ran after {limit:?}; stderr: {stderr}"
    );
    Run {
        code: status.code(),
        stdout,
        stderr,
        elapsed,
        max_rss_kib,
    }
}

/// A store whose index exists already, in memory where there is a tmpfs:
/// these tests bound CPU and memory, and must not wait on a busy disk's
/// fsyncs (the store's durability is proved elsewhere, on a real disk).
fn store() -> TestStore {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let s = TestStore {
        dir: dir.expect("temp dir"),
    };
    s.ok(&["images"]);
    s
}

fn tmp_is_empty(s: &TestStore) {
    let tmp = s.path().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in tmp/: {left:?}");
}

fn images_json(s: &TestStore) -> Vec<Value> {
    serde_json::from_str::<Value>(&s.ok(&["images", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A layout written both as a directory and as an oci-archive.
fn both_forms(tmp: &Path, name: &str, layout: &Layout) -> [String; 2] {
    let dir = tmp.join(name);
    layout.write_dir(&dir);
    let tar = write_file(tmp, &format!("{name}.tar"), &layout.tar());
    [
        dir.to_str().unwrap().to_string(),
        tar.to_str().unwrap().to_string(),
    ]
}

const FAST: Duration = Duration::from_secs(10);

// Defect 1: pathological graphs.

#[test]
fn a_doubling_index_is_walked_once_per_document() {
    // 2^40 paths through 43 blobs: before, memory doubled per level until
    // the process aborted with gigabytes of RSS and temp files left.
    let tmp = tempfile::tempdir().unwrap();
    let layout = doubling_index(40);
    let blob_bytes: usize = layout
        .files
        .iter()
        .filter(|(n, _)| n.starts_with("blobs/"))
        .map(|(_, b)| b.len())
        .sum();
    for (i, input) in both_forms(tmp.path(), "doubling", &layout)
        .into_iter()
        .enumerate()
    {
        let s = store();
        let r = run(&s, &["import", &input], FAST);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.assert_within(Duration::from_secs(5), 64);
        // One record per distinct document: 40 indexes and the manifest.
        assert_eq!(r.stdout.lines().count(), 41, "{}", r.stdout);
        let images = images_json(&s);
        assert_eq!(images.len(), 41);
        let top = r.stdout.lines().last().unwrap();
        let top = images.iter().find(|i| i["key"] == top).unwrap();
        assert_eq!(top["size"], blob_bytes, "the closure counts each blob once");
        assert_eq!(top["name"], "shape");
        tmp_is_empty(&s);
        assert!(s.ok(&["fsck"]).contains("0 problems"));
        // Exported and read back: the whole closure is there.
        let out = tmp.path().join(format!("export-{i}"));
        s.ok(&["export", "shape:1", "--oci", out.to_str().unwrap()]);
        let again = store();
        assert_eq!(
            again.ok(&["import", out.to_str().unwrap()]).lines().count(),
            41
        );
    }
}

#[test]
fn a_deep_chain_is_refused_at_the_depth_limit_at_once() {
    // 3,000 indexes deep: before, quadratic time and memory, then a stack
    // overflow (abort) with temp files left.
    let tmp = tempfile::tempdir().unwrap();
    let layout = index_chain(3000);
    let s = store();
    let before = s.snapshot();
    for input in both_forms(tmp.path(), "chain", &layout) {
        let r = run(&s, &["import", &input], FAST);
        let line = r.error_line();
        assert!(
            line.contains("nests image indexes more than 64 deep") && line.contains("chain"),
            "{line}"
        );
        assert!(line.len() < 300, "a short message: {line}");
        r.assert_within(Duration::from_secs(5), 64);
        assert_eq!(before, s.snapshot(), "store changed after {line}");
    }
}

#[test]
fn indexes_nest_up_to_the_limit_and_no_deeper() {
    let tmp = tempfile::tempdir().unwrap();
    // index.json → 63 indexes → manifest at depth 64: accepted.
    let s = store();
    for input in both_forms(tmp.path(), "deepest", &index_chain(63)) {
        assert_eq!(s.ok(&["import", &input]).lines().count(), 64);
    }
    // One more: refused, naming the limit.
    let before = s.snapshot();
    for input in both_forms(tmp.path(), "too-deep", &index_chain(64)) {
        let err = s.fails(&["import", &input]);
        assert!(
            err.contains("(at depth 65) nests image indexes more than 64 deep"),
            "{err}"
        );
    }
    assert_eq!(before, s.snapshot());
}

// Defect 2: special files.

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn special_files_are_refused_at_once_anywhere_an_input_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, built) = Layout::simple("example.com/app:1", b"special");
    let s = store();
    let before = s.snapshot();
    let layer = Layout::blob_path(&built.layers[0]);
    let manifest = Layout::blob_path(&built.manifest);
    // (case, file of the layout to replace, how, what the error says)
    type Spoil = fn(&Path);
    let fifo: Spoil = |p| mkfifo(p);
    let dev_zero: Spoil = |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    let socket: Spoil = |p| std::mem::forget(UnixListener::bind(p).unwrap());
    let cases: Vec<(&str, &str, Spoil, &str)> = vec![
        (
            "fifo-layer",
            &layer,
            fifo,
            "is a named pipe (FIFO), not a regular file",
        ),
        ("fifo-manifest", &manifest, fifo, "is a named pipe (FIFO)"),
        (
            "fifo-index",
            "index.json",
            fifo,
            "index.json is a named pipe (FIFO)",
        ),
        (
            "fifo-layout",
            "oci-layout",
            fifo,
            "oci-layout is a named pipe (FIFO)",
        ),
        (
            "zero-layer",
            &layer,
            dev_zero,
            "is a character device, not a regular file",
        ),
        (
            "zero-index",
            "index.json",
            dev_zero,
            "index.json is a character device",
        ),
        (
            "socket-layer",
            &layer,
            socket,
            "is a socket, not a regular file",
        ),
    ];
    for (case, file, spoil, expect) in cases {
        let dir = tmp.path().join(case);
        good.write_dir(&dir);
        std::fs::remove_file(dir.join(file)).unwrap();
        spoil(&dir.join(file));
        for args in [&["import"][..], &["import", "--format", "oci"]] {
            let mut args = args.to_vec();
            args.push(dir.to_str().unwrap());
            let r = run(&s, &args, FAST);
            let line = r.error_line();
            assert!(
                line.contains(expect) && line.contains(case),
                "{case}: {line}"
            );
            assert!(
                r.elapsed < Duration::from_secs(5),
                "{case}: {:?}",
                r.elapsed
            );
            assert_eq!(before, s.snapshot(), "{case}: store changed");
        }
    }
    // The input itself: a FIFO, a device, a socket, whatever the format.
    let fifo_path = tmp.path().join("archive.fifo");
    mkfifo(&fifo_path);
    let socket_path = tmp.path().join("archive.sock");
    let _listener = UnixListener::bind(&socket_path).unwrap();
    let inputs = [
        (fifo_path.to_str().unwrap(), "a named pipe (FIFO)"),
        ("/dev/zero", "a character device"),
        ("/dev/null", "a character device"),
        (socket_path.to_str().unwrap(), "a socket"),
    ];
    for (input, what) in inputs {
        for format in ["auto", "aci", "oci", "docker"] {
            let r = run(&s, &["import", "--format", format, input], FAST);
            let line = r.error_line();
            assert!(
                line.contains(input) && line.contains(&format!("the input is {what}")),
                "{input} as {format}: {line}"
            );
            assert!(
                r.elapsed < Duration::from_secs(5),
                "{input}: {:?}",
                r.elapsed
            );
        }
    }
    assert_eq!(before, s.snapshot());
    // Nothing holds the store: with an import of a FIFO layout started
    // beside it, `gc --no-wait` (which fails if an import holds the store)
    // runs at once. Before, that import hung in open(2) holding the lock.
    let fifo_layout = tmp.path().join("fifo-index");
    std::thread::scope(|scope| {
        let import = scope.spawn(|| run(&s, &["import", fifo_layout.to_str().unwrap()], FAST));
        std::thread::sleep(Duration::from_millis(300));
        let gc = run(&s, &["gc", "--no-wait"], FAST);
        assert_eq!(gc.code, Some(0), "gc was blocked: {}", gc.stderr);
        assert!(
            gc.elapsed < Duration::from_secs(5),
            "gc took {:?}",
            gc.elapsed
        );
        let import = import.join().unwrap();
        assert!(import.error_line().contains("is a named pipe (FIFO)"));
    });
}

// Defect 3: limits, and tables robust whatever the index holds.

/// Sets a column of every image row whose name is `name`, by SQL.
fn plant(s: &TestStore, sql: &str, params: &[&dyn rusqlite::ToSql]) {
    let conn = rusqlite::Connection::open(s.path().join("index.db")).unwrap();
    conn.execute(sql, params).unwrap();
}

#[test]
fn images_prints_whatever_the_index_holds() {
    let s = store();
    s.ok(&["import", common::fixture("hello.aci").to_str().unwrap()]);
    s.ok(&[
        "import",
        common::fixture("hello-2.0.0.aci").to_str().unwrap(),
    ]);
    let huge = "n".repeat(70_000);
    let evil = "evil\nerror: fake line\u{1b}[31m red\u{0} \u{202e}gpj.exe";
    plant(
        &s,
        "UPDATE images SET name = ?1 WHERE id = (SELECT MIN(id) FROM images)",
        &[&huge],
    );
    plant(
        &s,
        "UPDATE images SET name = ?1 WHERE id = (SELECT MAX(id) FROM images)",
        &[&evil],
    );
    plant(
        &s,
        "UPDATE labels SET value = ?1 WHERE name = 'version'",
        &[&"v".repeat(70_000)],
    );
    for sort in ["name", "imported", "used", "size"] {
        let out = s.ok(&["images", "--sort", sort]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        for line in &lines {
            assert!(
                line.chars().count() < 1000,
                "a cell was not cut: {} chars",
                line.len()
            );
            assert!(!line.contains('\u{1b}') && !line.contains('\0') && !line.contains('\u{202e}'));
        }
        assert!(
            out.contains("evil\\nerror: fake line\\u{1b}[31m red\\0 \\u{202e}gpj.exe"),
            "{out}"
        );
        assert!(out.contains(&format!("{}…", "n".repeat(199))), "{out}");
    }
    // JSON stays exact.
    let images = images_json(&s);
    let names: Vec<&str> = images.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&huge.as_str()) && names.contains(&evil),
        "{names:?}"
    );
    // inspect escapes too, in every field.
    let key = images.iter().find(|i| i["name"] == evil).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let out = s.ok(&["inspect", &key]);
    assert!(
        out.contains("Name:      evil\\nerror: fake line\\u{1b}[31m"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'));
    let json: Value = serde_json::from_str(&s.ok(&["inspect", "--json", &key])).unwrap();
    assert_eq!(json["name"], evil);
    // An error that quotes a name stays one line.
    let err = s.fails(&["latest", "evil\nerror: fake line\u{1b}[31m"]);
    assert!(err.contains("evil\\nerror: fake line\\u{1b}[31m"), "{err}");
}

#[test]
fn names_and_labels_over_the_limits_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let before = s.snapshot();
    let long = |n: usize| "a".repeat(n);
    let labels = |n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("l{i}"), "v".into())).collect()
    };
    let aci = |name: &str, labels: &[(String, String)]| {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        AciBuilder::image(name, &l, b"x")
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "name",
            aci(&long(1025), &[]),
            "manifest field name has 1025 bytes, more than the 1024 allowed",
        ),
        (
            "label-name",
            aci("example.com/a", &[(long(257), "v".into())]),
            "manifest field labels[0] name has 257 bytes, more than the 256 allowed",
        ),
        (
            "label-value",
            aci("example.com/a", &[("k".into(), long(4097))]),
            "manifest field labels[0] value has 4097 bytes, more than the 4096 allowed",
        ),
        (
            "label-count",
            aci("example.com/a", &labels(1025)),
            "manifest field labels has 1025 labels, more than the 1024 allowed",
        ),
    ];
    for (case, bytes, expect) in cases {
        let path = write_file(tmp.path(), &format!("{case}.aci"), &bytes);
        let err = s.fails(&["import", path.to_str().unwrap()]);
        assert!(err.contains(expect) && err.contains(case), "{case}: {err}");
        assert!(err.len() < 400, "{case}: a short message: {err}");
    }
    // OCI: config labels, and names from annotations.
    let oci = |labels: &[(String, String)], name: &str| {
        let mut l = Layout::new();
        let refs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let b = l.image(
            "sha256",
            "amd64",
            &[&[("f", b"x")]],
            builder::LayerCompression::None,
            &refs,
        );
        let mut d = b.desc.clone();
        d["annotations"] = json!({ "io.containerd.image.name": name });
        l.index.push(d);
        l
    };
    let cases: Vec<(&str, Layout, &str)> = vec![
        (
            "oci-label-value",
            oci(&[("k".into(), long(4097))], "example.com/a:1"),
            "label \"k\" value has 4097 bytes, more than the 4096 allowed",
        ),
        (
            "oci-label-name",
            oci(&[(long(257), "v".into())], "example.com/a:1"),
            "name has 257 bytes, more than the 256 allowed",
        ),
        (
            "oci-label-count",
            oci(&labels(1025), "example.com/a:1"),
            "config.Labels has 1025 labels, more than the 1024 allowed",
        ),
        (
            "oci-name",
            oci(&[], &format!("example.com/{}:1", long(1025))),
            "the image name has 1037 bytes, more than the 1024 allowed",
        ),
        (
            "oci-tag",
            oci(&[], &format!("example.com/a:{}", long(4097))),
            "label \"version\" value has 4097 bytes",
        ),
    ];
    for (case, layout, expect) in cases {
        for input in both_forms(tmp.path(), case, &layout) {
            let err = s.fails(&["import", &input]);
            assert!(err.contains(expect) && err.contains(case), "{case}: {err}");
            assert!(err.len() < 400, "{case}: a short message: {err}");
        }
    }
    // The option too.
    let (good, _) = Layout::simple("1.0", b"x");
    let [dir, _] = both_forms(tmp.path(), "named", &good);
    for (name, expect) in [
        (long(1025), "has 1025 bytes, more than the 1024 allowed"),
        ("".into(), "it is empty"),
        ("app:1.0".into(), "without a tag"),
        ("a\nb".into(), "control characters"),
    ] {
        let err = s.fails(&["import", "--name", &name, &dir]);
        assert!(
            err.contains("invalid image name") && err.contains(expect),
            "{err}"
        );
    }
    assert_eq!(before, s.snapshot());

    // At the limits exactly: accepted.
    let at_limit = aci(&long(1024), &labels(1024));
    let path = write_file(tmp.path(), "at-limit.aci", &at_limit);
    s.ok(&["import", path.to_str().unwrap()]);
    // 1021 config labels, os, arch and version: 1024.
    let mut l = labels(1020);
    l.push((long(256), long(4096)));
    for input in both_forms(
        tmp.path(),
        "oci-at-limit",
        &oci(&l, &format!("{}:1", long(1024))),
    ) {
        s.ok(&["import", &input]);
    }
}

// Defect 8: many labels cost linear time.

fn labelled_aci(n: usize) -> Vec<u8> {
    let labels: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"label-{i}","value":"value-{i}"}}"#))
        .collect();
    let m = format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/labels","labels":[{}]}}"#,
        labels.join(",")
    );
    AciBuilder::new()
        .manifest(&m)
        .dir("rootfs")
        .entry("rootfs/f", b"x")
        .build()
}

#[test]
fn labels_cost_linear_time_and_too_many_are_refused_fast() {
    // Before: 25k labels 0.85 s, 200k 78 s (release build).
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let before = s.snapshot();
    for n in [25_000, 200_000] {
        let path = write_file(tmp.path(), &format!("labels-{n}.aci"), &labelled_aci(n));
        let r = run(&s, &["import", path.to_str().unwrap()], FAST);
        let line = r.error_line();
        assert!(
            line.contains(&format!(
                "manifest field labels has {n} labels, more than the 1024 allowed"
            )),
            "{line}"
        );
        // The refusal counts the list without building it: memory stays
        // near the manifest's own size (8 MB at 200k).
        r.assert_within(Duration::from_secs(8), 64);
        assert_eq!(before, s.snapshot());
    }
    // At the limit: imported, in time linear in the labels (a quadratic
    // step would show already at a thousand).
    let mut times = Vec::new();
    for n in [256, 1024] {
        let path = write_file(tmp.path(), &format!("ok-{n}.aci"), &labelled_aci(n));
        let r = run(&s, &["import", path.to_str().unwrap()], FAST);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.assert_within(Duration::from_secs(5), 64);
        times.push(r.elapsed);
        let key = r.stdout.trim();
        let labels = common::inspect(&s, key)["labels"].as_array().unwrap().len();
        assert_eq!(labels, n);
    }
    assert!(
        times[1] < times[0] * 8 + Duration::from_millis(500),
        "1024 labels took {:?}, 256 took {:?}",
        times[1],
        times[0]
    );
    // An OCI config at the limit.
    let mut l = Layout::new();
    let many: Vec<(String, String)> = (0..1021).map(|i| (format!("k{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let b = l.image(
        "sha256",
        "amd64",
        &[&[("f", b"y")]],
        builder::LayerCompression::None,
        &refs,
    );
    l.index.push(named(b.desc.clone(), "example.com/many:1"));
    let [dir, _] = both_forms(tmp.path(), "many", &l);
    let r = run(&s, &["import", &dir], FAST);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.assert_within(Duration::from_secs(5), 64);
    // 1021 config labels, os, arch and version.
    let labels = common::inspect(&s, &b.manifest)["labels"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(labels, 1024);
}

// Defect 9: messages.

#[test]
fn broken_compressed_archives_say_truncated_or_corrupt_naming_the_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let before = s.snapshot();
    // Big enough that the first names come well before the end.
    let plain = AciBuilder::image("example.com/cut", &[], &common::noise(300_000, 7));
    let magic: [(Compression, &[u8]); 4] = [
        (Compression::Gzip, &[0x1f, 0x8b]),
        (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
        (Compression::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
        (Compression::Bzip2, b"BZh"),
    ];
    for (c, magic) in magic {
        let name = c.name();
        let whole = match c {
            // As the zstd tool writes it: with a checksum, without which
            // a spoiled byte of stored data cannot be told.
            Compression::Zstd => {
                let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
                e.include_checksum(true).unwrap();
                std::io::Write::write_all(&mut e, &plain).unwrap();
                e.finish().unwrap()
            }
            c => compress(&plain, c),
        };
        let mut cuts = vec![
            magic.len(),
            magic.len() + 1,
            10,
            100,
            whole.len() / 2,
            whole.len() - 1,
        ];
        if magic.len() > 2 {
            cuts.push(2); // cut inside the magic
        }
        for cut in cuts {
            let path = write_file(tmp.path(), &format!("cut-{name}-{cut}"), &whole[..cut]);
            let err = s.fails(&["import", path.to_str().unwrap()]);
            assert!(
                err.contains(&format!("its {name} data is truncated")),
                "{name} cut at {cut} of {}: {err}",
                whole.len()
            );
        }
        // A byte spoiled in the middle of the stream.
        let mut bad = whole.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0xff;
        bad[at + 1] ^= 0x55;
        let path = write_file(tmp.path(), &format!("corrupt-{name}"), &bad);
        let err = s.fails(&["import", path.to_str().unwrap()]);
        assert!(
            err.contains(&format!("its {name} data is corrupt")),
            "{name} corrupt: {err}"
        );
        assert!(!err.contains("empty"), "{err}");
    }
    // A gzip stream whose checksum is wrong.
    let mut gz = compress(&plain, Compression::Gzip);
    let n = gz.len();
    gz[n - 6] ^= 0xff;
    let path = write_file(tmp.path(), "bad-crc.gz", &gz);
    let err = s.fails(&["import", path.to_str().unwrap()]);
    assert!(
        err.contains("its gzip data is corrupt") && err.contains("checksum"),
        "{err}"
    );
    // And a file that is really empty still says so.
    let path = write_file(tmp.path(), "empty", b"");
    assert!(
        s.fails(&["import", path.to_str().unwrap()])
            .contains("the file is empty")
    );
    assert_eq!(before, s.snapshot());
}

#[test]
fn an_argument_with_a_newline_gives_one_error_line() {
    let s = store();
    for args in [
        &["import", "no\nsuch\nfile"][..],
        &["resolve", "a\nb"],
        &["inspect", "x\ny:1"],
        &["latest", "n\nm"],
        &["rm", "\u{1b}[2Jgone"],
        &["untag", "a\nb:c"],
    ] {
        // `fails` asserts exit code 1 and exactly one `error:` line.
        let err = s.fails(args);
        assert!(!err.contains('\u{1b}'), "{err}");
        assert!(err.contains("\\n") || err.contains("\\u{1b}"), "{err}");
    }
}

#[test]
fn duplicate_json_keys_are_refused_in_every_document_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store();
    let before = s.snapshot();
    // appc: the manifest.
    let dup_manifest = manifest("example.com/dup", &[]).replacen(
        r#""name":"example.com/dup""#,
        r#""name":"example.com/dup","name":"example.com/other""#,
        1,
    );
    let aci = AciBuilder::new()
        .manifest(&dup_manifest)
        .dir("rootfs")
        .build();
    let path = write_file(tmp.path(), "dup.aci", &aci);
    let err = s.fails(&["import", path.to_str().unwrap()]);
    assert!(
        err.contains(r#"manifest gives the key "name" twice (in $)"#),
        "{err}"
    );
    // A label given twice as a key of its object.
    let dup_label = manifest("example.com/dup", &[]).replacen(
        r#""labels":[]"#,
        r#""labels":[{"name":"os","value":"linux","value":"freebsd"}]"#,
        1,
    );
    let aci = AciBuilder::new().manifest(&dup_label).dir("rootfs").build();
    let path = write_file(tmp.path(), "dup-label.aci", &aci);
    let err = s.fails(&["import", path.to_str().unwrap()]);
    assert!(
        err.contains(r#"gives the key "value" twice (in $.labels[0])"#),
        "{err}"
    );

    // OCI: index.json, a manifest's annotations, a config's labels.
    let (good, built) = Layout::simple("app:1", b"dup");
    let mut l = good.clone();
    let index = String::from_utf8(good.index_bytes()).unwrap();
    l.files.insert(
        "index.json".into(),
        index
            .replacen(
                r#""schemaVersion":2"#,
                r#""schemaVersion":2,"schemaVersion":3"#,
                1,
            )
            .into_bytes(),
    );
    let mut cases = vec![(
        "dup-index",
        l,
        r#"index.json gives the key "schemaVersion" twice (in $)"#.to_string(),
    )];
    let mut l = Layout::new();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"1","a":"2"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = l.blob("sha256", config);
    let m = builder::manifest_json(desc(builder::CONFIG, &c, config.len()), vec![]);
    let md = l.blob("sha256", &m);
    l.index
        .push(named(desc(builder::MANIFEST, &md, m.len()), "app:1"));
    cases.push((
        "dup-config",
        l,
        format!(r#"config {c} gives the key "a" twice (in $.config.Labels)"#),
    ));
    let mut l = good.clone();
    let manifest_path = Layout::blob_path(&built.manifest);
    let m = String::from_utf8(l.files[&manifest_path].clone()).unwrap();
    let m = m.replacen(
        r#""config":"#,
        r#""annotations":{"x":"1","x":"2"},"config":"#,
        1,
    );
    let md = l.blob("sha256", m.as_bytes());
    l.index = vec![named(desc(builder::MANIFEST, &md, m.len()), "app:1")];
    cases.push((
        "dup-manifest",
        l,
        r#"gives the key "x" twice (in $.annotations)"#.to_string(),
    ));
    for (case, layout, expect) in cases {
        for input in both_forms(tmp.path(), case, &layout) {
            let err = s.fails(&["import", &input]);
            assert!(err.contains(&expect) && err.contains(case), "{case}: {err}");
        }
    }
    assert_eq!(before, s.snapshot());
}
