//! Stream mode: a consumer-group member per policy with a `source` (group `loom-dedup.<id>`,
//! `read_committed`, no auto-commit), kept by `loom-kafka`'s sources actor; records reach
//! [`PolicyProcessor`] one batch per partition at a time. Each (policy, source partition) is a
//! [`Stream`]: the policy's engine for that partition, its checkpoint, and a transactional
//! producer with the id `loom-dedup.<policy>.<topic>.<partition>`.
//!
//! Exactly-once output (the argument in ARCHITECTURE.md, "Dedup: exactly-once output"):
//!
//! 1. **Load** (first batch after an assignment): `init_transactions` fences every earlier
//!    producer of the partition (a crashed or revoked owner: its open transaction is aborted,
//!    its later writes refused); the checkpoint (state at source offset K, output positions)
//!    is read; each output partition is **scanned** from its saved position to its end, and
//!    the newest step (`loom.dedup.step` = source offset + index of the emission) this source
//!    partition wrote there is remembered.
//! 2. **Run**: records below K are skipped (already in the state). The engine decides each
//!    record; its emissions (unique → `output.topic`, duplicate → `duplicates_topic`, late or
//!    unusable → dead letter) are numbered by step; an emission whose step is at or below the
//!    scanned one for its output partition was already written and is not written again.
//! 3. **Commit**: the emissions are produced in one transaction with the group offset of the
//!    last *saved* checkpoint (so Kafka's committed offset never passes the saved state), then
//!    committed. At most every second the checkpoint (state, K, output positions after the
//!    commit) is saved, conditional on its sequence.
//!
//! The scan reads `read_committed`, i.e. exactly what a `read_committed` consumer of the output
//! sees: on Kafka an aborted transaction is invisible to both, and its records are written
//! again; on Tansu (which shows aborted records to `read_committed` readers) the scan sees them
//! too and they are not written again. Either way each unique is seen once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loom_config::KafkaSection;
use loom_kafka::consumer::ConsumerHandle;
use loom_kafka::producer::Outgoing;
use loom_kafka::sources::Sources;
use loom_kafka::{Processor, Producer, Record, Subscription};
use loom_protocol::ServiceId;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::engine::{Kind, Origin, Verdict};
use crate::error::DedupError;
use crate::part::Part;
use crate::policy::{Keep, LateAction, MissingIdentity, Policy};
use crate::rest::Book;
use crate::stats::Stats;
use crate::store::Store;

const SERVICE: &str = "dedup";
/// Saves of a busy partition's checkpoint at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(1);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a recovery scan of one output partition may take.
const SCAN_LIMIT: Duration = Duration::from_secs(120);

/// Header names on every record stream mode writes.
pub mod headers {
    pub const POLICY: &str = "loom.dedup.policy";
    pub const SOURCE: &str = "loom.dedup.source";
    pub const OFFSET: &str = "loom.dedup.offset";
    pub const STEP: &str = "loom.dedup.step";
    pub const VERDICT: &str = "loom.dedup.verdict";
    pub const RULE: &str = "loom.dedup.rule";
    pub const SCORE: &str = "loom.dedup.score";
    pub const OF: &str = "loom.dedup.of";
    pub const FIRST_SEEN: &str = "loom.dedup.first_seen_ms";
    pub const ERROR: &str = "loom.dedup.error";
}

/// Creates a policy's source (if absent, 6 partitions) and outputs (as many partitions as the
/// source, so each source partition writes its own output partition).
pub async fn ensure_topics(kafka: &KafkaSection, policy: &Policy, source: &str) -> Result<(), DedupError> {
    let err = |e: loom_kafka::rdkafka::error::KafkaError| DedupError::Kafka(e.to_string());
    loom_kafka::admin::ensure_topics(kafka, &[source], 6).await.map_err(err)?;
    let n = loom_kafka::admin::partition_count(kafka, source).await.map_err(err)?.max(1);
    let mut outs: Vec<String> = policy.output_topic().into_iter().collect();
    outs.extend(policy.duplicates_topic());
    outs.push(policy.dead_letter_topic());
    let outs: Vec<&str> = outs.iter().map(String::as_str).collect();
    loom_kafka::admin::ensure_topics(kafka, &outs, n).await.map_err(err)
}

