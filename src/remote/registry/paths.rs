//! The registry API's URLs, built from validated parts, and the URL
//! arithmetic the protocol needs: resolving an upload session's `Location`
//! (absolute, host-relative or path-relative) against the request it
//! answered, with the HTTP client's RFC 3986 resolution, and adding
//! `digest=` to it whether or not it has a query already.
//!
//! ```text
//! https://registry-1.docker.io/v2/
//! https://registry-1.docker.io/v2/library/busybox/manifests/latest
//! http://127.0.0.1:5000/v2/a/b/blobs/sha256:…
//! http://127.0.0.1:5000/v2/a/b/blobs/uploads/?mount=sha256%3A…&from=c%2Fd
//! ```
//!
//! Repository names, tags and digests are put into paths as they are: the
//! caller has checked them against the reference grammar, which admits no
//! character that needs escaping in a path. Query values are always
//! percent-encoded.

use std::fmt::Write as _;

use crate::digest::Digest;
use crate::remote::http::{Origin, resolve};

/// Why a URL a registry sent could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// An upload session's `Location` that cannot be resolved.
    #[error("the registry sent an upload location {location:?} that is not an http(s) URL")]
    BadLocation {
        /// The header's value.
        location: String,
    },
    /// A URL that should be absolute is not.
    #[error("{url:?} is not an absolute http(s) URL")]
    NotAbsolute {
        /// The URL.
        url: String,
    },
}

/// Where a registry's API lives: scheme and authority, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiBase {
    origin: String,
}

impl ApiBase {
    /// `host` is an API host as [`api_host`] gives it
    /// (`registry-1.docker.io`, `localhost:5000`, `[::1]:5000`).
    ///
    /// [`api_host`]: super::reference::api_host
    pub(crate) fn new(host: &str, plain_http: bool) -> ApiBase {
        let scheme = if plain_http { "http" } else { "https" };
        ApiBase {
            origin: format!("{scheme}://{host}"),
        }
    }

    /// `GET /v2/`: the version check, and where auth challenges come from.
    pub(crate) fn ping(&self) -> String {
        format!("{}/v2/", self.origin)
    }

    /// `/v2/<name>/manifests/<tag or digest>`.
    pub(crate) fn manifest(&self, repository: &str, reference: &str) -> String {
        debug_assert!(super::reference::check_repository(repository).is_ok());
        debug_assert!(
            super::reference::check_tag(reference).is_ok() || Digest::parse(reference).is_ok()
        );
        format!("{}/v2/{repository}/manifests/{reference}", self.origin)
    }

    /// `/v2/<name>/blobs/<digest>`.
    pub(crate) fn blob(&self, repository: &str, digest: &Digest) -> String {
        debug_assert!(super::reference::check_repository(repository).is_ok());
        format!("{}/v2/{repository}/blobs/{digest}", self.origin)
    }

    /// `/v2/<name>/blobs/uploads/`: `POST` here opens an upload session.
    pub(crate) fn uploads(&self, repository: &str) -> String {
        debug_assert!(super::reference::check_repository(repository).is_ok());
        format!("{}/v2/{repository}/blobs/uploads/", self.origin)
    }

