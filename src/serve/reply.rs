//! Answers: the headers every answer carries, the spec's JSON error bodies
//! with their statuses ([`crate::remote::registry::errors`]), and the
//! bridge that runs store work on the runtime's blocking pool.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::body::Body;
use crate::error::Error;
use crate::remote::registry::errors::{ErrorBody, ErrorCode};

pub(super) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");
pub(super) const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub(super) const API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");
pub(super) const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The realm of the Basic challenge.
const REALM: &str = "imgstore";

/// A response builder with the headers every answer carries.
pub(super) fn response(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header(API_VERSION, "registry/2.0")
}

/// A JSON answer (no body for `HEAD`, with the length it would have).
pub(super) fn json(status: StatusCode, bytes: Vec<u8>, head: bool) -> Response<Body> {
    let length = bytes.len();
    response(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, length)
        .body(if head {
            Body::Empty
        } else {
            Body::bytes(bytes)
        })
        .expect("a valid response")
}

/// A refusal, as the spec's error JSON with its status.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: Option<serde_json::Value>,
    headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    /// An error with the status the code is answered with.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// A failure of the server or the store, not of the request.
    pub(super) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unknown, message)
    }

    pub(super) fn status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub(super) fn detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub(super) fn header(mut self, name: HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    #[cfg(test)]
    pub(super) fn code(&self) -> &ErrorCode {
        &self.code
    }

    pub(super) fn message(&self) -> &str {
        &self.message
    }

    /// Whether the server is to blame (worth a warning in the log).
    pub(super) fn is_internal(&self) -> bool {
        self.status.is_server_error()
    }

    /// No credentials, or wrong ones: `401` with the Basic challenge.
    pub(super) fn unauthorized() -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, "authentication required").header(
            header::WWW_AUTHENTICATE,
            format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
        )
    }

    /// A path that is no endpoint of the API.
    pub(super) fn not_found() -> ApiError {
        ApiError::new(
            ErrorCode::Unsupported,
            "no such endpoint of the distribution API",
        )
        .status(StatusCode::NOT_FOUND)
    }

    pub(super) fn method_not_allowed(allowed: &[Method]) -> ApiError {
        let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        ApiError::new(
            ErrorCode::Unsupported,
            format!("the endpoint answers only {}", allow.join(", ")),
        )
        .header(header::ALLOW, allow.join(", "))
    }

    /// `--read-only`: every write is refused as distribution's read-only
    /// mode refuses it.
    pub(super) fn read_only() -> ApiError {
        ApiError::new(
            ErrorCode::Unsupported,
            "the registry is read-only: it takes no pushes or deletes",
        )
        .header(header::ALLOW, "GET, HEAD")
    }

    pub(super) fn into_response(self) -> Response<Body> {
        let body = ErrorBody::single(self.code, Some(&self.message), self.detail).to_json();
        let mut builder = response(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(Body::bytes(body))
            .expect("a valid error response")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match &e {
            Error::BlobNotFound(digest) => {
                ApiError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"))
                    .detail(serde_json::json!({ "digest": digest.to_string() }))
            }
            _ => ApiError::internal(chain(&e)),
        }
    }
}

/// An error with its causes, on one line.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Runs store work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("a worker failed: {e}"))))
}
