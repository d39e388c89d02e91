//! Concurrency (DESIGN.md §3, invariants 5 and 6): real processes import
//! overlapping images while another runs gc in a loop and another reads;
//! and eight processes race compare-and-set updates of the same tags.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{AciBuilder, TestStore, compress, sha512_key, write_file};
use imgstore::{Compression, Digest, Error, Store};

fn imgstore(store: &TestStore, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgstore"))
        .arg("--store")
        .arg(store.path())
        .args(args)
        .env_remove("IMGSTORE_FAILPOINT")
        .output()
        .expect("run imgstore")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Contention must never surface as an error (invariant 6).
fn assert_no_contention_error(what: &str, out: &Output) {
    let err = stderr(out).to_lowercase();
    assert!(
        !err.contains("locked") && !err.contains("busy"),
        "{what} failed for contention: {err}"
    );
}

#[test]
fn imports_gc_and_reads_run_at_once() {
    const IMPORTERS: usize = 4;
    const ROUNDS: usize = 3;
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    // Eight shared images, each imported by three of the four importers.
    let shared: Vec<(PathBuf, String, String)> = (0..8u32)
        .map(|i| {
            let content: Vec<u8> = (0..300_000u32)
                .map(|b| (b ^ (b >> 7)).wrapping_mul(i + 3) as u8)
                .collect();
            let name = format!("example.com/shared{i}");
            let tar = AciBuilder::image(&name, &[("version", "1")], &content);
            let path = write_file(
                inputs.path(),
                &format!("shared{i}.aci"),
                &compress(&tar, Compression::Gzip),
            );
            (path, sha512_key(&tar), name)
        })
        .collect();
    let scratch: Vec<PathBuf> = (0..IMPORTERS)
        .map(|i| {
            let tar = AciBuilder::image(
                &format!("example.com/scratch{i}"),
                &[],
                &vec![i as u8; 300_000],
            );
            write_file(inputs.path(), &format!("scratch{i}.aci"), &tar)
        })
        .collect();
    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));

    let gc = {
        let (store, done) = (store.clone(), done.clone());
        thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) {
                let out = imgstore(&store, &["gc", "--grace", "0"]);
                assert!(out.status.success(), "gc failed: {}", stderr(&out));
                runs += 1;
            }
            runs
        })
    };
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        let shared = shared.clone();
        thread::spawn(move || {
            let (mut reads, mut found) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                for (_, key, name) in &shared {
                    for args in [vec!["latest", name.as_str()], vec!["cat", key.as_str()]] {
                        let out = imgstore(&store, &args);
                        reads += 1;
                        if out.status.success() {
                            found += 1;
                            continue;
                        }
                        assert_no_contention_error("a read", &out);
                        // Before its first import an image is simply absent.
                        let err = stderr(&out);
                        assert!(
                            err.contains("no image named") || err.contains("matches key"),
                            "{args:?} failed: {err}"
                        );
                    }
                }
            }
            (reads, found)
        })
    };
    let importers: Vec<_> = (0..IMPORTERS)
        .map(|i| {
            let store = store.clone();
            let mut mine: Vec<String> = shared
                .iter()
                .enumerate()
                .filter(|(k, _)| k % IMPORTERS != i)
                .map(|(_, (p, _, _))| p.to_str().unwrap().to_string())
                .collect();
            let scratch = scratch[i].to_str().unwrap().to_string();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    mine.rotate_left(i + round);
                    let mut args = vec!["import", scratch.as_str()];
                    args.extend(mine.iter().map(String::as_str));
                    let out = imgstore(&store, &args);
                    assert_no_contention_error("an import", &out);
                    assert!(
                        out.status.success(),
                        "importer {i} round {round}: {}",
                        stderr(&out)
                    );
                    let out = imgstore(&store, &["rm", &format!("example.com/scratch{i}")]);
                    assert!(out.status.success(), "importer {i} rm: {}", stderr(&out));
                }
            })
        })
        .collect();
    for importer in importers {
        importer.join().expect("an importer failed");
    }
    done.store(true, Ordering::SeqCst);
    let gc_runs = gc.join().expect("gc failed");
    let (reads, found) = reader.join().expect("the reader failed");
    eprintln!("{gc_runs} gc runs, {reads} reads ({found} found) during the imports");
    // The gate lets gc in between overlapping imports (without it, flock
    // lets the importers starve gc until they all finish).
    assert!(
        gc_runs >= 3,
        "gc was starved by the imports: {gc_runs} runs"
    );

    // Every shared image is complete: each blob reads back verified.
    for (_, key, name) in &shared {
        assert_eq!(store.ok(&["resolve", name]).trim(), key);
        let details: serde_json::Value =
            serde_json::from_str(&store.ok(&["inspect", key, "--json"])).unwrap();
        let blobs = details["blobs"].as_array().unwrap();
        assert_eq!(blobs.len(), 2, "{name}: {details}");
        for blob in blobs {
            let out = imgstore(&store, &["cat", blob["digest"].as_str().unwrap()]);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        }
    }
    let out = imgstore(&store, &["fsck"]);
    assert!(
        out.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    store.ok(&["gc", "--grace", "0"]);
    let du: serde_json::Value = serde_json::from_str(&store.ok(&["du", "--json"])).unwrap();
    assert_eq!(du["images"], 8);
    assert_eq!(du["garbage_blobs"], 0);
}

const TAG_WORKERS: usize = 8;
const UPDATES_PER_WORKER: usize = 125;
const TAGS: usize = 4;

