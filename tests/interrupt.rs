//! SIGINT and SIGTERM (issue 13, defect 11): an interrupted import removes
//! what it staged and exits with the conventional status (130, 143), so
//! that nothing is left in `tmp/` for gc and `fsck` finds the store clean
//! and unchanged. A gc or fsck waiting for the store lock exits the same
//! way and leaves the import it waited for alone. (SIGKILL cannot be
//! caught: `tests/crash.rs` shows that what it leaves is gc's job.)
//!
//! The inputs are large but sparse (a few hundred MB that take no disk),
//! so that the import is surely still writing when the signal comes; the
//! test signals it as soon as its temp files are in `tmp/`.

mod common;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{AciBuilder, TestStore, write_file};

/// A running `imgstore`, killed if the test fails before it ends.
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(store: &Path, args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_imgstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("IMGSTORE_FAILPOINT")
        .env_remove("IMGSTORE_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imgstore");
    Running(Some(child))
}

fn signal(child: &Running, signal: libc::c_int) {
    // SAFETY: kill(2) of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Waits until `done` holds, failing after a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The temp files in `tmp/` and their sizes.
fn temp_files(store: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect()
}

/// Waits for `child` and returns its exit code and stderr.
fn finish(mut child: Running) -> (Option<i32>, String) {
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

/// Appends a tar header for a regular file of `size` bytes and leaves a
/// hole for its contents (padded to a block).
fn sparse_member(f: &mut File, name: &str, size: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    f.write_all(h.as_bytes()).unwrap();
    f.seek(SeekFrom::Current(size.div_ceil(512) as i64 * 512))
        .unwrap();
}

fn small_member(f: &mut File, name: &str, bytes: &[u8], kind: tar::EntryType) {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(kind);
    h.set_cksum();
    f.write_all(h.as_bytes()).unwrap();
    f.write_all(bytes).unwrap();
    f.write_all(&vec![0; (512 - bytes.len() % 512) % 512])
        .unwrap();
}

fn end_of_archive(mut f: File) {
    f.write_all(&[0; 1024]).unwrap();
    f.sync_all().unwrap();
}

/// An ACI whose rootfs holds one sparse file of `size` bytes.
fn sparse_aci(path: &Path, size: u64) {
    let mut f = File::create(path).unwrap();
    let manifest = common::manifest("example.com/big", &[]);
    small_member(
        &mut f,
        "manifest",
        manifest.as_bytes(),
        tar::EntryType::Regular,
    );
    small_member(&mut f, "rootfs", b"", tar::EntryType::Directory);
    sparse_member(&mut f, "rootfs/big", size);
    end_of_archive(f);
}

/// A docker archive (`manifest.json` first) of sparse layers.
fn sparse_docker_archive(path: &Path, sizes: &[u64]) {
    let mut f = File::create(path).unwrap();
    let layers: Vec<String> = (0..sizes.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["example.com/layers:1"],
        "Layers": layers,
    }]);
    small_member(
        &mut f,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
        tar::EntryType::Regular,
    );
    small_member(
        &mut f,
        "config.json",
        br#"{"architecture":"amd64","os":"linux"}"#,
        tar::EntryType::Regular,
    );
    for (name, size) in layers.iter().zip(sizes) {
        sparse_member(&mut f, name, *size);
    }
    end_of_archive(f);
}

/// A store with one small image, and a snapshot of it.
fn store() -> (TestStore, tempfile::TempDir) {
    let t = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let small = write_file(
        inputs.path(),
        "small.aci",
        &AciBuilder::image("example.com/small", &[], b"small"),
    );
    t.ok(&["import", small.to_str().unwrap()]);
    (t, inputs)
}

fn assert_clean_and_unchanged(t: &TestStore, before: &common::Snapshot, what: &str) {
    assert_eq!(temp_files(t.path()), vec![], "{what}: temp files left");
    let out = t.cmd(&["fsck"]).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(&t.snapshot(), before, "{what}: the store changed");
}

#[test]
fn an_interrupted_import_removes_its_temp_file_and_exits_130() {
    let (t, inputs) = store();
    let input = inputs.path().join("big.aci");
    sparse_aci(&input, 1 << 30);
    let before = t.snapshot();
    let child = spawn(t.path(), &["import", input.to_str().unwrap()]);
    wait_for("the import's temp file", || {
        temp_files(t.path()).iter().any(|(_, len)| *len >= 2 << 20)
    });
    signal(&child, libc::SIGINT);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(stderr, "error: interrupted by SIGINT");
    assert_clean_and_unchanged(&t, &before, "SIGINT");
}

#[test]
fn a_terminated_import_removes_every_staged_layer_and_exits_143() {
    let (t, inputs) = store();
    let input = inputs.path().join("layers.tar");
    // A plain archive's layers stage on one thread per core, largest
    // first: the big one is still being written when the small ones are
    // staged.
    sparse_docker_archive(&input, &[1 << 30, 1 << 20, 512 << 10, 256 << 10]);
    let before = t.snapshot();
    let child = spawn(t.path(), &["import", input.to_str().unwrap()]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if cores > 1 { 4 } else { 1 };
    wait_for("the layers' temp files", || {
        let files = temp_files(t.path());
        files.len() >= wanted && files.iter().any(|(_, len)| *len >= 2 << 20)
    });
    signal(&child, libc::SIGTERM);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(stderr, "error: interrupted by SIGTERM");
    assert_clean_and_unchanged(&t, &before, "SIGTERM");
}

/// Whether `pid` waits for a flock (`/proc/locks` lists waiters with
/// `->`).
fn waits_for_a_lock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&"->") && fields.get(5) == Some(&pid.to_string().as_str())
        })
}

#[test]
fn gc_and_fsck_waiting_for_an_import_exit_on_a_signal_and_leave_it_alone() {
    let (t, inputs) = store();
    let input = inputs.path().join("big.aci");
    sparse_aci(&input, 1 << 30);
    let before = t.snapshot();
    let import = spawn(t.path(), &["import", input.to_str().unwrap()]);
    wait_for("the import's temp file", || {
        temp_files(t.path()).iter().any(|(_, len)| *len >= 1 << 20)
    });
    for (args, sig, code) in [
        (&["gc", "--grace", "0"][..], libc::SIGTERM, 143),
        (&["fsck", "--repair"], libc::SIGINT, 130),
    ] {
        let waiter = spawn(t.path(), args);
        wait_for("the waiter to block on the store lock", || {
            waits_for_a_lock(waiter.id())
        });
        signal(&waiter, sig);
        let (exit, stderr) = finish(waiter);
        assert_eq!(exit, Some(code), "{args:?}: {stderr}");
        // The import's temp file is still there, still growing.
        assert!(!temp_files(t.path()).is_empty(), "{args:?} removed it");
    }
    signal(&import, libc::SIGINT);
    let (code, stderr) = finish(import);
    assert_eq!(code, Some(130), "{stderr}");
    assert_clean_and_unchanged(&t, &before, "waiters");
}
