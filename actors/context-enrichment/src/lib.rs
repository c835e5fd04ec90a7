//! Context Enrichment — port 8023 (issue #17): place, time, holiday and daylight context for
//! events, each group with its provenance.
//!
//! - `place.rs`: the nearest GeoNames place (k-d tree on unit-sphere coordinates, haversine).
//! - `time.rs`: time zone (tzf-rs), local time, weekday/weekend, day part, sunrise/sunset and
//!   polar day/night (pure).
//! - `holidays.rs`: the generated public-holiday table and its lookups (pure).
//! - `enrich.rs`: one event's `context` from those, with reasons for what is missing (pure).
//! - `data.rs`: the reference data, loaded once per node at first use and shared read-only.
//! - `api.rs`: `/enrich`, `/place`, `/time`, `/holidays`, `/stats`; `metrics.rs`; `error.rs`.
//!
//! Not built yet, and answered as such (501 `not_built` when asked for by name): weather,
//! calendars, enrichment rules, stream mode.
//!
//! ```text
//! enrichment supervisor
//! └── core     (the lookups are pure reads of shared immutable indexes, run in blocking tasks)
//! ```

mod api;
mod data;
pub mod enrich;
mod error;
pub mod holidays;
mod metrics;
pub mod place;
pub mod time;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{ServiceContext, ServiceDef, ServiceParts};

pub fn definition() -> ServiceDef {
    ServiceDef { build, ..ServiceDef::foundation_only(ServiceId::ContextEnrichment, env!("CARGO_PKG_VERSION")) }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    metrics::describe();
    let parts = ServiceParts::foundation_only(ctx);
    let data = Arc::new(data::Data::new(data::holidays_path(&ctx.config)));
    let api = api::Api { data, day_parts: ctx.config.enrichment.day_parts, stats: Arc::default() };
    ServiceParts { routes: parts.routes.merge(api::routes(api)), ..parts }
}