/// An output of one source partition: a topic and the partition it writes there.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    topic: String,
    partition: i32,
}

impl Target {
    fn name(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }
}

/// Which output an emission goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    Unique,
    Duplicates,
    DeadLetter,
}

/// One (policy, source partition) in stream mode.
pub struct Stream {
    part: Part,
    topic: String,
    partition: i32,
    producer: Producer,
    /// Unique, duplicates (if configured), dead letter.
    targets: Vec<(Out, Target)>,
    /// Per target: the newest step already written there (from the recovery scan).
    written: HashMap<String, (i64, u32)>,
    /// The source offset of the last saved checkpoint (what the group offset may commit).
    saved_offset: i64,
    committed_offset: i64,
    last_save: Instant,
    dirty: bool,
    poisoned: bool,
    gap_warned: bool,
}

type Shared = Arc<tokio::sync::Mutex<Stream>>;

struct Inner {
    book: Book,
    store: Store,
    stats: Stats,
    kafka: KafkaSection,
    streams: Mutex<HashMap<(String, String), Shared>>,
    consumers: Mutex<HashMap<String, ConsumerHandle>>,
}

/// The stream partitions of every policy with a source that this node works on.
#[derive(Clone)]
pub struct StreamSide {
    inner: Arc<Inner>,
}

fn part_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

fn step_text((offset, idx): (i64, u32)) -> String {
    format!("{offset}.{idx}")
}

fn parse_step(b: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(b).ok()?;
    let (o, i) = s.split_once('.')?;
    Some((o.parse().ok()?, i.parse().ok()?))
}

impl StreamSide {
    pub fn new(book: Book, store: Store, stats: Stats, kafka: KafkaSection) -> StreamSide {
        StreamSide {
            inner: Arc::new(Inner {
                book,
                store,
                stats,
                kafka,
                streams: Mutex::default(),
                consumers: Mutex::default(),
            }),
        }
    }

    fn forget(&self, policy: &str, part: &str) {
        if let Ok(mut m) = self.inner.streams.lock() {
            m.remove(&(policy.to_owned(), part.to_owned()));
        }
        self.inner.stats.drop_state(policy, part);
    }

    /// `/stats`: this node's stream partitions of a policy.
    pub fn status(&self, policy: &str) -> Value {
        let list: Vec<String> = self
            .inner
            .streams
            .lock()
            .map(|m| m.keys().filter(|(p, _)| p == policy).map(|(_, part)| part.clone()).collect())
            .unwrap_or_default();
        json!({"partitions_here": list})
    }

    /// Forgets every key of this node's stream partitions of a policy (admin); how many parts.
    pub async fn clear(&self, policy: &str) -> usize {
        let list: Vec<Shared> = self
            .inner
            .streams
            .lock()
            .map(|m| m.iter().filter(|((p, _), _)| p == policy).map(|(_, s)| s.clone()).collect())
            .unwrap_or_default();
        let mut n = 0;
        for s in list {
            let mut s = s.lock().await;
            s.part.engine.clear();
            if s.part.save(&self.inner.store).await.is_ok() {
                s.saved_offset = s.part.next_offset;
                n += 1;
            } else {
                s.poisoned = true;
            }
        }
        n
    }

    async fn stream(&self, policy: &str, topic: &str, partition: i32) -> Result<Shared, DedupError> {
        let part = part_name(topic, partition);
        let entry = self.inner.book.get(policy).ok_or_else(|| DedupError::NotFound(format!("policy '{policy}'")))?;
        let existing = self.inner.streams.lock().ok().and_then(|m| m.get(&(policy.to_owned(), part.clone())).cloned());
        if let Some(s) = existing {
            let usable = {
                let g = s.lock().await;
                g.part.entry.version == entry.version && !g.poisoned && !g.part.poisoned
            };
            if usable {
                return Ok(s);
            }
        }
        let s = Arc::new(tokio::sync::Mutex::new(self.load(entry, topic, partition).await?));
        if let Ok(mut m) = self.inner.streams.lock() {
            m.insert((policy.to_owned(), part), s.clone());
        }
        Ok(s)
    }

