//! Image rows: commit an imported image with its closure, look images up by
//! key prefix and by name, list and remove them.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Owner;
use super::blobs::{NewBlob, upsert_blob};
use super::{Index, now_micros};
use crate::digest::{Digest, KeyPrefix};
use crate::error::{Error, ResolveError};
use crate::image::{ImageFormat, ImageInfo, Label};

/// Uses of an image are recorded to the minute: `prune --unused-for`
/// counts in hours and days, and a lookup should not write on every call.
pub(crate) const USE_RESOLUTION_MICROS: i64 = 60_000_000;

/// An imported image, ready to be committed. Every blob it names has been
/// published to the tree already (invariant 2).
#[derive(Debug, Clone)]
pub(crate) struct NewImage {
    pub key: Digest,
    pub format: ImageFormat,
    pub name: String,
    pub labels: Vec<Label>,
    pub manifest: Digest,
    pub size: u64,
    /// Every blob of the closure, with its metadata.
    pub blobs: Vec<NewBlob>,
    /// Blobs the image row holds directly.
    pub roots: Vec<Digest>,
    /// Edges between blobs: (parent, child), such as manifest -> layer.
    pub links: Vec<(Digest, Digest)>,
    pub latest: bool,
}

/// What `images` lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageFilter {
    pub name: Option<String>,
    pub labels: Vec<Label>,
}

pub(super) const IMAGE_COLUMNS: &str = "i.id, i.key, i.name, i.format, i.imported_at, i.last_used, \
     i.latest, i.size, (SELECT digest FROM blobs WHERE id = i.manifest)";

