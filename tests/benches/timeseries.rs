//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=target/release/loom cargo bench
//! -p loom-tests --bench timeseries`): end-to-end events/s through the Time Series Aggregator
//! (consume → 1-minute tumbling windows per device with count/avg/max/p95 → final results to a
//! Kafka topic, checkpoints and results committed to PostgreSQL per batch) beside the plain
//! rdkafka pipe of the router bench (`support/pipe.rs`), in the same run, over the same backlog
//! shape (N events; 200 devices, each sending every 6 s of event time, so 10 events per window; 6 partitions; local broker). The aggregator is timed from the
//! first `/stats` poll that shows absorbed events to the poll that shows all N absorbed
//! (committed); events absorbed before the first poll are left out of the count.
//!
//! The aggregation core alone is measured by `cargo bench -p loom-streams --bench engine`.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use loom_kafka::admin::ensure_topics;
use loom_testkit::{LoomNode, NodeOptions, infra};
use serde_json::{Value, json};

#[path = "support/pipe.rs"]
mod pipe;

use pipe::{N, PARTITIONS, fill_with, section};

/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

fn reading(i: usize) -> Value {
    // N events over ~100 minutes of event time, in order per device.
    let ts = T0 + (i as i64) * 30;
    let iso = chrono::DateTime::from_timestamp_millis(ts).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"device": format!("d{}", i % 200), "ts": iso, "value": (i % 97) as f64 / 4.0, "seq": i})
}

async fn aggregator(input: &str, output: &str) -> f64 {
    let db = infra::fresh_postgres_database("bench_timeseries").await;
    let options = NodeOptions::default()
        .env("LOOM_DATABASE_URL", &db)
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms");
    let node = LoomNode::start_ready("bench-ts", options).await;
    let job = json!({"id": "bench", "source": {"topic": input}, "time": {"field": "/ts"}, "key": ["/device"],
        "window": {"type": "tumbling", "size": "1m"},
        "aggregates": [{"name": "n", "fn": "count"}, {"name": "avg", "fn": "avg", "field": "/value"},
                       {"name": "max", "fn": "max", "field": "/value"},
                       {"name": "p95", "fn": "percentile", "q": 0.95, "field": "/value"}],
        "allowed_lateness": "10s", "sinks": [{"kafka": {"topic": output}}]});
    let resp = reqwest::Client::new().post(node.url(8020, "/jobs")).json(&job).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap_or_default());
    let url = node.url(8020, "/jobs/bench/stats");
    let mut started: Option<(Instant, u64)> = None;
    loop {
        let s: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let events = s["node"]["events"].as_u64().unwrap_or(0);
        if events > 0 && started.is_none() {
            started = Some((Instant::now(), events));
        }
        if events as usize >= N {
            println!("aggregator: {s}");
            break;
        }
        assert_eq!(s["node"]["dead_lettered"].as_u64(), Some(0), "{s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (at, already) = started.unwrap();
    (N as u64 - already) as f64 / at.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let prefix = format!("bench{stamp}");
    let (pin, pout) = (format!("{prefix}.pipe.in"), format!("{prefix}.pipe.out"));
    fill_with(&pin, reading).await;
    ensure_topics(&section(), &[&pout], PARTITIONS).await.unwrap();
    let pipe_rate = pipe::pipe(&pin, &pout).await;
    let (tin, tout) = (format!("{prefix}.ts.in"), format!("{prefix}.ts.out"));
    fill_with(&tin, reading).await;
    let rate = aggregator(&tin, &tout).await;
    println!("events: {N}, partitions: {PARTITIONS}, one node, local Tansu broker, PostgreSQL checkpoints");
    println!("plain rdkafka pipe (consume → produce, acks=all):       {pipe_rate:>10.0} events/s");
    println!("Loom Time Series Aggregator (consume → windows → Kafka): {rate:>10.0} events/s");
    println!("ratio aggregator / pipe: {:.2}", rate / pipe_rate);
}
