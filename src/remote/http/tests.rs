//! The transport against real sockets: `testkit::fault::FaultServer` on
//! 127.0.0.1 makes each fault on demand and records what went over the
//! wire, which is what these tests assert on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::fault::{FaultServer, Reply, SeenRequest};
use testkit::tls::TestCerts;

use super::*;

/// A client that waits little: backoff of a millisecond, Retry-After capped
/// at three seconds, no system roots.
fn client() -> Client {
    Client::new(test_options())
}

fn test_options() -> ClientOptions {
    ClientOptions {
        backoff_base: Duration::from_millis(1),
        retry_after_cap: Duration::from_secs(3),
        max_retries: 3,
        trust: TrustRoots {
            system: false,
            files: vec![],
            dirs: vec![],
        },
        ..ClientOptions::default()
    }
}

/// Bytes that differ at every offset, so a splice at the wrong place shows.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

type Script = Box<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

/// Answers the n-th request (from 0) with `replies[n]`, the last one after.
fn scripted(replies: Vec<Script>) -> FaultServer {
    let n = AtomicUsize::new(0);
    FaultServer::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
        replies[i](req)
    })
}

/// Serves `body` with `etag`, honouring `Range` + `If-Range` as nginx does.
fn range_reply(req: &SeenRequest, body: &[u8], etag: &str) -> Reply {
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let if_range_ok = req.header("if-range").is_none_or(|v| v == etag);
    match range {
        Some(start) if if_range_ok && start < body.len() => Reply::new(206)
            .header("ETag", etag)
            .header(
                "Content-Range",
                format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
            )
            .body(body[start..].to_vec()),
        _ => Reply::ok(body.to_vec()).header("ETag", etag),
    }
}

fn download(client: &Client, url: &str, opts: &DownloadOptions) -> (Vec<u8>, Download) {
    let mut sink = Vec::new();
    let d = client
        .download(url, opts, &mut sink, None)
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    (sink, d)
}

