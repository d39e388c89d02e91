//! From a request path to an endpoint of the distribution API, and the
//! checks every name and reference passes before anything else sees it.
//!
//! ```text
//! /v2/                                   Base
//! /v2/<name>/manifests/<tag|digest>      Manifest
//! /v2/<name>/blobs/<digest>              Blob
//! /v2/<name>/blobs/uploads/              Uploads (POST opens a session)
//! /v2/<name>/blobs/uploads/<id>          Upload
//! /v2/<name>/tags/list                   Tags
//! /v2/<name>/referrers/<digest>          Referrers
//! ```
//!
//! A repository name has slashes of its own and its components may be
//! `manifests` or `blobs`, so the endpoint is told from the end of the path:
//! `/v2/a/blobs/blobs/sha256:…` is blob `sha256:…` of repository `a/blobs`.

use hyper::Method;

use super::reply::ApiError;
use crate::digest::Digest;
use crate::remote::registry::errors::ErrorCode;
use crate::remote::registry::reference::{self, MAX_TAG_LEN};

/// An endpoint, with the parts of the path it names (not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Base,
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Uploads { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Tags { name: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

impl<'a> Route<'a> {
    /// The endpoint a (percent-decoded) path names, if any.
    pub(super) fn parse(path: &'a str) -> Option<Route<'a>> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Route::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Route::Tags { name });
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Some(Route::Uploads { name });
        }
        let (head, last) = rest.rsplit_once('/')?;
        if let Some(name) = head.strip_suffix("/manifests") {
            Some(Route::Manifest {
                name,
                reference: last,
            })
        } else if let Some(name) = head.strip_suffix("/blobs/uploads") {
            Some(Route::Upload { name, id: last })
        } else if let Some(name) = head.strip_suffix("/blobs") {
            Some(Route::Blob { name, digest: last })
        } else {
            head.strip_suffix("/referrers")
                .map(|name| Route::Referrers { name, digest: last })
        }
    }

    /// The repository the endpoint is of (none for the base).
    pub(super) fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Base => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Uploads { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The methods the endpoint answers.
    pub(super) fn methods(&self) -> &'static [Method] {
        match self {
            Route::Base | Route::Blob { .. } | Route::Tags { .. } | Route::Referrers { .. } => {
                &[Method::GET, Method::HEAD]
            }
            Route::Manifest { .. } => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Route::Uploads { .. } => &[Method::POST],
            Route::Upload { .. } => &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
        }
    }
}

/// A repository name by the distribution grammar, or `NAME_INVALID`.
pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    reference::check_repository(name).map_err(|e| {
        ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name: {e}"),
        )
        .detail(serde_json::json!({ "name": name }))
    })
}

/// What a manifest path names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// A digest if the reference has a `:` (tags cannot), else a tag by the
    /// tag grammar.
    pub(super) fn parse(reference: &str) -> Result<Reference, ApiError> {
        if reference.contains(':') {
            return parse_digest(reference).map(Reference::Digest);
        }
        reference::check_tag(reference).map_err(|_| {
            ApiError::new(
                ErrorCode::TagInvalid,
                format!(
                    "invalid tag {reference:?}: 1 to {MAX_TAG_LEN} of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
                ),
            )
        })?;
        Ok(Reference::Tag(reference.to_string()))
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// A digest as the API writes it, `<algorithm>:<hex>`, or `DIGEST_INVALID`.
pub(super) fn parse_digest(input: &str) -> Result<Digest, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest {input:?}: {why}"),
        )
    };
    let digest = Digest::parse(input).map_err(|e| invalid(e.to_string()))?;
    // Digest::parse also takes appc's `sha512-…`, which the API does not.
    if digest.to_string() != input {
        return Err(invalid("expected <algorithm>:<hex>".into()));
    }
    Ok(digest)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result
/// is not UTF-8. `+` stays `+` (it is no space outside HTML forms).
pub(super) fn percent_decode(input: &str) -> Option<String> {
    if !input.contains('%') {
        return Some(input.to_string());
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A request's query parameters, decoded, in order.
#[derive(Debug, Default)]
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(query: Option<&str>) -> Query {
        let Some(query) = query else {
            return Query::default();
        };
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((percent_decode(key)?, percent_decode(value)?))
                })
                .collect(),
        )
    }

    /// The first value of a parameter.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_from_the_end_of_the_path() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: Vec<(String, Option<Route>)> = vec![
            ("/v2/".into(), Some(Route::Base)),
            ("/v2".into(), Some(Route::Base)),
            (
                "/v2/a/b/manifests/v1".into(),
                Some(Route::Manifest {
                    name: "a/b",
                    reference: "v1",
                }),
            ),
            (
                format!("/v2/a/blobs/blobs/{d}"),
                Some(Route::Blob {
                    name: "a/blobs",
                    digest: d,
                }),
            ),
            (
                "/v2/manifests/manifests/x".into(),
                Some(Route::Manifest {
                    name: "manifests",
                    reference: "x",
                }),
            ),
            (
                "/v2/a/blobs/uploads/".into(),
                Some(Route::Uploads { name: "a" }),
            ),
            (
                "/v2/a/blobs/uploads".into(),
                Some(Route::Uploads { name: "a" }),
            ),
            (
                "/v2/a/b/blobs/uploads/0123abcd".into(),
                Some(Route::Upload {
                    name: "a/b",
                    id: "0123abcd",
                }),
            ),
            ("/v2/x/tags/list".into(), Some(Route::Tags { name: "x" })),
            (
                format!("/v2/x/referrers/{d}"),
                Some(Route::Referrers {
                    name: "x",
                    digest: d,
                }),
            ),
            ("/v2/manifests/x".into(), None),
            ("/v2/_catalog".into(), None),
            ("/v1/a/manifests/x".into(), None),
            ("/v2x/a/manifests/x".into(), None),
            ("/".into(), None),
        ];
        for (path, expected) in cases {
            assert_eq!(Route::parse(&path), expected, "{path}");
        }
    }

    #[test]
    fn names_references_and_digests_are_checked() {
        assert!(check_name("library/busybox").is_ok());
        for bad in ["", "A", "a//b", "/a", "a/", "a..b", "a:b", "-a"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.code(), &ErrorCode::NameInvalid, "{bad:?}");
        }
        assert_eq!(
            Reference::parse("v1.0").unwrap(),
            Reference::Tag("v1.0".into())
        );
        assert_eq!(
            Reference::parse(".x").unwrap_err().code(),
            &ErrorCode::TagInvalid
        );
        let d = Digest::of(crate::digest::Algorithm::Sha256, b"x");
        assert_eq!(
            Reference::parse(&d.to_string()).unwrap(),
            Reference::Digest(d.clone())
        );
        for bad in [
            "sha256:abc",
            "md5:00",
            &d.appc(),
            &d.to_string().to_uppercase(),
        ] {
            assert!(parse_digest(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Reference::parse("sha256:0").unwrap_err().code(),
            &ErrorCode::DigestInvalid
        );
    }

    #[test]
    fn decodes_paths_and_queries() {
        assert_eq!(percent_decode("/v2/a%2Fb").as_deref(), Some("/v2/a/b"));
        assert_eq!(percent_decode("sha256%3Aab").as_deref(), Some("sha256:ab"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
        let q = Query::parse(Some("mount=sha256%3Aab&from=a%2Fb&x&n=&mount=2"));
        assert_eq!(q.get("mount"), Some("sha256:ab"));
        assert_eq!(q.get("from"), Some("a/b"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("n"), Some(""));
        assert_eq!(q.get("none"), None);
        assert_eq!(Query::parse(None).get("a"), None);
    }
}
