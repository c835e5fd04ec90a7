//! Device Identity — port 8012: keyed UUIDv8 device ids, fingerprinting, enrichment and
//! cross-platform linking (issue #7).
//!
//! - `ids.rs`: the v8 layout (keyed HMAC, key period in the custom bits), parsing (pure).
//! - `fingerprint.rs`: features, stable hash, similarity (pure).
//! - `groups.rs`: connected components over confident links, guardrails (pure).
//! - `devices.rs`: the operations; `store.rs`: sea-orm entities and migration.
//! - `api.rs`: routes; `error.rs`: the error enum and its codes.
//!
//! - `oui.rs`: MAC vendor lookup from Debian's `ieee-data` list.
//!
//! Not built yet: per-identifier-type link limits, routing device work to its owner through
//! the cluster's keyed ownership (today every node serves every device straight from the shared
//! database), and the GDPR erasure job hook.

mod api;
mod devices;
mod error;
mod fingerprint;
mod groups;
mod ids;
mod oui;
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
        oui: std::sync::Arc::new(load_oui()),
    };
    ServiceParts { routes: parts.routes.merge(api::routes(devices)), ..parts }
}

/// Loads the OUI list once at start (a few ms for ~35,000 entries).
fn load_oui() -> oui::Oui {
    match std::fs::read_to_string(oui::DEBIAN_OUI_FILE) {
        Ok(text) => {
            let list = oui::Oui::parse(&text);
            tracing::info!(entries = list.len(), file = oui::DEBIAN_OUI_FILE, "MAC vendor list loaded");
            list
        }
        Err(e) => {
            tracing::warn!(file = oui::DEBIAN_OUI_FILE, error = %e, "no MAC vendor list (install Debian's ieee-data); MAC enrichment is off");
            oui::Oui::default()
        }
    }
}
