//! The enrichment service's errors: one enum, a stable code each, mapped to HTTP by loom-http.

use loom_protocol::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("invalid coordinates: {0}")]
    Coordinates(&'static str),
    #[error("invalid time: {0}")]
    Time(String),
    #[error("at most {0} events per request; split the batch")]
    TooMany(usize),
    #[error("{0} context is not built yet")]
    NotBuilt(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ServiceError for EnrichError {
    fn kind(&self) -> ErrorKind {
        match self {
            EnrichError::Invalid(_) | EnrichError::Coordinates(_) | EnrichError::Time(_) => ErrorKind::InvalidInput,
            EnrichError::TooMany(_) => ErrorKind::PayloadTooLarge,
            EnrichError::NotBuilt(_) => ErrorKind::NotImplemented,
            EnrichError::NotFound(_) => ErrorKind::NotFound,
            EnrichError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            EnrichError::Invalid(_) => "invalid_request",
            EnrichError::Coordinates(_) => "invalid_coordinates",
            EnrichError::Time(_) => "invalid_time",
            EnrichError::TooMany(_) => "too_many_events",
            EnrichError::NotBuilt(_) => "not_built",
            EnrichError::NotFound(_) => "not_found",
            EnrichError::Unavailable(_) => "data_unavailable",
        }
    }
}
