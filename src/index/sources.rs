//! Sources: the files ACIs were imported from, by identity, so that a
//! re-import of an unchanged file skips the decompress-and-hash pass that
//! finding its key would otherwise take.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use rusqlite::{OptionalExtension, params};

use super::{Index, now_micros};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::ImageInfo;

/// What identifies a file's bytes without reading them: the same inode with
/// the same size, mtime and ctime. Writing to a file changes its ctime (which
/// no call can set back), and replacing it changes its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: i64,
    ino: i64,
    size: i64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileIdentity {
    pub fn of(meta: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev() as i64,
            ino: meta.ino() as i64,
            size: meta.size() as i64,
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

impl Index {
    /// The image last imported from this very file, if it is unchanged.
    pub fn source_image(&self, file: &FileIdentity) -> Result<Option<Digest>, Error> {
        let conn = self.conn()?;
        let key: Option<String> = conn
            .prepare_cached(
                "SELECT i.key FROM sources s JOIN images i ON i.id = s.image_id \
                 WHERE s.dev = ? AND s.ino = ? AND s.size = ? AND s.mtime_ns = ? AND s.ctime_ns = ?",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![file.dev, file.ino, file.size, file.mtime_ns, file.ctime_ns],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(Error::sql("look up source file"))?;
        Ok(key.map(|k| Digest::parse(&k)).transpose()?)
    }

    /// Records (or replaces) the image a file produced.
    pub fn record_source(&self, file: &FileIdentity, key: &Digest) -> Result<(), Error> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO sources (dev, ino, size, mtime_ns, ctime_ns, image_id) \
             SELECT ?, ?, ?, ?, ?, id FROM images WHERE key = ?",
        )
        .and_then(|mut s| {
            s.execute(params![
                file.dev,
                file.ino,
                file.size,
                file.mtime_ns,
                file.ctime_ns,
                key.to_string()
            ])
        })
        .map_err(Error::sql("record source file"))?;
        Ok(())
    }

    /// A re-import of an image the store has: keeps its import time, raises
    /// its latest flag if asked, records the use.
    pub fn reimport(&self, key: &Digest, latest: bool) -> Result<Option<ImageInfo>, Error> {
        let conn = self.conn()?;
        let id: Option<i64> = conn
            .query_row(
                "UPDATE images SET latest = MAX(latest, ?), last_used = ? WHERE key = ? RETURNING id",
                params![latest, now_micros(), key.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::sql(format!("update image {key}")))?;
        id.map(|id| self.image_by_id(&conn, id)).transpose()
    }
}
