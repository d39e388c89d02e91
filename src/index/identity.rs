//! The store an index belongs to (migration 0005): the id in the store's
//! marker file, recorded once in the index and compared on every open, and
//! the read-only look at an `index.db` that decides whether a directory
//! without a marker holds a store made by an earlier imgstore.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Index, SCHEMA_VERSION};
use crate::error::Error;

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// What an `index.db` is, looked at without writing to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inspection {
    /// Not an SQLite database, or one without the tables of an imgstore
    /// index.
    Foreign,
    /// An imgstore index of a schema version, naming the store it belongs
    /// to if it records one.
    Imgstore {
        version: i64,
        store_id: Option<String>,
    },
}

/// Looks at the file `path` without changing it: its first bytes, then
/// (if it is SQLite) its schema version, its tables and its store id.
pub(crate) fn inspect(path: &Path) -> Result<Inspection, Error> {
    let mut magic = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    if !read || &magic != SQLITE_MAGIC {
        return Ok(Inspection::Foreign);
    }
    let what = || format!("read {}", path.display());
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sql(what()))?;
    conn.busy_timeout(super::BUSY_TIMEOUT)
        .map_err(Error::sql("configure connection"))?;
    let tables: i64 = match conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('blobs', 'images', 'refs')",
        [],
        |r| r.get(0),
    ) {
        Ok(n) => n,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Ok(Inspection::Foreign);
        }
        Err(e) => return Err(Error::sql(what())(e)),
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(Error::sql(what()))?;
    // A newer imgstore may have other tables: refused all the same (as
    // too new), never adopted.
    if version > SCHEMA_VERSION {
        return Ok(Inspection::Imgstore {
            version,
            store_id: None,
        });
    }
    if tables != 3 || version < 1 {
        return Ok(Inspection::Foreign);
    }
    Ok(Inspection::Imgstore {
        version,
        store_id: store_id(&conn).map_err(Error::sql(what()))?,
    })
}

/// The store id an index records, if it has the table and the row.
fn store_id(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_identity')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    conn.query_row(
        "SELECT store_id FROM store_identity WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// Refuses an index that belongs to another store than `expected`, before
/// anything is written to it (on the first connection of
/// [`Index::open_as`]).
pub(super) fn check_owner(conn: &Connection, path: &Path, expected: &str) -> Result<(), Error> {
    let found = store_id(conn).map_err(Error::sql(format!(
        "read the store id of {}",
        path.display()
    )))?;
    match found {
        Some(found) if found != expected => Err(foreign(path, found, Some(expected))),
        _ => Ok(()),
    }
}

fn foreign(path: &Path, found: String, expected: Option<&str>) -> Error {
    Error::ForeignIndex {
        index: path.to_path_buf(),
        store: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        index_store: found,
        store_id: expected.map(str::to_string),
    }
}

impl Index {
    /// Records that the index belongs to the store `id` if it records no
    /// store yet; refuses it if it records another.
    pub fn claim(&self, path: &Path, id: &str) -> Result<(), Error> {
        let conn = self.conn()?;
        let read = |c: &Connection| {
            store_id(c).map_err(Error::sql(format!(
                "read the store id of {}",
                path.display()
            )))
        };
        let found = match read(&conn)? {
            Some(found) => found,
            None => {
                conn.execute(
                    "INSERT INTO store_identity (id, store_id) VALUES (1, ?1) \
                     ON CONFLICT (id) DO NOTHING",
                    [id],
                )
                .map_err(Error::sql("record the store id"))?;
                // Another process may have claimed it first.
                read(&conn)?.ok_or_else(|| Error::Internal("the store id vanished".into()))?
            }
        };
        if found != id {
            return Err(foreign(path, found, Some(id)));
        }
        Ok(())
    }
}
