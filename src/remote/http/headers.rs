//! HTTP header fields: a small ordered, case-insensitive map ([`Headers`]),
//! and parsers for the few header values the client acts on —
//! `Cache-Control` (max-age), `Retry-After`, `Content-Range` and `ETag`
//! (weak or strong).
//!
//! Parsers are lenient about whitespace and case, strict about numbers:
//! a value they cannot read is `None`, never a guess.

use std::time::{Duration, SystemTime};

/// Header fields in the order they were given. Names compare without case;
/// a name may occur more than once (`get_all`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    pub(crate) fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a field, keeping any others of the same name.
    pub(crate) fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Sets `name` to `value`, replacing every earlier field of that name.
    pub(crate) fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.fields.push((name, value.into()));
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `Content-Length`, when present and a number.
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.get("content-length")?.trim().parse().ok()
    }
}

/// The freshness lifetime `Cache-Control` gives, in seconds, over every
/// `Cache-Control` field: `no-cache` and `no-store` count as 0 (the cached
/// copy must be revalidated each time), otherwise `max-age=N`. `None` when
/// no directive says (the caller treats that as "not cacheable without
/// asking", as rkt did).
pub(crate) fn cache_max_age<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    let mut max_age = None;
    for directive in values.into_iter().flat_map(|v| v.split(',')) {
        let directive = directive.trim();
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age")
            && let Some(n) = arg.and_then(parse_delta_seconds)
        {
            // Two max-age directives are a server bug; the shorter is the
            // safe reading.
            max_age = Some(max_age.map_or(n, |m: u64| m.min(n)));
        }
    }
    max_age
}

/// RFC 9111 delta-seconds: digits only; a value too large saturates.
fn parse_delta_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// How long `Retry-After` asks to wait: delta-seconds or an HTTP date
/// (a date in the past means now). `None` when the value is neither.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = parse_delta_seconds(value) {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A `Content-Range: bytes START-END/TOTAL` value (TOTAL may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    pub(crate) start: u64,
    /// Inclusive, as on the wire.
    pub(crate) end: u64,
    pub(crate) total: Option<u64>,
}

impl ContentRange {
    /// The number of bytes the range covers.
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// Parses a satisfied byte range. `None` for anything else, including the
/// unsatisfied form `bytes */TOTAL` and a range that ends before it starts
/// or past the total.
pub(crate) fn content_range(value: &str) -> Option<ContentRange> {
    let value = value.trim();
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, total) = rest.trim().split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let start = number(start)?;
    let end = number(end)?;
    let total = match total.trim() {
        "*" => None,
        t => Some(number(t)?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

/// Whether an entity tag is weak (`W/"…"`): weak tags may not be used
/// with `If-Range` (RFC 9110 §13.1.5).
pub(crate) fn is_weak_etag(etag: &str) -> bool {
    etag.trim_start().starts_with("W/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("Link", "a");
        h.append("link", "b");
        h.set("Content-Type", "x");
        h.set("content-type", "y");
        assert_eq!(h.get("LINK"), Some("a"));
        assert_eq!(h.get_all("Link").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("Content-Type"), Some("y"));
        assert_eq!(h.iter().count(), 3);
        h.remove("LINK");
        assert_eq!(h.get("link"), None);
        h.set("content-length", " 12 ");
        assert_eq!(h.content_length(), Some(12));
    }

    #[test]
    fn max_age_from_cache_control() {
        assert_eq!(cache_max_age(["max-age=300"]), Some(300));
        assert_eq!(
            cache_max_age(["public, Max-Age = 60 , must-revalidate"]),
            Some(60)
        );
        assert_eq!(cache_max_age(["max-age=\"5\""]), Some(5));
        assert_eq!(cache_max_age(["max-age=0"]), Some(0));
        assert_eq!(cache_max_age(["no-cache"]), Some(0));
        assert_eq!(cache_max_age(["max-age=600, no-store"]), Some(0));
        assert_eq!(cache_max_age(["private", "max-age=10"]), Some(10));
        assert_eq!(cache_max_age(["max-age=10", "max-age=5"]), Some(5));
        assert_eq!(cache_max_age(["max-age=-1"]), None);
        assert_eq!(cache_max_age(["max-age=1e3"]), None);
        assert_eq!(cache_max_age(["public"]), None);
        assert_eq!(cache_max_age([]), None);
        assert_eq!(
            cache_max_age(["max-age=99999999999999999999999"]),
            Some(u64::MAX)
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past means "now", not an error.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            content_range("bytes 100-199/1000"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(1000)
            })
        );
        assert_eq!(content_range("bytes 0-0/*").map(|r| r.total), Some(None));
        assert_eq!(content_range("Bytes 5-9/10").map(|r| r.len()), Some(5));
        assert_eq!(content_range("bytes */1000"), None);
        assert_eq!(content_range("bytes 10-5/100"), None);
        assert_eq!(content_range("bytes 0-100/100"), None);
        assert_eq!(content_range("items 0-1/2"), None);
        assert_eq!(content_range("bytes -1-5/9"), None);
        assert_eq!(content_range("bytes 1-5"), None);
        assert_eq!(content_range("bytes +1-5/9"), None);
    }

    #[test]
    fn weak_etags() {
        assert!(is_weak_etag("W/\"abc\""));
        assert!(!is_weak_etag("\"abc\""));
    }
}
