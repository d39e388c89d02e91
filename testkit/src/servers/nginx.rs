//! nginx (Debian's `nginx-light`) serving a directory on 127.0.0.1, over
//! HTTP or HTTPS, with an access log tests can read.
//!
//! Each server has a private prefix holding its config, pid file, logs and
//! every `*_temp_path`, and runs as one process in the foreground (`daemon
//! off; master_process off;`), so it never switches user and works as root
//! or not. What it promises: `access_log()` holds every request whose answer
//! the client has read in full, in order. nginx writes a request's log line
//! (unbuffered) in the same event-loop step that sends its last byte, so
//! `access_log()` first makes a request of its own to a second, unlogged
//! listener on a unix socket: once that is answered, the loop has finished
//! every step before it. (One exception: a request whose body nginx did
//! not read, such as a PUT to a static file, is logged when its lingering
//! connection closes.)

use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{self, ServerProcess, StartError};
use super::{private_dir, quoted};

/// One line of the access log: a request and what was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    pub method: String,
    /// The request target as sent (`$request_uri`: path and query).
    pub uri: String,
    pub status: u16,
    /// Bytes of body sent (`$body_bytes_sent`; less than the file for a
    /// range or a dropped connection).
    pub body_bytes: u64,
    /// The request's `Range` header.
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub authorization: Option<String>,
    pub accept_encoding: Option<String>,
    /// Whether the whole answer was sent (`$request_completion`); false if
    /// the client went away first.
    pub complete: bool,
}

/// An nginx serving a directory; stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    // Dropped first: the server stops before its prefix is removed.
    process: ServerProcess,
    prefix: tempfile::TempDir,
    port: u16,
    tls: bool,
}

/// Options for an `Nginx` to start: see `Nginx::builder`.
#[derive(Debug, Clone)]
#[must_use]
pub struct NginxBuilder {
    docroot: PathBuf,
    config: String,
    tls: Option<(PathBuf, PathBuf)>,
    port: Option<u16>,
}

impl Nginx {
    /// Serves `docroot` over plain HTTP on a free port.
    pub fn start(docroot: &Path) -> Nginx {
        Nginx::builder(docroot).start()
    }

    /// A server for `docroot` with more options before `start()`.
    pub fn builder(docroot: &Path) -> NginxBuilder {
        NginxBuilder {
            docroot: docroot.to_owned(),
            config: String::new(),
            tls: None,
            port: None,
        }
    }

