//! The Time Series Aggregator over real sockets, real stores and the real broker:
//!
//! - a REST-fed job's final windows equal a brute-force model computed here (count, sum, min,
//!   max exact; avg and stddev to 1e-9; p95 within DDSketch's 1 %); late, unusable and
//!   refused events are reported; the same events posted as 5 batches (one twice) give the same
//!   table; the live WebSocket feed sends a snapshot and then the results as they are made;
//! - three nodes on a shared PostgreSQL aggregate a 6-partition topic of 50,000 events with up
//!   to 20 s of disorder and 1 % beyond the lateness, one node killed -9 mid-stream: the final
//!   windows in the job's PostgreSQL table and in its Kafka topic equal the model, every late
//!   record is in the late topic. Duplicate Kafka records after the kill are counted and printed.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use loom_kafka::admin::ensure_topics;
use loom_kafka::rdkafka::producer::FutureRecord;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/kafka.rs"]
mod kafka;

use kafka::{client_producer, kafka_section, prefix, read_all};

const TS: u16 = 8020;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

async fn call(method: reqwest::Method, node: &LoomNode, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(TS, path));
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

fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis()
}

/// A deterministic pseudo-random sequence (no dependency on a RNG crate's stream).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The brute-force model: per (device, minute) the values.
fn model(events: &[(String, i64, f64)]) -> BTreeMap<(String, i64), Vec<f64>> {
    let mut m: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for (d, ts, v) in events {
        m.entry((d.clone(), ts - ts.rem_euclid(60_000))).or_default().push(*v);
    }
    m
}

fn job(id: &str) -> Value {
    json!({"id": id, "time": {"field": "/ts"}, "key": ["/device"],
           "window": {"type": "tumbling", "size": "1m"},
           "aggregates": [{"name": "n", "fn": "count"}, {"name": "sum", "fn": "sum", "field": "/value"},
                          {"name": "min", "fn": "min", "field": "/value"}, {"name": "max", "fn": "max", "field": "/value"},
                          {"name": "avg", "fn": "avg", "field": "/value"}, {"name": "sd", "fn": "stddev", "field": "/value"},
                          {"name": "p95", "fn": "percentile", "q": 0.95, "field": "/value"}],
           "allowed_lateness": "30s", "idle_timeout": "5s", "emit": "final"})
}

