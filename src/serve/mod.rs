//! `imgstore serve`: the store as an OCI distribution registry, for every
//! client that speaks the API (skopeo, containerd, docker, podman, another
//! imgstore). It owns the HTTP side: routing, content negotiation, ranges,
//! upload sessions, Basic auth and TLS. What it promises:
//!
//! - **Reads** are the store's bytes as stored: a manifest by tag or digest
//!   with its media type, `Docker-Content-Digest` and `ETag` (`304` on
//!   `If-None-Match`); a blob streamed from its file a chunk at a time on
//!   the blocking pool, never read whole into memory (`Range` gives `206`).
//! - **Names**: a repository is an image name, a tag the tag row
//!   `NAME:TAG`, else the version label of an OCI image of that name
//!   ([`crate::index`]'s `repositories`); ACIs are never served. Names are
//!   checked against the distribution grammar before the index or the disk
//!   is touched. Content is addressed store-wide: a blob or a manifest is
//!   served by digest under any valid repository name (one store, one set
//!   of users); tags, tag lists and deletes are per repository.
//! - **Writes** go the one way into the store ([`crate::publish`]): an
//!   upload streams into a blob writer in `tmp/uploads/`, hashed as it
//!   arrives, and a finished one waits there, staged, until the manifest
//!   that names it is pushed; that manifest's images (built by the walk
//!   `import` uses for a layout, [`crate::import::graph`]) and its tag are
//!   then published with every staged blob they need in one commit, under
//!   the store lock held shared for that commit only. A manifest naming a
//!   blob neither stored nor staged is refused (`MANIFEST_BLOB_UNKNOWN`).
//!   An upload whose bytes do not match its digest leaves nothing; so does
//!   a client that drops mid-upload. Sessions idle longer than
//!   [`ServeOptions::upload_timeout`] are dropped with their files, and
//!   whatever a killed server left is swept by gc after its grace period.
//! - **Shutdown** on SIGINT or SIGTERM: stop accepting, give requests a
//!   moment, drop the uploads in flight and every session file, wait for
//!   commits under way (nothing is ever half-published); then return.
//!
//! The library's API stays blocking: the server runs a tokio runtime of its
//! own inside [`Server::run`], and every call into the store runs on the
//! runtime's blocking pool.

mod auth;
mod blobs;
mod body;
mod error;
mod listing;
mod manifests;
mod push;
mod range;
mod reply;
mod route;
mod tls;
mod uploads;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use error::ServeError;

use crate::error::Error;
use crate::remote::registry::errors::ErrorCode;
use crate::store::Store;
use body::Body;
use reply::ApiError;
use route::Route;

/// Settings of a registry server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where to listen; `127.0.0.1:5000` by default.
    pub listen: SocketAddr,
    /// Refuse every write (`405 UNSUPPORTED`).
    pub read_only: bool,
    /// Ask for Basic credentials checked against this htpasswd file
    /// (bcrypt entries, as `htpasswd -B` writes them).
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM) and the key of
    /// [`ServeOptions::tls_key`].
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of [`ServeOptions::tls_cert`].
    pub tls_key: Option<PathBuf>,
    /// An upload session, or a finished upload no manifest has named yet,
    /// is dropped with its file once idle this long.
    pub upload_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            read_only: false,
            htpasswd: None,
            tls_cert: None,
            tls_key: None,
            upload_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl ServeOptions {
    /// The defaults: `127.0.0.1:5000`, pull and push, no auth, plain HTTP.
    pub fn new() -> ServeOptions {
        ServeOptions::default()
    }

    /// Listen on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> ServeOptions {
        self.listen = addr;
        self
    }

    /// Refuse every write.
    pub fn read_only(mut self, read_only: bool) -> ServeOptions {
        self.read_only = read_only;
        self
    }

    /// Ask for Basic credentials from this htpasswd file.
    pub fn htpasswd(mut self, path: impl Into<PathBuf>) -> ServeOptions {
        self.htpasswd = Some(path.into());
        self
    }

    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ServeOptions {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// Drop upload sessions idle this long.
    pub fn upload_timeout(mut self, timeout: Duration) -> ServeOptions {
        self.upload_timeout = timeout;
        self
    }
}

