//! `prune`: remove images not used lately, keeping the newest of each name.

use std::time::Duration;

use crate::error::Error;
use crate::image::ImageInfo;
use crate::store::Store;

impl Store {
    /// Removes images unused for `unused_for`, keeping the newest `keep`
    /// images of each name; returns the removed images.
    pub fn prune(&self, unused_for: Duration, keep: usize) -> Result<Vec<ImageInfo>, Error> {
        let _ = (unused_for, keep);
        Err(Error::Other("prune is not implemented yet".into()))
    }
}
