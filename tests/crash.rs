//! Crash injection (DESIGN.md §3, invariants 2, 3 and 7): an `imgstore`
//! process is killed with SIGKILL at each failpoint of the import, gc and
//! repair paths, and at random moments. Afterwards `fsck` may find orphans
//! and nothing else, `gc` removes them, and importing again succeeds.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AciBuilder, TestStore, sha512_key, write_file};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgstore")
}

/// Runs `imgstore ARGS` with a failpoint and checks that it was killed.
fn run_killed(store: &TestStore, point: &str, args: &[&str]) {
    let out = Command::new(bin())
        .arg("--store")
        .arg(store.path())
        .args(args)
        .env("IMGSTORE_FAILPOINT", point)
        .output()
        .expect("run imgstore");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{args:?} with failpoint {point} should have been killed; status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The problems `fsck --json` reports, as (kind, key).
fn fsck_problems(store: &TestStore) -> Vec<(String, Option<String>)> {
    let out = store.cmd(&["fsck", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck --json printed no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let problems: Vec<(String, Option<String>)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_string(),
                p["key"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        out.status.success(),
        problems.is_empty(),
        "fsck exit code vs report: {report}"
    );
    problems
}

/// After a crash: only orphans. One gc removes them all — through the
/// intent files the killed process left, without walking the tree, unless
/// `walk` (a repair cut short asks for a walk) — and leaves the tree
/// holding exactly the files the index names, and no intent behind.
fn assert_recovers(store: &TestStore, context: &str, walk: bool) {
    let problems = fsck_problems(store);
    assert!(
        problems.iter().all(|(kind, _)| kind == "orphan"),
        "{context}: fsck after a crash found more than orphans: {problems:?}"
    );
    // Orphans in the tree have a digest for a key; temp files have none.
    let in_tree = problems.iter().filter(|(_, key)| key.is_some()).count();
    let report: serde_json::Value =
        serde_json::from_str(&store.ok(&["gc", "--json", "--grace", "0"])).unwrap();
    assert_eq!(
        report["full_sweep"], walk,
        "{context}: whether gc walked the tree: {report}"
    );
    assert_eq!(
        report["orphans"], in_tree,
        "{context}: gc removed the orphans fsck saw: {report}"
    );
    assert_tree_is_the_index(store, context);
    let problems = fsck_problems(store);
    assert!(
        problems.is_empty(),
        "{context}: fsck after gc: {problems:?}"
    );
}

/// The blob tree holds exactly the files the index names, and no intent is
/// left.
fn assert_tree_is_the_index(store: &TestStore, context: &str) {
    let conn = rusqlite::Connection::open(store.path().join("index.db")).unwrap();
    let mut named: Vec<PathBuf> = conn
        .prepare("SELECT digest FROM blobs")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| blob_path(store.path(), &d.unwrap()))
        .collect();
    named.sort();
    let mut files = Vec::new();
    let mut dirs = vec![store.path().join("blobs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    assert_eq!(files, named, "{context}: the tree vs the index");
    let intents: Vec<_> = std::fs::read_dir(store.path().join("intents"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(intents.is_empty(), "{context}: intents left: {intents:?}");
}

/// Every image listed is complete: its manifest and each blob read back
/// verified.
fn assert_images_complete(store: &TestStore) {
    let images: serde_json::Value = serde_json::from_str(&store.ok(&["images", "--json"])).unwrap();
    for image in images.as_array().unwrap() {
        let key = image["key"].as_str().unwrap();
        assert!(
            store
                .cmd(&["manifest", key])
                .output()
                .unwrap()
                .status
                .success()
        );
        let details: serde_json::Value =
            serde_json::from_str(&store.ok(&["inspect", key, "--json"])).unwrap();
        for blob in details["blobs"].as_array().unwrap() {
            let digest = blob["digest"].as_str().unwrap();
            let out = store.cmd(&["cat", digest]).output().unwrap();
            assert!(
                out.status.success(),
                "cat {digest} of image {key}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

struct Fixture {
    store: TestStore,
    _inputs: tempfile::TempDir,
    base: PathBuf,
    image: PathBuf,
    image_key: String,
}

/// A store holding one image, and a second archive ready to import.
fn fixture() -> Fixture {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let base_bytes = AciBuilder::image("example.com/base", &[("version", "1")], b"base");
    let base = write_file(inputs.path(), "base.aci", &base_bytes);
    let bytes = AciBuilder::image("example.com/app", &[("version", "1")], &vec![7u8; 300_000]);
    let image = write_file(inputs.path(), "app.aci", &bytes);
    store.ok(&["import", base.to_str().unwrap()]);
    Fixture {
        store,
        _inputs: inputs,
        base,
        image,
        image_key: sha512_key(&bytes),
    }
}

#[test]
fn import_killed_at_each_failpoint_leaves_only_orphans() {
    let points = [
        "blob-after-temp-write",
        "blob-after-temp-write:2",
        "publish-before-fsync",
        "publish-after-rename",
        "publish-before-fsync:2",
        "publish-after-rename:2",
        "import-before-commit",
        "import-after-commit",
    ];
    for point in points {
        let f = fixture();
        let image = f.image.to_str().unwrap();
        run_killed(&f.store, point, &["import", image]);
        let visible = f
            .store
            .cmd(&["inspect", &f.image_key])
            .output()
            .unwrap()
            .status
            .success();
        // Only a kill after the commit may leave the image visible, and then
        // it must be whole (invariant 3).
        assert_eq!(
            visible,
            point == "import-after-commit",
            "{point}: image visible = {visible}"
        );
        assert_images_complete(&f.store);
        let renamed_uncommitted = [
            "publish-after-rename",
            "publish-before-fsync:2",
            "publish-after-rename:2",
            "import-before-commit",
        ];
        if renamed_uncommitted.contains(&point) {
            // Files in the tree that no row names yet: only the intent the
            // import wrote before its first rename records them.
            assert!(
                fsck_problems(&f.store).iter().any(|(_, key)| key.is_some()),
                "{point}: no orphan to recover"
            );
        }
        assert_recovers(&f.store, point, false);
        assert_eq!(
            f.store.ok(&["import", image]).trim(),
            f.image_key,
            "{point}: re-import"
        );
        assert_images_complete(&f.store);
        assert!(
            fsck_problems(&f.store).is_empty(),
            "{point}: after re-import"
        );
        assert!(
            f.store
                .ok(&["resolve", "example.com/base"])
                .starts_with("sha512:")
        );
    }
}

#[test]
fn oci_import_killed_between_renames_and_commit_leaves_orphans_that_a_plain_gc_finds() {
    // An oci-archive stages config, layer and manifest, then publishes them
    // in one go (import::graph): a kill after any rename leaves orphans
    // that only its intent records.
    for point in [
        "publish-after-rename",
        "publish-after-rename:3",
        "import-before-commit",
    ] {
        let store = TestStore::new();
        let inputs = tempfile::tempdir().unwrap();
        let (layout, built) = builder::Layout::simple("example.com/oci:1", b"hello from oci");
        let archive = write_file(inputs.path(), "image.tar", &layout.tar());
        let archive = archive.to_str().unwrap();
        run_killed(&store, point, &["import", archive]);
        assert!(
            fsck_problems(&store).iter().any(|(_, key)| key.is_some()),
            "{point}: no orphan to recover"
        );
        assert_recovers(&store, point, false);
        assert_eq!(store.ok(&["import", archive]).trim(), built.manifest);
        assert_images_complete(&store);
        assert!(fsck_problems(&store).is_empty(), "{point}: after re-import");
    }
}

/// A store with garbage for gc: a removed image, and a pinned blob set free.
fn fixture_with_garbage() -> Fixture {
    let f = fixture();
    f.store.ok(&["import", f.image.to_str().unwrap()]);
    let other = AciBuilder::image("example.com/gone", &[], &vec![9u8; 200_000]);
    let other = write_file(f._inputs.path(), "gone.aci", &other);
    f.store.ok(&["import", other.to_str().unwrap()]);
    f.store.ok(&["rm", "example.com/gone"]);
    f.store.ok(&["rm", "example.com/app"]);
    f
}

#[test]
fn gc_killed_at_each_failpoint_leaves_only_orphans() {
    for point in [
        "gc-before-commit",
        "gc-after-commit",
        "gc-mid-sweep",
        "gc-mid-sweep:2",
        "gc-mid-sweep:3",
    ] {
        let f = fixture_with_garbage();
        run_killed(&f.store, point, &["gc", "--grace", "0"]);
        assert_images_complete(&f.store);
        if point != "gc-before-commit" {
            // Rows gone, some files still there: orphans, all of them in
            // the intent gc wrote before its commit.
            assert!(
                fsck_problems(&f.store).iter().any(|(_, key)| key.is_some()),
                "{point}: no orphan to recover"
            );
        }
        assert_recovers(&f.store, point, false);
        let du: serde_json::Value = serde_json::from_str(&f.store.ok(&["du", "--json"])).unwrap();
        assert_eq!(
            du["garbage_blobs"], 0,
            "{point}: garbage left after gc: {du}"
        );
        assert_eq!(
            f.store.ok(&["import", f.image.to_str().unwrap()]).trim(),
            f.image_key
        );
        f.store.ok(&["import", f.base.to_str().unwrap()]);
        assert_images_complete(&f.store);
        assert!(
            fsck_problems(&f.store).is_empty(),
            "{point}: after re-import"
        );
    }
}

#[test]
fn repair_killed_between_rows_and_files_leaves_only_orphans() {
    let f = fixture();
    f.store.ok(&["import", f.image.to_str().unwrap()]);
    let tar = blob_path(f.store.path(), &f.image_key);
    corrupt(&tar);
    run_killed(&f.store, "fsck-after-index-repair", &["fsck", "--repair"]);
    // The image needing the corrupt blob is gone; its file is an orphan.
    assert!(
        !f.store
            .cmd(&["inspect", &f.image_key])
            .output()
            .unwrap()
            .status
            .success()
    );
    // The repair's commit asked for a walk: its files are in no intent.
    assert_recovers(&f.store, "fsck-after-index-repair", true);
    let report: serde_json::Value =
        serde_json::from_str(&f.store.ok(&["gc", "--json", "--grace", "0"])).unwrap();
    assert_eq!(report["full_sweep"], false, "one walk is enough: {report}");
    assert_eq!(
        f.store.ok(&["import", f.image.to_str().unwrap()]).trim(),
        f.image_key
    );
    assert_images_complete(&f.store);
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    store.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

fn corrupt(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[600] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// A small, seedable generator (xorshift), so a failing run can be replayed
/// with `IMGSTORE_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("IMGSTORE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("random kills: IMGSTORE_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kills imports and gcs at random moments, many times over one store,
/// checking after each kill that fsck finds nothing but orphans.
#[test]
fn random_kills_during_import_and_gc() {
    let rounds: usize = std::env::var("IMGSTORE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut rng = Rng::from_env();
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let archives: Vec<PathBuf> = (0..4)
        .map(|i| {
            let content: Vec<u8> = (0..2_000_000u32)
                .map(|b| (b.wrapping_mul(31 + i)) as u8)
                .collect();
            let bytes = common::compress(
                &AciBuilder::image(&format!("example.com/random{i}"), &[], &content),
                imgstore::Compression::Gzip,
            );
            write_file(inputs.path(), &format!("r{i}.aci"), &bytes)
        })
        .collect();
    let mut kills = 0;
    let mut commands = 0;
    for round in 0..rounds {
        // One to three commands at once, each killed at its own moment (or
        // left to finish if it is quicker).
        let mut running = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let archive = archives[rng.below(archives.len() as u64) as usize]
                .to_str()
                .unwrap();
            let args: Vec<&str> = match rng.below(4) {
                0 => vec!["gc", "--grace", "0"],
                1 => vec!["rm", "example.com/random0"],
                _ => vec!["import", archive],
            };
            let delay = Duration::from_micros(rng.below(60_000));
            let child = Command::new(bin())
                .arg("--store")
                .arg(store.path())
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            running.push((child, args, delay));
        }
        commands += running.len();
        let start = Instant::now();
        for (child, _, delay) in &mut running {
            while start.elapsed() < *delay && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_micros(500));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
        }
        let what: Vec<_> = running.iter().map(|(_, a, d)| (a.clone(), *d)).collect();
        let problems = fsck_problems(&store);
        assert!(
            problems.iter().all(|(kind, _)| kind == "orphan"),
            "round {round}: {what:?} killed: fsck found {problems:?}"
        );
        assert_images_complete(&store);
    }
    eprintln!("random kills: {kills} of {commands} commands in {rounds} rounds killed mid-run");
    assert_recovers(&store, "random kills", false);
    for archive in &archives {
        store.ok(&["import", archive.to_str().unwrap()]);
    }
    assert_images_complete(&store);
    assert!(fsck_problems(&store).is_empty());
}
