//! A scripted HTTP/1.1 server for faults real servers will not make on
//! demand: a connection dropped after N body bytes, a `429` with
//! `Retry-After`, a `Range` ignored, a `206` that lies, an ETag that
//! changes, a redirect to another host.
//!
//! [`FaultServer::start`] listens on 127.0.0.1 and a free port and answers
//! each request with what the handler returns ([`Reply`]); one thread per
//! connection, one request per connection (`Connection: close`). It
//! records every request it saw ([`SeenRequest`]: method, path, headers,
//! body) before answering, and counts the body bytes it actually wrote, so
//! tests assert on what went over the wire, not on what the client says.
//! [`FaultServer::start_tls`] serves the same over HTTPS with
//! [`crate::tls::TestCerts`].
//!
//! [`forward`] replays a request to a real server and returns its answer as
//! a [`Reply`], so a handler can proxy a real registry and tamper with one
//! answer (flip a byte, cut it short, change a header).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query, as sent in the request line.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// The first value of a header, by name without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }
}

/// What the server answers. Fields are public so that a handler may
/// tamper with a [`forward`]ed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Sent as given. `Content-Length` is added from the body unless set
    /// here (set it to announce a length the body does not have).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (with the full
    /// length announced).
    pub drop_after: Option<usize>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Send no `Content-Length`: the body ends when the connection closes.
    pub close_delimited: bool,
    /// Close the connection without answering at all.
    pub hang_up: bool,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            drop_after: None,
            delay: None,
            close_delimited: false,
            hang_up: false,
        }
    }

    /// `200 OK` with this body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200).body(body)
    }

    /// Sets a header, replacing any of the same name.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Adds a header, keeping others of the same name.
    pub fn add_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn drop_after(mut self, bytes: usize) -> Reply {
        self.drop_after = Some(bytes);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    pub fn close_delimited(mut self) -> Reply {
        self.close_delimited = true;
        self
    }

    /// A "reply" that closes the connection before any byte of an answer.
    pub fn hang_up() -> Reply {
        Reply {
            hang_up: true,
            ..Reply::new(0)
        }
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync + 'static;

struct State {
    handler: Box<Handler>,
    requests: Mutex<Vec<SeenRequest>>,
    bytes_sent: AtomicU64,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running fault server; stopped when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultServer {
    /// Serves plain HTTP on 127.0.0.1 and a free port.
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> FaultServer {
        FaultServer::spawn(Box::new(handler), None)
    }

    /// Serves HTTPS with the server certificate of `certs`.
    pub fn start_tls(
        certs: &crate::tls::TestCerts,
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> FaultServer {
        FaultServer::spawn(Box::new(handler), Some(certs.server_config()))
    }

    fn spawn(handler: Box<Handler>, tls: Option<Arc<rustls::ServerConfig>>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(State {
            handler,
            requests: Mutex::new(Vec::new()),
            bytes_sent: AtomicU64::new(0),
            tls,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("fault-server-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || serve(&state, stream));
                    }
                })
                .expect("spawn the fault server")
        };
        FaultServer {
            addr,
            scheme,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        self.url_on("127.0.0.1", path)
    }

    /// The same URL with another host name for this server (`localhost`
    /// is another origin than `127.0.0.1`).
    pub fn url_on(&self, host: &str, path: &str) -> String {
        format!("{}://{host}:{}{path}", self.scheme, self.port())
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Forgets the requests seen and the bytes counted so far.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.bytes_sent.store(0, Ordering::SeqCst);
    }

    /// Body bytes written to clients so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(state: &State, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let tcp = stream.try_clone().ok();
    match &state.tls {
        None => {
            let _ = exchange(state, stream);
        }
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                return;
            };
            let _ = exchange(state, rustls::StreamOwned::new(conn, stream));
        }
    }
    if let Some(tcp) = tcp {
        let _ = tcp.shutdown(Shutdown::Both);
    }
}

/// One request, one reply.
fn exchange<S: Read + Write>(state: &State, stream: S) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    state.requests.lock().unwrap().push(request.clone());
    let mut reply = (state.handler)(&request);
    let stream = reader.get_mut();
    if let Some(d) = reply.delay {
        std::thread::sleep(d);
    }
    if reply.hang_up {
        return Ok(());
    }
    let has_body = request.method != "HEAD" && !matches!(reply.status, 100..=199 | 204 | 304);
    if reply.close_delimited {
        reply.remove_header("content-length");
    } else if reply.get_header("content-length").is_none()
        && !matches!(reply.status, 100..=199 | 204 | 304)
    {
        reply
            .headers
            .push(("Content-Length".into(), reply.body.len().to_string()));
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if has_body {
        let body = match reply.drop_after {
            Some(n) => &reply.body[..n.min(reply.body.len())],
            None => &reply.body[..],
        };
        // Small writes, counted as they go, so that the count is what was
        // written when the connection broke.
        for chunk in body.chunks(16 * 1024) {
            stream.write_all(chunk)?;
            state
                .bytes_sent
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    }
    stream.flush()
}

fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<SeenRequest>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let headers = read_headers(r)?;
    let body = read_body(r, &headers, false)?;
    Ok(Some(SeenRequest {
        method,
        path,
        headers,
        body,
    }))
}

fn read_headers<R: BufRead>(r: &mut R) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

/// A message body by `Transfer-Encoding: chunked`, `Content-Length`, or
/// (for a response, `to_eof`) the end of the stream.
fn read_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if find_header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if n == 0 {
                // Trailers, then the empty line.
                read_headers(r)?;
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    if let Some(len) = find_header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Replays `req` to the plain-HTTP server at `upstream` (`http://host:port`
/// or `host:port`) and returns its answer, body read in full, as a reply a
/// handler can send on or tamper with. The request keeps its `Host`, so a
/// registry writes `Location` URLs that lead back through the proxy. A
/// failure to reach the upstream comes back as a `502` saying why.
pub fn forward(upstream: &str, req: &SeenRequest) -> Reply {
    match try_forward(upstream, req) {
        Ok(reply) => reply,
        Err(e) => Reply::new(502).body(format!("forward to {upstream}: {e}")),
    }
}

fn try_forward(upstream: &str, req: &SeenRequest) -> io::Result<Reply> {
    let authority = upstream
        .strip_prefix("http://")
        .unwrap_or(upstream)
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (name, value) in &req.headers {
        if is_hop_by_hop(name) || name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if find_header(&req.headers, "host").is_none() {
        head.push_str(&format!("Host: {authority}\r\n"));
    }
    if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&req.body)?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers = read_headers(&mut reader)?;
    let no_body = req.method == "HEAD" || matches!(status, 100..=199 | 204 | 304);
    let body = if no_body {
        Vec::new()
    } else {
        read_body(&mut reader, &headers, true)?
    };
    let mut reply = Reply::new(status);
    reply.headers = headers
        .into_iter()
        // The length is the body's own unless there is none to measure
        // (HEAD, 304), when the upstream's stands.
        .filter(|(n, _)| {
            !is_hop_by_hop(n) && (no_body || !n.eq_ignore_ascii_case("content-length"))
        })
        .collect();
    reply.body = body;
    Ok(reply)
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn records_requests_and_counts_bytes() {
        let server = FaultServer::start(|req| match req.path.as_str() {
            "/cut" => Reply::ok(vec![b'x'; 100]).drop_after(10),
            _ => Reply::ok(req.body.clone()).header("ETag", "\"e\""),
        });
        let out = get(
            server.addr(),
            "POST /echo?q=1 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nhello"), "{out}");
        let out = get(server.addr(), "GET /cut HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(out.contains("Content-Length: 100\r\n"), "{out}");
        assert!(out.ends_with(&"x".repeat(10)) && !out.ends_with(&"x".repeat(11)));
        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/echo?q=1");
        assert_eq!(seen[0].path_only(), "/echo");
        assert_eq!(seen[0].header("x-TEST"), Some("yes"));
        assert_eq!(seen[0].body, b"hello");
        assert_eq!(server.bytes_sent(), 15);
    }

    #[test]
    fn head_gets_the_length_but_no_body() {
        let server = FaultServer::start(|_| Reply::ok("abc"));
        let out = get(server.addr(), "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(out.contains("Content-Length: 3\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
        assert_eq!(server.bytes_sent(), 0);
    }

    #[test]
    fn forward_replays_and_reads_chunked_answers() {
        let upstream = FaultServer::start(|req| {
            Reply::new(201)
                .header("Transfer-Encoding", "chunked")
                .header(
                    "Location",
                    format!("http://{}/x", req.header("host").unwrap()),
                )
                .body(format!(
                    "3\r\nabc\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                    req.body.len(),
                    String::from_utf8_lossy(&req.body)
                ))
                .close_delimited()
        });
        let req = SeenRequest {
            method: "PUT".into(),
            path: "/v2/a?digest=x".into(),
            headers: vec![("Host".into(), "proxy:1".into())],
            body: b"zz".to_vec(),
        };
        let reply = forward(&upstream.url(""), &req);
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body, b"abczz");
        assert_eq!(reply.get_header("location"), Some("http://proxy:1/x"));
        assert_eq!(reply.get_header("transfer-encoding"), None);
        let seen = &upstream.requests()[0];
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("PUT", "/v2/a?digest=x")
        );
        assert_eq!(seen.body, b"zz");

        let gone = forward("127.0.0.1:1", &req);
        assert_eq!(gone.status, 502);
    }
}
