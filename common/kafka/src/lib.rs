//! The Kafka bridge shared by every stream service (Event Router, and the dedup, aggregation and
//! quality services after it). librdkafka (bundled, through rdkafka) does the wire protocol;
//! this crate gives it Loom's shape:
//!
//! - `consumer.rs`: one **group member actor** per subscription owns the consumer; a **partition
//!   actor** per assigned partition (spawned on assign, stopped on revoke, restarted from the
//!   committed offset if it fails) runs the service's [`Processor`] on batches, tracks offsets
//!   (`offsets.rs`: never commit past a record not fully processed) and pauses its partition when
//!   its in-flight bound is reached.
//! - `producer.rs`: the idempotent producer (acks=all) with metrics and a bounded send.
//! - `admin.rs`: topic creation, watermarks, reading a topic range (DLQ browsing, replays).
//! - `service.rs`: the member as a supervised child, and the `kafka:reachable` probe.
//!
//! At-least-once: offsets are stored only for records the processor reported done and are
//! committed by librdkafka every `kafka.commit_interval` and on revoke; a record that was not
//! done when its partition moved is consumed again by the new owner.

pub mod admin;
pub mod consumer;
pub mod offsets;
pub mod producer;
pub mod service;
pub mod sources;

use std::time::Duration;

use loom_config::KafkaSection;
use rdkafka::ClientConfig;
use rdkafka::message::{Headers, Message};

pub use consumer::{Processor, Subscription, start_subscription};
pub use producer::{ProduceError, Producer};
pub use rdkafka;

/// Longest time a synchronous client call (metadata, watermarks) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A consumed (or to-be-produced) record, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch, when the broker or producer set one.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn from_message<M: Message>(m: &M) -> Record {
        let headers = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
            .unwrap_or_default();
        Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.payload.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The client settings every Loom client shares.
pub fn client_config(kafka: &KafkaSection, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", kafka.brokers.join(","))
        .set("client.id", client_id)
        .set("socket.keepalive.enable", "true")
        // librdkafka logs through our tracing only at warning and above
        .set("log_level", "4");
    c
}

/// The error kinds reported in `loom_kafka_errors_total{kind}`.
pub fn count_error(service: &'static str, kind: &'static str) {
    metrics::counter!(loom_telemetry::names::KAFKA_ERRORS, "service" => service, "kind" => kind).increment(1);
}
