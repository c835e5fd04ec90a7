//! Data Quality Monitor (8031) over real sockets and real stores:
//!
//! - REST: invalid monitors are refused by field (422), a schema subject the registry does not
//!   know too (422 `unknown_subject`); schema compliance counted by keyword and path; records are profiled per window and group; the report's counts,
//!   completeness and drift decisions are right (a shifted numeric field drifts, an unchanged
//!   categorical one does not); windows survive a kill -9 (written before the answer); bad
//!   input is a 4xx with a stable code or a per-record refusal; `/drift` and `/profile`;
//! - two nodes sharing one PostgreSQL: a monitor written on one is served by the other, and
//!   records split across both report exactly the counts of a single node;
//! - a Kafka source over the real broker: two clustered nodes, 6 partitions, one killed -9
//!   mid-stream; the merged windows equal a one-node REST run on the same records;
//! - the statistics against scipy itself (`scipy.stats.ks_2samp`, `wasserstein_distance`,
//!   `chisquare`, `scipy.spatial.distance.jensenshannon`, numpy's Sturges bins) on seeded
//!   normal, shifted, heavy-tailed and categorical samples.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use loom_data_quality::stats;
use loom_kafka::rdkafka::producer::FutureRecord;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};

#[path = "support/kafka.rs"]
mod kafka;

const DQ: u16 = 8031;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

async fn call(method: reqwest::Method, node: &LoomNode, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(DQ, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        // Box-Muller
        let (u, v) = (self.unit(), self.unit());
        mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn monitor() -> Value {
    json!({"id": "gps", "time": {"field": "/ts"}, "window": "10m", "group_by": [],
           "fields": {"/speed": {"required": true, "range": [0, 200]}, "/platform": {"required": true, "enum": ["ios", "android", "web"]}},
           "unique": ["/id"],
           "freshness": {"per": "/device", "max_gap": "5m"},
           "reference": {"fixed": {"from": iso(T0), "to": iso(T0 + 10 * MIN)}},
           "drift": {"fields": ["/speed", "/platform"], "methods": ["ks", "psi", "wasserstein", "js", "chi2"]},
           "anomaly": {"metrics": ["volume", "null_rate:/speed"], "method": "mad"}})
}

/// 3 windows of 2,000 records: the reference, an unchanged one and one with /speed + 1σ.
fn records() -> Vec<Value> {
    let mut rng = Lcg(7);
    let platforms = ["ios", "android", "android", "web"];
    (0..6000)
        .map(|i| {
            let mean = if i >= 4000 { 55.0 } else { 50.0 };
            let p = platforms[(rng.unit() * 4.0) as usize % 4];
            json!({"ts": iso(T0 + i * 300), "id": i, "device": format!("d{}", i % 20),
                   "speed": (rng.normal(mean, 5.0) * 100.0).round() / 100.0, "platform": p})
        })
        .collect()
}

async fn post_records(node: &LoomNode, id: &str, recs: &[Value]) -> Value {
    let (s, r) =
        call(reqwest::Method::POST, node, &format!("/monitors/{id}/records"), Some(json!({"records": recs}))).await;
    assert_eq!(s, 200, "{r}");
    r
}

fn drift_of<'a>(window: &'a Value, field: &str, method: &str) -> &'a Value {
    window["drift"].as_array().unwrap().iter().find(|d| d["field"] == field && d["method"] == method).unwrap()
}

async fn report(node: &LoomNode) -> Value {
    let path = format!("/monitors/gps/report?from={}&to={}", iso(T0), iso(T0 + 30 * MIN));
    let (s, r) = call(reqwest::Method::GET, node, &path, None).await;
    assert_eq!(s, 200, "{r}");
    r
}

