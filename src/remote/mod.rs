//! Everything that talks to other machines: an HTTP client (`http`) with
//! retries, resume and TLS, used to fetch archives by URL with rkt's cache
//! rules, and the OCI distribution protocol (`registry`) for pull and push.
//! Bytes from the network go through the same staging, hashing and commit
//! path as bytes from a file (DESIGN.md §1): there is one way into the store.

pub(crate) mod fetch;
pub(crate) mod http;
pub(crate) mod registry;
