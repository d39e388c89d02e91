//! `/v2/<name>/manifests/<reference>`: manifests and indexes by tag or
//! digest, byte for byte as stored, with their media type; pushes; deletes.
//!
//! Content negotiation is distribution's: a manifest whose type the
//! `Accept` header lists (or any, with no `Accept` or `*/*`) is served as
//! it is. An index the client cannot take is answered with its
//! `linux/amd64` manifest when the client takes that, as registries do for
//! old clients; anything else is `MANIFEST_UNKNOWN`, saying why. Nothing is
//! ever converted: a digest always names the bytes sent.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};

use super::State;
use super::blobs::{etag, etag_matches};
use super::body::Body;
use super::push;
use super::reply::{self, ApiError, DOCKER_CONTENT_DIGEST};
use super::route::Reference;
use crate::digest::Digest;
use crate::image::{ImageFormat, ImageInfo};
use crate::oci::{self, ImageIndex};
use crate::platform::{self, Platform};
use crate::remote::registry::errors::ErrorCode;
use crate::remote::registry::media::{self, ManifestKind};

/// A manifest ready to send.
struct Found {
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
}

pub(super) async fn get(
    state: &Arc<State>,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let reference = Reference::parse(reference)?;
    let accept = Accept::of(headers);
    let found = {
        let (state, name) = (state.clone(), name.to_string());
        reply::blocking(move || find(&state, &name, &reference, &accept, !head)).await?
    };
    let etag = etag(&found.digest);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag));
    let builder = reply::response(if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    })
    .header(header::ETAG, &etag)
    .header(DOCKER_CONTENT_DIGEST, found.digest.to_string());
    if not_modified {
        return Ok(builder.body(Body::Empty).expect("a valid response"));
    }
    Ok(builder
        .header(header::CONTENT_TYPE, &found.media_type)
        .header(header::CONTENT_LENGTH, found.bytes.len())
        .body(if head {
            Body::Empty
        } else {
            Body::bytes(found.bytes)
        })
        .expect("a valid response"))
}

fn manifest_unknown(name: &str, reference: &Reference) -> ApiError {
    let (what, detail) = match reference {
        Reference::Tag(tag) => (
            format!("{name}:{tag} is not a tag of an OCI image in this registry"),
            serde_json::json!({ "Tag": tag }),
        ),
        Reference::Digest(digest) => (
            format!("{digest} is not the manifest of an OCI image in this registry"),
            serde_json::json!({ "Digest": digest.to_string() }),
        ),
    };
    ApiError::new(ErrorCode::ManifestUnknown, what).detail(detail)
}

/// The OCI image a reference names (a digest store-wide, a tag in the
/// repository).
fn image_of(state: &State, name: &str, reference: &Reference) -> Result<ImageInfo, ApiError> {
    let index = &state.store.index;
    let info = match reference {
        Reference::Tag(tag) => index.repository_tag(name, tag)?,
        Reference::Digest(digest) => index
            .image(digest)?
            .filter(|i| i.format == ImageFormat::Oci),
    };
    info.ok_or_else(|| manifest_unknown(name, reference))
}

fn find(
    state: &State,
    name: &str,
    reference: &Reference,
    accept: &Accept,
    touch: bool,
) -> Result<Found, ApiError> {
    let info = image_of(state, name, reference)?;
    let found = load(state, &info)?;
    let found = negotiate(state, found, accept, name, reference)?;
    if touch && let Err(e) = state.store.index.touch_image(&info) {
        // A use is a hint for prune; a read never fails for it.
        tracing::debug!("cannot record the use of {}: {e}", info.key);
    }
    Ok(found)
}

/// The manifest of an image, verified, with the media type recorded for
/// it (or, where none was, the one its document says).
fn load(state: &State, info: &ImageInfo) -> Result<Found, ApiError> {
    let store = &state.store;
    let row = store
        .index
        .blob(&info.manifest)?
        .ok_or_else(|| crate::error::Error::BlobNotFound(info.manifest.clone()))?;
    if row.size > oci::MAX_JSON {
        return Err(ApiError::internal(format!(
            "manifest {} is {} bytes, more than a manifest may have",
            info.manifest, row.size
        )));
    }
    // Read from the tree, verified; the use is recorded once per request
    // by `find` (Store::read_blob would write it per blob).
    let mut bytes = Vec::with_capacity(row.size as usize);
    let path = store.tree.path(&info.manifest);
    std::io::Read::read_to_end(&mut store.tree.read(&info.manifest)?, &mut bytes)
        .map_err(|e| crate::error::Error::io("read manifest", &path, e))?;
    let media_type = match media::classify_manifest(row.media_type.as_deref(), &bytes) {
        Ok(kind) => kind.media_type().to_string(),
        Err(_) => row
            .media_type
            .unwrap_or_else(|| oci::OCI_MANIFEST.to_string()),
    };
    Ok(Found {
        digest: info.manifest.clone(),
        media_type,
        bytes,
    })
}

