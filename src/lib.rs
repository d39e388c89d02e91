//! imgstore: a content-addressable store for container images.
//!
//! [`Store`] is the public surface: open a store directory, import appc
//! ACIs, OCI image layouts (directories and archives) and docker archives
//! (from files, or by URL with HTTP caching and resume: [`Store::fetch`]),
//! look images up by key prefix, tag or name and labels, read verified
//! blobs and manifests, export OCI layouts, remove images, collect garbage
//! and check the store; [`Server`] serves it to registry clients. The blob
//! tree, the SQL and the archive parsers are modules a user never names;
//! errors are [`Error`], with kinds to match.
//!
//! ```
//! use imgstore::{ImportOptions, Store};
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("store"))?;
//! let images = store.import("tests/data/hello.aci", &ImportOptions::new())?;
//! let best = store.latest("example.com/hello", &[])?;
//! assert_eq!(images[0].key, best.key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format and the invariants the store keeps, with the tests
//! that prove each, are in `docs/design.md`.

#![warn(missing_docs)]

mod blobs;
mod compression;
pub mod digest;
mod error;
mod export;
mod failpoint;
mod fsck;
mod gc;
mod identity;
mod image;
mod import;
mod index;
mod input;
mod intents;
mod json;
mod layer;
mod lock;
mod nofollow;
mod oci;
mod parallel;
mod platform;
mod progress;
mod prune;
mod publish;
mod remote;
mod render;
mod reserve;
mod serve;
mod signals;
mod store;

pub use blobs::VerifiedReader;
pub use compression::Compression;
pub use digest::{Algorithm, Digest, DigestError, KeyPrefix};
pub use error::{
    ArchiveError, ArchiveErrorKind, DecompressError, Error, IndexError, NotAStoreReason,
    ResolveError,
};
pub use fsck::{FsckOptions, FsckReport, Problem, ProblemKind};
pub use gc::GcOptions;
pub use image::{
    BlobInfo, DiskUsage, GcReport, ImageDetails, ImageFormat, ImageInfo, Label, NameSelector,
    Remote,
};
pub use import::{ArchiveFormat, ImportOptions};
pub use index::SCHEMA_VERSION;
pub use platform::{Platform, PlatformError};
pub use progress::{Progress, ProgressTask};
pub use remote::fetch::FetchOptions;
pub use remote::http::{Op, RateLimit, RemoteError, RemoteErrorKind};
pub use remote::registry::RegistryError;
pub use remote::registry::auth::AuthError;
pub use remote::registry::challenge::ChallengeError;
pub use remote::registry::errors::Refusal;
pub use remote::registry::login::LoginOptions;
pub use remote::registry::media::MediaError;
pub use remote::registry::paths::PathError;
pub use remote::registry::pull::{DEFAULT_JOBS, PullOptions, Pulled};
pub use remote::registry::push::{PushOptions, Pushed};
pub use remote::registry::reference::ReferenceError;
pub use remote::registry::token::TokenError;
pub use render::{
    DependencySpec, KeptTree, LayerName, LayerProblem, MemberProblem, RenderError, RenderOptions,
    RenderReport, Resolver, TreeInfo,
};
pub use serve::{ServeError, ServeOptions, Server, ShutdownHandle};
pub use signals::exit_on_interrupt;
pub use store::Store;
