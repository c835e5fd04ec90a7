//! The GDPR erasure contract between the Privacy Filter (which runs erasure jobs) and every
//! service that holds subject-linked data. A participant serves the cluster endpoint
//! [`ERASURE_ENDPOINT`] of its own service (`Cluster::serve_endpoint`), keyed by the subject id;
//! the job calls it through `Cluster::client` and records the report.
//!
//! A participant's erasure must be idempotent: the job retries a participant that failed, timed
//! out or whose node died, and a second run over an erased subject reports zero items.
//! Reports name kinds and counts, never the erased values.

use serde::{Deserialize, Serialize};

/// The endpoint name every participant serves under its own service id.
pub const ERASURE_ENDPOINT: &str = "gdpr.erasure";

/// Erase everything this service holds about `subject_id` (the call's key is the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    /// The erasure job, for the participant's logs and audit.
    pub job_id: String,
    pub subject_id: String,
    /// The tenant the subject belongs to, when the participant partitions data by tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What one participant erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// The participating service's name.
    pub service: String,
    /// Kinds of data and how many of each were erased (e.g. `devices`: 3, `links`: 5).
    pub erased: Vec<ErasedItem>,
    /// Milliseconds since the epoch when the participant finished.
    pub finished_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedItem {
    pub kind: String,
    pub count: u64,
}
