//! The push side, checked against the spec by a plain HTTP client and raw
//! sockets: sessions with chunks, resumed after a `GET`, mounted,
//! monolithic, published with their manifest; refusals that change
//! nothing; clients that go away; sessions that expire; gc beside them.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::builder as oci;
use crate::common;
use crate::server::{
    Answer, Served, agent, eventually, read_some_and_drop, send_and_drop, upload_files,
};
use crate::{push_whole, put_manifest, simple_image, to_push};

#[test]
fn chunked_uploads_resume_mount_and_publish_with_their_manifest() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let agent = agent();
    let image = to_push(21);

    // A session: POST, then chunks with Content-Range.
    let started = Answer::of(
        agent
            .post(served.url("/v2/pushed/app/blobs/uploads/"))
            .send_empty(),
    );
    assert_eq!(started.status, 202);
    assert_eq!(started.header("range"), Some("0-0"));
    let location = started.header("location").unwrap().to_string();
    assert!(
        location.starts_with("/v2/pushed/app/blobs/uploads/"),
        "{location}"
    );
    let uuid = started.header("docker-upload-uuid").unwrap();
    assert!(location.ends_with(uuid));

    let (first, rest) = image.layer.split_at(100_000);
    let chunk = Answer::of(
        agent
            .patch(served.url(&location))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("0-{}", first.len() - 1))
            .send(first),
    );
    assert_eq!(chunk.status, 202);
    assert_eq!(chunk.header("range"), Some("0-99999"));
    let location = chunk.header("location").unwrap().to_string();

    // A client that lost track asks where the session is.
    let status = Answer::of(agent.get(served.url(&location)).call());
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-99999"));

    // A chunk that does not start where the session ends is refused, and
    // the session is still there.
    let misplaced = Answer::of(
        agent
            .patch(served.url(&location))
            .header("Content-Range", "5-9")
            .send(&b"12345"[..]),
    );
    misplaced.refused(416, "RANGE_INVALID");
    assert_eq!(misplaced.header("range"), Some("0-99999"));
    assert_eq!(
        Answer::of(agent.get(served.url(&location)).call()).header("range"),
        Some("0-99999")
    );

    let (second, third) = rest.split_at(100_000);
    let chunk = Answer::of(
        agent
            .patch(served.url(&location))
            .header(
                "Content-Range",
                format!("100000-{}", 100_000 + second.len() - 1),
            )
            .send(second),
    );
    assert_eq!(chunk.header("range"), Some("0-199999"));
    // The last chunk comes with the PUT.
    let done = Answer::of(
        agent
            .put(served.url(&format!("{location}?digest={}", image.layer_digest)))
            .header("Content-Range", format!("200000-{}", image.layer.len() - 1))
            .send(third),
    );
    assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(
        done.header("location"),
        Some(format!("/v2/pushed/app/blobs/{}", image.layer_digest).as_str())
    );
    assert_eq!(
        done.header("docker-content-digest"),
        Some(image.layer_digest.as_str())
    );
    // The session is over.
    Answer::of(agent.get(served.url(&location)).call()).refused(404, "BLOB_UPLOAD_UNKNOWN");

    // The blob waits, staged, for its manifest: visible to HEAD and GET,
    // not yet in the store.
    let head = Answer::of(
        agent
            .head(served.url(&format!("/v2/pushed/app/blobs/{}", image.layer_digest)))
            .call(),
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(image.layer.len().to_string().as_str())
    );
    let staged = Answer::of(
        agent
            .get(served.url(&format!("/v2/pushed/app/blobs/{}", image.layer_digest)))
            .call(),
    );
    assert_eq!(staged.body, image.layer);
    assert_eq!(upload_files(store.path()).len(), 1);
    assert!(!common::blob_file(store.path(), &image.layer_digest.parse().unwrap()).exists());

    // Mount it into another repository.
    let mounted = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/other/app/blobs/uploads/?mount={}&from=pushed/app",
                image.layer_digest
            )))
            .send_empty(),
    );
    assert_eq!(mounted.status, 201);
    assert_eq!(
        mounted.header("location"),
        Some(format!("/v2/other/app/blobs/{}", image.layer_digest).as_str())
    );
    // A mount of a blob the registry lacks opens a session instead.
    let fallback = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/other/app/blobs/uploads/?mount={}&from=pushed/app",
                image.config_digest
            )))
            .send_empty(),
    );
    assert_eq!(fallback.status, 202);
    let cancel = Answer::of(
        agent
            .delete(served.url(fallback.header("location").unwrap()))
            .call(),
    );
    assert_eq!(cancel.status, 204);

    // The config in one monolithic POST.
    let config = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/pushed/app/blobs/uploads/?digest={}",
                image.config_digest
            )))
            .header("Content-Type", "application/octet-stream")
            .send(&image.config[..]),
    );
    assert_eq!(config.status, 201);

    // The manifest brings them all into the store in one commit.
    let before = store.ok(&["images", "--json"]);
    assert_eq!(before.trim(), "[]");
    let pushed = put_manifest(&agent, &served.url(""), "pushed/app", "v1", &image.manifest);
    assert_eq!(
        pushed.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        pushed.header("location"),
        Some(format!("/v2/pushed/app/manifests/{}", image.manifest_digest).as_str())
    );
    assert_eq!(
        store.ok(&["resolve", "pushed/app:v1"]).trim(),
        image.manifest_digest
    );
    let info = common::inspect(&store, "pushed/app:v1");
    assert_eq!(info["name"], "pushed/app");
    assert_eq!(common::label(&info, "version"), Some("v1"));
    assert_eq!(common::label(&info, "pushed"), Some("yes"));
    assert_eq!(common::label(&info, "arch"), Some("amd64"));
    assert_eq!(info["tags"], json!(["pushed/app:v1"]));
    assert!(upload_files(store.path()).is_empty());
    store.ok(&["fsck"]);
    let served_back = Answer::of(agent.get(served.url("/v2/pushed/app/manifests/v1")).call());
    assert_eq!(served_back.body, image.manifest);
    // Pushed again by digest, as clients push the manifests of an index.
    let again = Answer::of(
        agent
            .put(served.url(&format!(
                "/v2/pushed/app/manifests/{}",
                image.manifest_digest
            )))
            .header("Content-Type", oci::MANIFEST)
            .send(&image.manifest[..]),
    );
    assert_eq!(again.status, 201);
}

