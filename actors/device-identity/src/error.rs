//! The service's errors: one enum, a stable code each, mapped to HTTP through loom-http's
//! problem+json (the single status mapping). Errors of work done on the key's owner node cross
//! the cluster as a `WireError` with the same code and come back as the same code and status;
//! failures of the call itself (`CallFailure`) keep the cluster layer's stable codes.

use loom_cluster::{CallFailure, WireError};
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
    /// A shared identifier value would link more devices than its type allows. Names the type
    /// and the limit, never the value.
    #[error("link refused: one `{kind}` identifier may link at most {limit} devices, this one would link {devices}")]
    IdentifierLimit { kind: String, limit: u32, devices: usize },
    #[error("{0}")]
    MasterKeyRequired(String),
    #[error("a stored tenant key cannot be opened with the configured master key")]
    KeyUnreadable,
    /// An error that came back from the key's owner node, or the failure of the call itself.
    #[error("{message}")]
    Routed { code: &'static str, kind: ErrorKind, message: String },
}

/// Every code this service produces, with its kind: how a code that crossed the cluster becomes
/// the same HTTP answer on the node that took the request.
const CODES: [(&str, ErrorKind); 9] = [
    ("invalid_device_request", ErrorKind::InvalidInput),
    ("device_not_found", ErrorKind::NotFound),
    ("blocked_device_id", ErrorKind::Unprocessable),
    ("group_too_large", ErrorKind::Conflict),
    ("key_in_use", ErrorKind::Conflict),
    ("device_store_unavailable", ErrorKind::Unavailable),
    ("identifier_limit", ErrorKind::Conflict),
    ("master_key_required", ErrorKind::Unavailable),
    ("device_key_unreadable", ErrorKind::Unavailable),
];

impl DeviceError {
    /// The form sent back to the calling node.
    pub fn to_wire(&self) -> WireError {
        WireError::new(self.code(), self.to_string())
    }

    /// A failed keyed call as this service's error: the owner's own error keeps its code and
    /// status; the cluster's failures keep their codes (`no_owner`, `owner_unreachable`: 503,
    /// `owner_timeout`, `owner_lost`: 504, a refused or undecodable call: 503 or 500).
    pub fn from_call(failure: CallFailure) -> DeviceError {
        let (code, kind): (&'static str, ErrorKind) = match &failure {
            CallFailure::NoOwner(_) => ("no_owner", ErrorKind::Unavailable),
            CallFailure::Unreachable { .. } => ("owner_unreachable", ErrorKind::Unavailable),
            CallFailure::Timeout { .. } => ("owner_timeout", ErrorKind::Timeout),
            CallFailure::Lost { .. } => ("owner_lost", ErrorKind::Timeout),
            CallFailure::Remote(e) => match CODES.iter().find(|(c, _)| *c == e.code) {
                Some((code, kind)) => {
                    return DeviceError::Routed { code, kind: *kind, message: e.message.clone() };
                }
                None if e.code == "overloaded" => ("overloaded", ErrorKind::Unavailable),
                None if e.code == "service_unavailable" => ("service_unavailable", ErrorKind::Unavailable),
                None => ("cluster_call_failed", ErrorKind::Internal),
            },
        };
        DeviceError::Routed { code, kind, message: failure.to_string() }
    }
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
            DeviceError::IdentifierLimit { .. } => ErrorKind::Conflict,
            DeviceError::MasterKeyRequired(_) | DeviceError::KeyUnreadable => ErrorKind::Unavailable,
            DeviceError::Routed { kind, .. } => *kind,
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
            DeviceError::IdentifierLimit { .. } => "identifier_limit",
            DeviceError::MasterKeyRequired(_) => "master_key_required",
            DeviceError::KeyUnreadable => "device_key_unreadable",
            DeviceError::Routed { code, .. } => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use loom_protocol::ServiceId;

    use super::*;

    #[test]
    fn every_local_error_crosses_the_cluster_with_its_code_kind_and_message() {
        let errors = [
            DeviceError::Invalid("`tenant` must be 1 to 128 characters".into()),
            DeviceError::NotFound("d-1".into()),
            DeviceError::Blocked("`x` is a blocked device id".into()),
            DeviceError::OverMerge("too big".into()),
            DeviceError::KeyInUse("current".into()),
            DeviceError::Store("gone".into()),
            DeviceError::IdentifierLimit { kind: "wifi".into(), limit: 3, devices: 4 },
            DeviceError::MasterKeyRequired("set LOOM_DEVICE_MASTER_KEY".into()),
            DeviceError::KeyUnreadable,
        ];
        for e in errors {
            let back = DeviceError::from_call(CallFailure::Remote(e.to_wire()));
            assert_eq!((back.code(), back.kind(), back.to_string()), (e.code(), e.kind(), e.to_string()), "{e:?}");
            assert!(CODES.iter().any(|(c, k)| *c == e.code() && *k == e.kind()), "{} is in CODES", e.code());
        }
    }

    #[test]
    fn call_failures_keep_the_cluster_codes() {
        let owner = || "d2".to_owned();
        let cases = [
            (CallFailure::NoOwner(ServiceId::DeviceIdentity), "no_owner", ErrorKind::Unavailable),
            (CallFailure::Unreachable { owner: owner(), why: "x".into() }, "owner_unreachable", ErrorKind::Unavailable),
            (
                CallFailure::Timeout { owner: owner(), timeout: Duration::from_secs(5) },
                "owner_timeout",
                ErrorKind::Timeout,
            ),
            (CallFailure::Lost { owner: owner() }, "owner_lost", ErrorKind::Timeout),
            (CallFailure::Remote(WireError::new("overloaded", "busy")), "overloaded", ErrorKind::Unavailable),
            (
                CallFailure::Remote(WireError::new("service_unavailable", "not here")),
                "service_unavailable",
                ErrorKind::Unavailable,
            ),
            (
                CallFailure::Remote(WireError::new("undecodable_request", "bad")),
                "cluster_call_failed",
                ErrorKind::Internal,
            ),
        ];
        for (failure, code, kind) in cases {
            let e = DeviceError::from_call(failure.clone());
            assert_eq!((e.code(), e.kind()), (code, kind), "{failure:?}");
        }
        let e = DeviceError::IdentifierLimit { kind: "ip".into(), limit: 32, devices: 33 };
        assert_eq!(
            e.to_string(),
            "link refused: one `ip` identifier may link at most 32 devices, this one would link 33"
        );
    }
}
