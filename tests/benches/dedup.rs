//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=<target>/release/loom cargo
//! bench -p loom-tests --bench dedup`): the Data Deduplication exact tier, each side by side
//! with a baseline in the same run, over the same events (1,000 devices, a sequence number
//! each, one event in seven a resend of an earlier one, so ≈ 14 % duplicates):
//!
//! 1. The pure core: `features::prepare` + `Engine::check` (identity hash, window, expiry,
//!    stats) per event, against a plain `HashSet<(String, u64)>` insert loop that reads the same
//!    two fields from the same parsed JSON.
//! 2. Through the service: `POST /check` batches of 10,000 to a node (HTTP, JSON, the keyed call
//!    to the policy's owner, its `RestActor`, the checkpoint in SQLite before the answer),
//!    against a bare axum handler in this process that takes the same body and answers the same
//!    verdict array from a `HashSet` — what HTTP + JSON alone cost.
//! 3. The Redis store (`"store": "redis"`: `SET NX PX` per key, pipelined per batch) through the
//!    node, against the same pipelined `SET NX PX` loop sent by this process's own Redis client.

#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::routing::post;
use loom_dedup::engine::{Engine, Kind, Origin};
use loom_dedup::features;
use loom_dedup::policy::{Policy, PolicySpec};
use loom_testkit::{LoomNode, NodeOptions, infra};
use serde_json::{Value, json};

const CORE_EVENTS: usize = 1_000_000;
const REST_EVENTS: usize = 200_000;
const BATCH: usize = 10_000;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

/// Event `i`: every seventh is a resend of the event 500 before it.
fn event(i: usize) -> Value {
    let j = if i % 7 == 6 && i >= 500 { i - 500 } else { i };
    json!({"device": format!("d{}", j % 1000), "seq": j / 1000, "ts": T0 + j as i64, "value": (j % 97) as f64})
}

fn policy_json(id: &str, store: &str) -> Value {
    json!({"id": id, "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10m"}, "store": store})
}

fn ratio_line(name: &str, loom: f64, base: f64, base_name: &str) -> String {
    format!("{name}: {loom:.0} checks/s vs {base_name} {base:.0}/s — ratio {:.2}\n", loom / base)
}

fn core(events: &[Value]) -> (f64, f64, usize) {
    let spec: PolicySpec = serde_json::from_value(policy_json("bench", "memory")).unwrap();
    let policy = Arc::new(Policy::compile(spec, 1).unwrap());
    let mut engine = Engine::new(policy.clone());
    let t = Instant::now();
    let mut dups = 0;
    for (i, ev) in events.iter().enumerate() {
        let input = features::prepare(&policy, ev, None, T0).unwrap();
        let out = engine.check(&input, Origin::Id { id: format!("rest:{i}") }, None, true);
        dups += usize::from(out.verdict.is_some_and(|v| v.verdict != Kind::Unique));
    }
    let loom = events.len() as f64 / t.elapsed().as_secs_f64();

    let mut set: HashSet<(String, u64)> = HashSet::new();
    let t = Instant::now();
    let mut base_dups = 0;
    for ev in events {
        let key = (ev["device"].as_str().unwrap().to_owned(), ev["seq"].as_u64().unwrap());
        base_dups += usize::from(!set.insert(key));
    }
    let base = events.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(dups, base_dups, "the engine and the HashSet agree on the duplicates");
    (loom, base, dups)
}

async fn bare_handler(
    axum::extract::State(set): axum::extract::State<Arc<Mutex<HashSet<(String, u64)>>>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let mut set = set.lock().unwrap();
    let results: Vec<Value> = events
        .iter()
        .map(|ev| {
            let key = (ev["device"].as_str().unwrap_or("").to_owned(), ev["seq"].as_u64().unwrap_or(0));
            json!({"verdict": if set.insert(key) { "unique" } else { "duplicate" }, "rule": "exact"})
        })
        .collect();
    axum::Json(json!({"policy": body["policy"], "results": results}))
}

