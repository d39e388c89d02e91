//! The little of URL handling the client needs: checking that a URL is an
//! absolute `http`/`https` URL, its origin (scheme, host, port — the unit
//! credentials are bound to), and resolving a `Location` or `Link` target
//! against the URL it came from (RFC 3986 §5.2).
//!
//! Worked example: a redirect from `http://a:8080/v2/x/blobs/sha256:ab`
//! with `Location: ../../y/z?sig=1` resolves to `http://a:8080/v2/y/z?sig=1`,
//! whose origin `http://a:8080` is the request's, so credentials go along;
//! `Location: https://a/z` has origin `https://a:443`, another one.

use std::fmt;

/// Scheme, host and port of a URL; two URLs may share credentials only if
/// their origins are equal. Host names are compared without case, and a
/// missing port is the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http` or `https` URL.
    pub(crate) fn of(url: &str) -> Result<Origin, &'static str> {
        let parts = split(url);
        let scheme = parts
            .scheme
            .ok_or("not an absolute URL")?
            .to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err("only http and https URLs are supported"),
        };
        let authority = parts.authority.ok_or("the URL has no host")?;
        // Userinfo is not sent (credentials travel in Authorization only).
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
            (format!("[{host}]"), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host");
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().map_err(|_| "the port is not a number")?,
        };
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// `host:port`, as errors name the server.
    pub(crate) fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Resolves `reference` (absolute, `//host/…`, `/path`, `path` or `?query`)
/// against the absolute URL `base`. Fragments are dropped: they are never
/// sent.
pub(crate) fn resolve(base: &str, reference: &str) -> String {
    let b = split(base);
    let r = split(reference.trim());
    let (scheme, authority, path, query);
    if let Some(s) = r.scheme {
        scheme = s;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = b.scheme.unwrap_or("");
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = b.authority;
            if r.path.is_empty() {
                path = b.path.to_string();
                query = r.query.or(b.query);
            } else {
                path = if r.path.starts_with('/') {
                    remove_dot_segments(r.path)
                } else {
                    remove_dot_segments(&merge(b.authority.is_some(), b.path, r.path))
                };
                query = r.query;
            }
        }
    }
    let mut out = String::with_capacity(base.len() + reference.len());
    // Schemes are case-insensitive; lower case is their normal form.
    out.push_str(&scheme.to_ascii_lowercase());
    out.push(':');
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The five components of RFC 3986 appendix B (fragment dropped).
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split(url: &str) -> Parts<'_> {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let (scheme, rest) = match url.find([':', '/', '?']) {
        Some(i) if url.as_bytes()[i] == b':' && is_scheme(&url[..i]) => {
            (Some(&url[..i]), &url[i + 1..])
        }
        _ => (None, url),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Parts {
        scheme,
        authority,
        path,
        query,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn merge(base_has_authority: bool, base_path: &str, reference: &str) -> String {
    if base_has_authority && base_path.is_empty() {
        return format!("/{reference}");
    }
    match base_path.rfind('/') {
        Some(i) => format!("{}{reference}", &base_path[..=i]),
        None => reference.to_string(),
    }
}

/// RFC 3986 §5.2.4, by segments: `.` goes, `..` removes the segment before.
fn remove_dot_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        if i == 0 && absolute {
            continue;
        }
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    if absolute {
        result.push('/');
    }
    result.push_str(&out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = Origin::of("http://Example.COM/x").unwrap();
        assert_eq!(o.to_string(), "http://example.com:80");
        assert_eq!(o, Origin::of("HTTP://example.com:80/y?z").unwrap());
        assert_ne!(o, Origin::of("https://example.com/x").unwrap());
        assert_ne!(
            Origin::of("http://127.0.0.1:5000/").unwrap(),
            Origin::of("http://localhost:5000/").unwrap()
        );
        assert_eq!(
            Origin::of("https://u:p@[::1]:8443/v2/")
                .unwrap()
                .host_port(),
            "[::1]:8443"
        );
        assert_eq!(Origin::of("https://h/").unwrap().host_port(), "h:443");
        assert!(Origin::of("ftp://h/x").is_err());
        assert!(Origin::of("/relative").is_err());
        assert!(Origin::of("http:///nohost").is_err());
        assert!(Origin::of("http://h:99999/").is_err());
    }

    #[test]
    fn resolves_references_as_rfc3986_does() {
        // The normal examples of RFC 3986 §5.4.1 that apply to http.
        let base = "http://a/b/c/d;p?q";
        for (reference, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/p?q", "https://other:8443/p?q"),
        ] {
            assert_eq!(resolve(base, reference), want, "reference {reference:?}");
        }
        assert_eq!(resolve("http://h:1", "x"), "http://h:1/x");
        assert_eq!(
            resolve(
                "http://h:1/v2/r/blobs/uploads/",
                "/v2/r/blobs/uploads/u?_state=a"
            ),
            "http://h:1/v2/r/blobs/uploads/u?_state=a"
        );
    }
}
