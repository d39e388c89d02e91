//! What a pull does not ask for: an unchanged tag costs one HEAD (no blob,
//! no manifest body); blobs the store has are never requested; a digest
//! reference the store has costs nothing at all; and `--jobs` is one limit
//! over every reference of the command. Counted at a proxy in front of a
//! real registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use testkit::Registry;

use crate::support::{Env, Proxy, host_arch, image_layout, skopeo_push, two_platform_layout};

fn remote_time(env: &Env) -> String {
    let remotes: Value = serde_json::from_str(&env.ok(&["remotes", "--json"])).unwrap();
    remotes[0]["downloaded_at"].as_str().unwrap().to_string()
}

#[test]
fn a_re_pull_of_an_unchanged_tag_transfers_no_blob_and_no_manifest_body() {
    let registry = Registry::start();
    let proxy = Proxy::forwarding(&registry.url(""));
    let (dir, _, built) = image_layout(10, 16 * 1024);
    skopeo_push(dir.path(), "v1", &format!("{}/re/pull:v1", registry.host()));
    let reference = format!("{}/re/pull:v1", proxy.host());
    let env = Env::new();

    let first = env.pull_json(&[&reference]);
    assert_eq!(first[0]["image"]["key"], built.manifest.as_str());
    let log = proxy.log();
    assert_eq!(log.iter().filter(|e| e.is_blob_get()).count(), 3);
    assert_eq!(log.iter().filter(|e| e.is_manifest_get()).count(), 1);
    let before = remote_time(&env);

    proxy.clear();
    let started = std::time::Instant::now();
    let again = env.pull_json(&[&reference]);
    let took = started.elapsed();
    assert_eq!(again[0]["image"]["key"], built.manifest.as_str());
    assert_eq!(again[0]["unchanged"], true);
    assert_eq!(again[0]["blobs_downloaded"], 0);
    let log = proxy.log();
    assert_eq!(log.len(), 1, "one request: {log:#?}");
    assert_eq!(log[0].method, "HEAD");
    assert!(log[0].path.ends_with("/manifests/v1"), "{}", log[0].path);
    assert_eq!(log[0].sent, 0);
    assert_ne!(remote_time(&env), before, "the remote's time moved");
    eprintln!("re-pull of an unchanged tag: {took:?} (process and all)");

    // The tag moves to another image: its manifest comes, and only the
    // blobs the store lacks (the new image shares none).
    let (dir, _, other) = image_layout(11, 16 * 1024);
    skopeo_push(dir.path(), "v1", &format!("{}/re/pull:v1", registry.host()));
    proxy.clear();
    let moved = env.pull_json(&[&reference]);
    assert_eq!(moved[0]["image"]["key"], other.manifest.as_str());
    assert_eq!(moved[0]["unchanged"], false);
    let log = proxy.log();
    assert_eq!(log.iter().filter(|e| e.is_manifest_get()).count(), 1);
    assert_eq!(log.iter().filter(|e| e.is_blob_get()).count(), 3);
    assert_eq!(env.ok(&["resolve", &reference]).trim(), other.manifest);
}

#[test]
fn another_platform_of_a_pulled_index_needs_no_index_body_and_a_digest_no_request() {
    let registry = Registry::start();
    let proxy = Proxy::forwarding(&registry.url(""));
    let (dir, _, index, amd64, arm64) = two_platform_layout(12);
    skopeo_push(
        dir.path(),
        "multi",
        &format!("{}/re/multi:v1", registry.host()),
    );
    let reference = format!("{}/re/multi:v1", proxy.host());
    let env = Env::new();
    let (native, other, other_platform) = if host_arch() == "arm64" {
        (&arm64, &amd64, "linux/amd64")
    } else {
        (&amd64, &arm64, "linux/arm64")
    };
    let first = env.pull_json(&[&reference]);
    assert_eq!(first[0]["image"]["key"], native.manifest.as_str());

    // The index was kept for the remote: choosing again reads it from the
    // store, and only the other platform's manifest and blobs come.
    proxy.clear();
    let pulled = env.pull_json(&["--platform", other_platform, &reference]);
    assert_eq!(pulled[0]["image"]["key"], other.manifest.as_str());
    let gets = proxy.gets();
    let log = proxy.log();
    assert!(
        !gets.iter().any(|p| p.ends_with("/manifests/v1")),
        "the index body was asked for again: {gets:?}"
    );
    assert!(
        gets.iter()
            .any(|p| p.ends_with(&format!("/manifests/{}", other.manifest)))
    );
    assert_eq!(log.iter().filter(|e| e.is_blob_get()).count(), 2);
    let remotes: Value = serde_json::from_str(&env.ok(&["remotes", "--json"])).unwrap();
    assert_eq!(
        remotes[0]["blob"],
        index.as_str(),
        "the remote holds the index"
    );

    // A reference by a digest the store has: no request at all.
    proxy.clear();
    let by_digest = format!("{}/re/multi@{}", proxy.host(), native.manifest);
    let pulled = env.pull_json(&[&by_digest]);
    assert_eq!(pulled[0]["image"]["key"], native.manifest.as_str());
    assert_eq!(pulled[0]["unchanged"], true);
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());

    // gc keeps what remotes hold, fsck finds the counts right.
    env.ok(&["gc", "--grace", "0s"]);
    env.ok(&["fsck"]);
    // The tag is where the last pull of it left it.
    assert_eq!(env.ok(&["resolve", &reference]).trim(), other.manifest);
}

#[test]
fn jobs_is_one_limit_over_every_reference_and_shared_blobs_come_once() {
    let registry = Registry::start();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, max) = (Arc::clone(&in_flight), Arc::clone(&most));
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        if req.method != "GET" || !req.path.contains("/blobs/") {
            return fwd(req);
        }
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(n, Ordering::SeqCst);
        // Slow enough that the downloads overlap if they may.
        std::thread::sleep(Duration::from_millis(150));
        let reply = fwd(req);
        now.fetch_sub(1, Ordering::SeqCst);
        reply
    });
    let (a, _, first) = image_layout(13, 8 * 1024);
    let (b, _, second) = image_layout(14, 8 * 1024);
    skopeo_push(a.path(), "v1", &format!("{}/jobs/a:v1", registry.host()));
    skopeo_push(b.path(), "v1", &format!("{}/jobs/b:v1", registry.host()));
    // The same image under a second name: its blobs are shared.
    skopeo_push(a.path(), "v1", &format!("{}/jobs/c:v1", registry.host()));
    let env = Env::new();
    let pulled = env.pull_json(&[
        "--jobs",
        "2",
        &format!("{}/jobs/a:v1", proxy.host()),
        &format!("{}/jobs/b:v1", proxy.host()),
        &format!("{}/jobs/c:v1", proxy.host()),
    ]);
    assert_eq!(pulled.len(), 3);
    assert_eq!(pulled[0]["image"]["key"], first.manifest.as_str());
    assert_eq!(pulled[1]["image"]["key"], second.manifest.as_str());
    assert_eq!(pulled[2]["image"]["key"], first.manifest.as_str());
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "two at a time, over all references"
    );
    let log = proxy.log();
    let blob_gets = log.iter().filter(|e| e.is_blob_get()).count();
    assert_eq!(blob_gets, 6, "each blob once: {log:#?}");
    for name in ["a", "b", "c"] {
        let reference = format!("{}/jobs/{name}:v1", proxy.host());
        assert!(!env.ok(&["resolve", &reference]).trim().is_empty());
    }
}
