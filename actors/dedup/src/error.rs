//! The dedup service's errors: one enum, a stable code each, one mapping to HTTP (through
//! loom-http's problem+json); keyed calls carry the owner's code back unchanged.

use loom_cluster::{CallFailure, WireError};
use loom_protocol::{ErrorKind, ServiceError};
use loom_service::book::BookError;

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A policy that fails validation: the field and why.
    #[error("invalid policy: {field}: {message}")]
    BadSpec { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("at most {0} events per request; split the batch")]
    TooMany(usize),
    #[error("the Kafka bridge is off: set kafka.brokers (LOOM_KAFKA_BROKERS) to use a source topic")]
    KafkaOff,
    #[error("no Redis is configured: set cache.url (LOOM_REDIS_URL) to use \"store\": \"redis\"")]
    RedisOff,
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("Redis: {0}")]
    Redis(String),
    #[error("dedup store error")]
    Store(String),
    /// An error the policy's owner node answered with.
    #[error("{message}")]
    Routed { code: &'static str, kind: ErrorKind, message: String },
}

impl From<sea_orm::DbErr> for DedupError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "dedup store error");
        DedupError::Store(e.to_string())
    }
}

impl From<BookError> for DedupError {
    fn from(e: BookError) -> Self {
        match e {
            BookError::NotFound(id) => DedupError::NotFound(format!("policy '{id}'")),
            BookError::Full(n) => DedupError::Conflict(format!("at most {n} policies")),
            BookError::Store(e) => e.into(),
        }
    }
}

/// Every code this service answers with and its kind (also used to restore routed errors).
const CODES: &[(&str, ErrorKind)] = &[
    ("invalid_request", ErrorKind::InvalidInput),
    ("invalid_policy", ErrorKind::Unprocessable),
    ("not_found", ErrorKind::NotFound),
    ("conflict", ErrorKind::Conflict),
    ("too_many_events", ErrorKind::PayloadTooLarge),
    ("kafka_not_configured", ErrorKind::Conflict),
    ("redis_not_configured", ErrorKind::Conflict),
    ("kafka_unavailable", ErrorKind::Unavailable),
    ("redis_unavailable", ErrorKind::Unavailable),
    ("dedup_store_unavailable", ErrorKind::Unavailable),
    ("no_owner", ErrorKind::Unavailable),
    ("owner_unreachable", ErrorKind::Unavailable),
    ("owner_timeout", ErrorKind::Timeout),
    ("owner_lost", ErrorKind::Timeout),
    ("overloaded", ErrorKind::Unavailable),
    ("actor_unavailable", ErrorKind::Unavailable),
    ("actor_timeout", ErrorKind::Timeout),
];

impl ServiceError for DedupError {
    fn kind(&self) -> ErrorKind {
        match self {
            DedupError::Routed { kind, .. } => *kind,
            other => CODES.iter().find(|(c, _)| *c == other.code()).map_or(ErrorKind::Internal, |(_, k)| *k),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DedupError::Invalid(_) => "invalid_request",
            DedupError::BadSpec { .. } => "invalid_policy",
            DedupError::NotFound(_) => "not_found",
            DedupError::Conflict(_) => "conflict",
            DedupError::TooMany(_) => "too_many_events",
            DedupError::KafkaOff => "kafka_not_configured",
            DedupError::RedisOff => "redis_not_configured",
            DedupError::Kafka(_) => "kafka_unavailable",
            DedupError::Redis(_) => "redis_unavailable",
            DedupError::Store(_) => "dedup_store_unavailable",
            DedupError::Routed { code, .. } => code,
        }
    }
}

impl DedupError {
    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> DedupError {
        DedupError::BadSpec { field: field.into(), message: message.into() }
    }

    pub fn to_wire(&self) -> WireError {
        WireError::new(self.code(), self.to_string())
    }

    /// A failed keyed call as this service's error, keeping the owner's or the cluster's code.
    pub fn from_call(failure: CallFailure) -> DedupError {
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
        DedupError::Routed { code, kind, message }
    }
}

impl From<loom_service::CallError> for DedupError {
    fn from(e: loom_service::CallError) -> Self {
        let code = e.code();
        let code = CODES.iter().find(|(c, _)| *c == code).map_or("actor_unavailable", |(c, _)| *c);
        DedupError::Routed { code, kind: e.kind(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_a_keyed_call_with_its_code_and_kind() {
        for e in [
            DedupError::Invalid("x".into()),
            DedupError::spec("window.time", "must be positive"),
            DedupError::NotFound("policy 'a'".into()),
            DedupError::TooMany(10_000),
            DedupError::KafkaOff,
            DedupError::RedisOff,
            DedupError::Store("db".into()),
        ] {
            let back = DedupError::from_call(CallFailure::Remote(e.to_wire()));
            assert_eq!((back.code(), back.kind(), back.to_string()), (e.code(), e.kind(), e.to_string()));
        }
    }
}
