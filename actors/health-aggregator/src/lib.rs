//! Health Check Aggregator — port 8030: cluster-wide health, dependency graph, live WebSocket stream, SLA, incidents (issue #8).
//!
//! Built so far: the service's supervised tree (its `core` actor), the ops routes every port
//! serves, the cluster routes (`cluster.rs`: membership view, key ownership), and the live
//! health stream (`hub.rs` state, `stream.rs` collectors + `/ws/health` + `/health/cluster`),
//! and SLA windows (`sla.rs`, `GET /sla`, metrics and `sla:<service>` deltas).
//! Not built yet (issue #8): external dependency probes with thresholds, the dependency graph and
//! `impacted`, incidents, remediation and the dashboard — their paths answer 404.
//! It already observes the node's stores (database, cache, object store) in its `/health`, since
//! watching dependencies is its job; they do not gate its readiness.

mod cluster;
mod hub;
mod sla;
mod stream;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};

pub fn definition() -> ServiceDef {
    ServiceDef {
        observes: &[Dependency::Database, Dependency::Cache, Dependency::ObjectStore],
        build,
        ..ServiceDef::foundation_only(ServiceId::HealthAggregator, env!("CARGO_PKG_VERSION"))
    }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    ServiceParts { routes: parts.routes.merge(cluster::routes(ctx)).merge(stream::routes(ctx)), ..parts }
}
