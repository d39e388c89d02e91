//! Push, counted at a proxy in front of a real registry: blobs the
//! registry has are skipped after a HEAD, blobs the store knows in another
//! repository are mounted from there, uploads go in one PUT or in PATCH
//! chunks when asked, and an answer naming another digest is an error. An
//! ACI is refused before any request.

use serde_json::Value;
use testkit::Registry;

use crate::common;
use crate::support::{Env, Proxy, image_layout, sha256, skopeo_push};

fn push_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["push", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
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
    let again = Env::new();
    let pulled = again.pull_json(&[&copy]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());
}

#[test]
fn chunked_uploads_and_answers_naming_another_digest() {
    let registry = Registry::start();
    let (dir, layout, built) = image_layout(41, 40 * 1024);
    let env = Env::new();
    env.ok(&["import", dir.path().to_str().unwrap()]);

    let proxy = Proxy::forwarding(&registry.url(""));
    let reference = format!("{}/chunked/app:v1", proxy.host());
    let pushed = push_json(
        &env,
        &["--chunk-size", "10000", &built.manifest, &reference],
    );
    assert_eq!(pushed["blobs_uploaded"], 3);
    let layer = layout.files[&crate::oci_builder::Layout::blob_path(&built.layers[0])].len();
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
    let fresh = Env::new();
    let pulled = fresh.pull_json(&[&reference]);
    assert_eq!(pulled[0]["image"]["key"], built.manifest.as_str());

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
