//! Tree rows (migration 0006): the trees the store keeps under `trees/`,
//! each with reference edges (`Owner::Tree`) to the blobs it was rendered
//! from, so that gc keeps them while the tree is there. A row is committed
//! only once its directory is complete and durable under its final name
//! ([`crate::publish`]); deleting the row (directly, or by deleting its
//! image) releases the edges through the `trees_release` trigger, and the
//! directory goes after the row.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::images::{USE_RESOLUTION_MICROS, micros_to_time};
use super::{Index, Owner, now_micros};
use crate::digest::{Digest, KeyPrefix};
use crate::error::{Error, ResolveError};
use crate::image::ImageFormat;

/// A rendered tree to record, once its directory is in place.
#[derive(Debug, Clone)]
pub(crate) struct NewTree {
    /// Its directory under `trees/`.
    pub name: String,
    /// The image rendered.
    pub image: Digest,
    /// The image manifest whose layers were applied.
    pub manifest: Digest,
    /// `os/arch[/variant]` of an OCI tree.
    pub platform: Option<String>,
    pub rootless: bool,
    /// Bytes of file data, hard links counted once.
    pub size: u64,
    /// The fingerprint of the tree as rendered.
    pub hash: Digest,
    /// Every blob the render read: the tree holds each one.
    pub blobs: Vec<Digest>,
}

/// A tree as the index records it.
#[derive(Debug, Clone)]
pub(crate) struct TreeRow {
    pub name: String,
    pub image: Digest,
    pub image_name: String,
    pub format: ImageFormat,
    pub manifest: Digest,
    pub platform: Option<String>,
    pub rootless: bool,
    pub rendered_at: DateTime<Utc>,
    pub last_used: DateTime<Utc>,
    pub size: u64,
    pub hash: Digest,
}

const TREE_COLUMNS: &str = "t.name, i.key, i.name, i.format, t.manifest, t.platform, \
     t.rootless, t.rendered_at, t.last_used, t.size, t.hash";

