//! Reports from stored profiles (pure): rows of every part merged per (group, window), each
//! window's metrics, completeness, field summaries, drift against its reference and anomalies
//! of its metrics against the windows before it.
//!
//! Quality score (0–100) = 100 × completeness × validity × compliance × uniqueness, where
//! completeness is the mean non-null share of the required fields (all watched fields when
//! none is required), validity 1 − (range + enum violations) / values of the fields that
//! declare a range or enum, compliance 1 − invalid / checked records (1 without a schema) and
//! uniqueness 1 − duplicate keys / keyed records (1 without `unique`).

use std::collections::BTreeMap;

use loom_streams::time::rfc3339;
use serde_json::{Value, json};

use crate::anomaly;
use crate::drift;
use crate::monitor::{Metric, Monitor, Reference};
use crate::profile::{FieldProfile, WindowProfile};
use crate::store::Row;

/// A merged window of one group.
pub struct Win {
    pub group: String,
    pub start: i64,
    pub profile: WindowProfile,
}

/// History windows an anomaly judgement looks back at most (Holt-Winters: three seasons).
pub const HISTORY: usize = 100;

/// Merges rows (ordered by start, group) of all parts into one window per (group, start).
pub fn merge_rows(rows: Vec<Row>) -> Result<Vec<Win>, String> {
    let mut out: BTreeMap<(i64, String), WindowProfile> = BTreeMap::new();
    for (group, start, bytes) in rows {
        let p = WindowProfile::from_bytes(&bytes)?;
        match out.get_mut(&(start, group.clone())) {
            Some(w) => w.merge(&p),
            None => {
                out.insert((start, group), p);
            }
        }
    }
    Ok(out.into_iter().map(|((start, group), profile)| Win { group, start, profile }).collect())
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The window's headline metrics (also the anomaly detector's series).
pub fn metrics(m: &Monitor, p: &WindowProfile) -> BTreeMap<&'static str, Option<f64>> {
    let empty = FieldProfile::default();
    let required: Vec<&String> = m.fields.iter().filter(|(_, r)| r.required).map(|(k, _)| k).collect();
    let counted: Vec<&String> = if required.is_empty() { m.fields.keys().collect() } else { required };
    let completeness = if counted.is_empty() || p.count == 0 {
        1.0
    } else {
        counted.iter().map(|f| ratio(p.fields.get(*f).unwrap_or(&empty).values(), p.count)).sum::<f64>()
            / counted.len() as f64
    };
    let (mut bad, mut values) = (0, 0);
    for (f, rule) in &m.fields {
        if rule.range.is_some() || rule.allowed.is_some() {
            let fp = p.fields.get(f).unwrap_or(&empty);
            bad += fp.range_violations + fp.enum_violations;
            values += fp.values();
        }
    }
    let validity = if values == 0 { 1.0 } else { 1.0 - ratio(bad, values) };
    let compliance = (p.schema.checked > 0).then(|| 1.0 - ratio(p.schema.invalid, p.schema.checked));
    let uniqueness = if p.keyed == 0 { 1.0 } else { 1.0 - ratio(p.duplicate_keys(), p.keyed) };
    let score = 100.0 * completeness * validity * compliance.unwrap_or(1.0) * uniqueness;
    BTreeMap::from([
        ("volume", Some(p.count as f64)),
        ("completeness", Some(completeness)),
        ("validity", Some(validity)),
        ("compliance", compliance),
        ("uniqueness", Some(uniqueness)),
        ("quality_score", Some(score)),
        ("duplicate_keys", Some(p.duplicate_keys() as f64)),
        ("gaps", Some(p.gaps as f64)),
    ])
}

pub fn metric_value(m: &Monitor, metric: &Metric, p: &WindowProfile) -> Option<f64> {
    let empty = FieldProfile::default();
    let f = |name: &str| p.fields.get(name).unwrap_or(&empty);
    match metric {
        Metric::Volume => Some(p.count as f64),
        Metric::Compliance => metrics(m, p)["compliance"],
        Metric::QualityScore => metrics(m, p)["quality_score"],
        Metric::DuplicateKeys => Some(p.duplicate_keys() as f64),
        Metric::Gaps => Some(p.gaps as f64),
        Metric::NullRate(x) => (p.count > 0).then(|| ratio(f(x).nulls, p.count)),
        Metric::MissingRate(x) => (p.count > 0).then(|| ratio(p.count - f(x).present.min(p.count), p.count)),
        Metric::Mean(x) => (f(x).numeric.n > 0).then(|| f(x).numeric.mean),
        Metric::Distinct(x) => Some(f(x).distinct() as f64),
    }
}

