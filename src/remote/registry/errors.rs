//! The distribution spec's error bodies, both ways: reading what a registry
//! refused with, and building what `serve` answers.
//!
//! ```json
//! {"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}
//! ```
//!
//! Codes are those of the OCI distribution spec and the statuses those
//! distribution (the reference registry) answers them with. A refusal
//! becomes one line naming the registry, the status and what it said:
//! `registry 127.0.0.1:5000 refused: 401 UNAUTHORIZED: authentication required`.
//! Bodies that are not the spec's JSON (an HTML page from a proxy, plain
//! text) are reduced to a short printable excerpt, never dumped whole.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::remote::http::reason_phrase;

/// An error code of the distribution spec; codes this list does not know
/// are kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// distribution's extras, which `serve` needs too.
    RangeInvalid,
    TagInvalid,
    PaginationNumberInvalid,
    Unavailable,
    Unknown,
    Other(String),
}

/// Every known code, for tables and tests.
pub(crate) const KNOWN_CODES: [ErrorCode; 19] = [
    ErrorCode::BlobUnknown,
    ErrorCode::BlobUploadInvalid,
    ErrorCode::BlobUploadUnknown,
    ErrorCode::DigestInvalid,
    ErrorCode::ManifestBlobUnknown,
    ErrorCode::ManifestInvalid,
    ErrorCode::ManifestUnknown,
    ErrorCode::NameInvalid,
    ErrorCode::NameUnknown,
    ErrorCode::SizeInvalid,
    ErrorCode::Unauthorized,
    ErrorCode::Denied,
    ErrorCode::Unsupported,
    ErrorCode::TooManyRequests,
    ErrorCode::RangeInvalid,
    ErrorCode::TagInvalid,
    ErrorCode::PaginationNumberInvalid,
    ErrorCode::Unavailable,
    ErrorCode::Unknown,
];

impl ErrorCode {
    /// The code as the JSON writes it: `BLOB_UNKNOWN`.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::Other(code) => code,
        }
    }

    pub(crate) fn parse(code: &str) -> ErrorCode {
        KNOWN_CODES
            .iter()
            .find(|known| known.as_str() == code)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(code.to_string()))
    }

    /// The status a registry answers the code with (distribution's choices;
    /// `BLOB_UPLOAD_INVALID` is a 404 there, oddly, and clients expect it).
    pub(crate) fn status(&self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadInvalid
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::PaginationNumberInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Unknown | ErrorCode::Other(_) => 500,
        }
    }

    /// The spec's message for the code, for answers that have no better one.
    pub(crate) fn default_message(&self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::RangeInvalid => "invalid content range",
            ErrorCode::TagInvalid => "manifest tag did not match URI",
            ErrorCode::PaginationNumberInvalid => "invalid number of results requested",
            ErrorCode::Unavailable => "service unavailable",
            ErrorCode::Unknown | ErrorCode::Other(_) => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ErrorCode::parse(&String::deserialize(d)?))
    }
}

/// One entry of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegistryErrorEntry {
    pub(crate) code: ErrorCode,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<serde_json::Value>,
}

/// `{"errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) errors: Vec<RegistryErrorEntry>,
}

impl ErrorBody {
    /// The body of one error, with the code's own message when `message`
    /// is `None`.
    pub(crate) fn single(
        code: ErrorCode,
        message: Option<&str>,
        detail: Option<serde_json::Value>,
    ) -> ErrorBody {
        let message = message.unwrap_or(code.default_message()).to_string();
        ErrorBody {
            errors: vec![RegistryErrorEntry {
                code,
                message,
                detail,
            }],
        }
    }

    /// The spec's error JSON for an answer body.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an error body serialises")
    }

    /// Reads a body as the spec's error JSON; `None` when it is not that.
    pub(crate) fn parse(body: &[u8]) -> Option<ErrorBody> {
        let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
        (!parsed.errors.is_empty()).then_some(parsed)
    }
}

/// A registry's refusal: who, which status, and what it said.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
#[error("registry {registry} refused: {}", summary(*status, errors, excerpt.as_deref()))]
pub struct Refusal {
    pub(crate) registry: String,
    pub(crate) status: u16,
    pub(crate) errors: Vec<RegistryErrorEntry>,
    /// A short printable excerpt of a body that was not error JSON.
    pub(crate) excerpt: Option<String>,
}

/// How much of a non-JSON body a message shows.
const EXCERPT_CHARS: usize = 120;

impl Refusal {
    /// Reads an error answer: the JSON errors when the body has them, else
    /// an excerpt of the body (HTML is left out: it says nothing in one line).
    pub(crate) fn new(registry: &str, status: u16, body: &[u8]) -> Refusal {
        let errors = ErrorBody::parse(body).map(|b| b.errors).unwrap_or_default();
        let excerpt = if errors.is_empty() {
            excerpt(body)
        } else {
            None
        };
        Refusal {
            registry: registry.to_string(),
            status,
            errors,
            excerpt,
        }
    }

    /// The registry (`host[:port]`) that refused.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The HTTP status it answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The distribution spec's error codes it gave (`MANIFEST_UNKNOWN`…),
    /// in order; none when its body was not the spec's JSON.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.errors.iter().map(|e| e.code.as_str())
    }
}

fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        return None;
    }
    let mut line: String = one_line(text).chars().take(EXCERPT_CHARS + 1).collect();
    if line.chars().count() > EXCERPT_CHARS {
        line = line.chars().take(EXCERPT_CHARS).collect();
        line.push('…');
    }
    Some(line)
}

