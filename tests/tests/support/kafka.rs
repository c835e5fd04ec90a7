//! Kafka helpers shared by the stream services' integration tests (included with `#[path]`):
//! unique topic prefixes, a real rdkafka producer, reading a whole topic back, and a broker of
//! the test's own.
#![allow(dead_code)]

use std::time::Duration;

use loom_kafka::Record;
use loom_kafka::admin::{Start, TopicReader};
use loom_kafka::rdkafka::ClientConfig;
use loom_kafka::rdkafka::message::{Header, OwnedHeaders};
use loom_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use loom_testkit::infra;

pub fn kafka_section() -> loom_config::KafkaSection {
    section(&infra::kafka_brokers())
}

pub fn section(brokers: &str) -> loom_config::KafkaSection {
    loom_config::KafkaSection { brokers: vec![brokers.to_owned()], ..Default::default() }
}

/// A node routing `{p}.in` with the Event Router (group `{p}.group`, DLQ `{p}.dlq`) on the
/// suite's broker, with a short session timeout so a lost member's partitions move quickly.
pub fn router_env(options: loom_testkit::NodeOptions, p: &str) -> loom_testkit::NodeOptions {
    options
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
        .env("LOOM_ROUTER_SOURCES", format!("{p}.in"))
        .env("LOOM_ROUTER_GROUP", format!("{p}.group"))
        .env("LOOM_ROUTER_DLQ_TOPIC", format!("{p}.dlq"))
}

/// A topic prefix unique to this test process and moment.
pub fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{}-{}-{name}", std::process::id(), nanos % 1_000_000_000)
}

pub fn client_producer() -> FutureProducer {
    producer_for(&infra::kafka_brokers())
}

pub fn producer_for(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().unwrap()
}

/// Produces one record with the header `origin: test` and waits for its acknowledgement.
pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    let headers = OwnedHeaders::new().insert(Header { key: "origin", value: Some("test") });
    let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key).payload(payload).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produced");
}

/// Everything in `topic` (read until 3 s pass without a record).
pub async fn read_all(topic: &str) -> Vec<Record> {
    read_all_from(&infra::kafka_brokers(), topic).await
}

pub async fn read_all_from(brokers: &str, topic: &str) -> Vec<Record> {
    let (t, b) = (topic.to_owned(), brokers.to_owned());
    let reader =
        tokio::task::spawn_blocking(move || TopicReader::open(&section(&b), &t, &Start::Beginning)).await.unwrap();
    let Ok(reader) = reader else { return Vec::new() };
    let mut out = Vec::new();
    while let Some(r) = reader.next(Duration::from_secs(3)).await {
        out.push(r.expect("record"));
    }
    out
}

pub fn header(r: &Record, name: &str) -> Option<String> {
    r.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A broker of this test's own, so it can be paused without disturbing the other tests.
pub struct OwnBroker {
    child: std::process::Child,
    pub brokers: String,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(infra::tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        OwnBroker { child, brokers: format!("127.0.0.1:{port}") }
    }

    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
