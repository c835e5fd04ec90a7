//! The enrichment service's errors: one enum, a stable code each, mapped to HTTP by loom-http.

use loom_protocol::{ErrorKind, ServiceError};
use loom_service::book::BookError;

use crate::calendar::CalendarError;
use crate::geofence::PlaceError;
use crate::rules::RuleError;

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
    #[error(transparent)]
    BadRule(#[from] RuleError),
    #[error(transparent)]
    BadPlace(#[from] PlaceError),
    #[error("invalid calendar: {0}")]
    BadCalendar(#[from] CalendarError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("enrichment store error")]
    Store(String),
}

impl From<loom_storage::sea_orm::DbErr> for EnrichError {
    fn from(e: loom_storage::sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "enrichment store error");
        EnrichError::Store(e.to_string())
    }
}

impl From<BookError> for EnrichError {
    fn from(e: BookError) -> Self {
        match e {
            BookError::NotFound(id) => EnrichError::NotFound(format!("'{id}'")),
            BookError::Full(n) => EnrichError::Conflict(format!("at most {n} entries of this kind")),
            BookError::Store(e) => e.into(),
        }
    }
}

impl ServiceError for EnrichError {
    fn kind(&self) -> ErrorKind {
        match self {
            EnrichError::Invalid(_) | EnrichError::Coordinates(_) | EnrichError::Time(_) => ErrorKind::InvalidInput,
            EnrichError::TooMany(_) => ErrorKind::PayloadTooLarge,
            EnrichError::NotBuilt(_) => ErrorKind::NotImplemented,
            EnrichError::NotFound(_) => ErrorKind::NotFound,
            EnrichError::Unavailable(_) => ErrorKind::Unavailable,
            EnrichError::BadRule(_) | EnrichError::BadPlace(_) | EnrichError::BadCalendar(_) => {
                ErrorKind::Unprocessable
            }
            EnrichError::Conflict(_) => ErrorKind::Conflict,
            EnrichError::TooLarge(_) => ErrorKind::PayloadTooLarge,
            EnrichError::Store(_) => ErrorKind::Unavailable,
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
            EnrichError::BadRule(_) => "invalid_rule",
            EnrichError::BadPlace(_) => "invalid_place",
            EnrichError::BadCalendar(_) => "invalid_calendar",
            EnrichError::Conflict(_) => "conflict",
            EnrichError::TooLarge(_) => "too_large",
            EnrichError::Store(_) => "enrichment_store_unavailable",
        }
    }
}
