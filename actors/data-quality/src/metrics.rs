//! Prometheus series of the quality service (labels: monitor, source partition and outcome
//! only — never values).

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::ingest::Batch;

/// Every series carries the service label, which puts it on 8031's `/metrics`.
const SERVICE: &str = "data-quality";

pub fn describe() {
    describe_counter!("loom_quality_records_total", Unit::Count, "Records a monitor absorbed or refused, by outcome");
    describe_counter!(
        "loom_quality_schema_checks_total",
        Unit::Count,
        "Records validated against a monitor's schema, by outcome (valid, invalid)"
    );
    describe_counter!(
        "loom_quality_schema_unavailable_total",
        Unit::Count,
        "Batches absorbed without schema checks because the monitor's schema could not be loaded"
    );
    describe_counter!("loom_quality_windows_written_total", Unit::Count, "Window rows written, per monitor");
    describe_gauge!("loom_quality_alerts_open", Unit::Count, "Open alert conditions of a monitor (on its owner)");
    describe_counter!(
        "loom_quality_alert_events_total",
        Unit::Count,
        "Alert transitions of a monitor, by state (open, resolved)"
    );
    describe_counter!(
        "loom_quality_alert_delivery_errors_total",
        Unit::Count,
        "Failed deliveries of alert events to a monitor's alert topic (retried)"
    );
    describe_gauge!(
        "loom_quality_source_next_offset",
        Unit::Count,
        "The next offset a monitor's Kafka source partition reads (saved with its windows)"
    );
}

/// Counts a batch's outcomes once it is durable.
pub fn absorbed(monitor: &str, batch: &Batch) {
    let m = monitor.to_owned();
    counter!("loom_quality_records_total", "service" => SERVICE, "monitor" => m.clone(), "outcome" => "accepted")
        .increment(batch.accepted);
    if batch.refused > 0 {
        counter!("loom_quality_records_total", "service" => SERVICE, "monitor" => m.clone(), "outcome" => "refused")
            .increment(batch.refused);
    }
    let (checked, invalid) =
        batch.windows.values().fold((0, 0), |(c, i), w| (c + w.schema.checked, i + w.schema.invalid));
    if checked > 0 {
        counter!("loom_quality_schema_checks_total", "service" => SERVICE, "monitor" => m.clone(), "outcome" => "valid")
            .increment(checked - invalid);
        counter!("loom_quality_schema_checks_total", "service" => SERVICE, "monitor" => m.clone(), "outcome" => "invalid").increment(invalid);
    }
    counter!("loom_quality_windows_written_total", "service" => SERVICE, "monitor" => m)
        .increment(batch.windows.len() as u64);
}

pub fn schema_unavailable(monitor: &str) {
    counter!("loom_quality_schema_unavailable_total", "service" => SERVICE, "monitor" => monitor.to_owned())
        .increment(1);
}

pub fn source_offset(monitor: &str, topic: &str, partition: i32, next: i64) {
    gauge!("loom_quality_source_next_offset", "service" => SERVICE, "monitor" => monitor.to_owned(), "topic" => topic.to_owned(),
        "partition" => partition.to_string())
    .set(next as f64);
}

pub fn alerts_open(monitor: &str, open: usize) {
    gauge!("loom_quality_alerts_open", "service" => SERVICE, "monitor" => monitor.to_owned()).set(open as f64);
}

pub fn alert_event(monitor: &str, state: &str) {
    let state = if state == "open" { "open" } else { "resolved" };
    counter!("loom_quality_alert_events_total", "service" => SERVICE, "monitor" => monitor.to_owned(), "state" => state)
        .increment(1);
}

pub fn alert_delivery_error(monitor: &str) {
    counter!("loom_quality_alert_delivery_errors_total", "service" => SERVICE, "monitor" => monitor.to_owned())
        .increment(1);
}
