//! `imgstore fetch` against real servers on 127.0.0.1: nginx (ETags,
//! ranges, `Cache-Control` by `add_header`, `limit_rate`, TLS) and, for the
//! faults nginx will not make on demand, the test kit's fault server. Each
//! rule of DESIGN.md §5 "Fetching by URL" is checked by what the server saw
//! (requests, headers, bytes), not by what the client says.

#[path = "common/oci_builder.rs"]
mod builder;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use builder::{DockerArchive, LayerCompression, Layout, desc, named};
use common::{AciBuilder, TestStore, compress, noise, sha512_key, store};
use imgstore::Compression;
use serde_json::Value;
use testkit::fault::{FaultServer, Reply, SeenRequest};
use testkit::{Access, Nginx};

/// An uncompressed ACI of `len` incompressible bytes; its key is the
/// sha512 of these very bytes.
fn aci(seed: u64, len: usize) -> Vec<u8> {
    AciBuilder::image(
        "example.com/fetched",
        &[("version", "1.0.0")],
        &noise(len, seed),
    )
}

/// A directory of files for nginx to serve.
fn docroot(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn nginx(root: &Path, config: &str) -> Nginx {
    Nginx::builder(root).config(config).start()
}

/// The requests nginx logged for one path.
fn log_of(server: &Nginx, uri: &str) -> Vec<Access> {
    server
        .access_log()
        .into_iter()
        .filter(|a| a.uri == uri)
        .collect()
}

/// `fetch --json ARGS…`, parsed.
fn fetch_json(s: &TestStore, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "fetch"];
    all.extend_from_slice(args);
    serde_json::from_str(&s.ok(&all)).unwrap()
}

