//! A server as a child process: started with its stdout and stderr in a log
//! file, waited for until a probe says it is ready, and killed and reaped
//! when dropped. Also the two things every server needs first: a free port
//! on 127.0.0.1 and its program on disk.
//!
//! What it promises: `start` returns only a running server that answered its
//! probe; otherwise an error with the server's exit status and the tail of
//! its log. A port another process took between `free_port` and the bind is
//! retried on another port by `on_free_port`. No server outlives the test
//! process: children are started by one long-lived thread with
//! `PR_SET_PDEATHSIG`, so even a killed test binary leaves none behind.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer its first probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many ports `on_free_port` tries before it gives up.
const PORT_ATTEMPTS: usize = 8;

/// A port on 127.0.0.1 that was free a moment ago (the kernel's choice for a
/// bind to port 0). Never the same port twice in one process, so servers
/// started at once by parallel tests do not race each other for it; another
/// process may still take it, which `on_free_port` copes with.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut given = GIVEN.get_or_init(Default::default).lock().unwrap();
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener.local_addr().expect("local address").port();
        if given.insert(port) {
            return port;
        }
    }
}

/// `path` if it exists; otherwise the test fails, naming the Debian package
/// to install. Tests never skip for a missing tool.
pub fn require_program(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    if !path.is_file() {
        panic!(
            "{} not found: install the Debian package {package} (scripts/test.sh does)",
            path.display()
        );
    }
    path
}

/// Runs `start` with a free port, again with another one (at most a few
/// times) while the server reports the port taken, and panics with the
/// error on any other failure.
pub fn on_free_port<T>(start: impl FnMut(u16) -> Result<T, StartError>) -> T {
    on_ports(None, start)
}

/// `on_free_port`, trying `first` (if given) before free ones.
pub(crate) fn on_ports<T>(
    first: Option<u16>,
    mut start: impl FnMut(u16) -> Result<T, StartError>,
) -> T {
    let mut first = first;
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = first.take().unwrap_or_else(free_port);
        match start(port) {
            Ok(server) => return server,
            Err(e) if e.address_in_use() => last = Some(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!(
        "gave up after {PORT_ATTEMPTS} ports were taken; the last failure: {}",
        last.expect("at least one attempt")
    )
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        source: io::Error,
    },
    #[error("{name} exited with {status} before it was ready; the end of {log}:\n{tail}")]
    Exited {
        name: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "{name} was not ready within {timeout:?} (killed); the end of {log}:\n{tail}",
        timeout = READY_TIMEOUT
    )]
    TimedOut {
        name: String,
        log: PathBuf,
        tail: String,
    },
}

impl StartError {
    /// Whether the server failed because its port was taken (nginx: `bind()
    /// … failed (98: Address already in use)`, Go: `bind: address already in
    /// use`).
    pub fn address_in_use(&self) -> bool {
        match self {
            StartError::Exited { tail, .. } => {
                tail.to_ascii_lowercase().contains("address already in use")
            }
            _ => false,
        }
    }
}

/// A running server process. Dropping it stops it: SIGTERM, then SIGKILL if
/// it has not exited within a few seconds, then it is reaped. If the test is
/// panicking, the tail of the server's log is printed first, since it often
/// says why.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log`, then calls
    /// `ready` every few milliseconds until it returns true while the
    /// process still runs. Fails if the process exits first or is not ready
    /// within `READY_TIMEOUT` (it is then killed).
    pub fn start(
        name: &str,
        mut command: Command,
        log: &Path,
        mut ready: impl FnMut() -> bool,
    ) -> Result<ServerProcess, StartError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let spawn_error = |source| StartError::Spawn {
            name: name.to_owned(),
            program: program.clone(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(spawn_error)?;
        let err = out.try_clone().map_err(spawn_error)?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn_orphan_proof(command).map_err(spawn_error)?;
        let mut server = ServerProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().expect("wait for a child") {
                return Err(StartError::Exited {
                    name: server.name.clone(),
                    status,
                    log: server.log.clone(),
                    tail: server.log_tail(),
                });
            }
            // A probe can reach another process on a port ours failed to
            // bind; ours then exits, so it must still run after the probe.
            if ready() && server.child.try_wait().expect("wait for a child").is_none() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(StartError::TimedOut {
                    name: server.name.clone(),
                    log: server.log.clone(),
                    tail: server.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// Whether it is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for a child").is_none()
    }

    fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with the pid of our own unreaped child, which no
        // other process can have been given.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- {} (pid {}), the end of {}:\n{}",
                self.name,
                self.child.id(),
                self.log.display(),
                self.log_tail()
            );
        }
        self.stop();
    }
}

/// The last `lines` lines of a file ("(no log)" if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "(no log)".to_owned();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns a child that the kernel kills when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process; tests run on short-lived threads and a server may be
/// shared through a static, so every child is forked by one thread that
/// lives as long as the process.
fn spawn_orphan_proof(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only
    // prctl(2) and getppid(2), which are async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other("the test process exited"));
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((command, reply))
        .expect("the spawner thread runs");
    answer.recv().expect("the spawner thread answers")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The status code of a plain-HTTP `GET path` to 127.0.0.1:`port`, or
/// `None` if there is no HTTP answer (yet).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_head(port, path).map(|(status, _)| status)
}

/// The status code and the head (status line and headers) of a plain-HTTP
/// `GET path` to 127.0.0.1:`port`.
pub(crate) fn http_head(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    get_over(stream, &format!("127.0.0.1:{port}"), path).ok()
}

/// Sends `GET path` over `stream` (HTTP/1.0, so the server closes the
/// connection) and returns the status code and the head of the answer.
pub(crate) fn get_over(
    mut stream: impl Read + Write,
    host: &str,
    path: &str,
) -> io::Result<(u16, String)> {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    match (
        words.next(),
        words.next().and_then(|code| code.parse().ok()),
    ) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok((code, head.to_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP answer: {head:?}"),
        )),
    }
}
