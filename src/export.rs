//! Export images as an OCI image layout that skopeo and umoci read.

use std::path::Path;

use crate::digest::Digest;
use crate::error::Error;
use crate::store::Store;

impl Store {
    /// Writes the images as one OCI image layout: a directory, or a tar
    /// file when `dest` ends in `.tar`.
    pub fn export(&self, keys: &[Digest], dest: &Path) -> Result<(), Error> {
        let _ = keys;
        Err(Error::Other(format!(
            "export to {} is not implemented yet",
            dest.display()
        )))
    }
}
