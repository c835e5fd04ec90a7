//! The producer: librdkafka's idempotent producer (acks=all, ordered retries), shared by every
//! task of a service through a cheap clone. Sends are bounded: a full local queue fails at once
//! (`queue_full`) instead of buffering without limit, and a record not acknowledged within
//! `kafka.produce_timeout` fails (`timeout`), so callers can dead-letter or retry visibly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loom_config::KafkaSection;
use loom_telemetry::names;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::{CLIENT_TIMEOUT, client_config, count_error};

/// Records queued in librdkafka at most (its `queue.buffering.max.messages`).
const MAX_QUEUED: usize = 100_000;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProduceError {
    #[error("the producer's queue is full ({MAX_QUEUED} records); retry later")]
    QueueFull,
    #[error("not acknowledged by the broker in time: {0}")]
    Timeout(String),
    #[error("the broker refused the record: {0}")]
    Refused(String),
}

impl ProduceError {
    pub fn code(&self) -> &'static str {
        match self {
            ProduceError::QueueFull => "queue_full",
            ProduceError::Timeout(_) => "produce_timeout",
            ProduceError::Refused(_) => "produce_refused",
        }
    }

    /// Worth retrying later (broker away, queue full) rather than dead-lettering.
    pub fn transient(&self) -> bool {
        matches!(self, ProduceError::QueueFull | ProduceError::Timeout(_))
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: &'a [(String, Vec<u8>)],
    pub partition: Option<i32>,
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    service: &'static str,
    connected: Arc<AtomicBool>,
    /// Metric handles per topic, so the hot path never builds labels.
    handles: Arc<Mutex<HashMap<String, (metrics::Counter, metrics::Histogram)>>>,
}

/// Topics whose metric handles are kept; beyond, handles are built per send.
const MAX_TOPIC_HANDLES: usize = 10_000;

impl Producer {
    pub fn new(kafka: &KafkaSection, service: &'static str) -> Result<Producer, KafkaError> {
        let inner: FutureProducer = client_config(kafka, &format!("loom-{service}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("queue.buffering.max.messages", MAX_QUEUED.to_string())
            .set("message.timeout.ms", kafka.produce_timeout.get().as_millis().to_string())
            .create()?;
        Ok(Producer { inner, service, connected: Arc::new(AtomicBool::new(false)), handles: Arc::default() })
    }

    /// A transactional producer (`transactional.id`): after [`Producer::init_transactions`]
    /// any earlier producer with the same id is fenced — its open transaction aborted, its
    /// further writes refused — so one id per unit of work (a dedup policy's source partition)
    /// makes a crashed or revoked owner harmless.
    pub fn transactional(kafka: &KafkaSection, service: &'static str, id: &str) -> Result<Producer, KafkaError> {
        let inner: FutureProducer = client_config(kafka, &format!("loom-{service}"))
            .set("transactional.id", id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("transaction.timeout.ms", "60000")
            .set("queue.buffering.max.messages", MAX_QUEUED.to_string())
            .set("message.timeout.ms", kafka.produce_timeout.get().as_millis().to_string())
            .create()?;
        Ok(Producer { inner, service, connected: Arc::new(AtomicBool::new(false)), handles: Arc::default() })
    }

    /// Runs a blocking transaction call of librdkafka off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&FutureProducer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, KafkaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || call(&inner)).await.unwrap_or(Err(KafkaError::Canceled))
    }

    /// Registers the transactional id with the coordinator, fencing older producers with it.
    pub async fn init_transactions(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.blocking(move |p| p.init_transactions(Timeout::After(timeout))).await
    }

    pub fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.inner.begin_transaction()
    }

    /// Adds the consumer group's offsets (`(topic, partition, next offset)`) to the transaction.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: Vec<(String, i32, i64)>,
        group: rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        self.blocking(move |p| {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (t, part, o) in &offsets {
                tpl.add_partition_offset(t, *part, rdkafka::Offset::Offset(*o))?;
            }
            p.send_offsets_to_transaction(&tpl, &group, Timeout::After(timeout))
        })
        .await
    }

