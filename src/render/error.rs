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
    #[error("{}: the directory is not empty; render writes into a new or empty directory", path.display())]
    TargetNotEmpty { path: PathBuf },
    #[error("{}: exists and is not a directory", path.display())]
    TargetNotDirectory { path: PathBuf },
    #[error("cannot {action} {}: {cause}", path.display())]
    Target {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("invalid platform {input:?}: {reason}")]
    BadPlatform { input: String, reason: &'static str },
    #[error(
        "image {image} has no manifest for {wanted} (it has {})",
        or_none(available)
    )]
    NoPlatform {
        image: Digest,
        wanted: String,
        available: Vec<String>,
    },
    #[error("image {image} is for {found}, not {wanted}")]
    WrongPlatform {
        image: Digest,
        wanted: String,
        found: String,
    },
    #[error("image {image}: {reason}")]
    BadImage { image: Digest, reason: String },
    #[error(
        "image {image}: its {what} {digest} is not in the store (was it imported with --allow-missing?)"
    )]
    MissingBlob {
        image: Digest,
        what: String,
        digest: Digest,
    },
    #[error("{layer}: media type {media_type:?} is not a layer imgstore can render")]
    UnknownMediaType {
        layer: LayerName,
        media_type: String,
    },
    #[error("{layer}: its uncompressed bytes hash to {found}, not to {expected} as the image says")]
    DigestMismatch {
        layer: LayerName,
        expected: Digest,
        found: Digest,
    },
    #[error("{layer}: {problem}")]
    BadLayer {
        layer: LayerName,
        problem: LayerProblem,
    },
    #[error("{layer}: member {member:?}: {problem}")]
    BadMember {
        layer: LayerName,
        member: String,
        problem: MemberProblem,
    },
    #[error("{layer}: member {member:?}: cannot {action}: {cause}")]
    Write {
        layer: LayerName,
        member: String,
        action: &'static str,
        cause: io::Error,
    },
    #[error("image {image} ({name}) depends on {dependency}, which is not in the store")]
    MissingDependency {
        image: Digest,
        name: String,
        dependency: Box<DependencySpec>,
    },
    #[error("image {image} ({name}): dependency {dependency} is an image named {found}")]
    DependencyNameMismatch {
        image: Digest,
        name: String,
        dependency: Box<DependencySpec>,
        found: String,
    },
    #[error("image {image} ({name}): its dependencies {reason}")]
    BadDependencies {
        image: Digest,
        name: String,
        reason: &'static str,
    },
}

/// A dependency as an appc image manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencySpec {
    pub name: String,
    pub labels: Vec<Label>,
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
    #[error("it is truncated: its tar ends inside a member")]
    Truncated,
    #[error("cannot read or decompress it (truncated or corrupt): {0}")]
    Read(io::Error),
    #[error("not a valid tar archive: the header at offset {offset} has {reason}")]
    BadHeader { offset: u64, reason: &'static str },
}

/// What is wrong with one member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberProblem {
    #[error("a whiteout must name a file (.wh., .wh.. and .wh... do not)")]
    MalformedWhiteout,
    #[error("its name holds a NUL byte")]
    NulInName,
    #[error("its name or link target is longer than 4096 bytes")]
    NameTooLong,
    #[error("the root directory can only be a directory")]
    RootNotDirectory,
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("a symlink needs a target")]
    EmptyLinkTarget,
    #[error("hard link to {target:?}, which does not exist")]
    HardLinkTargetMissing { target: String },
    #[error("hard link to {target:?}, which is a directory")]
    HardLinkToDirectory { target: String },
    #[error("hard link to {target:?}, which is outside rootfs/")]
    HardLinkOutsideRootfs { target: String },
    #[error("owner {uid}:{gid} is out of range")]
    OwnerOutOfRange { uid: u64, gid: u64 },
}

fn or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
