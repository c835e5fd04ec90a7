//! The filter's errors: one enum, a stable code each, mapped to HTTP by loom-http's problem+json.
//! Messages name entity types, rules and paths — never a scanned value.

use loom_protocol::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unknown rule '{0}' (known: email, phone, ssn, credit_card, iban, ip, mac, url, gps, dob, passport)")]
    UnknownRule(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("privacy store unavailable: {0}")]
    Unavailable(String),
    #[error("the data nests deeper than {0} levels; deeper values are not scanned, so it is refused")]
    TooDeep(usize),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sea_orm::DbErr> for FilterError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "privacy filter store error");
        FilterError::Unavailable("the database did not answer".into())
    }
}

impl ServiceError for FilterError {
    fn kind(&self) -> ErrorKind {
        match self {
            FilterError::Invalid(_) | FilterError::UnknownRule(_) => ErrorKind::InvalidInput,
            FilterError::NotFound(_) => ErrorKind::NotFound,
            FilterError::Conflict(_) => ErrorKind::Conflict,
            FilterError::Unavailable(_) => ErrorKind::Unavailable,
            FilterError::TooDeep(_) => ErrorKind::Unprocessable,
            FilterError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FilterError::Invalid(_) => "invalid_request",
            FilterError::UnknownRule(_) => "unknown_rule",
            FilterError::NotFound(_) => "not_found",
            FilterError::Conflict(_) => "conflict",
            FilterError::Unavailable(_) => "privacy_store_unavailable",
            FilterError::TooDeep(_) => "too_deep",
            FilterError::Internal(_) => "internal",
        }
    }
}
