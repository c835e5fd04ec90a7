//! Health Check Aggregator — port 8030: cluster-wide health, dependency graph, live WebSocket stream, SLA, incidents (issue #8).
//!
//! - `cluster.rs`: the cluster routes (membership view, key ownership).
//! - `aggregate.rs`: raw statuses of every (node, component) evaluated through the dependency
//!   graph (`graph.rs`, pure: `impacted` dependents and root causes) into the hub (`hub.rs`:
//!   latest state, sequence numbers, bounded history and broadcast).
//! - `stream.rs`: collectors (membership, supervision, peers' statuses on `health.services`),
//!   `/ws/health`, `/health/cluster`, `/sla`; `sla.rs`: rolling windows and burn rate (pure).
//! - `probes.rs`: external dependency probes (database, cache, object store, Kafka) with
//!   failure/success thresholds.
//! - `incidents.rs`: correlation by root cause and time window (pure); `recorder.rs` persists
//!   and streams incidents (`store.rs`, sea-orm, table `ha_incidents`); `api.rs`:
//!   `/dependencies`, `/incidents`, `/incidents/{id}`.
//! - `dashboard.rs`: the live HTML dashboard at `/` (one self-contained page).
//! - Remediation: `remediation.rs` (pure: rules from `[health.remediation]`, flapping, circuits,
//!   rate limits), `remedy.rs` (executes decisions and operators' requests through the node's
//!   `NodeControl`, records them), `audit.rs` (sea-orm, table `ha_remediations`),
//!   `remediation_api.rs` (`/remediations`, `/circuits`, `POST /admin/remediations`).
//!
//! Check definitions come from `[health]`. The node's stores do not gate this service's
//! readiness: watching them is its job.

mod aggregate;
mod api;
mod audit;
mod cluster;
mod dashboard;
mod graph;
mod hub;
mod incidents;
mod probes;
mod recorder;
mod remediation;
mod remediation_api;
mod remedy;
mod sla;
mod store;
mod stream;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};
use loom_storage::sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        observes: &[Dependency::Database, Dependency::Cache, Dependency::ObjectStore],
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::HealthAggregator, env!("CARGO_PKG_VERSION"))
    }
}

/// The incident table's migration, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration), Box::new(audit::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    let me = ctx.cluster.node_name().to_owned();
    let hub = hub::Hub::default();
    let remediation = &ctx.config.health.remediation;
    let engine = remediation::Engine::new(&me, remediation.clone());
    let (aggregator, decisions) = aggregate::Aggregator::remediating(hub.clone(), graph::Graph::declared(), engine);
    let roots = aggregator.roots();
    let db = ctx.stores.database.conn().clone();
    let store = store::Store { db: db.clone(), observer: me.clone() };
    let live: recorder::SharedLive = Arc::default();
    tokio::spawn(recorder::run(me.clone(), store.clone(), hub, roots, live.clone()));
    let liveness = probes::start(ctx, aggregator.clone());
    let audit = audit::AuditStore { db, observer: me.clone() };
    let cool_down_ms = remediation.cool_down.get().as_millis() as u64;
    let remedy = Arc::new(remedy::Remedy::new(me, ctx.control.clone(), aggregator.clone(), audit, cool_down_ms));
    tokio::spawn(remedy.clone().run(decisions));
    let api = api::ApiState { aggregator: aggregator.clone(), store, live };
    let routes = parts
        .routes
        .merge(cluster::routes(ctx))
        .merge(stream::routes(ctx, aggregator, liveness))
        .merge(api::routes(api))
        .merge(remediation_api::routes(remedy))
        .merge(dashboard::routes());
    ServiceParts { routes, ..parts }
}
