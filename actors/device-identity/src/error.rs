//! The service's errors: one enum, a stable code each, mapped to HTTP through loom-http's
//! problem+json (the single status mapping).

use loom_protocol::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Blocked(String),
    #[error("link refused: {0}")]
    OverMerge(String),
    #[error("{0}")]
    KeyInUse(String),
    #[error("device store error")]
    Store(String),
}

impl From<sea_orm::DbErr> for DeviceError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::error!(error = %e, "device identity store error");
        DeviceError::Store(e.to_string())
    }
}

impl ServiceError for DeviceError {
    fn kind(&self) -> ErrorKind {
        match self {
            DeviceError::Invalid(_) => ErrorKind::InvalidInput,
            DeviceError::NotFound(_) => ErrorKind::NotFound,
            DeviceError::Blocked(_) => ErrorKind::Unprocessable,
            DeviceError::OverMerge(_) => ErrorKind::Conflict,
            DeviceError::KeyInUse(_) => ErrorKind::Conflict,
            DeviceError::Store(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DeviceError::Invalid(_) => "invalid_device_request",
            DeviceError::NotFound(_) => "device_not_found",
            DeviceError::Blocked(_) => "blocked_device_id",
            DeviceError::OverMerge(_) => "group_too_large",
            DeviceError::KeyInUse(_) => "key_in_use",
            DeviceError::Store(_) => "device_store_unavailable",
        }
    }
}
