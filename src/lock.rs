//! The store lock: `flock(2)` on `<store>/lock`. Imports hold it shared for
//! their whole run (from the first temp file to the index commit); gc holds
//! it exclusive, so it never sees an import's blobs half-way between the
//! tree and the index (invariant 5). The kernel drops the lock when the
//! process dies, so a crash never leaves the store locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
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
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock file", path)?;
    let mut op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(StoreLock { _file: file });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                return Err(Error::Locked {
                    pid: holders(path).unwrap_or_else(|| "unknown".into()),
                    what: match mode {
                        LockMode::Shared => "gc is running",
                        LockMode::Exclusive => "an import or another gc is running",
                    },
                });
            }
            _ => return Err(Error::io("lock", path, err)),
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
