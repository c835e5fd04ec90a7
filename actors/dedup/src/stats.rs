//! Per-policy counters of this node — verdicts by kind and rule, per part (`rest` or
//! `topic/partition`), dead letters, record pairs compared — for `GET /policies/{id}/stats`, and
//! the Prometheus series `loom_dedup_verdicts_total{policy,verdict,rule}`,
//! `loom_dedup_dead_lettered_total{policy}`, `loom_dedup_state_keys{policy}` and friends.
//! Labels are bounded: policies by the book's size, verdicts and rules by their enums; parts
//! stay out of Prometheus (the route has them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::{Kind, Rule, StateStats, Verdict};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub seen: u64,
    pub unique: u64,
    pub duplicate: u64,
    pub near_duplicate: u64,
    pub late: u64,
    pub dead_lettered: u64,
    /// Records a replay after a crash or rebalance skipped (already in the state).
    pub replayed: u64,
    pub by_rule: BTreeMap<&'static str, u64>,
    /// Record pairs the record tier compared (the blocking's cost).
    pub compared: u64,
}

impl Counters {
    fn add(&mut self, v: &Verdict) {
        self.seen += 1;
        match v.verdict {
            Kind::Unique => self.unique += 1,
            Kind::Duplicate => self.duplicate += 1,
            Kind::NearDuplicate => self.near_duplicate += 1,
            Kind::Late => self.late += 1,
        }
        *self.by_rule.entry(v.rule.name()).or_default() += 1;
    }
}

#[derive(Default)]
struct PolicyStats {
    total: Counters,
    parts: BTreeMap<String, Counters>,
    state: BTreeMap<String, StateStats>,
}

#[derive(Clone, Default)]
pub struct Stats {
    policies: Arc<Mutex<HashMap<String, PolicyStats>>>,
}

impl Stats {
    pub fn verdict(&self, policy: &str, part: &str, v: &Verdict, compared: usize) {
        metrics::counter!("loom_dedup_verdicts_total", "policy" => policy.to_owned(), "verdict" => v.verdict.name(),
            "rule" => v.rule.name())
        .increment(1);
        if let Ok(mut m) = self.policies.lock() {
            let p = m.entry(policy.to_owned()).or_default();
            p.total.add(v);
            p.total.compared += compared as u64;
            let c = p.parts.entry(part.to_owned()).or_default();
            c.add(v);
            c.compared += compared as u64;
        }
    }

    pub fn dead_lettered(&self, policy: &str, part: &str, n: u64) {
        metrics::counter!("loom_dedup_dead_lettered_total", "policy" => policy.to_owned()).increment(n);
        self.with(policy, part, |c| c.dead_lettered += n);
    }

    pub fn replayed(&self, policy: &str, part: &str, n: u64) {
        self.with(policy, part, |c| c.replayed += n);
    }

    fn with(&self, policy: &str, part: &str, f: impl Fn(&mut Counters)) {
        if let Ok(mut m) = self.policies.lock() {
            let p = m.entry(policy.to_owned()).or_default();
            f(&mut p.total);
            f(p.parts.entry(part.to_owned()).or_default());
        }
    }

    /// Records a part's state figures and refreshes the policy's state gauges.
    pub fn state(&self, policy: &str, part: &str, s: StateStats) {
        let Ok(mut m) = self.policies.lock() else { return };
        let p = m.entry(policy.to_owned()).or_default();
        p.state.insert(part.to_owned(), s);
        let keys: usize = p.state.values().map(|s| s.keys).sum();
        let bytes: u64 = p.state.values().map(|s| s.bytes).sum();
        let fpr = p.state.values().filter_map(|s| s.bloom.as_ref().map(|b| b.estimated_fpr)).fold(0.0, f64::max);
        metrics::gauge!("loom_dedup_state_keys", "policy" => policy.to_owned()).set(keys as f64);
        metrics::gauge!("loom_dedup_state_bytes", "policy" => policy.to_owned()).set(bytes as f64);
        metrics::gauge!("loom_dedup_bloom_estimated_fpr", "policy" => policy.to_owned()).set(fpr);
    }

    /// Drops a part's state figures (partition revoked, state cleared).
    pub fn drop_state(&self, policy: &str, part: &str) {
        if let Ok(mut m) = self.policies.lock()
            && let Some(p) = m.get_mut(policy)
        {
            p.state.remove(part);
        }
    }

    /// (totals, per part, state per part) of a policy on this node.
    pub fn get(&self, policy: &str) -> (Counters, BTreeMap<String, Counters>, BTreeMap<String, StateStats>) {
        self.policies
            .lock()
            .ok()
            .and_then(|m| m.get(policy).map(|p| (p.total.clone(), p.parts.clone(), p.state.clone())))
            .unwrap_or_default()
    }

    pub fn forget(&self, policy: &str) {
        if let Ok(mut m) = self.policies.lock() {
            m.remove(policy);
        }
    }
}

/// Describes the series (help texts) once at start, and zeroes each verdict's counter so
/// dashboards see every series from the start.
pub fn describe() {
    metrics::describe_counter!("loom_dedup_verdicts_total", "Dedup verdicts, per policy, verdict and rule");
    metrics::describe_counter!(
        "loom_dedup_dead_lettered_total",
        "Records sent to the dead-letter topic (unusable, missing identity, late with late=dead_letter), per policy"
    );
    metrics::describe_gauge!("loom_dedup_state_keys", "Exact keys held by this node, per policy");
    metrics::describe_gauge!(
        "loom_dedup_state_bytes",
        "Approximate bytes of dedup state held by this node, per policy"
    );
    metrics::describe_gauge!(
        "loom_dedup_bloom_estimated_fpr",
        "Estimated false-positive rate of the policy's Bloom ring (0 without one), per policy"
    );
    let _ = (Kind::ALL, Rule::ALL);
}
