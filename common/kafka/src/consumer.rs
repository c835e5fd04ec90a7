//! Consumer-group members and partition actors.
//!
//! ```text
//! GroupMember actor (one per subscription; owns the consumer, supervised by the service)
//!   ├─ poll task: consumer.recv() → Batch ─────────────┐   rebalance callbacks → Assign / Revoke
//!   │                                                   ▼   (same mailbox, so in order)
//!   └─ PartitionActor per assigned partition (linked): queue → Processor (one batch at a time,
//!        records kept in offset order) → Done → OffsetTracker → store_offsets(first not done)
//! ```
//!
//! Backpressure: a partition with `kafka.max_in_flight_per_partition` records received and not
//! done is paused (librdkafka stops fetching it) and resumed at half. Revoked partitions' actors
//! are stopped; their unfinished records were never stored, so the next owner reads them again.
//! A partition actor that fails is restarted after the consumer seeks back to its committable
//! offset. Offsets are committed by librdkafka (auto-commit of stored offsets only).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use loom_config::KafkaSection;
use loom_telemetry::names;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::offsets::OffsetTracker;
use crate::{Record, client_config, count_error};

/// Records handed to the processor at once.
const BATCH_MAX: usize = 2000;
/// Backoff between attempts of records the processor asked to retry.
const RETRY_BACKOFF: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// What a service does with consumed records.
#[ractor::async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Processes one partition's records, in offset order. Every record not returned is done
    /// (its effects are durable: produced and acknowledged, or dead-lettered); returned records
    /// are retried later, in order, and hold back the partition's commits until they are done.
    async fn process(&self, batch: Vec<Record>) -> Vec<Record>;

    /// Called once the member's consumer exists, with a handle for processors that commit
    /// offsets themselves (`Subscription::transactional`: in their producer's transaction).
    fn attached(&self, _consumer: ConsumerHandle) {}

    /// Called on every rebalance with the partitions gained and lost, before their actors
    /// start or after they stop: partition state cached in the processor must be reloaded.
    fn assignment_changed(&self, _gained: &[(String, i32)], _lost: &[(String, i32)]) {}
}

/// What a processor may do with the member's consumer.
#[derive(Clone)]
pub struct ConsumerHandle {
    consumer: Arc<GroupConsumer>,
}

impl ConsumerHandle {
    /// The group's generation and member id, for `send_offsets_to_transaction`.
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }
}

/// One consumer-group subscription.
#[derive(Clone)]
pub struct Subscription {
    /// The service the metrics are reported under.
    pub service: &'static str,
    pub group: String,
    pub topics: Vec<String>,
    pub kafka: KafkaSection,
    pub processor: Arc<dyn Processor>,
    /// Read-process-write with transactions: the consumer reads `read_committed` and never
    /// commits by itself; the processor commits offsets inside its producer's transactions.
    pub transactional: bool,
}

