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

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use loom_kafka::admin::ensure_topics;
use loom_kafka::rdkafka::ClientConfig;
use loom_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use loom_kafka::rdkafka::message::Message;
use loom_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use loom_testkit::{LoomNode, NodeOptions, infra};
use serde_json::{Value, json};

const N: usize = 200_000;
const PARTITIONS: i32 = 6;

fn section() -> loom_config::KafkaSection {
    loom_config::KafkaSection { brokers: vec![infra::kafka_brokers()], ..Default::default() }
}

/// The producer settings Loom uses (idempotent, acks=all, linger 2 ms).
fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", infra::kafka_brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap()
}

async fn fill(topic: &str) {
    ensure_topics(&section(), &[topic], PARTITIONS).await.unwrap();
    let p = producer();
    let p = &p;
    let mut pending = FuturesUnordered::new();
    for i in 0..N {
        let payload =
            json!({"device": format!("d{}", i % 1000), "type": "reading", "temp": 20.5, "seq": i}).to_string();
        let key = format!("d{}", i % 1000);
        pending.push(async move {
            p.send(FutureRecord::to(topic).key(&key).payload(&payload), Duration::from_secs(30)).await.map(|_| ())
        });
        if pending.len() >= 5000 {
            pending.next().await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    while let Some(r) = pending.next().await {
        r.map_err(|(e, _)| e).unwrap();
    }
}

/// The baseline: consume in a group, re-produce each record unchanged, wait for every ack.
async fn pipe(input: &str, output: &str) -> f64 {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", infra::kafka_brokers())
        .set("group.id", format!("{input}.pipe"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let p = producer();
    let mut pending = FuturesUnordered::new();
    let mut started = None;
    let mut consumed = 0;
    let mut acked = 0;
    while acked < N {
        tokio::select! {
            m = consumer.recv(), if consumed < N => {
                let m = m.unwrap();
                started.get_or_insert_with(Instant::now);
                consumed += 1;
                let record = FutureRecord::to(output).payload(m.payload().unwrap_or_default());
                let record = match m.key() { Some(k) => record.key(k), None => record };
                match p.send_result(record) {
                    Ok(delivery) => pending.push(delivery),
                    Err((e, _)) => panic!("enqueue: {e}"),
                }
            }
            Some(d) = pending.next(), if !pending.is_empty() => {
                d.unwrap().map_err(|(e, _)| e).unwrap();
                acked += 1;
            }
        }
    }
    N as f64 / started.unwrap().elapsed().as_secs_f64()
}

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
    let pipe_rate = pipe(&pin, &pout).await;
    let (rin, rout) = (format!("{prefix}.router.in"), format!("{prefix}.router.out"));
    fill(&rin).await;
    ensure_topics(&section(), &[&rout], PARTITIONS).await.unwrap();
    let router_rate = router(&rin, &rout, &prefix).await;
    println!("events: {N}, partitions: {PARTITIONS}, one node, local Tansu broker");
    println!("plain rdkafka pipe (consume → produce, acks=all): {pipe_rate:>10.0} events/s");
    println!("Loom Event Router (consume → rule → produce):      {router_rate:>10.0} events/s");
    println!("ratio router / pipe: {:.2}", router_rate / pipe_rate);
}
