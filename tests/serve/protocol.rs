//! The distribution spec's rules, checked against a real `imgstore serve`
//! by a plain HTTP client (ureq) and, for clients that go away, raw
//! sockets.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::builder::{self as oci, Layout};
use crate::common;
use crate::server::{
    Answer, Served, agent, agent_trusting, eventually, read_some_and_drop, run, send_and_drop,
    serve_command, skopeo, upload_files,
};
use crate::{multi_platform, simple_image};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn blob_bytes(layout: &Layout, digest: &str) -> Vec<u8> {
    layout.files[&Layout::blob_path(digest)].clone()
}

#[test]
fn manifests_and_blobs_are_served_as_stored_with_negotiation_304s_and_ranges() {
    let store = common::store();
    let content = common::noise(100_000, 7);
    // Named and versioned by the layout: no tag row, served by the version.
    let (layout, built) = simple_image(&store, "example.com/app:1.0", &content);
    let served = Served::start(&store, &[]);
    let agent = agent();

    let base = Answer::of(agent.get(served.url("/v2/")).call());
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let manifest = blob_bytes(&layout, &built.manifest);
    for reference in ["1.0", built.manifest.as_str()] {
        let got = Answer::of(
            agent
                .get(served.url(&format!("/v2/example.com/app/manifests/{reference}")))
                .header("Accept", oci::MANIFEST)
                .call(),
        );
        assert_eq!(got.status, 200, "{reference}");
        assert_eq!(got.body, manifest, "byte for byte as imported");
        assert_eq!(got.header("content-type"), Some(oci::MANIFEST));
        assert_eq!(
            got.header("docker-content-digest"),
            Some(built.manifest.as_str())
        );
        assert_eq!(
            got.header("etag"),
            Some(format!("\"{}\"", built.manifest).as_str())
        );
    }
    // The key the store prints is the digest the registry serves.
    assert_eq!(
        store.ok(&["resolve", "example.com/app:1.0"]).trim(),
        built.manifest
    );

    let head = Answer::of(
        agent
            .head(served.url("/v2/example.com/app/manifests/1.0"))
            .call(),
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(manifest.len().to_string().as_str())
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(built.manifest.as_str())
    );

    let etag = format!("\"{}\"", built.manifest);
    let cached = Answer::of(
        agent
            .get(served.url("/v2/example.com/app/manifests/1.0"))
            .header("If-None-Match", &etag)
            .call(),
    );
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));

    // A client that takes only docker's types gets no OCI manifest.
    agent_refuses(
        &served,
        "/v2/example.com/app/manifests/1.0",
        DOCKER_MANIFEST,
        404,
        "MANIFEST_UNKNOWN",
    );
    for (path, status, code) in [
        ("/v2/example.com/app/manifests/2.0", 404, "MANIFEST_UNKNOWN"),
        ("/v2/other/manifests/1.0", 404, "MANIFEST_UNKNOWN"),
        (
            "/v2/example.com/app/manifests/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/example.com/app/manifests/sha256:00",
            400,
            "DIGEST_INVALID",
        ),
        ("/v2/example.com/app/manifests/-bad", 400, "TAG_INVALID"),
        ("/v2/Example/app/manifests/1.0", 400, "NAME_INVALID"),
        ("/v2/a..b/tags/list", 400, "NAME_INVALID"),
        ("/v2/a//b/blobs/sha256:00", 400, "NAME_INVALID"),
        ("/v2/example.com/app/blobs/sha512-00", 400, "DIGEST_INVALID"),
        (
            "/v2/example.com/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            404,
            "BLOB_UNKNOWN",
        ),
        ("/v2/example.com/app/nothing", 404, "UNSUPPORTED"),
    ] {
        let got = Answer::of(agent.get(served.url(path)).call());
        got.refused(status, code);
    }

    // Blobs: whole, ranges, suffixes, 416, 304.
    let layer = blob_bytes(&layout, &built.layers[0]);
    let size = layer.len();
    let blob_url = served.url(&format!("/v2/example.com/app/blobs/{}", built.layers[0]));
    let whole = Answer::of(agent.get(&blob_url).call());
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, layer);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        whole.header("docker-content-digest"),
        Some(built.layers[0].as_str())
    );
    let ranged = |range: &str| Answer::of(agent.get(&blob_url).header("Range", range).call());
    let part = ranged("bytes=10-19");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &layer[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{size}").as_str())
    );
    let tail = ranged("bytes=-5");
    assert_eq!((tail.status, &tail.body[..]), (206, &layer[size - 5..]));
    let open = ranged(&format!("bytes={}-", size - 3));
    assert_eq!((open.status, &open.body[..]), (206, &layer[size - 3..]));
    let beyond = ranged(&format!("bytes={size}-"));
    beyond.refused(416, "RANGE_INVALID");
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    // Several ranges are answered with the whole blob, as the RFC allows.
    assert_eq!(ranged("bytes=0-1,5-6").body, layer);
    // A range for another version of the blob gets the whole blob.
    let other = Answer::of(
        agent
            .get(&blob_url)
            .header("Range", "bytes=0-9")
            .header("If-Range", "\"something else\"")
            .call(),
    );
    assert_eq!((other.status, other.body.len()), (200, size));
    let not_modified = Answer::of(
        agent
            .get(&blob_url)
            .header("If-None-Match", format!("\"{}\"", built.layers[0]))
            .call(),
    );
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    let head = Answer::of(agent.head(&blob_url).call());
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
    // Blobs are store-wide: the config is served under any valid name.
    let config = Answer::of(
        agent
            .get(served.url(&format!("/v2/any/repo/blobs/{}", built.config)))
            .call(),
    );
    assert_eq!(config.body, blob_bytes(&layout, &built.config));

    // The OCI 1.1 referrers API: nothing refers to anything here.
    let referrers = Answer::of(
        agent
            .get(served.url(&format!(
                "/v2/example.com/app/referrers/{}?artifactType=application%2Fx.sig",
                built.manifest
            )))
            .call(),
    );
    assert_eq!(referrers.status, 200);
    assert_eq!(
        referrers.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(referrers.json()["manifests"], json!([]));
    assert_eq!(
        referrers.header("oci-filters-applied"),
        Some("artifactType")
    );

    // One log line per request, at info level.
    let log = served.log();
    assert!(
        log.contains(&format!(
            "\"GET /v2/example.com/app/blobs/{}\" 206 10",
            built.layers[0]
        )),
        "{log}"
    );
}

