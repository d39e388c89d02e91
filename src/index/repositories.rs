//! What `serve` asks of the index: the distribution API's repositories are
//! image names, and their tags the tag rows `NAME:TAG` of OCI images. An
//! image imported with a name and a `version` label but no tag row (an OCI
//! layout whose `ref.name` was `NAME:VERSION`) is served by that version
//! too, so a tag is looked up in this order:
//!
//! 1. the tag row `NAME:TAG`, if it points at an OCI image;
//! 2. else the latest-by-name rule with `version=TAG` (DESIGN.md §4): the
//!    newest import of an OCI image named `NAME` with that label.
//!
//! ACIs are never answered: they are no OCI images.

use rusqlite::params;

use super::Index;
use super::images::{IMAGE_COLUMNS, query_images};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::ImageInfo;

/// Tag rows of a repository are `NAME:…`, the range from `NAME:` up to
/// `NAME;` (';' follows ':' in ASCII), read by one range scan of the tags
/// key. A row of another repository can fall in it (`a:5000/b:t` for `a`);
/// callers keep only valid tags, which those rows never give.
const TAG_RANGE: &str = "t.name > ?1 || ':' AND t.name < ?1 || ';'";

impl Index {
    /// The OCI image `repository:tag` names, by the rule of the module docs.
    pub fn repository_tag(&self, repository: &str, tag: &str) -> Result<Option<ImageInfo>, Error> {
        let conn = self.conn()?;
        let tagged = query_images(
            &conn,
            &format!(
                "SELECT {IMAGE_COLUMNS} FROM tags t JOIN images i ON i.id = t.image_id \
                 WHERE t.name = ?1 AND i.format = 'oci'"
            ),
            [format!("{repository}:{tag}")],
        )?;
        if let Some(info) = tagged.into_iter().next() {
            return Ok(Some(info));
        }
        Ok(query_images(
            &conn,
            &format!(
                "SELECT {IMAGE_COLUMNS} FROM images i \
                 JOIN labels l ON l.image_id = i.id AND l.name = 'version' AND l.value = ?2 \
                 WHERE i.name = ?1 AND i.format = 'oci' \
                 ORDER BY i.imported_at DESC, i.id DESC LIMIT 1"
            ),
            params![repository, tag],
        )?
        .pop())
    }

    /// The tags of a repository in byte order: those after `last`, at most
    /// `n` of them (all without `n`), keeping only those `valid` accepts;
    /// and whether more follow.
    pub fn repository_tags(
        &self,
        repository: &str,
        last: Option<&str>,
        n: Option<usize>,
        valid: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool), Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT tag FROM ( \
                   SELECT substr(t.name, length(?1) + 2) AS tag \
                   FROM tags t JOIN images i ON i.id = t.image_id \
                   WHERE {TAG_RANGE} AND i.format = 'oci' \
                   UNION \
                   SELECT l.value FROM images i \
                   JOIN labels l ON l.image_id = i.id AND l.name = 'version' \
                   WHERE i.name = ?1 AND i.format = 'oci') \
                 WHERE tag > ?2 ORDER BY tag"
            ))
            .map_err(Error::sql("list tags"))?;
        let mut rows = stmt
            .query(params![repository, last.unwrap_or("")])
            .map_err(Error::sql(format!("list tags of {repository}")))?;
        let mut tags = Vec::new();
        // Rows are read one at a time and the scan stops one past the page.
        while let Some(row) = rows
            .next()
            .map_err(Error::sql(format!("list tags of {repository}")))?
        {
            let tag: String = row.get(0).map_err(Error::sql("read tag"))?;
            if !valid(&tag) {
                continue;
            }
            if n.is_some_and(|n| tags.len() == n) {
                return Ok((tags, true));
            }
            tags.push(tag);
        }
        Ok((tags, false))
    }

    /// Whether a repository has an OCI image: one of that name, or one a
    /// tag of it points at.
    pub fn repository_exists(&self, repository: &str) -> Result<bool, Error> {
        let conn = self.conn()?;
        conn.prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM images WHERE name = ?1 AND format = 'oci') \
             OR EXISTS (SELECT 1 FROM tags t JOIN images i ON i.id = t.image_id \
                        WHERE {TAG_RANGE} AND i.format = 'oci')"
        ))
        .and_then(|mut s| s.query_row([repository], |r| r.get(0)))
        .map_err(Error::sql(format!("look up repository {repository}")))
    }

    /// Whether an image belongs to a repository: it has the repository's
    /// name, or a tag of the repository points at it.
    pub fn in_repository(&self, repository: &str, key: &Digest) -> Result<bool, Error> {
        let conn = self.conn()?;
        conn.prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM images WHERE key = ?2 AND name = ?1) \
             OR EXISTS (SELECT 1 FROM tags t JOIN images i ON i.id = t.image_id \
                        WHERE {TAG_RANGE} AND i.key = ?2)"
        ))
        .and_then(|mut s| s.query_row(params![repository, key.to_string()], |r| r.get(0)))
        .map_err(Error::sql(format!("look up {key} in {repository}")))
    }
}
