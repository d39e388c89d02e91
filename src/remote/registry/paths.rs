//! The registry API's URLs, built from validated parts, and the URL
//! arithmetic the protocol needs: resolving an upload session's `Location`
//! (absolute, host-relative or path-relative) against the request it
//! answered, adding `digest=` to it whether or not it has a query already,
//! and following `Link: <…>; rel="next"` pagination.
//!
//! ```text
//! https://registry-1.docker.io/v2/
//! https://registry-1.docker.io/v2/library/busybox/manifests/latest
//! http://127.0.0.1:5000/v2/a/b/blobs/sha256:…
//! http://127.0.0.1:5000/v2/a/b/blobs/uploads/?mount=sha256%3A…&from=c%2Fd
//! http://127.0.0.1:5000/v2/a/b/tags/list?n=100&last=v1
//! http://127.0.0.1:5000/v2/a/b/referrers/sha256:…?artifactType=…
//! ```
//!
//! Repository names, tags and digests are put into paths as they are: the
//! caller has checked them against the reference grammar, which admits no
//! character that needs escaping in a path. Query values are always
//! percent-encoded.

use std::fmt::Write as _;

use crate::digest::Digest;

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
    /// `host` is an API host as [`Reference::api_host`] gives it
    /// (`registry-1.docker.io`, `localhost:5000`, `[::1]:5000`).
    ///
    /// [`Reference::api_host`]: super::reference::Reference::api_host
    pub(crate) fn new(host: &str, plain_http: bool) -> ApiBase {
        let scheme = if plain_http { "http" } else { "https" };
        ApiBase {
            origin: format!("{scheme}://{host}"),
        }
    }

    /// `http://host:port` or `https://host`.
    #[allow(dead_code)] // for serve (issue 14) and later users
    pub(crate) fn origin(&self) -> &str {
        &self.origin
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

    /// `/v2/<name>/tags/list`, with `n` (page size) and `last` (the tag to
    /// continue after) when given.
    #[allow(dead_code)] // for serve (issue 14) and later users
    pub(crate) fn tags(&self, repository: &str, n: Option<u32>, last: Option<&str>) -> String {
        debug_assert!(super::reference::check_repository(repository).is_ok());
        let mut url = format!("{}/v2/{repository}/tags/list", self.origin);
        if let Some(n) = n {
            url = append_query(&url, "n", &n.to_string());
        }
        if let Some(last) = last {
            url = append_query(&url, "last", last);
        }
        url
    }

    /// `/v2/<name>/referrers/<digest>` (OCI 1.1), optionally filtered by
    /// artifact type.
    #[allow(dead_code)] // for serve (issue 14) and later users
    pub(crate) fn referrers(
        &self,
        repository: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> String {
        debug_assert!(super::reference::check_repository(repository).is_ok());
        let url = format!("{}/v2/{repository}/referrers/{digest}", self.origin);
        match artifact_type {
            Some(t) => append_query(&url, "artifactType", t),
            None => url,
        }
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

/// The parts of an absolute http(s) URL: scheme (lower case), authority,
/// and the rest (path, query), which may be empty.
fn split_absolute(url: &str) -> Option<(String, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return None;
    }
    Some((scheme, authority, tail))
}

/// `scheme://authority` of an absolute http(s) URL.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let (scheme, authority, _) = split_absolute(url)?;
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Whether two URLs have the same scheme, host and port: credentials go
/// only where they were meant to.
#[allow(dead_code)] // for serve (issue 14) and later users
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin_of(a), origin_of(b)), (Some(x), Some(y)) if x == y)
}