fn agent_refuses(served: &Served, path: &str, accept: &str, status: u16, code: &str) {
    let got = Answer::of(
        agent()
            .get(served.url(path))
            .header("Accept", accept)
            .call(),
    );
    got.refused(status, code);
}

#[test]
fn an_index_is_served_whole_or_as_its_amd64_manifest_to_clients_without_indexes() {
    let store = common::store();
    let (layout, index, images) = multi_platform("example.com/multi:2", 11);
    crate::import_layout(&store, &layout);
    let served = Served::start(&store, &[]);
    let agent = agent();
    let whole = Answer::of(
        agent
            .get(served.url("/v2/example.com/multi/manifests/2"))
            .header("Accept", format!("{}, {}", oci::INDEX, oci::MANIFEST))
            .call(),
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("docker-content-digest"), Some(index.as_str()));
    assert_eq!(whole.header("content-type"), Some(oci::INDEX));
    assert_eq!(whole.body, blob_bytes(&layout, &index));
    let amd64 = Answer::of(
        agent
            .get(served.url("/v2/example.com/multi/manifests/2"))
            .header("Accept", oci::MANIFEST)
            .call(),
    );
    assert_eq!(amd64.status, 200);
    assert_eq!(
        amd64.header("docker-content-digest"),
        Some(images[0].manifest.as_str())
    );
    assert_eq!(amd64.body, blob_bytes(&layout, &images[0].manifest));
    // Each platform's manifest by digest.
    let arm64 = Answer::of(
        agent
            .get(served.url(&format!(
                "/v2/example.com/multi/manifests/{}",
                images[1].manifest
            )))
            .call(),
    );
    assert_eq!(arm64.body, blob_bytes(&layout, &images[1].manifest));
}

#[test]
fn aci_images_are_not_served() {
    let store = common::store();
    store.ok(&["import", common::fixture("hello.aci").to_str().unwrap()]);
    let key = store
        .ok(&["resolve", "example.com/hello"])
        .trim()
        .to_string();
    store.ok(&["tag", &key, "example.com/hello:stable"]);
    let served = Served::start(&store, &[]);
    let agent = agent();
    for reference in ["stable", "1.0.0"] {
        Answer::of(
            agent
                .get(served.url(&format!("/v2/example.com/hello/manifests/{reference}")))
                .call(),
        )
        .refused(404, "MANIFEST_UNKNOWN");
    }
    // An ACI's key is a sha512 of its tar: not an OCI manifest either.
    let sha512 = key.replacen("sha512-", "sha512:", 1);
    Answer::of(
        agent
            .get(served.url(&format!("/v2/example.com/hello/manifests/{sha512}")))
            .call(),
    )
    .refused(404, "MANIFEST_UNKNOWN");
    Answer::of(
        agent
            .get(served.url("/v2/example.com/hello/tags/list"))
            .call(),
    )
    .refused(404, "NAME_UNKNOWN");
}