#[test]
fn bad_digests_unknown_blobs_and_bad_manifests_are_refused_and_change_nothing() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let agent = agent();
    let image = to_push(31);
    let before = store.snapshot();

    // An upload whose bytes do not match its digest.
    let location = served.start_upload(&agent, "bad/app");
    let wrong = Answer::of(
        agent
            .put(served.url(&format!("{location}?digest={}", image.config_digest)))
            .send(&b"not the config"[..]),
    );
    wrong.refused(400, "DIGEST_INVALID");
    Answer::of(agent.get(served.url(&location)).call()).refused(404, "BLOB_UPLOAD_UNKNOWN");
    let monolithic = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/bad/app/blobs/uploads/?digest={}",
                image.layer_digest
            )))
            .send(&image.config[..]),
    );
    monolithic.refused(400, "DIGEST_INVALID");
    let head = Answer::of(
        agent
            .head(served.url(&format!("/v2/bad/app/blobs/{}", image.layer_digest)))
            .call(),
    );
    assert_eq!(head.status, 404);
    let location = served.start_upload(&agent, "bad/app");
    Answer::of(agent.put(served.url(&location)).send_empty()).refused(400, "DIGEST_INVALID");
    Answer::of(agent.delete(served.url(&location)).call());

    // A manifest naming blobs nobody uploaded.
    let unknown = Answer::of(
        agent
            .put(served.url("/v2/bad/app/manifests/v1"))
            .header("Content-Type", oci::MANIFEST)
            .send(&image.manifest[..]),
    );
    unknown.refused(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        unknown.json()["errors"][0]["detail"]["digest"],
        image.config_digest
    );
    // A manifest pushed to a digest it does not have.
    let misnamed = Answer::of(
        agent
            .put(served.url(&format!("/v2/bad/app/manifests/{}", image.config_digest)))
            .header("Content-Type", oci::MANIFEST)
            .send(&image.manifest[..]),
    );
    misnamed.refused(400, "DIGEST_INVALID");
    // Schema 1, and what is no manifest at all.
    let schema1 = Answer::of(
        agent
            .put(served.url("/v2/bad/app/manifests/v1"))
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
            .send(&br#"{"schemaVersion":1,"fsLayers":[]}"#[..]),
    );
    schema1.refused(400, "MANIFEST_INVALID");
    let garbage = Answer::of(
        agent
            .put(served.url("/v2/bad/app/manifests/v1"))
            .header("Content-Type", oci::MANIFEST)
            .send(&b"{not json"[..]),
    );
    garbage.refused(400, "MANIFEST_INVALID");
    // Invalid names are refused before anything is read or written.
    Answer::of(
        agent
            .post(served.url("/v2/Bad/App/blobs/uploads/"))
            .send_empty(),
    )
    .refused(400, "NAME_INVALID");
    Answer::of(
        agent
            .put(served.url("/v2/bad/-app/manifests/v1"))
            .send(&image.manifest[..]),
    )
    .refused(400, "NAME_INVALID");
    Answer::of(
        agent
            .post(served.url("/v2/bad/app/blobs/uploads/?mount=sha256:00&from=x"))
            .send_empty(),
    )
    .refused(400, "DIGEST_INVALID");

    assert!(upload_files(store.path()).is_empty());
    assert_eq!(store.snapshot(), before);
    store.ok(&["fsck"]);
}

