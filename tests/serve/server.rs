//! `imgstore serve` as a child process on a free port of 127.0.0.1, with a
//! store of the test's own; and a small HTTP client for the checks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::{ServerProcess, StartError};

use crate::common::{TestStore, run};

pub const IMGSTORE: &str = env!("CARGO_BIN_EXE_imgstore");

/// A running `imgstore serve`; stopped when dropped.
pub struct Served {
    // Dropped first: the server stops before its log directory goes.
    process: ServerProcess,
    _dir: tempfile::TempDir,
    port: u16,
    tls: bool,
}

impl Served {
    /// Serves `store` over plain HTTP with the extra arguments given.
    pub fn start(store: &TestStore, args: &[&str]) -> Served {
        Served::start_with(store.path(), args, false)
    }

    /// Serves `store` over HTTPS with the certificate and key given.
    pub fn start_tls(store: &TestStore, cert: &Path, key: &Path) -> Served {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        Served::start_with(
            store.path(),
            &["--tls-cert", &cert, "--tls-key", &key],
            true,
        )
    }

    fn start_with(store: &Path, args: &[&str], tls: bool) -> Served {
        testkit::on_free_port(|port| {
            let dir = tempfile::tempdir().expect("a temp dir for the server's log");
            let log = dir.path().join("serve.log");
            let command = serve_command(store, port, args);
            let process = ServerProcess::start("imgstore serve", command, &log, || {
                if tls {
                    testkit::servers::tcp_accepts(port)
                } else {
                    matches!(testkit::servers::http_status(port, "/v2/"), Some(200 | 401))
                }
            })?;
            Ok::<_, StartError>(Served {
                process,
                _dir: dir,
                port,
                tls,
            })
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the host part of references to its images.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http(s)://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// Opens an upload session in `repository`; returns its `Location`.
    pub fn start_upload(&self, agent: &ureq::Agent, repository: &str) -> String {
        let started = Answer::of(
            agent
                .post(self.url(&format!("/v2/{repository}/blobs/uploads/")))
                .send_empty(),
        );
        assert_eq!(
            started.status,
            202,
            "{}",
            String::from_utf8_lossy(&started.body)
        );
        started
            .header("location")
            .expect("a Location for the session")
            .to_string()
    }

    /// Peak resident memory of the server, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

/// `imgstore --store STORE serve --listen 127.0.0.1:PORT ARGS…`.
pub fn serve_command(store: &Path, port: u16, args: &[&str]) -> Command {
    let mut command = Command::new(IMGSTORE);
    command
        .arg("--store")
        .arg(store)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        // The server logs each request at info level unless told otherwise.
        .env_remove("IMGSTORE_FAILPOINT")
        .env_remove("IMGSTORE_LOG");
    command
}

/// An HTTP client that hands back 4xx and 5xx answers and follows no
/// redirects, so every answer is seen as the server gave it.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// The same, trusting the CA in `ca_pem`.
pub fn agent_trusting(ca_pem: &Path) -> ureq::Agent {
    let pem = std::fs::read(ca_pem).unwrap();
    let ca = ureq::tls::Certificate::from_pem(&pem).unwrap().to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into()
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn of(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.expect("an HTTP answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("the answer's body");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first error code of a spec error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }

    /// Asserts the status and the error code of a refusal.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// Sends raw bytes as a request and closes the connection without reading
/// the whole answer: a client that goes away.
pub fn send_and_drop(port: u16, request: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream.write_all(request).expect("send the request");
    stream.flush().unwrap();
    drop(stream);
}

/// Opens a connection, sends the request head and asks for a blob, reads
/// a few bytes of the answer and hangs up: a client that drops mid-blob.
pub fn read_some_and_drop(port: u16, path: &str, bytes: usize) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = vec![0u8; bytes];
    stream
        .read_exact(&mut buf)
        .expect("the start of the answer");
    drop(stream);
}

/// Waits until `cond` holds, for up to `timeout`.
#[track_caller]
pub fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files in a store's `tmp/uploads/`.
pub fn upload_files(store: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(store.join("tmp/uploads")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// `skopeo --insecure-policy ARGS…`.
pub fn skopeo(args: &[&str]) -> String {
    let program = testkit::require_program("/usr/bin/skopeo", "skopeo");
    run(Command::new(program).arg("--insecure-policy").args(args))
}
