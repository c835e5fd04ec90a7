//! The filter's errors: one enum, a stable code each, mapped to HTTP by loom-http's problem+json.
//! Messages name entity types, rules and paths — never a scanned value.

use loom_protocol::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unknown rule '{0}' (known: email, phone, ssn, credit_card, iban, ip, mac, url, gps, dob, passport)")]
    UnknownRule(String),
    #[error("{0}")]
    NotBuilt(String),
}

impl ServiceError for FilterError {
    fn kind(&self) -> ErrorKind {
        match self {
            FilterError::Invalid(_) | FilterError::UnknownRule(_) => ErrorKind::InvalidInput,
            FilterError::NotBuilt(_) => ErrorKind::NotImplemented,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FilterError::Invalid(_) => "invalid_request",
            FilterError::UnknownRule(_) => "unknown_rule",
            FilterError::NotBuilt(_) => "not_built",
        }
    }
}
