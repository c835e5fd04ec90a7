//! The router's errors: one enum, a stable code each, mapped to HTTP by loom-http's problem+json.

use loom_protocol::{ErrorKind, ServiceError};

use crate::rules::RuleError;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    BadRule(RuleError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the Kafka bridge is off: set kafka.brokers (LOOM_KAFKA_BROKERS) to route, browse the DLQ or replay")]
    KafkaOff,
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("router store error")]
    Store(String),
}

impl From<sea_orm::DbErr> for RouterError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "event router store error");
        RouterError::Store(e.to_string())
    }
}

impl ServiceError for RouterError {
    fn kind(&self) -> ErrorKind {
        match self {
            RouterError::Invalid(_) => ErrorKind::InvalidInput,
            RouterError::BadRule(_) => ErrorKind::Unprocessable,
            RouterError::NotFound(_) => ErrorKind::NotFound,
            RouterError::Conflict(_) => ErrorKind::Conflict,
            RouterError::KafkaOff | RouterError::Kafka(_) | RouterError::Store(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RouterError::Invalid(_) => "invalid_request",
            RouterError::BadRule(_) => "invalid_rule",
            RouterError::NotFound(_) => "not_found",
            RouterError::Conflict(_) => "conflict",
            RouterError::KafkaOff => "kafka_not_configured",
            RouterError::Kafka(_) => "kafka_unavailable",
            RouterError::Store(_) => "router_store_unavailable",
        }
    }
}
