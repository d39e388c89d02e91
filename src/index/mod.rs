//! The metadata index: SQLite in WAL mode behind an r2d2 pool.
//!
//! Every pooled connection gets the same settings: WAL, `synchronous=NORMAL`
//! (durable at each checkpoint and safe against process crashes at every
//! commit), foreign keys on, a long busy timeout, and `BEGIN IMMEDIATE` for
//! every transaction — a deferred transaction that reads and then writes can
//! fail with `database is locked` without ever waiting, which would break
//! invariant 6 (writers never fail for contention).
//!
//! The schema lives in `migrations/NNNN_*.sql`, embedded at build time and
//! applied in one transaction each; `PRAGMA user_version` records how many
//! have run. A store whose version is newer than this binary knows is refused
//! before anything is written to it.

mod blob_sources;
mod blobs;
mod commit;
mod fsck;
mod gc_state;
mod identity;
mod images;
mod owner;
mod remotes;
mod repositories;
mod sources;
mod tags;
mod trees;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, TransactionBehavior};

use crate::error::Error;

pub(crate) use blobs::NewBlob;
pub(crate) use commit::Commit;
pub(crate) use fsck::BlobRow;
pub(crate) use identity::{Inspection, inspect};
pub(crate) use images::{ImageFilter, NewImage};
pub(crate) use owner::Owner;
pub(crate) use remotes::NewRemote;
pub(crate) use sources::FileIdentity;
pub(crate) use trees::{NewTree, TreeRow};

/// The migrations, in order. Migration `i` (0-based) moves the schema from
/// version `i` to `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        "0002_foreign_key_indexes.sql",
        include_str!("../../migrations/0002_foreign_key_indexes.sql"),
    ),
    (
        "0003_sources.sql",
        include_str!("../../migrations/0003_sources.sql"),
    ),
    (
        "0004_gc_state.sql",
        include_str!("../../migrations/0004_gc_state.sql"),
    ),
    (
        "0005_store_identity.sql",
        include_str!("../../migrations/0005_store_identity.sql"),
    ),
    (
        "0006_trees.sql",
        include_str!("../../migrations/0006_trees.sql"),
    ),
    (
        "0007_blob_sources.sql",
        include_str!("../../migrations/0007_blob_sources.sql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another writer before giving up. Import
/// transactions are short (the bytes are written before the transaction
/// opens), so this is only ever reached by a wedged process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for a pooled connection. The pool is this process's
/// own, so waiting means either all connections are busy here or a new one
/// cannot be opened (a full disk); neither gets better in two minutes.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Conn = PooledConnection<SqliteConnectionManager>;

#[derive(Clone)]
pub(crate) struct Index {
    pool: Pool<SqliteConnectionManager>,
}

impl Index {
    /// Opens (creating and migrating if needed) the index at `path`,
    /// whichever store it belongs to.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<Index, Error> {
        Index::open_as(path, None)
    }

    /// Opens the index at `path` for the store `owner`: an index that
    /// records another store's id is refused before anything is written to
    /// it. With `owner`, the id is recorded if the index has none yet.
    pub fn open_as(path: &Path, owner: Option<&str>) -> Result<Index, Error> {
        // Check the version on a plain connection first, so a newer store is
        // refused before the pool sets WAL mode or anything else on it.
        let mut first =
            Connection::open(path).map_err(Error::sql(format!("open {}", path.display())))?;
        // Read the version before `configure`: switching the journal to WAL
        // writes to the file, and a newer store must stay untouched.
        first
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(Error::sql("configure connection"))?;
        let found: i64 = first
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(Error::sql(format!(
                "read schema version of {}",
                path.display()
            )))?;
        check_version(found, path)?;
        if let Some(owner) = owner {
            identity::check_owner(&first, path, owner)?;
        }
        configure(&mut first).map_err(Error::sql("configure connection"))?;
        migrate(&mut first, path)?;
        drop(first);

        let manager = SqliteConnectionManager::file(path).with_init(configure);
        let pool = Pool::builder()
            .max_size(8)
            .min_idle(Some(0))
            .connection_timeout(POOL_TIMEOUT)
            .build(manager)
            .map_err(crate::error::pool_error)?;
        let index = Index { pool };
        if let Some(owner) = owner {
            index.claim(path, owner)?;
        }
        Ok(index)
    }

    pub fn conn(&self) -> Result<Conn, Error> {
        self.pool.get().map_err(crate::error::pool_error)
    }

    /// A connection whose commits are durable on power loss, not only
    /// across a process crash. With `synchronous=NORMAL` a WAL commit
    /// reaches the disk only at the next checkpoint, so a power cut may
    /// take it back. That is harmless for most writes, but not for a commit
    /// that files are deleted after (gc, `fsck --repair`): if the row came
    /// back and the file did not, the index would name a missing blob. Nor
    /// for one whose writer unlinks its intent afterwards: if the row went
    /// away and the intent too, the file would be an orphan nothing records.
    pub fn durable_conn(&self) -> Result<DurableConn, Error> {
        let conn = self.conn()?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(Error::sql("make commits durable"))?;
        Ok(DurableConn(conn))
    }

    /// Flushes the WAL into the main file and truncates it (after gc, so the
    /// index shrinks on disk).
    pub fn checkpoint(&self) -> Result<(), Error> {
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(Error::sql("checkpoint"))
    }
}

/// A pooled connection with `synchronous=FULL` (in WAL mode: the WAL is
/// fsynced at every commit) until it goes back to the pool.
pub(crate) struct DurableConn(Conn);

impl std::ops::Deref for DurableConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl std::ops::DerefMut for DurableConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0
    }
}

