//! Replays: re-read the DLQ or any topic over an offset or time range, optionally filtered by a
//! CEL condition, either back through the router (evaluated with the current rules) or straight
//! to a target topic, at a bounded rate; or only count (`dry_run`). A job is a row in
//! `er_replays`: its runner saves per-partition progress every second, stops when the row is
//! cancelled, and a restarted node (or any node, once the owner's heartbeat is 30 s stale) claims
//! and resumes it from the saved offsets — records since the last save may be replayed twice
//! (at least once). A job ends at `to_offset`/`to_time` (default: its creation time, so dead
//! letters the replay itself produces are not replayed again) or after 3 s without records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loom_kafka::admin::{Start, TopicReader};
use loom_kafka::producer::Outgoing;
use serde::{Deserialize, Serialize};

use crate::error::RouterError;
use crate::router::Router;
use crate::rules::{Filter, compile_filter};
use crate::store::{Store, now_ms, replays};

pub const MAX_RATE: u32 = 100_000;
const IDLE_END: Duration = Duration::from_secs(3);
pub const STALE_MS: i64 = 30_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// `"dlq"` or a topic name.
    pub source: String,
    /// `"router"` (re-evaluate with the current rules) or a topic name.
    #[serde(default = "router_target")]
    pub target: String,
    #[serde(default)]
    pub from_offset: Option<i64>,
    /// Exclusive, per partition.
    #[serde(default)]
    pub to_offset: Option<i64>,
    #[serde(default)]
    pub from_time: Option<i64>,
    #[serde(default)]
    pub to_time: Option<i64>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    #[serde(default)]
    pub dry_run: bool,
}

