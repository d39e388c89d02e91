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

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::{Error, IoContext};
use crate::nofollow::{Dir, Kind};
use crate::signals::Critical;

/// An intent file holds a few digests per blob of one commit; one larger
/// than this was not written by a store.
const MAX_INTENT: u64 = 64 << 20;

/// A durable record that some blob files may appear (or stay) in the tree
/// without a row. Dropping it keeps the file, for gc to act on: only
/// [`Intent::done`] removes it.
///
/// While a new intent is held, the process is between its first rename
/// into the tree (or gc's row-deleting commit) and the commit (or unlinks)
/// that settle it: SIGINT and SIGTERM wait for it to be done, dropped or
/// [`settled`](Intent::settled) ([`crate::signals`]).
#[derive(Debug)]
pub(crate) struct Intent {
    dir: Arc<Dir>,
    name: OsString,
    critical: Option<Critical>,
}

impl Intent {
    /// Writes and fsyncs an intent naming `digests` in `dir`; `None` if
    /// there are none (nothing to record, no fsync).
    pub fn record<'a>(
        dir: &Arc<Dir>,
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
        // Before the file exists: an interruption from here on waits for
        // the commit this intent guards.
        let critical = Critical::enter();
        let (name, mut file) = crate::blobs::create_unique(dir, ".intent", "create intent file")?;
        let intent = Intent {
            dir: Arc::clone(dir),
            name,
            critical: Some(critical),
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            // Nothing was renamed yet: a partial intent is worth nothing, and
            // on a full disk it would be in the way.
            let path = intent.path();
            intent.done();
            return Err(Error::io("write intent file", &path, e));
        }
        dir.sync()?;
        Ok(Some(intent))
    }

    fn path(&self) -> PathBuf {
        self.dir.child_path(&self.name)
    }

    /// The work this intent guards is finished, though the intent stays
    /// until later (gc drops its intents once their shards are fsynced):
    /// an interruption need not wait for it any more.
    pub fn settled(mut self) -> Intent {
        self.critical = None;
        self
    }

    /// Removes the intent once the index names everything it listed (or
    /// the files it listed are gone). Best effort: a leftover intent costs
    /// gc a few lookups, nothing more.
    pub fn done(self) {
        if let Err(e) = self.dir.remove(&self.name) {
            tracing::debug!("cannot remove intent {}: {e}", self.path().display());
        }
    }
}

/// An intent left by a writer that finished or died, as gc reads it.
#[derive(Debug)]
pub(crate) struct Leftover {
    pub intent: Intent,
    pub digests: Vec<Digest>,
}

/// Every intent file in `dir` with the digests it names. Only for gc, under
/// the exclusive store lock. Entries that are not regular files (links
/// among them) are left alone: no writer makes them.
pub(crate) fn leftovers(dir: &Arc<Dir>) -> Result<Vec<Leftover>, Error> {
    let mut found = Vec::new();
    for entry in dir.entries()? {
        if entry.kind != Kind::File {
            continue;
        }
        let path = dir.child_path(&entry.name);
        let mut text = Vec::new();
        dir.open_file(&entry.name)?
            .take(MAX_INTENT)
            .read_to_end(&mut text)
            .ctx("read intent file", &path)?;
        let digests = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| Digest::parse(line.trim()).ok())
            .collect();
        found.push(Leftover {
            intent: Intent {
                dir: Arc::clone(dir),
                name: entry.name,
                critical: None,
            },
            digests,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    #[test]
    fn an_intent_lists_its_digests_and_a_torn_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(Dir::open_root(tmp.path()).unwrap());
        let a = Digest::of(Algorithm::Sha256, b"a");
        let b = Digest::of(Algorithm::Sha512, b"b");
        assert!(Intent::record(&dir, []).unwrap().is_none());
        let intent = Intent::record(&dir, [&a, &b]).unwrap().unwrap();
        // A second intent cut short mid-line, as a crash before its fsync
        // may leave it.
        let torn = tmp.path().join("1-0-0.intent");
        std::fs::write(&torn, format!("{a}\nsha256:e3b0c442")).unwrap();
        let found = leftovers(&dir).unwrap();
        assert_eq!(found.len(), 2);
        let of = |p: &std::path::Path| {
            found
                .iter()
                .find(|l| l.intent.path() == p)
                .map(|l| l.digests.clone())
                .unwrap()
        };
        assert_eq!(of(&intent.path()), vec![a.clone(), b]);
        assert_eq!(of(&torn), vec![a]);
        let path = intent.path();
        intent.done();
        assert!(!path.exists());
    }
}
