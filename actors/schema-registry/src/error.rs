//! The registry's errors in Confluent's shape — `{"error_code": 40401, "message": "…"}` with the
//! HTTP status Confluent uses — so stock Schema Registry clients understand them. One enum, one
//! mapping.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The content type of every JSON answer, success or error (Confluent's).
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Confluent's error body, sent with the HTTP status its code starts with (404 for 404xx, 422
/// for 422xx, 500 for 50001, 503 for 50002).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfluentError {
    /// Confluent's code: 400 bad body; 40401 subject, 40402 version, 40403 schema not found;
    /// 40404 subject, 40406 version soft-deleted; 40405 subject, 40407 version not soft-deleted
    /// first; 40408 no subject compatibility, 40409 no subject mode; 409 incompatible; 42201
    /// invalid schema, 42202 invalid version, 42203 invalid compatibility, 42204 invalid mode,
    /// 42205 read-only, 42206 the version is referenced by another schema; 50001 store error;
    /// 50002 busy or restarting.
    pub error_code: u32,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema not found")]
    SchemaNotFound,
    // Confluent's texts, "deleted.Set" without a space included.
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i32),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i32),
    /// A delete refused because another schema references (`subject`, `version`); the text is
    /// Confluent's `SchemaKey` rendering, which its clients and tests match on.
    #[error(
        "One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={subject},version={version}}}."
    )]
    ReferenceExists { subject: String, version: i32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", details.join(", "))]
    Incompatible { subject: String, details: Vec<String> },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive; got '{0}'"
    )]
    InvalidCompatibility(String),
    #[error("Invalid mode. Valid values are READWRITE, READONLY and READONLY_OVERRIDE; got '{0}'")]
    InvalidMode(String),
    #[error("Subject '{0}' is in read-only mode")]
    ReadOnly(String),
    #[error("Unrecognized request body: {0}")]
    BadRequest(String),
    #[error("Invalid query parameters: {0}")]
    BadQuery(String),
    #[error("Error in the backend data store: {0}")]
    Store(String),
    #[error("The registry is busy or restarting, retry shortly: {0}")]
    Unavailable(String),
}

impl RegistryError {
    /// Confluent's error code and HTTP status.
    pub fn code(&self) -> (u32, StatusCode) {
        use RegistryError::*;
        match self {
            SubjectNotFound(_) => (40401, StatusCode::NOT_FOUND),
            VersionNotFound(_) => (40402, StatusCode::NOT_FOUND),
            SchemaNotFound => (40403, StatusCode::NOT_FOUND),
            SubjectSoftDeleted(_) => (40404, StatusCode::NOT_FOUND),
            SubjectNotSoftDeleted(_) => (40405, StatusCode::NOT_FOUND),
            VersionSoftDeleted(..) => (40406, StatusCode::NOT_FOUND),
            VersionNotSoftDeleted(..) => (40407, StatusCode::NOT_FOUND),
            SubjectCompatibilityNotConfigured(_) => (40408, StatusCode::NOT_FOUND),
            SubjectModeNotConfigured(_) => (40409, StatusCode::NOT_FOUND),
            Incompatible { .. } => (409, StatusCode::CONFLICT),
            InvalidSchema(_) => (42201, StatusCode::UNPROCESSABLE_ENTITY),
            InvalidVersion(_) => (42202, StatusCode::UNPROCESSABLE_ENTITY),
            InvalidCompatibility(_) => (42203, StatusCode::UNPROCESSABLE_ENTITY),
            InvalidMode(_) => (42204, StatusCode::UNPROCESSABLE_ENTITY),
            ReadOnly(_) => (42205, StatusCode::UNPROCESSABLE_ENTITY),
            ReferenceExists { .. } => (42206, StatusCode::UNPROCESSABLE_ENTITY),
            BadRequest(_) | BadQuery(_) => (400, StatusCode::BAD_REQUEST),
            Store(_) => (50001, StatusCode::INTERNAL_SERVER_ERROR),
            Unavailable(_) => (50002, StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

impl From<sea_orm::DbErr> for RegistryError {
    fn from(e: sea_orm::DbErr) -> Self {
        RegistryError::Store(e.to_string())
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (code, status) = self.code();
        if status.is_server_error() {
            tracing::error!(error_code = code, error = %self, "schema registry store error");
        }
        let body = ConfluentError { error_code: code, message: self.to_string() };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}
