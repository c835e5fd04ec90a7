//! RFC 9457 problem details, the one error shape of every Loom route (except where an ecosystem
//! standard fixes another), and the single mapping from [`ErrorKind`] to HTTP status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loom_protocol::{ErrorKind, ServiceError};
use serde::{Deserialize, Serialize};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The one place an error kind becomes a status code.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A problem details body. `code` is the stable machine-readable identifier clients match on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: format!("urn:loom:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            request_id: None,
        }
    }

    pub fn from_error(err: &dyn ServiceError) -> Problem {
        Problem::new(status_for(err.kind()), err.code(), err.to_string())
    }

    /// The problem a bare error status gets when nothing more specific was said.
    pub fn for_status(status: StatusCode) -> Problem {
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no route matches this path"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "the route does not accept this method"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body exceeds the configured limit"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "the content type is not accepted"),
            StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
            StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable", "the request content is invalid"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            s if s.is_server_error() => ("internal", "the server failed to handle the request"),
            _ => ("error", "the request failed"),
        };
        Problem::new(status, code, detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// Wraps any service error so handlers can `?` it into a problem response.
pub struct ApiError(pub Problem);

impl<E: ServiceError> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError(Problem::from_error(&err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_client_or_server_error() {
        use ErrorKind::*;
        let cases = [
            (InvalidInput, 400),
            (Unauthenticated, 401),
            (Forbidden, 403),
            (NotFound, 404),
            (MethodNotAllowed, 405),
            (Conflict, 409),
            (PayloadTooLarge, 413),
            (UnsupportedMediaType, 415),
            (Unprocessable, 422),
            (TooManyRequests, 429),
            (Internal, 500),
            (NotImplemented, 501),
            (Unavailable, 503),
            (Timeout, 504),
        ];
        for (kind, status) in cases {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn problem_serializes_with_type_and_code() {
        let p = Problem::new(StatusCode::NOT_FOUND, "not_found", "no route");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:loom:problem:not_found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["title"], "Not Found");
        assert!(v.get("request_id").is_none());
    }
}
