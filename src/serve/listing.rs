//! Lists: a repository's tags (`n`/`last` pagination with a `Link` to the
//! next page, in byte order as distribution sorts them) and the OCI 1.1
//! referrers of a manifest, which the store does not record: an empty
//! index, the answer the spec gives for a manifest nothing refers to.

use std::sync::Arc;

use hyper::header;
use hyper::{Response, StatusCode};

use super::State;
use super::body::Body;
use super::reply::{self, ApiError, OCI_FILTERS_APPLIED};
use super::route::{Query, parse_digest};
use crate::oci;
use crate::remote::registry::errors::ErrorCode;
use crate::remote::registry::paths::encode_component;
use crate::remote::registry::reference;

/// The most tags one page holds, whatever `n` asks.
const MAX_PAGE: usize = 10_000;

pub(super) async fn tags(
    state: &Arc<State>,
    name: &str,
    query: &Query,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let n = match query.get("n") {
        None => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={n:?} is not a number of tags"),
            )
        })?),
    };
    let last = query.get("last").map(str::to_string);
    let page = n.map(|n| n.min(MAX_PAGE));
    let (tags, more) = {
        let (state, name, last) = (state.clone(), name.to_string(), last.clone());
        reply::blocking(move || {
            let index = &state.store.index;
            let listed = index.repository_tags(&name, last.as_deref(), page, |t| {
                reference::check_tag(t).is_ok()
            })?;
            if listed.0.is_empty() && !index.repository_exists(&name)? {
                return Err(ApiError::new(
                    ErrorCode::NameUnknown,
                    format!("repository {name} is not known to this registry"),
                )
                .detail(serde_json::json!({ "name": name })));
            }
            Ok(listed)
        })
        .await?
    };
    let body = serde_json::to_vec(&serde_json::json!({ "name": name, "tags": tags }))
        .expect("a tag list serialises");
    let mut response = reply::json(StatusCode::OK, body, head);
    if let (true, Some(page), Some(last)) = (more, page, tags.last()) {
        let link = format!(
            "</v2/{name}/tags/list?n={page}&last={}>; rel=\"next\"",
            encode_component(last)
        );
        response.headers_mut().insert(
            header::LINK,
            link.parse().expect("a Link header of checked parts"),
        );
    }
    Ok(response)
}

pub(super) fn referrers(
    digest: &str,
    query: &Query,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    parse_digest(digest)?;
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [],
    }))
    .expect("an index serialises");
    let length = body.len();
    let mut builder = reply::response(StatusCode::OK)
        .header(header::CONTENT_TYPE, oci::OCI_INDEX)
        .header(header::CONTENT_LENGTH, length);
    // Nothing to filter is filtered all the same.
    if query.get("artifactType").is_some() {
        builder = builder.header(OCI_FILTERS_APPLIED, "artifactType");
    }
    Ok(builder
        .body(if head { Body::Empty } else { Body::bytes(body) })
        .expect("a valid response"))
}
