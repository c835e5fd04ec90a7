//! The routing engine: the current rule set (swapped atomically on reload), decisions for one
//! event (with the schema fetch-and-retry for `validate`), producing outputs and dead letters,
//! and the Kafka [`Processor`] the consumer's partition actors call.
//!
//! Dead letters carry the original key, bytes and headers, plus `loom.error.class`,
//! `loom.error.message`, `loom.rule.id`, `loom.rule.version`, `loom.source.topic`,
//! `loom.source.partition`, `loom.source.offset`, `loom.attempts` and `loom.first_failure_ms`.
//! A record is done only when every output (or its dead letter) is acknowledged; a transient
//! produce failure (broker away, queue full) hands it back to be retried, so nothing is lost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::FutureExt;
use futures::future::join_all;
use loom_config::KafkaSection;
use loom_kafka::producer::{Delivered, Outgoing, Pending};
use loom_kafka::{ProduceError, Producer, Record};
use serde::Serialize;

use crate::rules::{Decision, Event, RuleRef, RuleSet, evaluate};
use crate::schemas::SchemaCache;

pub const H_CLASS: &str = "loom.error.class";
pub const H_MESSAGE: &str = "loom.error.message";
pub const H_RULE: &str = "loom.rule.id";
pub const H_RULE_VERSION: &str = "loom.rule.version";
pub const H_TOPIC: &str = "loom.source.topic";
pub const H_PARTITION: &str = "loom.source.partition";
pub const H_OFFSET: &str = "loom.source.offset";
pub const H_ATTEMPTS: &str = "loom.attempts";
pub const H_FIRST_FAILURE: &str = "loom.first_failure_ms";

/// Failure bookkeeping kept at most for this many records.
const MAX_TRACKED_FAILURES: usize = 100_000;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub events: AtomicU64,
    pub routed: AtomicU64,
    pub outputs: AtomicU64,
    pub dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retried: AtomicU64,
}

pub struct Router {
    rules: RwLock<Arc<RuleSet>>,
    pub producer: Option<Producer>,
    pub kafka: Option<KafkaSection>,
    pub schemas: SchemaCache,
    pub dlq_topic: String,
    pub topic_partitions: i32,
    pub stats: Stats,
    pub per_topic: Mutex<HashMap<String, u64>>,
    known_topics: Mutex<HashSet<String>>,
    /// One topic creation at a time: a batch's records all miss the cache together.
    creating: tokio::sync::Mutex<()>,
    failures: Mutex<HashMap<(String, i32, i64), (u32, i64)>>,
    /// `loom_router_events_total` by outcome, registered once (hot path).
    outcome: HashMap<&'static str, metrics::Counter>,
}

/// How one event ended.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    #[serde(flatten)]
    pub decision: Decision,
    /// Where the outputs (or the dead letter) landed: (topic, partition, offset).
    pub delivered: Vec<(String, i32, i64)>,
    pub dead_lettered: bool,
}

