//! The test kit's real servers work as the other tests assume: nginx serves
//! files with ETags, ranges and added headers over HTTP and HTTPS and logs
//! every request; the registry takes a push from skopeo and checks
//! credentials; containerd answers `ctr`; servers started at once get ports
//! of their own; a dropped server is gone; a server that cannot start says
//! why.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::run;
use sha2::{Digest as _, Sha256};
use testkit::{Containerd, Nginx, Registry};

/// An agent that returns 4xx/5xx answers instead of failing on them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An OCI layout `DIR/layout` holding one image without layers, tagged
/// `v1`, made by umoci; and its manifest's digest.
fn tiny_layout(dir: &Path) -> (std::path::PathBuf, String) {
    let umoci = testkit::require_program("/usr/bin/umoci", "umoci");
    let layout = dir.join("layout");
    run(Command::new(&umoci)
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new(&umoci)
        .arg("new")
        .arg("--image")
        .arg(format!("{}:v1", layout.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    (layout, manifest)
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn nginx_serves_etags_ranges_added_headers_and_logs_each_request() {
    let docroot = tempfile::tempdir().unwrap();
    let data = common::noise(1000, 1);
    std::fs::write(docroot.path().join("blob"), &data).unwrap();
    let nginx = Nginx::builder(docroot.path())
        .config(r#"add_header Cache-Control "max-age=60";"#)
        .start();
    assert!(nginx.url("/blob").starts_with("http://127.0.0.1:"));
    let agent = agent();

    let mut full = agent
        .get(nginx.url("/blob"))
        .header("Accept-Encoding", "identity")
        .call()
        .unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(
        header(&full, "cache-control").as_deref(),
        Some("max-age=60")
    );
    let etag = header(&full, "etag").expect("nginx sends an ETag for a file");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(full.body_mut().read_to_vec().unwrap(), data);

    let mut ranged = agent
        .get(nginx.url("blob"))
        .header("Range", "bytes=10-")
        .header("If-Range", &etag)
        .call()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        header(&ranged, "content-range").as_deref(),
        Some("bytes 10-999/1000")
    );
    assert_eq!(ranged.body_mut().read_to_vec().unwrap(), &data[10..]);

    let cached = agent
        .get(nginx.url("/blob"))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(cached.status(), 304);

    let missing = agent
        .get(nginx.url("/missing?x=1"))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .call()
        .unwrap();
    assert_eq!(missing.status(), 404);

    let log = nginx.access_log();
    let summary: Vec<(&str, &str, u16, u64)> = log
        .iter()
        .map(|a| (a.method.as_str(), a.uri.as_str(), a.status, a.body_bytes))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", "/blob", 200, 1000),
            ("GET", "/blob", 206, 990),
            ("GET", "/blob", 304, 0),
            ("GET", "/missing?x=1", 404, log[3].body_bytes),
        ]
    );
    assert!(log.iter().all(|a| a.complete), "{log:?}");
    assert_eq!(log[0].accept_encoding.as_deref(), Some("identity"));
    assert_eq!(log[1].accept_encoding, None);
    assert_eq!(log[1].range.as_deref(), Some("bytes=10-"));
    assert_eq!(log[1].if_range.as_deref(), Some(etag.as_str()));
    assert_eq!(log[0].range, None);
    assert_eq!(log[2].if_none_match.as_deref(), Some(etag.as_str()));
    assert_eq!(log[3].authorization.as_deref(), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(log[2].authorization, None);
}

#[test]
fn nginx_access_log_shows_a_request_right_after_its_answer() {
    let docroot = tempfile::tempdir().unwrap();
    std::fs::write(docroot.path().join("f"), b"0123456789").unwrap();
    let nginx = Nginx::start(docroot.path());
    let agent = agent();
    for n in 1..=20 {
        let mut response = agent.get(nginx.url("/f")).call().unwrap();
        assert_eq!(response.body_mut().read_to_vec().unwrap(), b"0123456789");
        assert_eq!(nginx.access_log().len(), n);
    }
}

#[test]
fn nginx_over_tls_answers_a_client_that_trusts_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let docroot = dir.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    std::fs::write(docroot.join("hello.txt"), b"hello over TLS").unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let nginx = Nginx::builder(&docroot).tls(&cert, &key).start();
    let url = nginx.url("/hello.txt");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusted = ureq::tls::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![trusted])))
        .build();
    let trusting: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
    let mut response = trusting.get(&url).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.body_mut().read_to_vec().unwrap(),
        b"hello over TLS"
    );

    // The certificate really is checked: a client that does not trust it
    // refuses the server.
    let refused = agent().get(&url).call();
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    assert_eq!(nginx.access_log().len(), 1);
}

