//! Stream mode: a consumer-group member per monitor with a `source` (group
//! `loom-quality.<id>`), kept by `loom-kafka`'s sources actor; each source partition is a part
//! `topic/partition` of the monitor, written only by the node the group assigned it to.
//!
//! Each batch of a partition (in offset order) is absorbed exactly once:
//!
//! 1. the part's saved `next_offset` and freshness state are read; records below it are
//!    already in the windows (a redelivery after a crash or a rebalance) and are skipped;
//! 2. the rest are absorbed into per-(group, window) profiles;
//! 3. the touched windows, the part's state and the new `next_offset` are written in one
//!    transaction, conditional on the `next_offset` read in 1 (a compare-and-set: two owners
//!    overlapping during a rebalance cannot both apply a batch — the loser re-reads and skips);
//! 4. only then is the batch done, so the group's committed offset never passes what is
//!    stored. A kill -9 anywhere loses nothing and counts nothing twice.

use std::sync::Arc;

use loom_config::KafkaSection;
use loom_kafka::sources::Sources;
use loom_kafka::{Processor, Record, Subscription};
use loom_protocol::ServiceId;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::QualityError;
use crate::ingest::{self, Batch, Freshness};
use crate::rest::{Book, merge_bytes};
use crate::store::Store;

/// The source topic of a new monitor is created with this many partitions when it is absent.
const PARTITIONS: i32 = 6;

/// Creates a monitor's source topic when it does not exist yet.
pub async fn ensure_topic(kafka: &KafkaSection, topic: &str) -> Result<(), QualityError> {
    loom_kafka::admin::ensure_topics(kafka, &[topic], PARTITIONS).await.map_err(|e| QualityError::Kafka(e.to_string()))
}

struct Inner {
    book: Book,
    store: Store,
    schemas: Arc<loom_schemas::SchemaCache>,
    kafka: KafkaSection,
}

/// The stream parts of every monitor with a source that this node is assigned.
#[derive(Clone)]
pub struct StreamSide {
    inner: Arc<Inner>,
}

impl StreamSide {
    pub fn new(book: Book, store: Store, schemas: Arc<loom_schemas::SchemaCache>, kafka: KafkaSection) -> StreamSide {
        StreamSide { inner: Arc::new(Inner { book, store, schemas, kafka }) }
    }

    /// Absorbs one partition's batch; `Err` gives the batch back to be retried.
    async fn process(&self, id: &str, batch: Vec<Record>) -> Result<(), Vec<Record>> {
        let Some(first) = batch.first() else { return Ok(()) };
        let (topic, partition) = (first.topic.clone(), first.partition);
        let Some(entry) = self.inner.book.get(id) else {
            return Ok(()); // the monitor was deleted; its member stops at the next reconcile
        };
        let part = format!("{topic}/{partition}");
        let saved = match self.inner.store.part(id, &part).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(monitor = %id, %part, error = %e, "quality store unavailable; the batch is retried");
                return Err(batch);
            }
        };
        let (expected, mut fresh) = match &saved {
            Some((next, state)) => (Some(*next), Freshness::from_bytes(state)),
            None => (None, Freshness::default()),
        };
        let skip_below = expected.unwrap_or(0);
        let Some(last) = batch.iter().map(|r| r.offset).max() else { return Ok(()) };
        if last < skip_below {
            return Ok(()); // all of it is already stored
        }
        let monitor = &entry.compiled;
        let mut out = Batch::default();
        let mut records: Vec<(Value, Option<i64>)> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate().filter(|(_, r)| r.offset >= skip_below) {
            match r.payload.as_deref().map(serde_json::from_slice::<Value>) {
                Some(Ok(v)) => records.push((v, r.timestamp_ms)),
                Some(Err(e)) => out.refuse(i, "not_json", format!("offset {}: not JSON: {e}", r.offset)),
                None => out.refuse(i, "not_json", format!("offset {}: no payload", r.offset)),
            }
        }
        let (schema, _) = crate::schema_of(&self.inner.schemas, monitor).await;
        let now = loom_storage::documents::now_ms();
        ingest::absorb(monitor, schema.as_deref(), &records, now, &mut fresh, &mut out);
        let windows: Vec<(String, i64, Vec<u8>)> =
            out.windows.iter().map(|((g, s), p)| (g.clone(), *s, p.to_bytes())).collect();
        match self.inner.store.apply_cas(id, &part, windows, merge_bytes, expected, last + 1, fresh.to_bytes()).await {
            Ok(true) => {
                crate::metrics::absorbed(id, &out);
                crate::metrics::source_offset(id, &topic, partition, last + 1);
                Ok(())
            }
            Ok(false) => {
                tracing::info!(monitor = %id, %part, "another owner advanced this partition; re-reading it");
                Err(batch)
            }
            Err(e) => {
                tracing::warn!(monitor = %id, %part, error = %e, "quality store unavailable; the batch is retried");
                Err(batch)
            }
        }
    }
}

struct MonitorProcessor {
    monitor: String,
    side: StreamSide,
}

#[ractor::async_trait]
impl Processor for MonitorProcessor {
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        match self.side.process(&self.monitor, batch).await {
            Ok(()) => Vec::new(),
            Err(retry) => retry,
        }
    }
}

impl Sources for StreamSide {
    fn wanted(&self) -> Vec<(String, String, Subscription)> {
        self.inner
            .book
            .all()
            .iter()
            .filter_map(|e| {
                let topic = e.spec.source.as_ref()?.topic.clone();
                let id = e.spec.id.clone();
                let sub = Subscription {
                    service: ServiceId::DataQuality.name(),
                    group: format!("loom-quality.{id}"),
                    topics: vec![topic.clone()],
                    kafka: self.inner.kafka.clone(),
                    processor: Arc::new(MonitorProcessor { monitor: id.clone(), side: self.clone() }),
                    transactional: false,
                };
                Some((id, topic, sub))
            })
            .collect()
    }

    fn changes(&self) -> watch::Receiver<i64> {
        self.inner.book.watch()
    }
}
