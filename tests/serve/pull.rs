//! The pull side, checked against the spec by a plain HTTP client:
//! manifests by tag (row or version label) and digest, byte for byte with
//! their media type, negotiation by `Accept`, `304`s, blobs whole and by
//! range, referrers, the spec's refusals, ACIs left out, tag pages.

use serde_json::json;

use crate::builder::{self as oci, Layout};
use crate::common;
use crate::server::{Answer, Served, agent};
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