#[test]
fn tag_lists_page_with_n_and_last_and_a_link_to_the_next_page() {
    let store = common::store();
    let (_, built) = simple_image(&store, "example.com/paged:v0", b"paged");
    for tag in ["v3", "v1", "v2", "latest", "z9"] {
        store.ok(&["tag", &built.manifest, &format!("example.com/paged:{tag}")]);
    }
    // A tag row of another repository that falls in the same key range.
    store.ok(&["tag", &built.manifest, "example.com/paged:5000/x:y"]);
    let served = Served::start(&store, &[]);
    let agent = agent();
    let list = |query: &str| {
        Answer::of(
            agent
                .get(served.url(&format!("/v2/example.com/paged/tags/list{query}")))
                .call(),
        )
    };
    let all = list("");
    assert_eq!(all.status, 200);
    assert_eq!(
        all.json(),
        json!({"name": "example.com/paged", "tags": ["latest", "v0", "v1", "v2", "v3", "z9"]})
    );
    assert_eq!(all.header("link"), None);

    let mut pages = Vec::new();
    let mut query = "?n=2".to_string();
    loop {
        let page = list(&query);
        assert_eq!(page.status, 200);
        pages.push(page.json()["tags"].clone());
        let Some(link) = page.header("link") else {
            break;
        };
        let target = link
            .strip_prefix("</v2/example.com/paged/tags/list")
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("bad Link {link}"));
        query = target.to_string();
    }
    assert_eq!(
        pages,
        [
            json!(["latest", "v0"]),
            json!(["v1", "v2"]),
            json!(["v3", "z9"])
        ]
    );
    assert_eq!(list("?last=v2").json()["tags"], json!(["v3", "z9"]));
    assert_eq!(list("?n=1&last=v0").json()["tags"], json!(["v1"]));
    assert_eq!(list("?n=0").json()["tags"], json!([]));
    assert_eq!(list("?last=z9").json()["tags"], json!([]));
    list("?n=two").refused(400, "PAGINATION_NUMBER_INVALID");
    Answer::of(agent.get(served.url("/v2/nobody/tags/list")).call()).refused(404, "NAME_UNKNOWN");
    // A tag row wins over a version label of the same name.
    let (_, other) = simple_image(&store, "example.com/paged:v1", b"other");
    let v1 = Answer::of(
        agent
            .get(served.url("/v2/example.com/paged/manifests/v1"))
            .call(),
    );
    assert_eq!(
        v1.header("docker-content-digest"),
        Some(built.manifest.as_str())
    );
    assert_ne!(other.manifest, built.manifest);
}

/// The parts of an image to push by hand: its blobs and its manifest.
struct ToPush {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    config_digest: String,
    layer_digest: String,
    manifest_digest: String,
}

fn to_push(seed: u64) -> ToPush {
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
    let pushed = Answer::of(
        agent
            .put(served.url("/v2/pushed/app/manifests/v1"))
            .header("Content-Type", oci::MANIFEST)
            .send(&image.manifest[..]),
    );
    assert_eq!(
        pushed.status,
        201,
        "{}",
        String::from_utf8_lossy(&pushed.body)
    );
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
    let started = Answer::of(
        agent
            .post(served.url("/v2/bad/app/blobs/uploads/"))
            .send_empty(),
    );
    let location = started.header("location").unwrap().to_string();
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
    let started = Answer::of(
        agent
            .post(served.url("/v2/bad/app/blobs/uploads/"))
            .send_empty(),
    );
    let location = started.header("location").unwrap().to_string();
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
    let started = Answer::of(
        agent
            .post(served.url("/v2/drop/app/blobs/uploads/"))
            .send_empty(),
    );
    let location = started.header("location").unwrap().to_string();
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
    let entry = run(Command::new(program).args(["-Bbn", "tester", "s3cret"]));
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
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
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
fn idle_sessions_expire_with_their_files() {
    let store = common::store();
    let served = Served::start(&store, &["--upload-timeout", "1s"]);
    let agent = agent();
    let started = Answer::of(
        agent
            .post(served.url("/v2/idle/app/blobs/uploads/"))
            .send_empty(),
    );
    let location = started.header("location").unwrap().to_string();
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

#[test]
fn gc_leaves_live_sessions_and_staged_uploads_alone() {
    let store = common::store();
    let served = Served::start(&store, &[]);
    let agent = agent();
    let image = to_push(81);
    let started = Answer::of(
        agent
            .post(served.url("/v2/gc/app/blobs/uploads/"))
            .send_empty(),
    );
    let location = started.header("location").unwrap().to_string();
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
    let pushed = Answer::of(
        agent
            .put(served.url("/v2/gc/app/manifests/v1"))
            .header("Content-Type", oci::MANIFEST)
            .send(&image.manifest[..]),
    );
    assert_eq!(
        pushed.status,
        201,
        "{}",
        String::from_utf8_lossy(&pushed.body)
    );
    store.ok(&["gc"]);
    store.ok(&["fsck"]);
    assert_eq!(
        store.ok(&["resolve", "gc/app:v1"]).trim(),
        image.manifest_digest
    );
}
