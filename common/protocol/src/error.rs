//! Error classification shared by every service. A service's error enum implements
//! [`ServiceError`]; the HTTP layer maps [`ErrorKind`] to a status code in exactly one place.

use std::fmt;

/// What kind of failure an error is, independent of transport. The HTTP status mapping lives in
/// `loom-http` (`problem.rs`), nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or fails validation (400).
    InvalidInput,
    /// The request needs credentials (401).
    Unauthenticated,
    /// The credentials lack the needed scope (403).
    Forbidden,
    /// The addressed thing does not exist (404).
    NotFound,
    /// The method is not allowed on the route (405).
    MethodNotAllowed,
    /// The request conflicts with current state (409).
    Conflict,
    /// The body exceeds the configured limit (413).
    PayloadTooLarge,
    /// The body's media type is not accepted (415).
    UnsupportedMediaType,
    /// Semantically invalid content (422).
    Unprocessable,
    /// The caller is over a limit (429).
    TooManyRequests,
    /// The feature exists in the API but is not built yet (501).
    NotImplemented,
    /// The service or one of its actors is not available right now (503).
    Unavailable,
    /// The request did not finish in the configured time (504).
    Timeout,
    /// A bug or an unexpected failure (500).
    Internal,
}

/// Implemented by every service's error enum: a kind for the status mapping, a stable
/// machine-readable code (`snake_case`, never changes once published), and a lowercase message
/// through `Display`.
pub trait ServiceError: fmt::Display {
    fn kind(&self) -> ErrorKind;
    fn code(&self) -> &'static str;
}
