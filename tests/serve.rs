//! `imgstore serve`: the store as an OCI distribution registry, tested with
//! a real server process on a free port of 127.0.0.1 and real clients.
//!
//! - `protocol`: the spec's rules, checked by a plain HTTP client and raw
//!   sockets: manifests and negotiation, `304`s, ranges, tag pages, uploads
//!   (chunked, resumed, mounted, monolithic), refusals and their codes,
//!   clients that drop, read-only, htpasswd, TLS, deletes, shutdown,
//!   expiry and gc beside live sessions.
//! - `interop`: skopeo copies out (digests and bytes equal to the store's)
//!   and pushes in (one image and a multi-platform index, `--all`);
//!   containerd pulls.
//! - `load`: 16 pulls at once while an import and a gc run, with the
//!   server's peak memory bounded.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;
#[path = "serve/interop.rs"]
mod interop;
#[path = "serve/load.rs"]
mod load;
#[path = "serve/protocol.rs"]
mod protocol;
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