/// Checks one result's values against the model's values of its window; `Err` says why not.
fn check(values: &Value, count: i64, xs: &[f64]) -> Result<(), String> {
    let n = xs.len();
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let sum: f64 = xs.iter().sum();
    let mean = sum / n as f64;
    let sd =
        if n > 1 { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { f64::NAN };
    let f = |k: &str| values[k].as_f64();
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
    if count != n as i64 || values["n"].as_i64() != Some(n as i64) {
        return Err(format!("count {count} vs {n}"));
    }
    if f("sum") != Some(sum) || f("min") != Some(sorted[0]) || f("max") != Some(sorted[n - 1]) {
        return Err(format!("sum/min/max {values} vs {sum} {} {}", sorted[0], sorted[n - 1]));
    }
    if !close(f("avg"), mean) || (n > 1 && !close(f("sd"), sd)) {
        return Err(format!("avg/sd {values} vs {mean} {sd}"));
    }
    // DDSketch: the value at rank floor(q (n - 1)) within 1 % relative error.
    let rank = (0.95 * (n - 1) as f64).floor() as usize;
    let p = f("p95").ok_or("no p95")?;
    let (lo, hi) = (sorted[rank.saturating_sub(1)], sorted[(rank + 1).min(n - 1)]);
    if p < lo.min(lo * 0.99) - 1e-9 || p > hi.max(hi * 1.01) + 1e-9 {
        return Err(format!("p95 {p} not within 1 % of {}", sorted[rank]));
    }
    Ok(())
}

#[tokio::test]
async fn rest_fed_windows_equal_the_model_batches_are_idempotent_and_the_feed_is_live() {
    let node = LoomNode::start_ready("ts-rest", NodeOptions::default()).await;

    // Invalid specs name their field; Kafka and PostgreSQL sinks need what they need.
    for (patch, field) in [
        (json!({"window": {"type": "hopping", "size": "1m", "slide": "2m"}}), "window.slide"),
        (json!({"window": {"type": "tumbling", "size": "0s"}}), "window.size"),
        (json!({"aggregates": [{"name": "p", "fn": "percentile", "field": "/v"}]}), "aggregates[0].q"),
    ] {
        let mut spec = job("bad");
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (s, e) = call(reqwest::Method::POST, &node, "/jobs", Some(spec)).await;
        assert_eq!((s, e["code"].as_str()), (422, Some("invalid_job")), "{e}");
        assert!(e["detail"].as_str().unwrap().contains(field), "{field}: {e}");
    }
    let mut with_kafka = job("k");
    with_kafka["sinks"] = json!([{"kafka": {"topic": "out"}}]);
    let (s, e) = call(reqwest::Method::POST, &node, "/jobs", Some(with_kafka)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("kafka_not_configured")), "{e}");
    let mut with_pg = job("p");
    with_pg["sinks"] = json!([{"postgres": {"table": "temp_1m"}}]);
    let (s, e) = call(reqwest::Method::POST, &node, "/jobs", Some(with_pg)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("postgres_not_configured")), "{e}");

    let (s, v) = call(reqwest::Method::POST, &node, "/jobs", Some(job("stream"))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(reqwest::Method::POST, &node, "/jobs", Some(job("batch"))).await;
    assert_eq!(s, 201, "{v}");

    // The live feed: a snapshot first, then results as windows close.
    let url = format!("ws://{}:{TS}/ws/jobs/stream?final=true", node.address.ip);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket");
    let first = ws.next().await.unwrap().unwrap();
    let snapshot: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");

    // 20 minutes of 4 devices, values in quarters (sums exact), up to 20 s of disorder.
    let mut rng = Lcg(42);
    let mut events: Vec<(String, i64, f64)> = Vec::new();
    for s in 0..1200 {
        for d in 0..4 {
            let v = (rng.below(400) as f64) / 4.0 - 20.0;
            events.push((format!("d{d}"), T0 + s * 1000 + rng.below(1000) as i64, v));
        }
    }
    let expected = model(&events);
    let mut arrival: Vec<(i64, usize)> =
        events.iter().enumerate().map(|(i, e)| (e.1 + rng.below(20_000) as i64, i)).collect();
    arrival.sort();
    let as_json = |i: usize| json!({"device": events[i].0, "ts": iso(events[i].1), "value": events[i].2});
    let ordered: Vec<Value> = arrival.iter().map(|(_, i)| as_json(*i)).collect();
    let mut late = 0;
    for chunk in ordered.chunks(700) {
        let (s, r) = call(reqwest::Method::POST, &node, "/jobs/stream/events", Some(json!({"events": chunk}))).await;
        assert_eq!(s, 200, "{r}");
        late += r["late"].as_array().unwrap().len();
        assert!(r["rejected"].as_array().unwrap().is_empty(), "{r}");
    }
    assert_eq!(late, 0, "20 s of disorder is within the 30 s lateness");
    // Bad events: reported by index with a reason, never dropped silently; one late event.
    let bad = json!({"events": [
        {"device": "d0", "value": 1},
        {"device": "d0", "ts": "soon", "value": 1},
        {"device": "d0", "ts": iso(T0), "value": "NaN"},
        {"ts": iso(T0), "value": 1},
        {"device": "d0", "ts": "2999-01-01T00:00:00Z", "value": 1},
        {"device": "d0", "ts": iso(T0 + 5_000), "value": 1},
        [1, 2],
    ]});
    let (s, r) = call(reqwest::Method::POST, &node, "/jobs/stream/events", Some(bad)).await;
    assert_eq!(s, 200, "{r}");
    let codes: Vec<&str> = r["rejected"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["missing_time", "invalid_time", "not_numeric", "missing_key", "future_time", "not_an_object"]);
    assert_eq!(r["late"][0]["index"], 5, "{r}");
    assert_eq!(r["late"][0]["window_start"], iso(T0), "{r}");
    let (s, e) =
        call(reqwest::Method::POST, &node, "/jobs/stream/events", Some(json!({"events": vec![json!({}); 10_001]})))
            .await;
    assert_eq!((s, e["code"].as_str()), (413, Some("too_many_events")), "{e}");
    let (s, e) = call(reqwest::Method::POST, &node, "/jobs/nope/events", Some(json!({"events": []}))).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("not_found")), "{e}");
    // Closing events push the watermark past the last window + lateness.
    let closing: Vec<Value> =
        (0..4).map(|d| json!({"device": format!("d{d}"), "ts": iso(T0 + 30 * 60_000), "value": 0})).collect();
    call(reqwest::Method::POST, &node, "/jobs/stream/events", Some(json!({"events": closing}))).await;

    let window_query =
        format!("/jobs/stream/windows?final=true&from={}&to={}&limit=10000", iso(T0), iso(T0 + 20 * 60_000));
    let (s, got) = call(reqwest::Method::GET, &node, &window_query, None).await;
    assert_eq!(s, 200, "{got}");
    let rows = got["windows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "one final window per device and minute");
    for w in rows {
        let key = (w["key"]["device"].as_str().unwrap().to_owned(), ms(&w["window_start"]));
        let xs = expected.get(&key).unwrap_or_else(|| panic!("unexpected window {w}"));
        check(&w["values"], w["count"].as_i64().unwrap(), xs).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!((w["version"].as_i64(), w["final"].as_bool()), (Some(1), Some(true)), "{w}");
    }

    // The feed delivered the finals as they closed, with growing sequence numbers.
    let mut seen = 0;
    let mut last_seq = 0;
    while seen < expected.len() {
        let msg =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a result in time").unwrap().unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["type"], "result", "{v}");
        assert!(v["seq"].as_u64().unwrap() > last_seq);
        last_seq = v["seq"].as_u64().unwrap();
        assert_eq!(v["result"]["final"], true);
        seen += 1;
    }
    ws.send(Message::Close(None)).await.ok();
    // A client that reconnects with the last sequence it saw gets what it missed, not a snapshot.
    let url = format!("ws://{}:{TS}/ws/jobs/stream?final=true&since={}", node.address.ip, last_seq - 3);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket");
    let first: Value = serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "resume", "{first}");
    assert_eq!(first["results"].as_array().unwrap().len(), 3, "{first}");
    ws.send(Message::Close(None)).await.ok();

    // The same events as 5 batches, one of them posted twice, NDJSON for one: the same table.
    let batches: Vec<Vec<Value>> = ordered.chunks(ordered.len() / 5 + 1).map(<[Value]>::to_vec).collect();
    assert_eq!(batches.len(), 5);
    for (i, b) in batches.iter().enumerate() {
        let (s, r) = if i == 2 {
            let body: String = b.iter().map(|e| format!("{e}\n")).collect();
            let resp = http()
                .post(node.url(TS, "/jobs/batch/batch"))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        } else {
            call(reqwest::Method::POST, &node, "/jobs/batch/batch", Some(json!({"events": b}))).await
        };
        assert_eq!(s, 200, "{r}");
    }
    let (s, again) = call(reqwest::Method::POST, &node, "/jobs/batch/batch", Some(json!({"events": batches[1]}))).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["windows_updated"], 0, "a repeated batch changes nothing: {again}");
    let (_, b) = call(reqwest::Method::GET, &node, &window_query.replace("/stream/", "/batch/"), None).await;
    let strip = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["key"].clone(), w["window_start"].clone(), w["count"].clone(), w["values"].clone()))
            .collect()
    };
    let (batch_rows, stream_rows) = (strip(&b), strip(&got));
    assert_eq!(batch_rows.len(), stream_rows.len());
    for (x, y) in batch_rows.iter().zip(&stream_rows) {
        assert_eq!((&x.0, &x.1, &x.2), (&y.0, &y.1, &y.2));
        for k in ["n", "sum", "min", "max", "p95"] {
            assert_eq!(x.3[k], y.3[k], "{k} of {:?}", x.1);
        }
        for k in ["avg", "sd"] {
            let (a, b) = (x.3[k].as_f64().unwrap(), y.3[k].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{k}: {a} vs {b}");
        }
    }

    // Stats say what happened.
    let (_, st) = call(reqwest::Method::GET, &node, "/jobs/stream/stats", None).await;
    assert_eq!(st["node"]["late"], 1, "{st}");
    assert_eq!(st["node"]["dead_lettered"], 6, "{st}");
    // Deleting a job removes it and its results.
    let (s, _) = call(reqwest::Method::DELETE, &node, "/jobs/batch", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(reqwest::Method::GET, &node, "/jobs/batch/windows", None).await;
    assert_eq!(s, 404);
}

fn kafka_env(options: NodeOptions) -> NodeOptions {
    options
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
}

#[tokio::test]
async fn three_nodes_aggregate_a_topic_through_a_kill_and_match_the_model() {
    let p = prefix("ts");
    let (source, out, late_topic) = (format!("{p}.in"), format!("{p}.agg"), format!("{p}.late"));
    ensure_topics(&kafka_section(), &[&source], 6).await.unwrap();
    let db = infra::fresh_postgres_database("timeseries").await;
    let cookie = format!("timeseries-cookie-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| kafka_env(member_options(&cookie, seeds)).env("LOOM_DATABASE_URL", &db);
    let n1 = start_member("ts1", opts(&[])).await;
    let n2 = start_member("ts2", opts(&[&n1])).await;
    let n3 = start_member("ts3", opts(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["ts1", "ts2", "ts3"], Duration::from_secs(15)).await;
    let table = format!("agg_{}", std::process::id());
    let mut spec = job("kafka");
    spec["source"] = json!({"topic": source});
    spec["late_topic"] = json!(late_topic);
    spec["sinks"] = json!([{"kafka": {"topic": out}}, {"postgres": {"table": table}}]);
    let (s, v) = call(reqwest::Method::POST, &n2, "/jobs", Some(spec)).await;
    assert_eq!(s, 201, "{v}");
    // Every node runs the job (one truth): its consumer group spreads the 6 partitions.
    for n in [&n1, &n2, &n3] {
        eventually("the job on every node", Duration::from_secs(10), || async {
            let (s, _) = call(reqwest::Method::GET, n, "/jobs/kafka", None).await;
            (s == 200).then_some(())
        })
        .await;
    }

    // A REST-fed job is one job cluster-wide: events posted to any node run on its owner.
    let (s, v) = call(reqwest::Method::POST, &n3, "/jobs", Some(job("rest"))).await;
    assert_eq!(s, 201, "{v}");
    let mut rng = Lcg(11);
    let rest_events: Vec<(String, i64, f64)> =
        (0..1500).map(|i| (format!("r{}", i % 3), T0 + i * 200, rng.below(100) as f64 / 2.0)).collect();
    let rest_model = model(&rest_events);
    let nodes = [&n1, &n2, &n3];
    for (i, chunk) in rest_events.chunks(100).enumerate() {
        let body: Vec<Value> =
            chunk.iter().map(|(d, ts, v)| json!({"device": d, "ts": iso(*ts), "value": v})).collect();
        let node = nodes[i % 3];
        let (s, r) = eventually("the job known on the node", Duration::from_secs(10), || async {
            let (s, r) = call(reqwest::Method::POST, node, "/jobs/rest/events", Some(json!({"events": body}))).await;
            (s != 404).then_some((s, r))
        })
        .await;
        assert_eq!(s, 200, "{r}");
    }
    let closing: Vec<Value> =
        (0..3).map(|d| json!({"device": format!("r{d}"), "ts": iso(T0 + 3_600_000), "value": 0})).collect();
    call(reqwest::Method::POST, &n2, "/jobs/rest/events", Some(json!({"events": closing}))).await;
    let (_, got) =
        call(reqwest::Method::GET, &n1, &format!("/jobs/rest/windows?final=true&to={}", iso(T0 + 3_000_000)), None)
            .await;
    let rows = got["windows"].as_array().unwrap();
    assert_eq!(rows.len(), rest_model.len(), "{got}");
    for w in rows {
        let key = (w["key"]["device"].as_str().unwrap().to_owned(), ms(&w["window_start"]));
        check(&w["values"], w["count"].as_i64().unwrap(), &rest_model[&key])
            .unwrap_or_else(|e| panic!("rest {key:?}: {e}"));
    }

    // 50,000 events: 20 devices over 50 minutes, up to 20 s of disorder per device stream,
    // then 1 % (500) far older than the lateness, then one closing event per device.
    let mut rng = Lcg(7);
    let devices = 20;
    let mut events: Vec<(String, i64, f64)> = Vec::new();
    for i in 0..49_500 {
        let d = i % devices;
        let ts = T0 + (i as i64) * 50 * 60_000 / 49_500 + rng.below(1000) as i64;
        events.push((format!("dev{d}"), ts, rng.below(4000) as f64 / 4.0));
    }
    let expected = model(&events);
    let mut arrival: Vec<(i64, usize)> =
        events.iter().enumerate().map(|(i, e)| (e.1 + rng.below(20_000) as i64, i)).collect();
    arrival.sort();
    let mut payloads: Vec<(String, Value)> = arrival
        .iter()
        .map(|(_, i)| {
            let (d, ts, v) = &events[*i];
            (d.clone(), json!({"device": d, "ts": iso(*ts), "value": v}))
        })
        .collect();
    for j in 0..500 {
        let d = format!("dev{}", j % devices);
        let ts = T0 + rng.below(45 * 60_000) as i64;
        payloads.push((d.clone(), json!({"device": d, "ts": iso(ts), "value": 1.0, "late_id": j})));
    }
    for d in 0..devices {
        payloads
            .push((format!("dev{d}"), json!({"device": format!("dev{d}"), "ts": iso(T0 + 60 * 60_000), "value": 0})));
    }
    let producer = client_producer();
    let mut killed = false;
    for (i, chunk) in payloads.chunks(5000).enumerate() {
        let mut acks = Vec::new();
        for (key, v) in chunk {
            let body = v.to_string();
            let record: FutureRecord<'_, str, str> = FutureRecord::to(&source).key(key.as_str()).payload(body.as_str());
            acks.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for a in acks {
            a.await.expect("delivered").expect("acknowledged");
        }
        if i == 3 && !killed {
            // Kill a node once results are being committed.
            eventually("results committed before the kill", Duration::from_secs(120), || async {
                let (_, st) = call(reqwest::Method::GET, &n1, "/jobs/kafka/stats", None).await;
                let committed = st["checkpoints"].as_array()?.len();
                (committed >= 3).then_some(())
            })
            .await;
            n3.signal("KILL");
            killed = true;
        }
    }

    // The PostgreSQL table: one final row per (device, minute) below the closing events.
    let conn = Database::connect(db.as_str()).await.expect("postgres");
    let rows = eventually("every final window in the PostgreSQL table", Duration::from_secs(180), || async {
        let sql = format!(
            "SELECT key->>'device' AS d, (extract(epoch from window_start) * 1000)::bigint AS s, \"values\"::text AS v, count, version, final \
             FROM {table} WHERE final AND window_start < to_timestamp({} / 1000.0)",
            T0 + 50 * 60_000 + 60_000
        );
        let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.ok()?;
        (rows.len() >= expected.len()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), expected.len(), "no window missing or extra in the table");
    for r in &rows {
        let d: String = r.try_get("", "d").unwrap();
        let s: i64 = r.try_get("", "s").unwrap();
        let v: String = r.try_get("", "v").unwrap();
        let count: i64 = r.try_get("", "count").unwrap();
        let xs = expected.get(&(d.clone(), s)).unwrap_or_else(|| panic!("unexpected window {d} {s}"));
        check(&serde_json::from_str(&v).unwrap(), count, xs).unwrap_or_else(|e| panic!("table {d} {}: {e}", iso(s)));
    }

    // The Kafka topic: every final window equals the model; copies of one are identical.
    let records = read_all(&out).await;
    let mut finals: HashMap<(String, i64), Vec<Value>> = HashMap::new();
    for r in &records {
        let v: Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
        if v["final"] == true && ms(&v["window_start"]) < T0 + 51 * 60_000 {
            finals
                .entry((v["key"]["device"].as_str().unwrap().to_owned(), ms(&v["window_start"])))
                .or_default()
                .push(v);
        }
    }
    assert_eq!(finals.len(), expected.len(), "every final window in Kafka");
    let mut duplicates = 0;
    for (k, copies) in &finals {
        let xs = &expected[k];
        check(&copies[0]["values"], copies[0]["count"].as_i64().unwrap(), xs)
            .unwrap_or_else(|e| panic!("kafka {k:?}: {e}"));
        assert!(copies.iter().all(|c| c == &copies[0]), "copies of {k:?} differ: {copies:?}");
        duplicates += copies.len() - 1;
    }
    // Every late record is in the late topic with its headers.
    let late = read_all(&late_topic).await;
    let ids: std::collections::BTreeSet<i64> = late
        .iter()
        .filter(|r| kafka::header(r, "loom.late.window").is_some() && kafka::header(r, "loom.late.watermark").is_some())
        .filter_map(|r| serde_json::from_slice::<Value>(r.payload.as_ref()?).ok()?["late_id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 500, "every late record in the late topic");
    eprintln!(
        "timeseries through kill -9: {} windows match the model in PostgreSQL and Kafka; {} duplicate final Kafka records (identical copies), {} late records",
        expected.len(),
        duplicates,
        late.len()
    );
}
