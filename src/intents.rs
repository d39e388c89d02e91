//! Intent files: how gc finds orphans without walking the blob tree.
//!
//! An orphan is a file in the tree that no index row names. Orphans arise
//! only where a file is renamed into the tree before a commit that names it
//! (an import or `put_blob` killed between the two), or removed after a
//! commit that dropped its row (gc or `fsck --repair` killed between the
//! two). So whoever is about to do either first writes the digests it may
//! leave behind to a file of its own in `<store>/intents/`:
//!
//! ```text
//! <store>/intents/4711-0-1a2b3c4d.intent
//!   sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//!   sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce…
//! ```
//!
//! The file is fsynced, and the directory with it, before the first rename
//! (or, for gc, before the commit), so no crash can leave an orphan that no
//! intent names. Once the commit is durable the writer unlinks its intent;
//! that unlink need not be durable, since gc reading a finished intent only
//! finds rows for every digest and deletes it.
//!
//! Writers hold the store lock shared from before their intent is written
//! until after it is unlinked, and gc holds it exclusive, so every intent gc
//! reads belongs to a writer that finished or died. A line cut short by a
//! crash can only come from a write that was never fsynced, before anything
//! was renamed, so gc skips lines that do not parse.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::blobs::sync_dir;
use crate::digest::Digest;
use crate::error::{Error, IoContext};

/// A durable record that some blob files may appear (or stay) in the tree
/// without a row. Dropping it keeps the file, for gc to act on: only
/// [`Intent::done`] removes it.
#[derive(Debug)]
pub(crate) struct Intent {
    path: PathBuf,
}

impl Intent {
    /// Writes and fsyncs an intent naming `digests` in `dir`; `None` if
    /// there are none (nothing to record, no fsync).
    pub fn record<'a>(
        dir: &Path,
        digests: impl IntoIterator<Item = &'a Digest>,
    ) -> Result<Option<Intent>, Error> {
        let mut text = String::new();
        for digest in digests {
            text.push_str(&digest.to_string());
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(None);
        }
        let (path, mut file) = create(dir)?;
        let intent = Intent { path };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            // Nothing was renamed yet: a partial intent is worth nothing, and
            // on a full disk it would be in the way.
            let _ = fs::remove_file(&intent.path);
            return Err(Error::io("write intent file", &intent.path, e));
        }
        sync_dir(dir)?;
        Ok(Some(intent))
    }

    /// Removes the intent once the index names everything it listed (or
    /// the files it listed are gone). Best effort: a leftover intent costs
    /// gc a few lookups, nothing more.
    pub fn done(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::debug!("cannot remove intent {}: {e}", self.path.display());
        }
    }
}

fn create(dir: &Path) -> Result<(PathBuf, File), Error> {
    crate::blobs::create_unique(dir, ".intent", "create intent file")
}

/// An intent left by a writer that finished or died, as gc reads it.
#[derive(Debug)]
pub(crate) struct Leftover {
    pub intent: Intent,
    pub digests: Vec<Digest>,
}

/// Every intent file in `dir` with the digests it names. Only for gc, under
/// the exclusive store lock.
pub(crate) fn leftovers(dir: &Path) -> Result<Vec<Leftover>, Error> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).ctx("read directory", dir)? {
        let path = entry.ctx("read directory", dir)?.path();
        if !path.is_file() {
            continue;
        }
        let text = fs::read(&path).ctx("read intent file", &path)?;
        let digests = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| Digest::parse(line.trim()).ok())
            .collect();
        found.push(Leftover {
            intent: Intent { path },
            digests,
        });
    }
    found.sort_by(|a, b| a.intent.path.cmp(&b.intent.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    #[test]
    fn an_intent_lists_its_digests_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Digest::of(Algorithm::Sha256, b"a");
        let b = Digest::of(Algorithm::Sha512, b"b");
        assert!(Intent::record(dir.path(), []).unwrap().is_none());
        let intent = Intent::record(dir.path(), [&a, &b]).unwrap().unwrap();
        // A second intent cut short mid-line, as a crash before its fsync
        // may leave it.
        let torn = dir.path().join("1-0-0.intent");
        fs::write(&torn, format!("{a}\nsha256:e3b0c442")).unwrap();
        let found = leftovers(dir.path()).unwrap();
        assert_eq!(found.len(), 2);
        let of = |p: &Path| {
            found
                .iter()
                .find(|l| l.intent.path == p)
                .map(|l| l.digests.clone())
                .unwrap()
        };
        assert_eq!(of(&intent.path), vec![a.clone(), b]);
        assert_eq!(of(&torn), vec![a]);
        let path = intent.path.clone();
        intent.done();
        assert!(!path.exists());
    }
}