#[test]
fn a_200_body_and_what_it_says() {
    let body = content(3 * CHUNK_FOR_TESTS + 17);
    let served = body.clone();
    let server = FaultServer::start(move |_| {
        Reply::ok(served.clone())
            .header("ETag", "\"v1\"")
            .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
            .header("Cache-Control", "public, max-age=300")
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", "sha256:abc")
    });
    let url = server.url("/x.aci");
    let (got, d) = download(&client(), &url, &DownloadOptions::new(Op::Fetch));
    assert_eq!(got, body);
    assert_eq!(d.status, 200);
    assert!(!d.not_modified);
    assert_eq!(d.url, url);
    assert_eq!(d.etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        d.last_modified.as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(d.max_age, Some(300));
    assert_eq!(d.size, Some(body.len() as u64));
    assert_eq!(d.docker_content_digest.as_deref(), Some("sha256:abc"));
    assert_eq!(d.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(d.bytes_transferred, body.len() as u64);
    assert_eq!(server.bytes_sent(), body.len() as u64);

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let ua = seen[0].header("user-agent").unwrap();
    assert_eq!(ua, concat!("imgstore/", env!("CARGO_PKG_VERSION")));
}

const CHUNK_FOR_TESTS: usize = download::CHUNK;

#[test]
fn a_404_names_the_op_url_and_status() {
    let server = FaultServer::start(|_| Reply::new(404).body("no such thing"));
    let url = server.url("/x.aci");
    let mut sink = Vec::new();
    let err = client()
        .download(&url, &DownloadOptions::new(Op::Fetch), &mut sink, None)
        .unwrap_err();
    assert_eq!(err.to_string(), format!("fetch {url}: 404 Not Found"));
    assert_eq!(err.status(), Some(404));
    assert!(sink.is_empty());
    // Not retried: a 404 is an answer.
    assert_eq!(server.requests().len(), 1);

    // send() hands other statuses back to be read.
    let r = client().send(&Request::get(Op::Pull, url.clone())).unwrap();
    assert_eq!(r.status(), 404);
    let e = r.status_error();
    assert_eq!(e.to_string(), format!("pull {url}: 404 Not Found"));
}

#[test]
fn a_429_waits_out_retry_after() {
    let server = scripted(vec![
        Box::new(|_| Reply::new(429).header("Retry-After", "1")),
        Box::new(|_| Reply::ok("fine")),
    ]);
    let started = Instant::now();
    let (got, _) = download(
        &client(),
        &server.url("/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    let waited = started.elapsed();
    assert_eq!(got, b"fine");
    assert_eq!(server.requests().len(), 2);
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

#[test]
fn a_503_with_an_http_date_is_retried() {
    let server = scripted(vec![
        Box::new(|_| {
            let when = std::time::SystemTime::now() + Duration::from_secs(1);
            Reply::new(503).header("Retry-After", httpdate::fmt_http_date(when))
        }),
        Box::new(|_| Reply::ok("back")),
    ]);
    let (got, _) = download(
        &client(),
        &server.url("/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, b"back");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn retries_are_bounded_and_say_why() {
    let server = FaultServer::start(|_| {
        Reply::new(429)
            .header("Retry-After", "0")
            .header("ratelimit-limit", "100;w=21600")
            .header("ratelimit-remaining", "0;w=21600")
    });
    let url = server.url("/v2/library/busybox/manifests/latest");
    let err = client()
        .send(&Request::get(Op::Pull, url.clone()))
        .unwrap_err();
    // max_retries is 3: four attempts in all.
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        err.to_string(),
        format!(
            "pull {url}: gave up after 4 attempts: 429 Too Many Requests (the server is \
             rate-limiting us; ratelimit-remaining: 0;w=21600; ratelimit-limit: 100;w=21600)"
        )
    );
    assert_eq!(err.status(), Some(429));

    let server = FaultServer::start(|_| Reply::new(503));
    let err = client()
        .send(&Request::get(Op::Fetch, server.url("/")))
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("gave up after 4 attempts: 503 Service Unavailable"),
        "{err}"
    );
}

#[test]
fn a_dropped_body_resumes_with_range_and_if_range() {
    let body = content(100_000);
    let cut = 30_000;
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |req| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::ok(served.clone())
                .header("ETag", "\"abc\"")
                .drop_after(cut)
        } else {
            range_reply(req, &served, "\"abc\"")
        }
    });
    let (got, d) = download(
        &client(),
        &server.url("/big.aci"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, body);
    assert_eq!(d.status, 206);
    assert_eq!(d.size, Some(body.len() as u64));
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("range"), None);
    assert_eq!(seen[1].header("range"), Some("bytes=30000-"));
    assert_eq!(seen[1].header("if-range"), Some("\"abc\""));
    // Only the missing bytes moved the second time.
    assert_eq!(server.bytes_sent(), body.len() as u64);
    assert_eq!(d.bytes_transferred, body.len() as u64);
}

#[test]
fn a_server_that_ignores_range_starts_over() {
    let body = content(50_000);
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |_| {
        let r = Reply::ok(served.clone()).header("ETag", "\"e\"");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            r.drop_after(20_000)
        } else {
            r
        }
    });
    let (got, d) = download(
        &client(),
        &server.url("/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, body);
    assert_eq!(d.status, 200);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("range"), Some("bytes=20000-"));
    assert_eq!(d.bytes_transferred, 20_000 + body.len() as u64);
}

#[test]
fn a_206_at_the_wrong_offset_is_never_spliced() {
    let body = content(40_000);
    let served = body.clone();
    let server = FaultServer::start(move |req| {
        if req.header("range").is_none() {
            // Every full answer breaks.
            return Reply::ok(served.clone())
                .header("ETag", "\"e\"")
                .drop_after(10_000);
        }
        // Asked for bytes=10000-; answers from 5000, claiming the right
        // total.
        Reply::new(206)
            .header("ETag", "\"e\"")
            .header("Content-Range", "bytes 5000-39999/40000")
            .body(served[5000..].to_vec())
    });
    let mut sink = Vec::new();
    let err = client()
        .download(
            &server.url("/x"),
            &DownloadOptions::new(Op::Fetch),
            &mut sink,
            None,
        )
        .unwrap_err();
    // Each lie made it start over, each start over broke again: four
    // attempts in all (max_retries 3), and never did the lie's bytes land
    // after the first 10000.
    assert!(
        matches!(
            err.kind(),
            RemoteErrorKind::BadContentRange { asked: 10_000, .. }
        ),
        "{err}"
    );
    assert_eq!(sink, body[..10_000]);
    let asked_a_range: Vec<bool> = server
        .requests()
        .iter()
        .map(|r| r.header("range").is_some())
        .collect();
    assert_eq!(asked_a_range, [false, true, false, true]);
}

#[test]
fn a_206_at_the_wrong_offset_then_a_full_body() {
    let body = content(40_000);
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |_| match n.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::ok(served.clone())
            .header("ETag", "\"e\"")
            .drop_after(10_000),
        1 => Reply::new(206)
            .header("ETag", "\"e\"")
            .header("Content-Range", "bytes 5000-39999/40000")
            .body(served[5000..].to_vec()),
        _ => Reply::ok(served.clone()).header("ETag", "\"e\""),
    });
    let (got, d) = download(
        &client(),
        &server.url("/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, body);
    assert_eq!(d.status, 200);
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("range"), Some("bytes=10000-"));
    assert_eq!(seen[2].header("range"), None);
}

