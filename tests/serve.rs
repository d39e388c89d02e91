//! `imgstore serve`: the store as an OCI distribution registry, tested with
//! a real server process on a free port of 127.0.0.1 and real clients.
//!
//! - `pull` and `push`: the spec's rules, checked by a plain HTTP client
//!   and raw sockets: manifests and negotiation, `304`s, ranges, tag pages;
//!   uploads (chunked, resumed, mounted, monolithic), refusals and their
//!   codes, clients that drop or stall, expiry and gc beside live sessions.
//! - `access`: read-only, htpasswd, TLS, deletes, shutdown on SIGINT and SIGTERM.
//! - `interop`: skopeo copies out (digests and bytes equal to the store's)
//!   and pushes in (one image and a multi-platform index, `--all`);
//!   containerd pulls.
//! - `load`: 16 pulls at once while pushes, an import and a gc run, with
//!   the server's peak memory bounded.

#[path = "serve/access.rs"]
mod access;
#[path = "common/oci_builder.rs"]
mod builder;
mod common;
#[path = "serve/interop.rs"]
mod interop;
#[path = "serve/load.rs"]
mod load;
#[path = "serve/pull.rs"]
mod pull;
#[path = "serve/push.rs"]
mod push;
#[path = "serve/server.rs"]
mod server;

use builder::{self as oci, Built, LayerCompression, Layout};
use common::TestStore;
use serde_json::json;

/// A layout written to a temp dir and imported into `store`; the image.
pub fn import_layout(store: &TestStore, layout: &Layout) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout");
    layout.write_dir(&path);
    store.ok(&["import", path.to_str().unwrap()]);
    dir
}

/// One image of one gzip layer, named `ref_name` by the layout (so that
/// the store records a name and a version label, but no tag row).
pub fn simple_image(store: &TestStore, ref_name: &str, content: &[u8]) -> (Layout, Built) {
    let (layout, built) = Layout::simple(ref_name, content);
    import_layout(store, &layout);
    (layout, built)
}

/// A two-platform image (amd64, arm64), its index named `ref_name`;
/// returns the layout, the index's digest and the two images.
pub fn multi_platform(ref_name: &str, seed: u64) -> (Layout, String, Vec<Built>) {
    let mut layout = Layout::new();
    let mut images = Vec::new();
    let mut entries = Vec::new();
    for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let content = common::noise(20_000 + i * 1000, seed + i as u64);
        let built = layout.image(
            "sha256",
            arch,
            &[&[("etc/arch", arch.as_bytes()), ("data", &content)]],
            LayerCompression::Gzip,
            &[],
        );
        let mut desc = built.desc.clone();
        desc["platform"] = json!({ "os": "linux", "architecture": arch });
        entries.push(desc);
        images.push(built);
    }
    let index = oci::index_json(entries);
    let index_digest = layout.blob("sha256", &index);
    layout.index.push(oci::named(
        oci::desc(oci::INDEX, &index_digest, index.len()),
        ref_name,
    ));
    (layout, index_digest, images)
}

/// The parts of an image to push by hand: its blobs and its manifest.
pub struct ToPush {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub config_digest: String,
    pub layer_digest: String,
    pub manifest_digest: String,
}

pub fn to_push(seed: u64) -> ToPush {
    let tar = oci::layer_tar(&[("data", &common::noise(300_000, seed))]);
    let layer = oci::gzip(&tar);
    let layer_digest = oci::sha256(&layer);
    let config = oci::config_json("amd64", &[oci::sha256(&tar)], &[("pushed", "yes")]);
    let config_digest = oci::sha256(&config);
    let manifest = oci::manifest_json(
        oci::desc(oci::CONFIG, &config_digest, config.len()),
        vec![oci::desc(oci::LAYER_GZ, &layer_digest, layer.len())],
    );
    ToPush {
        manifest_digest: oci::sha256(&manifest),
        config,
        layer,
        manifest,
        config_digest,
        layer_digest,
    }
}

/// Pushes `image` to `url` (`http://HOST:PORT`) as `name:tag`: each blob
/// in one `POST ?digest=`, then the manifest; panics on any refusal.
pub fn push_whole(agent: &ureq::Agent, url: &str, name: &str, tag: &str, image: &ToPush) {
    for (digest, blob) in [
        (&image.config_digest, &image.config),
        (&image.layer_digest, &image.layer),
    ] {
        let done = server::Answer::of(
            agent
                .post(format!("{url}/v2/{name}/blobs/uploads/?digest={digest}"))
                .send(&blob[..]),
        );
        assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    }
    put_manifest(agent, url, name, tag, &image.manifest);
}

/// Pushes `manifest` to `url` as `name:reference`; panics unless it is
/// taken (`201`); returns the answer.
pub fn put_manifest(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    reference: &str,
    manifest: &[u8],
) -> server::Answer {
    let pushed = server::Answer::of(
        agent
            .put(format!("{url}/v2/{name}/manifests/{reference}"))
            .header("Content-Type", oci::MANIFEST)
            .send(manifest),
    );
    assert_eq!(
        pushed.status,
        201,
        "{}",
        String::from_utf8_lossy(&pushed.body)
    );
    pushed
}
