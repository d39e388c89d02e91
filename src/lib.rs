//! imgstore: a content-addressable store for container images.
//!
//! [`Store`] is the whole public surface: open a store directory, import
//! appc ACI archives (and, later, OCI layouts and docker archives), look
//! images up by key prefix, tag or name and labels, read verified blobs and
//! manifests, remove images and collect garbage.
//!
//! ```no_run
//! use imgstore::{ImportOptions, Store};
//! let store = Store::open("/tmp/store")?;
//! let images = store.import("hello.aci", &ImportOptions::default())?;
//! let best = store.latest("example.com/hello", &[])?;
//! assert_eq!(images[0].key, best.key);
//! # Ok::<(), imgstore::Error>(())
//! ```
//!
//! The on-disk layout and the invariants the store keeps are described in
//! README.md's architecture section.

mod blobs;
pub mod digest;
mod error;
mod export;
mod failpoint;
mod fsck;
mod gc;
mod image;
mod import;
mod index;
mod intents;
mod lock;
mod progress;
mod prune;
mod remote;
mod render;
mod reserve;
mod store;

pub use blobs::VerifiedReader;
pub use digest::{Algorithm, Digest, DigestError, KeyPrefix};
pub use error::{Error, ResolveError};
pub use fsck::{FsckOptions, FsckReport, Problem};
pub use gc::GcOptions;
pub use image::{
    BlobInfo, DiskUsage, GcReport, ImageDetails, ImageFormat, ImageInfo, Label, NameSelector,
    Remote,
};
pub use import::{ArchiveFormat, Compression, ImportOptions};
pub use index::SCHEMA_VERSION;
pub use progress::{Progress, ProgressTask};
pub use render::{
    DependencySpec, LayerName, LayerProblem, MemberProblem, Platform, RenderError, RenderOptions,
    RenderReport, Resolver,
};
pub use store::Store;