/// Posts every batch in order; returns checks/s and the duplicates counted.
async fn post_all(url: &str, policy: &str, batches: &[String]) -> (f64, usize) {
    let client = reqwest::Client::new();
    let t = Instant::now();
    let mut dups = 0;
    for b in batches {
        let resp = client.post(url).header("content-type", "application/json").body(b.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{policy}");
        let v: Value = resp.json().await.unwrap();
        dups += v["results"].as_array().unwrap().iter().filter(|r| r["verdict"] != "unique").count();
    }
    ((batches.len() * BATCH) as f64 / t.elapsed().as_secs_f64(), dups)
}

fn batches(policy: &str, events: &[Value]) -> Vec<String> {
    events.chunks(BATCH).map(|c| json!({"policy": policy, "events": c}).to_string()).collect()
}

async fn redis_baseline(events: &[Value]) -> (f64, usize) {
    let client = redis::Client::open(infra::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = format!("bench:dd:{}:", std::process::id());
    let t = Instant::now();
    let mut dups = 0;
    for chunk in events.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for ev in chunk {
            let key = format!("{prefix}{}:{}", ev["device"].as_str().unwrap(), ev["seq"]);
            pipe.cmd("SET").arg(key).arg(1).arg("NX").arg("PX").arg(600_000);
        }
        let answers: Vec<Option<String>> = pipe.query_async(&mut con).await.unwrap();
        dups += answers.iter().filter(|a| a.is_none()).count();
    }
    let rate = events.len() as f64 / t.elapsed().as_secs_f64();
    let _: () = redis::cmd("EVAL")
        .arg("for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    (rate, dups)
}

#[tokio::main]
async fn main() {
    let events: Vec<Value> = (0..CORE_EVENTS).map(event).collect();
    let mut out = String::new();

    let (loom, base, dups) = core(&events);
    out.push_str(&format!("1. pure core, {CORE_EVENTS} events ({dups} duplicates), one thread\n"));
    out.push_str(&ratio_line("   engine (prepare + check)", loom, base, "HashSet insert loop"));

    let rest_events = &events[..REST_EVENTS];
    let set: Arc<Mutex<HashSet<(String, u64)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/check", listener.local_addr().unwrap());
    let router = Router::new().route("/check", post(bare_handler)).with_state(set);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let options = NodeOptions::default().env("LOOM_REDIS_URL", infra::redis_url());
    let node = LoomNode::start_ready("bench-dedup", options).await;
    let client = reqwest::Client::new();
    for (id, store) in [("mem", "memory"), ("red", "redis")] {
        let resp = client.post(node.url(8022, "/policies")).json(&policy_json(id, store)).send().await.unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
    }
    let check_url = node.url(8022, "/check");
    let (bare, bare_dups) = post_all(&bare_url, "mem", &batches("mem", rest_events)).await;
    let (mem, mem_dups) = post_all(&check_url, "mem", &batches("mem", rest_events)).await;
    assert_eq!(mem_dups, bare_dups);
    out.push_str(&format!(
        "2. POST /check, {REST_EVENTS} events in batches of {BATCH}, one client ({mem_dups} duplicates)\n"
    ));
    out.push_str(&ratio_line("   loom node (memory store)", mem, bare, "bare axum + HashSet"));
    out.push_str(&format!("   loom node vs the pure HashSet loop: ratio {:.3}\n", mem / base));

    let (red, red_dups) = post_all(&check_url, "red", &batches("red", rest_events)).await;
    let (pipe, pipe_dups) = redis_baseline(rest_events).await;
    assert_eq!(red_dups, pipe_dups);
    out.push_str(&format!("3. Redis store, {REST_EVENTS} events, batches of {BATCH}\n"));
    out.push_str(&ratio_line("   loom node (store: redis)", red, pipe, "pipelined SET NX PX"));
    let _ = client.delete(node.url(8022, "/policies/red/state")).send().await;
    print!("{out}");
}
