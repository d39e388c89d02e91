//! Space held back so that a full disk can still be cleaned up.
//!
//! Removing an image or collecting garbage writes to the index before it
//! frees any file (rows first, files second), and SQLite needs a little
//! space for that: its shared-memory file and a few WAL frames. On a disk
//! filled to the last block even opening the store fails (rkt could not
//! delete on a full disk). So every store keeps `<store>/reserve`, a file
//! of [`RESERVE_BYTES`]: when an operation that frees space fails for want
//! of it, the reserve is deleted and the operation retried once. gc puts
//! the reserve back when it has freed enough.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Enough for the index's shared memory and the WAL frames of removing an
/// image or a gc batch.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;

fn path(root: &Path) -> PathBuf {
    root.join("reserve")
}

/// Creates the reserve if it is missing or short. Best effort: on a disk
/// too full to hold it, nothing is left behind.
pub(crate) fn ensure(root: &Path) {
    let dest = path(root);
    if fs::metadata(&dest).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return;
    }
    // Written in tmp/ and renamed, so a process killed half-way never leaves
    // a short reserve under the final name, and gc sweeps what it left.
    let temp = root
        .join("tmp")
        .join(format!("reserve-{}.tmp", std::process::id()));
    let written = fs::File::create(&temp).and_then(|mut f| {
        let zeros = vec![0u8; 64 << 10];
        for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
            f.write_all(&zeros)?;
        }
        f.sync_all()
    });
    if written.is_err() || fs::rename(&temp, &dest).is_err() {
        let _ = fs::remove_file(&temp);
    }
}

/// Deletes the reserve; returns whether there was one to give back.
pub(crate) fn release(root: &Path) -> bool {
    let released = fs::remove_file(path(root)).is_ok();
    if released {
        tracing::warn!(
            "the disk is full: released the {RESERVE_BYTES}-byte reserve of {}",
            root.display()
        );
    }
    released
}

/// Runs `op`; if it fails for want of space, releases the reserve and runs
/// it once more.
pub(crate) fn retry_when_full<T>(
    root: &Path,
    mut op: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    match op() {
        Err(e) if e.is_disk_full() && release(root) => op(),
        result => result,
    }
}
