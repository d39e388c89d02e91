//! Push, counted at a proxy in front of a real registry: blobs the
//! registry has are skipped after a HEAD, blobs the store knows in another
//! repository are mounted from there, uploads go in one PUT or in PATCH
//! chunks when asked (never smaller than the registry's
//! `OCI-Chunk-Min-Length`), a refused PUT is sent again in chunks once,
//! and an answer naming another digest is an error. An ACI is refused
//! before any request.

use std::collections::BTreeMap;

use serde_json::Value;
use testkit::Registry;
use testkit::fault::{Reply, SeenRequest};

use crate::common;
use crate::oci_builder::{Built, Layout};
use crate::support::{Env, Exchange, Proxy, image_layout, sha256, skopeo_push};

fn push_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["push", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

/// A store holding `image_layout(seed, size)`'s image; with the size of
/// its noise layer.
fn imported(seed: u64, size: usize) -> (Env, Built, usize) {
    let (dir, layout, built) = image_layout(seed, size);
    let env = Env::new();
    env.ok(&["import", dir.path().to_str().unwrap()]);
    let layer = layout.files[&Layout::blob_path(&built.layers[0])].len();
    (env, built, layer)
}

/// A fresh store pulls `reference` back as the image that was pushed.
fn assert_pulls_back(reference: &str, built: &Built) {
    let pulled = Env::new().pull_json(&[reference]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
}

#[test]
fn blobs_the_registry_has_are_skipped_and_others_mounted_from_where_they_came() {
    let registry = Registry::start();
    let proxy = Proxy::forwarding(&registry.url(""));
    let (dir, _, built) = image_layout(40, 16 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/origin/app:v1", registry.host()),
    );
    let env = Env::new();
    let origin = format!("{}/origin/app:v1", proxy.host());
    env.ok(&["pull", &origin]);

    // To the repository it came from: everything is there already.
    proxy.clear();
    let pushed = push_json(&env, &[&built.manifest, &origin]);
    assert_eq!(pushed["blobs_present"], 3, "{pushed}");
    assert_eq!(pushed["blobs_uploaded"], 0);
    let log = proxy.log();
    assert!(
        log.iter().all(|e| !e.path.contains("/uploads/")),
        "{log:#?}"
    );
    assert_eq!(log.iter().filter(|e| e.method == "HEAD").count(), 3);

    // To another repository: mounted from the one it was pulled from.
    proxy.clear();
    let copy = format!("{}/copy/app:v1", proxy.host());
    let pushed = push_json(&env, &[&built.manifest, &copy]);
    assert_eq!(pushed["blobs_mounted"], 3, "{pushed}");
    let log = proxy.log();
    let mounts: Vec<_> = log
        .iter()
        .filter(|e| e.method == "POST" && e.path.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), 3, "{log:#?}");
    assert!(
        mounts
            .iter()
            .all(|e| e.path.contains("from=origin%2Fapp") && e.status == 201)
    );
    assert!(
        log.iter()
            .all(|e| e.method != "PUT" || e.path.contains("/manifests/"))
    );

    // And a pull from there gives the same key.
    assert_pulls_back(&copy, &built);
}

#[test]
fn chunked_uploads_and_answers_naming_another_digest() {
    let registry = Registry::start();
    let (env, built, layer) = imported(41, 40 * 1024);

    let proxy = Proxy::forwarding(&registry.url(""));
    let reference = format!("{}/chunked/app:v1", proxy.host());
    let pushed = push_json(
        &env,
        &["--chunk-size", "10000", &built.manifest, &reference],
    );
    assert_eq!(pushed["blobs_uploaded"], 3);
    let patches: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "PATCH")
        .collect();
    assert!(patches.len() >= layer.div_ceil(10_000), "{patches:#?}");
    assert!(
        patches
            .iter()
            .any(|e| e.header("content-range") == Some("0-9999"))
    );
    assert_pulls_back(&reference, &built);

    // A registry that takes the manifest as something else.
    let lie = sha256(b"not what was pushed");
    let told = lie.clone();
    let lying = Proxy::start(&registry.url(""), move |req, fwd| {
        let reply = fwd(req);
        if req.method == "PUT" && req.path.contains("/manifests/") {
            return reply.header("Docker-Content-Digest", told.as_str());
        }
        reply
    });
    let err = env.fails(&[
        "push",
        &built.manifest,
        &format!("{}/lying/app:v1", lying.host()),
    ]);
    assert!(
        err.contains(&format!(
            "the registry answered Docker-Content-Digest {lie}, but {} was pushed",
            built.manifest
        )),
        "{err}"
    );

    // A reference with another digest is refused before any request.
    lying.clear();
    let err = env.fails(&[
        "push",
        &built.manifest,
        &format!("{}/lying/app@{lie}", lying.host()),
    ]);
    assert!(err.contains("the reference names another digest"), "{err}");
    assert!(lying.log().is_empty());
}

/// A proxy that adds `OCI-Chunk-Min-Length: MIN` to the registry's
/// answers opening upload sessions, and answers a PUT that carries the
/// whole blob with `refuse` instead of forwarding it, when given.
fn minimum_chunk_proxy(registry: &Registry, min: usize, refuse: Option<u16>) -> Proxy {
    Proxy::start(&registry.url(""), move |req: &SeenRequest, fwd| {
        let upload = req.path_only().contains("/blobs/uploads/");
        if let Some(status) = refuse
            && upload
            && req.method == "PUT"
            && !req.body.is_empty()
        {
            return Reply::new(status).body("{\"errors\":[{\"code\":\"UNSUPPORTED\"}]}");
        }
        let reply = fwd(req);
        if upload && req.method == "POST" && reply.status == 202 {
            return reply.header("OCI-Chunk-Min-Length", min.to_string());
        }
        reply
    })
}

