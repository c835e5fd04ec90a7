//! Data Quality Monitor — port 8031 (issue #19): completeness, validity, uniqueness, freshness,
//! anomaly and drift monitoring of event streams from mergeable per-window profiles.
//!
//! - `monitor.rs`: monitor specs and their validation naming the field (pure, table-tested).
//! - `profile.rs`: per-field sketches of a window and how they merge (pure).
//! - `ingest.rs`: a batch of records into per-(group, window) profiles (pure).
//! - `stats.rs`: KS, Wasserstein-1, Jensen–Shannon, PSI, χ², Benjamini–Hochberg (pure, checked
//!   against scipy); `drift.rs`: the per-field decisions; `anomaly.rs`: MAD, EWMA, Holt-Winters.
//! - `report.rs`: metrics, completeness and drift per window from stored profiles (pure).
//! - `alerts.rs`: conditions off the report and their open/resolved lifecycle (pure);
//!   `alerting.rs`: the evaluator on each monitor's owner, feeding the Health Aggregator's
//!   check board and the alert topic.
//! - `store.rs`: the `dq_windows`, `dq_parts` and `dq_alerts` tables; `rest.rs`: REST ingest on the
//!   monitor's owner, in one actor; `kafka.rs`: Kafka sources, one part per source partition,
//!   each batch stored once with its offset; `live.rs`: the live feed; `dashboard.rs`: the page at `/`; `api.rs`: routes; `metrics.rs`; `error.rs`.
//!
//! ```text
//! quality supervisor
//! ├── core
//! ├── ingest   (IngestActor: REST batches of the monitors this node owns)
//! ├── alerts   (AlertActor: conditions of the monitors this node owns, every 2 s)
//! └── sources  (loom-kafka SourcesActor, only with kafka.brokers: a group member per monitor
//!               with a source, a partition actor per assigned partition)
//! ```

mod alerting;
pub mod alerts;
mod anomaly;
mod api;
mod dashboard;
pub mod drift;
mod error;
pub mod ingest;
mod kafka;
mod live;
mod metrics;
pub mod monitor;
pub mod profile;
pub mod report;
mod rest;
pub mod stats;
mod store;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::DataQuality, env!("CARGO_PKG_VERSION"))
    }
}

/// The quality service's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration), Box::new(store::AlertsMigration)]
}

/// The validator of a monitor's schema subject: `(None, None)` without a schema, `(None,
/// Some(why))` when it cannot be loaded now (the records are counted, not checked).
pub(crate) async fn schema_of(
    schemas: &loom_schemas::SchemaCache,
    m: &monitor::Monitor,
) -> (Option<std::sync::Arc<loom_schemas::Validator>>, Option<String>) {
    let Some(s) = &m.spec.schema else { return (None, None) };
    match schemas.validator(&s.subject).await {
        Ok(v) => (Some(v), None),
        Err(e) => {
            crate::metrics::schema_unavailable(&m.spec.id);
            (None, Some(e))
        }
    }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    metrics::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let db = ctx.stores.database.conn().clone();
    let store = store::Store { db: db.clone() };
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let book: rest::Book =
        loom_service::book::Book::new(db, "quality.monitor", "quality.monitors", monitor::MAX_MONITORS, cluster);
    tokio::spawn(book.clone().follow());
    let schemas = std::sync::Arc::new(loom_schemas::SchemaCache::new(loom_schemas::registry_url(&ctx.config)));
    let deps = rest::Deps {
        book: book.clone(),
        store: store.clone(),
        part: format!("rest@{}", ctx.node.name),
        schemas: schemas.clone(),
    };
    let mut children = parts.children;
    let (handle, spec) = actor_child(ctx, "ingest", move |mailbox| (rest::IngestActor { mailbox }, deps.clone()));
    children.push(spec);
    let ingest = rest::serve(&ctx.cluster, handle, ctx.config.http.request_timeout.get());
    let kafka = ctx.config.kafka.enabled().then(|| ctx.config.kafka.clone());
    let producer = kafka.as_ref().and_then(|k| match loom_kafka::Producer::new(k, ServiceId::DataQuality.name()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "cannot create the alert producer; alert topics stay undelivered");
            None
        }
    });
    let alert_deps = alerting::AlertDeps {
        book: book.clone(),
        store: store.clone(),
        checks: ctx.checks.clone(),
        cluster: ctx.cluster.clone(),
        producer,
    };
    let (_, spec) = actor_child(ctx, "alerts", move |mailbox| (alerting::AlertActor { mailbox }, alert_deps.clone()));
    children.push(spec);
    if let Some(k) = &kafka {
        let side = kafka::StreamSide::new(book.clone(), store.clone(), schemas.clone(), k.clone());
        let sources: std::sync::Arc<dyn loom_kafka::sources::Sources> = std::sync::Arc::new(side);
        let (_, spec) = actor_child(ctx, "sources", move |mailbox| {
            (loom_kafka::sources::SourcesActor { mailbox, service: ServiceId::DataQuality.name() }, sources.clone())
        });
        children.push(spec);
    }
    let api = api::Api { book, ingest, store, schemas, kafka };
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)).merge(dashboard::routes()), ..parts }
}
