//! Prometheus series of the enrichment service (labels: outcome, source, reason — never values).

use std::collections::BTreeMap;

use metrics::{Unit, counter, describe_counter};

const SERVICE: &str = "context-enrichment";

pub fn describe() {
    describe_counter!("loom_enrich_events_total", Unit::Count, "Events enriched or refused, by outcome");
    describe_counter!("loom_enrich_lookups_total", Unit::Count, "Context groups computed, by source (place, time)");
    describe_counter!("loom_enrich_reasons_total", Unit::Count, "Context groups left out, by reason");
    describe_counter!("loom_enrich_weather_calls_total", Unit::Count, "Weather provider calls, by API");
    describe_counter!(
        "loom_enrich_weather_failures_total",
        Unit::Count,
        "Failed weather provider calls, by API and kind (down, invalid_response)"
    );
    describe_counter!("loom_enrich_weather_cache_total", Unit::Count, "Weather cache lookups, by outcome (hit, miss)");
    describe_counter!(
        "loom_enrich_stream_records_total",
        Unit::Count,
        "Stream-mode records processed, by source topic"
    );
}

pub fn streamed(topic: &str, records: usize) {
    counter!("loom_enrich_stream_records_total", "service" => SERVICE, "topic" => topic.to_owned())
        .increment(records as u64);
}

pub fn enriched(ok: usize, refused: usize, place: u64, time: u64, reasons: &BTreeMap<String, u64>) {
    counter!("loom_enrich_events_total", "service" => SERVICE, "outcome" => "enriched").increment(ok as u64);
    if refused > 0 {
        counter!("loom_enrich_events_total", "service" => SERVICE, "outcome" => "refused").increment(refused as u64);
    }
    counter!("loom_enrich_lookups_total", "service" => SERVICE, "source" => "place").increment(place);
    counter!("loom_enrich_lookups_total", "service" => SERVICE, "source" => "time").increment(time);
    for (reason, n) in reasons {
        counter!("loom_enrich_reasons_total", "service" => SERVICE, "reason" => reason.clone()).increment(*n);
    }
}

pub fn provider_call(api: &'static str) {
    counter!("loom_enrich_weather_calls_total", "service" => SERVICE, "api" => api).increment(1);
}

pub fn provider_failure(api: &'static str, kind: &'static str) {
    counter!("loom_enrich_weather_failures_total", "service" => SERVICE, "api" => api, "kind" => kind).increment(1);
}

pub fn weather_cache(hits: u64, misses: u64) {
    counter!("loom_enrich_weather_cache_total", "service" => SERVICE, "outcome" => "hit").increment(hits);
    counter!("loom_enrich_weather_cache_total", "service" => SERVICE, "outcome" => "miss").increment(misses);
}