#[test]
fn registry_answers_v2_and_takes_a_push_from_skopeo() {
    let registry = Registry::start();
    let agent = agent();
    let v2 = agent.get(registry.url("/v2/")).call().unwrap();
    assert_eq!(v2.status(), 200);
    assert_eq!(
        header(&v2, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    assert_eq!(registry.host(), format!("127.0.0.1:{}", registry.port()));

    let dir = tempfile::tempdir().unwrap();
    let (layout, pushed) = tiny_layout(dir.path());
    let skopeo = testkit::require_program("/usr/bin/skopeo", "skopeo");
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/testkit/tiny:v1", registry.host())));

    let mut tags = agent
        .get(registry.url("/v2/testkit/tiny/tags/list"))
        .call()
        .unwrap();
    assert_eq!(tags.status(), 200);
    let tags: serde_json::Value =
        serde_json::from_slice(&tags.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    let mut manifest = agent
        .get(registry.url("/v2/testkit/tiny/manifests/v1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        header(&manifest, "docker-content-digest"),
        Some(pushed.clone())
    );
    let body = manifest.body_mut().read_to_vec().unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), pushed);

    let stored = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&pushed["sha256:".len().."sha256:".len() + 2])
        .join(&pushed["sha256:".len()..])
        .join("data");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        body,
        "{}",
        stored.display()
    );
}

#[test]
fn htpasswd_registry_answers_401_without_and_200_with_credentials() {
    let registry = Registry::with_htpasswd("tester", "s3cret");
    let agent = agent();
    let anonymous = agent.get(registry.url("/v2/")).call().unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = header(&anonymous, "www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Basic realm="), "{challenge}");

    let basic = |token: &str| {
        agent
            .get(registry.url("/v2/"))
            .header("Authorization", format!("Basic {token}"))
            .call()
            .unwrap()
            .status()
    };
    assert_eq!(basic("dGVzdGVyOnMzY3JldA=="), 200, "tester:s3cret");
    assert_eq!(basic("dGVzdGVyOndyb25n"), 401, "tester:wrong");
}

