//! Health Check Aggregator — port 8030: cluster-wide health, dependency graph, live WebSocket stream, SLA, incidents (issue #8).
//!
//! Built so far: the service's supervised tree (its `core` actor), the ops routes every port
//! serves, and the cluster routes (`cluster`): the membership view and key ownership. The health
//! features of issue #8 are not built yet: their paths answer 404 problem+json.
//! It already observes the node's stores (database, cache, object store) in its `/health`, since
//! watching dependencies is its job; they do not gate its readiness.

mod cluster;

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
    ServiceParts { routes: parts.routes.merge(cluster::routes(ctx)), ..parts }
}
