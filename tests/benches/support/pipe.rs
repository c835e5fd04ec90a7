//! Kafka helpers shared by the stream bench binaries: filling a topic with a backlog of N
//! device readings, and the baseline every stream service is measured beside — a plain rdkafka
//! pipe (consume in a group, re-produce unchanged with Loom's producer settings, wait for every
//! acknowledgement), timed from the first record consumed to the last acknowledgement.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use loom_kafka::admin::ensure_topics;
use loom_kafka::rdkafka::ClientConfig;
use loom_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use loom_kafka::rdkafka::message::Message;
use loom_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use loom_testkit::infra;
use serde_json::{Value, json};

pub const N: usize = 200_000;
pub const PARTITIONS: i32 = 6;

pub fn section() -> loom_config::KafkaSection {
    loom_config::KafkaSection { brokers: vec![infra::kafka_brokers()], ..Default::default() }
}

/// The producer settings Loom uses (idempotent, acks=all, linger 2 ms).
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", infra::kafka_brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap()
}

pub async fn fill(topic: &str) {
    fill_with(topic, |i| json!({"device": format!("d{}", i % 1000), "type": "reading", "temp": 20.5, "seq": i})).await
}

/// Fills `topic` with N records made by `event(i)`, keyed by their `device`.
pub async fn fill_with(topic: &str, event: impl Fn(usize) -> Value) {
    ensure_topics(&section(), &[topic], PARTITIONS).await.unwrap();
    let p = producer();
    let p = &p;
    let mut pending = FuturesUnordered::new();
    for i in 0..N {
        let v = event(i);
        let key = v["device"].as_str().unwrap_or_default().to_owned();
        let payload = v.to_string();
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
pub async fn pipe(input: &str, output: &str) -> f64 {
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
