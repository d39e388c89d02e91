//! The OCI distribution protocol: the pure parts a registry client (pull,
//! push, login) and the registry server (`serve`) are built on. Nothing here
//! talks to the network; every piece takes its inputs (header values, bodies,
//! environment, clock) as arguments so that it can be tested alone.
//!
//! - [`reference`]: docker references (`busybox` → `docker.io/library/busybox:latest`),
//!   repository-name and tag grammar, the plain-HTTP rule.
//! - [`auth`]: credentials from podman's and docker's auth files and
//!   credential helpers; `login`/`logout` edits of the containers auth file.
//! - [`challenge`]: `WWW-Authenticate` parsing, scopes, the token request URL.
//! - [`token`]: token responses and a thread-safe per-scope token cache.
//! - [`media`]: manifest media types, the `Accept` header, classification.
//! - [`errors`]: the distribution spec's error codes and JSON bodies.
//! - [`paths`]: API URLs, upload `Location` resolution, `Link` pagination.

// Used by pull and push, which come next.
#![allow(dead_code)]

pub(crate) mod auth;
pub(crate) mod challenge;
pub(crate) mod errors;
pub(crate) mod media;
pub(crate) mod paths;
pub(crate) mod reference;
pub(crate) mod token;