/// A sink that records each `begin`, as a fetch's partial file would.
#[derive(Default)]
struct Recording {
    bytes: Vec<u8>,
    /// (offset, validator, total) per response.
    begins: Vec<(u64, Option<String>, Option<u64>)>,
}

impl DownloadSink for Recording {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn restart(&mut self) -> std::io::Result<()> {
        self.bytes.clear();
        Ok(())
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn begin(&mut self, validator: Option<&str>, total: Option<u64>) -> std::io::Result<()> {
        self.begins
            .push((self.len(), validator.map(str::to_string), total));
        Ok(())
    }
}

#[test]
fn the_sink_learns_each_bodys_validator() {
    let body = content(10_000);
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |req| {
        let r = range_reply(req, &served, "\"abc\"");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            r.drop_after(4_000)
        } else {
            r
        }
    });
    let mut sink = Recording::default();
    client()
        .download(
            &server.url("/x"),
            &DownloadOptions::new(Op::Fetch),
            &mut sink,
            None,
        )
        .unwrap();
    assert_eq!(sink.bytes, body);
    let v = Some("\"abc\"".to_string());
    assert_eq!(
        sink.begins,
        [(0, v.clone(), Some(10_000)), (4_000, v, Some(10_000))]
    );
}

#[test]
fn a_changed_etag_on_resume_starts_over() {
    let old = content(60_000);
    // The new version is longer, too.
    let new: Vec<u8> = old.iter().chain(&old[..10_000]).map(|b| b ^ 0xff).collect();
    let (o, nw) = (old.clone(), new.clone());
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |req| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::ok(o.clone())
                .header("ETag", "\"v1\"")
                .drop_after(25_000)
        } else {
            // The file changed: If-Range "v1" no longer matches, so the
            // whole new body comes with 200.
            range_reply(req, &nw, "\"v2\"")
        }
    });
    let mut sink = Recording::default();
    let d = client()
        .download(
            &server.url("/x"),
            &DownloadOptions::new(Op::Fetch),
            &mut sink,
            None,
        )
        .unwrap();
    assert_eq!(sink.bytes, new);
    assert_eq!(
        sink.begins,
        [
            (0, Some("\"v1\"".into()), Some(60_000)),
            (0, Some("\"v2\"".into()), Some(70_000))
        ]
    );
    assert_eq!(d.size, Some(70_000));
    assert_eq!(d.status, 200);
    assert_eq!(d.etag.as_deref(), Some("\"v2\""));
    let seen = server.requests();
    assert_eq!(seen[1].header("if-range"), Some("\"v1\""));
}

