//! What makes a directory a store: the marker `<store>/imgstore.id`,
//! written when the store is created and read on every open.
//!
//! ```text
//! <store>/imgstore.id
//!   imgstore store v1
//!   id 5f0c6e1b9a8d4c37b2e1f0a9d8c7b6a5
//! ```
//!
//! The id is random, and the index records it too (migration 0005), so an
//! index knows which store it belongs to: one linked or copied from another
//! store is refused ([`crate::Error::ForeignIndex`]) and can never be
//! repaired against the wrong tree. When the store is opened, its
//! directory is one of:
//!
//! | found                                        | then                                   |
//! |----------------------------------------------|----------------------------------------|
//! | the marker                                   | a store: opened, its index must match  |
//! | nothing (or only `lost+found`)               | a new store: marker first, then the rest |
//! | no marker, an `index.db` that is an imgstore index recording no store id | a store made before markers: its index is opened (and migrated), then it gets a marker |
//! | anything else                                | refused, never adopted: a home directory with `tmp/` and `blobs/` folders is no store |
//!
//! The marker is written to a temp name and linked to its final name, which
//! fails if another process linked its own first: two processes creating a
//! store at once agree on one id. A directory holding only a leftover temp
//! marker (a crash during creation) still counts as empty.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, NotAStoreReason};
use crate::index::{self, Inspection, SCHEMA_VERSION};
use crate::nofollow::{Dir, Kind};

/// The marker's name in the store directory.
pub(crate) const MARKER: &str = "imgstore.id";
/// The marker's first line; a later format would change the version.
const HEADER: &str = "imgstore store v1";
/// Temp names of a marker being written: `imgstore.id.new-<pid>`.
const TEMP_PREFIX: &str = "imgstore.id.new-";

/// The store's own files: none of them may be a link.
const OWN_FILES: [&str; 6] = [
    MARKER,
    "index.db",
    "index.db-wal",
    "index.db-shm",
    "lock",
    "reserve",
];

/// A store's id: 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreId(String);

impl StoreId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn random() -> Result<StoreId, Error> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: getrandom(2) writes at most the given length into a
            // buffer we own.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io(
                    "draw a random store id",
                    Path::new("getrandom"),
                    e,
                ));
            }
            filled += n as usize;
        }
        Ok(StoreId(hex::encode(bytes)))
    }

    fn parse(text: &str) -> Option<StoreId> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let id = lines.next()?.strip_prefix("id ")?;
        let valid = id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (valid && lines.all(str::is_empty)).then(|| StoreId(id.to_string()))
    }
}

/// What [`examine`] found in a store directory.
#[derive(Debug)]
pub(crate) enum Found {
    /// A store, with its id.
    Store(StoreId),
    /// An empty directory: a new store may be made in it.
    Empty,
    /// A store made before markers: adopt it once its index opened.
    Unmarked,
}

/// Decides what the directory `root` is, without writing to it; refuses a
/// directory that is not a store, and a store whose own files are links.
pub(crate) fn examine(root: &Dir) -> Result<Found, Error> {
    for name in OWN_FILES {
        if let Some(meta) = root.meta(name)?
            && meta.kind == Kind::Link
        {
            return Err(Error::StoreLink {
                path: root.child_path(name),
            });
        }
    }
    let not_a_store = |reason| Error::NotAStore {
        path: root.path().to_path_buf(),
        reason,
    };
    match root.meta(MARKER)? {
        Some(meta) if meta.kind == Kind::File => {
            return read_marker(root)?
                .map(Found::Store)
                .ok_or_else(|| not_a_store(NotAStoreReason::BadMarker));
        }
        Some(_) => return Err(not_a_store(NotAStoreReason::BadMarker)),
        None => {}
    }
    let entries = root.entries()?;
    let significant = entries.iter().any(|e| {
        !(e.name == "lost+found" && e.kind == Kind::Dir
            || e.name.to_string_lossy().starts_with(TEMP_PREFIX) && e.kind == Kind::File)
    });
    if !significant {
        return Ok(Found::Empty);
    }
    let has_index = entries
        .iter()
        .any(|e| e.name == "index.db" && e.kind == Kind::File);
    if !has_index {
        return Err(not_a_store(NotAStoreReason::NotEmpty));
    }
    let path = root.child_path("index.db");
    match index::inspect(&path)? {
        Inspection::Foreign => Err(not_a_store(NotAStoreReason::NotAnIndex)),
        Inspection::Imgstore { version, .. } if version > SCHEMA_VERSION => {
            Err(Error::SchemaTooNew {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            })
        }
        Inspection::Imgstore {
            store_id: Some(_), ..
        } => Err(not_a_store(NotAStoreReason::IndexWithoutMarker)),
        Inspection::Imgstore { store_id: None, .. } => Ok(Found::Unmarked),
    }
}

/// The marker's id, `None` if the marker is not one this imgstore writes.
fn read_marker(root: &Dir) -> Result<Option<StoreId>, Error> {
    let mut text = String::new();
    let path = root.child_path(MARKER);
    root.open_file(MARKER)?
        .take(4096)
        .read_to_string(&mut text)
        .ctx("read store marker", &path)
        .map(|_| StoreId::parse(&text))
        .or_else(|e| match e {
            // Not UTF-8: not ours.
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
                Ok(None)
            }
            e => Err(e),
        })
}

/// Writes the marker of a new store (or of one made before markers) and
/// returns the id it holds: this process's, or that of a process that
/// wrote its marker first.
pub(crate) fn write_marker(root: &Dir) -> Result<StoreId, Error> {
    let id = StoreId::random()?;
    let temp = format!("{TEMP_PREFIX}{}", std::process::id());
    let temp_path = root.child_path(&temp);
    // A leftover of this pid (a crash, the pid reused): not a marker yet.
    root.remove(&temp)?;
    let written = root.create_file(&temp).and_then(|mut f| {
        f.write_all(format!("{HEADER}\nid {}\n", id.as_str()).as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = root.remove(&temp);
        return Err(Error::io("write store marker", &temp_path, e));
    }
    let linked = root.link(&temp, root, MARKER);
    let _ = root.remove(&temp);
    match linked {
        Ok(()) => {
            root.sync()?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_marker(root)?.ok_or_else(|| Error::NotAStore {
                path: root.path().to_path_buf(),
                reason: NotAStoreReason::BadMarker,
            })
        }
        Err(e) => Err(Error::io("write store marker", &root.child_path(MARKER), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_nothing_else_passes_for_one() {
        let id = StoreId::random().unwrap();
        assert_ne!(id, StoreId::random().unwrap());
        let text = format!("{HEADER}\nid {}\n", id.as_str());
        assert_eq!(StoreId::parse(&text), Some(id.clone()));
        for bad in [
            String::new(),
            format!("{HEADER}\n"),
            format!("imgstore store v2\nid {}\n", id.as_str()),
            format!("{HEADER}\nid {}\n", &id.as_str()[..31]),
            format!("{HEADER}\nid {}\n", id.as_str().to_uppercase()),
            format!("{HEADER}\nid {}\nmore\n", id.as_str()),
        ] {
            assert_eq!(StoreId::parse(&bad), None, "{bad:?}");
        }
    }
}
