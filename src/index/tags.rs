//! Tags: mutable names `NAME:TAG` pointing to images, updated by
//! compare-and-set inside one write transaction, so concurrent updates
//! serialise and none is lost.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Index, now_micros};
use crate::digest::Digest;
use crate::error::Error;

/// Points `tag` at the image `key` inside the caller's transaction.
pub(super) fn set_tag(tx: &Connection, tag: &str, key: &Digest, now: i64) -> Result<(), Error> {
    let image_id: i64 = tx
        .query_row(
            "SELECT id FROM images WHERE key = ?",
            [key.to_string()],
            |r| r.get(0),
        )
        .map_err(Error::sql(format!("look up image {key}")))?;
    tx.prepare_cached(
        "INSERT INTO tags (name, image_id, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET image_id = ?2, updated_at = ?3",
    )
    .and_then(|mut s| s.execute(params![tag, image_id, now]))
    .map_err(Error::sql(format!("set tag {tag}")))?;
    Ok(())
}

impl Index {
    pub fn tag_target(&self, tag: &str) -> Result<Option<Digest>, Error> {
        let conn = self.conn()?;
        let key: Option<String> = conn
            .prepare_cached(
                "SELECT i.key FROM tags t JOIN images i ON i.id = t.image_id WHERE t.name = ?",
            )
            .and_then(|mut s| s.query_row([tag], |r| r.get(0)).optional())
            .map_err(Error::sql(format!("look up tag {tag}")))?;
        Ok(key.map(|k| Digest::parse(&k)).transpose()?)
    }

    /// Points `tag` at `key`. With `expect`, the update happens only if the
    /// tag currently points at that key (`None` inside: the tag must not
    /// exist yet).
    pub fn set_tag(
        &self,
        tag: &str,
        key: &Digest,
        expect: Option<Option<&Digest>>,
    ) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(Error::sql("begin tag"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT i.key FROM tags t JOIN images i ON i.id = t.image_id WHERE t.name = ?",
                [tag],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::sql(format!("look up tag {tag}")))?;
        if let Some(expected) = expect {
            let expected = expected.map(Digest::to_string);
            if current != expected {
                return Err(Error::TagConflict {
                    tag: tag.to_string(),
                    expected: expected.unwrap_or_else(|| "(no tag)".into()),
                    actual: current.unwrap_or_else(|| "(no tag)".into()),
                });
            }
        }
        set_tag(&tx, tag, key, now_micros())?;
        tx.commit().map_err(Error::sql("commit tag"))
    }

    pub fn remove_tag(&self, tag: &str) -> Result<bool, Error> {
        let conn = self.conn()?;
        let n = conn
            .execute("DELETE FROM tags WHERE name = ?", [tag])
            .map_err(Error::sql(format!("remove tag {tag}")))?;
        Ok(n > 0)
    }

    pub fn tags_of(&self, key: &Digest) -> Result<Vec<String>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT t.name FROM tags t JOIN images i ON i.id = t.image_id WHERE i.key = ? ORDER BY t.name",
            )
            .map_err(Error::sql("list tags"))?;
        stmt.query_map([key.to_string()], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(Error::sql("list tags"))
    }
}