fn summary(status: u16, errors: &[RegistryErrorEntry], excerpt: Option<&str>) -> String {
    let mut out = status.to_string();
    if errors.is_empty() {
        out.push(' ');
        out.push_str(reason_phrase(status));
        if let Some(excerpt) = excerpt {
            out.push_str(": ");
            out.push_str(excerpt);
        }
        return out;
    }
    for (i, entry) in errors.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { "; " });
        out.push_str(entry.code.as_str());
        let message = entry.message.trim();
        if !message.is_empty() {
            out.push_str(": ");
            out.push_str(&one_line(message));
        }
        // A string detail is often the useful part ("unknown tag v9").
        if let Some(serde_json::Value::String(detail)) = &entry.detail
            && !detail.is_empty()
            && detail != message
        {
            out.push_str(" (");
            out.push_str(&one_line(detail));
            out.push(')');
        }
    }
    out
}

/// Control characters (newlines, escapes) become spaces, and runs of
/// spaces one: a message stays on its line and cannot drive the terminal.
pub(crate) fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_with_statuses() {
        let table = [
            ("BLOB_UNKNOWN", 404),
            ("BLOB_UPLOAD_INVALID", 404),
            ("BLOB_UPLOAD_UNKNOWN", 404),
            ("DIGEST_INVALID", 400),
            ("MANIFEST_BLOB_UNKNOWN", 400),
            ("MANIFEST_INVALID", 400),
            ("MANIFEST_UNKNOWN", 404),
            ("NAME_INVALID", 400),
            ("NAME_UNKNOWN", 404),
            ("SIZE_INVALID", 400),
            ("UNAUTHORIZED", 401),
            ("DENIED", 403),
            ("UNSUPPORTED", 405),
            ("TOOMANYREQUESTS", 429),
            ("RANGE_INVALID", 416),
            ("TAG_INVALID", 400),
            ("PAGINATION_NUMBER_INVALID", 400),
            ("UNAVAILABLE", 503),
            ("UNKNOWN", 500),
        ];
        assert_eq!(table.len(), KNOWN_CODES.len());
        for (name, status) in table {
            let code = ErrorCode::parse(name);
            assert!(!matches!(code, ErrorCode::Other(_)), "{name}");
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status(), status, "{name}");
            assert!(!code.default_message().is_empty());
        }
        let other = ErrorCode::parse("QUOTA_EXCEEDED");
        assert_eq!(other, ErrorCode::Other("QUOTA_EXCEEDED".into()));
        assert_eq!((other.as_str(), other.status()), ("QUOTA_EXCEEDED", 500));
    }

    #[test]
    fn builds_the_spec_json() {
        let body = ErrorBody::single(ErrorCode::ManifestUnknown, None, None);
        assert_eq!(
            String::from_utf8(body.to_json()).unwrap(),
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown to registry"}]}"#
        );
        let body = ErrorBody::single(
            ErrorCode::NameInvalid,
            Some("invalid repository name \"A\""),
            Some(serde_json::json!({"name": "A"})),
        );
        let parsed = ErrorBody::parse(&body.to_json()).unwrap();
        assert_eq!(parsed, body);
        assert_eq!(
            parsed.errors[0].detail,
            Some(serde_json::json!({"name": "A"}))
        );
    }

    #[test]
    fn parses_registry_bodies() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"a","Action":"pull"}]}]}"#;
        let parsed = ErrorBody::parse(body).unwrap();
        assert_eq!(parsed.errors[0].code, ErrorCode::Unauthorized);
        // Missing message, unknown code, extra fields.
        let parsed =
            ErrorBody::parse(br#"{"errors":[{"code":"X_Y","extra":1}],"more":true}"#).unwrap();
        assert_eq!(parsed.errors[0].code, ErrorCode::Other("X_Y".into()));
        assert_eq!(parsed.errors[0].message, "");
        for not_errors in [
            &b"<html>"[..],
            b"{}",
            br#"{"errors":[]}"#,
            b"",
            br#"{"errors":"x"}"#,
        ] {
            assert!(ErrorBody::parse(not_errors).is_none());
        }
    }

    #[test]
    fn one_line_refusals() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        let r = Refusal::new("127.0.0.1:5000", 401, body);
        assert_eq!(r.codes().collect::<Vec<_>>(), ["UNAUTHORIZED"]);
        assert_eq!(
            r.to_string(),
            "registry 127.0.0.1:5000 refused: 401 UNAUTHORIZED: authentication required"
        );

        let two = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":"unknown tag=v9"},{"code":"NAME_UNKNOWN","message":"repository\nname not known"}]}"#;
        assert_eq!(
            Refusal::new("r.io", 404, two).to_string(),
            "registry r.io refused: 404 MANIFEST_UNKNOWN: manifest unknown (unknown tag=v9); NAME_UNKNOWN: repository name not known"
        );

        let rate = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        assert_eq!(
            Refusal::new("docker.io", 429, rate).to_string(),
            "registry docker.io refused: 429 TOOMANYREQUESTS: You have reached your pull rate limit."
        );
    }

    #[test]
    fn refusals_without_error_json() {
        let html = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
        assert_eq!(
            Refusal::new("h", 502, html).to_string(),
            "registry h refused: 502 Bad Gateway"
        );
        assert_eq!(
            Refusal::new("h", 404, b"").to_string(),
            "registry h refused: 404 Not Found"
        );
        assert_eq!(
            Refusal::new("h", 403, b"  access\r\ndenied by\tpolicy \x07 ").to_string(),
            "registry h refused: 403 Forbidden: access denied by policy"
        );
        assert_eq!(
            Refusal::new("h", 599, b"").to_string(),
            "registry h refused: 599 Server Error"
        );
        let long = "x".repeat(500);
        let shown = Refusal::new("h", 500, long.as_bytes()).to_string();
        assert!(shown.ends_with(&format!("{}…", "x".repeat(120))), "{shown}");
        assert!(shown.chars().count() < 200);
    }
}
