//! Per-job counters of this node (events, late, dead-lettered, emitted), for `/stats` and the
//! Prometheus series `loom_timeseries_*_total{job}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::pipeline::Report;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    pub events: u64,
    pub late: u64,
    pub dead_lettered: u64,
    pub emitted: u64,
    pub skipped_replayed: u64,
}

#[derive(Clone, Default)]
pub struct Stats {
    jobs: Arc<Mutex<HashMap<String, Counters>>>,
}

impl Stats {
    pub fn record(&self, job: &str, r: &Report) {
        let (late, dead) = (r.late.len() as u64, r.rejected.len() as u64);
        metrics::counter!("loom_timeseries_events_total", "job" => job.to_owned()).increment(r.accepted as u64);
        metrics::counter!("loom_timeseries_late_total", "job" => job.to_owned()).increment(late);
        metrics::counter!("loom_timeseries_dead_lettered_total", "job" => job.to_owned()).increment(dead);
        metrics::counter!("loom_timeseries_emitted_total", "job" => job.to_owned()).increment(r.emitted as u64);
        if let Ok(mut m) = self.jobs.lock() {
            let c = m.entry(job.to_owned()).or_default();
            c.events += r.accepted as u64;
            c.late += late;
            c.dead_lettered += dead;
            c.emitted += r.emitted as u64;
            c.skipped_replayed += r.skipped as u64;
        }
    }

    pub fn get(&self, job: &str) -> Counters {
        self.jobs.lock().ok().and_then(|m| m.get(job).copied()).unwrap_or_default()
    }

    pub fn forget(&self, job: &str) {
        if let Ok(mut m) = self.jobs.lock() {
            m.remove(job);
        }
    }
}

/// Describes the series (help texts) once at start.
pub fn describe() {
    metrics::describe_counter!("loom_timeseries_events_total", "Events absorbed by aggregation windows, per job");
    metrics::describe_counter!(
        "loom_timeseries_late_total",
        "Events that arrived after their window closed (sent to the late topic), per job"
    );
    metrics::describe_counter!(
        "loom_timeseries_dead_lettered_total",
        "Events without a usable time, key or field, or over the window budget, per job"
    );
    metrics::describe_counter!(
        "loom_timeseries_emitted_total",
        "Window results emitted (provisional and final), per job"
    );
}