/// What every request handler shares.
pub(crate) struct State {
    store: Store,
    options: ServeOptions,
    auth: Option<auth::Htpasswd>,
    uploads: uploads::Uploads,
    /// Manifest pushes one at a time: a staged upload two manifests name
    /// is taken by the first and is in the store for the second.
    commits: std::sync::Mutex<()>,
    /// Turns true when the server stops; uploads in flight give up.
    stopping: watch::Receiver<bool>,
}

/// A registry server bound to its address, ready to [`run`](Server::run).
///
/// ```no_run
/// use imgstore::{ServeOptions, Server, Store};
/// let store = Store::open("/var/lib/imgstore")?;
/// let server = Server::bind(store, ServeOptions::new().read_only(true))?;
/// println!("serving on {}", server.local_addr());
/// server.run()?; // until SIGINT or SIGTERM
/// # Ok::<(), imgstore::Error>(())
/// ```
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: Arc<watch::Sender<bool>>,
}

/// Stops a running [`Server`] from another thread, as a signal does.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Asks the server to stop; [`Server::run`] returns once it has.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// Threads for store work (blob reads a chunk at a time, upload writes a
/// batch at a time, index queries, commits, bcrypt). No client holds one
/// while it is slow, so a few dozen serve any number of connections, and
/// each thread more is memory (stack, allocator arena) the server keeps.
const BLOCKING_THREADS: usize = 32;

/// How long requests in flight may take to finish once the server stops,
/// before their connections are dropped.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a commit under way at shutdown may take to finish.
const COMMIT_GRACE: Duration = Duration::from_secs(60);

/// A connection that sends no complete request head for this long is
/// closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body that sends nothing for this long is given up (with the
/// upload it was for).
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A TLS handshake that takes longer than this is given up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Checks the options (htpasswd file, TLS files) and binds the address;
    /// every failure is reported here, before anything is served.
    pub fn bind(store: Store, options: ServeOptions) -> Result<Server, Error> {
        let auth = options
            .htpasswd
            .as_deref()
            .map(auth::Htpasswd::load)
            .transpose()?;
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(ServeError::TlsIncomplete.into()),
        };
        let uploads = uploads::Uploads::open(&store)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("imgstore-serve")
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Runtime)?;
        let std_listener =
            std::net::TcpListener::bind(options.listen).map_err(|source| ServeError::Listen {
                addr: options.listen,
                source,
            })?;
        let listen_error = |source| ServeError::Listen {
            addr: options.listen,
            source,
        };
        let local_addr = std_listener.local_addr().map_err(listen_error)?;
        std_listener.set_nonblocking(true).map_err(listen_error)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).map_err(listen_error)?
        };
        if auth.is_none() && !local_addr.ip().is_loopback() {
            tracing::warn!(
                "serving {local_addr} without authentication: anyone who reaches it may pull{}",
                if options.read_only { "" } else { " and push" }
            );
        }
        let (stop, stopping) = watch::channel(false);
        Ok(Server {
            runtime,
            listener,
            local_addr,
            tls,
            state: Arc::new(State {
                store,
                options,
                auth,
                uploads,
                commits: std::sync::Mutex::new(()),
                stopping,
            }),
            stop: Arc::new(stop),
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Serves until SIGINT, SIGTERM or a [`ShutdownHandle`]; then stops as
    /// the module docs say and returns.
    pub fn run(self) -> Result<(), Error> {
        let Server {
            runtime,
            listener,
            local_addr,
            tls,
            state,
            stop,
        } = self;
        let result = runtime.block_on(serve(listener, local_addr, tls, state.clone(), stop));
        // Commits under way finish on the blocking pool; uploads in flight
        // were dropped with their connections.
        runtime.shutdown_timeout(COMMIT_GRACE);
        state.uploads.clear();
        result
    }
}

async fn serve(
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: Arc<watch::Sender<bool>>,
) -> Result<(), Error> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut stopped = stop.subscribe();
    let mut connections = JoinSet::new();
    let expiry = tokio::spawn(uploads::expire_periodically(state.clone()));
    tracing::info!(
        "serving the store {} on {}://{local_addr}{}{}",
        state.store.root().display(),
        if tls.is_some() { "https" } else { "http" },
        if state.options.read_only {
            " (read-only)"
        } else {
            ""
        },
        if state.auth.is_some() {
            " (htpasswd)"
        } else {
            ""
        },
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, peer, tls.clone(), state.clone()));
                }
                // Out of descriptors, or a connection reset before it was
                // accepted: the listener itself is fine.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = stopped_signal(&mut stopped) => break,
        }
    }
    drop(listener);
    stop.send_replace(true);
    tracing::info!("stopping: {} connections open", connections.len());
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
    expiry.abort();
    Ok(())
}