fn router_target() -> String {
    "router".into()
}
fn default_rate() -> u32 {
    1000
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Next offset to read, per partition.
    pub next: BTreeMap<i32, i64>,
    pub scanned: u64,
    pub matched: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    pub to_time: i64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayView {
    pub id: String,
    pub state: String,
    pub spec: ReplaySpec,
    pub progress: Progress,
    pub node: String,
    pub created_ms: i64,
    pub error: Option<String>,
}

pub fn view(row: &replays::Model) -> ReplayView {
    ReplayView {
        id: row.id.clone(),
        state: row.state.clone(),
        spec: serde_json::from_str(&row.spec).unwrap_or_else(|_| ReplaySpec {
            source: "?".into(),
            target: "?".into(),
            from_offset: None,
            to_offset: None,
            from_time: None,
            to_time: None,
            filter: None,
            rate_per_sec: 0,
            dry_run: false,
        }),
        progress: serde_json::from_str(&row.progress).unwrap_or_default(),
        node: row.node.clone(),
        created_ms: row.created_ms,
        error: row.error.clone(),
    }
}

#[derive(Clone)]
pub struct Replays {
    pub store: Store,
    pub router: Arc<Router>,
    pub node: String,
}

impl Replays {
    /// A job by id, or 404.
    pub async fn job(&self, id: &str) -> Result<replays::Model, RouterError> {
        self.store.replay(id).await?.ok_or_else(|| RouterError::NotFound(format!("replay '{id}'")))
    }

    pub fn check(&self, spec: &ReplaySpec) -> Result<(), RouterError> {
        let topic_ok = |t: &str| t == "dlq" || crate::rules::topic_ok(t);
        if !topic_ok(&spec.source) {
            return Err(RouterError::Invalid(format!("source '{}' is neither \"dlq\" nor a topic name", spec.source)));
        }
        if spec.target != "router" && !crate::rules::topic_ok(&spec.target) {
            return Err(RouterError::Invalid(format!(
                "target '{}' is neither \"router\" nor a topic name",
                spec.target
            )));
        }
        if spec.rate_per_sec == 0 || spec.rate_per_sec > MAX_RATE {
            return Err(RouterError::Invalid(format!("rate_per_sec must be 1..={MAX_RATE}")));
        }
        if spec.from_offset.is_some() && spec.from_time.is_some() {
            return Err(RouterError::Invalid("give from_offset or from_time, not both".into()));
        }
        if let Some(f) = &spec.filter {
            compile_filter(f).map_err(RouterError::BadRule)?;
        }
        Ok(())
    }

    pub async fn create(&self, spec: ReplaySpec) -> Result<ReplayView, RouterError> {
        self.check(&spec)?;
        if self.router.kafka.is_none() {
            return Err(RouterError::KafkaOff);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let created = now_ms();
        let progress = Progress { to_time: spec.to_time.unwrap_or(created), ..Progress::default() };
        let row = replays::Model {
            id: id.clone(),
            spec: serde_json::to_string(&spec).map_err(|e| RouterError::Invalid(e.to_string()))?,
            state: "running".into(),
            progress: serde_json::to_string(&progress).unwrap_or_default(),
            node: self.node.clone(),
            heartbeat_ms: created,
            created_ms: created,
            error: None,
        };
        self.store.insert_replay(row.clone()).await?;
        tokio::spawn(self.clone().run(row.clone()));
        Ok(view(&row))
    }

    /// Claims this node's unfinished jobs (after a restart) and orphans, every 10 s.
    pub async fn resume_loop(self) {
        let mut own = true;
        loop {
            let claimed = self.store.claim_orphans(&self.node, own, STALE_MS).await;
            own = false;
            match claimed {
                Ok(jobs) => {
                    for job in jobs {
                        tracing::info!(replay = %job.id, "resuming replay");
                        tokio::spawn(self.clone().run(job));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "replay claim failed"),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    async fn run(self, row: replays::Model) {
        let id = row.id.clone();
        let outcome = self.run_inner(&row).await;
        let (state, error) = match &outcome {
            Ok(Some(_)) => ("completed", None),
            Ok(None) => return, // cancelled or taken over: the row says so already
            Err(e) => ("failed", Some(e.clone())),
        };
        let progress = match outcome {
            Ok(Some(p)) => serde_json::to_string(&p).unwrap_or_default(),
            _ => self.store.replay(&id).await.ok().flatten().map(|r| r.progress).unwrap_or_default(),
        };
        if let Err(e) = self.finish(&id, state, &progress, error.as_deref()).await {
            tracing::warn!(replay = %id, error = %e, "could not record the end of a replay");
        }
    }

    async fn finish(&self, id: &str, state: &str, progress: &str, error: Option<&str>) -> Result<(), sea_orm::DbErr> {
        // Save the last progress as running, then flip the state (only if still ours).
        if self.store.save_replay(id, &self.node, "running", progress, error).await? {
            self.store.save_replay(id, &self.node, state, progress, error).await?;
        }
        Ok(())
    }

    /// Runs a job; `Ok(None)` when it was cancelled or another node took it over.
    async fn run_inner(&self, row: &replays::Model) -> Result<Option<Progress>, String> {
        let spec: ReplaySpec = serde_json::from_str(&row.spec).map_err(|e| format!("bad stored spec: {e}"))?;
        let mut progress: Progress = serde_json::from_str(&row.progress).unwrap_or_default();
        let kafka = self.router.kafka.clone().ok_or("the Kafka bridge is off")?;
        let filter: Option<Filter> = match &spec.filter {
            Some(f) => Some(compile_filter(f).map_err(|e| e.to_string())?),
            None => None,
        };
        let source = if spec.source == "dlq" { self.router.dlq_topic.clone() } else { spec.source.clone() };
        let start = if !progress.next.is_empty() {
            Start::Offsets(progress.next.clone())
        } else if let Some(t) = spec.from_time {
            Start::Time(t)
        } else if let Some(o) = spec.from_offset {
            Start::Offsets((0..1024).map(|p| (p, o)).collect())
        } else {
            Start::Beginning
        };
        let reader = {
            let (kafka, topic, start) = (kafka.clone(), source.clone(), start.clone());
            tokio::task::spawn_blocking(move || TopicReader::open(&kafka, &topic, &start))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot read {source}: {e}"))?
        };
        if spec.target != "router" && !spec.dry_run {
            self.router.ensure_topic(&spec.target).await.map_err(|e| e.to_string())?;
        }
        let set = self.router.rules();
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut last_save = Instant::now();
        let mut done_partitions = std::collections::BTreeSet::new();
        loop {
            if done_partitions.len() == reader.partitions.len() {
                break;
            }
            let Some(next) = reader.next(IDLE_END).await else { break };
            let record = next.map_err(|e| format!("reading {source}: {e}"))?;
            let beyond = spec.to_offset.is_some_and(|o| record.offset >= o)
                || record.timestamp_ms.is_some_and(|t| t > progress.to_time);
            if beyond {
                done_partitions.insert(record.partition);
                continue;
            }
            if done_partitions.contains(&record.partition) {
                continue;
            }
            progress.scanned += 1;
            progress.next.insert(record.partition, record.offset + 1);
            let event = crate::router::event_of(&record, &record.topic);
            let wanted = match &filter {
                Some(f) => f.matches(&event).unwrap_or(false),
                None => true,
            };
            if !wanted {
                progress.skipped += 1;
            } else {
                progress.matched += 1;
                if !spec.dry_run {
                    self.deliver(&spec, &record, &set, &mut progress).await?;
                    sent += 1;
                    // Pace to the rate limit.
                    let due = Duration::from_secs_f64(sent as f64 / f64::from(spec.rate_per_sec));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            if last_save.elapsed() > Duration::from_secs(1) {
                last_save = Instant::now();
                let text = serde_json::to_string(&progress).unwrap_or_default();
                match self.store.save_replay(&row.id, &self.node, "running", &text, None).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(None),
                    Err(e) => tracing::warn!(replay = %row.id, error = %e, "replay progress not saved"),
                }
            }
        }
        Ok(Some(progress))
    }

    async fn deliver(
        &self,
        spec: &ReplaySpec,
        record: &loom_kafka::Record,
        set: &crate::rules::RuleSet,
        progress: &mut Progress,
    ) -> Result<(), String> {
        let mut attempt = 0;
        loop {
            let outcome = if spec.target == "router" {
                self.router.route(record, set).await.map(|r| r.dead_lettered)
            } else {
                let producer = self.router.producer.as_ref().ok_or("the Kafka bridge is off")?;
                let headers: Vec<(String, Vec<u8>)> =
                    record.headers.iter().filter(|(k, _)| !k.starts_with("loom.")).cloned().collect();
                producer
                    .send(Outgoing {
                        topic: &spec.target,
                        key: record.key.as_deref(),
                        payload: record.payload.as_deref(),
                        headers: &headers,
                        partition: None,
                    })
                    .await
                    .map(|_| false)
            };
            match outcome {
                Ok(true) => progress.dead_lettered += 1,
                Ok(false) => progress.delivered += 1,
                Err(e) if e.transient() && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    continue;
                }
                Err(e) => return Err(format!("delivery failed at {}/{}: {e}", record.partition, record.offset)),
            }
            return Ok(());
        }
    }
}
