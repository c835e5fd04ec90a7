//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=<target>/release/loom cargo
//! bench -p loom-tests --bench quality`): the Data Quality Monitor side by side with a baseline
//! in the same run, over the same records (10 watched fields: 6 numbers, 3 categories, one
//! sometimes null; 2,000 devices; 1-minute windows):
//!
//! 1. The pure core: parse each record's JSON text and `ingest::absorb` it into its window
//!    profile, against a loop that only parses the same texts with `serde_json`.
//! 2. Through the service: `POST /monitors/{id}/records` batches of 10,000 to a node (HTTP, JSON,
//!    the keyed call to the monitor's owner, its `IngestActor`, the windows merged into SQLite
//!    in one transaction before the answer), against a bare axum handler in this process that
//!    takes the same body, parses it and counts the records.
//! 3. Sketch merge cost per window: merging full 1-minute profiles (10 fields, 3,000 records
//!    each), and a profile's stored size.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use axum::Router;
use axum::routing::post;
use loom_data_quality::ingest::{Batch, Freshness, absorb};
use loom_data_quality::monitor::{Monitor, MonitorSpec};
use loom_data_quality::profile::WindowProfile;
use loom_testkit::{LoomNode, NodeOptions};
use serde_json::{Value, json};

const CORE_RECORDS: usize = 300_000;
const REST_RECORDS: usize = 100_000;
const BATCH: usize = 10_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

fn record(i: usize) -> Value {
    let j = i as f64;
    json!({"ts": T0 + (i as i64) * 20, "device": format!("d{}", i % 2000),
           "lat": 48.0 + (j * 0.37).sin(), "lon": 11.0 + (j * 0.11).cos(), "speed": (i % 130) as f64 * 0.9,
           "battery": (i % 100) as f64, "temp": 20.0 + (j * 0.01).sin() * 5.0, "alt": (i % 900) as f64,
           "platform": (["ios", "android", "web"][i % 3]), "fw": format!("1.{}", i % 7),
           "status": (if i.is_multiple_of(50) { Value::Null } else { json!(["ok", "warn", "fail"][i % 3]) })})
}

fn spec() -> Value {
    json!({"id": "bench", "time": {"field": "/ts", "format": "epoch_ms"}, "window": "1m",
           "fields": {"/lat": {"required": true, "range": [-90, 90]}, "/lon": {"required": true, "range": [-180, 180]},
                      "/speed": {}, "/battery": {"range": [0, 100]}, "/temp": {}, "/alt": {}, "/platform": {},
                      "/fw": {}, "/status": {"enum": ["ok", "warn", "fail"]}, "/device": {}}})
}

fn ratio_line(name: &str, loom: f64, base: f64, base_name: &str) -> String {
    format!("{name}: {loom:.0} records/s vs {base_name} {base:.0}/s — ratio {:.2}\n", loom / base)
}

fn monitor() -> Monitor {
    Monitor::compile(serde_json::from_value::<MonitorSpec>(spec()).unwrap(), 1).unwrap()
}

/// Records/s of parse + absorb, and of the parse-only loop: three alternating rounds each
/// (so neither side runs only on a cold allocator), the best round of each side.
fn core(texts: &[String]) -> (f64, f64) {
    let m = monitor();
    let (mut loom, mut base) = (0f64, 0f64);
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0usize;
        for s in texts {
            let v: Value = serde_json::from_str(s).unwrap();
            n += usize::from(v.is_object());
        }
        assert_eq!(n, texts.len());
        base = base.max(texts.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (mut fresh, mut batch) = (Freshness::default(), Batch::default());
        for chunk in texts.chunks(BATCH) {
            let recs: Vec<(Value, Option<i64>)> =
                chunk.iter().map(|s| (serde_json::from_str(s).unwrap(), None)).collect();
            absorb(&m, None, &recs, T0, &mut fresh, &mut batch);
        }
        assert_eq!(batch.accepted as usize, texts.len());
        loom = loom.max(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    (loom, base)
}

async fn bare_handler(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let n = body["records"].as_array().map_or(0, |r| r.iter().filter(|x| x.is_object()).count());
    axum::Json(json!({"accepted": n, "refused": 0}))
}

async fn post_all(url: &str, batches: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let t = Instant::now();
    for b in batches {
        let resp = client.post(url).header("content-type", "application/json").body(b.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["accepted"].as_u64(), Some(BATCH as u64), "{v}");
    }
    (batches.len() * BATCH) as f64 / t.elapsed().as_secs_f64()
}

fn merges() -> (f64, usize) {
    let m = monitor();
    let windows: Vec<WindowProfile> = (0..20)
        .map(|w| {
            let recs: Vec<(Value, Option<i64>)> = (0..3000).map(|i| (record(w * 3000 + i), None)).collect();
            let (mut fresh, mut batch) = (Freshness::default(), Batch::default());
            absorb(&m, None, &recs, T0, &mut fresh, &mut batch);
            batch.windows.into_values().next().unwrap()
        })
        .collect();
    let bytes = windows[0].to_bytes().len();
    let t = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        let mut acc = WindowProfile::default();
        for w in &windows {
            acc.merge(w);
        }
        assert_eq!(acc.count, 60_000);
    }
    (t.elapsed().as_secs_f64() * 1e6 / (rounds * windows.len()) as f64, bytes)
}

#[tokio::main]
async fn main() {
    let texts: Vec<String> = (0..CORE_RECORDS).map(|i| record(i).to_string()).collect();
    let mut out = String::new();
    let (loom, base) = core(&texts);
    out.push_str(&format!("1. pure core, {CORE_RECORDS} records, 10 watched fields, one thread\n"));
    out.push_str(&ratio_line("   parse + absorb", loom, base, "parse-only loop"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/records", listener.local_addr().unwrap());
    tokio::spawn(
        async move { axum::serve(listener, Router::new().route("/records", post(bare_handler))).await.unwrap() },
    );
    let node = LoomNode::start_ready("bench-quality", NodeOptions::default()).await;
    let client = reqwest::Client::new();
    let resp = client.post(node.url(8031, "/monitors")).json(&spec()).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
    let batches: Vec<String> = (0..REST_RECORDS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| json!({"records": c.iter().map(|&i| record(i)).collect::<Vec<_>>()}).to_string())
        .collect();
    let bare = post_all(&bare_url, &batches).await;
    let loom = post_all(&node.url(8031, "/monitors/bench/records"), &batches).await;
    out.push_str(&format!(
        "2. POST /monitors/{{id}}/records, {REST_RECORDS} records in batches of {BATCH}, one client\n"
    ));
    out.push_str(&ratio_line("   loom node", loom, bare, "bare axum parse + count"));

    let (us, bytes) = merges();
    out.push_str(&format!(
        "3. merging a 1-minute window profile (10 fields, 3000 records): {us:.1} µs per merge; {bytes} bytes stored\n"
    ));
    print!("{out}");
}
