//! Alert conditions and their lifecycle — pure logic, no I/O. A monitor's conditions are read
//! off its report (`report::window`, so an alert says exactly what the report says) for the
//! newest *closed* window of each group — a window is closed once a later window of its group
//! exists, or one window length after its end by the wall clock — plus the silent devices of
//! its freshness state:
//!
//! - `drift|<group>|<field>`: a drift decision `drifted` (the methods that decided it in detail);
//! - `anomaly|<group>|<metric>`: an anomalous per-window metric;
//! - `freshness`: devices silent longer than `freshness.max_gap`.
//!
//! [`AlertState::step`] deduplicates: a condition opens once (one `open` event), stays open
//! without further events while it holds — however often it is evaluated, on whichever node —
//! and resolves (one `resolved` event) when an evaluation no longer finds it. Events wait in
//! `pending` until delivered to the alert topic, so an unreachable broker delays them but loses
//! none (up to [`MAX_PENDING`], then the oldest are dropped and counted). Bounded: at most
//! [`MAX_OPEN`] open conditions per monitor.

use std::collections::{BTreeMap, VecDeque};

use loom_streams::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::monitor::Monitor;
use crate::report::Win;

/// Open conditions per monitor at most; more are counted in `overflow`.
pub const MAX_OPEN: usize = 64;
/// Undelivered events kept at most.
pub const MAX_PENDING: usize = 256;
/// Delivered events kept for `GET /monitors/{id}/alerts`.
pub const RECENT: usize = 50;
/// Silent devices named in a freshness condition.
const NAMED_DEVICES: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub key: String,
    /// `drift`, `anomaly` or `freshness`.
    pub kind: String,
    pub group: String,
    /// The field (drift), metric (anomaly) or `silent_devices`.
    pub subject: String,
    /// The window it was found in (unix ms), if it belongs to one.
    pub window: Option<i64>,
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub condition: Condition,
    pub since_ms: i64,
}

/// One transition, as sent to the alert topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable per transition: a consumer seeing it twice (redelivery) can drop the second.
    pub id: String,
    pub monitor: String,
    pub version: i32,
    /// `open` or `resolved`.
    pub state: String,
    pub key: String,
    pub kind: String,
    pub group: String,
    pub subject: String,
    pub window: Option<Value>,
    pub detail: Value,
    pub opened_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// A monitor's alert state, stored between evaluations (`dq_alerts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub open: BTreeMap<String, Open>,
    /// Conditions found beyond [`MAX_OPEN`] in the latest evaluation.
    #[serde(default)]
    pub overflow: usize,
    /// Events not yet delivered to the alert topic.
    #[serde(default)]
    pub pending: VecDeque<AlertEvent>,
    /// Events dropped undelivered because `pending` was full.
    #[serde(default)]
    pub dropped: u64,
    /// The latest events, newest last.
    #[serde(default)]
    pub recent: VecDeque<AlertEvent>,
}

/// The newest closed window of each group among `wins`.
pub fn closed<'a>(m: &Monitor, wins: impl IntoIterator<Item = &'a Win>, now_ms: i64) -> Vec<&'a Win> {
    let mut by_group: BTreeMap<&str, Vec<&Win>> = BTreeMap::new();
    for w in wins {
        by_group.entry(w.group.as_str()).or_default().push(w);
    }
    by_group
        .into_values()
        .filter_map(|mut ws| {
            ws.sort_by_key(|w| w.start);
            let newest = *ws.last()?;
            if now_ms >= newest.start + 2 * m.window_ms { Some(newest) } else { ws.iter().rev().nth(1).copied() }
        })
        .collect()
}

/// The conditions of one report window entry (`report::window`'s output).
pub fn of_window(group: &str, start: i64, entry: &Value) -> Vec<Condition> {
    let mut out = Vec::new();
    let mut drifted: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for d in entry["drift"].as_array().into_iter().flatten().filter(|d| d["drifted"] == json!(true)) {
        let Some(field) = d["field"].as_str() else { continue };
        drifted.entry(field).or_default().push(json!({
            "method": d["method"], "statistic": d["statistic"], "p_value": d["p_value"],
            "threshold": d["threshold"], "n": d["n"], "n_reference": d["n_reference"],
        }));
    }
    for (field, methods) in drifted {
        out.push(Condition {
            key: format!("drift|{group}|{field}"),
            kind: "drift".into(),
            group: group.into(),
            subject: field.into(),
            window: Some(start),
            detail: json!({ "methods": methods }),
        });
    }
    for a in entry["anomalies"].as_array().into_iter().flatten().filter(|a| a["anomalous"] == json!(true)) {
        let Some(metric) = a["metric"].as_str() else { continue };
        out.push(Condition {
            key: format!("anomaly|{group}|{metric}"),
            kind: "anomaly".into(),
            group: group.into(),
            subject: metric.into(),
            window: Some(start),
            detail: json!({ "method": a["method"], "value": a["value"], "expected": a["expected"], "score": a["score"] }),
        });
    }
    out
}