/// The body sizes of the PATCHes of each upload session (by the path of
/// its location), in order.
fn patches_by_session(log: &[Exchange]) -> BTreeMap<String, Vec<usize>> {
    let mut sessions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for e in log.iter().filter(|e| e.method == "PATCH") {
        let path = e.path.split_once('?').map_or(&e.path[..], |(p, _)| p);
        sessions
            .entry(path.to_string())
            .or_default()
            .push(e.request_body);
    }
    sessions
}

/// Every chunk but the last of its session is at least `min` bytes.
fn assert_chunks_at_least(log: &[Exchange], min: usize) {
    let sessions = patches_by_session(log);
    assert!(!sessions.is_empty(), "no PATCH: {log:#?}");
    for (path, sizes) in &sessions {
        let (_, all_but_last) = sizes.split_last().unwrap();
        assert!(
            all_but_last.iter().all(|&n| n >= min),
            "{path}: chunks {sizes:?}, the registry asked for {min}"
        );
    }
}

#[test]
fn chunks_are_never_smaller_than_the_registry_minimum() {
    let registry = Registry::start();
    let (env, built, layer) = imported(42, 100 * 1024);

    let proxy = minimum_chunk_proxy(&registry, 30_000, None);
    let reference = format!("{}/minimum/app:v1", proxy.host());
    let pushed = push_json(
        &env,
        &["--chunk-size", "10000", &built.manifest, &reference],
    );
    assert_eq!(pushed["blobs_uploaded"], 3, "{pushed}");
    let log = proxy.log();
    assert_chunks_at_least(&log, 30_000);
    // The noise layer went in chunks of the registry's size, not ours.
    let sessions = patches_by_session(&log);
    let big = sessions
        .values()
        .find(|sizes| sizes.iter().sum::<usize>() == layer)
        .unwrap_or_else(|| panic!("no session of {layer} bytes: {sessions:?}"));
    assert_eq!(big.len(), layer.div_ceil(30_000), "{big:?}");
    assert!(
        log.iter()
            .any(|e| e.method == "PATCH" && e.header("content-range") == Some("30000-59999")),
        "{log:#?}"
    );
    assert_pulls_back(&reference, &built);
}

#[test]
fn a_refused_put_is_sent_again_in_chunks_once() {
    let registry = Registry::start();
    // Larger than the chunk of a fallback without a minimum (1 MiB), so
    // that the registry's minimum is seen to win.
    let min = 1536 * 1024;
    let (env, built, layer) = imported(43, 3 * 1024 * 1024);

    // A proxy that takes no body as large as a blob: 413 to each PUT with
    // one, and the blob comes again in chunks in a new session.
    let proxy = minimum_chunk_proxy(&registry, min, Some(413));
    let reference = format!("{}/refused/app:v1", proxy.host());
    let pushed = push_json(&env, &[&built.manifest, &reference]);
    assert_eq!(pushed["blobs_uploaded"], 3, "{pushed}");
    let log = proxy.log();
    let uploads = |method: &str| {
        log.iter()
            .filter(|e| e.method == method && e.path.contains("/blobs/uploads/"))
            .count()
    };
    assert_eq!(
        log.iter().filter(|e| e.status == 413).count(),
        3,
        "{log:#?}"
    );
    assert_eq!(uploads("POST"), 6, "a new session for each chunked upload");
    assert_chunks_at_least(&log, min);
    let sessions = patches_by_session(&log);
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert!(
        sessions
            .values()
            .any(|s| s.len() == layer.div_ceil(min) && s.iter().sum::<usize>() == layer),
        "{sessions:?}"
    );
    assert_pulls_back(&reference, &built);

    // Refused in chunks too: one error line, and no third try.
    let refusing = Proxy::start(&registry.url(""), |req, fwd| {
        if req.path_only().contains("/blobs/uploads/") && req.method != "POST" {
            return Reply::new(413).body("too large");
        }
        fwd(req)
    });
    let elsewhere = format!("{}/refused-twice/app:v1", refusing.host());
    let err = env.fails(&["push", "--jobs", "1", &built.manifest, &elsewhere]);
    assert!(err.contains("413"), "{err}");
    let log = refusing.log();
    assert_eq!(
        log.iter().filter(|e| e.method == "PUT").count(),
        1,
        "{log:#?}"
    );
    assert_eq!(log.iter().filter(|e| e.method == "PATCH").count(), 1);

    // A refusal of the credentials is not one that chunks mend.
    let forbidding = minimum_chunk_proxy(&registry, min, Some(403));
    let forbidden = format!("{}/forbidden/app:v1", forbidding.host());
    let err = env.fails(&["push", "--jobs", "1", &built.manifest, &forbidden]);
    assert!(err.contains("403"), "{err}");
    assert!(
        forbidding.log().iter().all(|e| e.method != "PATCH"),
        "{:#?}",
        forbidding.log()
    );
}

#[test]
fn an_aci_is_refused_before_any_request() {
    let proxy = Proxy::start("http://127.0.0.1:1", |_, _| testkit::fault::Reply::new(500));
    let env = Env::new();
    let key = env.ok(&["import", common::fixture("hello.aci").to_str().unwrap()]);
    let err = env.fails(&[
        "push",
        key.trim(),
        &format!("{}/aci/hello:v1", proxy.host()),
    ]);
    assert!(
        err.contains("is an appc ACI; only OCI images can be pushed"),
        "{err}"
    );
    assert!(proxy.server.requests().is_empty());
}