#[test]
fn containerd_answers_ctr_and_keeps_images_per_namespace() {
    let containerd = Containerd::start();
    let version = run(containerd.ctr().arg("version"));
    assert!(
        version.contains("Server:") && version.contains("1.6"),
        "{version}"
    );

    let listed = run(containerd.ctr_in("test").args(["content", "ls"]));
    assert!(listed.starts_with("DIGEST"), "{listed}");
    assert_eq!(
        listed.lines().count(),
        1,
        "a fresh store lists nothing: {listed}"
    );

    // Its content store checks what it is given.
    let wrong_digest = format!("sha256:{}", sha256_hex(b"something else"));
    let mut ingest = containerd
        .ctr_in("test")
        .args([
            "content",
            "ingest",
            "--expected-digest",
            &wrong_digest,
            "testkit-ref",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ingest
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello, containerd")
        .unwrap();
    assert!(
        !ingest.wait().unwrap().success(),
        "ctr took content under a wrong digest"
    );

    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = tiny_layout(dir.path());
    let archive = dir.path().join("layout.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    tar.append_dir_all(".", &layout).unwrap();
    tar.into_inner().unwrap().sync_all().unwrap();
    run(containerd
        .ctr_in("test")
        .args([
            "images",
            "import",
            "--no-unpack",
            "--base-name",
            "example.com/tiny",
        ])
        .arg(&archive));

    let images = run(containerd.ctr_in("test").args(["images", "ls", "-q"]));
    assert_eq!(images.trim(), "example.com/tiny:v1");
    let content = run(containerd.ctr_in("test").args(["content", "ls", "-q"]));
    assert!(
        content.lines().any(|d| d == manifest),
        "{manifest} not in {content}"
    );
    let elsewhere = run(containerd.ctr_in("other").args(["images", "ls", "-q"]));
    assert_eq!(elsewhere.trim(), "", "namespaces do not share images");

    let hex = &manifest["sha256:".len()..];
    let stored = containerd
        .root_dir()
        .join("io.containerd.content.v1.content/blobs/sha256")
        .join(hex);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap(),
        "{}",
        stored.display()
    );
}

#[test]
fn servers_started_at_once_get_ports_of_their_own() {
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, root) in roots.iter().enumerate() {
        std::fs::write(root.path().join("who"), format!("server {i}")).unwrap();
    }
    let (nginxes, registries) = std::thread::scope(|s| {
        let nginxes: Vec<_> = roots
            .iter()
            .map(|root| s.spawn(|| Nginx::start(root.path())))
            .collect();
        let registries: Vec<_> = (0..2).map(|_| s.spawn(Registry::start)).collect();
        (
            nginxes
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            registries
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    let mut ports: Vec<u16> = nginxes
        .iter()
        .map(Nginx::port)
        .chain(registries.iter().map(Registry::port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{ports:?}");

    let agent = agent();
    for (i, nginx) in nginxes.iter().enumerate() {
        let mut response = agent.get(nginx.url("/who")).call().unwrap();
        assert_eq!(
            response.body_mut().read_to_string().unwrap(),
            format!("server {i}")
        );
    }
    for registry in &registries {
        assert_eq!(
            agent.get(registry.url("/v2/")).call().unwrap().status(),
            200
        );
    }
}

#[test]
fn a_taken_port_is_retried_on_another() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let docroot = tempfile::tempdir().unwrap();
    std::fs::write(docroot.path().join("f"), b"here").unwrap();
    let nginx = Nginx::builder(docroot.path()).port(port).start();
    assert_ne!(nginx.port(), port);
    let mut response = agent().get(nginx.url("/f")).call().unwrap();
    assert_eq!(response.body_mut().read_to_vec().unwrap(), b"here");
}

#[test]
fn a_dropped_server_is_stopped_and_reaped() {
    fn gone(pid: u32, port: u16) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
        assert!(
            !testkit::servers::tcp_accepts(port),
            "port {port} still accepts"
        );
    }
    let docroot = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(docroot.path());
    let (pid, port) = (nginx.pid(), nginx.port());
    assert!(testkit::servers::tcp_accepts(port));
    drop(nginx);
    gone(pid, port);

    let registry = Registry::start();
    let (pid, port) = (registry.pid(), registry.port());
    drop(registry);
    gone(pid, port);
}

#[test]
fn a_server_that_cannot_start_fails_with_the_end_of_its_log() {
    let docroot = tempfile::tempdir().unwrap();
    let failed = std::panic::catch_unwind(|| {
        Nginx::builder(docroot.path())
            .config("no_such_directive on;")
            .start()
    });
    let message = panic_text(failed.expect_err("nginx started with a bad config"));
    assert!(
        message.contains("nginx exited")
            && message.contains("unknown directive \"no_such_directive\""),
        "{message}"
    );
}

#[test]
fn a_missing_program_names_the_package_to_install() {
    let failed =
        std::panic::catch_unwind(|| testkit::require_program("/nonexistent/tool", "some-package"));
    let message = panic_text(failed.expect_err("a missing program was found"));
    assert_eq!(
        message,
        "/nonexistent/tool not found: install the Debian package some-package (scripts/test.sh does)"
    );
}
