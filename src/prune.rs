//! `prune`: remove images not used lately, keeping the newest of each name.
//!
//! "Used" is recorded by every command that uses an image: `latest`,
//! `manifest`, `cat` of any blob the image holds, and re-import.

use std::time::Duration;

use crate::error::Error;
use crate::image::ImageInfo;
use crate::store::Store;

impl Store {
    /// Removes images unused for `unused_for`, keeping the newest `keep`
    /// images of each name; returns the removed images. Their blobs become
    /// garbage for the next gc.
    pub fn prune(&self, unused_for: Duration, keep: usize) -> Result<Vec<ImageInfo>, Error> {
        let unused = i64::try_from(unused_for.as_micros()).unwrap_or(i64::MAX);
        let cutoff = crate::index::now_micros().saturating_sub(unused);
        self.index.prune(cutoff, keep)
    }
}
