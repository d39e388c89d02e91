//! An OCI distribution registry (Debian's `docker-registry`, distribution
//! 2.8) on 127.0.0.1, plain HTTP, with its storage in a private directory.
//!
//! Each registry has its own `config.yml`: filesystem storage, deletes
//! enabled, no cache, no redis, no notifications, no upload purging, its log
//! (including the access log) in the server's log file; optionally htpasswd
//! authentication (bcrypt, written by `htpasswd -Bbn`). What it promises: a
//! started registry answered `GET /v2/` (200, or 401 with authentication),
//! and its blobs are files under `storage_dir()`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{self, ServerProcess, StartError};
use super::{private_dir, quoted};

/// A registry; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    // Dropped first: the server stops before its directory is removed.
    process: ServerProcess,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    /// A registry that anyone may pull from and push to.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that answers 401 unless a request carries basic
    /// credentials `user`:`password`.
    pub fn with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    /// The TCP port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the host part of a reference to an image in it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/path`; a missing leading `/` is added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://127.0.0.1:{}{slash}{path}", self.port)
    }

    /// The storage driver's root directory (`docker/registry/v2/…` below).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file its log goes to, one line per request among others.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Registry {
        let program = process::require_program("/usr/bin/docker-registry", "docker-registry");
        process::on_free_port(|port| Registry::start_on(&program, credentials, port))
    }

    fn start_on(
        program: &Path,
        credentials: Option<(&str, &str)>,
        port: u16,
    ) -> Result<Registry, StartError> {
        let dir = private_dir("testkit-registry-");
        let htpasswd =
            credentials.map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yml(dir.path(), htpasswd.as_deref(), port))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let mut command = Command::new(program);
        command.arg("serve").arg(&config);
        // The registry lets REGISTRY_* variables override its config file.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        let answered = if credentials.is_some() { 401 } else { 200 };
        // Only ours sends this header: another process that took the port
        // does not pass for it.
        let ours = format!("x-testkit-registry: {}", server_id(dir.path()));
        let log = dir.path().join("registry.log");
        let process = ServerProcess::start("docker-registry", command, &log, || {
            process::http_head(port, "/v2/").is_some_and(|(status, head)| {
                status == answered && head.to_ascii_lowercase().contains(&ours)
            })
        })?;
        Ok(Registry { process, dir, port })
    }
}

/// What tells this registry from any other: its directory's name.
fn server_id(dir: &Path) -> String {
    let name = dir.file_name().expect("a temp dir has a name");
    name.to_string_lossy().to_ascii_lowercase()
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let program = process::require_program("/usr/bin/htpasswd", "apache2-utils");
    let out = Command::new(&program)
        .args(["-Bbn", user, password])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "htpasswd -Bbn failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("htpasswd");
    std::fs::write(&path, &out.stdout)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn config_yml(dir: &Path, htpasswd: Option<&Path>, port: u16) -> String {
    let auth = htpasswd.map_or(String::new(), |path| {
        format!(
            "auth:\n  htpasswd:\n    realm: testkit\n    path: {}\n",
            quoted(path)
        )
    });
    format!(
        r#"# Written by testkit for one test's registry.
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: testkit-{id}
  headers:
    X-Testkit-Registry: [{id}]
{auth}"#,
        storage = quoted(&dir.join("storage")),
        id = server_id(dir),
    )
}
