//! Time Series Aggregator — port 8020: event-time windows over Kafka topics and REST feeds,
//! with watermarks, late data, exactly-once results in the database (and the job's PostgreSQL
//! table), results to Kafka, batches and a live feed (issue #15). The windowing itself is the
//! stream core, `loom-streams`; this crate is its I/O.
//!
//! - `spec.rs`: job specs, validation naming the field, event preparation (pure, table-tested).
//! - `jobs.rs`: stored, versioned jobs; cluster-wide reload (topic `timeseries.jobs` + 2 s poll).
//! - `pipeline.rs`: one partition's run — engine, side outputs, the atomic commit of results and
//!   checkpoint; `stats.rs`: per-job counters and metrics.
//! - `rest.rs`: the REST feed and batches, on the job's owner through a keyed call, in one actor.
//! - `kafka.rs`: the sources actor (a consumer-group member per job with a source) and the
//!   Kafka processor; idle partitions advanced by the job's combined watermark.
//! - `sinks.rs`: the PostgreSQL table (hypertable or monthly partitions) and Kafka records.
//! - `hub.rs`: the live results feed (`/ws/jobs/{id}`), relayed between nodes.
//! - `store.rs`: tables and migration; `api.rs`: routes; `error.rs`.
//!
//! ```text
//! timeseries-aggregator supervisor
//! ├── core
//! ├── rest      (RestActor: REST-fed partitions of the jobs this node owns)
//! └── sources   (loom-kafka SourcesActor, only with kafka.brokers)
//!     └── GroupMember per job with a source ── PartitionActor per assigned partition
//! ```

mod api;
mod error;
mod hub;
mod jobs;
mod kafka;
mod pipeline;
mod rest;
mod sinks;
pub mod spec;
mod stats;
mod store;

use loom_kafka::Producer;
use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::TimeseriesAggregator, env!("CARGO_PKG_VERSION"))
    }
}

/// The aggregator's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    stats::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let config = &ctx.config;
    let kafka = config.kafka.enabled().then(|| config.kafka.clone());
    let producer = kafka.as_ref().and_then(|k| match Producer::new(k, ServiceId::TimeseriesAggregator.name()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "Kafka producer could not be created; Kafka sources and sinks are off");
            None
        }
    });
    let store = store::Store { db: ctx.stores.database.conn().clone() };
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let book = jobs::JobBook::new(store.clone(), cluster.clone());
    tokio::spawn(book.clone().follow());
    let hub = hub::Hub::new(ctx.node.name.clone(), cluster);
    tokio::spawn(hub.clone().follow());
    let pg = sinks::PgSink::new(store.clone());
    let stats = stats::Stats::default();
    let pipeline = pipeline::Pipeline {
        store,
        producer: producer.clone(),
        pg: pg.clone(),
        hub: hub.clone(),
        stats: stats.clone(),
    };
    let mut children = parts.children;
    let (rest_handle, rest_spec) = {
        let (book, pipeline) = (book.clone(), pipeline.clone());
        actor_child(ctx, "rest", move |mailbox| {
            (rest::RestActor { mailbox }, rest::RestArgs { book: book.clone(), pipeline: pipeline.clone() })
        })
    };
    children.push(rest_spec);
    let timeout = config.http.request_timeout.get();
    let feed = rest::serve(&ctx.cluster, rest_handle, timeout);
    let mut side = None;
    let mut probes: Vec<loom_service::Probe> = Vec::new();
    if let (Some(k), Some(p)) = (&kafka, &producer) {
        let s = kafka::KafkaSide::new(book.clone(), pipeline.clone(), k.clone());
        tokio::spawn(s.clone().tick_loop());
        let sources: std::sync::Arc<dyn loom_kafka::sources::Sources> = std::sync::Arc::new(s.clone());
        let (_, spec) = actor_child(ctx, "sources", move |mailbox| {
            let actor = loom_kafka::sources::SourcesActor { mailbox, service: ServiceId::TimeseriesAggregator.name() };
            (actor, sources.clone())
        });
        children.push(spec);
        probes.push(loom_kafka::service::kafka_probe(p.clone(), config.kafka.brokers.len()));
        side = Some(s);
    }
    let api = api::Api { book, feed, hub, stats, kafka, pg, side };
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)), probes, ..parts }
}
