//! Privacy Filter — port 8011: PII detection and anonymization (issue #6).
//!
//! - `analyzer.rs`: recognizers (patterns + validators + context), the linear scan, overlaps.
//! - `checks.rs`: Luhn, IBAN mod-97, SSN ranges, coordinates (pure, table-tested).
//! - `phone.rs`: phone numbers by libphonenumber with region candidates (request, context
//!   words, `privacy.phone_regions`).
//! - `presidio.rs` + `presidio/`: presidio-anonymizer's request checks, conflict resolution,
//!   replace builder and operators (pure); `api/anonymizer.rs` serves them.
//! - `operators.rs`: redact, replace, mask, generalize (pure) and the keyed hash, pseudonymize
//!   and encrypt through the `Keyed` context.
//! - `crypto.rs`: HMAC-SHA-256 subkeys, AES-SIV tokens, subject indexes (pure, table-tested).
//! - `keys.rs`: managed keys (global, per subject, index), rotation, destruction, the scan's
//!   keyed context.
//! - `structured.rs`: JSON documents field by field, with skip/always/field-operator paths.
//! - `policies.rs`: named versioned policies, cached and invalidated cluster-wide.
//! - `erasure.rs`: GDPR erasure jobs across the cluster, resumable, with receipts.
//! - `stream.rs`: the Kafka stream mode (topic → topic with a policy, DLQ for what cannot be
//!   filtered).
//! - `store.rs`: sea-orm entities and the migration; `api.rs`: routes; `error.rs`: codes.
//!
//! Custom recognizers come from `privacy.recognizers` (validated when the config is loaded)
//! and, per request, from Presidio's `ad_hoc_recognizers`.

mod analyzer;
mod api;
mod checks;
mod crypto;
mod erasure;
mod error;
mod keys;
mod operators;
mod phone;
mod policies;
mod presidio;
mod store;
mod stream;
mod structured;

use std::sync::Arc;
use std::time::Duration;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts};
use sea_orm_migration::MigrationTrait;

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: api::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::PrivacyFilter, env!("CARGO_PKG_VERSION"))
    }
}

/// The filter's database migrations, applied by the node at start.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(store::Migration), Box::new(store::OpenJobs)]
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    // Compile the recognizers at start, not on the first request.
    std::sync::LazyLock::force(&analyzer::BUILTIN);
    // libphonenumber's metadata loads on first use (about a second in debug builds).
    tokio::task::spawn_blocking(|| phonenumber::parse(None, "+14155552671"));
    let store = store::Store { db: ctx.stores.database.conn().clone() };
    let keys = Arc::new(keys::KeyRing::new(store.clone()));
    let pseudonyms = Arc::new(keys::PseudonymCache::default());
    let clustered = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let policies = Arc::new(policies::PolicyBook::new(store.clone(), clustered.clone()));
    if let Some(cluster) = clustered {
        tokio::spawn(follow(cluster, policies.clone(), keys.clone(), pseudonyms.clone()));
    }
    let erasures = erasure::Erasures {
        store: store.clone(),
        keys: keys.clone(),
        pseudonyms: pseudonyms.clone(),
        cluster: ctx.cluster.clone(),
        node: ctx.node.name.clone(),
        running: Default::default(),
    };
    tokio::spawn(erasures.clone().resume_loop());
    tokio::spawn(audit_retention(store.clone(), ctx.config.privacy.audit_retention.get()));
    let custom = Arc::new(analyzer::from_config(&ctx.config.privacy.recognizers));
    let phone_regions = phone::regions(&ctx.config.privacy.phone_regions).unwrap_or_else(|unknown| {
        tracing::error!(region = %unknown, "privacy.phone_regions: not a libphonenumber region; using Presidio's list");
        phone::regions(phone::DEFAULT_REGIONS).unwrap_or_default()
    });
    let api = api::Api {
        settings: Arc::new(analyzer::Settings { phone_regions, ..analyzer::Settings::default() }),
        custom,
        store,
        keys,
        pseudonyms,
        policies,
        erasures,
    };
    let (children, probes) = stream_mode(ctx, &api, parts.children);
    ServiceParts { routes: parts.routes.merge(api::routes(api)), children, probes, ..parts }
}

/// With `kafka.brokers` and `privacy.streams` set: a supervised consumer-group member filtering
/// the streams, and the `kafka:reachable` readiness probe.
fn stream_mode(
    ctx: &ServiceContext,
    api: &api::Api,
    mut children: Vec<loom_supervisors::ChildSpec>,
) -> (Vec<loom_supervisors::ChildSpec>, Vec<loom_service::Probe>) {
    let config = &ctx.config;
    if !config.kafka.enabled() || config.privacy.streams.is_empty() {
        return (children, Vec::new());
    }
    let Some(producer) = loom_kafka::service::bridge_producer(&config.kafka, ServiceId::PrivacyFilter.name()) else {
        return (children, Vec::new());
    };
    let processor = stream::StreamProcessor {
        api: api.clone(),
        routes: stream::routes(&config.privacy.streams),
        producer: producer.clone(),
        dlq_topic: config.privacy.dlq_topic.clone(),
        kafka: config.kafka.clone(),
        created: Default::default(),
    };
    let topics = config.privacy.streams.iter().map(|s| s.from.clone()).collect();
    let group = config.privacy.group.clone();
    let (child, probe) = loom_kafka::service::bridge(ctx, group, topics, Arc::new(processor), producer);
    children.push(child);
    (children, vec![probe])
}

/// The detection engine alone, for benchmarks against other engines in the same process
/// (default settings; `entities` by Presidio name): (entity type, char start, char end).
pub fn detect(text: &str, entities: &[String]) -> Vec<(String, usize, usize)> {
    analyzer::analyze(text, Some(entities), "", &[], &analyzer::Settings::default())
        .into_iter()
        .map(|f| (f.entity_type, f.start, f.end))
        .collect()
}

/// Drops cached policies and keys when another node announces a change.
async fn follow(
    cluster: loom_cluster::Cluster,
    policies: Arc<policies::PolicyBook>,
    keys: Arc<keys::KeyRing>,
    pseudonyms: Arc<keys::PseudonymCache>,
) {
    let (Ok(mut p), Ok(mut k)) =
        (cluster.subscribe(policies::POLICIES_TOPIC).await, cluster.subscribe(keys::KEYS_TOPIC).await)
    else {
        tracing::warn!("privacy filter: no cluster invalidations; caches expire by TTL only");
        return;
    };
    loop {
        tokio::select! {
            Some(_) = p.recv() => policies.invalidate(),
            Some(_) = k.recv() => {
                keys.invalidate();
                pseudonyms.clear();
            }
            else => return,
        }
    }
}

/// Deletes audit entries older than the retention, hourly (and once at start).
async fn audit_retention(store: store::Store, retention: Duration) {
    loop {
        let cutoff = store::now_ms() - retention.as_millis() as i64;
        match store.delete_audit_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit entries past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "audit retention sweep failed"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
