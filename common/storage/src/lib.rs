//! The stores a node opens once at start and hands to every service: the database (`database`),
//! the cache (`cache`) and the object store (`objects`), each with a health check; and the
//! versioned documents services keep their cluster-wide configuration in (`documents`). Which backend
//! is used comes from config only; services see one API either way.

pub mod cache;
pub mod database;
pub mod documents;
pub mod objects;

use std::time::{Duration, Instant};

use loom_config::{NodeConfig, Secret};
use loom_protocol::{CheckResult, HealthStatus};
pub use sea_orm;
pub use sea_orm_migration;

pub use cache::Cache;
pub use database::Database;
pub use objects::Objects;

/// A store a service can depend on; `/health` checks exactly the ones a service declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    Database,
    Cache,
    ObjectStore,
}

impl Dependency {
    pub const fn name(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::Cache => "cache",
            Dependency::ObjectStore => "objectStore",
        }
    }
}

/// Failure to open a store; names the store and (redacted) where it pointed.
#[derive(Debug, thiserror::Error)]
#[error("{store} ({target}): {reason}")]
pub struct StoreError {
    pub store: &'static str,
    pub target: String,
    pub reason: String,
}

/// All stores of a node. Cheap to clone; every clone shares the same connections.
#[derive(Clone)]
pub struct Stores {
    pub database: Database,
    pub cache: Cache,
    pub objects: Objects,
}

/// How long one health probe may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Stores {
    /// Opens every store the configuration names. Does not run migrations (the node does, once).
    pub async fn open(config: &NodeConfig) -> Result<Stores, StoreError> {
        let database = Database::connect(config.database_url(), config.storage.database_max_connections).await?;
        let cache = match &config.storage.redis_url {
            Some(url) => Cache::redis(url).await?,
            None => Cache::local(config.storage.cache_max_entries),
        };
        let objects = Objects::open(&config.storage.objects)?;
        Ok(Stores { database, cache, objects })
    }

    /// Probes one store with a time limit and reports it as a health check.
    pub async fn check(&self, dep: Dependency) -> CheckResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, async {
            match dep {
                Dependency::Database => self.database.ping().await,
                Dependency::Cache => self.cache.ping().await,
                Dependency::ObjectStore => self.objects.ping().await,
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())));
        let elapsed = started.elapsed();
        let (status, output) = match outcome {
            Ok(()) => (HealthStatus::Pass, None),
            Err(reason) => (HealthStatus::Fail, Some(reason)),
        };
        let backend = match dep {
            Dependency::Database => self.database.backend(),
            Dependency::Cache => self.cache.backend(),
            Dependency::ObjectStore => self.objects.backend(),
        };
        CheckResult {
            name: format!("{}:responseTime", dep.name()),
            status,
            component_type: Some(format!("datastore/{backend}")),
            observed_value: Some(serde_json_number(elapsed)),
            observed_unit: Some("ms".into()),
            output,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

fn serde_json_number(d: Duration) -> sea_orm::JsonValue {
    sea_orm::JsonValue::from((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

pub(crate) fn secret_str(s: &Option<Secret>) -> Option<&str> {
    s.as_ref().map(Secret::expose)
}
