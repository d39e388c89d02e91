//! `GET`/`HEAD /v2/<name>/blobs/<digest>`: a blob of the store (or an
//! upload staged for a manifest to come), streamed from its file, whole or
//! the one range asked for.
//!
//! The bytes are sent as they are in the file, without hashing them again:
//! the file's name is its digest (invariant 1, rechecked by `fsck`), and
//! every client checks what it receives against the digest it asked for.
//! An `ETag` is the quoted digest, so `If-None-Match` and `If-Range` work
//! as for any immutable resource.

use std::fs::File;
use std::sync::Arc;

use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};

use super::State;
use super::body::{Body, FileBody};
use super::range::{self, Wanted};
use super::reply::{self, ApiError, DOCKER_CONTENT_DIGEST};
use super::route::parse_digest;
use crate::digest::Digest;
use crate::remote::registry::errors::ErrorCode;

/// Blobs never change: clients and proxies may keep them for a year.
const CACHE_CONTROL: &str = "max-age=31536000";

pub(super) async fn get(
    state: &Arc<State>,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let digest = parse_digest(digest)?;
    let found = {
        let (state, digest) = (state.clone(), digest.clone());
        reply::blocking(move || open(&state, &digest)).await?
    };
    let Some((file, size)) = found else {
        return Err(blob_unknown(&digest));
    };
    let etag = etag(&digest);
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if header(header::IF_NONE_MATCH).is_some_and(|v| etag_matches(v, &etag)) {
        return Ok(reply::response(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &etag)
            .header(DOCKER_CONTENT_DIGEST, digest.to_string())
            .body(Body::Empty)
            .expect("a valid response"));
    }
    // A range is for the blob the client already has part of: one whose
    // validator differs gets the whole blob (never, here, but per the RFC).
    let ranged = header(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let wanted = if ranged {
        range::wanted(header(header::RANGE), size)
    } else {
        Wanted::Whole
    };
    let builder = reply::response(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(DOCKER_CONTENT_DIGEST, digest.to_string());
    let (builder, start, len) = match wanted {
        Wanted::Whole => (builder, 0, size),
        Wanted::Part { start, len } => (
            builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", start + len - 1),
            ),
            start,
            len,
        ),
        Wanted::Unsatisfiable => {
            return Err(ApiError::new(
                ErrorCode::RangeInvalid,
                format!("blob {digest} has {size} bytes: the range asked for is outside it"),
            )
            .header(header::CONTENT_RANGE, format!("bytes */{size}")));
        }
    };
    let body = if head || len == 0 {
        Body::Empty
    } else {
        Body::File(FileBody::new(file, start, len))
    };
    Ok(builder
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .expect("a valid response"))
}

/// The blob's file and length: from the tree if the index has the blob,
/// else a finished upload waiting for its manifest.
pub(super) fn open(state: &State, digest: &Digest) -> Result<Option<(File, u64)>, ApiError> {
    let store = &state.store;
    if store.index.has_blob(digest)?
        && let Ok(file) = File::open(store.tree.path(digest))
    {
        let size = file
            .metadata()
            .map_err(|e| ApiError::internal(format!("cannot read blob {digest}: {e}")))?
            .len();
        return Ok(Some((file, size)));
    }
    Ok(state.uploads.open_finished(digest))
}

/// Whether the store has a blob, or a finished upload does; its size.
pub(super) fn exists(state: &State, digest: &Digest) -> Result<Option<u64>, ApiError> {
    let store = &state.store;
    if let Some(row) = store.index.blob(digest)?
        && store.tree.contains(digest)
    {
        return Ok(Some(row.size));
    }
    Ok(state.uploads.finished_size(digest))
}

pub(super) fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is unknown to this registry"),
    )
    .detail(serde_json::json!({ "digest": digest.to_string() }))
}

/// A digest as an entity tag.
pub(super) fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether an `If-None-Match` value names the entity tag (or is `*`).
pub(super) fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').any(|candidate| {
        let candidate = candidate.trim();
        let candidate = candidate.strip_prefix("W/").unwrap_or(candidate);
        candidate == "*" || candidate == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_match_as_if_none_match_says() {
        let d = Digest::of(crate::digest::Algorithm::Sha256, b"x");
        let tag = etag(&d);
        assert_eq!(tag, format!("\"{d}\""));
        assert!(etag_matches(&tag, &tag));
        assert!(etag_matches(&format!("\"other\", W/{tag}"), &tag));
        assert!(etag_matches("*", &tag));
        assert!(!etag_matches(&d.to_string(), &tag));
        assert!(!etag_matches("\"other\"", &tag));
    }
}