/// The next frame of a request body, or `None` at its end; a client that
/// sends nothing for [`BODY_IDLE_TIMEOUT`] is refused.
async fn next_frame(
    body: &mut Incoming,
) -> Result<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>, ApiError> {
    use http_body_util::BodyExt;
    tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame())
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("the request body stalled for {BODY_IDLE_TIMEOUT:?}"),
            )
            .status(hyper::StatusCode::REQUEST_TIMEOUT)
        })
}

/// Returns once the server is stopping.
async fn stopped_signal(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before returning.
    let _ = stopping.wait_for(|stop| *stop).await.is_ok();
}

/// Serves one connection (after its TLS handshake) until it closes or the
/// server stops; then lets its request in flight finish, if it can.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    match tls {
        None => http(TokioIo::new(stream), peer, state).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(TokioIo::new(stream), peer, state).await,
                Ok(Err(e)) => tracing::debug!("{peer}: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!("{peer}: TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(io: I, peer: SocketAddr, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut stopping = state.stopping.clone();
    let service_state = state.clone();
    let service = service_fn(move |req| {
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("{peer}: connection ended: {e}");
            }
        }
        _ = stopped_signal(&mut stopping) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers one request and logs it: one line at info level.
async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let has_body = has_body(&req);
    let (user, response) = match authenticate(&state, &req).await {
        Ok(user) => (user, dispatch(&state, req).await),
        Err(refusal) => (None, Err(refusal)),
    };
    let response = response.unwrap_or_else(|e| {
        if e.is_internal() {
            tracing::warn!("{peer} {method} {target}: {}", e.message());
        }
        let mut response = e.into_response();
        // A refused request's body may be unread: the connection cannot
        // carry another request, and the client must not think it can.
        if has_body {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        response
    });
    let length = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    tracing::info!(
        "{peer} {} \"{method} {target}\" {} {length} {:.1}ms",
        user.as_deref().unwrap_or("-"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// Whether a request comes with a body (a length, or chunks).
fn has_body(req: &Request<Incoming>) -> bool {
    let headers = req.headers();
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The user a request's credentials name, when the server asks for them.
async fn authenticate(
    state: &Arc<State>,
    req: &Request<Incoming>,
) -> Result<Option<String>, ApiError> {
    match &state.auth {
        None => Ok(None),
        Some(_) => {
            let header = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let state = state.clone();
            let user = reply::blocking(move || {
                Ok(state
                    .auth
                    .as_ref()
                    .and_then(|auth| auth.check(header.as_deref())))
            })
            .await?;
            user.map(Some).ok_or_else(ApiError::unauthorized)
        }
    }
}

async fn dispatch(state: &Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = route::percent_decode(req.uri().path()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NameInvalid,
            "the request path is not valid percent-encoded UTF-8",
        )
    })?;
    let query = route::Query::parse(req.uri().query());
    let route = Route::parse(&path).ok_or_else(ApiError::not_found)?;
    let method = req.method().clone();
    let allowed = route.methods();
    if !allowed.contains(&method) {
        return Err(ApiError::method_not_allowed(allowed));
    }
    if state.options.read_only && !matches!(method, Method::GET | Method::HEAD) {
        return Err(ApiError::read_only());
    }
    if let Some(name) = route.name() {
        route::check_name(name)?;
    }
    let head = method == Method::HEAD;
    match route {
        Route::Base => Ok(reply::json(hyper::StatusCode::OK, b"{}".to_vec(), head)),
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                manifests::get(state, name, reference, req.headers(), head).await
            }
            Method::PUT => manifests::put(state, name, reference, req).await,
            _ => manifests::delete(state, name, reference).await,
        },
        Route::Blob { digest, .. } => blobs::get(state, digest, req.headers(), head).await,
        Route::Uploads { name } => uploads::start(state, name, &query, req).await,
        Route::Upload { name, id } => match method {
            Method::GET => uploads::status(state, name, id).await,
            Method::PATCH => uploads::patch(state, name, id, req).await,
            Method::PUT => uploads::finish(state, name, id, &query, req).await,
            _ => uploads::cancel(state, name, id).await,
        },
        Route::Tags { name } => listing::tags(state, name, &query, head).await,
        Route::Referrers { digest, .. } => listing::referrers(digest, &query, head),
    }
}
