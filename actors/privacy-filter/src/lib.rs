//! Privacy Filter — port 8011: PII detection and anonymization (issue #6).
//!
//! - `analyzer.rs`: recognizers (patterns + validators + context), the linear scan, overlaps.
//! - `checks.rs`: Luhn, IBAN mod-97, SSN ranges, coordinates (pure, table-tested).
//! - `operators.rs`: redact, replace, mask, generalize (pure); keyed operators refused.
//! - `structured.rs`: JSON documents field by field, with skip/always paths.
//! - `api.rs`: `/filter` (the seed's form), Presidio's `/analyze` and `/anonymize`, `/entities`.
//!
//! Not built yet (each says so where it would be used): named stored policies (`policy` →
//! 501), keyed operators (hash, pseudonyms, encryption, `/deanonymize`) and their managed keys,
//! the audit log, the GDPR erasure workflow, the Kafka stream mode.

mod analyzer;
mod api;
mod checks;
mod error;
mod operators;
mod structured;

use std::sync::Arc;

use loom_protocol::ServiceId;
use loom_service::{ServiceContext, ServiceDef, ServiceParts};

pub fn definition() -> ServiceDef {
    ServiceDef { build, ..ServiceDef::foundation_only(ServiceId::PrivacyFilter, env!("CARGO_PKG_VERSION")) }
}

fn build(ctx: &ServiceContext) -> ServiceParts {
    let parts = ServiceParts::foundation_only(ctx);
    // Compile the recognizers at start, not on the first request.
    std::sync::LazyLock::force(&analyzer::BUILTIN);
    // libphonenumber's metadata loads on first use (about a second in debug builds).
    tokio::task::spawn_blocking(|| phonenumber::parse(None, "+14155552671"));
    let api = api::Api { settings: Arc::new(analyzer::Settings::default()) };
    ServiceParts { routes: parts.routes.merge(api::routes(api)), ..parts }
}