impl Drop for DurableConn {
    fn drop(&mut self) {
        // If this fails the connection stays durable: slower, never unsafe.
        if let Err(e) = self.0.pragma_update(None, "synchronous", "NORMAL") {
            tracing::debug!("cannot restore synchronous=NORMAL: {e}");
        }
    }
}

fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL mode is kept in the file, so it is set once, when the store is
    // created. Setting it takes a lock that SQLite may refuse at once, busy
    // handler or not, while other processes write; so it is only done when
    // needed, and a refusal while connecting is retried like any busy wait.
    retry_busy(|| {
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        Ok(())
    })?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    Ok(())
}

/// Runs `f` again while SQLite answers `SQLITE_BUSY`, for up to the busy
/// timeout.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let version = |c: &Connection| -> rusqlite::Result<i64> {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    let found = version(conn).map_err(Error::sql("read schema version"))?;
    check_version(found, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let fresh = found == 0;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        let tx = conn
            .transaction()
            .map_err(Error::sql(format!("begin migration {name}")))?;
        // Another process may have migrated while we waited for the lock.
        let now = version(&tx).map_err(Error::sql("read schema version"))?;
        check_version(now, path)?;
        if now >= target {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(Error::sql(format!("apply migration {name}")))?;
        tx.pragma_update(None, "user_version", target)
            .map_err(Error::sql("set schema version"))?;
        tx.commit()
            .map_err(Error::sql(format!("commit migration {name}")))?;
    }
    if fresh {
        // A schema made from nothing: no older imgstore wrote to this
        // index, so no orphan predates the intent files. (Cut short before
        // this, the flag stays set and the first gc walks the tree once.)
        gc_state::set_full_sweep_needed(conn, false)?;
    }
    Ok(())
}

fn check_version(found: i64, path: &Path) -> Result<(), Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: PathBuf::from(path),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Now, in the index's unit (unix microseconds).
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_durable_connection_syncs_every_commit_and_goes_back_to_normal() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        {
            let durable = index.durable_conn().unwrap();
            // 2 = FULL: in WAL mode, the WAL is fsynced at each commit.
            assert_eq!(synchronous(&durable), 2);
        }
        // The pool holds at most 8 connections, so these include the one
        // that was durable: every one is back to NORMAL (1).
        let all: Vec<Conn> = (0..8).map(|_| index.conn().unwrap()).collect();
        for conn in &all {
            assert_eq!(synchronous(conn), 1);
        }
    }
}