#[test]
fn resume_from_an_earlier_partial() {
    let body = content(80_000);
    let served = body.clone();
    let server = FaultServer::start(move |req| range_reply(req, &served, "\"abc\""));
    let mut sink = body[..50_000].to_vec();
    let mut opts = DownloadOptions::new(Op::Fetch);
    opts.resume_validator = Some("\"abc\"".into());
    let mut progress = Counted::default();
    let d = client()
        .download(&server.url("/x"), &opts, &mut sink, Some(&mut progress))
        .unwrap();
    assert_eq!(sink, body);
    assert_eq!(d.bytes_transferred, 30_000);
    assert_eq!(server.bytes_sent(), 30_000);
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("range"), Some("bytes=50000-"));
    assert_eq!(seen[0].header("if-range"), Some("\"abc\""));
    assert_eq!(progress.advanced, 80_000);
    assert_eq!(progress.total, Some(80_000));
}

#[test]
fn a_weak_etag_cannot_resume() {
    let body = content(30_000);
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |req| {
        let r = range_reply(req, &served, "W/\"weak\"");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            r.drop_after(10_000)
        } else {
            r
        }
    });
    let (got, _) = download(
        &client(),
        &server.url("/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, body);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("range"), None);

    // Nor can a partial whose validator is weak.
    let mut sink = body[..100].to_vec();
    let mut opts = DownloadOptions::new(Op::Fetch);
    opts.resume_validator = Some("W/\"weak\"".into());
    server.clear();
    client()
        .download(&server.url("/x"), &opts, &mut sink, None)
        .unwrap();
    assert_eq!(sink, body);
    assert_eq!(server.requests()[0].header("range"), None);
}

#[test]
fn immutable_content_resumes_without_a_validator() {
    let body = content(30_000);
    let served = body.clone();
    let n = AtomicUsize::new(0);
    let server = FaultServer::start(move |req| {
        // A registry blob without ETag.
        let mut r = range_reply(req, &served, "\"x\"");
        r.remove_header("etag");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            r.drop_after(12_345)
        } else {
            r
        }
    });
    let mut opts = DownloadOptions::new(Op::Pull);
    opts.immutable = true;
    opts.expected_size = Some(body.len() as u64);
    let (got, d) = download(&client(), &server.url("/v2/r/blobs/sha256:x"), &opts);
    assert_eq!(got, body);
    assert_eq!(d.bytes_transferred, body.len() as u64);
    let seen = server.requests();
    assert_eq!(seen[1].header("range"), Some("bytes=12345-"));
    assert_eq!(seen[1].header("if-range"), None);
}

#[test]
fn a_body_that_always_breaks_gives_up() {
    let server =
        FaultServer::start(|req| range_reply(req, &content(10_000), "\"e\"").drop_after(10));
    let mut sink = Vec::new();
    let err = client()
        .download(
            &server.url("/x"),
            &DownloadOptions::new(Op::Fetch),
            &mut sink,
            None,
        )
        .unwrap_err();
    assert_eq!(server.requests().len(), 4);
    assert!(
        matches!(
            err.kind(),
            RemoteErrorKind::BodyTooShort { .. } | RemoteErrorKind::Connection { .. }
        ),
        "{err}"
    );
    // What arrived stays in the sink, for a later resume.
    assert_eq!(sink.len(), 40);
}