/// The freshness condition of `silent` (`api::silent_devices`' output), if devices are silent.
pub fn of_freshness(silent: &Value) -> Option<Condition> {
    let n = silent["silent"].as_u64().filter(|n| *n > 0)?;
    let devices: Vec<Value> = silent["devices"].as_array()?.iter().take(NAMED_DEVICES).cloned().collect();
    Some(Condition {
        key: "freshness".into(),
        kind: "freshness".into(),
        group: String::new(),
        subject: "silent_devices".into(),
        window: None,
        detail: json!({ "silent": n, "max_gap_ms": silent["max_gap_ms"], "as_of": silent["as_of"], "devices": devices }),
    })
}

impl AlertState {
    /// Advances to the conditions `found` now: opens new ones, resolves those gone; returns the
    /// events (also queued in `pending` and `recent`).
    pub fn step(&mut self, m: &Monitor, found: Vec<Condition>, now_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut found: BTreeMap<String, Condition> = found.into_iter().map(|c| (c.key.clone(), c)).collect();
        let gone: Vec<String> = self.open.keys().filter(|k| !found.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(o) = self.open.remove(&key) {
                events.push(event(m, &o.condition, "resolved", o.since_ms, Some(now_ms)));
            }
        }
        for o in self.open.values_mut() {
            if let Some(c) = found.remove(&o.condition.key) {
                o.condition = c;
            }
        }
        self.overflow = found.len().saturating_sub(MAX_OPEN - self.open.len().min(MAX_OPEN));
        for (key, c) in found {
            if self.open.len() >= MAX_OPEN {
                break;
            }
            events.push(event(m, &c, "open", now_ms, None));
            self.open.insert(key, Open { condition: c, since_ms: now_ms });
        }
        for e in &events {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
                self.dropped += 1;
            }
            self.pending.push_back(e.clone());
            self.recent.push_back(e.clone());
            while self.recent.len() > RECENT {
                self.recent.pop_front();
            }
        }
        events
    }

    /// The health check: `fail` while any condition is open.
    pub fn check(&self, m: &Monitor) -> (&'static str, Value) {
        let open: Vec<Value> = self
            .open
            .values()
            .take(16)
            .map(|o| json!({"key": o.condition.key, "kind": o.condition.kind, "since": rfc3339(o.since_ms)}))
            .collect();
        let status = if self.open.is_empty() { "pass" } else { "fail" };
        (status, json!({"monitor": m.spec.id, "version": m.version, "open": self.open.len(), "conditions": open}))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored state; an unreadable one starts again (its conditions reopen once).
    pub fn from_bytes(b: &[u8]) -> AlertState {
        serde_json::from_slice(b).unwrap_or_default()
    }
}

