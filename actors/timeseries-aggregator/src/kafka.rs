//! Kafka sources. `loom-kafka`'s sources actor (supervised) keeps one consumer-group member
//! (group `loom-timeseries.<job>`) per job with a `source`, started and stopped as jobs come
//! and go ([`KafkaSide`] says which). Records reach [`JobProcessor`] one batch
//! per partition at a time; each (job, partition) has a [`Partition`] loaded from its checkpoint
//! on first use. A batch is done only after its results and the checkpoint (state + next offset)
//! are committed, so the group offset never passes uncommitted work, and records below the
//! checkpoint's offset (re-read after a rebalance or a crash) are skipped: no window is lost or
//! counted twice. Every second, partitions idle for the job's `idle_timeout` are advanced by the
//! job's combined watermark over this node's partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loom_config::KafkaSection;
use loom_kafka::consumer::Subscription;
use loom_kafka::{Processor, Record};
use loom_protocol::ServiceId;
use loom_streams::watermark::Watermarks;

use crate::jobs::JobBook;
use crate::pipeline::{Item, Partition, Pipeline, RunError};
use crate::store::now_ms;

type Shared = Arc<tokio::sync::Mutex<Partition>>;

/// The partitions of every Kafka-fed job this node works on.
#[derive(Clone)]
pub struct KafkaSide {
    pub book: JobBook,
    pub pipeline: Pipeline,
    kafka: KafkaSection,
    parts: Arc<Mutex<HashMap<(String, String), Shared>>>,
    marks: Arc<Mutex<HashMap<String, Watermarks<String>>>>,
}

impl KafkaSide {
    pub fn new(book: JobBook, pipeline: Pipeline, kafka: KafkaSection) -> KafkaSide {
        KafkaSide { book, pipeline, kafka, parts: Arc::default(), marks: Arc::default() }
    }

    async fn partition(&self, job: &str, part: &str) -> Result<Shared, crate::error::TsError> {
        let current = self.book.get(job).ok_or_else(|| crate::error::TsError::NotFound(format!("job '{job}'")))?;
        let existing = self.parts.lock().ok().and_then(|m| m.get(&(job.to_owned(), part.to_owned())).cloned());
        if let Some(p) = existing {
            let usable = {
                let g = p.lock().await;
                g.job.version == current.version && !g.poisoned
            };
            if usable {
                return Ok(p);
            }
        }
        let p = Arc::new(tokio::sync::Mutex::new(self.pipeline.load(current, part).await?));
        if let Ok(mut m) = self.parts.lock() {
            m.insert((job.to_owned(), part.to_owned()), p.clone());
        }
        Ok(p)
    }

    fn forget(&self, job: &str, part: &str) {
        if let Ok(mut m) = self.parts.lock() {
            m.remove(&(job.to_owned(), part.to_owned()));
        }
    }

    /// (partition, next offset, watermark, open windows) of a job's partitions on this node.
    pub async fn partitions_of(&self, job: &str) -> Vec<(String, i64, i64, usize)> {
        let list: Vec<(String, Shared)> = self
            .parts
            .lock()
            .map(|m| m.iter().filter(|((j, _), _)| j == job).map(|((_, p), s)| (p.clone(), s.clone())).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (part, s) in list {
            let p = s.lock().await;
            out.push((part, p.next_offset, p.engine.watermark(), p.engine.open_windows()));
        }
        out.sort();
        out
    }

    /// Runs one batch of one partition; `Err` returns the records for a retry.
    async fn process(&self, job: &str, batch: Vec<Record>) -> Result<(), Vec<Record>> {
        let Some(first) = batch.first() else { return Ok(()) };
        let part = format!("{}/{}", first.topic, first.partition);
        for attempt in 0..2 {
            let shared = match self.partition(job, &part).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(job, part = %part, error = %e, "partition not loadable; retrying the batch");
                    return Err(batch);
                }
            };
            let mut p = shared.lock().await;
            if p.poisoned {
                // another task failed on it between our lookup and our lock: reload
                drop(p);
                self.forget(job, &part);
                continue;
            }
            let items: Vec<Item> = batch
                .iter()
                .map(|r| Item {
                    offset: r.offset,
                    value: match &r.payload {
                        Some(b) => serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}")),
                        None => Err("the record has no payload".into()),
                    },
                    record_ms: r.timestamp_ms,
                    record: Some(r),
                })
                .collect();
            match self.pipeline.run(&mut p, items).await {
                Ok(_) => {
                    let now = now_ms();
                    if let Ok(mut marks) = self.marks.lock() {
                        let w = marks
                            .entry(job.to_owned())
                            .or_insert_with(|| Watermarks::new(p.job.engine.idle_timeout_ms));
                        w.observe(part.clone(), p.engine.watermark(), now);
                    }
                    return Ok(());
                }
                Err(RunError::Stale) if attempt == 0 => {
                    drop(p);
                    self.forget(job, &part);
                }
                Err(e) => {
                    tracing::warn!(job, part = %part, error = ?e, "batch not committed; retrying from the checkpoint");
                    drop(p);
                    self.forget(job, &part);
                    return Err(batch);
                }
            }
        }
        Err(batch)
    }

    /// Advances idle partitions by their job's combined watermark (every second).
    pub async fn tick_loop(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let list: Vec<((String, String), Shared)> =
                self.parts.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
            let now = now_ms();
            for ((job, part), shared) in list {
                if self.book.get(&job).is_none() {
                    // deleted job: drop its partitions
                    self.forget(&job, &part);
                    continue;
                }
                let mut p = shared.lock().await;
                if p.poisoned {
                    continue;
                }
                let idle = now - p.last_active_ms >= p.job.engine.idle_timeout_ms;
                let floor =
                    if idle { self.marks.lock().ok().and_then(|m| m.get(&job).map(|w| w.combined(now))) } else { None };
                if floor.is_none() && !p.job.engine.per_key_watermark {
                    continue;
                }
                if let Err(e) = self.pipeline.tick(&mut p, floor).await {
                    tracing::debug!(job = %job, part = %part, error = ?e, "idle advance not committed");
                    drop(p);
                    self.forget(&job, &part);
                }
            }
        }
    }
}

/// The processor of one job's subscription.
struct JobProcessor {
    job: String,
    side: KafkaSide,
}

#[ractor::async_trait]
impl Processor for JobProcessor {
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        // A batch holds one partition's records (the partition actor's contract).
        match self.side.process(&self.job, batch).await {
            Ok(()) => Vec::new(),
            Err(retry) => retry,
        }
    }
}

impl loom_kafka::sources::Sources for KafkaSide {
    fn wanted(&self) -> Vec<(String, String, Subscription)> {
        self.book
            .all()
            .iter()
            .filter_map(|j| {
                let topic = j.spec.source.as_ref()?.topic.clone();
                let id = j.spec.id.clone();
                let sub = Subscription {
                    service: ServiceId::TimeseriesAggregator.name(),
                    group: format!("loom-timeseries.{id}"),
                    topics: vec![topic.clone()],
                    kafka: self.kafka.clone(),
                    processor: Arc::new(JobProcessor { job: id.clone(), side: self.clone() }),
                    transactional: false,
                };
                Some((id, topic, sub))
            })
            .collect()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.book.watch()
    }
}
