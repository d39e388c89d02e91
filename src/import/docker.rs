//! `docker save` archives, current (OCI layout + manifest.json) and legacy.

use std::path::Path;

use super::Importer;
use crate::error::Error;
use crate::image::ImageInfo;

pub(super) fn import(_ctx: &Importer, path: &Path) -> Result<Vec<ImageInfo>, Error> {
    Err(Error::bad_archive(
        path,
        "docker archive import is not implemented yet",
    ))
}