    /// Commits the open transaction (flushing its records first).
    pub async fn commit_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.blocking(move |p| p.commit_transaction(Timeout::After(timeout))).await
    }

    pub async fn abort_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.blocking(move |p| p.abort_transaction(Timeout::After(timeout))).await
    }

    /// Partition count of a topic (metadata), blocking call off the runtime.
    pub async fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        let topic = topic.to_owned();
        self.blocking(move |p| {
            let md = p.client().fetch_metadata(Some(&topic), Timeout::After(CLIENT_TIMEOUT))?;
            let n = md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
            if n == 0 {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            Ok(n as i32)
        })
        .await
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(&self, out: Outgoing<'_>) -> Result<Delivered, ProduceError> {
        self.enqueue(out)?.acknowledged().await
    }

    /// Hands one record to librdkafka's queue without waiting: records enqueued one after the
    /// other keep that order on their partition. A full queue fails at once.
    pub fn enqueue(&self, out: Outgoing<'_>) -> Result<Pending, ProduceError> {
        let started = Instant::now();
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(out.topic);
        // librdkafka allocates a header list even for none: only build one when needed.
        if !out.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
            for (k, v) in out.headers {
                headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
            }
            record = record.headers(headers);
        }
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(p) = out.payload {
            record = record.payload(p);
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        match self.inner.send_result(record) {
            Ok(delivery) => Ok(Pending {
                delivery,
                started,
                metrics: self.handles(out.topic),
                connected: self.connected.clone(),
                service: self.service,
            }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                count_error(self.service, "queue_full");
                Err(ProduceError::QueueFull)
            }
            Err((e, _)) => {
                count_error(self.service, "produce");
                Err(ProduceError::Refused(e.to_string()))
            }
        }
    }

    fn handles(&self, topic: &str) -> (metrics::Counter, metrics::Histogram) {
        if let Some(h) = self.handles.lock().ok().and_then(|h| h.get(topic).cloned()) {
            return h;
        }
        let h = (
            metrics::counter!(names::KAFKA_PRODUCED, "service" => self.service, "topic" => topic.to_owned()),
            metrics::histogram!(names::KAFKA_PRODUCE_DURATION, "service" => self.service, "topic" => topic.to_owned()),
        );
        if let Ok(mut map) = self.handles.lock()
            && map.len() < MAX_TOPIC_HANDLES
        {
            map.insert(topic.to_owned(), h.clone());
        }
        h
    }

    /// Asks the broker for metadata: true when it answers. Blocking; run off the runtime.
    pub fn probe(&self) -> bool {
        let ok = self.inner.client().fetch_metadata(None, Timeout::After(CLIENT_TIMEOUT)).is_ok();
        self.connected.store(ok, Ordering::Relaxed);
        ok
    }

    /// The last known broker reachability (updated by `probe` and by every delivery).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.inner.flush(Timeout::After(timeout));
    }

    pub fn client(&self) -> &FutureProducer {
        &self.inner
    }
}

/// A record in librdkafka's queue, not yet acknowledged.
pub struct Pending {
    delivery: DeliveryFuture,
    started: Instant,
    metrics: (metrics::Counter, metrics::Histogram),
    connected: Arc<AtomicBool>,
    service: &'static str,
}

impl Pending {
    /// Waits for the broker's acknowledgement (bounded by `kafka.produce_timeout`).
    pub async fn acknowledged(self) -> Result<Delivered, ProduceError> {
        match self.delivery.await {
            Ok(Ok(d)) => {
                self.metrics.0.increment(1);
                self.metrics.1.record(self.started.elapsed().as_secs_f64());
                self.connected.store(true, Ordering::Relaxed);
                Ok(Delivered { partition: d.partition, offset: d.offset })
            }
            Ok(Err((e, _))) => {
                count_error(self.service, "produce");
                Err(classify(e))
            }
            Err(_canceled) => Err(ProduceError::Timeout("the producer shut down".into())),
        }
    }
}

fn classify(e: KafkaError) -> ProduceError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            ProduceError::Timeout(e.to_string())
        }
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition,
        ) => ProduceError::Timeout(e.to_string()),
        _ => ProduceError::Refused(e.to_string()),
    }
}
