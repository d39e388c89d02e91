//! Who may do what, and the server's life: `--read-only`, htpasswd Basic
//! auth, TLS, deletes of tags and images, and a clean stop on SIGTERM.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::builder as oci;
use crate::common;
use crate::server::{
    Answer, Served, agent, agent_trusting, eventually, serve_command, skopeo, upload_files,
};
use crate::{simple_image, to_push};

#[test]
fn read_only_refuses_every_write() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/ro:1", b"read only");
    store.ok(&["tag", &built.manifest, "example.com/ro:t"]);
    let served = Served::start(&store, &["--read-only"]);
    let agent = agent();
    let before = store.snapshot();
    let image = to_push(51);
    let manifest = served.url("/v2/example.com/ro/manifests/t");
    let writes = [
        Answer::of(
            agent
                .post(served.url("/v2/example.com/ro/blobs/uploads/"))
                .send_empty(),
        ),
        Answer::of(
            agent
                .post(served.url(&format!(
                    "/v2/example.com/ro/blobs/uploads/?digest={}",
                    image.config_digest
                )))
                .send(&image.config[..]),
        ),
        Answer::of(
            agent
                .post(served.url(&format!(
                    "/v2/example.com/ro/blobs/uploads/?mount={}&from=x",
                    built.layers[0]
                )))
                .send_empty(),
        ),
        Answer::of(
            agent
                .patch(served.url("/v2/example.com/ro/blobs/uploads/0123"))
                .send(&b"x"[..]),
        ),
        Answer::of(
            agent
                .put(served.url(&format!(
                    "/v2/example.com/ro/blobs/uploads/0123?digest={}",
                    image.config_digest
                )))
                .send_empty(),
        ),
        Answer::of(
            agent
                .delete(served.url("/v2/example.com/ro/blobs/uploads/0123"))
                .call(),
        ),
        Answer::of(
            agent
                .put(&manifest)
                .header("Content-Type", oci::MANIFEST)
                .send(&image.manifest[..]),
        ),
        Answer::of(agent.delete(&manifest).call()),
        Answer::of(
            agent
                .delete(served.url(&format!("/v2/example.com/ro/manifests/{}", built.manifest)))
                .call(),
        ),
        Answer::of(
            agent
                .delete(served.url(&format!("/v2/example.com/ro/blobs/{}", built.layers[0])))
                .call(),
        ),
    ];
    for answer in &writes {
        answer.refused(405, "UNSUPPORTED");
    }
    assert_eq!(Answer::of(agent.get(&manifest).call()).status, 200);
    assert_eq!(store.snapshot(), before);
}

#[test]
fn htpasswd_asks_for_basic_credentials_with_a_challenge() {
    let store = common::store();
    simple_image(&store, "example.com/secret:1", b"secret");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let program = testkit::require_program("/usr/bin/htpasswd", "apache2-utils");
    let entry = common::run(Command::new(program).args(["-Bbn", "tester", "s3cret"]));
    std::fs::write(&htpasswd, entry).unwrap();
    let served = Served::start(&store, &["--htpasswd", htpasswd.to_str().unwrap()]);
    let agent = agent();
    let basic = |credentials: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    for path in ["/v2/", "/v2/example.com/secret/manifests/1"] {
        let anonymous = Answer::of(agent.get(served.url(path)).call());
        anonymous.refused(401, "UNAUTHORIZED");
        let challenge = anonymous.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Basic realm=\"imgstore\""),
            "{challenge}"
        );
        let wrong = Answer::of(
            agent
                .get(served.url(path))
                .header("Authorization", basic("tester:wrong"))
                .call(),
        );
        wrong.refused(401, "UNAUTHORIZED");
        let right = Answer::of(
            agent
                .get(served.url(path))
                .header("Authorization", basic("tester:s3cret"))
                .call(),
        );
        assert_eq!(right.status, 200, "{path}");
    }
    // skopeo answers the challenge.
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "tester:s3cret",
        &format!("docker://{}/example.com/secret:1", served.host()),
        &format!("oci:{}:1", out.path().join("layout").display()),
    ]);
    assert!(
        served
            .log()
            .contains("tester \"GET /v2/example.com/secret/manifests/1\" 200")
    );
}

#[test]
fn tls_serves_https_to_clients_that_trust_its_certificate() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/tls:1", b"over tls");
    let certs = testkit::tls::TestCerts::generate();
    let served = Served::start_tls(&store, certs.cert_file(), certs.key_file());
    assert!(served.url("/v2/").starts_with("https://"));
    let trusting = agent_trusting(certs.ca_file());
    let got = Answer::of(
        trusting
            .get(served.url("/v2/example.com/tls/manifests/1"))
            .call(),
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(built.manifest.as_str())
    );
    assert!(
        agent().get(served.url("/v2/")).call().is_err(),
        "a client that does not trust the certificate refuses it"
    );
    let cert_dir = tempfile::tempdir().unwrap();
    std::fs::copy(certs.ca_file(), cert_dir.path().join("ca.crt")).unwrap();
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-cert-dir",
        cert_dir.path().to_str().unwrap(),
        &format!("docker://{}/example.com/tls:1", served.host()),
        &format!("oci:{}:1", out.path().join("layout").display()),
    ]);
}