    /// `/v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`: a
    /// cross-repository mount, answered `201` when the registry did it and
    /// `202` with an upload session when it did not.
    pub(crate) fn mount(&self, repository: &str, digest: &Digest, from: &str) -> String {
        debug_assert!(super::reference::check_repository(from).is_ok());
        let url = append_query(&self.uploads(repository), "mount", &digest.to_string());
        append_query(&url, "from", from)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// query key or value (so `:`, `/`, `&`, `=`, `+`, ` ` are all escaped).
pub(crate) fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Adds `key=value` (value percent-encoded) to a URL's query, whether it
/// has one (`?_state=…` → `&`), an empty one (`…?` → nothing), or none
/// (`?`). A fragment, which no request carries, is dropped.
pub(crate) fn append_query(url: &str, key: &str, value: &str) -> String {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let separator = match url.find('?') {
        None => "?",
        Some(_) if url.ends_with('?') || url.ends_with('&') => "",
        Some(_) => "&",
    };
    format!(
        "{url}{separator}{}={}",
        encode_component(key),
        encode_component(value)
    )
}

/// The URL that completes an upload with a `PUT`: the session's location
/// with `digest=<digest>` added.
pub(crate) fn upload_completion(location: &str, digest: &Digest) -> String {
    append_query(location, "digest", &digest.to_string())
}

/// Resolves a `Location` header against the URL of the request it answered
/// (RFC 3986 §5.2): absolute URLs stay, `//host/…` takes the request's
/// scheme, `/path` its origin, and a relative path its directory
/// ([`resolve`], as redirects are followed). What comes out must be an
/// http(s) URL with a host.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> Result<String, PathError> {
    if Origin::of(request_url).is_err() {
        return Err(PathError::NotAbsolute {
            url: request_url.to_string(),
        });
    }
    // An empty reference means the request's own URL (RFC 3986), which is
    // no upload session.
    let resolved = (!location.trim().is_empty()).then(|| resolve(request_url, location));
    match resolved {
        Some(url) if Origin::of(&url).is_ok() => Ok(url),
        _ => Err(PathError::BadLocation {
            location: location.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha() -> Digest {
        Digest::of(crate::digest::Algorithm::Sha256, b"x")
    }

    #[test]
    fn api_urls() {
        let hub = ApiBase::new("registry-1.docker.io", false);
        assert_eq!(hub.ping(), "https://registry-1.docker.io/v2/");
        assert_eq!(
            hub.manifest("library/busybox", "latest"),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
        let local = ApiBase::new("127.0.0.1:5000", true);
        let d = sha();
        assert_eq!(
            local.manifest("a/b", &d.to_string()),
            format!("http://127.0.0.1:5000/v2/a/b/manifests/{d}")
        );
        assert_eq!(
            local.blob("a/b", &d),
            format!("http://127.0.0.1:5000/v2/a/b/blobs/{d}")
        );
        assert_eq!(
            local.uploads("a/b"),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/"
        );
        assert_eq!(
            local.mount("a/b", &d, "c/d"),
            format!(
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/?mount=sha256%3A{}&from=c%2Fd",
                d.hex()
            )
        );
        assert_eq!(
            ApiBase::new("[::1]:5000", true).ping(),
            "http://[::1]:5000/v2/"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_component("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            encode_component("a b&c=d/e:f+g?h#i%"),
            "a%20b%26c%3Dd%2Fe%3Af%2Bg%3Fh%23i%25"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn digest_goes_into_any_location() {
        let d = sha();
        let q = format!("digest=sha256%3A{}", d.hex());
        let cases = [
            (
                "http://h/v2/a/blobs/uploads/u1",
                format!("http://h/v2/a/blobs/uploads/u1?{q}"),
            ),
            (
                "http://h/v2/a/blobs/uploads/u1?_state=xy%3D",
                format!("http://h/v2/a/blobs/uploads/u1?_state=xy%3D&{q}"),
            ),
            ("http://h/u?", format!("http://h/u?{q}")),
            ("http://h/u?a=1&", format!("http://h/u?a=1&{q}")),
            ("http://h/u?a=1#frag", format!("http://h/u?a=1&{q}")),
        ];
        for (location, expected) in cases {
            assert_eq!(upload_completion(location, &d), expected, "{location}");
        }
    }

    #[test]
    fn resolves_upload_locations() {
        let post = "http://127.0.0.1:5000/v2/a/b/blobs/uploads/";
        let cases = [
            // distribution sends host-relative paths with a state query.
            (
                "/v2/a/b/blobs/uploads/u1?_state=s",
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=s",
            ),
            (
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1",
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1",
            ),
            (
                "HTTPS://storage.example/up?sig=a/b",
                "https://storage.example/up?sig=a/b",
            ),
            ("//other:81/x", "http://other:81/x"),
            ("u2", "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u2"),
            (
                "./u3?x=1",
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u3?x=1",
            ),
            ("../other/u4", "http://127.0.0.1:5000/v2/a/b/blobs/other/u4"),
            ("/v2/../../x/", "http://127.0.0.1:5000/x/"),
            (
                "?_state=t",
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/?_state=t",
            ),
            ("/p#frag", "http://127.0.0.1:5000/p"),
        ];
        for (location, expected) in cases {
            assert_eq!(
                resolve_location(post, location).unwrap(),
                expected,
                "{location}"
            );
        }
        // The request's own query does not leak into a relative location.
        assert_eq!(
            resolve_location("http://h/v2/a/blobs/uploads/?mount=x&from=y", "u5").unwrap(),
            "http://h/v2/a/blobs/uploads/u5"
        );
        assert_eq!(resolve_location("http://h", "u").unwrap(), "http://h/u");
        for bad in ["", "ftp://h/x", "http:///nohost", "javascript://x"] {
            assert!(resolve_location(post, bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            resolve_location("/relative", "/x"),
            Err(PathError::NotAbsolute { .. })
        ));
    }
}
