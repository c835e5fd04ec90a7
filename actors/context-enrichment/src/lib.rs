//! Context Enrichment — port 8023 (issue #17): place, time, holiday, daylight, weather and
//! calendar context for events, tenant geofences, and CEL rules over the result — each group
//! with its provenance.
//!
//! - `place.rs`: the nearest GeoNames place (k-d tree on unit-sphere coordinates, haversine).
//! - `time.rs`: time zone (tzf-rs), local time, weekday/weekend, day part, sunrise/sunset and
//!   polar day/night (pure).
//! - `holidays.rs`: the generated public-holiday table and its lookups (pure).
//! - `enrich.rs`: one event's `context` from those, with reasons for what is missing (pure).
//! - `data.rs`: the reference data, loaded once per node at first use and shared read-only.
//! - `weather.rs`: cache keys by (H3 cell, hour), Open-Meteo's request/response shapes, the
//!   circuit breaker and the rate budget (pure); `provider.rs`: the weather actor, the only
//!   caller of the provider (coalescing, batching, retries).
//! - `geofence.rs`: tenant places — circles and GeoJSON polygons, most specific hit (pure).
//! - `calendar.rs`: iCalendar parsing and windowed recurrence expansion (pure);
//!   `vtimezone.rs`: VTIMEZONE definitions mapped to IANA zones (pure).
//! - `rules.rs`: CEL rules over `event` and `context` that set fields (pure, `loom-expr`).
//! - `manage.rs`: `/rules`, `/places`, `/calendars` — three cluster-wide books.
//! - `stream.rs`: stream mode — topics enriched into topics through the Kafka bridge.
//! - `api.rs`: `/enrich`, `/place`, `/time`, `/holidays`, `/stats`; `metrics.rs`; `error.rs`.
//!
//! Not built yet: calendar subscriptions by URL (501 `not_built`).
//!
//! ```text
//! enrichment supervisor
//! ├── core     (place and time lookups are pure reads of shared immutable indexes, run in
//! │             blocking tasks by the handlers; rules, places and calendars are books every
//! │             node follows)
//! ├── weather  (WeatherActor: cache misses only; the one caller of the provider)
//! └── kafka    (loom-kafka GroupMember, only with kafka.brokers and enrichment.streams)
//!     └── PartitionActor per assigned partition, running stream.rs's processor
//! ```

mod api;
pub mod calendar;
mod data;
pub mod enrich;
mod error;
pub mod geofence;
pub mod holidays;
mod manage;
mod metrics;
pub mod place;
mod provider;
pub mod rules;
mod stream;
pub mod time;
pub mod vtimezone;
pub mod weather;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{Dependency, ServiceContext, ServiceDef, ServiceParts, actor_child};

pub fn definition() -> ServiceDef {
    ServiceDef {
        dependencies: &[Dependency::Database],
        cluster_wide: manage::cluster_wide,
        build,
        description: env!("CARGO_PKG_DESCRIPTION"),
        ..ServiceDef::foundation_only(ServiceId::ContextEnrichment, env!("CARGO_PKG_VERSION"))
    }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    metrics::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let data = Arc::new(data::Data::new(data::holidays_path(&ctx.config)));
    let w = &ctx.config.enrichment.weather;
    let provider: Option<Arc<dyn provider::Provider>> = (!w.url.is_empty()).then(|| {
        let client = reqwest::Client::builder().timeout(w.timeout.get()).build().unwrap_or_default();
        let p = provider::OpenMeteo { client, forecast: w.url.clone(), archive: w.archive_url.clone() };
        Arc::new(p) as Arc<dyn provider::Provider>
    });
    let stats: Arc<provider::WeatherStats> = Arc::default();
    let deps = provider::WeatherDeps {
        provider,
        cache: ctx.stores.cache.clone(),
        timeout: w.timeout.get(),
        retries: w.retries,
        breaker_failures: w.breaker_failures,
        breaker_cooldown: w.breaker_cooldown.get(),
        budget_per_minute: w.budget_per_minute,
        stats: stats.clone(),
    };
    let mut children = parts.children;
    let (handle, spec) = actor_child(ctx, "weather", move |mailbox| (provider::WeatherActor { mailbox }, deps.clone()));
    children.push(spec);
    let weather = api::Weather {
        cache: ctx.stores.cache.clone(),
        actor: handle,
        resolution: h3o::Resolution::try_from(w.resolution).unwrap_or(h3o::Resolution::Seven),
        stats,
        wait: (w.timeout.get() * (w.retries + 1) + std::time::Duration::from_secs(2))
            .min(ctx.config.http.request_timeout.get() / 2),
    };
    let cluster = ctx.cluster.is_clustered().then(|| ctx.cluster.clone());
    let books = manage::Books::new(ctx.stores.database.conn().clone(), cluster);
    books.follow();
    let margin = chrono::Duration::from_std(ctx.config.enrichment.calendar_margin.get()).unwrap_or_default();
    let api = api::Api {
        data,
        day_parts: ctx.config.enrichment.day_parts,
        stats: Arc::default(),
        weather,
        books: books.clone(),
        calendar_margin: margin,
    };
    let (children, probes) = stream_mode(ctx, &api, children);
    let routes = parts.routes.merge(api::routes(api)).merge(manage::routes(books));
    ServiceParts { children, routes, probes, ..parts }
}

/// With `kafka.brokers` and `enrichment.streams` set: a supervised consumer-group member
/// enriching the streams, and the `kafka:reachable` readiness probe.
fn stream_mode(
    ctx: &ServiceContext,
    api: &api::Api,
    mut children: Vec<loom_supervisors::ChildSpec>,
) -> (Vec<loom_supervisors::ChildSpec>, Vec<loom_service::Probe>) {
    let config = &ctx.config;
    let e = &config.enrichment;
    if !config.kafka.enabled() || e.streams.is_empty() {
        return (children, Vec::new());
    }
    let Some(producer) = loom_kafka::service::bridge_producer(&config.kafka, ServiceId::ContextEnrichment.name())
    else {
        return (children, Vec::new());
    };
    let processor = stream::StreamProcessor {
        api: api.clone(),
        routes: e.streams.iter().map(|s| (s.from.clone(), s.to.clone())).collect(),
        producer: producer.clone(),
        dlq_topic: e.dlq_topic.clone(),
        kafka: config.kafka.clone(),
        created: Default::default(),
    };
    let topics = e.streams.iter().map(|s| s.from.clone()).collect();
    let (child, probe) = loom_kafka::service::bridge(ctx, e.group.clone(), topics, Arc::new(processor), producer);
    children.push(child);
    (children, vec![probe])
}
