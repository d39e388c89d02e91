//! Why a render failed. Each error names what failed — the target, the
//! image, the layer (by position and digest) and the member (by its name in
//! the archive) — so that the command line prints one line a user can act
//! on.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::image::Label;

/// A layer as error messages name it: its place in the image and its
/// digest, e.g. `layer 2 of 3 (sha256:…)` or `ACI example.com/base
/// (sha512-…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerName {
    /// What the layer is: `layer 2 of 3`, `ACI example.com/base`.
    pub what: String,
    /// The layer blob (an OCI layer, or an ACI's tar).
    pub digest: Digest,
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.digest)
    }
}

/// Why [`Store::render`](crate::Store::render) failed: the target, the
/// image (a platform, a blob, a dependency), or a layer and member of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The target directory has something in it.
    #[error("{}: the directory is not empty; render writes into a new or empty directory", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The target exists and is not a directory.
    #[error("{}: exists and is not a directory", path.display())]
    TargetNotDirectory {
        /// The target.
        path: PathBuf,
    },
    /// The target could not be made, opened or written.
    #[error("cannot {action} {}", path.display())]
    Target {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        cause: io::Error,
    },
    /// A multi-platform image has no image for the platform.
    #[error(
        "image {image} has no manifest for {wanted} (it has {})",
        or_none(available)
    )]
    NoPlatform {
        /// The image.
        image: Digest,
        /// The platform wanted.
        wanted: String,
        /// The platforms it has.
        available: Vec<String>,
    },
    /// A single-platform image is for another platform than the one asked.
    #[error("image {image} is for {found}, not {wanted}")]
    WrongPlatform {
        /// The image.
        image: Digest,
        /// The platform asked for.
        wanted: String,
        /// The image's platform.
        found: String,
    },
    /// The image's stored documents make no root filesystem.
    #[error("image {image}: {reason}")]
    BadImage {
        /// The image.
        image: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A blob the render needs is not in the store.
    #[error(
        "image {image}: its {what} {digest} is not in the store (was it imported with --allow-missing?)"
    )]
    MissingBlob {
        /// The image.
        image: Digest,
        /// Which blob: `layer 2`, `config`.
        what: String,
        /// The blob.
        digest: Digest,
    },
    /// A layer of a media type that is no tar.
    #[error("{layer}: media type {media_type:?} is not a layer imgstore can render")]
    UnknownMediaType {
        /// The layer.
        layer: LayerName,
        /// Its media type.
        media_type: String,
    },
    /// A layer's uncompressed bytes do not hash to the config's diff_id.
    #[error("{layer}: its uncompressed bytes hash to {found}, not to {expected} as the image says")]
    DigestMismatch {
        /// The layer.
        layer: LayerName,
        /// The diff_id the config names.
        expected: Digest,
        /// What the bytes hash to.
        found: Digest,
    },
    /// A layer as a whole is bad.
    #[error("{layer}: {problem}")]
    BadLayer {
        /// The layer.
        layer: LayerName,
        /// What is wrong.
        problem: LayerProblem,
    },
    /// A member of a layer is refused.
    #[error("{layer}: member {member:?}: {problem}")]
    BadMember {
        /// The layer.
        layer: LayerName,
        /// The member's name in the layer.
        member: String,
        /// What is wrong.
        problem: MemberProblem,
    },
    /// Writing a member into the target failed.
    #[error("{layer}: member {member:?}: cannot {action}")]
    Write {
        /// The layer.
        layer: LayerName,
        /// The member's name in the layer.
        member: String,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        cause: io::Error,
    },
    /// An appc dependency is not in the store.
    #[error("image {image} ({name}) depends on {dependency}, which is not in the store")]
    MissingDependency {
        /// The image depending on it.
        image: Digest,
        /// That image's name.
        name: String,
        /// The dependency as its manifest names it.
        dependency: Box<DependencySpec>,
    },
    /// An appc dependency given by image ID is an image of another name.
    #[error("image {image} ({name}): dependency {dependency} is an image named {found}")]
    DependencyNameMismatch {
        /// The image depending on it.
        image: Digest,
        /// That image's name.
        name: String,
        /// The dependency as its manifest names it.
        dependency: Box<DependencySpec>,
        /// The name of the image its ID leads to.
        found: String,
    },
    /// appc dependencies that loop or nest too deep.
    #[error("image {image} ({name}): its dependencies {reason}")]
    BadDependencies {
        /// The image.
        image: Digest,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A dependency as an appc image manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencySpec {
    /// The image name (`imageName`).
    pub name: String,
    /// The labels it must carry.
    pub labels: Vec<Label>,
    /// The image ID, when given.
    pub image_id: Option<Digest>,
}

impl fmt::Display for DependencySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(Label::to_string).collect();
            write!(f, " with labels {}", labels.join(","))?;
        }
        if let Some(id) = &self.image_id {
            write!(f, " and image ID {id}")?;
        }
        Ok(())
    }
}

/// What is wrong with a layer as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerProblem {
    /// The tar ends inside a member.
    #[error("it is truncated: its tar ends inside a member")]
    Truncated,
    /// The blob cannot be read or decompressed.
    #[error("cannot read or decompress it (truncated or corrupt): {0}")]
    Read(io::Error),
    /// A tar header is invalid.
    #[error("not a valid tar archive: the header at offset {offset} has {reason}")]
    BadHeader {
        /// Where the header starts in the uncompressed tar.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What is wrong with one member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberProblem {
    /// `.wh.`, `.wh..` or `.wh...`.
    #[error("a whiteout must name a file (.wh., .wh.. and .wh... do not)")]
    MalformedWhiteout,
    /// A NUL byte in the name.
    #[error("its name holds a NUL byte")]
    NulInName,
    /// A name or link target over 4096 bytes.
    #[error("its name or link target is longer than 4096 bytes")]
    NameTooLong,
    /// The root given as something other than a directory.
    #[error("the root directory can only be a directory")]
    RootNotDirectory,
    /// An entry type the render does not make.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// A symlink without a target.
    #[error("a symlink needs a target")]
    EmptyLinkTarget,
    /// A hard link to a path nothing was written to.
    #[error("hard link to {target:?}, which does not exist")]
    HardLinkTargetMissing {
        /// The link's target.
        target: String,
    },
    /// A hard link to a directory.
    #[error("hard link to {target:?}, which is a directory")]
    HardLinkToDirectory {
        /// The link's target.
        target: String,
    },
    /// An ACI's hard link out of `rootfs/`.
    #[error("hard link to {target:?}, which is outside rootfs/")]
    HardLinkOutsideRootfs {
        /// The link's target.
        target: String,
    },
    /// A uid or gid beyond 32 bits.
    #[error("owner {uid}:{gid} is out of range")]
    OwnerOutOfRange {
        /// The uid.
        uid: u64,
        /// The gid.
        gid: u64,
    },
}

fn or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
