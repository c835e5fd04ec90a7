//! Kafka sources. A [`SourcesActor`] (supervised) keeps one consumer-group member
//! (`loom-kafka`'s `GroupMember`, linked to it, group `loom-timeseries.<job>`) per job with a
//! `source`, started and stopped as jobs come and go. Records reach [`JobProcessor`] one batch
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
use loom_kafka::consumer::{GroupMember, MemberMsg, Subscription, SubscriptionStatus};
use loom_kafka::{Processor, Record};
use loom_protocol::ServiceId;
use loom_service::Mailbox;
use loom_streams::watermark::Watermarks;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;

use crate::jobs::JobBook;
use crate::pipeline::{Item, Partition, Pipeline, RunError};
use crate::store::now_ms;

type Shared = Arc<tokio::sync::Mutex<Partition>>;

/// The partitions of every Kafka-fed job this node works on.
#[derive(Clone)]
pub struct KafkaSide {
    pub book: JobBook,
    pub pipeline: Pipeline,
    parts: Arc<Mutex<HashMap<(String, String), Shared>>>,
    marks: Arc<Mutex<HashMap<String, Watermarks<String>>>>,
}

impl KafkaSide {
    pub fn new(book: JobBook, pipeline: Pipeline) -> KafkaSide {
        KafkaSide { book, pipeline, parts: Arc::default(), marks: Arc::default() }
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

#[derive(RactorMessage)]
pub enum SourcesMsg {
    Reconcile,
}

pub struct SourcesActor {
    pub mailbox: Arc<Mailbox>,
}

pub struct SourcesArgs {
    pub side: KafkaSide,
    pub kafka: KafkaSection,
}

pub struct SourcesState {
    side: KafkaSide,
    kafka: KafkaSection,
    members: HashMap<String, (String, ActorRef<MemberMsg>)>,
    ticker: tokio::task::JoinHandle<()>,
}

#[ractor::async_trait]
impl Actor for SourcesActor {
    type Msg = SourcesMsg;
    type State = SourcesState;
    type Arguments = SourcesArgs;

    async fn pre_start(&self, me: ActorRef<SourcesMsg>, args: SourcesArgs) -> Result<SourcesState, ActorProcessingErr> {
        let mut changes = args.side.book.watch();
        let ticker = tokio::spawn(async move {
            loop {
                if me.cast(SourcesMsg::Reconcile).is_err() {
                    return;
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        Ok(SourcesState { side: args.side, kafka: args.kafka, members: HashMap::new(), ticker })
    }

    async fn post_stop(&self, _: ActorRef<SourcesMsg>, state: &mut SourcesState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        for (_, (_, m)) in state.members.drain() {
            m.stop(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<SourcesMsg>,
        msg: SourcesMsg,
        state: &mut SourcesState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SourcesMsg::Reconcile => {
                self.mailbox.handled();
                reconcile(&me, state).await;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<SourcesMsg>,
        event: SupervisionEvent,
        state: &mut SourcesState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorFailed(cell, why) => {
                loom_kafka::count_error(ServiceId::TimeseriesAggregator.name(), "member_failed");
                tracing::error!(error = %why, "a job's consumer-group member failed; it restarts at the next reconcile");
                cell.get_id()
            }
            SupervisionEvent::ActorTerminated(cell, ..) => cell.get_id(),
            _ => return Ok(()),
        };
        state.members.retain(|_, (_, m)| m.get_id() != cell);
        Ok(())
    }
}

async fn reconcile(me: &ActorRef<SourcesMsg>, state: &mut SourcesState) {
    let wanted: HashMap<String, String> = state
        .side
        .book
        .all()
        .iter()
        .filter_map(|j| j.spec.source.as_ref().map(|s| (j.spec.id.clone(), s.topic.clone())))
        .collect();
    let gone: Vec<String> = state
        .members
        .iter()
        .filter(|(id, (topic, _))| wanted.get(*id) != Some(topic))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        if let Some((_, m)) = state.members.remove(&id) {
            m.stop(Some("job removed or its source changed".into()));
        }
    }
    for (id, topic) in wanted {
        if state.members.contains_key(&id) {
            continue;
        }
        let sub = Subscription {
            service: ServiceId::TimeseriesAggregator.name(),
            group: format!("loom-timeseries.{id}"),
            topics: vec![topic.clone()],
            kafka: state.kafka.clone(),
            processor: Arc::new(JobProcessor { job: id.clone(), side: state.side.clone() }),
        };
        let member = GroupMember { subscription: sub, status: Arc::new(SubscriptionStatus::default()) };
        match Actor::spawn_linked(None, member, (), me.get_cell()).await {
            Ok((actor, _)) => {
                tracing::info!(job = %id, %topic, "job source started");
                state.members.insert(id, (topic, actor));
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "job source did not start; retrying at the next reconcile"),
        }
    }
}