fn keys(images: &[Value]) -> Vec<String> {
    images
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

fn remotes(s: &TestStore) -> Vec<Value> {
    serde_json::from_str(&s.ok(&["--json", "remotes"])).unwrap()
}

fn images(s: &TestStore) -> Vec<Value> {
    serde_json::from_str(&s.ok(&["--json", "images"])).unwrap()
}

/// The keys `import` of the same bytes gives, in a store of its own.
fn imported_keys(bytes: &[u8], name: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let path = common::write_file(tmp.path(), name, bytes);
    let s = TestStore::new();
    s.ok(&["import", path.to_str().unwrap(), "--full"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Makes a URL's row look downloaded `secs` seconds earlier than it was.
fn age_row(s: &TestStore, url: &str, secs: i64) {
    let conn = rusqlite::Connection::open(s.path().join("index.db")).unwrap();
    let n = conn
        .execute(
            "UPDATE remotes SET downloaded_at = downloaded_at - ? WHERE url = ?",
            rusqlite::params![secs * 1_000_000, url],
        )
        .unwrap();
    assert_eq!(n, 1, "no row for {url}");
}

/// The files a fetch keeps in `tmp/partial/`.
fn partial_files(s: &TestStore) -> Vec<PathBuf> {
    let dir = s.path().join("tmp/partial");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The partial file of a URL: `tmp/partial/<sha256 of the URL>.part`.
fn part_file(s: &TestStore, url: &str, ext: &str) -> PathBuf {
    s.path()
        .join("tmp/partial")
        .join(format!("{}.{ext}", &builder::sha256(url.as_bytes())[7..]))
}

#[test]
fn fetches_every_archive_format_as_import_reads_it() {
    let plain = aci(1, 20_000);
    let (layout, built) = Layout::simple("example.com/oci:1.0", b"hello oci");
    let oci = layout.tar();

    // A multi-platform set: its row names the index.
    let mut multi = Layout::new();
    let amd = multi.image(
        "sha256",
        "amd64",
        &[&[("a", b"amd")]],
        LayerCompression::Gzip,
        &[],
    );
    let arm = multi.image(
        "sha256",
        "arm64",
        &[&[("a", b"arm")]],
        LayerCompression::Zstd,
        &[],
    );
    let index = builder::index_json(vec![amd.desc.clone(), arm.desc.clone()]);
    let index_digest = multi.blob("sha256", &index);
    multi.index.push(named(
        desc(builder::INDEX, &index_digest, index.len()),
        "example.com/multi:2",
    ));
    let multi = multi.tar();
    let docker = DockerArchive::new("example.com/docker:3", &[&[("d", b"docker layer")]]).tar();

    let files: Vec<(&str, Vec<u8>)> = vec![
        ("plain.aci", plain.clone()),
        ("gzip.aci", compress(&plain, Compression::Gzip)),
        ("zstd.aci", compress(&aci(2, 5_000), Compression::Zstd)),
        ("xz.aci", compress(&aci(3, 5_000), Compression::Xz)),
        ("bzip2.aci", compress(&aci(4, 5_000), Compression::Bzip2)),
        ("image.oci.tar", oci.clone()),
        ("image.oci.tar.gz", compress(&oci, Compression::Gzip)),
        ("multi.oci.tar", multi.clone()),
        ("image.docker.tar", docker.clone()),
        ("image.docker.tar.zst", compress(&docker, Compression::Zstd)),
    ];
    let root = docroot(
        &files
            .iter()
            .map(|(n, b)| (*n, b.as_slice()))
            .collect::<Vec<_>>(),
    );
    let server = nginx(root.path(), "");
    let s = store();
    for (name, bytes) in &files {
        let url = server.url(name);
        let fetched = keys(&fetch_json(&s, &[&url]));
        assert_eq!(fetched, imported_keys(bytes, name), "{name}");
        let rows = remotes(&s);
        let row = rows.iter().find(|r| r["url"] == url.as_str()).unwrap();
        let root = if *name == "multi.oci.tar" {
            index_digest.clone()
        } else {
            fetched[0].clone()
        };
        assert_eq!(row["image"], root.as_str(), "{name}");
        assert_eq!(row["blob"], root.as_str(), "{name}");
        assert!(row["etag"].as_str().is_some_and(|e| e.starts_with('"')));
    }
    assert_eq!(
        sha512_key(&plain),
        keys(&fetch_json(&s, &[&server.url("plain.aci")]))[0]
    );
    assert_eq!(
        keys(&fetch_json(&s, &[&server.url("image.oci.tar")])),
        vec![built.manifest.clone()]
    );
    // Nothing was sent that would change the bytes, and nothing is left.
    assert!(
        server
            .access_log()
            .iter()
            .all(|a| a.accept_encoding.is_none())
    );
    assert!(partial_files(&s).is_empty());
}

#[test]
fn no_request_within_max_age_while_the_image_is_there() {
    let body = aci(10, 10_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = nginx(root.path(), r#"add_header Cache-Control "max-age=3600";"#);
    let url = server.url("x.aci");
    let s = store();
    let first = s.ok(&["fetch", &url]);
    assert_eq!(first.trim(), sha512_key(&body));
    let row = &remotes(&s)[0];
    assert_eq!(row["max_age"], 3600);
    for _ in 0..3 {
        assert_eq!(s.ok(&["fetch", &url]), first);
    }
    assert_eq!(log_of(&server, "/x.aci").len(), 1, "later fetches asked");

    // Once the image is gone, the row is too, and the URL is asked again.
    s.ok(&["rm", first.trim()]);
    assert!(remotes(&s).is_empty());
    assert_eq!(s.ok(&["fetch", &url]), first);
    assert_eq!(log_of(&server, "/x.aci").len(), 2);
}

#[test]
fn a_304_refreshes_the_row_in_one_go_and_moves_no_body() {
    let body = aci(11, 10_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = nginx(root.path(), r#"add_header Cache-Control "max-age=3600";"#);
    let url = server.url("x.aci");
    let s = store();
    let key = s.ok(&["fetch", &url]);
    let before = remotes(&s)[0].clone();

    // Two hours later the download is stale: the next fetch asks.
    age_row(&s, &url, 7200);
    let stale = remotes(&s)[0]["downloaded_at"].clone();
    assert_eq!(s.ok(&["fetch", &url]), key);
    let log = log_of(&server, "/x.aci");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 304);
    assert_eq!(log[1].body_bytes, 0);
    assert_eq!(log[1].if_none_match.as_deref(), before["etag"].as_str());
    let after = remotes(&s)[0].clone();
    assert_ne!(after["downloaded_at"], stale, "the 304 left the row stale");
    assert_eq!(after["max_age"], 3600);
    assert_eq!(after["etag"], before["etag"]);
    assert_eq!(after["image"], before["image"]);

    // Refreshed: within the new max-age no request is made (rkt asked
    // again every time).
    assert_eq!(s.ok(&["fetch", &url]), key);
    assert_eq!(log_of(&server, "/x.aci").len(), 2);
}

#[test]
fn no_cache_and_no_store_count_as_zero_and_no_cache_option_skips_both() {
    let body = aci(12, 10_000);
    let root = docroot(&[("x.aci", &body), ("y.aci", &body)]);
    let server = nginx(
        root.path(),
        r#"location = /x.aci { add_header Cache-Control "no-cache"; }
           location = /y.aci { add_header Cache-Control "max-age=3600"; }"#,
    );
    let s = store();
    let x = server.url("x.aci");
    let key = s.ok(&["fetch", &x]);
    assert_eq!(remotes(&s)[0]["max_age"], 0);
    // max-age 0: always a conditional request, answered 304.
    assert_eq!(s.ok(&["fetch", &x]), key);
    let log = log_of(&server, "/x.aci");
    assert_eq!(
        log.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![200, 304]
    );

    // --no-cache: a request within max-age, and an unconditional one.
    let y = server.url("y.aci");
    assert_eq!(s.ok(&["fetch", &y]), key);
    assert_eq!(s.ok(&["fetch", "--no-cache", &y]), key);
    let log = log_of(&server, "/y.aci");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 200);
    assert_eq!(log[1].if_none_match, None);
    assert_eq!(log[1].body_bytes, body.len() as u64);
    // One image, and a row per URL.
    assert_eq!(images(&s).len(), 1);
    assert_eq!(remotes(&s).len(), 2);
}

#[test]
fn a_new_body_moves_the_row_and_the_old_image_stays() {
    let old = aci(13, 10_000);
    let root = docroot(&[("x.aci", &old)]);
    let server = nginx(root.path(), "");
    let url = server.url("x.aci");
    let s = store();
    let old_key = s.ok(&["fetch", &url]);

    let new = AciBuilder::image(
        "example.com/fetched",
        &[("version", "2.0.0")],
        &noise(12_000, 14),
    );
    std::fs::write(root.path().join("x.aci"), &new).unwrap();
    let new_key = s.ok(&["fetch", &url]);
    assert_eq!(new_key.trim(), sha512_key(&new));
    assert_ne!(new_key, old_key);
    let log = log_of(&server, "/x.aci");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 200, "the old ETag was sent and matched");
    assert!(log[1].if_none_match.is_some());

    let rows = remotes(&s);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["image"], new_key.trim());
    // The old image is still there, only no longer what the URL names.
    assert_eq!(images(&s).len(), 2);
    s.ok(&["inspect", old_key.trim()]);
}

#[test]
fn the_row_holds_its_image_for_gc_and_rm_removes_it() {
    let body = aci(15, 10_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = nginx(root.path(), "");
    let s = store();
    let key = s.ok(&["fetch", &server.url("x.aci")]);
    let key = key.trim();
    let blob_refs = |s: &TestStore| {
        let v = common::inspect(s, key);
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == key)
            .unwrap()["refcount"]
            .as_u64()
            .unwrap()
    };
    // Held by the image and by the remote row.
    assert_eq!(blob_refs(&s), 2);
    let gc: Value = serde_json::from_str(&s.ok(&["--json", "gc", "--grace", "0s"])).unwrap();
    assert_eq!(gc["blobs"], 0);
    let cat = s.cmd(&["cat", key]).output().unwrap();
    assert!(cat.status.success());
    assert!(
        cat.stdout == body,
        "the image's tar is not the body fetched"
    );

    s.ok(&["rm", key]);
    assert!(remotes(&s).is_empty(), "rm left the image's row");
    let gc: Value = serde_json::from_str(&s.ok(&["--json", "gc", "--grace", "0s"])).unwrap();
    assert_eq!(gc["blobs"], 2, "the tar and the manifest are garbage now");
}

#[test]
fn a_broken_download_resumes_with_the_missing_bytes_only() {
    let body = Arc::new(aci(16, 300_000));
    let total = body.len();
    let b = Arc::clone(&body);
    let server = FaultServer::start(move |req| match range_start(req) {
        None => Reply::ok(b.to_vec())
            .header("ETag", "\"v1\"")
            .drop_after(100_000),
        Some(start) => Reply::new(206)
            .header("ETag", "\"v1\"")
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{total}", total - 1),
            )
            .body(b[start..].to_vec()),
    });
    let s = store();
    let key = s.ok(&["fetch", &server.url("/x.aci")]);
    assert_eq!(key.trim(), sha512_key(&body));
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("range"), Some("bytes=100000-"));
    assert_eq!(seen[1].header("if-range"), Some("\"v1\""));
    assert_eq!(server.bytes_sent(), total as u64, "bytes moved twice");
    assert_eq!(remotes(&s)[0]["etag"], "\"v1\"");
    assert!(partial_files(&s).is_empty());
}

/// N of a request's `Range: bytes=N-`.
fn range_start(req: &SeenRequest) -> Option<usize> {
    req.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

#[test]
fn a_killed_fetch_is_resumed_by_the_next_one() {
    let body = aci(17, 4_000_000);
    let root = docroot(&[("big.aci", &body)]);
    // Slow for a whole body, fast for the rest of one.
    let server = nginx(
        root.path(),
        "location / { limit_rate 1m; if ($http_range) { set $limit_rate 0; } }",
    );
    let url = server.url("big.aci");
    let s = store();
    let part = part_file(&s, &url, "part");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("imgstore"))
        .arg("--store")
        .arg(s.path())
        .args(["fetch", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 600_000 {
        assert!(Instant::now() < deadline, "the download did not start");
        assert!(child.try_wait().unwrap().is_none(), "fetch ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held < body.len() as u64);
    assert!(part_file(&s, &url, "meta").is_file(), "no validator kept");
    assert!(images(&s).is_empty());

    assert_eq!(s.ok(&["fetch", &url]).trim(), sha512_key(&body));
    let log = log_of(&server, "/big.aci");
    assert_eq!(log.len(), 2);
    assert!(!log[0].complete);
    assert_eq!(log[1].status, 206);
    assert_eq!(log[1].range.as_deref(), Some(&*format!("bytes={held}-")));
    assert!(
        log[1]
            .if_range
            .as_deref()
            .is_some_and(|v| v.starts_with('"'))
    );
    assert_eq!(log[1].body_bytes, body.len() as u64 - held);
    assert!(partial_files(&s).is_empty(), "{:?}", partial_files(&s));
}

#[test]
fn damaged_partial_state_is_treated_as_absent() {
    let body = aci(18, 50_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = nginx(root.path(), "");
    let url = server.url("x.aci");
    let s = store();
    let dir = s.path().join("tmp/partial");
    // An unreadable sidecar, then one that claims fewer bytes than held.
    for meta in [
        b"{\"url\": trunc".to_vec(),
        serde_json::to_vec(&serde_json::json!({"url": url, "validator": "\"x\"", "total": 10}))
            .unwrap(),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(part_file(&s, &url, "part"), noise(20_000, 1)).unwrap();
        std::fs::write(part_file(&s, &url, "meta"), meta).unwrap();
        assert_eq!(
            s.ok(&["fetch", "--no-cache", &url]).trim(),
            sha512_key(&body)
        );
        assert!(partial_files(&s).is_empty());
    }
    assert!(log_of(&server, "/x.aci").iter().all(|a| a.range.is_none()));
}

#[test]
fn retries_after_a_429_with_retry_after() {
    let body = aci(19, 10_000);
    let count = AtomicUsize::new(0);
    let b = body.clone();
    let server = FaultServer::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::new(429).header("Retry-After", "1")
        } else {
            Reply::ok(b.clone()).header("ETag", "\"e\"")
        }
    });
    let s = store();
    let start = Instant::now();
    assert_eq!(
        s.ok(&["fetch", &server.url("/x.aci")]).trim(),
        sha512_key(&body)
    );
    assert!(start.elapsed() >= Duration::from_millis(900), "no wait");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_server_that_ignores_range_is_downloaded_again_from_the_start() {
    let body = Arc::new(aci(20, 300_000));
    let b = Arc::clone(&body);
    let server = FaultServer::start(move |req| {
        let reply = Reply::ok(b.to_vec()).header("ETag", "\"v1\"");
        match range_start(req) {
            None => reply.drop_after(100_000),
            Some(_) => reply, // a 200 with the whole body
        }
    });
    let s = store();
    assert_eq!(
        s.ok(&["fetch", &server.url("/x.aci")]).trim(),
        sha512_key(&body)
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].header("range").is_some());
    assert_eq!(images(&s).len(), 1);
}

#[test]
fn a_206_with_the_wrong_content_range_is_never_spliced() {
    let body = Arc::new(aci(21, 300_000));
    let total = body.len();
    let plain = AtomicUsize::new(0);
    let b = Arc::clone(&body);
    let server = FaultServer::start(move |req| match range_start(req) {
        // The first whole-body answer breaks; the second is complete.
        None if plain.fetch_add(1, Ordering::SeqCst) == 0 => Reply::ok(b.to_vec())
            .header("ETag", "\"v1\"")
            .drop_after(100_000),
        None => Reply::ok(b.to_vec()).header("ETag", "\"v1\""),
        // A range from the start, not from where the client asked.
        Some(_) => Reply::new(206)
            .header("ETag", "\"v1\"")
            .header("Content-Range", format!("bytes 0-{}/{total}", total - 1))
            .body(b.to_vec()),
    });
    let s = store();
    assert_eq!(
        s.ok(&["fetch", &server.url("/x.aci")]).trim(),
        sha512_key(&body)
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("range"), Some("bytes=100000-"));
    assert_eq!(seen[2].header("range"), None, "the bad range was spliced");
}

#[test]
fn an_etag_that_changes_between_the_first_and_the_resumed_request_starts_over() {
    let first = Arc::new(aci(22, 300_000));
    let second = Arc::new(AciBuilder::image(
        "example.com/fetched",
        &[("version", "2.0.0")],
        &noise(250_000, 23),
    ));
    let (a, b) = (Arc::clone(&first), Arc::clone(&second));
    let count = AtomicUsize::new(0);
    let server = FaultServer::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            // Body A, broken.
            Reply::ok(a.to_vec())
                .header("ETag", "\"a\"")
                .drop_after(150_000)
        } else {
            // The resume asks for the rest of A (If-Range "a"), but the URL
            // now holds B: the whole of B, as If-Range says to do.
            Reply::ok(b.to_vec()).header("ETag", "\"b\"")
        }
    });
    let s = store();
    assert_eq!(
        s.ok(&["fetch", &server.url("/x.aci")]).trim(),
        sha512_key(&second)
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("if-range"), Some("\"a\""));
    assert_eq!(remotes(&s)[0]["etag"], "\"b\"");
    assert_eq!(images(&s).len(), 1, "bytes of A and B were mixed");
}

#[test]
fn credentials_in_the_url_go_to_its_host_only() {
    let body = aci(24, 10_000);
    let b = body.clone();
    let server = Arc::new(std::sync::OnceLock::<String>::new());
    let target = Arc::clone(&server);
    let fault = FaultServer::start(move |req| match req.path_only() {
        "/x.aci" => Reply::new(302).header("Location", target.get().unwrap().as_str()),
        "/elsewhere.aci" => Reply::ok(b.clone()).header("ETag", "\"e\""),
        _ => Reply::new(404),
    });
    // Another origin: the same server under another host name.
    server
        .set(fault.url_on("localhost", "/elsewhere.aci"))
        .unwrap();
    let s = store();
    let url = format!("http://user:s%40cret@127.0.0.1:{}/x.aci", fault.port());
    assert_eq!(s.ok(&["fetch", &url]).trim(), sha512_key(&body));
    let seen = fault.requests();
    assert_eq!(seen.len(), 2);
    // base64("user:s@cret")
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic dXNlcjpzQGNyZXQ=")
    );
    assert_eq!(seen[1].path_only(), "/elsewhere.aci");
    assert_eq!(seen[1].header("authorization"), None, "credentials leaked");
    // The row, and messages, name the URL without its credentials.
    let clean = fault.url("/x.aci");
    assert_eq!(remotes(&s)[0]["url"], clean.as_str());
    let missing = format!(
        "http://user:s%40cret@127.0.0.1:{}/missing.aci",
        fault.port()
    );
    let err = s.fails(&["fetch", &missing]);
    assert_eq!(
        err,
        format!("error: fetch {}: 404 Not Found", fault.url("/missing.aci"))
    );
}

#[test]
fn a_404_garbage_or_a_cut_archive_leaves_the_store_unchanged() {
    let good = aci(25, 50_000);
    let root = docroot(&[
        ("garbage.aci", &noise(100_000, 26)),
        ("cut.aci", &good[..good.len() / 2]),
        ("empty.aci", b""),
    ]);
    let server = nginx(root.path(), "");
    let s = store();
    let before = s.snapshot();

    let url = server.url("missing.aci");
    assert_eq!(
        s.fails(&["fetch", &url]),
        format!("error: fetch {url}: 404 Not Found")
    );
    assert_eq!(s.snapshot(), before);

    for (name, says) in [
        ("garbage.aci", "not a tar archive"),
        ("cut.aci", "truncated"),
        ("empty.aci", "empty"),
    ] {
        let url = server.url(name);
        let err = s.fails(&["fetch", &url]);
        assert!(err.starts_with(&format!("error: {url}: ")), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("tmp/partial"), "{err}");
        assert_eq!(s.snapshot(), before, "{name}");
    }
}

#[test]
fn https_is_trusted_through_ssl_cert_file_and_refused_plainly_otherwise() {
    let certs = testkit::tls::TestCerts::generate();
    let body = aci(27, 10_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = Nginx::builder(root.path())
        .tls(certs.cert_file(), certs.key_file())
        .start();
    let url = server.url("x.aci");
    assert!(url.starts_with("https://"));
    let s = store();
    let before = s.snapshot();
    let out = s
        .cmd(&["fetch", &url])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    common::assert_error(&out, &["fetch", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "TLS certificate of 127.0.0.1:{} not trusted",
            server.port()
        )),
        "{err}"
    );
    assert_eq!(s.snapshot(), before);

    let out = s
        .cmd(&["fetch", &url])
        .env("SSL_CERT_FILE", certs.ca_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha512_key(&body)
    );
}

#[test]
fn concurrent_fetches_of_one_url_end_with_one_image_and_one_row() {
    let body = aci(28, 1_000_000);
    let root = docroot(&[("x.aci", &body)]);
    // Slow enough that the fetches overlap.
    let server = nginx(root.path(), "limit_rate 4m;");
    let url = server.url("x.aci");
    let s = store();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(assert_cmd::cargo::cargo_bin("imgstore"))
                .arg("--store")
                .arg(s.path())
                .args(["fetch", &url])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let key = sha512_key(&body);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key);
    }
    assert_eq!(images(&s).len(), 1);
    assert_eq!(remotes(&s).len(), 1);
    let log = log_of(&server, "/x.aci");
    let bodies = log.iter().filter(|a| a.status == 200).count();
    assert_eq!(bodies, 1, "the body was downloaded more than once: {log:?}");
    assert!(log.iter().all(|a| matches!(a.status, 200 | 304)), "{log:?}");
    assert!(partial_files(&s).is_empty());
}

