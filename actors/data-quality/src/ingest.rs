//! One batch of records into per-(group, window) profiles (pure): event time, group key,
//! every watched field, the unique key and freshness gaps. Records that cannot be placed are
//! refused one by one with a reason (`not_an_object`, `missing_time`, `invalid_time`, …);
//! the rest of the batch counts.

use std::collections::BTreeMap;

use loom_streams::aggregate::canonical;
use loom_streams::time::TimeSource;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::monitor::Monitor;
use crate::profile::WindowProfile;

/// Devices whose last event time a part remembers (freshness); beyond, new ones are untracked.
pub const MAX_DEVICES: usize = 100_000;
/// Groups per batch; beyond, records go to the group [`OTHER_GROUP`].
pub const MAX_GROUPS: usize = 1_000;
pub const OTHER_GROUP: &str = "(other)";
/// Refusals listed in an answer (all are counted).
const MAX_LISTED: usize = 100;

/// A part's freshness state: each device's newest event time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Freshness {
    pub last: BTreeMap<String, i64>,
    pub untracked: u64,
}

impl Freshness {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Freshness {
        postcard::from_bytes(b).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Batch {
    pub windows: BTreeMap<(String, i64), WindowProfile>,
    pub accepted: u64,
    pub refused: u64,
    pub listed: Vec<Value>,
}

impl Batch {
    pub(crate) fn refuse(&mut self, index: usize, code: &str, message: String) {
        self.refused += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(json!({"index": index, "code": code, "message": message}));
        }
    }

    pub fn answer(&self) -> Value {
        json!({"accepted": self.accepted, "refused": self.refused, "refusals": self.listed,
               "windows": self.windows.len()})
    }
}

/// The group key: the group_by values' canonical JSON joined by `|` (`""` without group_by).
fn group(monitor: &Monitor, v: &Value) -> String {
    let mut key = String::new();
    for (i, p) in monitor.spec.group_by.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        match v.pointer(p) {
            Some(Value::String(s)) => key.push_str(s),
            Some(x) => key.push_str(&canonical(x)),
            None => key.push_str("(missing)"),
        }
    }
    key.truncate(256.min(key.len()));
    while !key.is_char_boundary(key.len()) {
        key.pop();
    }
    key
}

/// Violations recorded per invalid record at most.
const VIOLATIONS_PER_RECORD: usize = 8;

/// Counts `v`'s schema outcome in `w`: checked, invalid, and each distinct "keyword at path".
fn check_schema(schema: &loom_schemas::Validator, v: &Value, w: &mut WindowProfile) {
    w.schema.checked += 1;
    if schema.is_valid(v) {
        return;
    }
    w.schema.invalid += 1;
    let mut seen: Vec<String> = Vec::new();
    for x in loom_schemas::violations(schema, v, VIOLATIONS_PER_RECORD) {
        let kind = format!("{} at '{}'", x.keyword, x.path);
        if !seen.contains(&kind) {
            w.schema.violation(kind.clone());
            seen.push(kind);
        }
    }
}

