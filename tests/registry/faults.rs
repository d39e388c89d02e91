//! Faults a real registry does not make on demand, made by a proxy in
//! front of one: each test asserts what the proxy saw, and that a pull
//! that fails leaves the store exactly as it was (invariants 7 and 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use testkit::Registry;
use testkit::fault::Reply;

use crate::support::{Env, Exchange, Proxy, image_layout, sha256, skopeo_push};

/// A registry holding one image, `faults/app:v1`, whose first layer is
/// big enough to cut short; returns it with the image's digests.
fn registry_with_image(seed: u64) -> (Registry, crate::oci_builder::Built, u64) {
    let registry = Registry::start();
    let (dir, layout, built) = image_layout(seed, 256 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/faults/app:v1", registry.host()),
    );
    let size = layout.files[&crate::oci_builder::Layout::blob_path(&built.layers[0])].len() as u64;
    (registry, built, size)
}

fn exchanges_for<'a>(log: &'a [Exchange], digest: &str) -> Vec<&'a Exchange> {
    log.iter()
        .filter(|e| e.method == "GET" && e.path.ends_with(digest))
        .collect()
}

#[test]
fn a_429_is_retried_after_retry_after() {
    let (registry, built, _) = registry_with_image(20);
    let layer = built.layers[0].clone();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&refused);
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        if req.path.ends_with(&layer) && count.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::new(429)
                .header("Retry-After", "1")
                .header("RateLimit-Remaining", "0;w=60");
        }
        fwd(req)
    });
    let env = Env::new();
    let started = std::time::Instant::now();
    let pulled = env.pull_json(&[&format!("{}/faults/app:v1", proxy.host())]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited as told"
    );
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let log = proxy.log();
    let statuses: Vec<u16> = exchanges_for(&log, &built.layers[0])
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
}

#[test]
fn a_blob_cut_short_resumes_with_range_and_moves_only_the_rest() {
    let (registry, built, size) = registry_with_image(21);
    let layer = built.layers[0].clone();
    let cut = (size / 3) as usize;
    let cuts = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&cuts);
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        let reply = fwd(req);
        if req.path.ends_with(&layer) && count.fetch_add(1, Ordering::SeqCst) == 0 {
            return reply.drop_after(cut);
        }
        reply
    });
    let env = Env::new();
    let pulled = env.pull_json(&[&format!("{}/faults/app:v1", proxy.host())]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let log = proxy.log();
    let tries = exchanges_for(&log, &built.layers[0]);
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0].header("range"), None);
    assert_eq!(tries[0].sent, cut);
    assert_eq!(
        tries[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(tries[1].status, 206);
    assert_eq!(
        tries[1].sent as u64,
        size - cut as u64,
        "only the rest moved"
    );
    let bytes: u64 = pulled[0]["bytes_downloaded"].as_u64().unwrap();
    let others: u64 = log
        .iter()
        .filter(|e| e.is_blob_get() && !e.path.ends_with(&built.layers[0]))
        .map(|e| e.sent as u64)
        .sum();
    assert_eq!(bytes, size + others, "the report counts what moved");
    env.ok(&["fsck"]);
}

#[test]
fn a_server_that_ignores_range_is_taken_from_the_start() {
    let (registry, built, size) = registry_with_image(22);
    let layer = built.layers[0].clone();
    let cuts = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&cuts);
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        if !req.path.ends_with(&layer) {
            return fwd(req);
        }
        // Range never reaches the registry: every answer is the whole blob.
        let mut plain = req.clone();
        plain
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("range"));
        let reply = fwd(&plain);
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            return reply.drop_after(1000);
        }
        reply
    });
    let env = Env::new();
    let pulled = env.pull_json(&[&format!("{}/faults/app:v1", proxy.host())]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    let log = proxy.log();
    let tries = exchanges_for(&log, &built.layers[0]);
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[1].header("range"), Some("bytes=1000-"));
    assert_eq!((tries[1].status, tries[1].sent as u64), (200, size));
    env.ok(&["fsck"]);
}

