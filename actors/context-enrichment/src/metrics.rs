//! Prometheus series of the enrichment service (labels: outcome, source, reason — never values).

use std::collections::BTreeMap;

use metrics::{Unit, counter, describe_counter};

const SERVICE: &str = "context-enrichment";

pub fn describe() {
    describe_counter!("loom_enrich_events_total", Unit::Count, "Events enriched or refused, by outcome");
    describe_counter!("loom_enrich_lookups_total", Unit::Count, "Context groups computed, by source (place, time)");
    describe_counter!("loom_enrich_reasons_total", Unit::Count, "Context groups left out, by reason");
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
