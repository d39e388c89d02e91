//! Registries, against real servers on 127.0.0.1: Debian's docker-registry
//! (distribution 2.8, plain and with htpasswd), skopeo as the peer that
//! pushes and reads back, and `testkit::fault` servers in front of the
//! registry for what no real server does on demand (a token realm, 429s,
//! dropped connections, lying bytes, redirects), each asserting what the
//! server saw and that a failure left the store as it was.
//!
//! One test binary, one file per capability:
//! - `interop`: skopeo pushes, imgstore pulls (platforms, names, tags);
//!   imgstore pushes, skopeo reads back byte for byte.
//! - `repull`: an unchanged tag costs a HEAD, no blob and no manifest body.
//! - `faults`: 429, 503 and a reset connection retried, a lasting rate
//!   limit told plainly, a 403, a dropped blob resumed with Range, Range
//!   ignored, a flipped byte, digests that lie, schema 1.
//! - `auth`: a Bearer realm (scope, reuse, redirects without credentials),
//!   Basic with htpasswd, login and logout, the order of the auth files
//!   and credential helpers.
//! - `progress`: a bar per blob on a terminal (a pty), nothing on a pipe.
//! - `push`: HEAD skips, cross-repository mounts, chunked uploads (and
//!   `OCI-Chunk-Min-Length`, a refused PUT sent again in chunks), digest
//!   checks of the answers, ACIs refused.
//!
//! Nothing skips: a missing tool or server fails the test saying which.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/oci_builder.rs"]
mod oci_builder;

mod auth;
mod faults;
mod interop;
mod progress;
mod push;
mod repull;
mod support;