/// The sampling noise of a metric in a window, as a function of its expected value: rates
/// over the window's n records are binomial (√(p(1 − p)/n), p clamped to [1/n, 1 − 1/n]),
/// counts Poisson (√expected), a field's mean has the standard error σ/√n; other metrics 0.
fn noise_of<'a>(metric: &'a Metric, p: &'a WindowProfile) -> impl Fn(f64) -> f64 + 'a {
    move |expected: f64| {
        let n = p.count.max(1) as f64;
        match metric {
            Metric::NullRate(_) | Metric::MissingRate(_) | Metric::Compliance => {
                let q = expected.clamp(1.0 / n, 1.0 - 1.0 / n);
                (q * (1.0 - q) / n).sqrt()
            }
            Metric::Volume | Metric::DuplicateKeys | Metric::Gaps => expected.max(1.0).sqrt(),
            Metric::Mean(x) => p
                .fields
                .get(x)
                .and_then(|f| {
                    let num = &f.numeric;
                    num.std().map(|sd| sd / (num.n.max(1) as f64).sqrt())
                })
                .unwrap_or(0.0),
            Metric::QualityScore | Metric::Distinct(_) => 0.0,
        }
    }
}

pub fn completeness(m: &Monitor, p: &WindowProfile) -> Vec<Value> {
    let empty = FieldProfile::default();
    m.fields
        .iter()
        .map(|(name, rule)| {
            let fp = p.fields.get(name).unwrap_or(&empty);
            let missing = p.count.saturating_sub(fp.present);
            json!({"field": name, "required": rule.required, "missing": missing, "null": fp.nulls,
                   "rate": num(ratio(missing + fp.nulls, p.count))})
        })
        .collect()
}

pub fn field_summary(name: &str, fp: &FieldProfile) -> Value {
    let n = &fp.numeric;
    let numeric = (n.n > 0).then(|| {
        json!({"n": n.n, "mean": num(n.mean), "std": n.std().map_or(Value::Null, num), "min": num(n.min),
               "max": num(n.max), "p50": n.quantile(0.5).map_or(Value::Null, num),
               "p95": n.quantile(0.95).map_or(Value::Null, num), "p99": n.quantile(0.99).map_or(Value::Null, num),
               "exact": n.complete()})
    });
    let c = &fp.categorical;
    let categorical = (c.total() > 0).then(|| {
        json!({"n": c.total(), "top": c.top(10).into_iter().map(|(v, k)| json!({"value": v, "count": k})).collect::<Vec<_>>(),
               "categories": c.counts.len(), "other": c.other})
    });
    json!({"field": name, "present": fp.present, "null": fp.nulls, "types": fp.types.to_json(),
           "distinct": fp.distinct(), "range_violations": fp.range_violations, "enum_violations": fp.enum_violations,
           "numeric": numeric, "categorical": categorical})
}

/// The reference profile for a window of `group` starting at `start`, from `all` (every
/// loaded window, oldest first); None when it holds no window.
pub fn reference(m: &Monitor, all: &[Win], group: &str, start: i64) -> Option<WindowProfile> {
    let (from, to) = match m.reference {
        Reference::Fixed { from, to } => (from, to),
        Reference::Rolling(span) => (start - span, start),
    };
    let mut out: Option<WindowProfile> = None;
    for w in all.iter().filter(|w| w.group == group && w.start >= from && w.start < to) {
        match &mut out {
            Some(o) => o.merge(&w.profile),
            None => out = Some(w.profile.clone()),
        }
    }
    out
}