#[test]
fn json_latest_format_and_verify_layers_pass_through() {
    let body = aci(29, 10_000);
    // A gzip layer whose config names the wrong diff_id.
    let mut bad = Layout::new();
    let tar = builder::layer_tar(&[("a", b"layer")]);
    let gz = builder::gzip(&tar);
    let layer = bad.blob("sha256", &gz);
    let config = builder::config_json("amd64", &[builder::sha256(b"wrong")], &[]);
    let c = bad.blob("sha256", &config);
    let manifest = builder::manifest_json(
        desc(builder::CONFIG, &c, config.len()),
        vec![desc(builder::LAYER_GZ, &layer, gz.len())],
    );
    let m = bad.blob("sha256", &manifest);
    bad.index
        .push(named(desc(builder::MANIFEST, &m, manifest.len()), "app:1"));
    let root = docroot(&[("x.aci", &body), ("bad.oci.tar", &bad.tar())]);
    let server = nginx(root.path(), r#"add_header Cache-Control "max-age=3600";"#);
    let url = server.url("x.aci");
    let s = store();

    let err = s.fails(&["fetch", "--format", "docker", &url]);
    assert!(err.starts_with(&format!("error: {url}: ")), "{err}");
    let fetched = fetch_json(&s, &["--format", "aci", &url]);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0]["key"], sha512_key(&body).as_str());
    assert_eq!(fetched[0]["name"], "example.com/fetched");
    assert_eq!(fetched[0]["latest"], false);
    // A fresh row still raises the flag when asked.
    let again = fetch_json(&s, &["--latest", &url]);
    assert_eq!(again[0]["key"], fetched[0]["key"]);
    assert_eq!(again[0]["latest"], true);
    assert_eq!(images(&s)[0]["latest"], true);
    assert_eq!(
        log_of(&server, "/x.aci").len(),
        2,
        "--format docker asked too"
    );

    let bad_url = server.url("bad.oci.tar");
    let before = s.snapshot();
    let err = s.fails(&["fetch", "--verify-layers", &bad_url]);
    assert!(err.contains("the config's rootfs.diff_ids says"), "{err}");
    assert_eq!(s.snapshot(), before);
    assert_eq!(keys(&fetch_json(&s, &[&bad_url])), vec![m]);
}