#[tokio::test]
async fn monitors_profile_windows_and_decide_drift() {
    let data = tempfile::tempdir().unwrap();
    let options = || NodeOptions::default().env("LOOM_DATA_DIR", data.path().to_str().unwrap());
    let node = LoomNode::start_ready("dq-rest", options()).await;

    for (patch, field) in [
        (json!({"window": "0s"}), "window"),
        (json!({"fields": {"/speed": {"range": [9, 1]}}}), "fields./speed.range"),
        (json!({"drift": {"fields": ["/speed"], "thresholds": {"ks": 3}}}), "drift.thresholds.ks"),
        (json!({"anomaly": {"metrics": ["speediness"]}}), "anomaly.metrics[0]"),
    ] {
        let mut spec = monitor();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (s, e) = call(reqwest::Method::POST, &node, "/monitors", Some(spec)).await;
        assert_eq!((s, e["code"].as_str()), (422, Some("invalid_monitor")), "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    let mut streamed = monitor();
    streamed["source"] = json!({"topic": "device.gps"});
    let (s, e) = call(reqwest::Method::POST, &node, "/monitors", Some(streamed)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("kafka_not_configured")), "no bridge here: {e}");

    let (s, m) = call(reqwest::Method::POST, &node, "/monitors", Some(monitor())).await;
    assert_eq!((s, m["version"].as_i64()), (201, Some(1)), "{m}");
    let (s, _) = call(reqwest::Method::POST, &node, "/monitors", Some(monitor())).await;
    assert_eq!(s, 409);

    // Bad input: 4xx with a code, or a refusal per record.
    let (s, e) = call(reqwest::Method::POST, &node, "/monitors/gps/records", Some(json!({"rows": []}))).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")), "{e}");
    let many: Vec<Value> = (0..10_001).map(|i| json!({"i": i})).collect();
    let (s, e) = call(reqwest::Method::POST, &node, "/monitors/gps/records", Some(json!({"records": many}))).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("too_many_records")), "{e}");
    let (s, _) = call(reqwest::Method::POST, &node, "/monitors/nope/records", Some(json!({"records": []}))).await;
    assert_eq!(s, 404);
    let r = post_records(&node, "gps", &[json!(1), json!({"speed": 3}), json!({"ts": "later"})]).await;
    assert_eq!((r["accepted"].as_u64(), r["refused"].as_u64()), (Some(0), Some(3)), "{r}");
    let codes: Vec<&str> = r["refusals"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["not_an_object", "missing_time", "invalid_time"]);

    let recs = records();
    for chunk in recs.chunks(1000) {
        let r = post_records(&node, "gps", chunk).await;
        assert_eq!(r["accepted"].as_u64(), Some(chunk.len() as u64), "{r}");
    }
    // Wrong types, nulls and violations are counted, never crashes.
    let odd = [
        json!({"ts": iso(T0 + 20 * MIN + 1), "id": 4000, "speed": "fast", "platform": "symbian"}),
        json!({"ts": iso(T0 + 20 * MIN + 2), "id": 9000, "speed": null, "platform": 7}),
        json!({"ts": iso(T0 + 20 * MIN + 3), "id": 9001, "speed": 250}),
    ];
    post_records(&node, "gps", &odd).await;

    let check = |r: &Value| {
        let w = r["windows"].as_array().unwrap();
        assert_eq!(w.len(), 3, "{r}");
        let counts: Vec<u64> = w.iter().map(|x| x["count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [2000, 2000, 2003]);
        for x in &w[..2] {
            assert!(!drift_of(x, "/speed", "ks")["drifted"].as_bool().unwrap(), "{}", x["drift"]);
        }
        for m in ["ks", "psi", "wasserstein"] {
            let d = drift_of(&w[2], "/speed", m);
            assert!(d["drifted"].as_bool().unwrap(), "{m}: {d}");
        }
        assert_eq!(drift_of(&w[2], "/speed", "ks")["n"], 2001, "the number 250 counts, the string does not");
        for m in ["psi", "js", "chi2"] {
            assert!(!drift_of(&w[2], "/platform", m)["drifted"].as_bool().unwrap(), "{m}");
        }
        let c = w[2]["completeness"].as_array().unwrap();
        let speed = c.iter().find(|c| c["field"] == "/speed").unwrap();
        assert_eq!((speed["missing"].as_u64(), speed["null"].as_u64()), (Some(0), Some(1)), "{speed}");
        let platform = c.iter().find(|c| c["field"] == "/platform").unwrap();
        assert_eq!(platform["missing"], 1);
        let fields = w[2]["fields"].as_array().unwrap();
        let speed = fields.iter().find(|f| f["field"] == "/speed").unwrap();
        assert_eq!((speed["types"]["string"].as_u64(), speed["range_violations"].as_u64()), (Some(1), Some(1)));
        let platform = fields.iter().find(|f| f["field"] == "/platform").unwrap();
        assert_eq!(platform["enum_violations"], 2, "{platform}");
        assert_eq!(w[2]["unique"]["duplicates"], 1, "id 4000 twice: {}", w[2]["unique"]);
        assert_eq!(w[0]["anomalies"][0]["reason"], "insufficient_history");
    };
    let first = report(&node).await;
    check(&first);

    // Written before the answer: a kill -9 loses nothing.
    let address = node.kill_into_address().await;
    let mut node = LoomNode::start_on("dq-rest", address, options());
    node.wait_ready(&[DQ], Duration::from_secs(60)).await;
    let again = report(&node).await;
    check(&again);
    assert_eq!(first["windows"], again["windows"]);

    // /drift of a chosen window against another reference.
    let path = format!(
        "/monitors/gps/drift?window={}&reference={}/{}",
        iso(T0 + 25 * MIN),
        iso(T0 + 10 * MIN),
        iso(T0 + 20 * MIN)
    );
    let (s, d) = call(reqwest::Method::GET, &node, &path, None).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!((d["current"]["count"].as_u64(), d["reference"]["count"].as_u64()), (Some(2003), Some(2000)));
    let ks = d["drift"].as_array().unwrap().iter().find(|x| x["field"] == "/speed" && x["method"] == "ks").unwrap();
    assert_eq!((ks["drifted"].as_bool(), ks["exact"].as_bool()), (Some(true), Some(true)), "{ks}");
    let (s, e) = call(reqwest::Method::GET, &node, "/monitors/gps/drift?window=tuesday", None).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")), "{e}");

    // A one-off profile.
    let (s, p) = call(
        reqwest::Method::POST,
        &node,
        "/profile",
        Some(json!({"records": [{"a": 1}, {"a": 3, "b": "x"}, {"a": null}]})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["count"], 3);
    let a = p["fields"].as_array().unwrap().iter().find(|f| f["field"] == "/a").unwrap();
    assert_eq!((a["numeric"]["mean"].as_f64(), a["null"].as_u64()), (Some(2.0), Some(1)), "{a}");

    // Deleting the monitor forgets its windows.
    let (s, _) = call(reqwest::Method::DELETE, &node, "/monitors/gps", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(reqwest::Method::GET, &node, "/monitors/gps/report", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn two_nodes_on_one_database_merge_to_the_counts_of_one() {
    let db = infra::fresh_postgres_database("quality_two").await;
    let options = || NodeOptions::default().env("LOOM_DATABASE_URL", &db);
    let a = LoomNode::start_ready("dq-a", options()).await;
    let b = LoomNode::start_ready("dq-b", options()).await;
    let (s, _) = call(reqwest::Method::POST, &a, "/monitors", Some(monitor())).await;
    assert_eq!(s, 201);
    let (s, m) = call(reqwest::Method::GET, &b, "/monitors/gps", None).await;
    assert_eq!((s, m["version"].as_i64()), (200, Some(1)), "written on a, served by b: {m}");
    let recs = records();
    for (i, chunk) in recs.chunks(500).enumerate() {
        post_records(if i % 2 == 0 { &a } else { &b }, "gps", chunk).await;
    }
    let (ra, rb) = (report(&a).await, report(&b).await);
    assert_eq!(ra["windows"], rb["windows"]);

    let data = tempfile::tempdir().unwrap();
    let solo =
        LoomNode::start_ready("dq-solo", NodeOptions::default().env("LOOM_DATA_DIR", data.path().to_str().unwrap()))
            .await;
    call(reqwest::Method::POST, &solo, "/monitors", Some(monitor())).await;
    for chunk in recs.chunks(1000) {
        post_records(&solo, "gps", chunk).await;
    }
    let one = report(&solo).await;
    assert_eq!(strip(&ra), strip(&one), "sketches merged across two nodes equal one node's");
    assert_eq!(ra["freshness"]["tracked"], one["freshness"]["tracked"]);
}

/// What must be equal between a merged run and a one-node run: counts, completeness, exact
/// numeric extremes, categorical counts and the drift decisions.
fn strip(r: &Value) -> Vec<Value> {
    r["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            json!([
                w["count"],
                w["completeness"],
                w["metrics"]["volume"],
                w["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| json!([
                        f["present"],
                        f["numeric"]["n"],
                        f["numeric"]["min"],
                        f["numeric"]["max"],
                        f["categorical"]
                    ]))
                    .collect::<Vec<_>>(),
                w["drift"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| json!([d["field"], d["method"], d["n"], d["drifted"]]))
                    .collect::<Vec<_>>()
            ])
        })
        .collect()
}