#[test]
fn a_blob_with_one_flipped_byte_is_refused_naming_its_url_and_digest() {
    let (registry, built, size) = registry_with_image(23);
    let layer = built.layers[0].clone();
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        let mut reply = fwd(req);
        if req.method == "GET" && req.path.ends_with(&layer) {
            reply.body[100] ^= 0x01;
        }
        reply
    });
    let env = Env::new();
    let reference = format!("{}/faults/app:v1", proxy.host());
    let err = env.fails_unchanged(&["pull", &reference]);
    let url = format!(
        "http://{}/v2/faults/app/blobs/{}",
        proxy.host(),
        built.layers[0]
    );
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains(&format!("not to {}", built.layers[0])),
        "{err}"
    );
    // The whole blob was sent, once: the lie is found by hashing it, not
    // by a short read, and a liar is not asked again.
    let log = proxy.log();
    let tries = exchanges_for(&log, &built.layers[0]);
    assert_eq!(tries.len(), 1, "{tries:#?}");
    assert_eq!((tries[0].status, tries[0].sent as u64), (200, size));
}

#[test]
fn a_manifest_that_is_not_its_docker_content_digest_is_refused() {
    let (registry, built, _) = registry_with_image(24);
    let lie = sha256(b"some other manifest");
    let claimed = lie.clone();
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        let reply = fwd(req);
        if req.method == "GET" && req.path.ends_with("/manifests/v1") {
            return reply.header("Docker-Content-Digest", claimed.as_str());
        }
        reply
    });
    let env = Env::new();
    let err = env.fails_unchanged(&["pull", &format!("{}/faults/app:v1", proxy.host())]);
    assert!(
        err.contains(&format!("the manifest hashes to {}", built.manifest))
            && err.contains(&format!("Docker-Content-Digest says {lie}"))
            && err.contains(&format!(
                "http://{}/v2/faults/app/manifests/v1",
                proxy.host()
            )),
        "{err}"
    );
    assert!(
        proxy.log().iter().all(|e| !e.is_blob_get()),
        "no blob is asked for after a lie"
    );
}

#[test]
fn a_manifest_that_is_not_the_digest_of_the_reference_is_refused() {
    let (registry, built, _) = registry_with_image(25);
    let asked = sha256(b"what the reference names");
    let path_digest = asked.clone();
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        if req.path.ends_with(&format!("/manifests/{path_digest}")) {
            // Serve the tag's manifest instead, and do not say its digest.
            let mut other = req.clone();
            other.path = req.path.replace(&path_digest, "v1");
            let mut reply = fwd(&other);
            reply.remove_header("docker-content-digest");
            return reply;
        }
        fwd(req)
    });
    let env = Env::new();
    let err = env.fails_unchanged(&["pull", &format!("{}/faults/app@{asked}", proxy.host())]);
    assert!(
        err.contains(&format!(
            "hashes to {}, but the reference says {asked}",
            built.manifest
        )),
        "{err}"
    );
    assert_eq!(
        proxy.gets(),
        [format!("/v2/faults/app/manifests/{asked}")],
        "the manifest asked for by its digest, and nothing after it"
    );
}

