//! Device Identity — port 8012: keyed UUIDv8 device ids, fingerprinting, enrichment and
//! cross-platform linking (issue #7).
//!
//! - `ids.rs`: the v8 layout (keyed HMAC, key period in the custom bits), parsing (pure).
//! - `fingerprint.rs`: features, stable hash, similarity (pure).
//! - `groups.rs`: connected components over confident links, group guardrails (pure).
//! - `limits.rs`: per-identifier-type link limits for shared values (IP, wifi, account,
//!   household), normalization (pure).
//! - `crypto.rs`: the master key (configured, or a node-local key file on SQLite), tenant keys
//!   sealed with AES-256-GCM at rest, keyed subject and shared-identifier hashes.
//! - `register.rs`: registration — `prepare` hashes everything raw on the entry node, `commit`
//!   matches and writes on the owner.
//! - `devices.rs`: the other operations; `store.rs` (+ `store/privacy.rs`): sea-orm entities
//!   and migrations.
//! - `routing.rs` + `locks.rs`: writes run on the owner of their key through the cluster's keyed
//!   calls, one writer of a key at a time; a lone node calls itself through the same path.
//! - `erasure.rs`: the GDPR erasure endpoint (`gdpr.erasure`) the Privacy Filter calls.
//! - `api.rs`: routes; `error.rs`: the error enum, its codes, and their way across the cluster.
//! - `oui.rs`: MAC vendor lookup from Debian's `ieee-data` list.
//!
//! Not built yet: hand-off of in-flight turns when ownership moves (a write racing a membership
//! change may run on the old and the new owner at once; the database's unique keys still make
//! them converge), and group-wide serialization of links (links keyed by different devices may
//! still pass the group size check concurrently).

mod api;
mod crypto;
mod devices;
mod erasure;
mod error;
mod fingerprint;
mod groups;
mod ids;
mod limits;
mod locks;
mod oui;
mod register;
mod routing;
mod store;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::DeviceIdentity, env!("CARGO_PKG_VERSION"))
    }
}

/// The service's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration), Box::new(store::PrivacyMigration)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    let devices = devices::Devices {
        store: store::Store { db: ctx.stores.database.conn().clone() },
        settings: devices::Settings::default(),
        oui: Arc::new(load_oui()),
        master: master_key(ctx).map(Arc::new).map_err(Arc::from),
        limits: Arc::new(limits::Limits::new(&ctx.config.device_identity.identifier_limits)),
    };
    if devices.master.is_ok() {
        let sealing = devices.clone();
        tokio::spawn(async move {
            match sealing.seal_plaintext_keys().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "tenant keys stored in plaintext were sealed"),
                Err(e) => tracing::error!(error = %e, "could not seal tenant keys stored in plaintext"),
            }
        });
    }
    let writes = routing::serve(&ctx.cluster, devices.clone());
    let erasure = erasure::serve(&ctx.cluster, devices.clone());
    let app = api::App { devices, writes, erasure };
    ServiceParts { routes: parts.routes.merge(api::routes(app)), ..parts }
}

/// The master key: configured; else, on SQLite, the node-local key file; else none (with the
/// reason every refused request will carry).
fn master_key(ctx: &ServiceContext) -> Result<crypto::MasterKey, String> {
    let config = &ctx.config;
    if let Some(key) = &config.device_identity.master_key {
        return crypto::MasterKey::parse(key.expose()).map_err(|e| {
            tracing::error!(error = %e, "device_identity.master_key is unusable; key operations are refused");
            format!("device_identity.master_key is unusable: {e}")
        });
    }
    if !config.database_url().starts_with("sqlite:") {
        let why = "a shared database needs device_identity.master_key (LOOM_DEVICE_MASTER_KEY), the same on every \
                   node; without it tenant keys cannot be stored encrypted";
        tracing::error!("{why}");
        return Err(why.into());
    }
    let path = config.node.data_dir.join(crypto::KEY_FILE);
    crypto::MasterKey::load_or_create(&path)
        .inspect(|_| tracing::info!(file = %path.display(), "device identity master key from the node-local key file"))
        .map_err(|e| {
            tracing::error!(error = %e, "no device identity master key; key operations are refused");
            format!("the node-local master key file is unusable: {e}")
        })
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