#[test]
fn sizes_are_checked_against_what_the_caller_expects() {
    let server = FaultServer::start(|_| Reply::ok(vec![1u8; 100]));
    let mut opts = DownloadOptions::new(Op::Pull);
    opts.expected_size = Some(99);
    let err = client()
        .download(&server.url("/b"), &opts, &mut Vec::new(), None)
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            RemoteErrorKind::SizeMismatch {
                announced: 100,
                expected: 99
            }
        ),
        "{err}"
    );

    // Without a Content-Length, no more than expected is taken.
    let server = FaultServer::start(|_| Reply::ok(vec![1u8; 1000]).close_delimited());
    opts.expected_size = Some(500);
    let mut sink = Vec::new();
    let err = client()
        .download(&server.url("/b"), &opts, &mut sink, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull {}: the body is longer than the 500 bytes expected",
            server.url("/b")
        )
    );
    assert!(sink.len() <= 500);
}

#[test]
fn if_none_match_gets_a_304_without_a_body() {
    let server = FaultServer::start(|req| {
        if req.header("if-none-match") == Some("\"v1\"") {
            Reply::new(304)
                .header("ETag", "\"v1\"")
                .header("Cache-Control", "max-age=60")
        } else {
            Reply::ok("new body").header("ETag", "\"v2\"")
        }
    });
    let mut opts = DownloadOptions::new(Op::Fetch);
    opts.if_none_match = Some("\"v1\"".into());
    let (got, d) = download(&client(), &server.url("/x"), &opts);
    assert!(d.not_modified);
    assert_eq!(d.status, 304);
    assert!(got.is_empty());
    assert_eq!(d.bytes_transferred, 0);
    assert_eq!(d.max_age, Some(60));
    assert_eq!(d.etag.as_deref(), Some("\"v1\""));
    assert_eq!(server.bytes_sent(), 0);

    opts.if_none_match = Some("\"v0\"".into());
    let (got, d) = download(&client(), &server.url("/x"), &opts);
    assert!(!d.not_modified);
    assert_eq!(got, b"new body");
}

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let storage = Arc::new(FaultServer::start(|_| Reply::ok("blob bytes")));
    // `localhost` and `127.0.0.1` are different origins on the same port.
    let target = storage.url_on("localhost", "/storage/blob?sig=1");
    let registry = FaultServer::start(move |req| match req.path_only() {
        "/v2/r/blobs/other-host" => Reply::new(307).header("Location", target.as_str()),
        "/v2/r/blobs/same-host" => Reply::new(302).header("Location", "/v2/r/blobs/final"),
        _ => Reply::ok("same host bytes"),
    });
    let c = client();
    let mut opts = DownloadOptions::new(Op::Pull);
    opts.credentials = Some("Bearer secret".into());
    opts.headers.set("Authorization", "Bearer also-secret");

    let (got, d) = download(&c, &registry.url("/v2/r/blobs/other-host"), &opts);
    assert_eq!(got, b"blob bytes");
    assert_eq!(d.url, storage.url_on("localhost", "/storage/blob?sig=1"));
    assert_eq!(
        registry.requests()[0].header("authorization"),
        Some("Bearer secret")
    );
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].header("authorization"), None);

    let (got, d) = download(&c, &registry.url("/v2/r/blobs/same-host"), &opts);
    assert_eq!(got, b"same host bytes");
    assert_eq!(d.url, registry.url("/v2/r/blobs/final"));
    let seen = registry.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].path, "/v2/r/blobs/final");
    assert_eq!(seen[2].header("authorization"), Some("Bearer secret"));
}

