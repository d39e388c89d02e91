//! The SQL of `fsck`, `fsck --repair` and `prune`: reading every blob row,
//! recomputing reference counts from the edges, finding edges whose owner
//! is gone, dropping lost blobs together with the images that needed them,
//! and choosing the images `prune` removes.
//!
//! Counts are recomputed here by hand on purpose: the triggers of the
//! schema keep them in step with the edges, and fsck exists to check that
//! they did.

use rusqlite::{Transaction, params};

use super::{Index, Owner};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::image::ImageInfo;

/// A blob row as fsck checks it against the tree.
#[derive(Debug, Clone)]
pub(crate) struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Option<Digest>,
}

/// A blob whose stored count differs from the sum of its edges.
#[derive(Debug, Clone)]
pub(crate) struct CountDrift {
    pub digest: Digest,
    pub stored: i64,
    pub counted: i64,
}

/// An edge whose owner no longer exists.
#[derive(Debug, Clone)]
pub(crate) struct DanglingRef {
    pub owner_kind: Owner,
    pub owner: i64,
    pub blob: Digest,
}

/// What a repair of the index changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexRepair {
    /// Images removed because a blob they needed is lost.
    pub images_removed: Vec<Digest>,
}

/// Owner kinds whose owner row lives in a table (a pin has no row to lose).
fn owner_tables() -> impl Iterator<Item = (Owner, &'static str)> {
    Owner::ALL
        .into_iter()
        .filter_map(|o| o.table().map(|t| (o, t)))
}

fn parse_digest(s: &str) -> Result<Digest, Error> {
    Ok(Digest::parse(s)?)
}