fn digest_at(row: &Row, idx: usize) -> rusqlite::Result<Digest> {
    let s: String = row.get(idx)?;
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn tree_row(row: &Row) -> rusqlite::Result<TreeRow> {
    Ok(TreeRow {
        name: row.get(0)?,
        image: digest_at(row, 1)?,
        image_name: row.get(2)?,
        format: ImageFormat::from_db(&row.get::<_, String>(3)?),
        manifest: digest_at(row, 4)?,
        platform: row.get(5)?,
        rootless: row.get(6)?,
        rendered_at: micros_to_time(row.get(7)?),
        last_used: micros_to_time(row.get(8)?),
        size: row.get::<_, i64>(9)? as u64,
        hash: digest_at(row, 10)?,
    })
}

fn query_trees(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<TreeRow>, Error> {
    conn.prepare_cached(&format!(
        "SELECT {TREE_COLUMNS} FROM trees t JOIN images i ON i.id = t.image_id {filter}"
    ))
    .and_then(|mut s| s.query_map(params, tree_row)?.collect())
    .map_err(Error::sql("read trees"))
}

/// Records a tree with its edges inside the caller's transaction. A row of
/// the same name (whose directory vanished: the caller re-rendered it) is
/// replaced, and lets go of its edges first.
pub(super) fn insert_tree(tx: &Connection, tree: &NewTree, now: i64) -> Result<(), Error> {
    let image_id: i64 = tx
        .query_row(
            "SELECT id FROM images WHERE key = ?",
            [tree.image.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sql(format!("look up image {}", tree.image)))?
        // Removed while it was being rendered.
        .ok_or_else(|| ResolveError::NotFound(KeyPrefix::from(&tree.image)))?;
    tx.execute("DELETE FROM trees WHERE name = ?", [&tree.name])
        .map_err(Error::sql(format!("replace tree {}", tree.name)))?;
    let id: i64 = tx
        .query_row(
            "INSERT INTO trees (name, image_id, manifest, platform, rootless, rendered_at, \
               last_used, size, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            params![
                tree.name,
                image_id,
                tree.manifest.to_string(),
                tree.platform,
                tree.rootless,
                now,
                now,
                tree.size as i64,
                tree.hash.to_string()
            ],
            |r| r.get(0),
        )
        .map_err(Error::sql(format!("record tree {}", tree.name)))?;
    let mut seen = HashSet::new();
    for blob in tree.blobs.iter().filter(|b| seen.insert(*b)) {
        let n = tx
            .prepare_cached(
                "INSERT INTO refs (owner_kind, owner, blob_id) \
                 SELECT ?, ?, id FROM blobs WHERE digest = ?",
            )
            .and_then(|mut s| s.execute(params![Owner::Tree, id, blob.to_string()]))
            .map_err(Error::sql(format!(
                "hold blob {blob} for tree {}",
                tree.name
            )))?;
        if n == 0 {
            return Err(Error::BlobNotFound(blob.clone()));
        }
    }
    Ok(())
}

/// The names of an image's trees, inside the caller's transaction (before
/// the image's row is deleted and its trees with it).
pub(super) fn tree_names_of_image(tx: &Connection, key: &str) -> Result<Vec<String>, Error> {
    tx.prepare_cached(
        "SELECT t.name FROM trees t JOIN images i ON i.id = t.image_id WHERE i.key = ? \
         ORDER BY t.name",
    )
    .and_then(|mut s| s.query_map([key], |r| r.get(0))?.collect())
    .map_err(Error::sql(format!("list the trees of {key}")))
}

impl Index {
    /// The tree of a name, if one is recorded.
    pub fn tree(&self, name: &str) -> Result<Option<TreeRow>, Error> {
        let conn = self.conn()?;
        Ok(query_trees(&conn, "WHERE t.name = ?", [name])?.pop())
    }

    /// Every tree, by image name, then image, then when it was rendered.
    pub fn trees(&self) -> Result<Vec<TreeRow>, Error> {
        let conn = self.conn()?;
        query_trees(&conn, "ORDER BY i.name, i.key, t.rendered_at, t.name", [])
    }

    /// Records a use of a tree (for `prune --unused-for`), to the minute,
    /// as for images.
    pub fn touch_tree(&self, tree: &TreeRow) -> Result<(), Error> {
        let since = Utc::now().signed_duration_since(tree.last_used);
        if since
            .num_microseconds()
            .is_some_and(|m| m < USE_RESOLUTION_MICROS)
        {
            return Ok(());
        }
        let conn = self.conn()?;
        conn.prepare_cached("UPDATE trees SET last_used = ? WHERE name = ?")
            .and_then(|mut s| s.execute(params![now_micros(), tree.name]))
            .map_err(Error::sql("record last use of a tree"))?;
        Ok(())
    }

    /// Removes an image row — its labels, tags, remotes and trees go with
    /// it, and the triggers release their references — and returns the
    /// names of the trees, whose directories the caller removes next;
    /// `None` if there was no such image. The commit is durable, as
    /// [`Index::remove_trees`]'s.
    pub fn remove_image_and_trees(&self, key: &Digest) -> Result<Option<Vec<String>>, Error> {
        let mut conn = self.durable_conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin remove"))?;
        let key = key.to_string();
        let trees = tree_names_of_image(&tx, &key)?;
        let n = tx
            .execute("DELETE FROM images WHERE key = ?", [&key])
            .map_err(Error::sql(format!("remove image {key}")))?;
        tx.commit().map_err(Error::sql("commit remove"))?;
        Ok((n > 0).then_some(trees))
    }

    /// Removes the trees last used before `cutoff` (unix microseconds) in
    /// one durable transaction, as [`Index::remove_trees`]; returns them.
    pub fn prune_trees(&self, cutoff: i64) -> Result<Vec<TreeRow>, Error> {
        let mut conn = self.durable_conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin prune"))?;
        let doomed = query_trees(&tx, "WHERE t.last_used < ? ORDER BY t.name", [cutoff])?;
        for tree in &doomed {
            tx.execute("DELETE FROM trees WHERE name = ?", [&tree.name])
                .map_err(Error::sql(format!("prune tree {}", tree.name)))?;
        }
        tx.commit().map_err(Error::sql("commit prune"))?;
        Ok(doomed)
    }

    /// Removes tree rows by name, in one transaction. With `durable`, the
    /// commit is on disk when this returns: the caller deletes directories
    /// after it, and a row back from a power cut must not name one that is
    /// gone.
    pub fn remove_trees(&self, names: &[String], durable: bool) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        let (mut plain, mut synced);
        let conn: &mut Connection = if durable {
            synced = self.durable_conn()?;
            &mut synced
        } else {
            plain = self.conn()?;
            &mut plain
        };
        let tx = conn
            .transaction()
            .map_err(Error::sql("begin removing trees"))?;
        for name in names {
            tx.execute("DELETE FROM trees WHERE name = ?", [name])
                .map_err(Error::sql(format!("remove tree {name}")))?;
        }
        tx.commit().map_err(Error::sql("commit removing trees"))?;
        Ok(())
    }
}