    /// Step 1 of the module doc: fence, read the checkpoint, scan the outputs.
    async fn load(&self, entry: crate::part::PolicyEntry, topic: &str, partition: i32) -> Result<Stream, DedupError> {
        let kerr = |e: loom_kafka::rdkafka::error::KafkaError| DedupError::Kafka(e.to_string());
        let id = entry.spec.id.as_str().to_owned();
        let kafka = &self.inner.kafka;
        let producer =
            Producer::transactional(kafka, SERVICE, &format!("loom-dedup.{id}.{topic}.{partition}")).map_err(kerr)?;
        producer.init_transactions(TXN_TIMEOUT).await.map_err(kerr)?;
        let part = Part::load(&self.inner.store, entry, &part_name(topic, partition)).await?;
        let policy = part.policy().clone();
        let mut targets = Vec::new();
        let mut outs = vec![(Out::Unique, policy.output_topic().unwrap_or_default())];
        outs.extend(policy.duplicates_topic().map(|t| (Out::Duplicates, t)));
        outs.push((Out::DeadLetter, policy.dead_letter_topic()));
        for (out, t) in outs {
            let n = producer.partitions(&t).await.map_err(kerr)?;
            targets.push((out, Target { topic: t, partition: partition % n }));
        }
        let mut written = HashMap::new();
        let source = part.name.clone();
        for (_, t) in &targets {
            let name = t.name();
            if written.contains_key(&name) {
                continue;
            }
            let from = part.positions.get(&name).copied().unwrap_or(0);
            let mut newest: Option<(i64, u32)> = None;
            let scanned =
                loom_kafka::admin::scan_partition(kafka, &t.topic, t.partition, from, SCAN_LIMIT, |r: &Record| {
                    if r.header(headers::POLICY) == Some(id.as_bytes())
                        && r.header(headers::SOURCE) == Some(source.as_bytes())
                        && let Some(step) = r.header(headers::STEP).and_then(parse_step)
                    {
                        newest = newest.max(Some(step));
                    }
                })
                .await
                .map_err(kerr)?;
            tracing::info!(policy = %id, part = %source, output = %name, from, scanned, newest = ?newest,
                "recovery scan of an output partition done");
            if let Some(step) = newest {
                written.insert(name, step);
            }
        }
        let saved_offset = part.next_offset;
        Ok(Stream {
            part,
            topic: topic.to_owned(),
            partition,
            producer,
            targets,
            written,
            saved_offset,
            committed_offset: -1,
            last_save: Instant::now(),
            dirty: false,
            poisoned: false,
            gap_warned: false,
        })
    }