impl Router {
    pub fn new(
        producer: Option<Producer>,
        kafka: Option<KafkaSection>,
        schemas: SchemaCache,
        dlq_topic: String,
        topic_partitions: i32,
    ) -> Router {
        Router {
            rules: RwLock::new(Arc::new(RuleSet::default())),
            producer,
            kafka,
            schemas,
            dlq_topic,
            topic_partitions,
            stats: Stats::default(),
            per_topic: Mutex::default(),
            known_topics: Mutex::default(),
            creating: tokio::sync::Mutex::new(()),
            failures: Mutex::default(),
            outcome: ["routed", "dropped", "dead_lettered", "retried"]
                .into_iter()
                .map(|o| (o, metrics::counter!(crate::names::EVENTS, "service" => "event-router", "outcome" => o)))
                .collect(),
        }
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn install(&self, set: RuleSet) {
        metrics::gauge!(crate::names::RULESET_VERSION, "service" => "event-router").set(set.version as f64);
        if let Ok(mut r) = self.rules.write() {
            *r = Arc::new(set);
        }
    }

    /// Evaluates `event` with `set`, loading schemas a `validate` action needs first.
    pub async fn decide_with(&self, set: &RuleSet, event: &Event<'_>) -> Decision {
        let mut d = evaluate(set, event, &self.schemas);
        // The missing list is shared: another task may have taken (and be fetching) this
        // record's subject, so when there is nothing to fetch, wait a moment and look again.
        for _ in 0..3 {
            if !matches!(&d, Decision::Fail { class: "schema_unavailable", .. }) {
                break;
            }
            let missing = self.schemas.take_missing();
            if missing.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            for subject in missing {
                self.schemas.fetch(&subject).await;
            }
            d = evaluate(set, event, &self.schemas);
        }
        d
    }

    /// Creates `topic` (with the configured partitions) unless this node knows it exists.
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<(), ProduceError> {
        let known = || self.known_topics.lock().is_ok_and(|k| k.contains(topic));
        if known() {
            return Ok(());
        }
        let Some(kafka) = &self.kafka else { return Ok(()) };
        let _one_at_a_time = self.creating.lock().await;
        if known() {
            return Ok(());
        }
        loom_kafka::admin::ensure_topics(kafka, &[topic], self.topic_partitions)
            .await
            .map_err(|e| ProduceError::Timeout(format!("creating topic {topic}: {e}")))?;
        if let Ok(mut k) = self.known_topics.lock() {
            if k.len() > 100_000 {
                k.clear();
            }
            k.insert(topic.to_owned());
        }
        Ok(())
    }

    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(String, Vec<u8>)],
    ) -> Result<Delivered, ProduceError> {
        let producer = self.producer.as_ref().ok_or_else(|| ProduceError::Refused("the Kafka bridge is off".into()))?;
        self.ensure_topic(topic).await?;
        producer.send(Outgoing { topic, key, payload: Some(payload), headers, partition: None }).await
    }

    /// Routes one record end to end. `Err` means "not done, retry later" (a transient failure
    /// of the broker); every `Ok` is durable (outputs or the dead letter acknowledged).
    pub async fn route(&self, record: &Record, set: &RuleSet) -> Result<Routed, ProduceError> {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let event = event_of(record, self.source_topic(record));
        let decision = self.decide_with(set, &event).await;
        match &decision {
            Decision::Route { outputs, .. } => {
                let sends = outputs.iter().map(|o| self.send(&o.topic, o.key.as_deref(), &o.payload, &o.headers));
                let results = join_all(sends).await;
                self.conclude(record, decision, results).await
            }
            _ => self.settle(record, decision).await,
        }
    }

    /// The synchronous start of routing a record (the consumer's hot path): evaluates it and,
    /// when it routes to topics already known, enqueues its outputs in order without awaiting.
    pub(crate) fn start(&self, record: &Record, set: &RuleSet) -> Start {
        let event = event_of(record, self.source_topic(record));
        let decision = evaluate(set, &event, &self.schemas);
        let outputs = match &decision {
            Decision::Route { outputs, .. } => outputs,
            // A schema to fetch first: the whole of `route`.
            Decision::Fail { class: "schema_unavailable", .. } => return Start::Route,
            _ => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                return Start::Settle(decision);
            }
        };
        let Some(producer) = self.producer.as_ref() else { return Start::Route };
        if !outputs.iter().all(|o| self.known(&o.topic)) {
            return Start::Route;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let pending = outputs
            .iter()
            .map(|o| {
                producer.enqueue(Outgoing {
                    topic: &o.topic,
                    key: o.key.as_deref(),
                    payload: Some(&o.payload),
                    headers: &o.headers,
                    partition: None,
                })
            })
            .collect();
        Start::Enqueued(Started { decision, pending })
    }

    /// Waits for what [`Router::start`] enqueued and settles the record like [`Router::route`].
    pub(crate) async fn finish(&self, record: &Record, started: Started) -> Result<Routed, ProduceError> {
        let mut results = Vec::with_capacity(started.pending.len());
        for p in started.pending {
            results.push(match p {
                Ok(p) => p.acknowledged().await,
                Err(e) => Err(e),
            });
        }
        self.conclude(record, started.decision, results).await
    }

    /// A replayed dead letter is evaluated as if it came from its original topic.
    fn source_topic<'a>(&self, record: &'a Record) -> &'a str {
        record
            .header(H_TOPIC)
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|_| record.topic == self.dlq_topic)
            .unwrap_or(&record.topic)
    }

    fn known(&self, topic: &str) -> bool {
        self.kafka.is_none() || self.known_topics.lock().is_ok_and(|k| k.contains(topic))
    }

    /// Settles a routed record from its outputs' produce results: done when all were
    /// acknowledged, retried later on a transient failure, dead-lettered on a refusal.
    async fn conclude(
        &self,
        record: &Record,
        decision: Decision,
        results: Vec<Result<Delivered, ProduceError>>,
    ) -> Result<Routed, ProduceError> {
        let Decision::Route { outputs, .. } = &decision else { return self.settle(record, decision).await };
        let mut delivered = Vec::with_capacity(outputs.len());
        let mut refused = None;
        for (o, r) in outputs.iter().zip(results) {
            match r {
                Ok(d) => delivered.push((o.topic.clone(), d.partition, d.offset)),
                Err(e) if e.transient() => return Err(self.note_retry(record, e)),
                Err(e) => refused = Some((o, e)),
            }
        }
        if let Some((o, e)) = refused {
            return self.dead_letter(record, "produce_failed", format!("{}: {e}", o.topic), Some(o.rule.clone())).await;
        }
        self.forget(record);
        self.stats.routed.fetch_add(1, Ordering::Relaxed);
        self.stats.outputs.fetch_add(delivered.len() as u64, Ordering::Relaxed);
        if let Ok(mut t) = self.per_topic.lock() {
            for (topic, ..) in &delivered {
                if let Some(n) = t.get_mut(topic) {
                    *n += 1;
                } else if t.len() < 10_000 {
                    t.insert(topic.clone(), 1);
                }
            }
        }
        self.count("routed");
        Ok(Routed { decision, delivered, dead_lettered: false })
    }

    /// Settles a record that routes nowhere: dropped, or dead-lettered.
    pub(crate) async fn settle(&self, record: &Record, decision: Decision) -> Result<Routed, ProduceError> {
        match decision {
            // Routed records are settled by `conclude`; never here, but never a panic either.
            Decision::Route { .. } => {
                debug_assert!(false, "settle called with a routing decision");
                self.dead_letter(record, "internal", "routing decision settled without its outputs".into(), None).await
            }
            Decision::Drop { .. } => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.count("dropped");
                Ok(Routed { decision, delivered: Vec::new(), dead_lettered: false })
            }
            Decision::NoMatch => {
                let mut r =
                    self.dead_letter(record, "no_route", "no rule routed or dropped the event".into(), None).await?;
                r.decision = Decision::NoMatch;
                Ok(r)
            }
            Decision::Fail { class, message, rule } => self.dead_letter(record, class, message, rule).await,
        }
    }

    fn count(&self, outcome: &'static str) {
        if let Some(c) = self.outcome.get(outcome) {
            c.increment(1);
        }
    }

    fn note_retry(&self, record: &Record, e: ProduceError) -> ProduceError {
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        self.count("retried");
        if let Ok(mut f) = self.failures.lock() {
            if f.len() >= MAX_TRACKED_FAILURES {
                f.clear();
            }
            let entry =
                f.entry((record.topic.clone(), record.partition, record.offset)).or_insert((0, crate::store::now_ms()));
            entry.0 += 1;
        }
        e
    }

    fn forget(&self, record: &Record) {
        if let Ok(mut f) = self.failures.lock()
            && !f.is_empty()
        {
            f.remove(&(record.topic.clone(), record.partition, record.offset));
        }
    }

    /// Sends the original record to the DLQ with the error headers.
    async fn dead_letter(
        &self,
        record: &Record,
        class: &'static str,
        message: String,
        rule: Option<RuleRef>,
    ) -> Result<Routed, ProduceError> {
        let (attempts, first) = self
            .failures
            .lock()
            .ok()
            .and_then(|f| f.get(&(record.topic.clone(), record.partition, record.offset)).copied())
            .unwrap_or((0, crate::store::now_ms()));
        let previous_attempts: u32 =
            record.header(H_ATTEMPTS).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
        let first_failure = record
            .header(H_FIRST_FAILURE)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
            .unwrap_or(first);
        let replayed = record.topic == self.dlq_topic;
        let (src_topic, src_partition, src_offset) = if replayed {
            let h = |n| record.header(n).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            (h(H_TOPIC), h(H_PARTITION), h(H_OFFSET))
        } else {
            (record.topic.clone(), record.partition.to_string(), record.offset.to_string())
        };
        let mut headers: Vec<(String, Vec<u8>)> =
            record.headers.iter().filter(|(k, _)| !k.starts_with("loom.")).cloned().collect();
        let mut put = |k: &str, v: String| headers.push((k.to_owned(), v.into_bytes()));
        put(H_CLASS, class.to_owned());
        // Messages name the rule and the problem, never the payload's values beyond what the
        // schema validator quotes; truncated so a header stays small.
        put(H_MESSAGE, message.chars().take(1024).collect());
        if let Some(r) = &rule {
            put(H_RULE, r.id.clone());
            put(H_RULE_VERSION, r.version.to_string());
        }
        put(H_TOPIC, src_topic);
        put(H_PARTITION, src_partition);
        put(H_OFFSET, src_offset);
        put(H_ATTEMPTS, (previous_attempts + attempts + 1).to_string());
        put(H_FIRST_FAILURE, first_failure.to_string());
        let payload = record.payload.as_deref().unwrap_or_default();
        match self.send(&self.dlq_topic, record.key.as_deref(), payload, &headers).await {
            Ok(d) => {
                self.forget(record);
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.count("dead_lettered");
                let decision = Decision::Fail { class, message, rule };
                Ok(Routed {
                    decision,
                    delivered: vec![(self.dlq_topic.clone(), d.partition, d.offset)],
                    dead_lettered: true,
                })
            }
            // Not even the DLQ took it: not done, retried later (visible in metrics and lag).
            Err(e) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %e,
                    "dead letter not produced; the record will be retried");
                Err(self.note_retry(record, e))
            }
        }
    }
}

