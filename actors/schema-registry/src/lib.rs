//! Schema Registry — port 8010: a Confluent-compatible JSON Schema registry with validation and
//! explained compatibility (issue #4).
//!
//! - `api.rs`: the routes (Confluent REST API, `/validate`, `/subjects/{s}/history`, `/docs`).
//! - `registry.rs`: the operations; `writer.rs`: the actor every write of this node goes through.
//! - `store.rs`: sea-orm entities and the migration; `normalize.rs`: schema identity.
//! - `cache.rs`: this node's read caches, invalidated cluster-wide on writes.
//! - `compat.rs`: compatibility rules (pure); `validate.rs`: compiled validators (jsonschema).
//! - `evolution.rs`: fields and semantic diffs (pure); `docs.rs`: HTML/Markdown rendering.
//! - `error.rs`: Confluent error codes; `model.rs`: request bodies, levels, modes.
//!
//! Not built: Avro and Protobuf schemas, IMPORT mode, metadata and rule sets.

mod api;
mod cache;
mod compat;
mod docs;
mod error;
mod evolution;
mod model;
mod normalize;
mod registry;
mod store;
mod validate;
mod writer;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};
use loom_storage::sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::SchemaRegistry, env!("CARGO_PKG_VERSION"))
    }
}

/// The registry's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let registry = registry::Registry::new(store::Store::new(ctx.stores.database.conn().clone()), cluster.clone());
    if let Some(cluster) = cluster {
        tokio::spawn(follow_invalidations(cluster, registry.clone()));
    }
    let for_writer = registry.clone();
    let (handle, spec) =
        actor_child(ctx, "writer", move |mailbox| (writer::WriterActor { mailbox }, for_writer.clone()));
    let api = api::Api { registry, writer: writer::Writer { handle } };
    let mut children = parts.children;
    children.push(spec);
    ServiceParts { children, routes: parts.routes.merge(api::routes(api)), ..parts }
}

/// Drops cached subjects other nodes changed (best effort; the cache TTL covers misses).
async fn follow_invalidations(cluster: loom_cluster::Cluster, registry: registry::Registry) {
    let mut rx = match cluster.subscribe(registry::INVALIDATION_TOPIC).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "schema registry cannot follow cluster invalidations; relying on the cache TTL");
            return;
        }
    };
    while let Some(subject) = rx.recv().await {
        registry.invalidate(&String::from_utf8_lossy(&subject));
    }
}