#[test]
fn redirect_loops_are_bounded() {
    let server = FaultServer::start(|req| {
        let next = if req.path == "/a" { "/b" } else { "/a" };
        Reply::new(301).header("Location", next)
    });
    let opts = ClientOptions {
        max_redirects: 4,
        ..test_options()
    };
    let err = Client::new(opts)
        .send(&Request::get(Op::Fetch, server.url("/a")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "fetch {}: too many redirects (more than 4)",
            server.url("/a")
        )
    );
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn redirects_keep_or_drop_the_method_and_body() {
    let server = FaultServer::start(|req| match req.path.as_str() {
        "/post" => Reply::new(303).header("Location", "/seen"),
        "/put" => Reply::new(307).header("Location", "/seen"),
        _ => Reply::new(201),
    });
    let c = client();
    let r = c
        .send(
            &Request::new(Op::Push, Method::Post, server.url("/post"))
                .body(Body::Bytes(b"form".to_vec())),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, b"0123456789").unwrap();
    let r = c
        .send(
            &Request::new(Op::Push, Method::Put, server.url("/put")).body(Body::File {
                path: file.clone(),
                offset: 2,
                len: 5,
            }),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    let seen = server.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        (seen[1].method.as_str(), &seen[1].body[..]),
        ("GET", &b""[..])
    );
    assert_eq!(
        (seen[2].method.as_str(), &seen[2].body[..]),
        ("PUT", &b"23456"[..])
    );
    // The file body was sent again, whole, after the 307.
    assert_eq!(
        (seen[3].method.as_str(), &seen[3].body[..]),
        ("PUT", &b"23456"[..])
    );
    assert_eq!(seen[3].header("content-length"), Some("5"));

    // An empty PUT still says its length (registries require it).
    c.send(&Request::new(Op::Push, Method::Put, server.url("/empty")))
        .unwrap();
    let last = server.requests().pop().unwrap();
    assert_eq!(last.header("content-length"), Some("0"));

    // A body file shorter than said is an error naming it, before sending.
    let err = c
        .send(
            &Request::new(Op::Push, Method::Put, server.url("/x")).body(Body::File {
                path: file.clone(),
                offset: 8,
                len: 5,
            }),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with(&format!("cannot read {}", file.display())),
        "{err}"
    );
}

#[test]
fn bodies_are_never_decoded() {
    // A gzip stream, served with Content-Encoding: gzip: the bytes are
    // what is stored, whatever the encoding says.
    let gzipped: Vec<u8> = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"hello hello hello").unwrap();
        e.finish().unwrap()
    };
    let served = gzipped.clone();
    let server =
        FaultServer::start(move |_| Reply::ok(served.clone()).header("Content-Encoding", "gzip"));
    let (got, _) = download(
        &client(),
        &server.url("/x.tar.gz"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, gzipped);
    let seen = server.requests();
    let ae = seen[0].header("accept-encoding");
    assert!(ae.is_none() || ae == Some("identity"), "{ae:?}");
}

#[test]
fn a_refused_connection_is_not_retried() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x");
    let started = Instant::now();
    let opts = ClientOptions {
        backoff_base: Duration::from_secs(1),
        ..test_options()
    };
    let err = Client::new(opts)
        .send(&Request::get(Op::Fetch, url.clone()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("fetch {url}: cannot connect to 127.0.0.1:{port}")
    );
    assert!(std::error::Error::source(&err).is_some());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_hang_up_before_the_answer_is_retried_for_get_only() {
    let get = scripted(vec![
        Box::new(|_| Reply::hang_up()),
        Box::new(|_| Reply::ok("second time")),
    ]);
    let r = client()
        .send(&Request::get(Op::Fetch, get.url("/")))
        .unwrap();
    assert_eq!(r.read_body(100).unwrap(), b"second time");
    assert_eq!(get.requests().len(), 2);

    let post = scripted(vec![
        Box::new(|_| Reply::hang_up()),
        Box::new(|_| Reply::new(202)),
    ]);
    let err = client()
        .send(&Request::new(
            Op::Push,
            Method::Post,
            post.url("/v2/r/blobs/uploads/"),
        ))
        .unwrap_err();
    assert!(
        matches!(err.kind(), RemoteErrorKind::Connection { .. }),
        "{err}"
    );
    assert_eq!(post.requests().len(), 1);
}

#[test]
fn read_body_is_bounded() {
    let server = FaultServer::start(|_| Reply::ok(vec![b'{'; 2000]));
    let r = client()
        .send(&Request::get(Op::Pull, server.url("/m")))
        .unwrap();
    let err = r.read_body(1000).unwrap_err();
    assert!(
        matches!(err.kind(), RemoteErrorKind::BodyTooLong { limit: 1000 }),
        "{err}"
    );
}

#[test]
fn progress_reports_total_and_chunks() {
    let body = content(CHUNK_FOR_TESTS * 2 + 5);
    let served = body.clone();
    let server = FaultServer::start(move |_| Reply::ok(served.clone()));
    let mut progress = Counted::default();
    let mut sink = Vec::new();
    client()
        .download(
            &server.url("/x"),
            &DownloadOptions::new(Op::Fetch),
            &mut sink,
            Some(&mut progress),
        )
        .unwrap();
    assert_eq!(progress.total, Some(body.len() as u64));
    assert_eq!(progress.advanced, body.len() as u64);
    assert!(progress.largest <= CHUNK_FOR_TESTS as u64);
}

#[derive(Default)]
struct Counted {
    total: Option<u64>,
    advanced: u64,
    largest: u64,
}

impl crate::ProgressTask for Counted {
    fn advance(&mut self, bytes: u64) {
        self.advanced += bytes;
        self.largest = self.largest.max(bytes);
    }
    fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }
}