/// Live facts about a subscription, for readiness and `/stats`.
#[derive(Debug, Default)]
pub struct SubscriptionStatus {
    pub assigned: Mutex<Vec<(String, i32)>>,
    pub rebalances: AtomicUsize,
    pub consumed: AtomicUsize,
    pub joined: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl SubscriptionStatus {
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.assigned.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[derive(RactorMessage)]
pub enum MemberMsg {
    Assign(Vec<(String, i32)>),
    Revoke(Vec<(String, i32)>),
    Batch(Vec<Record>),
}

#[derive(RactorMessage)]
pub enum PartitionMsg {
    Records(Vec<Record>),
    Done { offsets: Vec<i64>, retry: Vec<Record> },
    RetryNow,
}

struct MemberContext {
    me: ActorRef<MemberMsg>,
    service: &'static str,
}

fn tpl_pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            metrics::counter!(names::KAFKA_REBALANCES, "service" => self.service, "kind" => "revoke").increment(1);
            let _ = self.me.cast(MemberMsg::Revoke(tpl_pairs(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                metrics::counter!(names::KAFKA_REBALANCES, "service" => self.service, "kind" => "assign").increment(1);
                let _ = self.me.cast(MemberMsg::Assign(tpl_pairs(tpl)));
            }
            Rebalance::Error(e) => {
                metrics::counter!(names::KAFKA_REBALANCES, "service" => self.service, "kind" => "error").increment(1);
                tracing::warn!(service = self.service, error = %e, "consumer-group rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

type GroupConsumer = StreamConsumer<MemberContext>;

/// The consumer-group member actor of one subscription.
pub struct GroupMember {
    pub subscription: Subscription,
    pub status: Arc<SubscriptionStatus>,
}

pub struct MemberState {
    consumer: Arc<GroupConsumer>,
    poll: tokio::task::JoinHandle<()>,
    lag: tokio::task::JoinHandle<()>,
    partitions: HashMap<(String, i32), ActorRef<PartitionMsg>>,
    /// The committable offset each partition actor last stored, for restarts.
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

/// Starts a subscription's member actor, unsupervised (tests, tools). Services start it under
/// their supervisor through `loom_service::actor_child` with a [`GroupMember`].
pub async fn start_subscription(
    subscription: Subscription,
) -> Result<(ActorRef<MemberMsg>, Arc<SubscriptionStatus>), ActorProcessingErr> {
    let status = Arc::new(SubscriptionStatus::default());
    let (actor, _) = Actor::spawn(None, GroupMember { subscription, status: status.clone() }, ()).await?;
    Ok((actor, status))
}

#[ractor::async_trait]
impl Actor for GroupMember {
    type Msg = MemberMsg;
    type State = MemberState;
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<MemberMsg>, _: ()) -> Result<MemberState, ActorProcessingErr> {
        let s = &self.subscription;
        let kafka = &s.kafka;
        let consumer: GroupConsumer = client_config(kafka, &format!("loom-{}", s.service))
            .set("group.id", &s.group)
            .set("enable.auto.commit", if s.transactional { "false" } else { "true" })
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", kafka.commit_interval.get().as_millis().to_string())
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", kafka.session_timeout.get().as_millis().to_string())
            .set("heartbeat.interval.ms", kafka.heartbeat_interval.get().as_millis().to_string())
            .set("partition.assignment.strategy", "range")
            // bounds librdkafka's prefetch per partition (with pause, the memory bound)
            .set("queued.max.messages.kbytes", "8192")
            .create_with_context(MemberContext { me: me.clone(), service: s.service })?;
        let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let consumer = Arc::new(consumer);
        s.processor.attached(ConsumerHandle { consumer: consumer.clone() });
        let poll = tokio::spawn(poll_loop(consumer.clone(), me, s.service, self.status.clone()));
        let committed: Arc<Mutex<HashMap<(String, i32), i64>>> = Default::default();
        let lag = tokio::spawn(lag_loop(consumer.clone(), committed.clone(), s.service));
        tracing::info!(service = s.service, group = %s.group, topics = ?s.topics, "consumer-group member started");
        Ok(MemberState { consumer, poll, lag, partitions: HashMap::new(), committed })
    }

    async fn post_stop(&self, _: ActorRef<MemberMsg>, state: &mut MemberState) -> Result<(), ActorProcessingErr> {
        state.poll.abort();
        state.lag.abort();
        for (_, p) in state.partitions.drain() {
            p.stop(None);
        }
        self.status.joined.store(false, Ordering::Relaxed);
        let consumer = state.consumer.clone();
        // Closing leaves the group and auto-commits the *stored* offsets (records done); it
        // blocks, so off the runtime. Never commit the consumer's position here: that would
        // pass records still in flight.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<MemberMsg>,
        msg: MemberMsg,
        state: &mut MemberState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MemberMsg::Assign(list) => {
                self.subscription.processor.assignment_changed(&list, &[]);
                for tp in list {
                    self.spawn_partition(&me, state, tp).await?;
                }
                self.status.joined.store(true, Ordering::Relaxed);
                self.status.rebalances.fetch_add(1, Ordering::Relaxed);
            }
            MemberMsg::Revoke(list) => {
                for tp in &list {
                    if let Some(actor) = state.partitions.remove(tp) {
                        actor.stop(Some("partition revoked".into()));
                    }
                    state.committed.lock().map(|mut c| c.remove(tp)).ok();
                }
                self.subscription.processor.assignment_changed(&[], &list);
                self.status.rebalances.fetch_add(1, Ordering::Relaxed);
            }
            MemberMsg::Batch(records) => {
                // A handful of partitions per batch: a linear scan, no key allocation per record.
                let mut by_partition: Vec<((String, i32), Vec<Record>)> = Vec::new();
                for r in records {
                    match by_partition.iter_mut().find(|((t, p), _)| *p == r.partition && *t == r.topic) {
                        Some((_, batch)) => batch.push(r),
                        None => by_partition.push(((r.topic.clone(), r.partition), vec![r])),
                    }
                }
                for (tp, batch) in by_partition {
                    if !state.partitions.contains_key(&tp) {
                        // A record can only come from an assigned partition; be safe anyway.
                        self.spawn_partition(&me, state, tp.clone()).await?;
                    }
                    if let Some(actor) = state.partitions.get(&tp) {
                        let _ = actor.cast(PartitionMsg::Records(batch));
                    }
                }
            }
        }
        self.publish_assignment(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<MemberMsg>,
        event: SupervisionEvent,
        state: &mut MemberState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, why) = event else { return Ok(()) };
        let Some(tp) = state.partitions.iter().find(|(_, a)| a.get_id() == cell.get_id()).map(|(tp, _)| tp.clone())
        else {
            return Ok(());
        };
        count_error(self.subscription.service, "partition_failed");
        tracing::error!(service = self.subscription.service, topic = %tp.0, partition = tp.1, error = %why,
            "partition actor failed; seeking back to its committable offset and restarting it");
        state.partitions.remove(&tp);
        let from = state.committed.lock().ok().and_then(|c| c.get(&tp).copied());
        if let Some(offset) = from {
            let consumer = state.consumer.clone();
            let (topic, partition) = tp.clone();
            let _ = tokio::task::spawn_blocking(move || {
                consumer.seek(&topic, partition, Offset::Offset(offset), Timeout::After(Duration::from_secs(5)))
            })
            .await;
        }
        self.spawn_partition(&me, state, tp).await
    }
}

impl GroupMember {
    async fn spawn_partition(
        &self,
        me: &ActorRef<MemberMsg>,
        state: &mut MemberState,
        tp: (String, i32),
    ) -> Result<(), ActorProcessingErr> {
        if state.partitions.contains_key(&tp) {
            return Ok(());
        }
        let s = &self.subscription;
        let actor = PartitionActor {
            service: s.service,
            topic: tp.0.clone(),
            partition: tp.1,
            consumer: state.consumer.clone(),
            processor: s.processor.clone(),
            max_in_flight: s.kafka.max_in_flight_per_partition,
            committed: state.committed.clone(),
        };
        let (child, _) = Actor::spawn_linked(None, actor, (), me.get_cell()).await?;
        state.partitions.insert(tp, child);
        Ok(())
    }

    fn publish_assignment(&self, state: &MemberState) {
        let mut list: Vec<(String, i32)> = state.partitions.keys().cloned().collect();
        list.sort();
        metrics::gauge!(names::KAFKA_ASSIGNED, "service" => self.subscription.service).set(list.len() as f64);
        if let Ok(mut a) = self.status.assigned.lock() {
            *a = list;
        }
    }
}

async fn poll_loop(
    consumer: Arc<GroupConsumer>,
    me: ActorRef<MemberMsg>,
    service: &'static str,
    status: Arc<SubscriptionStatus>,
) {
    let mut last_logged: Option<std::time::Instant> = None;
    loop {
        let first = consumer.recv().await;
        let mut batch = Vec::new();
        match first {
            Ok(m) => batch.push(Record::from_message(&m)),
            Err(e) => {
                poll_error(service, &status, &e, &mut last_logged);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // Take whatever else is ready without waiting.
        while batch.len() < BATCH_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(Record::from_message(&m)),
                Some(Err(e)) => {
                    poll_error(service, &status, &e, &mut last_logged);
                    break;
                }
                None => break,
            }
        }
        status.consumed.fetch_add(batch.len(), Ordering::Relaxed);
        if me.cast(MemberMsg::Batch(batch)).is_err() {
            return;
        }
    }
}

/// Every 5 s: lag = high watermark − committable offset, per partition this member works on.
async fn lag_loop(
    consumer: Arc<GroupConsumer>,
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
    service: &'static str,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let positions: Vec<((String, i32), i64)> =
            committed.lock().map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
        let consumer = consumer.clone();
        let lags = tokio::task::spawn_blocking(move || {
            positions
                .into_iter()
                .filter_map(|((topic, partition), next)| {
                    let (_, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(1)).ok()?;
                    Some((topic, partition, (high - next).max(0)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (topic, partition, lag) in lags {
            metrics::gauge!(names::KAFKA_LAG, "service" => service, "topic" => topic, "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
}

fn poll_error(
    service: &'static str,
    status: &SubscriptionStatus,
    e: &KafkaError,
    last_logged: &mut Option<std::time::Instant>,
) {
    count_error(service, "consume");
    if let Ok(mut last) = status.last_error.lock() {
        *last = Some(e.to_string());
    }
    if last_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        *last_logged = Some(std::time::Instant::now());
        tracing::warn!(service, error = %e, "consumer error (librdkafka retries; repeated errors are logged every 10 s)");
    }
}

/// The actor of one assigned partition.
struct PartitionActor {
    service: &'static str,
    topic: String,
    partition: i32,
    consumer: Arc<GroupConsumer>,
    processor: Arc<dyn crate::Processor>,
    max_in_flight: usize,
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

struct PartitionState {
    tracker: OffsetTracker,
    queue: VecDeque<Record>,
    busy: bool,
    paused: bool,
    attempts: usize,
}

#[ractor::async_trait]
impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionState;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<PartitionMsg>, _: ()) -> Result<PartitionState, ActorProcessingErr> {
        tracing::debug!(service = self.service, topic = %self.topic, partition = self.partition, "partition assigned");
        Ok(PartitionState {
            tracker: OffsetTracker::default(),
            queue: VecDeque::new(),
            busy: false,
            paused: false,
            attempts: 0,
        })
    }

    async fn post_stop(&self, _: ActorRef<PartitionMsg>, state: &mut PartitionState) -> Result<(), ActorProcessingErr> {
        if state.paused {
            self.set_paused(false);
        }
        let labels = [
            ("service", self.service.to_owned()),
            ("topic", self.topic.clone()),
            ("partition", self.partition.to_string()),
        ];
        metrics::gauge!(names::KAFKA_IN_FLIGHT, &labels).set(0.0);
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<PartitionMsg>,
        msg: PartitionMsg,
        state: &mut PartitionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionMsg::Records(records) => {
                let bytes: usize = records.iter().map(Record::len).sum();
                let labels = [
                    ("service", self.service.to_owned()),
                    ("topic", self.topic.clone()),
                    ("partition", self.partition.to_string()),
                ];
                metrics::counter!(names::KAFKA_CONSUMED, &labels).increment(records.len() as u64);
                metrics::counter!(names::KAFKA_CONSUMED_BYTES, "service" => self.service, "topic" => self.topic.clone())
                    .increment(bytes as u64);
                for r in records {
                    state.tracker.start(r.offset);
                    state.queue.push_back(r);
                }
                if !state.paused && state.tracker.in_flight() >= self.max_in_flight {
                    state.paused = true;
                    self.set_paused(true);
                    metrics::counter!(names::KAFKA_PAUSES, &labels).increment(1);
                }
            }
            PartitionMsg::Done { offsets, retry } => {
                state.busy = false;
                for o in offsets {
                    state.tracker.finish(o);
                }
                if retry.is_empty() {
                    state.attempts = 0;
                } else {
                    // Put them back in front, in order, and try again after a backoff.
                    count_error(self.service, "retry");
                    for r in retry.into_iter().rev() {
                        state.queue.push_front(r);
                    }
                    let delay = RETRY_BACKOFF[state.attempts.min(RETRY_BACKOFF.len() - 1)];
                    state.attempts += 1;
                    state.busy = true; // nothing else runs before the retry
                    me.send_after(delay, || PartitionMsg::RetryNow);
                }
                self.store(state);
                if state.paused && state.tracker.in_flight() <= self.max_in_flight / 2 {
                    state.paused = false;
                    self.set_paused(false);
                }
            }
            PartitionMsg::RetryNow => state.busy = false,
        }
        if !state.busy && !state.queue.is_empty() {
            let n = state.queue.len().min(BATCH_MAX);
            let batch: Vec<Record> = state.queue.drain(..n).collect();
            state.busy = true;
            let processor = self.processor.clone();
            let me = me.clone();
            tokio::spawn(async move {
                let offsets: Vec<i64> = batch.iter().map(|r| r.offset).collect();
                let retry = std::panic::AssertUnwindSafe(processor.process(batch)).catch_unwind().await;
                match retry {
                    Ok(retry) => {
                        let retried: std::collections::HashSet<i64> = retry.iter().map(|r| r.offset).collect();
                        let offsets = offsets.into_iter().filter(|o| !retried.contains(o)).collect();
                        let _ = me.cast(PartitionMsg::Done { offsets, retry });
                    }
                    // A processor must not panic; if it does, the partition restarts from its
                    // committable offset (nothing of the batch was stored).
                    Err(_) => me.stop(Some("the processor panicked".into())),
                }
            });
        }
        let labels = [
            ("service", self.service.to_owned()),
            ("topic", self.topic.clone()),
            ("partition", self.partition.to_string()),
        ];
        metrics::gauge!(names::KAFKA_IN_FLIGHT, &labels).set(state.tracker.in_flight() as f64);
        Ok(())
    }
}

impl PartitionActor {
    fn tpl(&self, offset: Offset) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&self.topic, self.partition, offset);
        tpl
    }

    fn set_paused(&self, pause: bool) {
        let tpl = self.tpl(Offset::Invalid);
        let result = if pause { self.consumer.pause(&tpl) } else { self.consumer.resume(&tpl) };
        if let Err(e) = result {
            tracing::warn!(topic = %self.topic, partition = self.partition, pause, error = %e, "pause/resume failed");
        }
    }

    /// Stores the committable offset for the next auto-commit (only when it moved).
    fn store(&self, state: &mut PartitionState) {
        let Some(next) = state.tracker.advance() else { return };
        if let Ok(mut c) = self.committed.lock() {
            c.insert((self.topic.clone(), self.partition), next);
        }
        let labels = [
            ("service", self.service.to_owned()),
            ("topic", self.topic.clone()),
            ("partition", self.partition.to_string()),
        ];
        metrics::gauge!(names::KAFKA_COMMITTABLE, &labels).set(next as f64);
        if let Err(e) = self.consumer.store_offsets(&self.tpl(Offset::Offset(next))) {
            // After a revoke the partition is no longer ours: its next owner reads it again.
            tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "offset not stored");
        }
    }
}
