//! Blob rows, reference edges and the garbage they leave.
//!
//! Counts are never written by hand: the triggers of the schema move
//! `blobs.refcount` with every insert or delete in `refs`, in the same
//! statement. gc finds garbage through the partial index on `refcount = 0`,
//! so its cost follows the garbage, not the store.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Index, Owner};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::image::{BlobInfo, DiskUsage};

/// A blob row to create (or to complete, if it exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: Option<String>,
    pub diff_id: Option<Digest>,
}

/// Deletes up to one batch of rows with no references, through the
/// partial index on `refcount = 0`; the triggers release what they held.
fn take_garbage(tx: &Connection) -> Result<Vec<(Digest, u64)>, Error> {
    let rows = tx
        .prepare_cached("SELECT id, digest, size FROM blobs WHERE refcount = 0 LIMIT ?")
        .and_then(|mut stmt| {
            stmt.query_map([GC_BATCH], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(Error::sql("find garbage"))?;
    let mut removed = Vec::with_capacity(rows.len());
    for (id, digest, size) in rows {
        tx.prepare_cached("DELETE FROM blobs WHERE id = ?")
            .and_then(|mut s| s.execute([id]))
            .map_err(Error::sql(format!("remove blob row {digest}")))?;
        removed.push((Digest::parse(&digest)?, size as u64));
    }
    Ok(removed)
}

/// Inserts a blob row, or fills in what an existing row lacks; returns its id.
pub(super) fn upsert_blob(conn: &Connection, blob: &NewBlob, now: i64) -> Result<i64, Error> {
    conn.prepare_cached(
        "INSERT INTO blobs (digest, size, media_type, created_at, diff_id) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (digest) DO UPDATE SET \
           media_type = COALESCE(blobs.media_type, excluded.media_type), \
           diff_id = COALESCE(blobs.diff_id, excluded.diff_id) \
         RETURNING id",
    )
    .and_then(|mut s| {
        s.query_row(
            params![
                blob.digest.to_string(),
                blob.size as i64,
                blob.media_type,
                now,
                blob.diff_id.as_ref().map(Digest::to_string)
            ],
            |r| r.get(0),
        )
    })
    .map_err(Error::sql(format!("record blob {}", blob.digest)))
}

/// Moves a blob's pin count by `delta` inside the caller's transaction;
/// returns the blob's reference count.
pub(super) fn add_pin(tx: &Connection, digest: &Digest, delta: i64) -> Result<u64, Error> {
    let id: i64 = tx
        .query_row(
            "SELECT id FROM blobs WHERE digest = ?",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sql("look up blob"))?
        .ok_or_else(|| Error::BlobNotFound(digest.clone()))?;
    let current: i64 = tx
        .query_row(
            "SELECT n FROM refs WHERE owner_kind = ? AND owner = 0 AND blob_id = ?",
            params![Owner::Pin, id],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sql("read pin"))?
        .unwrap_or(0);
    let next = current + delta;
    if next < 0 {
        return Err(Error::NotPinned(digest.clone()));
    }
    if current == 0 {
        tx.execute(
            "INSERT INTO refs (owner_kind, owner, blob_id, n) VALUES (?, 0, ?, ?)",
            params![Owner::Pin, id, next],
        )
    } else if next == 0 {
        tx.execute(
            "DELETE FROM refs WHERE owner_kind = ? AND owner = 0 AND blob_id = ?",
            params![Owner::Pin, id],
        )
    } else {
        tx.execute(
            "UPDATE refs SET n = ? WHERE owner_kind = ? AND owner = 0 AND blob_id = ?",
            params![next, Owner::Pin, id],
        )
    }
    .map_err(Error::sql("update pin"))?;
    let refcount: i64 = tx
        .query_row("SELECT refcount FROM blobs WHERE id = ?", [id], |r| {
            r.get(0)
        })
        .map_err(Error::sql("read refcount"))?;
    Ok(refcount as u64)
}

/// Most blob rows one gc transaction removes, so that imports waiting for
/// the write lock are not held up for long.
const GC_BATCH: i64 = 2000;

impl Index {
    pub fn blob(&self, digest: &Digest) -> Result<Option<BlobInfo>, Error> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "SELECT digest, size, media_type, refcount, diff_id FROM blobs WHERE digest = ?",
        )
        .and_then(|mut s| s.query_row([digest.to_string()], blob_row).optional())
        .map_err(Error::sql(format!("look up blob {digest}")))
    }

    pub fn has_blob(&self, digest: &Digest) -> Result<bool, Error> {
        Ok(self.blob(digest)?.is_some())
    }

    /// The hex of every blob row whose digest starts with `alg:prefix`, by
    /// one range scan of the digest index (gc's orphan sweep, shard by
    /// shard).
    pub fn blob_hexes_in_shard(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<std::collections::HashSet<String>, Error> {
        let conn = self.conn()?;
        let low = format!("{algorithm}:{prefix}");
        let high = format!("{low}g");
        let mut stmt = conn
            .prepare_cached("SELECT digest FROM blobs WHERE digest >= ?1 AND digest < ?2")
            .map_err(Error::sql("list a shard's blobs"))?;
        let skip = algorithm.name().len() + 1;
        stmt.query_map([&low, &high], |r| r.get::<_, String>(0))
            .and_then(|rows| {
                rows.map(|d| d.map(|d| d[skip..].to_string()))
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(Error::sql(format!("list blobs under {low}")))
    }

    /// Every blob an image needs: what it holds, and what those hold, down
    /// the blob-to-blob edges.
    pub fn image_blobs(&self, key: &Digest) -> Result<Vec<BlobInfo>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "WITH RECURSIVE closure(id) AS ( \
                   SELECT r.blob_id FROM refs r JOIN images i ON r.owner_kind = ?2 AND r.owner = i.id \
                   WHERE i.key = ?1 \
                   UNION \
                   SELECT r.blob_id FROM refs r JOIN closure c ON r.owner_kind = ?3 AND r.owner = c.id) \
                 SELECT b.digest, b.size, b.media_type, b.refcount, b.diff_id \
                 FROM blobs b JOIN closure c ON b.id = c.id ORDER BY b.id",
            )
            .map_err(Error::sql("list image blobs"))?;
        stmt.query_map(
            params![key.to_string(), Owner::Image, Owner::Blob],
            blob_row,
        )
        .and_then(|rows| rows.collect())
        .map_err(Error::sql(format!("list blobs of {key}")))
    }

    /// Takes up to one batch of unreferenced blobs out of the index and
    /// returns them; their files may be deleted once this returns. Removing
    /// a row releases what it held (a manifest's layers), which then shows
    /// up in the next pass. An empty result means no garbage is left.
    ///
    /// `before_commit` sees a non-empty batch before it is committed, to
    /// record it durably (an intent file): a crash after the commit and
    /// before the files are deleted must leave them findable. The commit
    /// itself is durable before this returns, so no power cut can bring
    /// back a row whose file gc then deletes.
    pub fn gc_pass(
        &self,
        before_commit: impl FnOnce(&[(Digest, u64)]) -> Result<(), Error>,
    ) -> Result<Vec<(Digest, u64)>, Error> {
        let mut conn = self.durable_conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin gc"))?;
        let removed = take_garbage(&tx)?;
        if removed.is_empty() {
            return Ok(removed);
        }
        before_commit(&removed)?;
        crate::failpoint::hit("gc-before-commit");
        tx.commit().map_err(Error::sql("commit gc"))?;
        Ok(removed)
    }

    /// What gc would remove from the index, without removing it: the same
    /// passes as gc, inside one transaction that is rolled back, so the
    /// cost follows the garbage as gc's does.
    pub fn garbage_closure(&self) -> Result<Vec<(Digest, u64)>, Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin gc dry run"))?;
        let mut all = Vec::new();
        loop {
            let batch = take_garbage(&tx)?;
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        tx.rollback().map_err(Error::sql("roll back gc dry run"))?;
        Ok(all)
    }

    /// Disk use by category, from the index alone.
    pub fn disk_usage(&self) -> Result<DiskUsage, Error> {
        let conn = self.conn()?;
        let mut du = DiskUsage {
            images: conn
                .query_row("SELECT COUNT(*) FROM images", [], |r| r.get::<_, i64>(0))
                .map_err(Error::sql("count images"))? as u64,
            ..DiskUsage::default()
        };
        let (trees, tree_bytes) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM trees",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(Error::sql("measure trees"))?;
        (du.trees, du.tree_bytes) = (trees as u64, tree_bytes as u64);
        let mut stmt = conn
            .prepare(
                "SELECT refcount > 0, refcount > 1, COUNT(*), COALESCE(SUM(size), 0) \
                 FROM blobs GROUP BY refcount > 0, refcount > 1",
            )
            .map_err(Error::sql("measure blobs"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, bool>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(Error::sql("measure blobs"))?;
        for (referenced, shared, count, bytes) in rows {
            let (count, bytes) = (count as u64, bytes as u64);
            if referenced {
                du.referenced_blobs += count;
                du.referenced_bytes += bytes;
                if shared {
                    du.shared_blobs += count;
                    du.shared_bytes += bytes;
                }
            } else {
                du.garbage_blobs += count;
                du.garbage_bytes += bytes;
            }
        }
        Ok(du)
    }

    /// Pins a blob (the library's `ref`): one more reference from outside
    /// any image (or, with a negative `delta`, fewer). The blob row must
    /// exist. Returns the blob's reference count.
    pub fn pin(&self, digest: &Digest, delta: i64) -> Result<u64, Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin pin"))?;
        let refcount = add_pin(&tx, digest, delta)?;
        tx.commit().map_err(Error::sql("commit pin"))?;
        Ok(refcount)
    }

    /// Adds (or with `add` false removes) an edge from one blob to another.
    pub fn link(&self, parent: &Digest, child: &Digest, add: bool) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin link"))?;
        let id = |d: &Digest| -> Result<i64, Error> {
            tx.query_row(
                "SELECT id FROM blobs WHERE digest = ?",
                [d.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::sql("look up blob"))?
            .ok_or_else(|| Error::BlobNotFound(d.clone()))
        };
        let (p, c) = (id(parent)?, id(child)?);
        if add {
            tx.execute(
                "INSERT INTO refs (owner_kind, owner, blob_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                params![Owner::Blob, p, c],
            )
        } else {
            tx.execute(
                "DELETE FROM refs WHERE owner_kind = ? AND owner = ? AND blob_id = ?",
                params![Owner::Blob, p, c],
            )
        }
        .map_err(Error::sql("update link"))?;
        tx.commit().map_err(Error::sql("commit link"))
    }
}

fn blob_row(r: &rusqlite::Row) -> rusqlite::Result<BlobInfo> {
    let parse = |idx: usize, s: String| {
        Digest::parse(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(BlobInfo {
        digest: parse(0, r.get(0)?)?,
        size: r.get::<_, i64>(1)? as u64,
        media_type: r.get(2)?,
        refcount: r.get::<_, i64>(3)? as u64,
        diff_id: r
            .get::<_, Option<String>>(4)?
            .map(|s| parse(4, s))
            .transpose()?,
    })
}
