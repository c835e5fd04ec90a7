//! Health Check Aggregator — port 8030: cluster-wide health, dependency graph, live WebSocket stream, SLA, incidents (issue #8).
//!
//! Built so far: the service's supervised tree (its `core` actor) and the ops routes every port
//! serves. Its feature routes are not built yet: until they are, the port answers `/health`,
//! `/ready`, `/metrics` and `/version`, and 404 problem+json for anything else.
//! It already observes the node's stores (database, cache, object store) in its `/health`, since
//! watching dependencies is its job; they do not gate its readiness.

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceDef};

pub fn definition() -> ServiceDef {
    ServiceDef {
        observes: &[Dependency::Database, Dependency::Cache, Dependency::ObjectStore],
        ..ServiceDef::foundation_only(ServiceId::HealthAggregator, env!("CARGO_PKG_VERSION"))
    }
}
