//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=target/release/loom cargo bench
//! -p loom-tests --bench router`): end-to-end events/s through the Event Router (consume → route
//! by a simple topic-mapping rule → produce, at least once) beside a plain pipe in the same run:
//! the same client library (rdkafka, bundled librdkafka) consuming in a group and re-producing
//! with the same producer settings, no routing. Both drain the same backlog of N events on the
//! local broker (6 partitions) and are timed from the first record consumed to the last output
//! acknowledged (the router from the first `/stats` poll showing consumption, counting only the
//! outputs after it). `BENCH_MAX_IN_FLIGHT` sets the router's per-partition bound;
//! `BENCH_TRACE=1` prints the router's progress while it drains.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use loom_kafka::admin::ensure_topics;
use loom_testkit::{LoomNode, NodeOptions, infra};
use serde_json::{Value, json};

#[path = "support/pipe.rs"]
mod pipe;

use pipe::{N, PARTITIONS, fill, section};

async fn stats(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn router_options(db: &str, prefix: &str, sources: &str) -> NodeOptions {
    NodeOptions::default()
        .env("LOOM_DATABASE_URL", db)
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
        .env("LOOM_ROUTER_SOURCES", sources)
        .env("LOOM_ROUTER_GROUP", format!("{prefix}.router"))
        .env("LOOM_ROUTER_DLQ_TOPIC", format!("{prefix}.dlq"))
        .env("LOOM_KAFKA_MAX_IN_FLIGHT", std::env::var("BENCH_MAX_IN_FLIGHT").unwrap_or_else(|_| "2000".into()))
}

/// The router: one node consuming the backlog with one rule routing everything to `output`.
/// The rule is stored first (through a node that consumes nothing, on the same database), so
/// the consuming node starts with it.
async fn router(input: &str, output: &str, prefix: &str) -> f64 {
    let db = infra::fresh_postgres_database("bench_router").await;
    let setup = LoomNode::start_ready("bench-setup", router_options(&db, prefix, "")).await;
    let rule = json!({"id": "map", "match": "true", "actions": [{"route": {"topics": [output]}}]});
    let resp = reqwest::Client::new().post(setup.url(8013, "/rules")).json(&rule).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    drop(setup);
    let node = LoomNode::start_ready("bench-router", router_options(&db, prefix, input)).await;
    let url = node.url(8013, "/stats");
    // Timed from the first poll that sees consumption; what was already output by then is
    // left out of the count, so a late first poll cannot inflate the rate.
    let mut started: Option<(Instant, u64)> = None;
    loop {
        let s = stats(&url).await;
        if s["consumer"]["consumed"].as_u64().unwrap_or(0) > 0 && started.is_none() {
            let already = s["outputs"].as_u64().unwrap_or(0);
            println!("router: first seen consuming with {} consumed, {already} output", s["consumer"]["consumed"]);
            started = Some((Instant::now(), already));
        }
        if s["outputs"].as_u64().unwrap_or(0) as usize >= N {
            break;
        }
        assert_eq!(s["dead_lettered"].as_u64(), Some(0), "{s}");
        if std::env::var("BENCH_TRACE").is_ok() {
            println!(
                "{:?} consumed {} outputs {}",
                started.map(|t| t.0.elapsed()),
                s["consumer"]["consumed"],
                s["outputs"]
            );
        }
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
    fill(&pin).await;
    ensure_topics(&section(), &[&pout], PARTITIONS).await.unwrap();
    let pipe_rate = pipe::pipe(&pin, &pout).await;
    let (rin, rout) = (format!("{prefix}.router.in"), format!("{prefix}.router.out"));
    fill(&rin).await;
    ensure_topics(&section(), &[&rout], PARTITIONS).await.unwrap();
    let router_rate = router(&rin, &rout, &prefix).await;
    println!("events: {N}, partitions: {PARTITIONS}, one node, local Tansu broker");
    println!("plain rdkafka pipe (consume → produce, acks=all): {pipe_rate:>10.0} events/s");
    println!("Loom Event Router (consume → rule → produce):      {router_rate:>10.0} events/s");
    println!("ratio router / pipe: {:.2}", router_rate / pipe_rate);
}
