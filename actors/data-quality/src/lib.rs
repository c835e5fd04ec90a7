//! Data Quality Monitor — port 8031 (issue #19): completeness, validity, uniqueness, freshness,
//! anomaly and drift monitoring of event streams from mergeable per-window profiles.
//!
//! - `monitor.rs`: monitor specs and their validation naming the field (pure, table-tested).
//! - `profile.rs`: per-field sketches of a window and how they merge (pure).
//! - `ingest.rs`: a batch of records into per-(group, window) profiles (pure).
//! - `stats.rs`: KS, Wasserstein-1, Jensen–Shannon, PSI, χ², Benjamini–Hochberg (pure, checked
//!   against scipy); `drift.rs`: the per-field decisions; `anomaly.rs`: MAD, EWMA, Holt-Winters.
//! - `report.rs`: metrics, completeness and drift per window from stored profiles (pure).
//! - `store.rs`: the `dq_windows` and `dq_parts` tables; `rest.rs`: REST ingest on the
//!   monitor's owner, in one actor; `api.rs`: routes; `metrics.rs`; `error.rs`.
//!
//! ```text
//! quality supervisor
//! ├── core
//! └── ingest   (IngestActor: REST batches of the monitors this node owns)
//! ```

mod anomaly;
mod api;
pub mod drift;
mod error;
pub mod ingest;
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
        build,
        ..ServiceDef::foundation_only(ServiceId::DataQuality, env!("CARGO_PKG_VERSION"))
    }
}

/// The quality service's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
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
    let deps = rest::Deps { book: book.clone(), store: store.clone(), part: format!("rest@{}", ctx.node.name) };
    let mut children = parts.children;
    let (handle, spec) = actor_child(ctx, "ingest", move |mailbox| (rest::IngestActor { mailbox }, deps.clone()));
    children.push(spec);
    let ingest = rest::serve(&ctx.cluster, handle, ctx.config.http.request_timeout.get());
    let api = api::Api { book, ingest, store };
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)), ..parts }
}