const ORACLE: &str = r#"
import json, sys
import numpy as np
from scipy import stats
from scipy.spatial import distance
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    a, b = np.array(c["a"], dtype=float), np.array(c["b"], dtype=float)
    if c["kind"] == "numeric":
        ks = stats.ks_2samp(a, b)
        edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
        ra = np.histogram(a, edges)[0] / len(a)
        rb = np.histogram(b, edges)[0] / len(b)
        out.append({"ks": [float(ks.statistic), float(ks.pvalue)], "w1": float(stats.wasserstein_distance(a, b)),
                    "js": float(distance.jensenshannon(ra, rb)), "bins": len(edges) - 1})
    else:
        exp = a * (b.sum() / a.sum())
        ch = stats.chisquare(b, exp)
        out.append({"chi2": [float(ch.statistic), float(ch.pvalue)], "js": float(distance.jensenshannon(a / a.sum(), b / b.sum()))})
print(json.dumps(out))
"#;

#[tokio::test]
async fn statistics_agree_with_scipy() {
    let mut rng = Lcg(42);
    let mut sample = |n: usize, f: &mut dyn FnMut(&mut Lcg) -> f64| -> Vec<f64> {
        let mut v: Vec<f64> = (0..n).map(|_| f(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let numeric = [
        ("normal vs normal", sample(2000, &mut |r| r.normal(0.0, 1.0)), sample(2000, &mut |r| r.normal(0.0, 1.0))),
        (
            "shifted, unequal sizes",
            sample(1500, &mut |r| r.normal(0.0, 1.0)),
            sample(2500, &mut |r| r.normal(0.3, 1.0)),
        ),
        (
            "heavy tails (Cauchy)",
            sample(3000, &mut |r| (std::f64::consts::PI * (r.unit() - 0.5)).tan()),
            sample(2000, &mut |r| (std::f64::consts::PI * (r.unit() - 0.5)).tan() * 1.3),
        ),
        (
            "ties (rounded)",
            sample(800, &mut |r| r.normal(10.0, 2.0).round()),
            sample(1200, &mut |r| r.normal(10.4, 2.0).round()),
        ),
        ("small", sample(37, &mut |r| r.normal(0.0, 1.0)), sample(23, &mut |r| r.normal(0.8, 1.0))),
        ("the largest exact", sample(10_000, &mut |r| r.normal(0.0, 1.0)), sample(9_000, &mut |r| r.normal(0.05, 1.0))),
    ];
    let categorical: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("same shares", vec![500.0, 300.0, 200.0], vec![480.0, 320.0, 200.0]),
        ("a category grows", vec![500.0, 300.0, 200.0, 50.0], vec![400.0, 300.0, 200.0, 150.0]),
    ];
    let mut cases: Vec<Value> = numeric.iter().map(|(_, a, b)| json!({"kind": "numeric", "a": a, "b": b})).collect();
    cases.extend(categorical.iter().map(|(_, a, b)| json!({"kind": "categorical", "a": a, "b": b})));
    let dir = tempfile::tempdir().unwrap();
    let (input, script) = (dir.path().join("cases.json"), dir.path().join("oracle.py"));
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    std::fs::write(&script, ORACLE).unwrap();
    let out =
        tokio::process::Command::new(infra::python()).arg(&script).arg(&input).output().await.expect("python runs");
    assert!(out.status.success(), "scipy oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let close = |name: &str, what: &str, got: f64, want: f64| {
        eprintln!("{name:>24} {what:>10}: loom {got:.12e} scipy {want:.12e}");
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{name} {what}: loom {got} vs scipy {want}");
    };
    for ((name, a, b), w) in numeric.iter().zip(&want) {
        let ks = stats::ks(a, b, a.len() as u64, b.len() as u64);
        close(name, "ks D", ks.statistic, w["ks"][0].as_f64().unwrap());
        close(name, "ks p", ks.p_value, w["ks"][1].as_f64().unwrap());
        close(name, "w1", stats::ecdf_distances(a, b).1, w["w1"].as_f64().unwrap());
        let lo = a[0].min(b[0]);
        let hi = a[a.len() - 1].max(b[b.len() - 1]);
        let edges = stats::sturges_edges(lo, hi, (a.len() + b.len()) as u64);
        assert_eq!(edges.len() - 1, w["bins"].as_u64().unwrap() as usize, "{name}: Sturges bins");
        let ra: Vec<f64> = stats::histogram(a, 1.0, &edges).iter().map(|c| c / a.len() as f64).collect();
        let rb: Vec<f64> = stats::histogram(b, 1.0, &edges).iter().map(|c| c / b.len() as f64).collect();
        close(name, "js", stats::jensen_shannon(&ra, &rb), w["js"].as_f64().unwrap());
    }
    for ((name, a, b), w) in categorical.iter().zip(&want[numeric.len()..]) {
        let (s, p) = stats::chi2(a, b);
        close(name, "chi2", s.unwrap(), w["chi2"][0].as_f64().unwrap());
        close(name, "chi2 p", p, w["chi2"][1].as_f64().unwrap());
        close(name, "js", stats::jensen_shannon(a, b), w["js"].as_f64().unwrap());
    }
}

#[tokio::test]
async fn schema_compliance_is_counted_against_the_registry() {
    let node = LoomNode::start_ready("dq-schema", NodeOptions::default()).await;
    let spec = |subject: &str| {
        json!({"id": "s", "time": {"field": "/ts"}, "window": "1m", "schema": {"subject": subject},
               "fields": {"/lat": {"required": false}}})
    };
    let (s, e) = call(reqwest::Method::POST, &node, "/monitors", Some(spec("no.such-value"))).await;
    assert_eq!((s, e["code"].as_str()), (422, Some("unknown_subject")), "{e}");

    let schema = json!({"type": "object", "required": ["lat", "ts"],
        "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "ts": {"type": "string"}}});
    let resp = http()
        .post(node.url(8010, "/subjects/device.gps-value/versions"))
        .json(&json!({"schemaType": "JSON", "schema": schema.to_string()}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let (s, m) = call(reqwest::Method::POST, &node, "/monitors", Some(spec("device.gps-value"))).await;
    assert_eq!(s, 201, "{m}");
    let recs: Vec<Value> = (0..100)
        .map(|i| match i % 10 {
            0 => json!({"ts": iso(T0 + i * 100), "lat": 91.5}),
            1 => json!({"ts": iso(T0 + i * 100), "lat": "north"}),
            2 => json!({"ts": iso(T0 + i * 100)}),
            _ => json!({"ts": iso(T0 + i * 100), "lat": 48.1}),
        })
        .collect();
    let r = post_records(&node, "s", &recs).await;
    assert_eq!(r["accepted"].as_u64(), Some(100), "{r}");
    let (s, rep) = call(reqwest::Method::GET, &node, &format!("/monitors/s/report?from={}", iso(T0)), None).await;
    assert_eq!(s, 200, "{rep}");
    let w = &rep["windows"][0];
    assert_eq!((w["schema"]["checked"].as_u64(), w["schema"]["invalid"].as_u64()), (Some(100), Some(30)), "{w}");
    let v = &w["schema"]["violations"];
    assert_eq!((v["maximum at '/lat'"].as_u64(), v["type at '/lat'"].as_u64()), (Some(10), Some(10)), "{v}");
    assert_eq!(v["required at ''"].as_u64(), Some(10), "{v}");
    assert!((w["metrics"]["compliance"].as_f64().unwrap() - 0.7).abs() < 1e-12, "{w}");
}

#[tokio::test]
async fn a_kafka_source_across_two_nodes_and_a_kill_counts_every_record_once() {
    let topic = format!("{}.gps", kafka::prefix("dq"));
    let db = infra::fresh_postgres_database("quality_stream").await;
    let cookie = format!("quality-cookie-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| {
        member_options(&cookie, seeds)
            .env("LOOM_DATABASE_URL", &db)
            .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
            .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
            .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
    };
    let n1 = start_member("dqs1", opts(&[])).await;
    let n2 = start_member("dqs2", opts(&[&n1])).await;
    wait_up(&[&n1, &n2], &["dqs1", "dqs2"], Duration::from_secs(15)).await;
    let alert_topic = format!("{topic}.alerts");
    let mut spec = monitor();
    spec["source"] = json!({"topic": topic});
    spec["alerts"] = json!({"topic": alert_topic});
    let (s, m) = call(reqwest::Method::POST, &n2, "/monitors", Some(spec)).await;
    assert_eq!(s, 201, "{m}");

    let recs = records();
    let producer = kafka::client_producer();
    let count = |r: &Value| r["windows"].as_array().map_or(0, |w| w.iter().map(|w| w["count"].as_u64().unwrap()).sum());
    for (n, chunk) in recs.chunks(3000).enumerate() {
        let mut acks = Vec::new();
        for v in chunk {
            let (key, body) = (v["device"].as_str().unwrap().to_owned(), v.to_string());
            let record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).key(key.as_str()).payload(body.as_str());
            acks.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for a in acks {
            a.await.expect("delivered").expect("acknowledged");
        }
        if n == 0 {
            // both nodes hold partitions and have stored some windows; then n2 dies
            eventually("windows from both nodes' partitions", Duration::from_secs(120), || async {
                let r = report(&n1).await;
                let mut parts = 0;
                for n in [&n1, &n2] {
                    let text = http().get(n.url(DQ, "/metrics")).send().await.ok()?.text().await.ok()?;
                    let lines: Vec<&str> =
                        text.lines().filter(|l| l.starts_with("loom_quality_source_next_offset{")).collect();
                    parts += usize::from(!lines.is_empty());
                }
                (count(&r) >= 2000 && parts == 2).then_some(())
            })
            .await;
            n2.signal("KILL");
        }
    }
    let streamed = eventually("every record counted", Duration::from_secs(180), || async {
        let r = report(&n1).await;
        (count(&r) >= 6000).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let streamed_after = report(&n1).await;
    assert_eq!(count(&streamed_after), 6000, "nothing counted twice after the takeover");
    assert_eq!(streamed["windows"], streamed_after["windows"]);

    let data = tempfile::tempdir().unwrap();
    let solo =
        LoomNode::start_ready("dqs-solo", NodeOptions::default().env("LOOM_DATA_DIR", data.path().to_str().unwrap()))
            .await;
    call(reqwest::Method::POST, &solo, "/monitors", Some(monitor())).await;
    for chunk in recs.chunks(1000) {
        post_records(&solo, "gps", chunk).await;
    }
    let one = report(&solo).await;
    assert_eq!(strip(&streamed_after), strip(&one), "a stream across two nodes and a kill equals one node's REST run");
    assert_eq!(streamed_after["freshness"]["tracked"], one["freshness"]["tracked"]);

    // Alerts, evaluated by whichever node owns the monitor (n2 may have been it before the
    // kill): the shifted /speed is open, and no condition was ever opened twice in a row.
    let a = eventually("the drift of /speed is an open alert", Duration::from_secs(30), || async {
        let a = alerts_of(&n1, "gps").await;
        let open = a["open"].as_array()?.iter().any(|c| c["key"] == "drift||/speed");
        (open && a["pending"] == 0).then_some(a)
    })
    .await;
    let events = alert_events(&alert_topic).await;
    let mut last: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for e in &events {
        let (key, state) = (e["key"].as_str().unwrap().to_owned(), e["state"].as_str().unwrap().to_owned());
        let before = last.insert(key.clone(), state.clone());
        assert_ne!(before.as_deref(), Some(state.as_str()), "{key} {state} twice in a row: {events:?}");
    }
    assert_eq!(last.get("drift||/speed").map(String::as_str), Some("open"), "{a} {events:?}");
}

/// 100 records per window of `/s`; one null in 100, or in 5 for `spiked` windows.
fn null_windows(windows: std::ops::Range<i64>, spiked: &[i64]) -> Vec<Value> {
    let mut out = Vec::new();
    for w in windows {
        let every = if spiked.contains(&w) { 5 } else { 100 };
        for i in 0..100i64 {
            let s = if i % every == 0 { Value::Null } else { json!(i) };
            out.push(json!({"ts": iso(T0 + w * MIN + i * 100), "s": s, "device": "d1"}));
        }
    }
    out
}

async fn alerts_of(node: &LoomNode, id: &str) -> Value {
    let (s, a) = call(reqwest::Method::GET, node, &format!("/monitors/{id}/alerts"), None).await;
    assert_eq!(s, 200, "{a}");
    a
}

/// The check `check:data-quality/<id>` as 8030 reports it on `node`, if present.
async fn health_check(node: &LoomNode, id: &str) -> Option<Value> {
    let h: Value = http().get(node.url(8030, "/health/cluster")).send().await.ok()?.json().await.ok()?;
    h["checks"][format!("check:data-quality/{id}:{}", node.name)][0].as_object().map(|o| json!(o))
}

async fn alert_events(topic: &str) -> Vec<Value> {
    kafka::read_all(topic)
        .await
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).unwrap())
        .collect()
}

#[tokio::test]
async fn alerts_reach_the_health_aggregator_and_a_kafka_topic_once_per_condition() {
    let topic = format!("{}.quality.alerts", kafka::prefix("dqa"));
    let data = tempfile::tempdir().unwrap();
    let node = LoomNode::start_ready(
        "dq-alerts",
        NodeOptions::default()
            .env("LOOM_DATA_DIR", data.path().to_str().unwrap())
            .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers()),
    )
    .await;
    let id = "nulls";
    let spec = json!({"id": id, "time": {"field": "/ts"}, "window": "1m", "fields": {"/s": {}},
        "freshness": {"per": "/device", "max_gap": "1h"},
        "anomaly": {"metrics": ["null_rate:/s"], "method": "mad"},
        "alerts": {"health": true, "topic": topic}});
    let (s, m) = call(reqwest::Method::POST, &node, "/monitors", Some(spec)).await;
    assert_eq!(s, 201, "{m}");

    // 20 steady windows: evaluated (the check appears, passing) and nothing opens.
    post_records(&node, id, &null_windows(0..20, &[])).await;
    let check = eventually("the monitor's check on 8030", Duration::from_secs(20), || health_check(&node, id)).await;
    assert_eq!(check["status"], "pass", "{check}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = alerts_of(&node, id).await;
    assert_eq!(a["open"], json!([]), "20 unchanged windows raise nothing: {a}");
    assert_eq!(health_check(&node, id).await.unwrap()["status"], "pass");

    // A null rate jumping from 1 % to 20 % opens one condition, held without repeats.
    post_records(&node, id, &null_windows(20..21, &[20])).await;
    let a = eventually("the condition opens", Duration::from_secs(20), || async {
        let a = alerts_of(&node, id).await;
        (a["open"].as_array()?.len() == 1).then_some(a)
    })
    .await;
    assert_eq!(a["open"][0]["key"], "anomaly||null_rate:/s", "{a}");
    assert_eq!(a["open"][0]["window"], iso(T0 + 20 * MIN));
    let check = eventually("the check fails on 8030", Duration::from_secs(20), || async {
        health_check(&node, id).await.filter(|c| c["status"] == "fail")
    })
    .await;
    assert_eq!(check["observedValue"]["open"], 1, "{check}");
    let incident = eventually("an incident rooted in the check", Duration::from_secs(20), || async {
        let open: Value = http().get(node.url(8030, "/incidents?state=open")).send().await.ok()?.json().await.ok()?;
        open["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["roots"].as_array().is_some_and(|r| r.contains(&json!(format!("check:data-quality/{id}")))))
            .cloned()
    })
    .await;
    assert_eq!(incident["title"], format!("check data-quality/{id} failing"), "{incident}");
    let h: Value = http().get(node.url(8030, "/health/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "warn", "a data condition is not an outage: {h}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let events = alert_events(&topic).await;
    assert_eq!(events.len(), 1, "one event while the condition holds: {events:?}");
    assert_eq!((events[0]["state"].as_str(), events[0]["key"].as_str()), (Some("open"), Some("anomaly||null_rate:/s")));

    // Back to normal: resolved once, the incident closes and the check passes.
    post_records(&node, id, &null_windows(21..22, &[])).await;
    eventually("the condition resolves", Duration::from_secs(20), || async {
        let a = alerts_of(&node, id).await;
        (a["open"] == json!([]) && a["pending"] == 0).then_some(())
    })
    .await;
    let events = eventually("the resolution on the topic", Duration::from_secs(20), || async {
        let e = alert_events(&topic).await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    let states: Vec<&str> = events.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["open", "resolved"]);
    assert_eq!(events[0]["opened_at"], events[1]["opened_at"]);
    assert_ne!(events[0]["id"], events[1]["id"]);
    eventually("the incident resolves", Duration::from_secs(20), || async {
        let one: Value = http()
            .get(node.url(8030, &format!("/incidents/{}", incident["id"].as_str()?)))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (one["state"] == "resolved").then_some(())
    })
    .await;
    assert_eq!(health_check(&node, id).await.unwrap()["status"], "pass");

    // Bad alert sections are refused by field; deleting the monitor withdraws its check.
    let (s, e) = call(
        reqwest::Method::POST,
        &node,
        "/monitors",
        Some(json!({"id": "bad", "window": "1m", "alerts": {"topic": "no spaces"}})),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (422, Some("invalid_monitor")), "{e}");
    let (s, _) = call(reqwest::Method::DELETE, &node, &format!("/monitors/{id}"), None).await;
    assert_eq!(s, 204);
    eventually("the check is withdrawn", Duration::from_secs(20), || async {
        health_check(&node, id).await.is_none().then_some(())
    })
    .await;
}