#[test]
fn https_trusts_ssl_cert_file_and_names_an_untrusted_certificate() {
    let certs = TestCerts::generate();
    let server = FaultServer::start_tls(&certs, |_| Reply::ok("over tls"));
    let url = server.url("/x");

    // Trusted through SSL_CERT_FILE (its value given, as the environment
    // would give it).
    let trusting = Client::new(ClientOptions {
        trust: TrustRoots::from_vars(Some(certs.ca_file().as_os_str().to_owned()), None),
        ..test_options()
    });
    let (got, _) = download(&trusting, &url, &DownloadOptions::new(Op::Fetch));
    assert_eq!(got, b"over tls");
    // And by name, through SSL_CERT_DIR.
    let trusting_dir = Client::new(ClientOptions {
        trust: TrustRoots::from_vars(None, Some(certs.dir().as_os_str().to_owned())),
        ..test_options()
    });
    let (got, _) = download(
        &trusting_dir,
        &server.url_on("localhost", "/x"),
        &DownloadOptions::new(Op::Fetch),
    );
    assert_eq!(got, b"over tls");

    // Not trusted by a client that trusts another CA (or only the system).
    let other = TestCerts::generate();
    let doubting = Client::new(ClientOptions {
        trust: TrustRoots::from_vars(Some(other.ca_file().as_os_str().to_owned()), None),
        ..test_options()
    });
    let err = doubting
        .download(
            &url,
            &DownloadOptions::new(Op::Fetch),
            &mut Vec::new(),
            None,
        )
        .unwrap_err();
    let host = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        err.to_string(),
        format!("fetch {url}: TLS certificate of {host} not trusted")
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("certificate"), "{cause}");
    assert_eq!(
        server.requests().len(),
        2,
        "no request reaches the server over an untrusted connection"
    );
}

#[test]
fn a_missing_ssl_cert_file_fails_https_only() {
    let server = FaultServer::start(|_| Reply::ok("plain"));
    let c = Client::new(ClientOptions {
        trust: TrustRoots::from_vars(Some("/nonexistent/ca.pem".into()), None),
        ..test_options()
    });
    // Plain HTTP never loads the roots.
    let (got, _) = download(&c, &server.url("/x"), &DownloadOptions::new(Op::Fetch));
    assert_eq!(got, b"plain");
    let err = c
        .send(&Request::get(Op::Fetch, "https://127.0.0.1:1/x"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fetch https://127.0.0.1:1/x: cannot load CA certificates from /nonexistent/ca.pem"
    );
}

#[test]
fn invalid_urls_are_refused_before_any_request() {
    for url in ["ftp://h/x", "not a url", "http:///x"] {
        let err = client().send(&Request::get(Op::Fetch, url)).unwrap_err();
        assert!(
            matches!(err.kind(), RemoteErrorKind::InvalidUrl { .. }),
            "{url}: {err}"
        );
    }
}