#[test]
fn a_client_that_drops_mid_upload_or_mid_blob_leaves_nothing_behind() {
    let store = common::store();
    let content = common::noise(3 << 20, 41);
    let (_, built) = simple_image(&store, "example.com/drop:1", &content);
    let served = Served::start(&store, &[]);
    let agent = agent();
    let before = store.snapshot();

    // A session, one good chunk, then a chunk whose client goes away.
    let location = served.start_upload(&agent, "drop/app");
    Answer::of(
        agent
            .patch(served.url(&location))
            .send(&common::noise(50_000, 1)[..]),
    );
    assert_eq!(upload_files(store.path()).len(), 1);
    let mut request =
        format!("PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&common::noise(200_000, 2));
    send_and_drop(served.port(), &request);
    eventually(Duration::from_secs(10), "the session to go", || {
        Answer::of(agent.get(served.url(&location)).call()).status == 404
    });
    // A monolithic upload whose client goes away.
    let digest = oci::sha256(&common::noise(1_000_000, 3));
    let mut request = format!(
        "POST /v2/drop/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&common::noise(300_000, 3));
    send_and_drop(served.port(), &request);
    eventually(Duration::from_secs(10), "the upload files to go", || {
        upload_files(store.path()).is_empty()
    });

    // A pull that hangs up after a few bytes of a 3 MB layer.
    for _ in 0..4 {
        read_some_and_drop(
            served.port(),
            &format!("/v2/example.com/drop/blobs/{}", built.layers[0]),
            1000,
        );
    }
    // The server is fine, and the store is as it was.
    let whole = Answer::of(
        agent
            .get(served.url(&format!("/v2/example.com/drop/blobs/{}", built.layers[0])))
            .call(),
    );
    assert_eq!(oci::sha256(&whole.body), built.layers[0]);
    assert!(upload_files(store.path()).is_empty());
    assert_eq!(store.snapshot(), before);
}

/// Uploads whose bodies stall, more of them than the server has threads
/// for store work: each keeps its connection and its file, none keeps a
/// thread, so pulls and pushes beside them are answered at once.
#[test]
fn uploads_that_stall_hold_no_thread_and_other_clients_go_on() {
    const STALLED: usize = 48;
    let store = common::store();
    let content = common::noise(1 << 20, 43);
    let (_, built) = simple_image(&store, "example.com/stall:1", &content);
    let served = Served::start(&store, &[]);
    let agent = agent();
    let stalled: Vec<(String, TcpStream)> = (0..STALLED)
        .map(|i| {
            let location = served.start_upload(&agent, "stall/app");
            let mut stream = TcpStream::connect(("127.0.0.1", served.port())).unwrap();
            write!(
                stream,
                "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
            )
            .unwrap();
            stream
                .write_all(&common::noise(300_000, 500 + i as u64))
                .unwrap();
            (location, stream)
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "every stalled upload's file",
        || upload_files(store.path()).len() == STALLED,
    );

    // Answered while every stalled body still holds its connection.
    let patient: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let layer = Answer::of(
        patient
            .get(served.url(&format!("/v2/example.com/stall/blobs/{}", built.layers[0])))
            .call(),
    );
    assert_eq!(oci::sha256(&layer.body), built.layers[0]);
    let image = to_push(44);
    push_whole(&patient, &served.url(""), "pushed/beside", "v1", &image);
    assert_eq!(
        store.ok(&["resolve", "pushed/beside:v1"]).trim(),
        image.manifest_digest
    );

    // Their clients go: so do their sessions and files.
    let locations: Vec<String> = stalled.into_iter().map(|(l, _)| l).collect();
    for location in &locations {
        eventually(Duration::from_secs(10), "a stalled session to go", || {
            Answer::of(agent.get(served.url(location)).call()).status == 404
        });
    }
    eventually(Duration::from_secs(10), "the upload files to go", || {
        upload_files(store.path()).is_empty()
    });
    store.ok(&["fsck"]);
}

#[test]
fn idle_sessions_expire_with_their_files() {
    let store = common::store();
    let served = Served::start(&store, &["--upload-timeout", "1s"]);
    let agent = agent();
    let location = served.start_upload(&agent, "idle/app");
    let chunk = Answer::of(agent.patch(served.url(&location)).send(&b"some bytes"[..]));
    assert_eq!(chunk.status, 202);
    let image = to_push(71);
    let finished = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/idle/app/blobs/uploads/?digest={}",
                image.config_digest
            )))
            .send(&image.config[..]),
    );
    assert_eq!(finished.status, 201);
    // (Both may be gone already on a busy machine: the timeout is short.)
    assert!(upload_files(store.path()).len() <= 2);
    eventually(Duration::from_secs(10), "the uploads to expire", || {
        upload_files(store.path()).is_empty()
    });
    Answer::of(agent.get(served.url(&location)).call()).refused(404, "BLOB_UPLOAD_UNKNOWN");
    let head = Answer::of(
        agent
            .head(served.url(&format!("/v2/idle/app/blobs/{}", image.config_digest)))
            .call(),
    );
    assert_eq!(head.status, 404);
    assert!(served.log().contains("expired"), "{}", served.log());
}

