//! Real servers from Debian's packages on 127.0.0.1, each with a private
//! config and data directory, stopped when dropped: `Nginx` (static files,
//! HTTP or HTTPS, a readable access log), `Registry` (docker-registry, the
//! OCI distribution API, optionally with htpasswd) and `Containerd` (its
//! content store and images, driven through `ctr`). `process` has what they
//! share, public for servers of a test's own (such as `imgstore serve`).
//!
//! A missing program fails the test, naming the package to install; a
//! server that does not come up fails it with the end of its log.

use std::path::Path;

mod containerd;
mod nginx;
mod process;
mod registry;

pub use containerd::Containerd;
pub use nginx::{Access, Nginx, NginxBuilder};
pub use process::{
    READY_TIMEOUT, ServerProcess, StartError, free_port, http_status, on_free_port,
    require_program, tcp_accepts,
};
pub use registry::Registry;

/// A path as a double-quoted string, `"` and `\` escaped: nginx, YAML and
/// TOML all read it so.
fn quoted(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Unix socket paths in a server's directory must fit in `sun_path` (108
/// bytes with its NUL); the longest name used there is 25 bytes.
const MAX_DIR_PATH: usize = 80;

/// A new directory for one server: in `$TMPDIR` if its path is short
/// enough for the unix sockets inside, else in /tmp.
fn private_dir(prefix: &str) -> tempfile::TempDir {
    let make = |parent: &Path| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", parent.display()))
    };
    let dir = make(&std::env::temp_dir());
    if dir.path().as_os_str().len() <= MAX_DIR_PATH {
        return dir;
    }
    make(Path::new("/tmp"))
}
