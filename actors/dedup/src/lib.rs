//! Data Deduplication — port 8022 (issue #16).
//!
//! - `policy.rs`: policy specs, validation naming the field (pure, table-tested).
//! - `features.rs`: identity hashes, canonical JSON, MinHash, record comparators (pure).
//! - `engine.rs`: one partition's verdicts — exact keys, the Bloom ring (`bloom.rs`), numeric,
//!   text and record tiers, expiry, snapshots (pure, table-tested + a property).

mod bloom;
pub mod engine;
mod error;
pub mod features;
pub mod policy;

use loom_protocol::ServiceId;
use loom_service::ServiceDef;

pub fn definition() -> ServiceDef {
    ServiceDef::foundation_only(ServiceId::Dedup, env!("CARGO_PKG_VERSION"))
}
