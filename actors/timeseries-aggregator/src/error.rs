//! The aggregator's errors: one enum, a stable code each, one mapping to HTTP (through
//! loom-http's problem+json); keyed calls carry the owner's code back unchanged.

use loom_cluster::{CallFailure, WireError};
use loom_protocol::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum TsError {
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A job spec that fails validation: the field and why.
    #[error("invalid job: {field}: {message}")]
    BadSpec { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("at most {0} events per request; split the batch")]
    TooMany(usize),
    #[error("the Kafka bridge is off: set kafka.brokers (LOOM_KAFKA_BROKERS) to use a Kafka source or sink")]
    KafkaOff,
    #[error("the node's database is not PostgreSQL: a postgres sink needs database.url = postgres://…")]
    PostgresOff,
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("aggregator store error")]
    Store(String),
    /// An error the job's owner node answered with.
    #[error("{message}")]
    Routed { code: &'static str, kind: ErrorKind, message: String },
}

impl From<sea_orm::DbErr> for TsError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "timeseries store error");
        TsError::Store(e.to_string())
    }
}

/// Every code this service answers with and its kind (also used to restore routed errors).
const CODES: &[(&str, ErrorKind)] = &[
    ("invalid_request", ErrorKind::InvalidInput),
    ("invalid_job", ErrorKind::Unprocessable),
    ("not_found", ErrorKind::NotFound),
    ("conflict", ErrorKind::Conflict),
    ("too_many_events", ErrorKind::PayloadTooLarge),
    ("kafka_not_configured", ErrorKind::Conflict),
    ("postgres_not_configured", ErrorKind::Conflict),
    ("kafka_unavailable", ErrorKind::Unavailable),
    ("timeseries_store_unavailable", ErrorKind::Unavailable),
    ("no_owner", ErrorKind::Unavailable),
    ("owner_unreachable", ErrorKind::Unavailable),
    ("owner_timeout", ErrorKind::Timeout),
    ("owner_lost", ErrorKind::Timeout),
    ("overloaded", ErrorKind::Unavailable),
    ("actor_unavailable", ErrorKind::Unavailable),
    ("actor_timeout", ErrorKind::Timeout),
];

impl ServiceError for TsError {
    fn kind(&self) -> ErrorKind {
        match self {
            TsError::Routed { kind, .. } => *kind,
            other => CODES.iter().find(|(c, _)| *c == other.code()).map_or(ErrorKind::Internal, |(_, k)| *k),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TsError::Invalid(_) => "invalid_request",
            TsError::BadSpec { .. } => "invalid_job",
            TsError::NotFound(_) => "not_found",
            TsError::Conflict(_) => "conflict",
            TsError::TooMany(_) => "too_many_events",
            TsError::KafkaOff => "kafka_not_configured",
            TsError::PostgresOff => "postgres_not_configured",
            TsError::Kafka(_) => "kafka_unavailable",
            TsError::Store(_) => "timeseries_store_unavailable",
            TsError::Routed { code, .. } => code,
        }
    }
}

impl TsError {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> TsError {
        TsError::BadSpec { field: field.into(), message: message.into() }
    }

    pub fn to_wire(&self) -> WireError {
        WireError::new(self.code(), self.to_string())
    }

    /// A failed keyed call as this service's error, keeping the owner's or the cluster's code.
    pub fn from_call(failure: CallFailure) -> TsError {
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
        TsError::Routed { code, kind, message }
    }
}

impl From<loom_service::CallError> for TsError {
    fn from(e: loom_service::CallError) -> Self {
        let code = e.code();
        let code = CODES.iter().find(|(c, _)| *c == code).map_or("actor_unavailable", |(c, _)| *c);
        TsError::Routed { code, kind: e.kind(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_a_keyed_call_with_its_code_and_kind() {
        for e in [
            TsError::Invalid("x".into()),
            TsError::spec("window.size", "must be positive"),
            TsError::NotFound("job 'a'".into()),
            TsError::TooMany(10_000),
            TsError::KafkaOff,
            TsError::PostgresOff,
            TsError::Store("db".into()),
        ] {
            let back = TsError::from_call(CallFailure::Remote(e.to_wire()));
            assert_eq!((back.code(), back.kind(), back.to_string()), (e.code(), e.kind(), e.to_string()));
        }
    }
}
