//! OCI image layouts (a directory, or a tar of one: oci-archive).

use std::path::Path;

use super::Importer;
use crate::error::Error;
use crate::image::ImageInfo;

pub(super) fn import(_ctx: &Importer, path: &Path, _is_dir: bool) -> Result<Vec<ImageInfo>, Error> {
    Err(Error::bad_archive(
        path,
        "OCI import is not implemented yet",
    ))
}
