//! Data Deduplication — port 8022: duplicate event detection within configurable windows, fuzzy matching.
//!
//! Built so far: the service's supervised tree (its `core` actor) and the ops routes every port
//! serves. Its feature routes are not built yet: until they are, the port answers `/health`,
//! `/ready`, `/metrics` and `/version`, and 404 problem+json for anything else.

use loom_protocol::ServiceId;
use loom_service::ServiceDef;

pub fn definition() -> ServiceDef {
    ServiceDef::foundation_only(ServiceId::Dedup, env!("CARGO_PKG_VERSION"))
}
