//! Device Identity — port 8012: keyed UUIDv8 device ids, fingerprinting, enrichment and
//! cross-platform linking (issue #7).
//!
//! - `ids.rs`: the v8 layout (keyed HMAC, key period in the custom bits), parsing (pure).
//! - `fingerprint.rs`: features, stable hash, similarity (pure).
//! - `groups.rs`: connected components over confident links, guardrails (pure).
//! - `devices.rs`: the operations; `store.rs`: sea-orm entities and migration.
//! - `api.rs`: routes; `error.rs`: the error enum and its codes.
//!
//! Not built yet: MAC OUI → manufacturer enrichment, routing device work to its owner through
//! the cluster's keyed ownership (today every node serves every device straight from the shared
//! database), and the GDPR erasure job hook.

mod api;
mod devices;
mod error;
mod fingerprint;
mod groups;
mod ids;
mod store;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        build,
        ..ServiceDef::foundation_only(ServiceId::DeviceIdentity, env!("CARGO_PKG_VERSION"))
    }
}

/// The service's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    let devices = devices::Devices {
        store: store::Store { db: ctx.stores.database.conn().clone() },
        settings: devices::Settings::default(),
    };
    ServiceParts { routes: parts.routes.merge(api::routes(devices)), ..parts }
}
