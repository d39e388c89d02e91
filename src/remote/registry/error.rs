//! [`RegistryError`]: what goes wrong talking to a registry, above the
//! transport (whose failures are [`RemoteError`](crate::RemoteError)s):
//! a bad reference, an index without the platform, credentials that cannot be read, a refusal
//! (the status and the registry's own words), and a registry that lies —
//! a manifest or blob whose bytes are not the digest they were asked by.
//!
//! Messages name the registry, the URL and the digests involved, as one
//! line; a wrapped cause is the `source()`, never repeated in the message.

use crate::digest::Digest;
use crate::remote::http::Op;

use super::auth::AuthError;
use super::challenge::ChallengeError;
use super::errors::Refusal;
use super::media::MediaError;
use super::paths::PathError;
use super::reference::ReferenceError;
use super::token::TokenError;
use crate::platform::PlatformError;

impl From<RegistryError> for crate::Error {
    fn from(e: RegistryError) -> crate::Error {
        crate::Error::Registry(Box::new(e))
    }
}

/// A registry operation (pull, push, login) that failed above the
/// transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A REF argument is not a docker reference (told before any request).
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// An index has no image for the platform asked for.
    #[error("{reference}")]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted and those the index has.
        #[source]
        source: PlatformError,
    },
    /// Credentials could not be read, written or removed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The registry (or its token server) answered with an error status.
    #[error("{op} {url}{}", credentials.as_ref().map(|c| format!(" (with credentials from {c})")).unwrap_or_default())]
    Refused {
        /// What was being done.
        op: Op,
        /// The URL asked for.
        url: String,
        /// Who refused, the status, and what the registry said.
        #[source]
        refusal: Refusal,
        /// Where the credentials sent came from, for a 401 or 403.
        credentials: Option<String>,
    },
    /// A `WWW-Authenticate` challenge that cannot be followed.
    #[error("{op} {url}: cannot authenticate")]
    Challenge {
        /// What was being done.
        op: Op,
        /// The URL that was answered with the challenge.
        url: String,
        /// What is wrong with the challenge.
        #[source]
        source: ChallengeError,
    },
    /// A token server's answer that holds no usable token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A manifest of a kind the store does not take (schema 1, say).
    #[error("{op} {url}")]
    Manifest {
        /// What was being done.
        op: Op,
        /// The manifest's URL.
        url: String,
        /// What it is.
        #[source]
        source: MediaError,
    },
    /// A manifest whose bytes are not the digest the registry or the
    /// reference says.
    #[error("{op} {url}: the manifest hashes to {found}, but {claimed_by} says {expected}")]
    ManifestDigest {
        /// What was being done.
        op: Op,
        /// The manifest's URL.
        url: String,
        /// The digest claimed.
        expected: Digest,
        /// What the bytes hash to.
        found: Digest,
        /// Who claimed it: `Docker-Content-Digest`, `the reference`,
        /// `the index`.
        claimed_by: &'static str,
    },
    /// A manifest whose length is not the one its index gives.
    #[error("{op} {url}: the manifest has {found} bytes, but the index says {expected}")]
    ManifestSize {
        /// What was being done.
        op: Op,
        /// The manifest's URL.
        url: String,
        /// The size the index gives.
        expected: u64,
        /// Its length.
        found: u64,
    },
    /// A `Docker-Content-Digest` header that is not a digest.
    #[error("{op} {url}: the registry's Docker-Content-Digest {value:?} is not a digest")]
    BadDigestHeader {
        /// What was being done.
        op: Op,
        /// The URL answered.
        url: String,
        /// The header's value.
        value: String,
    },
    /// A blob whose bytes do not hash to the digest it was asked by: the
    /// registry (or a storage host it redirected to) sent other bytes.
    #[error(
        "pull {url}: the blob hashes to {found}, not to {expected}: the server sent other bytes than the digest names"
    )]
    BlobDigest {
        /// The blob's URL.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes received hash to.
        found: Digest,
    },
    /// A blob of another length than its descriptor gives.
    #[error("pull {url}: the blob {digest} has {found} bytes, but its descriptor says {expected}")]
    BlobSize {
        /// The blob's URL.
        url: String,
        /// The blob.
        digest: Digest,
        /// The size its descriptor gives.
        expected: u64,
        /// The bytes received.
        found: u64,
    },
    /// The registry took an upload or manifest under another digest than
    /// the one pushed.
    #[error(
        "push {url}: the registry answered Docker-Content-Digest {found}, but {expected} was pushed"
    )]
    PushDigest {
        /// The URL of the upload or manifest.
        url: String,
        /// The digest pushed.
        expected: Digest,
        /// The digest the registry answered.
        found: Digest,
    },
    /// An upload session's location that cannot be used.
    #[error("push {url}")]
    Location {
        /// The URL that answered with it.
        url: String,
        /// What is wrong with it.
        #[source]
        source: PathError,
    },
    /// An upload session without a location to send the bytes to.
    #[error("push {url}: the registry answered {status} without a Location for the upload")]
    NoLocation {
        /// The URL that answered.
        url: String,
        /// Its status.
        status: u16,
    },
    /// A reference with a digest that is not the image's key.
    #[error("cannot push image {key} as {reference}: the reference names another digest")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The image's key.
        key: Digest,
    },
    /// An index nested deeper than the store follows.
    #[error("{op} {url}: indexes nest more than {max} deep")]
    TooDeep {
        /// What was being done.
        op: Op,
        /// The manifest's URL.
        url: String,
        /// The bound.
        max: usize,
    },
}