#[test]
fn gc_leaves_the_lock_of_a_fetch_waiting_for_its_server() {
    let body = aci(30, 10_000);
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = Arc::clone(&arrivals);
    let b = body.clone();
    let server = FaultServer::start(move |_| {
        seen.lock().unwrap().push(Instant::now());
        Reply::ok(b.clone())
            .header("ETag", "\"e\"")
            .delay(Duration::from_millis(800))
    });
    let url = server.url("/x.aci");
    let s = store();
    let spawn = || {
        Command::new(assert_cmd::cargo::cargo_bin("imgstore"))
            .arg("--store")
            .arg(s.path())
            .args(["fetch", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the first fetch sent nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first fetch waits for its answer, holding the URL's lock but not
    // the store's: gc runs, and must leave that lock alone.
    s.ok(&["gc", "--grace", "0s"]);
    assert!(
        part_file(&s, &url, "lock").exists(),
        "gc removed a held lock"
    );
    let second = spawn();
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            sha512_key(&body)
        );
    }
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(700),
        "the second fetch did not wait for the first"
    );
    assert_eq!(images(&s).len(), 1);
}

#[test]
fn a_whole_body_left_by_a_killed_fetch_is_imported_after_a_304() {
    let body = aci(31, 200_000);
    let root = docroot(&[("x.aci", &body)]);
    let server = nginx(root.path(), "");
    let url = server.url("x.aci");
    // nginx's ETag for the file, as a first fetch elsewhere records it.
    let elsewhere = store();
    elsewhere.ok(&["fetch", &url]);
    let etag = remotes(&elsewhere)[0]["etag"].as_str().unwrap().to_string();

    // What a fetch killed after its download, before its commit, leaves.
    let s = store();
    std::fs::create_dir_all(s.path().join("tmp/partial")).unwrap();
    std::fs::write(part_file(&s, &url, "part"), &body).unwrap();
    std::fs::write(
        part_file(&s, &url, "meta"),
        serde_json::to_vec(
            &serde_json::json!({"url": url, "validator": etag, "total": body.len()}),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(s.ok(&["fetch", &url]).trim(), sha512_key(&body));
    let log = log_of(&server, "/x.aci");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 304, "the body was sent again");
    assert_eq!(log[1].if_none_match.as_deref(), Some(etag.as_str()));
    assert_eq!(remotes(&s)[0]["etag"], etag.as_str());
    assert!(partial_files(&s).is_empty());

    // Held bytes of a body the server no longer has are not imported: the
    // new body is.
    std::fs::create_dir_all(s.path().join("tmp/partial")).unwrap();
    let stale = aci(32, 200_000);
    std::fs::write(part_file(&s, &url, "part"), &stale).unwrap();
    std::fs::write(
        part_file(&s, &url, "meta"),
        serde_json::to_vec(
            &serde_json::json!({"url": url, "validator": "\"gone\"", "total": stale.len()}),
        )
        .unwrap(),
    )
    .unwrap();
    s.ok(&["rm", &sha512_key(&body)]);
    assert_eq!(s.ok(&["fetch", &url]).trim(), sha512_key(&body));
    let log = log_of(&server, "/x.aci");
    assert_eq!(log[2].status, 200);
    assert_eq!(log[2].if_none_match.as_deref(), Some("\"gone\""));
    assert_eq!(images(&s).len(), 1);
}
