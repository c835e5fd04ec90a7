//! Prometheus series of the quality service (labels: monitor and outcome only — never values).

use metrics::{Unit, counter, describe_counter};

pub fn describe() {
    describe_counter!("loom_quality_records_total", Unit::Count, "Records a monitor absorbed or refused, by outcome");
}

pub fn ingested(monitor: &str, accepted: u64, refused: u64) {
    counter!("loom_quality_records_total", "monitor" => monitor.to_owned(), "outcome" => "accepted")
        .increment(accepted);
    if refused > 0 {
        counter!("loom_quality_records_total", "monitor" => monitor.to_owned(), "outcome" => "refused")
            .increment(refused);
    }
}