#[test]
fn schema_1_and_unknown_tags_are_refused_with_what_the_registry_said() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.url(""), |req, fwd| {
        if req.path.ends_with("/manifests/old") {
            return Reply::ok(
                br#"{"schemaVersion":1,"name":"faults/app","tag":"old","fsLayers":[]}"#.to_vec(),
            )
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            );
        }
        fwd(req)
    });
    let env = Env::new();
    let before = env.store.snapshot();
    let err = env.fails(&["pull", &format!("{}/faults/app:old", proxy.host())]);
    assert!(err.contains("docker schema 1 manifest"), "{err}");
    let log = proxy.log();
    assert_eq!(log.len(), 1, "one manifest GET, no blob: {log:#?}");
    let accept = log[0].header("accept").unwrap_or_default();
    for wanted in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(accept.contains(wanted), "Accept: {accept}");
    }
    assert!(
        !accept.contains("distribution.manifest.v1+"),
        "schema 1 is not asked for: {accept}"
    );
    let err = env.fails(&["pull", &format!("{}/faults/app:missing", proxy.host())]);
    assert!(
        err.contains(&format!("registry {} refused: 404", proxy.host()))
            && err.contains("MANIFEST_UNKNOWN")
            || err.contains("NAME_UNKNOWN"),
        "{err}"
    );
    // A bad reference is told before any request, the good ones beside
    // it included.
    proxy.clear();
    let err = env.fails(&["pull", &format!("{}/Faults/App:v1", proxy.host())]);
    assert!(err.contains("must be lower case"), "{err}");
    for bad in ["faults/app:-v1", "faults/app@sha256:abc", "faults//app", ""] {
        let err = env.fails(&[
            "pull",
            &format!("{}/faults/app:old", proxy.host()),
            &format!("{}/{bad}", proxy.host()),
        ]);
        assert!(err.contains(bad), "{bad}: {err}");
    }
    assert!(proxy.log().is_empty(), "{:#?}", proxy.log());
    assert_eq!(env.store.snapshot(), before);
}

#[test]
fn a_503_and_a_reset_connection_are_retried_and_a_rate_limit_that_lasts_says_so() {
    let (registry, built, _) = registry_with_image(26);
    let layer = built.layers[0].clone();
    let tries = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&tries);
    let proxy = Proxy::start(&registry.url(""), move |req, fwd| {
        if req.path.ends_with(&layer) {
            match count.fetch_add(1, Ordering::SeqCst) {
                0 => return Reply::new(503).header("Retry-After", "0"),
                1 => return Reply::hang_up(),
                _ => {}
            }
        }
        fwd(req)
    });
    let env = Env::new();
    let pulled = env.pull_json(&[&format!("{}/faults/app:v1", proxy.host())]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
    assert_eq!(tries.load(Ordering::SeqCst), 3, "503, reset, then the blob");
    let log = proxy.log();
    let statuses: Vec<u16> = exchanges_for(&log, &built.layers[0])
        .iter()
        .map(|e| e.status)
        .collect();
    // The proxy logs the hang-up as the status 0 it was given.
    assert_eq!(statuses, [503, 0, 200]);
    env.ok(&["fsck"]);

    // A registry that keeps rate-limiting: a bounded number of tries, then
    // one line saying so, with Docker Hub's headers; the store unchanged.
    let limited = Proxy::start(&registry.url(""), |req, fwd| {
        if req.path.contains("/manifests/") {
            return Reply::new(429)
                .header("Retry-After", "0")
                .header("ratelimit-limit", "100;w=21600")
                .header("ratelimit-remaining", "0;w=21600")
                .body(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#);
        }
        fwd(req)
    });
    let other = Env::new();
    let reference = format!("{}/faults/app:v1", limited.host());
    let err = other.fails_unchanged(&["pull", &reference]);
    assert!(
        err.contains("gave up after 6 attempts: 429")
            && err.contains("rate-limiting")
            && err.contains("ratelimit-remaining: 0;w=21600")
            && err.contains("ratelimit-limit: 100;w=21600")
            && err.contains(&format!(
                "http://{}/v2/faults/app/manifests/v1",
                limited.host()
            )),
        "{err}"
    );
    let log = limited.log();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(log.iter().all(|e| e.is_manifest_get() && e.status == 429));
}

#[test]
fn a_403_says_which_registry_refused_and_why() {
    let (registry, _, _) = registry_with_image(27);
    let proxy = Proxy::start(&registry.url(""), |req, fwd| {
        if req.path.contains("/manifests/") {
            return Reply::new(403)
                .header("Content-Type", "application/json")
                .body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#);
        }
        fwd(req)
    });
    let env = Env::new();
    let err = env.fails_unchanged(&["pull", &format!("{}/faults/app:v1", proxy.host())]);
    assert!(
        err.contains(&format!(
            "registry {} refused: 403 DENIED: requested access to the resource is denied",
            proxy.host()
        )),
        "{err}"
    );
    let log = proxy.log();
    assert_eq!(log.len(), 1, "a 403 is not retried: {log:#?}");
}