    /// Runs one batch of one partition; `Err` returns the records for a retry.
    async fn process(&self, policy: &str, batch: Vec<Record>) -> Result<(), Vec<Record>> {
        let Some(first) = batch.first() else { return Ok(()) };
        let (topic, partition) = (first.topic.clone(), first.partition);
        let part = part_name(&topic, partition);
        let shared = match self.stream(policy, &topic, partition).await {
            Ok(s) => s,
            Err(DedupError::NotFound(_)) => return Ok(()), // policy deleted: its member stops soon
            Err(e) => {
                tracing::warn!(policy, part = %part, error = %e, "stream partition not loadable; retrying the batch");
                return Err(batch);
            }
        };
        let mut s = shared.lock().await;
        if s.poisoned || s.part.poisoned {
            drop(s);
            self.forget(policy, &part);
            return Err(batch);
        }
        let group =
            self.inner.consumers.lock().ok().and_then(|c| c.get(policy).and_then(ConsumerHandle::group_metadata));
        match self.run(&mut s, &batch, group).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(policy, part = %part, error = %e, "batch not committed; reloading from the checkpoint");
                let _ = s.producer.abort_transaction(TXN_TIMEOUT).await;
                s.poisoned = true;
                drop(s);
                self.forget(policy, &part);
                Err(batch)
            }
        }
    }

    /// Steps 2 and 3 of the module doc.
    async fn run(
        &self,
        s: &mut Stream,
        batch: &[Record],
        group: Option<loom_kafka::rdkafka::consumer::ConsumerGroupMetadata>,
    ) -> Result<(), DedupError> {
        let policy = s.part.policy().clone();
        let id = policy.id().to_owned();
        let stats = &self.inner.stats;
        let now = loom_storage::documents::now_ms();
        let mut emits: Vec<Emission> = Vec::new();
        let mut verdicts: Vec<(Verdict, usize)> = Vec::new();
        let (mut replayed, mut dead) = (0, 0);
        for r in batch {
            if r.offset < s.part.next_offset {
                replayed += 1;
                continue;
            }
            if s.part.next_offset >= 0 && r.offset > s.part.next_offset + 1 && !s.gap_warned {
                // Offsets between may be transaction markers; a large gap with a saved state
                // means the group committed past the checkpoint (node-local databases?).
                tracing::debug!(policy = %id, part = %s.part.name, from = s.part.next_offset, at = r.offset,
                    "records resume past the checkpoint's offset");
                s.gap_warned = true;
            }
            s.part.next_offset = r.offset + 1;
            s.dirty = true;
            let mut step = Steps { offset: r.offset, idx: 0 };
            let value: Result<Value, (&str, String)> = match &r.payload {
                Some(b) => serde_json::from_slice(b).map_err(|e| ("not_json", format!("not JSON: {e}"))),
                None => Err(("no_payload", "the record has no payload".into())),
            };
            let input = value.and_then(|v| policy.input(&v, r.timestamp_ms, now));
            let input = match input {
                Ok(i) if i.key.is_none() && policy.spec.missing_identity == MissingIdentity::DeadLetter => {
                    Err(("missing_identity", format!("identity field {} is missing", i.missing.unwrap_or_default())))
                }
                other => other,
            };
            let input = match input {
                Ok(i) => i,
                Err((code, message)) => {
                    dead += 1;
                    let mut h = base_headers(r, &id, &s.part.name);
                    h.push((headers::ERROR.into(), json!({"code": code, "message": message}).to_string().into_bytes()));
                    emits.push(step.next(Out::DeadLetter, r.key.clone(), r.payload.clone(), h));
                    continue;
                }
            };
            let origin = Origin::Offset { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
            let payload = (policy.spec.keep == Keep::Last).then(|| r.payload.clone().unwrap_or_default());
            let out = s.part.engine.check(&input, origin.clone(), payload, true);
            let Some(verdict) = out.verdict else { continue };
            let mut h = base_headers(r, &id, &s.part.name);
            verdict_headers(&verdict, &mut h);
            match verdict.verdict {
                Kind::Unique if policy.spec.keep == Keep::First => {
                    emits.push(step.next(Out::Unique, r.key.clone(), r.payload.clone(), h));
                }
                Kind::Unique => {} // keep: last — released when its window closes
                Kind::Duplicate | Kind::NearDuplicate => {
                    emits.push(step.next(Out::Duplicates, r.key.clone(), r.payload.clone(), h));
                }
                Kind::Late => match policy.spec.late {
                    LateAction::Pass => emits.push(step.next(Out::Unique, r.key.clone(), r.payload.clone(), h)),
                    LateAction::Drop => {}
                    LateAction::DeadLetter => {
                        dead += 1;
                        emits.push(step.next(Out::DeadLetter, r.key.clone(), r.payload.clone(), h));
                    }
                },
            }
            if let Some((of, payload)) = out.superseded {
                let mut h = origin_headers(&of, &id, &s.part.name);
                let v = Verdict { of: Some(origin.clone()), ..verdict.clone() };
                verdict_headers(&Verdict { verdict: Kind::Duplicate, ..v }, &mut h);
                emits.push(step.next(Out::Duplicates, None, Some(payload), h));
            }
            for (of, payload) in out.released {
                let mut h = origin_headers(&of, &id, &s.part.name);
                h.push((headers::VERDICT.into(), b"unique".to_vec()));
                emits.push(step.next(Out::Unique, None, Some(payload), h));
            }
            verdicts.push((verdict, out.compared));
        }
        // Emissions already written before a crash (found by the scan) are not written again.
        let mut pending = Vec::new();
        let mut began = false;
        for e in &emits {
            let Some((_, target)) = s.targets.iter().find(|(o, _)| *o == e.out) else { continue };
            let name = target.name();
            if s.written.get(&name).is_some_and(|w| (e.offset, e.idx) <= *w) {
                continue;
            }
            if !began {
                s.producer.begin_transaction().map_err(|e| DedupError::Kafka(e.to_string()))?;
                began = true;
            }
            let mut h = e.headers.clone();
            h.push((headers::STEP.into(), step_text((e.offset, e.idx)).into_bytes()));
            let p = s
                .producer
                .enqueue(Outgoing {
                    topic: &target.topic,
                    key: e.key.as_deref(),
                    payload: e.payload.as_deref(),
                    headers: &h,
                    partition: Some(target.partition),
                })
                .map_err(|e| DedupError::Kafka(e.to_string()))?;
            pending.push((name, p));
        }
        let mut positions = Vec::new();
        for (name, p) in pending {
            let d = p.acknowledged().await.map_err(|e| DedupError::Kafka(e.to_string()))?;
            positions.push((name, d.offset + 1));
        }
        commit(s, began, group).await?;
        for (name, next) in positions {
            let p = s.part.positions.entry(name).or_insert(0);
            *p = (*p).max(next);
        }
        for (v, compared) in &verdicts {
            stats.verdict(&id, &s.part.name, v, *compared);
        }
        if dead > 0 {
            stats.dead_lettered(&id, &s.part.name, dead);
        }
        if replayed > 0 {
            stats.replayed(&id, &s.part.name, replayed);
        }
        self.save_due(s).await
    }

    /// Saves the checkpoint if it changed and the last save is [`SAVE_EVERY`] old.
    async fn save_due(&self, s: &mut Stream) -> Result<(), DedupError> {
        if s.dirty && s.last_save.elapsed() >= SAVE_EVERY {
            s.part.save(&self.inner.store).await?;
            s.saved_offset = s.part.next_offset;
            s.last_save = Instant::now();
            s.dirty = false;
            self.inner.stats.state(s.part.policy().id(), &s.part.name, s.part.engine.stats());
        }
        Ok(())
    }

    /// Every second: a partition whose records stopped still gets its checkpoint saved and
    /// the group offset of that checkpoint committed (a transaction with only the offsets), so
    /// a quiet partition's progress is durable and a restart does not redo it.
    pub async fn tick_loop(self) {
        loop {
            tokio::time::sleep(SAVE_EVERY).await;
            let list: Vec<((String, String), Shared)> = self
                .inner
                .streams
                .lock()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for ((policy, part), shared) in list {
                if self.inner.book.get(&policy).is_none() {
                    self.forget(&policy, &part); // deleted: its member stops soon
                    continue;
                }
                let Ok(mut s) = shared.try_lock() else { continue }; // busy: its batch saves
                if s.poisoned || s.part.poisoned {
                    continue;
                }
                let group = self
                    .inner
                    .consumers
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&policy).and_then(ConsumerHandle::group_metadata));
                let done = match self.save_due(&mut s).await {
                    Ok(()) => commit(&mut s, false, group).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    tracing::warn!(policy, part = %part, error = %e, "idle checkpoint not committed; reloading");
                    let _ = s.producer.abort_transaction(TXN_TIMEOUT).await;
                    s.poisoned = true;
                    drop(s);
                    self.forget(&policy, &part);
                }
            }
        }
    }
}

