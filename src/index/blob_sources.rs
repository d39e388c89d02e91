//! Blob sources (migration 0007): which registry repositories a blob is
//! known to be in, so that a push can mount it from one of them instead of
//! uploading it again. A hint only: a source holds no reference, a registry
//! may have dropped the blob since, and a mount that fails falls back to an
//! upload.

use rusqlite::params;

use super::{Index, now_micros};
use crate::digest::Digest;
use crate::error::Error;

impl Index {
    /// Records that `registry` holds each of `digests` in `repository`.
    /// Digests without a blob row are passed over: there is nothing to
    /// push them from.
    pub fn record_blob_sources(
        &self,
        registry: &str,
        repository: &str,
        digests: &[Digest],
    ) -> Result<(), Error> {
        if digests.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = conn
            .transaction()
            .map_err(Error::sql("begin blob sources"))?;
        let now = now_micros();
        for digest in digests {
            tx.prepare_cached(
                "INSERT INTO blob_sources (blob_id, registry, repository, seen_at) \
                 SELECT id, ?2, ?3, ?4 FROM blobs WHERE digest = ?1 \
                 ON CONFLICT DO UPDATE SET seen_at = excluded.seen_at",
            )
            .and_then(|mut s| s.execute(params![digest.to_string(), registry, repository, now]))
            .map_err(Error::sql(format!("record where {digest} came from")))?;
        }
        tx.commit().map_err(Error::sql("commit blob sources"))
    }

    /// A repository of `registry` other than `except` that holds the blob,
    /// the one seen last; `None` if the store knows of none.
    pub fn blob_source(
        &self,
        digest: &Digest,
        registry: &str,
        except: &str,
    ) -> Result<Option<String>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.repository FROM blob_sources s JOIN blobs b ON b.id = s.blob_id \
                 WHERE b.digest = ? AND s.registry = ? AND s.repository <> ? \
                 ORDER BY s.seen_at DESC LIMIT 1",
            )
            .map_err(Error::sql("look up blob sources"))?;
        let mut rows = stmt
            .query(params![digest.to_string(), registry, except])
            .map_err(Error::sql("look up blob sources"))?;
        match rows.next().map_err(Error::sql("look up blob sources"))? {
            Some(row) => Ok(Some(row.get(0).map_err(Error::sql("read blob source"))?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::index::{Commit, NewBlob};

    #[test]
    fn a_source_is_found_in_another_repository_and_goes_with_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        let digest = Digest::of(Algorithm::Sha256, b"layer");
        let blob = NewBlob {
            digest: digest.clone(),
            size: 5,
            media_type: None,
            diff_id: None,
        };
        // A row held by nothing: the next gc takes it.
        index
            .commit(
                &Commit {
                    blobs: vec![blob],
                    ..Commit::default()
                },
                false,
            )
            .unwrap();
        let missing = Digest::of(Algorithm::Sha256, b"no row");
        index
            .record_blob_sources("r:5000", "a", &[digest.clone(), missing.clone()])
            .unwrap();
        index
            .record_blob_sources("r:5000", "b", std::slice::from_ref(&digest))
            .unwrap();
        assert_eq!(
            index
                .blob_source(&digest, "r:5000", "a")
                .unwrap()
                .as_deref(),
            Some("b")
        );
        assert!(
            index
                .blob_source(&digest, "r:5000", "c")
                .unwrap()
                .is_some_and(|r| r == "a" || r == "b")
        );
        assert_eq!(index.blob_source(&digest, "other:1", "c").unwrap(), None);
        assert_eq!(index.blob_source(&missing, "r:5000", "c").unwrap(), None);

        let conn = index.conn().unwrap();
        conn.execute("DELETE FROM blobs WHERE digest = ?", [digest.to_string()])
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM blob_sources", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "sources go with their blob row");
    }
}