    /// The TCP port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/path` (`https://` with TLS); a missing
    /// leading `/` is added.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{scheme}://127.0.0.1:{}{slash}{path}", self.port)
    }

    /// Every request served so far, oldest first (see the module's note on
    /// why nothing answered is missing).
    pub fn access_log(&self) -> Vec<Access> {
        let sync = self.prefix.path().join("sync.sock");
        match sync_status(&sync) {
            Ok(204) => {}
            other => panic!(
                "nginx's sync listener {} did not answer 204: {other:?}; the end of its log:\n{}",
                sync.display(),
                self.process.log_tail()
            ),
        }
        let path = self.access_log_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        // nginx writes each line with one write(2); only whole lines count.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        whole
            .lines()
            .map(|line| {
                parse_access(line)
                    .unwrap_or_else(|| panic!("unexpected line in {}: {line:?}", path.display()))
            })
            .collect()
    }

    /// The access log file (tab-separated, see `Access`).
    pub fn access_log_path(&self) -> PathBuf {
        self.prefix.path().join("logs/access.log")
    }

    /// The file nginx's stdout and stderr (its error log) go to.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl NginxBuilder {
    /// Adds directives (or `location` blocks) to the `server` block:
    /// `add_header Cache-Control "max-age=60";`, `expires
    /// 1h;`, `limit_rate 100k;`, `etag off;`, … May be called more than once.
    pub fn config(mut self, directives: &str) -> Self {
        self.config.push_str(directives);
        self.config.push('\n');
        self
    }

    /// Listens with TLS, with this certificate (PEM; it must name
    /// 127.0.0.1, which `url()` uses) and key (PEM).
    pub fn tls(mut self, cert_pem: &Path, key_pem: &Path) -> Self {
        self.tls = Some((absolute(cert_pem), absolute(key_pem)));
        self
    }

    /// Tries this port first; if it is taken, a free one, as always. For
    /// tests of the retry itself.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the server and waits until it answers. Panics with the end of
    /// its log if it cannot start.
    pub fn start(self) -> Nginx {
        let program = process::require_program("/usr/sbin/nginx", "nginx-light");
        let docroot = std::fs::canonicalize(&self.docroot)
            .unwrap_or_else(|e| panic!("nginx docroot {}: {e}", self.docroot.display()));
        process::on_ports(self.port, |port| self.start_on(&program, &docroot, port))
    }

    fn start_on(&self, program: &Path, docroot: &Path, port: u16) -> Result<Nginx, StartError> {
        let prefix = private_dir("testkit-nginx-");
        let dir = prefix.path();
        std::fs::create_dir(dir.join("logs")).expect("nginx logs dir");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, self.conf(dir, docroot, port))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let mut command = Command::new(program);
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; master_process off;"]);
        let sync = dir.join("sync.sock");
        // The unix socket answering proves the TCP port is ours too: nginx
        // opens all its listeners before it serves any, and exits if one
        // cannot be bound.
        let process = ServerProcess::start("nginx", command, &dir.join("nginx.log"), || {
            sync_status(&sync).is_ok_and(|status| status == 204)
        })?;
        Ok(Nginx {
            process,
            prefix,
            port,
            tls: self.tls.is_some(),
        })
    }

    fn conf(&self, dir: &Path, docroot: &Path, port: u16) -> String {
        let p = |name: &str| quoted(&dir.join(name));
        let mut server = format!("listen 127.0.0.1:{port}");
        if let Some((cert, key)) = &self.tls {
            let _ = write!(
                server,
                " ssl;\n        ssl_certificate {};\n        ssl_certificate_key {}",
                quoted(cert),
                quoted(key)
            );
        }
        // Fields are tab-separated; nginx's default log escaping writes a
        // tab, a quote or a backslash inside a value as \xHH.
        let log_format = "$request_method\\t$request_uri\\t$status\\t$body_bytes_sent\\t\
             $http_range\\t$http_if_range\\t$http_if_none_match\\t$http_authorization\\t\
             $http_accept_encoding\\t$request_completion";
        format!(
            r#"# Written by testkit for one test's nginx.
pid {pid};
error_log stderr notice;
events {{
    worker_connections 256;
}}
http {{
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    log_format testkit "{log_format}";
    access_log {access} testkit;

    server {{
        {server};
        server_name localhost;
        root {root};
        # The test's own directives:
{config}    }}

    # For access_log() and the readiness probe: unlogged, on a unix socket.
    server {{
        listen unix:{sync};
        access_log off;
        location / {{
            return 204;
        }}
    }}
}}
"#,
            pid = p("nginx.pid"),
            body = p("client_body_temp"),
            proxy = p("proxy_temp"),
            fastcgi = p("fastcgi_temp"),
            uwsgi = p("uwsgi_temp"),
            scgi = p("scgi_temp"),
            access = p("logs/access.log"),
            root = quoted(docroot),
            sync = dir.join("sync.sock").display(),
            config = self.config,
        )
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The status nginx's unlogged unix-socket listener answers.
fn sync_status(socket: &Path) -> std::io::Result<u16> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    process::get_over(stream, "localhost", "/").map(|(status, _)| status)
}

fn parse_access(line: &str) -> Option<Access> {
    let fields: Vec<String> = line.split('\t').map(unescape).collect();
    let [
        method,
        uri,
        status,
        body_bytes,
        range,
        if_range,
        if_none_match,
        authorization,
        accept_encoding,
        completion,
    ] = <[String; 10]>::try_from(fields).ok()?;
    // nginx logs an empty variable as "-".
    let header = |value: String| (value != "-").then_some(value);
    Some(Access {
        method,
        uri,
        status: status.parse().ok()?,
        body_bytes: body_bytes.parse().ok()?,
        range: header(range),
        if_range: header(if_range),
        if_none_match: header(if_none_match),
        authorization: header(authorization),
        accept_encoding: header(accept_encoding),
        complete: completion == "OK",
    })
}

/// Undoes nginx's log escaping (`\xHH` for a quote, a backslash, a control
/// byte or a byte above 0x7e).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            bytes[i],
            bytes.get(i + 1),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'\\', Some(b'x'), Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
