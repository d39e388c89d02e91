//! The store lock: `flock(2)` on `<store>/lock`. Imports hold it shared for
//! their whole run (from the first temp file to the index commit and the
//! removal of their intent file); gc holds it exclusive, so it never sees
//! an import's blobs half-way between the tree and the index (invariant 5),
//! and every intent file it reads belongs to a writer that is gone. The kernel drops the lock when the
//! process dies, so a crash never leaves the store locked.
//!
//! flock is not fair: while imports overlap, one of them always holds the
//! lock shared, and a gc waiting for it exclusive would wait forever. So
//! every taker first passes a gate, a flock on the store directory itself:
//! imports take it shared for an instant, gc takes it exclusive and keeps it
//! while it waits for the store lock. New imports then queue at the gate
//! behind the waiting gc, the running ones finish, and gc gets its turn.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

pub(crate) fn acquire(path: &Path, mode: LockMode, wait: bool) -> Result<StoreLock, Error> {
    // Never through a link: the lock file is the store's own.
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::StoreLink {
                path: path.to_path_buf(),
            });
        }
        other => other.ctx("open lock file", path)?,
    };
    let store = path.parent().unwrap_or(Path::new("."));
    let gate = File::open(store).ctx("open store directory", store)?;
    let (op, what) = match mode {
        LockMode::Shared => (libc::LOCK_SH, "gc is running"),
        LockMode::Exclusive => (libc::LOCK_EX, "an import or another gc is running"),
    };
    let locked = |held: &Path| Error::Locked {
        pid: holders(held).unwrap_or_else(|| "unknown".into()),
        what,
    };
    // Gate first, store lock second, in every process: the one order.
    if !flock(&gate, op, wait).map_err(|e| Error::io("lock", store, e))? {
        return Err(locked(store));
    }
    if !flock(&file, op, wait).map_err(|e| Error::io("lock", path, e))? {
        return Err(locked(path));
    }
    // Closing the gate's descriptor opens the gate again.
    drop(gate);
    Ok(StoreLock { _file: file })
}

/// flock(2), retried on EINTR; false if `wait` is off and the lock is held.
fn flock(file: &File, op: libc::c_int, wait: bool) -> io::Result<bool> {
    let op = if wait { op } else { op | libc::LOCK_NB };
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// The pids holding a lock on the file, from `/proc/locks` (Linux).
fn holders(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let inode = meta.ino();
    let locks = std::fs::read_to_string(PathBuf::from("/proc/locks")).ok()?;
    let me = std::process::id().to_string();
    let pids: Vec<&str> = locks
        .lines()
        .filter_map(|line| {
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (pid, dev_inode) = (fields.get(4)?, fields.get(5)?);
            let ino = dev_inode.rsplit(':').next()?;
            (ino == inode.to_string() && *pid != me).then_some(*pid)
        })
        .collect();
    (!pids.is_empty()).then(|| pids.join(", "))
}