fn event(m: &Monitor, c: &Condition, state: &str, since_ms: i64, resolved: Option<i64>) -> AlertEvent {
    AlertEvent {
        id: format!("{}:{}:{since_ms}:{state}", m.spec.id, c.key),
        monitor: m.spec.id.clone(),
        version: m.version,
        state: state.into(),
        key: c.key.clone(),
        kind: c.kind.clone(),
        group: c.group.clone(),
        subject: c.subject.clone(),
        window: c.window.map(|s| json!({"start": rfc3339(s), "end": rfc3339(s + m.window_ms)})),
        detail: c.detail.clone(),
        opened_at: rfc3339(since_ms),
        resolved_at: resolved.map(rfc3339),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::MonitorSpec;
    use crate::profile::WindowProfile;

    fn monitor() -> Monitor {
        let spec: MonitorSpec =
            serde_json::from_value(json!({"id": "m", "window": "1m", "alerts": {"topic": "quality.alerts"}})).unwrap();
        Monitor::compile(spec, 3).unwrap()
    }

    fn cond(key: &str) -> Condition {
        Condition {
            key: key.into(),
            kind: "anomaly".into(),
            group: String::new(),
            subject: key.into(),
            window: Some(0),
            detail: json!({}),
        }
    }

    #[test]
    fn a_condition_opens_once_while_it_holds_and_resolves_once() {
        let m = monitor();
        let mut s = AlertState::default();
        // (time, conditions found, expected events as (state, key))
        let steps: Vec<(i64, Vec<&str>, Vec<(&str, &str)>)> = vec![
            (0, vec![], vec![]),
            (1, vec!["a"], vec![("open", "a")]),
            (2, vec!["a"], vec![]),
            (3, vec!["a", "b"], vec![("open", "b")]),
            (4, vec!["b"], vec![("resolved", "a")]),
            (5, vec!["b"], vec![]),
            (6, vec![], vec![("resolved", "b")]),
            (7, vec!["a"], vec![("open", "a")]),
        ];
        for (at, found, want) in steps {
            let got = s.step(&m, found.into_iter().map(cond).collect(), at);
            let got: Vec<(&str, &str)> = got.iter().map(|e| (e.state.as_str(), e.key.as_str())).collect();
            assert_eq!(got, want, "at {at}");
        }
        assert_eq!(s.pending.len(), 5);
        let resolved = s.pending.iter().find(|e| e.state == "resolved").unwrap();
        assert_eq!(resolved.opened_at, rfc3339(1));
        assert_eq!(resolved.resolved_at, Some(rfc3339(4)));
        assert_eq!(resolved.id, "m:a:1:resolved");
        assert_eq!(s.check(&m).0, "fail");
        let back = AlertState::from_bytes(&s.to_bytes());
        assert_eq!(back, s, "the state survives storage, so another node continues it");
        assert_eq!(AlertState::from_bytes(b"garbage"), AlertState::default());
    }

    #[test]
    fn open_conditions_and_pending_events_are_bounded() {
        let m = monitor();
        let mut s = AlertState::default();
        let many: Vec<String> = (0..MAX_OPEN + 10).map(|i| format!("k{i:03}")).collect();
        s.step(&m, many.iter().map(|k| cond(k)).collect(), 0);
        assert_eq!((s.open.len(), s.overflow), (MAX_OPEN, 10));
        for at in 1..10 {
            s.step(&m, vec![], at);
            s.step(&m, many.iter().map(|k| cond(k)).collect(), at);
        }
        assert_eq!(s.pending.len(), MAX_PENDING);
        assert!(s.dropped > 0);
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.check(&m).1["conditions"].as_array().unwrap().len(), 16);
    }

    #[test]
    fn conditions_come_from_the_report_entry_and_the_freshness_state() {
        let entry = json!({
            "drift": [
                {"field": "/speed", "method": "ks", "statistic": 0.3, "p_value": 0.0, "threshold": 0.05, "n": 100, "n_reference": 900, "drifted": true},
                {"field": "/speed", "method": "psi", "statistic": 0.4, "threshold": 0.2, "n": 100, "n_reference": 900, "drifted": true},
                {"field": "/platform", "method": "chi2", "statistic": 1.0, "threshold": 0.05, "n": 100, "n_reference": 900, "drifted": false},
            ],
            "anomalies": [
                {"metric": "volume", "method": "mad", "value": 10.0, "anomalous": true},
                {"metric": "null_rate:/speed", "method": "mad", "value": 0.01, "anomalous": false},
            ],
        });
        let found = of_window("ios", 60_000, &entry);
        let keys: Vec<&str> = found.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["drift|ios|/speed", "anomaly|ios|volume"]);
        assert_eq!(found[0].detail["methods"].as_array().unwrap().len(), 2);
        let silent =
            json!({"silent": 2, "max_gap_ms": 300000, "as_of": "x", "devices": [{"device": "d1"}, {"device": "d2"}]});
        assert_eq!(of_freshness(&silent).unwrap().detail["silent"], 2);
        assert!(of_freshness(&json!({"silent": 0, "devices": []})).is_none());
        assert!(of_freshness(&Value::Null).is_none());
    }

    #[test]
    fn the_newest_closed_window_is_judged() {
        let m = monitor();
        let win = |group: &str, start: i64| Win { group: group.into(), start, profile: WindowProfile::default() };
        let all = vec![win("a", 0), win("b", 0), win("a", 60_000), win("b", 60_000), win("a", 120_000)];
        // (now, expected (group, start))
        let cases: Vec<(i64, Vec<(&str, i64)>)> = vec![
            (130_000, vec![("a", 60_000), ("b", 0)]),
            (200_000, vec![("a", 60_000), ("b", 60_000)]),
            (240_000, vec![("a", 120_000), ("b", 60_000)]),
        ];
        for (now, want) in cases {
            let got: Vec<(&str, i64)> = closed(&m, &all, now).iter().map(|w| (w.group.as_str(), w.start)).collect();
            assert_eq!(got, want, "at {now}");
        }
    }
}