fn negotiate(
    state: &State,
    found: Found,
    accept: &Accept,
    name: &str,
    reference: &Reference,
) -> Result<Found, ApiError> {
    if accept.allows(&found.media_type) {
        return Ok(found);
    }
    let refused = |media_type: &str| {
        ApiError::new(
            ErrorCode::ManifestUnknown,
            format!(
                "{name}:{reference} is a {media_type}, which the request's Accept header does not allow"
            ),
        )
    };
    let is_index = ManifestKind::from_media_type(&found.media_type).is_some_and(|k| k.is_index());
    if !is_index {
        return Err(refused(&found.media_type));
    }
    let index: ImageIndex =
        serde_json::from_slice(&found.bytes).map_err(|_| refused(&found.media_type))?;
    let wanted = Platform::new("linux", "amd64", None);
    let Ok(chosen) = platform::select_manifest(&index.manifests, &wanted) else {
        return Err(refused(&found.media_type));
    };
    let digest = Digest::parse(&chosen.digest).map_err(|_| refused(&found.media_type))?;
    let child = match state.store.index.image(&digest)? {
        Some(info) if info.format == ImageFormat::Oci => load(state, &info)?,
        _ => return Err(refused(&found.media_type)),
    };
    if accept.allows(&child.media_type) {
        Ok(child)
    } else {
        Err(refused(&found.media_type))
    }
}

/// The media types a request's `Accept` headers take.
#[derive(Debug, Default)]
pub(super) struct Accept {
    any: bool,
    types: Vec<String>,
}

impl Accept {
    pub(super) fn of(headers: &HeaderMap) -> Accept {
        let mut accept = Accept::default();
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let media_type = media::essence(parts.next().unwrap_or_default());
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        == Some(0.0)
                });
                if media_type.is_empty() || refused {
                    continue;
                }
                if media_type == "*/*" || media_type == "application/*" {
                    accept.any = true;
                }
                accept.types.push(media_type);
            }
        }
        if accept.types.is_empty() {
            accept.any = true;
        }
        accept
    }

    pub(super) fn allows(&self, media_type: &str) -> bool {
        self.any || self.types.contains(&media::essence(media_type))
    }
}

/// The largest manifest a push may send.
const MAX_MANIFEST: usize = oci::MAX_JSON as usize;

pub(super) async fn put(
    state: &Arc<State>,
    name: &str,
    reference: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let reference = Reference::parse(reference)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let too_large = || {
        ApiError::new(
            ErrorCode::SizeInvalid,
            format!("a manifest may have at most {MAX_MANIFEST} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(4096));
    while let Some(frame) = super::next_frame(&mut body).await? {
        let frame = frame.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("the manifest's body broke off: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_MANIFEST {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    let digest = {
        let (state, name) = (state.clone(), name.to_string());
        reply::blocking(move || {
            push::push(&state, &name, &reference, content_type.as_deref(), &bytes)
        })
        .await?
    };
    Ok(reply::response(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::Empty)
        .expect("a valid response"))
}

/// `DELETE`: by digest, the image (if it belongs to the repository); by
/// tag, the tag row. A tag that is only an image's version label cannot
/// be deleted alone.
pub(super) async fn delete(
    state: &Arc<State>,
    name: &str,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    let reference = Reference::parse(reference)?;
    let (state, name) = (state.clone(), name.to_string());
    reply::blocking(move || {
        let store = &state.store;
        match &reference {
            Reference::Digest(digest) => {
                let info = image_of(&state, &name, &reference)?;
                if !store.index.in_repository(&name, digest)? {
                    return Err(manifest_unknown(&name, &reference));
                }
                store.remove(&info.key)?;
            }
            Reference::Tag(tag) => {
                let row = format!("{name}:{tag}");
                let tagged = store
                    .index
                    .tag_target(&row)?
                    .map(|key| store.index.image(&key))
                    .transpose()?
                    .flatten()
                    .is_some_and(|i| i.format == ImageFormat::Oci);
                if tagged {
                    store.untag(&row)?;
                } else if store.index.repository_tag(&name, tag)?.is_some() {
                    return Err(ApiError::new(
                        ErrorCode::Unsupported,
                        format!(
                            "{row} is the version label of an image, not a tag row: delete the image by its digest"
                        ),
                    ));
                } else {
                    return Err(manifest_unknown(&name, &reference));
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(reply::response(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::Empty)
        .expect("a valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> Accept {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT, v.parse().unwrap());
        }
        Accept::of(&headers)
    }

    #[test]
    fn accept_headers_are_read_as_registries_read_them() {
        assert!(accept(&[]).allows(oci::OCI_INDEX));
        assert!(accept(&["*/*"]).allows(oci::OCI_INDEX));
        let docker = accept(&[&format!(
            "{}, {};q=0.5",
            oci::DOCKER_MANIFEST,
            oci::DOCKER_LIST
        )]);
        assert!(docker.allows(oci::DOCKER_LIST));
        assert!(docker.allows(&format!("{}; charset=utf-8", oci::DOCKER_MANIFEST)));
        assert!(!docker.allows(oci::OCI_MANIFEST));
        let split = accept(&[oci::OCI_MANIFEST, oci::OCI_INDEX]);
        assert!(split.allows(oci::OCI_INDEX) && split.allows(oci::OCI_MANIFEST));
        assert!(!split.allows(oci::DOCKER_MANIFEST));
        let refused = accept(&[&format!("{};q=0, {}", oci::OCI_INDEX, oci::OCI_MANIFEST)]);
        assert!(!refused.allows(oci::OCI_INDEX));
        assert!(refused.allows(oci::OCI_MANIFEST));
    }
}
