//! `prune`: remove images not used lately, keeping the newest of each name.
//!
//! "Used" is recorded by every command that uses an image: `latest`,
//! `manifest`, `cat` of any blob the image holds, re-import, and `render`
//! (which also records the use of the tree it hands out; unused trees are
//! pruned by [`Store::prune_trees`]).

use std::time::Duration;

use crate::error::Error;
use crate::image::ImageInfo;
use crate::store::Store;

impl Store {
    /// Removes images unused for `unused_for`, keeping the newest `keep`
    /// images of each name; returns the removed images. Their blobs become
    /// garbage for the next gc; their trees are removed with them.
    pub fn prune(&self, unused_for: Duration, keep: usize) -> Result<Vec<ImageInfo>, Error> {
        let unused = i64::try_from(unused_for.as_micros()).unwrap_or(i64::MAX);
        let cutoff = crate::index::now_micros().saturating_sub(unused);
        let (images, trees) = self.index.prune(cutoff, keep)?;
        self.remove_tree_dirs(&trees)?;
        Ok(images)
    }
}
