//! The one way into the store. Every writer — an import, `put_blob`, a
//! download, a pull, an upload to `serve` — stages its blobs in temp files
//! (hashed as they are written, so each is named by its digest) and then
//! hands them with the rows that name them to one [`Publication::commit`],
//! which keeps the durability order of DESIGN.md §3.2:
//!
//! 1. record an intent naming every staged blob the tree lacks
//!    ([`crate::intents`]), fsynced, so no crash can leave an orphan that
//!    gc cannot find;
//! 2. publish the blobs: fsync each temp file (unless its writer did, see
//!    [`StagedBlob::make_durable`]), rename it into its shard, then fsync
//!    each directory changed, once;
//! 3. commit the rows in one transaction, durable on disk when anything was
//!    renamed (the intent goes next, and the rows must outlive it);
//! 4. remove the intent.
//!
//! A crash before 3 leaves at worst orphans that the intent names; a crash
//! after 3 leaves a finished import and a stale intent, which gc drops.
//! Staged blobs that no row names are dropped with their temp files, and
//! so is everything if the publication is dropped without a commit.
//!
//! Rendered trees the store keeps take the same road (the blob path above
//! is unchanged by them): a [`StagedTree`] is rendered and made durable
//! under a temp name in `trees/`, then published in step 2 — renamed to its
//! final name, `trees/` fsynced — before the rows name it in step 3, whose
//! commit is then durable too. They need no intent: gc finds a directory
//! no row names by listing `trees/`, which holds one entry per tree. A tree
//! published but not committed (the commit failed) is removed again.

use std::collections::HashMap;

use crate::blobs::{BlobTree, BlobWriter, StagedBlob};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::image::ImageInfo;
use crate::index::{Commit, Index};
use crate::intents::Intent;
use crate::render::StagedTree;

/// Blobs staged for one commit.
pub(crate) struct Publication<'s> {
    tree: &'s BlobTree,
    index: &'s Index,
    staged: HashMap<Digest, StagedBlob>,
    trees: Vec<StagedTree>,
}

impl<'s> Publication<'s> {
    pub fn new(tree: &'s BlobTree, index: &'s Index) -> Self {
        Publication {
            tree,
            index,
            staged: HashMap::new(),
            trees: Vec::new(),
        }
    }

    /// Starts a new blob in a temp file, hashed with `algorithm` as it is
    /// written; [`stage`](Self::stage) it once finished.
    pub fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter, Error> {
        self.tree.writer(algorithm)
    }

    /// Adds a finished blob; returns its digest. A second copy of a digest
    /// already staged is dropped (its temp file removed).
    pub fn stage(&mut self, blob: StagedBlob) -> Digest {
        let digest = blob.digest.clone();
        self.staged.entry(digest.clone()).or_insert(blob);
        digest
    }

    /// Adds finished blobs, as [`stage`](Self::stage) does.
    pub fn stage_all(&mut self, blobs: impl IntoIterator<Item = StagedBlob>) {
        for blob in blobs {
            self.stage(blob);
        }
    }

    /// Adds a rendered tree, durable under its temp name, for a row of
    /// [`Commit::trees`] to record under its final one.
    pub fn stage_tree(&mut self, tree: StagedTree) {
        self.trees.push(tree);
    }

    /// Makes the staged blobs the rows name durable in the tree, then
    /// commits the rows in one transaction (the order at the top of this
    /// module). Every blob the rows name must be staged here or be in the
    /// tree already. Returns the images as recorded.
    pub fn commit(mut self, rows: &Commit) -> Result<Vec<ImageInfo>, Error> {
        let mut staged = Vec::new();
        for digest in rows.blobs() {
            match self.staged.remove(digest) {
                Some(blob) => staged.push(blob),
                // The index must never name a blob whose file is missing
                // (invariant 2), whatever a writer believed.
                None if !self.tree.contains(digest) => {
                    return Err(Error::BlobNotFound(digest.clone()));
                }
                None => {}
            }
        }
        // A stable order: not needed for safety, only for repeatable traces.
        staged.sort_by(|a, b| a.digest.cmp(&b.digest));
        let intent = Intent::record(
            self.tree.intents_dir(),
            staged
                .iter()
                .map(|b| &b.digest)
                .filter(|d| !self.tree.contains(d)),
        )?;
        crate::blobs::publish_all(self.tree, staged)?;
        // Every tree a row names must be staged here; unnamed ones are
        // dropped (and removed) with the publication.
        let mut trees = Vec::new();
        for row in &rows.trees {
            let Some(i) = self.trees.iter().position(|t| t.id() == row.name) else {
                return Err(Error::Internal(format!(
                    "tree {} committed without being staged",
                    row.name
                )));
            };
            let mut tree = self.trees.swap_remove(i);
            tree.publish()?;
            trees.push(tree);
        }
        // On failure the published trees drop, and are removed.
        let images = self
            .index
            .commit(rows, intent.is_some() || !trees.is_empty())?;
        for tree in trees {
            tree.keep();
        }
        if let Some(intent) = intent {
            intent.done();
        }
        Ok(images)
    }
}
