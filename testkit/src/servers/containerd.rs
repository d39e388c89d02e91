//! containerd (Debian's `containerd`, 1.6) with a private root, state and
//! gRPC socket, for the content store and image service `ctr` drives.
//!
//! Its `config.toml` (version 2) disables the CRI plugin and the
//! snapshotters that cannot work in a container (aufs, btrfs, devmapper,
//! zfs); native and overlayfs stay. No TCP port is opened: debug and
//! metrics listeners are off. What it promises: a started containerd
//! answered `ctr version` on its socket. It needs root, and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::{self, ServerProcess};
use super::{private_dir, quoted};

/// A containerd; stopped when dropped.
#[derive(Debug)]
pub struct Containerd {
    // Dropped first: the server stops before its directory is removed.
    process: ServerProcess,
    dir: tempfile::TempDir,
    ctr: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` succeeds. Panics if
    /// not run as root, or with the end of its log if it cannot start.
    pub fn start() -> Containerd {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0,
            "containerd needs root (this test runs as uid {euid}): run the tests as root, as CI does"
        );
        let program = process::require_program("/usr/bin/containerd", "containerd");
        let ctr = process::require_program("/usr/bin/ctr", "containerd");
        let dir = private_dir("testkit-ctd-");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path(), &socket))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let mut command = Command::new(program);
        command.arg("--config").arg(&config);
        let log = dir.path().join("containerd.log");
        let process = ServerProcess::start("containerd", command, &log, || {
            socket.exists()
                && ctr_command(&ctr, &socket)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Containerd { process, dir, ctr }
    }

    /// `ctr --address SOCKET`, in the default namespace; add the
    /// subcommand and its arguments.
    pub fn ctr(&self) -> Command {
        ctr_command(&self.ctr, &self.socket())
    }

    /// `ctr --address SOCKET --namespace NAMESPACE`.
    pub fn ctr_in(&self, namespace: &str) -> Command {
        let mut command = self.ctr();
        command.arg("--namespace").arg(namespace);
        command
    }

    /// Its gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Its root directory (`io.containerd.content.v1.content/blobs/…` below).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The file its log goes to.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn ctr_command(ctr: &Path, socket: &Path) -> Command {
    let mut command = Command::new(ctr);
    // The flag overrides CONTAINERD_ADDRESS; the namespace is ours to say.
    command
        .env_remove("CONTAINERD_NAMESPACE")
        .arg("--address")
        .arg(socket);
    command
}

fn config_toml(dir: &Path, socket: &Path) -> String {
    format!(
        r#"# Written by testkit for one test's containerd.
version = 2
root = {root}
state = {state}
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
        root = quoted(&dir.join("root")),
        state = quoted(&dir.join("state")),
        grpc = quoted(socket),
        ttrpc = quoted(&dir.join("containerd.sock.ttrpc")),
        opt = quoted(&dir.join("opt")),
    )
}