/// Commits the open transaction (`began`), with the group offset of the last saved
/// checkpoint when that moved; opens one just for the offsets when nothing else is in it.
async fn commit(
    s: &mut Stream,
    began: bool,
    group: Option<loom_kafka::rdkafka::consumer::ConsumerGroupMetadata>,
) -> Result<(), DedupError> {
    let kerr = |e: loom_kafka::rdkafka::error::KafkaError| DedupError::Kafka(e.to_string());
    let offsets_due = s.saved_offset >= 0 && s.saved_offset > s.committed_offset && group.is_some();
    if !began && !offsets_due {
        return Ok(());
    }
    if !began {
        s.producer.begin_transaction().map_err(kerr)?;
    }
    if offsets_due && let Some(g) = group {
        s.producer
            .send_offsets_to_transaction(vec![(s.topic.clone(), s.partition, s.saved_offset)], g, TXN_TIMEOUT)
            .await
            .map_err(kerr)?;
    }
    s.producer.commit_transaction(TXN_TIMEOUT).await.map_err(kerr)?;
    if offsets_due {
        s.committed_offset = s.saved_offset;
    }
    Ok(())
}

/// One record to write, numbered by the source offset it was decided at and its index there.
struct Emission {
    out: Out,
    offset: i64,
    idx: u32,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

struct Steps {
    offset: i64,
    idx: u32,
}

impl Steps {
    fn next(
        &mut self,
        out: Out,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Emission {
        let e = Emission { out, offset: self.offset, idx: self.idx, key, payload, headers };
        self.idx += 1;
        e
    }
}

/// The input record's own headers, then where it came from.
fn base_headers(r: &Record, policy: &str, source: &str) -> Vec<(String, Vec<u8>)> {
    let mut h: Vec<(String, Vec<u8>)> =
        r.headers.iter().filter(|(k, _)| !k.starts_with("loom.dedup.")).cloned().collect();
    h.push((headers::POLICY.into(), policy.as_bytes().to_vec()));
    h.push((headers::SOURCE.into(), source.as_bytes().to_vec()));
    h.push((headers::OFFSET.into(), r.offset.to_string().into_bytes()));
    h
}

fn origin_headers(of: &Origin, policy: &str, source: &str) -> Vec<(String, Vec<u8>)> {
    let offset = match of {
        Origin::Offset { offset, .. } => offset.to_string(),
        Origin::Id { id } => id.clone(),
    };
    vec![
        (headers::POLICY.into(), policy.as_bytes().to_vec()),
        (headers::SOURCE.into(), source.as_bytes().to_vec()),
        (headers::OFFSET.into(), offset.into_bytes()),
    ]
}

fn verdict_headers(v: &Verdict, h: &mut Vec<(String, Vec<u8>)>) {
    h.push((headers::VERDICT.into(), v.verdict.name().as_bytes().to_vec()));
    h.push((headers::RULE.into(), v.rule.name().as_bytes().to_vec()));
    if let Some(score) = v.score {
        h.push((headers::SCORE.into(), format!("{score:.4}").into_bytes()));
    }
    if let Some(of) = serde_json::to_value(v).ok().and_then(|v| v.get("of").cloned()).filter(|o| !o.is_null()) {
        h.push((headers::OF.into(), of.to_string().into_bytes()));
    }
    if let Some(ms) = v.first_seen_ms {
        h.push((headers::FIRST_SEEN.into(), ms.to_string().into_bytes()));
    }
}

/// The processor of one policy's subscription.
struct PolicyProcessor {
    policy: String,
    side: StreamSide,
}

#[ractor::async_trait]
impl Processor for PolicyProcessor {
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        match self.side.process(&self.policy, batch).await {
            Ok(()) => Vec::new(),
            Err(retry) => retry,
        }
    }

