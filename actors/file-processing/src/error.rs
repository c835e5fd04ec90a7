//! File Processing's errors: one enum for the HTTP answers (a stable code each, mapped to a
//! status by loom-http), and [`Failure`], the code a failed job carries.

use loom_protocol::{ErrorKind, ServiceError};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("invalid operation: {0}")]
    InvalidOp(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the upload exceeds files.max_upload ({0} bytes)")]
    TooLarge(u64),
    #[error("the upload is empty")]
    Empty,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0} jobs are queued or running on this node; retry shortly")]
    QueueFull(usize),
    #[error("{0} is not built yet")]
    NotBuilt(String),
    #[error("{0}")]
    ToolUnavailable(String),
    #[error("file {0} is quarantined after repeated parser crashes or timeouts (see GET /quarantine)")]
    Quarantined(String),
    #[error("the job already ended ({0})")]
    Ended(&'static str),
    #[error("object store: {0}")]
    Store(String),
}

impl ServiceError for FileError {
    fn kind(&self) -> ErrorKind {
        match self {
            FileError::Invalid(_) | FileError::Empty => ErrorKind::InvalidInput,
            FileError::InvalidOp(_) => ErrorKind::Unprocessable,
            FileError::NotFound(_) => ErrorKind::NotFound,
            FileError::TooLarge(_) => ErrorKind::PayloadTooLarge,
            FileError::Unsupported(_) => ErrorKind::UnsupportedMediaType,
            FileError::QueueFull(_) => ErrorKind::TooManyRequests,
            FileError::NotBuilt(_) => ErrorKind::NotImplemented,
            FileError::Ended(_) => ErrorKind::Conflict,
            FileError::ToolUnavailable(_) => ErrorKind::Unavailable,
            FileError::Quarantined(_) => ErrorKind::Unprocessable,
            FileError::Store(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FileError::Invalid(_) => "invalid_request",
            FileError::InvalidOp(_) => "invalid_operation",
            FileError::NotFound(_) => "not_found",
            FileError::TooLarge(_) => "too_large",
            FileError::Empty => "empty_file",
            FileError::Unsupported(_) => "unsupported_media",
            FileError::QueueFull(_) => "queue_full",
            FileError::NotBuilt(_) => "not_built",
            FileError::Ended(_) => "job_ended",
            FileError::ToolUnavailable(_) => "tool_unavailable",
            FileError::Quarantined(_) => "quarantined",
            FileError::Store(_) => "store_unavailable",
        }
    }
}

/// Why a job failed: the stable code on `job.error.code`, and a message without file content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure { code: code.to_owned(), message: message.into() }
    }
}
