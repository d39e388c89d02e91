//! Credentials in a URL: `https://user:secret@host/path` is fetched as
//! `https://host/path` with `Authorization: Basic …` of `user:secret`
//! (percent-decoded, as curl does). The URL without them is what the store
//! records, names in errors and hashes for the partial file, so a password
//! never lands in the index, in a message or on disk; and the HTTP client
//! sends the header to the URL's own origin only, never to another host a
//! redirect leads to.

use base64::Engine as _;

/// A URL without its userinfo, and the `Authorization` value it stood for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Split {
    pub url: String,
    pub authorization: Option<String>,
}

/// Splits the userinfo off an absolute URL. A URL without one, or that
/// is not of the `scheme://authority` form, comes back as it is (the client
/// says what is wrong with it).
pub(super) fn split(url: &str) -> Split {
    let unchanged = || Split {
        url: url.to_string(),
        authorization: None,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return unchanged();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return unchanged();
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let pair = [
        percent_decode(user),
        b":".to_vec(),
        percent_decode(password),
    ]
    .concat();
    Split {
        url: format!("{scheme}://{host}{tail}"),
        authorization: Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )),
    }
}

/// `%XX` escapes to bytes; anything else as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_credentials() {
        let s = split("http://user:p%40ss@127.0.0.1:8080/a/b.aci?x=1");
        assert_eq!(s.url, "http://127.0.0.1:8080/a/b.aci?x=1");
        // base64("user:p@ss")
        assert_eq!(s.authorization.as_deref(), Some("Basic dXNlcjpwQHNz"));
        let s = split("https://token@host");
        assert_eq!(s.url, "https://host");
        assert_eq!(s.authorization.as_deref(), Some("Basic dG9rZW46"));
    }

    #[test]
    fn urls_without_userinfo_are_unchanged() {
        for url in [
            "http://127.0.0.1:8080/x.aci",
            "http://host/path@not-userinfo",
            "not a url",
        ] {
            assert_eq!(
                split(url),
                Split {
                    url: url.into(),
                    authorization: None
                }
            );
        }
    }
}
