//! What the registry tests share: a store with a private auth file and
//! home, skopeo, small images built in code, and a proxy that forwards to a
//! real registry, logs every answer, and lets a test tamper with one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use testkit::fault::{FaultServer, Reply, SeenRequest, forward};

use crate::common::{self, TestStore};
use crate::oci_builder::{self, Built, INDEX, LayerCompression, Layout, desc, index_json, named};

/// A store, and an environment in which imgstore reads no credentials but
/// those of its own auth file (`REGISTRY_AUTH_FILE`, in a private home).
pub struct Env {
    pub store: TestStore,
    pub home: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            store: common::store(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn auth_file(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    pub fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.store.cmd(args);
        cmd.env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("HOME", self.home.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        cmd
    }

    /// Runs imgstore; it must succeed. Returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "imgstore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs imgstore; it must fail with one `error:` line, which is returned.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        common::assert_error(&out, args);
        String::from_utf8(out.stderr)
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// Runs imgstore; it must fail with one `error:` line (returned) and
    /// leave the store byte for byte as it was (invariants 7 and 8).
    pub fn fails_unchanged(&self, args: &[&str]) -> String {
        let before = self.store.snapshot();
        let err = self.fails(args);
        assert_eq!(
            self.store.snapshot(),
            before,
            "imgstore {args:?} changed the store"
        );
        err
    }

    /// `pull --json`, parsed: one object per reference.
    pub fn pull_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["pull", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// Runs skopeo (with `--insecure-policy`: there is no policy.json here);
/// panics with its output if it fails or is missing.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (apt-get install skopeo): {e}"));
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Copies `oci:LAYOUT:NAME` to `docker://DEST` (every platform of an index).
pub fn skopeo_push(layout: &Path, name: &str, dest: &str) {
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:{name}", layout.display()),
        &format!("docker://{dest}"),
    ]);
}

/// The manifest (or index) bytes `skopeo inspect --raw` reads from a registry.
pub fn skopeo_raw(reference: &str) -> String {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// The digest `skopeo inspect` gives for an image in a registry.
pub fn skopeo_digest(reference: &str) -> String {
    let docker = format!("docker://{reference}");
    let v: Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &docker])).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The architecture imgstore pulls by default: this machine's.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("these tests build amd64 and arm64 images; this machine is {other}"),
    }
}

/// A layout holding one image, `NAME` "v1": two gzip layers, one of them
/// `size` bytes of incompressible noise (so that a blob is big enough to
/// cut short), one small.
pub fn image_layout(seed: u64, size: usize) -> (tempfile::TempDir, Layout, Built) {
    let mut layout = Layout::new();
    let noise = common::noise(size, seed);
    let small = format!("small file {seed}\n");
    let built = layout.image(
        "sha256",
        "amd64",
        &[
            &[("data/noise.bin", &noise[..])],
            &[("etc/small.txt", small.as_bytes())],
        ],
        LayerCompression::Gzip,
        &[("maintainer", "registry tests")],
    );
    layout.index.push(named(built.desc.clone(), "v1"));
    let dir = tempfile::tempdir().unwrap();
    layout.write_dir(dir.path());
    (dir, layout, built)
}

/// A layout holding a two-platform index, `NAME` "multi": an amd64 and an
/// arm64/v8 image. Returns the index's digest and the two images.
pub fn two_platform_layout(seed: u64) -> (tempfile::TempDir, Layout, String, Built, Built) {
    let mut layout = Layout::new();
    let amd64 = layout.image(
        "sha256",
        "amd64",
        &[&[("etc/arch", format!("amd64 {seed}\n").as_bytes())]],
        LayerCompression::Gzip,
        &[],
    );
    let arm64 = layout.image(
        "sha256",
        "arm64",
        &[&[("etc/arch", format!("arm64 {seed}\n").as_bytes())]],
        LayerCompression::Gzip,
        &[],
    );
    let mut a = amd64.desc.clone();
    a["platform"] = json!({ "os": "linux", "architecture": "amd64" });
    let mut b = arm64.desc.clone();
    b["platform"] = json!({ "os": "linux", "architecture": "arm64", "variant": "v8" });
    let index = index_json(vec![a, b]);
    let digest = layout.blob("sha256", &index);
    layout
        .index
        .push(named(desc(INDEX, &digest, index.len()), "multi"));
    let dir = tempfile::tempdir().unwrap();
    layout.write_dir(dir.path());
    (dir, layout, digest, amd64, arm64)
}

/// One answer the proxy gave.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    /// Bytes of the request's body.
    pub request_body: usize,
    pub status: u16,
    /// Body bytes sent (fewer than the body when the reply was cut).
    pub sent: usize,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/blobs/sha")
    }

    pub fn is_manifest_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/manifests/")
    }
}

type Tamper = dyn Fn(&SeenRequest, &dyn Fn(&SeenRequest) -> Reply) -> Reply + Send + Sync;

/// A proxy in front of a registry: each request goes to `tamper` with a
/// function that forwards it, and every answer is logged.
pub struct Proxy {
    pub server: FaultServer,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Proxy {
    pub fn start(
        upstream: &str,
        tamper: impl Fn(&SeenRequest, &dyn Fn(&SeenRequest) -> Reply) -> Reply + Send + Sync + 'static,
    ) -> Proxy {
        let upstream = upstream.to_string();
        let log: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let tamper: Box<Tamper> = Box::new(tamper);
        let seen = Arc::clone(&log);
        let server = FaultServer::start(move |req| {
            let fwd = |r: &SeenRequest| forward(&upstream, r);
            let reply = tamper(req, &fwd);
            let body = if req.method == "HEAD" {
                0
            } else {
                reply.drop_after.unwrap_or(usize::MAX).min(reply.body.len())
            };
            seen.lock().unwrap().push(Exchange {
                method: req.method.clone(),
                path: req.path.clone(),
                request_headers: req.headers.clone(),
                request_body: req.body.len(),
                status: reply.status,
                sent: body,
            });
            reply
        });
        Proxy { server, log }
    }

    /// A proxy that changes nothing.
    pub fn forwarding(upstream: &str) -> Proxy {
        Proxy::start(upstream, |req, fwd| fwd(req))
    }

    /// `127.0.0.1:PORT`: the registry part of references through it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// The paths of the GETs it answered, in order.
    pub fn gets(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|e| e.method == "GET")
            .map(|e| e.path.clone())
            .collect()
    }

    pub fn log(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

/// The sha256 of bytes, as `sha256:…`.
pub fn sha256(bytes: &[u8]) -> String {
    oci_builder::sha256(bytes)
}