impl Index {
    /// The rows of the blobs in one shard of the tree (digests starting
    /// with `algorithm:prefix`), by digest, through one range scan.
    pub fn blob_rows_in_shard(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<BlobRow>, Error> {
        let conn = self.conn()?;
        let low = format!("{algorithm}:{prefix}");
        let high = format!("{low}g");
        let mut stmt = conn
            .prepare_cached(
                "SELECT digest, size, diff_id FROM blobs \
                 WHERE digest >= ?1 AND digest < ?2 ORDER BY digest",
            )
            .map_err(Error::sql("list a shard's blobs"))?;
        let rows = stmt
            .query_map([&low, &high], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(Error::sql(format!("list blobs under {low}")))?;
        rows.into_iter()
            .map(|(d, size, diff)| {
                Ok(BlobRow {
                    digest: parse_digest(&d)?,
                    size: size as u64,
                    diff_id: diff.as_deref().map(parse_digest).transpose()?,
                })
            })
            .collect()
    }

    /// Every OCI image manifest the store holds, by digest: the manifests
    /// of OCI images, and blobs recorded with a manifest media type (those
    /// an image index holds). `fsck --layers` reads them, one at a time,
    /// for the diff_ids their configs name.
    pub fn oci_manifests(&self) -> Result<Vec<Digest>, Error> {
        let conn = self.conn()?;
        let digests: Vec<String> = conn
            .prepare(
                "SELECT b.digest FROM images i JOIN blobs b ON b.id = i.manifest \
                   WHERE i.format = 'oci' \
                 UNION SELECT digest FROM blobs WHERE media_type IN (?1, ?2) \
                 ORDER BY 1",
            )
            .and_then(|mut s| {
                s.query_map(
                    [crate::oci::OCI_MANIFEST, crate::oci::DOCKER_MANIFEST],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(Error::sql("list image manifests"))?;
        digests.iter().map(|d| parse_digest(d)).collect()
    }

    /// What `PRAGMA quick_check` finds wrong (empty when it says `ok`).
    pub fn quick_check(&self) -> Result<Vec<String>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("PRAGMA quick_check")
            .map_err(Error::sql("quick_check"))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(Error::sql("quick_check"))?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Blobs whose `refcount` is not the sum of the edges pointing at them.
    pub fn count_drift(&self) -> Result<Vec<CountDrift>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT b.digest, b.refcount, \
                   (SELECT COALESCE(SUM(r.n), 0) FROM refs r WHERE r.blob_id = b.id) AS counted \
                 FROM blobs b WHERE b.refcount != counted ORDER BY b.id",
            )
            .map_err(Error::sql("recount references"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(Error::sql("recount references"))?;
        rows.into_iter()
            .map(|(d, stored, counted)| {
                Ok(CountDrift {
                    digest: parse_digest(&d)?,
                    stored,
                    counted,
                })
            })
            .collect()
    }

    /// Edges held by an image, blob or remote row that no longer exists.
    pub fn dangling_refs(&self) -> Result<Vec<DanglingRef>, Error> {
        let conn = self.conn()?;
        let mut found = Vec::new();
        for (kind, table) in owner_tables() {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT r.owner, b.digest FROM refs r JOIN blobs b ON b.id = r.blob_id \
                     WHERE r.owner_kind = ?1 AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.id = r.owner)"
                ))
                .map_err(Error::sql("find dangling references"))?;
            let rows = stmt
                .query_map([kind], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(Error::sql("find dangling references"))?;
            for (owner, digest) in rows {
                found.push(DanglingRef {
                    owner_kind: kind,
                    owner,
                    blob: parse_digest(&digest)?,
                });
            }
        }
        Ok(found)
    }

    /// Repairs the index in one transaction: drops the rows of `lost` blobs
    /// (their files are gone or bad) with every image whose closure needs
    /// one and every remote that fetched one, fixes the sizes in `resize`,
    /// removes dangling edges, and sets every count to the sum of its
    /// edges. With `files_follow`, the caller deletes files from the tree
    /// after this commit: the commit is then made durable first (a row back
    /// from a power cut must not name a deleted file), and it asks the next
    /// gc to walk the tree, which finishes a repair cut short.
    pub fn repair(
        &self,
        lost: &[Digest],
        resize: &[(Digest, u64)],
        files_follow: bool,
    ) -> Result<IndexRepair, Error> {
        let mut conn = self.durable_conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin repair"))?;
        if files_follow {
            super::gc_state::set_full_sweep_needed(&tx, true)?;
        }
        let mut repair = IndexRepair::default();
        for digest in lost {
            drop_lost_blob(&tx, digest, &mut repair)?;
        }
        for (digest, size) in resize {
            tx.execute(
                "UPDATE blobs SET size = ? WHERE digest = ?",
                params![*size as i64, digest.to_string()],
            )
            .map_err(Error::sql(format!("fix size of {digest}")))?;
        }
        for (kind, table) in owner_tables() {
            tx.execute(
                &format!(
                    "DELETE FROM refs WHERE owner_kind = ?1 \
                     AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.id = refs.owner)"
                ),
                [kind],
            )
            .map_err(Error::sql("remove dangling references"))?;
        }
        tx.execute(
            "UPDATE blobs SET refcount = \
               (SELECT COALESCE(SUM(n), 0) FROM refs WHERE refs.blob_id = blobs.id) \
             WHERE refcount != (SELECT COALESCE(SUM(n), 0) FROM refs WHERE refs.blob_id = blobs.id)",
            [],
        )
        .map_err(Error::sql("recount references"))?;
        tx.commit().map_err(Error::sql("commit repair"))?;
        Ok(repair)
    }

    /// Images of each name beyond the newest `keep` whose last use is
    /// before `cutoff` (unix microseconds), removed in one transaction so
    /// that a use recorded meanwhile is never lost. Returns the removed
    /// images, and the names of the trees that went with them; the commit
    /// is durable, as the caller removes those trees' directories next.
    pub fn prune(&self, cutoff: i64, keep: usize) -> Result<(Vec<ImageInfo>, Vec<String>), Error> {
        let mut conn = self.durable_conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin prune"))?;
        let keys: Vec<String> = tx
            .prepare(
                "SELECT key FROM ( \
                   SELECT key, last_used, ROW_NUMBER() OVER ( \
                     PARTITION BY name ORDER BY imported_at DESC, id DESC) AS rank \
                   FROM images) \
                 WHERE rank > ?1 AND last_used < ?2 ORDER BY key",
            )
            .and_then(|mut s| {
                s.query_map(params![keep as i64, cutoff], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(Error::sql("choose images to prune"))?;
        let mut removed = Vec::with_capacity(keys.len());
        let mut trees = Vec::new();
        for key in keys {
            trees.extend(super::trees::tree_names_of_image(&tx, &key)?);
            let digest = parse_digest(&key)?;
            // Read on another connection: this one holds the write
            // transaction, and the row is committed (WAL readers see it).
            if let Some(info) = self.image(&digest)? {
                removed.push(info);
            }
            tx.execute("DELETE FROM images WHERE key = ?", [&key])
                .map_err(Error::sql(format!("prune image {key}")))?;
        }
        tx.commit().map_err(Error::sql("commit prune"))?;
        Ok((removed, trees))
    }

    /// Records a use of every image whose closure holds `blob` (`cat`).
    pub fn touch_users(&self, blob: &Digest) -> Result<(), Error> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "WITH RECURSIVE holders(id) AS ( \
               SELECT id FROM blobs WHERE digest = ?1 \
               UNION \
               SELECT r.owner FROM refs r JOIN holders h ON r.owner_kind = ?4 AND r.blob_id = h.id) \
             UPDATE images SET last_used = ?2 WHERE last_used < ?3 AND id IN ( \
               SELECT r.owner FROM refs r JOIN holders h ON r.owner_kind = ?5 AND r.blob_id = h.id)",
        )
        .and_then(|mut s| {
            let now = super::now_micros();
            s.execute(params![
                blob.to_string(),
                now,
                now - super::images::USE_RESOLUTION_MICROS,
                Owner::Blob,
                Owner::Image
            ])
        })
        .map_err(Error::sql("record last use"))?;
        Ok(())
    }
}

/// Drops one lost blob's row and everything that needed it.
fn drop_lost_blob(
    tx: &Transaction,
    digest: &Digest,
    repair: &mut IndexRepair,
) -> Result<(), Error> {
    let Some(id) = tx
        .query_row(
            "SELECT id FROM blobs WHERE digest = ?",
            [digest.to_string()],
            |r| r.get::<_, i64>(0),
        )
        .ok()
    else {
        return Ok(());
    };
    // Every blob that holds the lost one, directly or down a chain of
    // blob-to-blob edges (an index holding a manifest holding a layer).
    const HOLDERS: &str = "WITH RECURSIVE holders(id) AS ( \
           SELECT ?1 \
           UNION \
           SELECT r.owner FROM refs r JOIN holders h ON r.owner_kind = ?2 AND r.blob_id = h.id) ";
    let images: Vec<String> = tx
        .prepare(&format!(
            "{HOLDERS} SELECT key FROM images WHERE manifest IN (SELECT id FROM holders) \
             OR id IN (SELECT r.owner FROM refs r JOIN holders h ON r.owner_kind = ?3 AND r.blob_id = h.id) \
             ORDER BY key"
        ))
        .and_then(|mut s| {
            s.query_map(params![id, Owner::Blob, Owner::Image], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(Error::sql(format!("find images needing {digest}")))?;
    for key in images {
        tx.execute("DELETE FROM images WHERE key = ?", [&key])
            .map_err(Error::sql(format!("remove image {key}")))?;
        repair.images_removed.push(parse_digest(&key)?);
    }
    tx.execute("DELETE FROM remotes WHERE blob_id = ?", [id])
        .map_err(Error::sql(format!("remove remotes of {digest}")))?;
    tx.execute("DELETE FROM refs WHERE blob_id = ?", [id])
        .map_err(Error::sql(format!("remove references to {digest}")))?;
    tx.execute("DELETE FROM blobs WHERE id = ?", [id])
        .map_err(Error::sql(format!("remove blob row {digest}")))?;
    Ok(())
}
