//! Data Deduplication — port 8022 (issue #16): exact and windowed dedup, a memory-bounded Bloom
//! tier, fuzzy near-duplicates (numeric tolerance, MinHash text, record matching), late data,
//! `POST /check` with durable state, and stream mode with exactly-once output.
//!
//! - `policy.rs`: policy specs, validation naming the field (pure, table-tested).
//! - `features.rs`: identity hashes, canonical JSON, MinHash, record comparators (pure).
//! - `engine.rs`: one partition's verdicts — exact keys, the Bloom ring (`bloom.rs`), numeric,
//!   text and record tiers, expiry, snapshots (pure, table-tested + a property).
//! - `part.rs`: an engine with its checkpoint (`store.rs`: the `dd_checkpoints` table).
//! - `rest.rs`: `/check` on the policy's owner, in one actor (memory or Redis store).
//! - `kafka.rs`: stream mode — per (policy, partition) a transactional producer, recovery scan
//!   of the outputs, exactly-once output.
//! - `stats.rs`: counters and metrics; `api.rs`: routes; `error.rs`.
//!
//! ```text
//! dedup supervisor
//! ├── core
//! ├── rest      (RestActor: the /check state of the policies this node owns)
//! └── sources   (loom-kafka SourcesActor, only with kafka.brokers)
//!     └── GroupMember per policy with a source ── PartitionActor per assigned partition
//! ```

mod api;
mod bloom;
pub mod engine;
mod error;
pub mod features;
mod kafka;
mod part;
pub mod policy;
mod rest;
mod stats;
mod store;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};
use sea_orm_migration::MigrationTrait;

pub use kafka::headers;

/// Policies per cluster at most.
const MAX_POLICIES: usize = 256;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::Dedup, env!("CARGO_PKG_VERSION"))
    }
}

/// The dedup service's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    stats::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let config = &ctx.config;
    let db = ctx.stores.database.conn().clone();
    let store = store::Store { db: db.clone() };
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let book: rest::Book = loom_service::book::Book::new(db, "dedup.policy", "dedup.policies", MAX_POLICIES, cluster);
    tokio::spawn(book.clone().follow());
    let stats = stats::Stats::default();
    let redis = (ctx.stores.cache.backend() == "redis").then(|| ctx.stores.cache.clone());
    let deps = rest::Deps { book: book.clone(), store: store.clone(), stats: stats.clone(), redis: redis.clone() };
    let mut children = parts.children;
    let (rest_handle, rest_spec) = actor_child(ctx, "rest", move |mailbox| (rest::RestActor { mailbox }, deps.clone()));
    children.push(rest_spec);
    let checker = rest::serve(&ctx.cluster, rest_handle, config.http.request_timeout.get());
    let kafka = config.kafka.enabled().then(|| config.kafka.clone());
    let mut stream = None;
    if let Some(k) = &kafka {
        let side = kafka::StreamSide::new(book.clone(), store.clone(), stats.clone(), k.clone());
        tokio::spawn(side.clone().tick_loop());
        let sources: Arc<dyn loom_kafka::sources::Sources> = Arc::new(side.clone());
        let (_, spec) = actor_child(ctx, "sources", move |mailbox| {
            (loom_kafka::sources::SourcesActor { mailbox, service: ServiceId::Dedup.name() }, sources.clone())
        });
        children.push(spec);
        stream = Some(side);
    }
    let api =
        api::Api { book, checker, stats, store, kafka, redis: redis.is_some(), stream, node: ctx.node.name.clone() };
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)), ..parts }
}
