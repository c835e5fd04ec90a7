//! The ten service definitions, in start order. The only place the node names service crates.

use loom_service::ServiceDef;

pub fn all() -> Vec<ServiceDef> {
    vec![
        loom_schema_registry::definition(),
        loom_privacy_filter::definition(),
        loom_device_identity::definition(),
        loom_event_router::definition(),
        loom_timeseries_aggregator::definition(),
        loom_file_processing::definition(),
        loom_dedup::definition(),
        loom_context_enrichment::definition(),
        loom_health_aggregator::definition(),
        loom_data_quality::definition(),
    ]
}