    fn attached(&self, consumer: ConsumerHandle) {
        if let Ok(mut c) = self.side.inner.consumers.lock() {
            c.insert(self.policy.clone(), consumer);
        }
    }

    fn assignment_changed(&self, gained: &[(String, i32)], lost: &[(String, i32)]) {
        // A partition that moved away and back must be reloaded: another node may have
        // advanced it meanwhile. The next load fences whatever is still in flight here.
        for (t, p) in gained.iter().chain(lost) {
            self.side.forget(&self.policy, &part_name(t, *p));
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
                    service: ServiceId::Dedup.name(),
                    group: format!("loom-dedup.{id}"),
                    topics: vec![topic.clone()],
                    kafka: self.inner.kafka.clone(),
                    processor: Arc::new(PolicyProcessor { policy: id.clone(), side: self.clone() }),
                    transactional: true,
                };
                Some((id, topic, sub))
            })
            .collect()
    }

    fn changes(&self) -> watch::Receiver<i64> {
        self.inner.book.watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_order() {
        for s in [(0, 0), (41, 3), (i64::MAX, u32::MAX)] {
            assert_eq!(parse_step(step_text(s).as_bytes()), Some(s));
        }
        assert!(parse_step(b"x.1").is_none() && parse_step(b"12").is_none());
        assert!((5, 1) < (6, 0) && (5, 0) < (5, 1), "emission order is (offset, index)");
    }
}
