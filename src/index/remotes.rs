//! Remotes: where a blob was downloaded from, with the HTTP cache facts
//! (ETag, max-age) a later fetch needs. A remote holds its blob (an edge of
//! kind 3) and goes away with the image it produced. One row per URL:
//! recording a URL again replaces its row, and a `304` refreshes it in
//! place ([`Index::refresh_remote`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::Owner;
use super::images::micros_to_time;
use super::{Index, now_micros};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::Remote;

const REMOTE_COLUMNS: &str = "r.url, r.etag, r.max_age, r.downloaded_at, b.digest, \
     (SELECT key FROM images WHERE id = r.image_id)";

fn remote_row(r: &rusqlite::Row) -> rusqlite::Result<Remote> {
    let parse = |idx: usize, s: String| {
        Digest::parse(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(Remote {
        url: r.get(0)?,
        etag: r.get(1)?,
        max_age: r.get::<_, Option<i64>>(2)?.map(|s| s.max(0) as u64),
        downloaded_at: micros_to_time(r.get(3)?),
        blob: parse(4, r.get(4)?)?,
        image: r
            .get::<_, Option<String>>(5)?
            .map(|s| parse(5, s))
            .transpose()?,
    })
}

/// A remote row to record (or replace) with an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewRemote {
    pub url: String,
    pub etag: Option<String>,
    pub max_age: Option<u64>,
    /// The blob the URL was fetched as; the remote holds it.
    pub blob: Digest,
    pub image: Option<Digest>,
}

/// Records (or replaces) a remote inside the caller's transaction. Its blob
/// must have a row, and its image, if given.
pub(super) fn insert_remote(tx: &Connection, remote: &NewRemote, now: i64) -> Result<(), Error> {
    let blob_id: i64 = tx
        .query_row(
            "SELECT id FROM blobs WHERE digest = ?",
            [remote.blob.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sql("look up blob"))?
        .ok_or_else(|| Error::BlobNotFound(remote.blob.clone()))?;
    let image_id: Option<i64> = match &remote.image {
        None => None,
        Some(key) => Some(
            tx.query_row(
                "SELECT id FROM images WHERE key = ?",
                [key.to_string()],
                |r| r.get(0),
            )
            .map_err(Error::sql(format!("look up image {key}")))?,
        ),
    };
    // Replacing a remote releases its old blob (trigger) before the new
    // edge is made.
    tx.execute("DELETE FROM remotes WHERE url = ?", [&remote.url])
        .map_err(Error::sql("replace remote"))?;
    let id: i64 = tx
        .query_row(
            "INSERT INTO remotes (url, etag, max_age, downloaded_at, blob_id, image_id) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            params![
                remote.url,
                remote.etag,
                remote.max_age.map(|s| s as i64),
                now,
                blob_id,
                image_id
            ],
            |r| r.get(0),
        )
        .map_err(Error::sql(format!("record remote {}", remote.url)))?;
    tx.execute(
        "INSERT INTO refs (owner_kind, owner, blob_id) VALUES (?, ?, ?)",
        params![Owner::Remote, id, blob_id],
    )
    .map_err(Error::sql("reference remote blob"))?;
    Ok(())
}

impl Index {
    /// Records (or replaces) a remote on its own.
    pub fn set_remote(&self, remote: &NewRemote) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin remote"))?;
        insert_remote(&tx, remote, now_micros())?;
        tx.commit().map_err(Error::sql("commit remote"))
    }

    /// A `304` for a remote: its download time becomes now, its max-age
    /// the one the answer gave, and its ETag the answer's if it sent one —
    /// in one statement, so in one transaction (rkt left them stale, and
    /// every later fetch asked again). Returns the refreshed row; `None`
    /// if the URL has no row (any more) or no image.
    pub fn refresh_remote(
        &self,
        url: &str,
        etag: Option<&str>,
        max_age: Option<u64>,
    ) -> Result<Option<Remote>, Error> {
        let conn = self.conn()?;
        let changed = conn
            .execute(
                "UPDATE remotes SET downloaded_at = ?, max_age = ?, etag = COALESCE(?, etag) \
                 WHERE url = ? AND image_id IS NOT NULL",
                params![now_micros(), max_age.map(|s| s as i64), etag, url],
            )
            .map_err(Error::sql(format!("refresh remote {url}")))?;
        drop(conn);
        if changed == 0 {
            return Ok(None);
        }
        self.remote(url)
    }

    pub fn remote(&self, url: &str) -> Result<Option<Remote>, Error> {
        let conn = self.conn()?;
        conn.prepare_cached(&format!(
            "SELECT {REMOTE_COLUMNS} FROM remotes r JOIN blobs b ON b.id = r.blob_id WHERE r.url = ?"
        ))
        .and_then(|mut s| s.query_row([url], remote_row).optional())
        .map_err(Error::sql(format!("look up remote {url}")))
    }

    pub fn remotes(&self) -> Result<Vec<Remote>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {REMOTE_COLUMNS} FROM remotes r JOIN blobs b ON b.id = r.blob_id ORDER BY r.url"
            ))
            .map_err(Error::sql("list remotes"))?;
        stmt.query_map([], remote_row)
            .and_then(|rows| rows.collect())
            .map_err(Error::sql("list remotes"))
    }
}
