//! The quality service's errors: one enum, a stable code each, one mapping to HTTP (through
//! loom-http's problem+json); keyed calls carry the owner's code back unchanged.

use loom_cluster::{CallFailure, WireError};
use loom_protocol::{ErrorKind, ServiceError};
use loom_service::book::BookError;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A monitor that fails validation: the field and why.
    #[error("invalid monitor: {field}: {message}")]
    BadSpec { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("at most {0} records per request; split the batch")]
    TooMany(usize),
    #[error("at most {0} windows per report; narrow from/to")]
    TooManyWindows(usize),
    #[error("the Kafka bridge is off: set kafka.brokers (LOOM_KAFKA_BROKERS) to use a source topic")]
    KafkaOff,
    #[error("Kafka unavailable: {0}")]
    Kafka(String),
    #[error("schema subject: {0}")]
    Subject(String),
    #[error("Schema Registry unreachable: {0}")]
    Registry(String),
    #[error("{0} is not built yet")]
    NotBuilt(&'static str),
    #[error("quality store error")]
    Store(String),
    /// An error the monitor's owner node answered with.
    #[error("{message}")]
    Routed { code: &'static str, kind: ErrorKind, message: String },
}

impl From<sea_orm::DbErr> for QualityError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "quality store error");
        QualityError::Store(e.to_string())
    }
}

impl From<BookError> for QualityError {
    fn from(e: BookError) -> Self {
        match e {
            BookError::NotFound(id) => QualityError::NotFound(format!("monitor '{id}'")),
            BookError::Full(n) => QualityError::Conflict(format!("at most {n} monitors")),
            BookError::Store(e) => e.into(),
        }
    }
}

/// Every code this service answers with and its kind (also used to restore routed errors).
const CODES: &[(&str, ErrorKind)] = &[
    ("invalid_request", ErrorKind::InvalidInput),
    ("invalid_monitor", ErrorKind::Unprocessable),
    ("not_found", ErrorKind::NotFound),
    ("conflict", ErrorKind::Conflict),
    ("too_many_records", ErrorKind::PayloadTooLarge),
    ("too_many_windows", ErrorKind::InvalidInput),
    ("kafka_not_configured", ErrorKind::Conflict),
    ("kafka_unavailable", ErrorKind::Unavailable),
    ("unknown_subject", ErrorKind::Unprocessable),
    ("registry_unavailable", ErrorKind::Unavailable),
    ("quality_store_unavailable", ErrorKind::Unavailable),
    ("not_implemented", ErrorKind::NotImplemented),
    ("no_owner", ErrorKind::Unavailable),
    ("owner_unreachable", ErrorKind::Unavailable),
    ("owner_timeout", ErrorKind::Timeout),
    ("owner_lost", ErrorKind::Timeout),
    ("overloaded", ErrorKind::Unavailable),
    ("actor_unavailable", ErrorKind::Unavailable),
    ("actor_timeout", ErrorKind::Timeout),
];

impl ServiceError for QualityError {
    fn kind(&self) -> ErrorKind {
        match self {
            QualityError::Routed { kind, .. } => *kind,
            other => CODES.iter().find(|(c, _)| *c == other.code()).map_or(ErrorKind::Internal, |(_, k)| *k),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            QualityError::Invalid(_) => "invalid_request",
            QualityError::BadSpec { .. } => "invalid_monitor",
            QualityError::NotFound(_) => "not_found",
            QualityError::Conflict(_) => "conflict",
            QualityError::TooMany(_) => "too_many_records",
            QualityError::TooManyWindows(_) => "too_many_windows",
            QualityError::KafkaOff => "kafka_not_configured",
            QualityError::Kafka(_) => "kafka_unavailable",
            QualityError::Subject(_) => "unknown_subject",
            QualityError::Registry(_) => "registry_unavailable",
            QualityError::Store(_) => "quality_store_unavailable",
            QualityError::NotBuilt(_) => "not_implemented",
            QualityError::Routed { code, .. } => code,
        }
    }
}

impl QualityError {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> QualityError {
        QualityError::BadSpec { field: field.into(), message: message.into() }
    }

    pub fn to_wire(&self) -> WireError {
        WireError::new(self.code(), self.to_string())
    }

    /// A failed keyed call as this service's error, keeping the owner's or the cluster's code.
    pub fn from_call(failure: CallFailure) -> QualityError {
        let (code, message) = match &failure {
            CallFailure::NoOwner(_) => ("no_owner", failure.to_string()),
            CallFailure::Unreachable { .. } => ("owner_unreachable", failure.to_string()),
            CallFailure::Timeout { .. } => ("owner_timeout", failure.to_string()),
            CallFailure::Lost { .. } => ("owner_lost", failure.to_string()),
            CallFailure::Remote(e) => match CODES.iter().find(|(c, _)| *c == e.code) {
                Some((code, _)) => (*code, e.message.clone()),
                None => ("actor_unavailable", e.message.clone()),
            },
        };
        let kind = CODES.iter().find(|(c, _)| *c == code).map_or(ErrorKind::Internal, |(_, k)| *k);
        QualityError::Routed { code, kind, message }
    }
}

impl From<loom_service::CallError> for QualityError {
    fn from(e: loom_service::CallError) -> Self {
        let code = e.code();
        let code = CODES.iter().find(|(c, _)| *c == code).map_or("actor_unavailable", |(c, _)| *c);
        QualityError::Routed { code, kind: e.kind(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_a_keyed_call_with_its_code_and_kind() {
        for e in [
            QualityError::Invalid("x".into()),
            QualityError::spec("window", "must be positive"),
            QualityError::NotFound("monitor 'a'".into()),
            QualityError::TooMany(10_000),
            QualityError::KafkaOff,
            QualityError::Store("db".into()),
        ] {
            let back = QualityError::from_call(CallFailure::Remote(e.to_wire()));
            assert_eq!((back.code(), back.kind(), back.to_string()), (e.code(), e.kind(), e.to_string()));
        }
    }
}
