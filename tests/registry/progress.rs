//! Progress: a bar per blob (its digest, bytes and rate) on a terminal,
//! and nothing but the keys on a pipe. The terminal is a real pty, made by
//! util-linux's `script`.

use std::process::Command;
use std::time::Duration;

use testkit::Registry;

use crate::support::{Env, Proxy, image_layout, skopeo_push};

/// A registry with one image, behind a proxy that holds each blob back a
/// little, so that a bar is on screen for a while.
fn slow_registry(seed: u64) -> (Registry, Proxy, crate::oci_builder::Built) {
    let registry = Registry::start();
    let (dir, _, built) = image_layout(seed, 256 * 1024);
    skopeo_push(
        dir.path(),
        "v1",
        &format!("{}/progress/app:v1", registry.host()),
    );
    let proxy = Proxy::start(&registry.url(""), |req, fwd| {
        let reply = fwd(req);
        if req.method == "GET" && req.path.contains("/blobs/") {
            return reply.delay(Duration::from_millis(300));
        }
        reply
    });
    (registry, proxy, built)
}

#[test]
fn a_pull_on_a_pipe_prints_only_its_key() {
    let (_registry, proxy, built) = slow_registry(50);
    let env = Env::new();
    let out = env
        .cmd(&["pull", &format!("{}/progress/app:v1", proxy.host())])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        built.manifest + "\n"
    );
    assert!(
        out.stderr.is_empty(),
        "stderr on a pipe: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_pull_on_a_terminal_shows_a_bar_per_blob() {
    let (_registry, proxy, built) = slow_registry(51);
    let env = Env::new();
    let imgstore = assert_cmd::cargo::cargo_bin("imgstore");
    let line = format!(
        "{} --store {} pull {}/progress/app:v1",
        imgstore.display(),
        env.store.path().display(),
        proxy.host()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("REGISTRY_AUTH_FILE", env.auth_file())
        .env("HOME", env.home.path())
        .env("TERM", "xterm")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run script (apt-get install bsdutils): {e}"));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // Every blob had its bar, labelled with its short digest.
    for blob in std::iter::once(&built.config).chain(&built.layers) {
        let short = &blob[..("sha256:".len() + 12)];
        assert!(screen.contains(short), "no bar for {blob}: {screen:?}");
    }
    assert!(screen.contains("/s"), "no rate: {screen:?}");
    assert!(screen.contains(&built.manifest), "{screen:?}");
}