/// What a server killed outright leaves in `tmp/uploads/` (a session with
/// a chunk, a finished upload no manifest named) is a temp file like any
/// other: fsck leaves it alone, gc keeps it within the grace period and
/// sweeps it after.
#[test]
fn a_killed_servers_upload_files_are_swept_by_gc_after_the_grace_period() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let agent = agent();
    let before = store.snapshot();
    let image = to_push(91);
    let location = served.start_upload(&agent, "killed/app");
    Answer::of(
        agent
            .patch(served.url(&location))
            .send(&image.layer[..5000]),
    );
    let finished = Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/killed/app/blobs/uploads/?digest={}",
                image.config_digest
            )))
            .send(&image.config[..]),
    );
    assert_eq!(finished.status, 201);
    // SAFETY: kill(2) with the pid of the test's own unreaped child.
    unsafe { libc::kill(served.pid() as libc::pid_t, libc::SIGKILL) };
    eventually(Duration::from_secs(10), "the server to die", || {
        testkit::servers::http_status(served.port(), "/v2/").is_none()
    });
    assert_eq!(upload_files(store.path()).len(), 2);

    store.ok(&["fsck"]);
    store.ok(&["gc"]);
    assert_eq!(upload_files(store.path()).len(), 2, "young files are kept");
    store.ok(&["gc", "--grace", "0"]);
    assert!(
        upload_files(store.path()).is_empty(),
        "{:?}",
        upload_files(store.path())
    );
    assert_eq!(store.snapshot(), before);
    store.ok(&["fsck"]);
}

#[test]
fn gc_leaves_live_sessions_and_staged_uploads_alone() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let agent = agent();
    let image = to_push(81);
    let location = served.start_upload(&agent, "gc/app");
    let (first, second) = image.layer.split_at(1000);
    Answer::of(agent.patch(served.url(&location)).send(first));
    store.ok(&["gc"]);
    let done = Answer::of(
        agent
            .put(served.url(&format!("{location}?digest={}", image.layer_digest)))
            .send(second),
    );
    assert_eq!(done.status, 201);
    Answer::of(
        agent
            .post(served.url(&format!(
                "/v2/gc/app/blobs/uploads/?digest={}",
                image.config_digest
            )))
            .send(&image.config[..]),
    );
    store.ok(&["gc"]);
    assert_eq!(upload_files(store.path()).len(), 2);
    put_manifest(&agent, &served.url(""), "gc/app", "v1", &image.manifest);
    store.ok(&["gc"]);
    store.ok(&["fsck"]);
    assert_eq!(
        store.ok(&["resolve", "gc/app:v1"]).trim(),
        image.manifest_digest
    );
}