/// Absorbs `records` (REST: `record_ms` None, arrival time `now` stands in for a record time),
/// validating each against `schema` when the monitor has one and it could be loaded.
pub fn absorb(
    monitor: &Monitor,
    schema: Option<&loom_schemas::Validator>,
    records: &[(Value, Option<i64>)],
    now: i64,
    fresh: &mut Freshness,
    batch: &mut Batch,
) {
    for (i, (v, record_ms)) in records.iter().enumerate() {
        if !v.is_object() {
            batch.refuse(i, "not_an_object", "a record must be a JSON object".into());
            continue;
        }
        let ts = match (&monitor.time, monitor.time.extract(v, *record_ms)) {
            (_, Ok(ts)) => ts,
            (TimeSource::RecordTimestamp, Err(_)) => now,
            (_, Err(e)) => {
                batch.refuse(i, e.code(), e.to_string());
                continue;
            }
        };
        let mut g = group(monitor, v);
        if batch.windows.len() >= MAX_GROUPS && !batch.windows.keys().any(|(k, _)| *k == g) {
            g = OTHER_GROUP.into();
        }
        let w = batch.windows.entry((g, monitor.window_start(ts))).or_default();
        w.count += 1;
        if let Some(schema) = schema {
            check_schema(schema, v, w);
        }
        for (p, rule) in &monitor.fields {
            let value = rule.at.get(v);
            match w.fields.get_mut(p) {
                Some(f) => f.add(value, rule),
                None => w.fields.entry(p.clone()).or_default().add(value, rule),
            }
        }
        if !monitor.spec.unique.is_empty() {
            let parts: Option<Vec<String>> = monitor.spec.unique.iter().map(|p| v.pointer(p).map(canonical)).collect();
            if let Some(parts) = parts {
                w.add_key(&parts.join("\u{1f}"));
            }
        }
        if let (Some(max_gap), Some(f)) = (monitor.max_gap_ms, &monitor.spec.freshness)
            && let Some(device) = v.pointer(&f.per).filter(|d| !d.is_null())
        {
            let device = match device {
                Value::String(s) => s.clone(),
                other => canonical(other),
            };
            let room = fresh.last.len() < MAX_DEVICES;
            match fresh.last.get_mut(&device) {
                Some(last) => {
                    if ts > *last {
                        let gap = ts - *last;
                        if gap > max_gap {
                            w.gaps += 1;
                            w.longest_gap_ms = w.longest_gap_ms.max(gap);
                        }
                        *last = ts;
                    }
                }
                None if room => {
                    fresh.last.insert(device, ts);
                }
                None => fresh.untracked += 1,
            }
        }
        batch.accepted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::MonitorSpec;

    fn monitor(v: Value) -> Monitor {
        Monitor::compile(serde_json::from_value::<MonitorSpec>(v).unwrap(), 1).unwrap()
    }

    #[test]
    fn records_land_in_their_group_and_window_and_bad_ones_are_refused() {
        let m = monitor(
            json!({"id": "m", "window": "1m", "time": {"field": "/ts", "format": "epoch_ms"}, "group_by": ["/p"], "unique": ["/id"],
            "fields": {"/x": {"required": true}}, "freshness": {"per": "/d", "max_gap": "5m"}}),
        );
        let recs: Vec<(Value, Option<i64>)> = [
            json!({"ts": 1_000, "p": "ios", "x": 1, "id": 1, "d": "a"}),
            json!({"ts": 2_000, "p": "ios", "x": 2, "id": 1, "d": "a"}),
            json!({"ts": 61_000, "p": "web", "id": 2, "d": "a"}),
            json!({"ts": 700_000, "p": "web", "x": null, "id": 3, "d": "a"}),
            json!([1, 2]),
            json!({"p": "ios"}),
            json!({"ts": "yesterday"}),
        ]
        .into_iter()
        .map(|v| (v, None))
        .collect();
        let (mut fresh, mut batch) = (Freshness::default(), Batch::default());
        absorb(&m, None, &recs, 0, &mut fresh, &mut batch);
        assert_eq!((batch.accepted, batch.refused), (4, 3));
        let codes: Vec<&str> = batch.listed.iter().map(|r| r["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["not_an_object", "missing_time", "invalid_time"]);
        let ios = &batch.windows[&("ios".to_owned(), 0)];
        assert_eq!((ios.count, ios.fields["/x"].present, ios.duplicate_keys()), (2, 2, 1));
        let web = &batch.windows[&("web".to_owned(), 60_000)];
        assert_eq!((web.count, web.fields["/x"].present), (1, 0));
        let late = &batch.windows[&("web".to_owned(), 660_000)];
        assert_eq!((late.gaps, late.longest_gap_ms, late.fields["/x"].nulls), (1, 639_000, 1));
        assert_eq!(fresh.last["a"], 700_000);
        assert_eq!(Freshness::from_bytes(&fresh.to_bytes()), fresh);
    }

    #[test]
    fn schema_outcomes_are_counted_by_keyword_and_path() {
        let m = monitor(json!({"id": "m", "window": "1m", "time": {"field": "/ts", "format": "epoch_ms"}}));
        let schema = serde_json::json!({"type": "object", "required": ["lat"], "properties": {"lat": {"maximum": 90}}});
        let v = jsonschema_validator(&schema);
        let recs: Vec<(Value, Option<i64>)> =
            [json!({"ts": 1, "lat": 10}), json!({"ts": 2, "lat": 91}), json!({"ts": 3, "lat": 95}), json!({"ts": 4})]
                .into_iter()
                .map(|v| (v, None))
                .collect();
        let (mut fresh, mut batch) = (Freshness::default(), Batch::default());
        absorb(&m, Some(&v), &recs, 0, &mut fresh, &mut batch);
        let s = &batch.windows[&(String::new(), 0)].schema;
        assert_eq!((s.checked, s.invalid), (4, 3));
        assert_eq!(s.violations["maximum at '/lat'"], 2);
        assert_eq!(s.violations["required at ''"], 1);
    }

    fn jsonschema_validator(schema: &Value) -> loom_schemas::Validator {
        loom_schemas::compile(schema).unwrap()
    }
}
