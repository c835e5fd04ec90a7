//! Event Router — port 8013: routes Kafka events by CEL rules, transforms them, dead-letters
//! failures and replays them (issue #5).
//!
//! - `rules.rs`: the rule model, compilation and evaluation (pure, table-tested).
//! - `router.rs`: the engine — decisions, producing outputs and dead letters, the Kafka processor.
//! - `rulebook.rs`: stored, versioned rules; cluster-wide hot reload.
//! - `schemas.rs`: `validate` actions as a Schema Registry client.
//! - `replay.rs`: replay jobs (DLQ or topic → router or topic), resumable.
//! - `store.rs`: sea-orm entities and migration; `api.rs`: routes; `error.rs`; `names.rs`: metrics.
//!
//! The Kafka bridge itself (group member and partition actors, producer) is `loom-kafka`. With
//! `kafka.brokers` empty the rules API and `/rules/test` work; routing, the DLQ and replays
//! answer 503 `kafka_not_configured`.

mod api;
mod error;
mod names;
mod replay;
mod router;
mod rulebook;
pub mod rules;
mod schemas;
mod store;

use std::sync::Arc;

use loom_kafka::consumer::SubscriptionStatus;
use loom_kafka::{Producer, Subscription};
use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::EventRouter, env!("CARGO_PKG_VERSION"))
    }
}

/// The router's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    names::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let config = &ctx.config;
    let kafka = config.kafka.enabled().then(|| config.kafka.clone());
    let producer = kafka.as_ref().and_then(|k| match Producer::new(k, ServiceId::EventRouter.name()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "Kafka producer could not be created; routing is off");
            None
        }
    });
    let registry_url = loom_schemas::registry_url(config);
    let router = Arc::new(router::Router::new(
        producer.clone(),
        kafka.clone(),
        schemas::SchemaCache::new(registry_url),
        config.router.dlq_topic.clone(),
        config.router.topic_partitions,
    ));
    let store = store::Store { db: ctx.stores.database.conn().clone() };
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let book = rulebook::RuleBook { store: store.clone(), router: router.clone(), cluster };
    tokio::spawn(book.clone().follow());
    let replays = replay::Replays { store, router: router.clone(), node: ctx.node.name.clone() };
    if kafka.is_some() {
        tokio::spawn(replays.clone().resume_loop());
    }
    let mut children = parts.children;
    let mut subscription = None;
    if let Some(k) = &kafka
        && !config.router.sources.is_empty()
        && producer.is_some()
    {
        let status = Arc::new(SubscriptionStatus::default());
        let sub = Subscription {
            service: ServiceId::EventRouter.name(),
            group: config.router.group.clone(),
            topics: config.router.sources.clone(),
            kafka: k.clone(),
            processor: Arc::new(router::RouterProcessor { router: router.clone() }),
            transactional: false,
        };
        children.push(loom_kafka::service::member_child(ctx, sub, status.clone()));
        subscription = Some(status);
    }
    let mut probes: Vec<loom_service::Probe> = Vec::new();
    if let Some(p) = producer {
        probes.push(loom_kafka::service::kafka_probe(p, config.kafka.brokers.len()));
    }
    let api = api::Api {
        book,
        router,
        replays,
        subscription,
        sources: config.router.sources.clone(),
        group: config.router.group.clone(),
    };
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)), probes, ..parts }
}
