//! The OCI distribution protocol: a registry client (pull, push, login)
//! and the pure parts it and the registry server (`serve`) are built on.
//!
//! The operations, each an `impl Store` block:
//! - [`pull`]: manifests and blobs into the store, through the import walk.
//! - [`push`]: an image's blobs, manifests and index to a registry.
//! - [`login`]: credentials checked against a registry, then kept.
//!
//! What they share: [`client`], a session with one repository that answers
//! the registry's auth challenges, and [`error`] ([`RegistryError`]).
//!
//! The pure pieces take their inputs (header values, bodies, environment,
//! clock) as arguments, so that each can be tested alone:
//! - [`reference`]: docker references (`busybox` → `docker.io/library/busybox:latest`),
//!   repository-name and tag grammar, the plain-HTTP rule.
//! - [`auth`]: credentials from podman's and docker's auth files and
//!   credential helpers; `login`/`logout` edits of the containers auth file.
//! - [`challenge`]: `WWW-Authenticate` parsing, scopes, the token request URL.
//! - [`token`]: token responses and a thread-safe per-scope token cache.
//! - [`media`]: manifest media types, the `Accept` header, classification.
//! - [`errors`]: the distribution spec's error codes and JSON bodies.
//! - [`paths`]: API URLs, upload `Location` resolution.

pub(crate) mod auth;
pub(crate) mod challenge;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod errors;
pub(crate) mod login;
pub(crate) mod media;
pub(crate) mod paths;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod reference;
pub(crate) mod token;

pub use error::RegistryError;