/// One window's report entry; `all` also holds its reference and history windows.
pub fn window(m: &Monitor, w: &Win, all: &[Win]) -> Value {
    let p = &w.profile;
    let mut out = json!({
        "group": w.group,
        "start": rfc3339(w.start),
        "end": rfc3339(w.start + m.window_ms),
        "count": p.count,
        "metrics": metrics(m, p).into_iter().map(|(k, v)| (k.to_owned(), v.map_or(Value::Null, num))).collect::<serde_json::Map<_, _>>(),
        "completeness": completeness(m, p),
        "fields": p.fields.iter().filter(|(k, _)| m.fields.contains_key(*k)).map(|(k, f)| field_summary(k, f)).collect::<Vec<_>>(),
        "schema": {"checked": p.schema.checked, "invalid": p.schema.invalid, "violations": p.schema.violations, "other": p.schema.other},
        "unique": {"keyed": p.keyed, "duplicates": p.duplicate_keys()},
        "freshness": {"gaps": p.gaps, "longest_gap_ms": p.longest_gap_ms},
    });
    if m.spec.drift.is_some() {
        out["drift"] = match reference(m, all, &w.group, w.start) {
            Some(r) => json!(drift::compare(m, p, &r)),
            None => json!(drift::compare(m, p, &WindowProfile::default())),
        };
    }
    if let Some(a) = &m.spec.anomaly {
        let earlier: Vec<&Win> = all.iter().filter(|x| x.group == w.group && x.start < w.start).collect();
        let keep = HISTORY.max(m.season_windows.unwrap_or(0) * 3);
        let earlier = &earlier[earlier.len().saturating_sub(keep)..];
        let judged: Vec<Value> = m
            .metrics
            .iter()
            .filter_map(|(name, metric)| {
                let value = metric_value(m, metric, p)?;
                let history: Vec<f64> = earlier.iter().filter_map(|x| metric_value(m, metric, &x.profile)).collect();
                let noise = noise_of(metric, p);
                let j = anomaly::judge_with_noise(a.method, &history, value, a.threshold, m.season_windows, &noise);
                let mut v = json!(j);
                v["metric"] = json!(name);
                v["method"] = json!(a.method);
                v["history"] = json!(history.len());
                Some(v)
            })
            .collect();
        out["anomalies"] = json!(judged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Batch, Freshness, absorb};
    use crate::monitor::MonitorSpec;

    fn monitor(v: Value) -> Monitor {
        Monitor::compile(serde_json::from_value::<MonitorSpec>(v).unwrap(), 1).unwrap()
    }

    fn wins(m: &Monitor, recs: Vec<Value>) -> Vec<Win> {
        let (mut f, mut b) = (Freshness::default(), Batch::default());
        absorb(m, None, &recs.into_iter().map(|v| (v, None)).collect::<Vec<_>>(), 0, &mut f, &mut b);
        let rows: Vec<Row> = b.windows.into_iter().map(|((g, s), p)| (g, s, p.to_bytes())).collect();
        merge_rows(rows).unwrap()
    }

    #[test]
    fn the_score_combines_completeness_validity_and_uniqueness() {
        let m = monitor(
            json!({"id": "m", "window": "1m", "time": {"field": "/ts", "format": "epoch_ms"}, "unique": ["/id"],
            "fields": {"/a": {"required": true, "range": [0, 10]}, "/b": {}}}),
        );
        let recs = vec![
            json!({"ts": 1, "a": 1, "id": 1}),
            json!({"ts": 2, "a": 20, "id": 2}),
            json!({"ts": 3, "a": null, "id": 2}),
            json!({"ts": 4, "id": 3}),
        ];
        let w = &wins(&m, recs)[0];
        let x = metrics(&m, &w.profile);
        assert_eq!(x["completeness"], Some(0.5));
        assert_eq!(x["validity"], Some(0.5));
        assert_eq!(x["uniqueness"], Some(0.75));
        assert_eq!(x["quality_score"], Some(100.0 * 0.5 * 0.5 * 0.75));
        assert_eq!(x["compliance"], None);
        let c = completeness(&m, &w.profile);
        assert_eq!(c[0], json!({"field": "/a", "required": true, "missing": 1, "null": 1, "rate": 0.5}));
    }

    #[test]
    fn a_null_rate_jump_is_an_anomaly_after_steady_windows() {
        let m = monitor(
            json!({"id": "m", "window": "1m", "time": {"field": "/ts", "format": "epoch_ms"}, "fields": {"/s": {}},
            "anomaly": {"metrics": ["null_rate:/s", "volume"], "method": "mad"}}),
        );
        let mut recs = Vec::new();
        for w in 0..21i64 {
            for i in 0..100i64 {
                let null_every = if w == 20 { 5 } else { 100 };
                let s = if i % null_every == 0 { Value::Null } else { json!(i) };
                recs.push(json!({"ts": w * 60_000 + i, "s": s}));
            }
        }
        let all = wins(&m, recs);
        let judged = |w: &Win| window(&m, w, &all)["anomalies"].as_array().unwrap().clone();
        for w in &all[8..20] {
            assert!(judged(w).iter().all(|a| a["anomalous"] == json!(false)), "{}", json!(judged(w)));
        }
        let last = judged(&all[20]);
        assert_eq!(last[0]["metric"], "null_rate:/s");
        assert_eq!(last[0]["anomalous"], true, "{}", json!(last));
        assert_eq!(last[1]["anomalous"], false);
        assert_eq!(judged(&all[2])[0]["reason"], "insufficient_history");
    }

    /// A deterministic pseudo-random sequence (LCG) and a Box-Muller normal.
    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.unit(), self.unit());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// What a window flags: drifted (field, method) and anomalous metrics.
    fn flags(m: &Monitor, w: &Win, all: &[Win]) -> Vec<String> {
        let v = window(m, w, all);
        let mut out: Vec<String> = v["drift"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["drifted"] == true)
            .map(|d| format!("drift {} {}", d["field"].as_str().unwrap(), d["method"].as_str().unwrap()))
            .collect();
        out.extend(
            v["anomalies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["anomalous"] == true)
                .map(|a| format!("anomaly {}", a["metric"].as_str().unwrap())),
        );
        if w.profile.gaps > 0 {
            out.push("gap".into());
        }
        out
    }

    #[test]
    fn injected_changes_are_flagged_within_two_windows_and_steady_data_raises_nothing() {
        let m = monitor(json!({"id": "m", "window": "1m", "time": {"field": "/ts", "format": "epoch_ms"},
            "fields": {"/speed": {}, "/platform": {}}, "freshness": {"per": "/device", "max_gap": "1m"},
            "reference": {"rolling": "10m"}, "drift": {"fields": ["/speed", "/platform"]},
            "anomaly": {"metrics": ["null_rate:/speed", "volume"], "method": "mad"}}));
        const PER_WINDOW: i64 = 2000;
        // (scenario, what must be flagged)
        let cases = [
            ("steady", None),
            ("mean +0.5 sd on /speed", Some("drift /speed ks")),
            ("a new category at 10 %", Some("drift /platform chi2")),
            ("null rate 1 % -> 20 %", Some("anomaly null_rate:/speed")),
            ("a device silent for 10 minutes", Some("silent d7")),
        ];
        for (case, (name, want)) in cases.iter().enumerate() {
            let mut rng = Lcg(17 + case as u64);
            let mut recs = Vec::new();
            for w in 0..42i64 {
                let changed = w >= 30 && case > 0;
                for i in 0..PER_WINDOW {
                    let device = format!("d{}", i % 50);
                    if changed && case == 4 && device == "d7" && w < 40 {
                        continue;
                    }
                    let shift = if changed && case == 1 { 0.5 } else { 0.0 };
                    let null_share = if changed && case == 3 { 0.20 } else { 0.01 };
                    let speed =
                        if rng.unit() < null_share { Value::Null } else { json!(50.0 + 5.0 * (rng.normal() + shift)) };
                    let r = rng.unit();
                    let platform = if changed && case == 2 && r < 0.1 {
                        "tv"
                    } else if r < 0.55 {
                        "android"
                    } else {
                        "ios"
                    };
                    recs.push(
                        json!({"ts": w * 60_000 + i * 30, "device": device, "speed": speed, "platform": platform}),
                    );
                }
            }
            // the silent device: flagged by the freshness state after two windows of silence
            let (mut fresh, mut b) = (Freshness::default(), Batch::default());
            let upto: Vec<(Value, Option<i64>)> =
                recs.iter().filter(|r| r["ts"].as_i64().unwrap() < 32 * 60_000).map(|v| (v.clone(), None)).collect();
            absorb(&m, None, &upto, 0, &mut fresh, &mut b);
            let silent = crate::api::silent_devices(&m, &[fresh.to_bytes()]);
            let silent: Vec<String> = silent["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| format!("silent {}", d["device"].as_str().unwrap()))
                .collect();

            let all = wins(&m, recs);
            assert_eq!(all.len(), 42);
            let steady: Vec<(usize, Vec<String>)> =
                (10..30).map(|w| (w, flags(&m, &all[w], &all))).filter(|(_, f)| !f.is_empty()).collect();
            assert!(steady.is_empty(), "{name}: 20 unchanged windows raised {steady:?}");
            let after: Vec<String> =
                [30, 31].iter().flat_map(|w| flags(&m, &all[*w], &all)).chain(silent.iter().cloned()).collect();
            match want {
                None => assert!(after.is_empty(), "{name}: {after:?}"),
                Some(flag) => assert!(after.iter().any(|f| f == flag), "{name}: wanted {flag}, got {after:?}"),
            }
            if case == 4 {
                assert!(flags(&m, &all[40], &all).contains(&"gap".to_owned()), "the return ends a counted gap");
            }
        }
    }
}