#[test]
fn deletes_remove_tags_and_images_of_the_repository() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/del:1", b"to delete");
    store.ok(&["tag", &built.manifest, "example.com/del:keep"]);
    store.ok(&["tag", &built.manifest, "example.com/del:drop"]);
    let (_, other) = simple_image(&store, "example.com/elsewhere:1", b"not here");
    let served = Served::start(&store, &[]);
    let agent = agent();
    let delete = |path: &str| Answer::of(agent.delete(served.url(path)).call());

    assert_eq!(delete("/v2/example.com/del/manifests/drop").status, 202);
    store.fails(&["resolve", "example.com/del:drop"]);
    delete("/v2/example.com/del/manifests/drop").refused(404, "MANIFEST_UNKNOWN");
    // The version label is the image's, not a tag row.
    delete("/v2/example.com/del/manifests/1").refused(405, "UNSUPPORTED");
    // An image of another repository is not this one's to delete.
    delete(&format!("/v2/example.com/del/manifests/{}", other.manifest))
        .refused(404, "MANIFEST_UNKNOWN");
    assert_eq!(
        delete(&format!("/v2/example.com/del/manifests/{}", built.manifest)).status,
        202
    );
    store.fails(&["resolve", &built.manifest]);
    Answer::of(
        agent
            .get(served.url("/v2/example.com/del/manifests/keep"))
            .call(),
    )
    .refused(404, "MANIFEST_UNKNOWN");
    store.ok(&["resolve", &other.manifest]);
    store.ok(&["gc"]);
    store.ok(&["fsck"]);
}

#[test]
fn sigterm_drops_uploads_in_flight_and_exits_zero() {
    stops_on(libc::SIGTERM);
}

#[test]
fn sigint_drops_uploads_in_flight_and_exits_zero() {
    stops_on(libc::SIGINT);
}

/// Stops a server with uploads in flight by `signal`: it exits 0, leaves no
/// upload file and the store as it was.
fn stops_on(signal: libc::c_int) {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/stop:1", b"stop");
    let port = testkit::free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = serve_command(store.path(), port, &[])
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "the server to answer", || {
        testkit::servers::http_status(port, "/v2/") == Some(200)
    });
    let before = store.snapshot();
    let agent = agent();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    // A session with a chunk, and one whose PATCH is still coming.
    let started = Answer::of(agent.post(url("/v2/stop/app/blobs/uploads/")).send_empty());
    let location = started.header("location").unwrap().to_string();
    Answer::of(
        agent
            .patch(url(&location))
            .send(&common::noise(100_000, 5)[..]),
    );
    let second = Answer::of(agent.post(url("/v2/stop/app/blobs/uploads/")).send_empty());
    let second = second.header("location").unwrap().to_string();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        slow,
        "PATCH {second} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&common::noise(100_000, 6)).unwrap();
    // And a finished upload no manifest named yet.
    let image = to_push(61);
    Answer::of(
        agent
            .post(url(&format!(
                "/v2/stop/app/blobs/uploads/?digest={}",
                image.config_digest
            )))
            .send(&image.config[..]),
    );
    eventually(Duration::from_secs(5), "three upload files", || {
        upload_files(store.path()).len() == 3
    });

    // SAFETY: kill(2) with the pid of our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let started_stop = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started_stop.elapsed() < Duration::from_secs(15),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log_text = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(status.code(), Some(0), "{log_text}");
    drop(slow);
    assert!(
        upload_files(store.path()).is_empty(),
        "{:?}",
        upload_files(store.path())
    );
    assert_eq!(store.snapshot(), before);
    store.ok(&["resolve", &built.manifest]);
}

#[test]
fn a_server_that_cannot_start_says_why_in_one_line() {
    let store = common::store();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("md5"), "user:$apr1$abcdefgh$0123456789abcdefghijkl\n").unwrap();
    std::fs::write(path("not-pem"), "not a certificate\n").unwrap();
    let certs = testkit::tls::TestCerts::generate();
    let (cert, key) = (
        certs.cert_file().display().to_string(),
        certs.key_file().display().to_string(),
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--htpasswd".into(), path("missing")],
            "cannot read htpasswd file",
        ),
        (
            vec!["--htpasswd".into(), path("md5")],
            "line 1: only bcrypt entries are supported",
        ),
        (
            vec![
                "--tls-cert".into(),
                path("not-pem"),
                "--tls-key".into(),
                key.clone(),
            ],
            "holds no certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                cert.clone(),
            ],
            "cannot be read as a PEM private key",
        ),
        (vec!["--listen".into(), taken.clone()], "cannot listen on"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["serve"];
        all.extend(args.iter().map(String::as_str));
        if !args.iter().any(|a| a == "--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        let line = store.fails(&all);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    // A certificate without its key is a usage error.
    let out = store.cmd(&["serve", "--tls-cert", &cert]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