/// The rule-evaluation view of a record, as if it came from `topic`.
pub fn event_of<'a>(record: &'a Record, topic: &'a str) -> Event<'a> {
    Event {
        payload: record.payload.as_deref().unwrap_or_default(),
        key: record.key.as_deref(),
        headers: &record.headers,
        topic,
        partition: record.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
    }
}

/// The consumer side: partition actors hand batches here.
pub struct RouterProcessor {
    pub router: Arc<Router>,
}

/// How [`Router::start`] left a record.
pub enum Start {
    /// Outputs enqueued in order; [`Router::finish`] waits for them.
    Enqueued(Started),
    /// Evaluated to a drop or a dead letter; [`Router::settle`] completes it.
    Settle(Decision),
    /// Needs [`Router::route`]: a schema to fetch or a topic to create first.
    Route,
}

/// The outputs [`Router::start`] enqueued for one record.
pub struct Started {
    decision: Decision,
    pending: Vec<Result<Pending, ProduceError>>,
}

#[ractor::async_trait]
impl loom_kafka::Processor for RouterProcessor {
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        let set = self.router.rules();
        let router = &self.router;
        // Hot path first, in offset order: evaluate and enqueue synchronously, so a batch costs
        // no future per record and outputs keep the partition's order. Records that need to
        // await something (a schema, a topic creation, a dead letter) are completed
        // concurrently; their outputs may land after later records' outputs.
        let mut enqueued = Vec::with_capacity(batch.len());
        let mut slow = Vec::new();
        // After a record could not be enqueued (queue full), the later ones are not started:
        // they are retried after it, in order, rather than overtaking it.
        let mut held = Vec::new();
        for r in &batch {
            if !held.is_empty() {
                held.push(r.offset);
                continue;
            }
            match router.start(r, &set) {
                Start::Enqueued(s) => {
                    if s.pending.iter().any(Result::is_err) {
                        held.push(r.offset);
                    }
                    enqueued.push((r, s));
                }
                Start::Settle(decision) => {
                    slow.push(async move { (r.offset, router.settle(r, decision).await.is_err()) }.boxed())
                }
                Start::Route => slow.push(async { (r.offset, router.route(r, &set).await.is_err()) }.boxed()),
            }
        }
        let fast = async {
            let mut failed = Vec::new();
            for (r, s) in enqueued {
                if router.finish(r, s).await.is_err() {
                    failed.push(r.offset);
                }
            }
            failed
        };
        let (slow, mut failed) = futures::join!(join_all(slow), fast);
        failed.extend(slow.into_iter().filter_map(|(offset, failed)| failed.then_some(offset)));
        failed.extend(held);
        if failed.is_empty() {
            return Vec::new();
        }
        let failed: HashSet<i64> = failed.into_iter().collect();
        batch.into_iter().filter(|r| failed.contains(&r.offset)).collect()
    }
}