/// Resolves a `Location` header against the URL of the request it answered
/// (RFC 3986 §5.2): absolute URLs stay, `//host/…` takes the request's
/// scheme, `/path` its origin, and a relative path its directory.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> Result<String, PathError> {
    let bad = || PathError::BadLocation {
        location: location.to_string(),
    };
    let location = location.trim();
    let (scheme, authority, request_tail) =
        split_absolute(request_url).ok_or_else(|| PathError::NotAbsolute {
            url: request_url.to_string(),
        })?;
    if location.is_empty() {
        return Err(bad());
    }
    if location.contains("://") {
        return match split_absolute(location) {
            Some((scheme, authority, tail)) => {
                Ok(format!("{scheme}://{authority}{}", normalise_tail(tail)))
            }
            None => Err(bad()),
        };
    }
    if let Some(rest) = location.strip_prefix("//") {
        return match split_absolute(&format!("{scheme}://{rest}")) {
            Some((scheme, authority, tail)) => {
                Ok(format!("{scheme}://{authority}{}", normalise_tail(tail)))
            }
            None => Err(bad()),
        };
    }
    let request_path = request_tail
        .split(['?', '#'])
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let tail = if location.starts_with('/') {
        location.to_string()
    } else if location.starts_with('?') {
        format!("{request_path}{location}")
    } else {
        let directory = &request_path[..=request_path.rfind('/').unwrap_or(0)];
        format!("{directory}{location}")
    };
    Ok(format!("{scheme}://{authority}{}", normalise_tail(&tail)))
}

/// Removes `.` and `..` segments from the path part (RFC 3986 §5.2.4) and
/// drops the fragment; the query is kept as it is.
fn normalise_tail(tail: &str) -> String {
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut segments: Vec<&str> = Vec::new();
    let ends_in_directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(tail.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (ends_in_directory && !out.ends_with('/')) {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The target of the `rel="next"` link in a `Link` header (tag-list and
/// referrers pagination), resolved against the request URL.
#[allow(dead_code)] // for serve (issue 14) and later users
pub(crate) fn next_link(request_url: &str, link_header: &str) -> Result<Option<String>, PathError> {
    for link in split_links(link_header) {
        let link = link.trim();
        let Some(rest) = link.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return resolve_location(request_url, target).map(Some);
        }
    }
    Ok(None)
}

/// Splits a `Link` header at the commas between links, not those inside
/// `<…>` or quotes.
#[allow(dead_code)] // for serve (issue 14) and later users
fn split_links(header: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let (mut start, mut in_angle, mut in_quote) = (0, false, false);
    for (i, c) in header.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                links.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    links.push(&header[start..]);
    links
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
        assert_eq!(hub.origin(), "https://registry-1.docker.io");
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
            local.tags("a", None, None),
            "http://127.0.0.1:5000/v2/a/tags/list"
        );
        assert_eq!(
            local.tags("a", Some(50), Some("v1.0")),
            "http://127.0.0.1:5000/v2/a/tags/list?n=50&last=v1.0"
        );
        assert_eq!(
            local.referrers("a", &d, None),
            format!("http://127.0.0.1:5000/v2/a/referrers/{d}")
        );
        assert_eq!(
            local.referrers("a", &d, Some("application/vnd.example+json")),
            format!(
                "http://127.0.0.1:5000/v2/a/referrers/{d}?artifactType=application%2Fvnd.example%2Bjson"
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

    #[test]
    fn origins() {
        assert!(same_origin("http://h:5000/a", "HTTP://H:5000/b?x"));
        assert!(!same_origin("http://h:5000/a", "https://h:5000/a"));
        assert!(!same_origin("http://h:5000/a", "http://h:5001/a"));
        assert!(!same_origin("http://h/a", "http://h.evil/a"));
        assert!(!same_origin("http://h/a", "/a"));
        assert_eq!(
            origin_of("https://Reg.io/v2/?x").as_deref(),
            Some("https://reg.io")
        );
    }

    #[test]
    fn pagination_links() {
        let req = "http://h:5000/v2/a/tags/list?n=2";
        assert_eq!(
            next_link(req, r#"</v2/a/tags/list?n=2&last=b>; rel="next""#)
                .unwrap()
                .as_deref(),
            Some("http://h:5000/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(
                req,
                r#"<http://x/prev?a=1,2>; rel="prev", <https://y/next>; title="a, b"; rel=next"#
            )
            .unwrap()
            .as_deref(),
            Some("https://y/next")
        );
        assert_eq!(next_link(req, r#"</p>; rel="prev""#).unwrap(), None);
        assert_eq!(next_link(req, "garbage").unwrap(), None);
        assert_eq!(
            next_link(req, r#"</q>; rel="first next""#)
                .unwrap()
                .as_deref(),
            Some("http://h:5000/q")
        );
    }
}