pub(crate) fn micros_to_time(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

fn digest_column(row: &Row, idx: usize) -> rusqlite::Result<Digest> {
    let s: String = row.get(idx)?;
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn image_row(row: &Row) -> rusqlite::Result<(i64, ImageInfo)> {
    let format: String = row.get(3)?;
    Ok((
        row.get(0)?,
        ImageInfo {
            key: digest_column(row, 1)?,
            name: row.get(2)?,
            format: ImageFormat::from_db(&format),
            labels: Vec::new(),
            imported_at: micros_to_time(row.get(4)?),
            last_used: micros_to_time(row.get(5)?),
            latest: row.get(6)?,
            size: row.get::<_, i64>(7)? as u64,
            manifest: digest_column(row, 8)?,
        },
    ))
}

fn load_labels(conn: &Connection, id: i64, info: &mut ImageInfo) -> Result<(), Error> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM labels WHERE image_id = ? ORDER BY name")
        .map_err(Error::sql("read labels"))?;
    info.labels = stmt
        .query_map([id], |r| {
            Ok(Label::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(Error::sql("read labels"))?;
    Ok(())
}

pub(super) fn query_images(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<ImageInfo>, Error> {
    let mut stmt = conn
        .prepare_cached(sql)
        .map_err(Error::sql("query images"))?;
    let rows: Vec<(i64, ImageInfo)> = stmt
        .query_map(params, image_row)
        .and_then(|rows| rows.collect())
        .map_err(Error::sql("query images"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, mut info) in rows {
        load_labels(conn, id, &mut info)?;
        out.push(info);
    }
    Ok(out)
}

/// Records an image with its blob rows and reference edges inside the
/// caller's transaction (invariant 3: the transaction commits all of it or
/// none). Re-importing an image keeps its row, its import time and its
/// labels; `latest` can only be raised. Returns the image's row id.
pub(super) fn insert_image(tx: &Connection, image: &NewImage, now: i64) -> Result<i64, Error> {
    let mut ids = std::collections::HashMap::new();
    for blob in &image.blobs {
        ids.insert(blob.digest.clone(), upsert_blob(tx, blob, now)?);
    }
    let id_of = |d: &Digest| -> Result<i64, Error> {
        ids.get(d).copied().ok_or_else(|| {
            Error::Internal(format!(
                "image {} names blob {d} it does not carry",
                image.key
            ))
        })
    };
    for (parent, child) in &image.links {
        let (parent, child) = (id_of(parent)?, id_of(child)?);
        tx.prepare_cached(
            "INSERT INTO refs (owner_kind, owner, blob_id) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![Owner::Blob, parent, child]))
        .map_err(Error::sql("link blobs"))?;
    }
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM images WHERE key = ?",
            [image.key.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sql("look up image"))?;
    if let Some(id) = existing {
        tx.execute(
            "UPDATE images SET latest = MAX(latest, ?), last_used = ? WHERE id = ?",
            params![image.latest, now, id],
        )
        .map_err(Error::sql("update image"))?;
        return Ok(id);
    }
    let id: i64 = tx
        .query_row(
            "INSERT INTO images (key, format, name, manifest, imported_at, last_used, latest, size) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            params![
                image.key.to_string(),
                image.format.as_str(),
                image.name,
                id_of(&image.manifest)?,
                now,
                now,
                image.latest,
                image.size as i64
            ],
            |r| r.get(0),
        )
        .map_err(Error::sql("insert image"))?;
    for label in &image.labels {
        tx.prepare_cached(
            "INSERT INTO labels (image_id, name, value) VALUES (?, ?, ?) \
             ON CONFLICT DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut s| s.execute(params![id, label.name, label.value]))
        .map_err(Error::sql("insert label"))?;
    }
    for root in &image.roots {
        let root = id_of(root)?;
        tx.prepare_cached(
            "INSERT INTO refs (owner_kind, owner, blob_id) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![Owner::Image, id, root]))
        .map_err(Error::sql("reference blob"))?;
    }
    Ok(id)
}

impl Index {
    pub(super) fn image_by_id(&self, conn: &Connection, id: i64) -> Result<ImageInfo, Error> {
        query_images(
            conn,
            &format!("SELECT {IMAGE_COLUMNS} FROM images i WHERE i.id = ?"),
            [id],
        )?
        .pop()
        .ok_or_else(|| Error::Internal(format!("image row {id} vanished")))
    }

    pub fn image(&self, key: &Digest) -> Result<Option<ImageInfo>, Error> {
        let conn = self.conn()?;
        Ok(query_images(
            &conn,
            &format!("SELECT {IMAGE_COLUMNS} FROM images i WHERE i.key = ?"),
            [key.to_string()],
        )?
        .pop())
    }

    /// Resolves a key prefix against image keys with a range scan of the
    /// unique index on `images.key`.
    pub fn resolve_image_prefix(&self, prefix: &KeyPrefix) -> Result<Digest, Error> {
        resolve_prefix(self, prefix, "images", "key")
    }

    /// The same against blob digests.
    pub fn resolve_blob_prefix(&self, prefix: &KeyPrefix) -> Result<Digest, Error> {
        resolve_prefix(self, prefix, "blobs", "digest")
    }

    /// The best image of a name carrying every given label (DESIGN.md §4):
    /// without a `version` label, an image flagged latest beats a newer
    /// import; otherwise the newest import wins.
    pub fn latest_by_name(&self, name: &str, labels: &[Label]) -> Result<Option<ImageInfo>, Error> {
        let conn = self.conn()?;
        let by_version = labels.iter().any(|l| l.name == "version");
        let (sql, args) = select_images(
            Some(name),
            labels,
            if by_version {
                "i.imported_at DESC, i.id DESC LIMIT 1"
            } else {
                "i.latest DESC, i.imported_at DESC, i.id DESC LIMIT 1"
            },
        );
        Ok(query_images(&conn, &sql, rusqlite::params_from_iter(args))?.pop())
    }

    pub fn images(&self, filter: &ImageFilter) -> Result<Vec<ImageInfo>, Error> {
        let conn = self.conn()?;
        let (sql, args) = select_images(
            filter.name.as_deref(),
            &filter.labels,
            "i.name, i.imported_at, i.id",
        );
        query_images(&conn, &sql, rusqlite::params_from_iter(args))
    }

    /// Records that an image was used now (for `prune --unused-for`),
    /// unless a use within [`USE_RESOLUTION_MICROS`] is on record already.
    pub fn touch(&self, key: &Digest) -> Result<(), Error> {
        let conn = self.conn()?;
        let now = now_micros();
        conn.prepare_cached("UPDATE images SET last_used = ?1 WHERE key = ?2 AND last_used < ?3")
            .and_then(|mut s| s.execute(params![now, key.to_string(), now - USE_RESOLUTION_MICROS]))
            .map_err(Error::sql("record last use"))?;
        Ok(())
    }

    /// [`touch`](Self::touch) for an image just read: no write at all when
    /// its row shows a recent use, so that a hot lookup neither waits for
    /// the write lock behind an import nor now and then pays for a WAL
    /// checkpoint (`latest` at 100,000 images: a 0.44 s worst case when
    /// every call wrote).
    pub fn touch_image(&self, info: &ImageInfo) -> Result<(), Error> {
        let since = Utc::now().signed_duration_since(info.last_used);
        if since
            .num_microseconds()
            .is_some_and(|m| m < USE_RESOLUTION_MICROS)
        {
            return Ok(());
        }
        self.touch(&info.key)
    }
}

/// A query for images of an optional name that carry every given label
/// (each checked through the labels primary key), in the given order.
fn select_images(name: Option<&str>, labels: &[Label], order: &str) -> (String, Vec<String>) {
    let mut sql = format!("SELECT {IMAGE_COLUMNS} FROM images i WHERE 1");
    let mut args: Vec<String> = Vec::new();
    if let Some(name) = name {
        args.push(name.to_string());
        sql.push_str(&format!(" AND i.name = ?{}", args.len()));
    }
    for label in labels {
        args.push(label.name.clone());
        args.push(label.value.clone());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM labels l WHERE l.image_id = i.id AND l.name = ?{} AND l.value = ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(order);
    (sql, args)
}

fn resolve_prefix(
    index: &Index,
    prefix: &KeyPrefix,
    table: &str,
    column: &str,
) -> Result<Digest, Error> {
    let conn = index.conn()?;
    let mut found: Vec<String> = Vec::new();
    let sql =
        format!("SELECT {column} FROM {table} WHERE {column} >= ?1 AND {column} < ?2 LIMIT 2");
    let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} >= ?1 AND {column} < ?2");
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(Error::sql("resolve key prefix"))?;
    for alg in prefix.algorithms() {
        let (low, high) = prefix.range(alg);
        let rows = stmt
            .query_map([&low, &high], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(Error::sql("resolve key prefix"))?;
        found.extend(rows);
    }
    match found.as_slice() {
        [] => Err(ResolveError::NotFound(prefix.clone()).into()),
        [one] => Ok(Digest::parse(one)?),
        _ => {
            let mut count = 0u64;
            for alg in prefix.algorithms() {
                let (low, high) = prefix.range(alg);
                let n: i64 = conn
                    .query_row(&count_sql, [&low, &high], |r| r.get(0))
                    .map_err(Error::sql("count key prefix matches"))?;
                count += n as u64;
            }
            Err(ResolveError::Ambiguous {
                prefix: prefix.clone(),
                count,
            }
            .into())
        }
    }
}
