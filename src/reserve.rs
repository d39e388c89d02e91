//! Space held back so that a full disk can still be cleaned up.
//!
//! Removing an image or collecting garbage writes to the index before it
//! frees any file (rows first, files second), and SQLite needs a little
//! space for that: its shared-memory file and a few WAL frames. On a disk
//! filled to the last block even opening the store fails (rkt could not
//! delete on a full disk). So every store keeps `<store>/reserve`, a file
//! of [`RESERVE_BYTES`]: when an operation that frees space (`rm`, `gc`,
//! and opening the store for them, [`crate::Store::open_for_cleanup`])
//! fails for want of it, the reserve is deleted and the operation retried
//! once. gc puts the reserve back when it has freed enough.
//!
//! The reserve is for freeing space only. Nothing that uses space may
//! spend it: a writer needs the reserve in place before it stages a blob
//! ([`require`]), putting it back first if there is room, and fails with
//! [`Error::DiskFull`] if there is not. So an import on a full disk fails
//! and leaves the reserve where it is, and `rm` and `gc` still work after.

use std::io::Write;
use std::sync::Mutex;

use crate::blobs::{BlobTree, TempFile};
use crate::error::{Error, IoContext};
use crate::nofollow::{Dir, Kind};

/// Enough for the index's shared memory and the WAL frames of removing an
/// image or a gc batch.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;

const NAME: &str = "reserve";

fn present(root: &Dir) -> bool {
    matches!(root.meta(NAME), Ok(Some(m)) if m.kind == Kind::File && m.len >= RESERVE_BYTES)
}

/// Creates the reserve if it is missing or short. On a disk too full to
/// hold it, nothing is left behind, and the error says why.
pub(crate) fn ensure(tree: &BlobTree) -> Result<(), Error> {
    // Writers staging on several threads would each write one otherwise.
    static WRITING: Mutex<()> = Mutex::new(());
    let root = tree.root();
    if present(root) {
        return Ok(());
    }
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if present(root) {
        return Ok(());
    }
    // Written in tmp/ and renamed, so a process killed half-way never leaves
    // a short reserve under the final name, and gc sweeps what it left.
    let (temp, mut file) = TempFile::create(tree.tmp_dir_handle())?;
    let zeros = vec![0u8; 64 << 10];
    let mut written = Ok(());
    for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
        written = file.write_all(&zeros);
        if written.is_err() {
            break;
        }
    }
    written
        .and_then(|_| file.sync_all())
        .ctx("write the reserve", &temp.path)?;
    let path = temp.path.clone();
    temp.rename_into(root, NAME)
        .ctx("put the reserve in place", &path)
}

/// Creates the reserve if it is missing; best effort (a new store, gc).
pub(crate) fn try_ensure(tree: &BlobTree) {
    if let Err(e) = ensure(tree) {
        tracing::debug!("cannot put the reserve in place: {e}");
    }
}

/// For a writer about to use space: the reserve must be in place (put back
/// first if it is missing and there is room), else the disk is full.
pub(crate) fn require(tree: &BlobTree) -> Result<(), Error> {
    ensure(tree).map_err(|e| Error::DiskFull {
        store: tree.root().path().to_path_buf(),
        source: Box::new(e),
    })
}

/// Deletes the reserve; returns whether there was one to give back.
pub(crate) fn release(root: &Dir) -> bool {
    if !matches!(root.meta(NAME), Ok(Some(m)) if m.kind == Kind::File) {
        return false;
    }
    let released = root.remove(NAME).is_ok();
    if released {
        tracing::warn!(
            "the disk is full: released the {RESERVE_BYTES}-byte reserve of {}",
            root.path().display()
        );
    }
    released
}

/// Runs `op`, an operation that frees space; if it fails for want of
/// space, releases the reserve and runs it once more.
pub(crate) fn retry_when_full<T>(
    root: &Dir,
    mut op: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    match op() {
        Err(e) if e.is_disk_full() && release(root) => op(),
        result => result,
    }
}