fn tag_name(t: usize) -> String {
    format!("example.com/tagged{t}:live")
}

/// One compare-and-set worker, run in its own process: the test binary
/// re-executes itself with `IMGSTORE_TAG_WORKER` set, and this test then
/// does the worker's share instead of passing at once.
#[test]
fn tag_worker() {
    let Ok(spec) = std::env::var("IMGSTORE_TAG_WORKER") else {
        return;
    };
    let mut parts = spec.split(';');
    let (dir, log, seed) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let keys: Vec<Digest> = parts
        .next()
        .unwrap()
        .split(',')
        .map(|k| k.parse().unwrap())
        .collect();
    let mut rng: u64 = seed.parse::<u64>().unwrap() * 2654435761 + 1;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let store = Store::open(dir).unwrap();
    let mut lines = Vec::new();
    let mut conflicts = 0;
    for _ in 0..UPDATES_PER_WORKER {
        loop {
            let tag = tag_name(next(TAGS));
            let current = store.resolve(&tag).ok();
            let new = loop {
                let k = &keys[next(keys.len())];
                if Some(k) != current.as_ref() {
                    break k.clone();
                }
            };
            match store.tag(&new, &tag, Some(current.as_ref())) {
                Ok(()) => {
                    let from = current.map_or("none".to_string(), |c| c.to_string());
                    lines.push(format!("{tag} {from} {new}"));
                    break;
                }
                Err(Error::TagConflict { .. }) => conflicts += 1,
                Err(e) => panic!("tag update failed: {e}"),
            }
        }
    }
    lines.push(format!("conflicts {conflicts}"));
    std::fs::write(log, lines.join("\n") + "\n").unwrap();
}

#[test]
fn concurrent_tag_updates_are_never_lost() {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut keys = Vec::new();
    for i in 0..6 {
        let tar = AciBuilder::image("example.com/target", &[("version", &i.to_string())], b"x");
        keys.push(sha512_key(&tar));
        paths.push(write_file(inputs.path(), &format!("t{i}.aci"), &tar));
    }
    let mut args = vec!["import"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    store.ok(&args);

    let workers: Vec<_> = (0..TAG_WORKERS)
        .map(|w| {
            let log = inputs.path().join(format!("worker{w}.log"));
            let spec = format!(
                "{};{};{};{}",
                store.path().display(),
                log.display(),
                w + 1,
                keys.join(",")
            );
            let child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "tag_worker",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("IMGSTORE_TAG_WORKER", spec)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();

    // For each tag, the successful updates, as edges from the value each
    // one expected to the value it set.
    let mut edges: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut conflicts = 0;
    for (mut child, log) in workers {
        assert!(child.wait().unwrap().success(), "a tag worker failed");
        for line in std::fs::read_to_string(&log).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["conflicts", n] => conflicts += n.parse::<usize>().unwrap(),
                [tag, from, to] => edges
                    .entry(tag.to_string())
                    .or_default()
                    .push((from.to_string(), to.to_string())),
                _ => panic!("bad log line {line:?}"),
            }
        }
    }
    let total: usize = edges.values().map(Vec::len).sum();
    assert_eq!(
        total,
        TAG_WORKERS * UPDATES_PER_WORKER,
        "every worker logs its updates"
    );
    eprintln!("{total} tag updates, {conflicts} compare-and-set conflicts retried");

    // With no update lost, each tag's successful updates chain into one
    // path from "none" through every update to the tag's final value: every
    // value is left as often as it is entered, but the start and the end.
    // Two updates that both succeeded from the same value (a lost update)
    // leave that value once too often.
    for t in 0..TAGS {
        let tag = tag_name(t);
        let Some(updates) = edges.get(&tag) else {
            continue;
        };
        let last = store.ok(&["resolve", &tag]).trim().to_string();
        let mut balance: HashMap<&str, i64> = HashMap::new();
        for (from, to) in updates {
            *balance.entry(from).or_default() += 1;
            *balance.entry(to).or_default() -= 1;
        }
        *balance.entry("none").or_default() -= 1;
        *balance.entry(&last).or_default() += 1;
        let off: Vec<_> = balance.iter().filter(|(_, b)| **b != 0).collect();
        assert!(
            off.is_empty(),
            "{tag}: updates do not chain to the final value {last}: {off:?}"
        );
    }
}

#[test]
fn tag_compare_and_set_on_the_command_line() {
    let store = TestStore::new();
    let inputs = tempfile::tempdir().unwrap();
    let a = AciBuilder::image("example.com/cas", &[("version", "1")], b"a");
    let b = AciBuilder::image("example.com/cas", &[("version", "2")], b"b");
    let (ka, kb) = (sha512_key(&a), sha512_key(&b));
    let pa = write_file(inputs.path(), "a.aci", &a);
    let pb = write_file(inputs.path(), "b.aci", &b);
    store.ok(&["import", pa.to_str().unwrap(), pb.to_str().unwrap()]);
    store.ok(&["tag", &ka, "cas:live", "--expect", "none"]);
    let err = store.fails(&["tag", &kb, "cas:live", "--expect", "none"]);
    assert!(err.contains("cas:live"), "{err}");
    let err = store.fails(&["tag", &kb, "cas:live", "--expect", &kb]);
    assert!(
        err.contains(&ka),
        "the error names the actual target: {err}"
    );
    assert_eq!(store.ok(&["resolve", "cas:live"]).trim(), ka);
    store.ok(&["tag", &kb, "cas:live", "--expect", &ka]);
    assert_eq!(store.ok(&["resolve", "cas:live"]).trim(), kb);
}
