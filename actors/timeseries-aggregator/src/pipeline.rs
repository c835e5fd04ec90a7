//! One partition's run: events in, results out, exactly once. A [`Partition`] is a job's
//! engine for one source partition (`topic/partition`) or for its REST feed (`rest`), with the
//! checkpoint sequence and the next source offset it has absorbed. [`Pipeline::run`]:
//!
//! 1. skips records below the checkpoint's offset (already in the state), prepares the rest
//!    (dead letters for unusable ones), feeds the engine and collects emissions and late records;
//! 2. produces late records, dead letters and Kafka-sink results and waits for the broker;
//! 3. writes results (`ts_windows`, the job's PostgreSQL table) and the new checkpoint (engine
//!    snapshot + next offset) in **one database transaction**, conditional on the checkpoint
//!    sequence it started from;
//! 4. publishes the results to the live feed.
//!
//! Any failure before the commit leaves the database as it was: the caller drops the in-memory
//! partition and redoes the records from the checkpoint. Kafka records produced before a failed
//! commit are produced again on the redo, identical (same key, window and version).

use std::sync::Arc;

use loom_kafka::{Producer, Record};
use loom_streams::time::rfc3339;
use loom_streams::{Emission, Engine, Snapshot};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::TsError;
use crate::hub::Hub;
use crate::sinks::{OutRecord, PgSink, SinkRow, forward, produce_all};
use crate::spec::{DeadLetter, Job};
use crate::stats::Stats;
use crate::store::{Checkpoint, Saved, Store, WindowRow, now_ms};

/// A job's engine for one partition and where its checkpoint stands.
pub struct Partition {
    pub job: Arc<Job>,
    pub part: String,
    pub engine: Engine,
    pub seq: i64,
    pub next_offset: i64,
    pub last_active_ms: i64,
    /// Set when a run or tick failed after changing the engine: the partition must be reloaded
    /// from its checkpoint, never used again (a task waiting on its lock checks this).
    pub poisoned: bool,
}

/// One input record: parsed JSON (or why not), its offset and Kafka record (if any).
pub struct Item<'a> {
    pub offset: i64,
    pub value: Result<Value, String>,
    pub record_ms: Option<i64>,
    pub record: Option<&'a Record>,
}

/// What happened to a run's events, for the REST answer and `/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub accepted: usize,
    pub skipped: usize,
    pub late: Vec<LateItem>,
    pub rejected: Vec<Rejection>,
    pub emitted: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LateItem {
    pub index: usize,
    pub window_start: String,
    pub window_end: String,
    pub watermark: String,
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub producer: Option<Producer>,
    pub pg: Option<PgSink>,
    pub hub: Hub,
    pub stats: Stats,
}

/// The run could not commit because another writer moved the checkpoint: reload and redo.
#[derive(Debug)]
pub enum RunError {
    Stale,
    Failed(TsError),
}

impl From<TsError> for RunError {
    fn from(e: TsError) -> Self {
        RunError::Failed(e)
    }
}

impl From<sea_orm::DbErr> for RunError {
    fn from(e: sea_orm::DbErr) -> Self {
        RunError::Failed(e.into())
    }
}

impl Pipeline {
    /// Loads a partition from its checkpoint (a checkpoint of another job version starts empty,
    /// from the same offset).
    pub async fn load(&self, job: Arc<Job>, part: &str) -> Result<Partition, TsError> {
        let cp = self.store.checkpoint(&job.spec.id, part).await?;
        let now = now_ms();
        let (engine, seq, next_offset) = match cp {
            Some(cp) if cp.job_version == job.version => {
                let snap: Snapshot = serde_json::from_str(&cp.state)
                    .map_err(|e| TsError::Store(format!("checkpoint of {}/{part} unreadable: {e}", job.spec.id)))?;
                (Engine::restore(job.engine.clone(), snap, now), cp.seq, cp.next_offset)
            }
            // Another version of the job: open windows start again, but the watermark carries
            // over, so windows already emitted final stay closed.
            Some(cp) => {
                let mut engine = Engine::new(job.engine.clone());
                if let Ok(snap) = serde_json::from_str::<Snapshot>(&cp.state) {
                    engine.set_floor(snap.watermark());
                }
                (engine, cp.seq, cp.next_offset)
            }
            None => (Engine::new(job.engine.clone()), 0, 0),
        };
        Ok(Partition { job, part: part.to_owned(), engine, seq, next_offset, last_active_ms: now, poisoned: false })
    }

    /// Runs records through a partition and commits (see the module doc).
    pub async fn run(&self, p: &mut Partition, items: Vec<Item<'_>>) -> Result<Report, RunError> {
        let now = now_ms();
        let job = p.job.clone();
        let mut report = Report::default();
        let mut out: Vec<OutRecord> = Vec::new();
        let mut next_offset = p.next_offset;
        for (index, item) in items.into_iter().enumerate() {
            if item.record.is_some() && item.offset < p.next_offset {
                report.skipped += 1;
                continue;
            }
            next_offset = next_offset.max(item.offset + 1);
            let prepared = match item.value {
                Ok(v) => job.prepare(&v, item.record_ms, now),
                Err(why) => Err(DeadLetter { code: "invalid_json", reason: why }),
            };
            match prepared {
                Err(d) => {
                    if let Some(r) = item.record {
                        out.push(forward(&job.dead_letter_topic, r, error_headers(d.code, &d.reason)));
                    }
                    report.rejected.push(Rejection { index, code: d.code, message: d.reason });
                }
                Ok(ev) => match p.engine.ingest(&ev, now) {
                    Err(e) => {
                        if let Some(r) = item.record {
                            out.push(forward(&job.dead_letter_topic, r, error_headers(e.code(), &e.to_string())));
                        }
                        report.rejected.push(Rejection { index, code: e.code(), message: e.to_string() });
                    }
                    Ok(late) => {
                        report.accepted += 1;
                        if let Some(l) = late {
                            if let Some(r) = item.record {
                                let window = format!("{}/{}", rfc3339(l.window.start), rfc3339(l.window.end));
                                out.push(forward(
                                    &job.late_topic,
                                    r,
                                    vec![
                                        ("loom.late.window".into(), window.into_bytes()),
                                        ("loom.late.watermark".into(), rfc3339(l.watermark).into_bytes()),
                                    ],
                                ));
                            }
                            report.late.push(LateItem {
                                index,
                                window_start: rfc3339(l.window.start),
                                window_end: rfc3339(l.window.end),
                                watermark: rfc3339(l.watermark),
                                partial: l.partial,
                            });
                        }
                    }
                },
            }
        }
        p.last_active_ms = now;
        let emissions = p.engine.advance(now);
        report.emitted = emissions.len();
        if let Err(e) = self.commit(p, emissions, out, next_offset).await {
            p.poisoned = true;
            return Err(e);
        }
        self.stats.record(&job.spec.id, &report);
        Ok(report)
    }

    /// Advances a partition without new records (the job-wide floor of an idle partition, or
    /// per-key idleness) and commits what closed.
    pub async fn tick(&self, p: &mut Partition, floor: Option<i64>) -> Result<usize, RunError> {
        if let Some(f) = floor {
            p.engine.set_floor(f);
        }
        let emissions = p.engine.advance(now_ms());
        if emissions.is_empty() {
            return Ok(0);
        }
        let n = emissions.len();
        let next = p.next_offset;
        if let Err(e) = self.commit(p, emissions, Vec::new(), next).await {
            p.poisoned = true;
            return Err(e);
        }
        Ok(n)
    }

    async fn commit(
        &self,
        p: &mut Partition,
        emissions: Vec<Emission>,
        mut out: Vec<OutRecord>,
        next_offset: i64,
    ) -> Result<(), RunError> {
        let job = p.job.clone();
        let results: Vec<(Emission, Value)> = emissions
            .into_iter()
            .map(|e| {
                let v = result_json(&job, &e);
                (e, v)
            })
            .collect();
        for topic in job.kafka_topics() {
            for (e, v) in &results {
                out.push(OutRecord {
                    topic: topic.to_owned(),
                    key: Some(e.key.clone().into_bytes()),
                    payload: v.to_string().into_bytes(),
                    headers: vec![
                        ("loom.job".into(), job.spec.id.clone().into_bytes()),
                        ("loom.version".into(), e.version.to_string().into_bytes()),
                        ("loom.final".into(), e.is_final.to_string().into_bytes()),
                    ],
                });
            }
        }
        if !out.is_empty() {
            match &self.producer {
                Some(producer) => produce_all(producer, &out).await?,
                None => return Err(RunError::Failed(TsError::KafkaOff)),
            }
        }
        let rows: Vec<WindowRow> = results
            .iter()
            .map(|(e, v)| WindowRow {
                job: job.spec.id.clone(),
                key: e.key.clone(),
                start: e.window.start,
                end: e.window.end,
                values: v["values"].to_string(),
                count: e.count as i64,
                version: e.version as i32,
                is_final: e.is_final,
            })
            .collect();
        let state = serde_json::to_string(&p.engine.snapshot())
            .map_err(|e| RunError::Failed(TsError::Store(format!("snapshot: {e}"))))?;
        let cp = Checkpoint { seq: p.seq, job_version: job.version, next_offset, state };
        if let Some(pg) = &self.pg {
            for table in job.postgres_tables() {
                pg.ensure_partitions(table, rows.iter().map(|r| r.start)).await?;
            }
        }
        let txn = self.store.begin().await?;
        self.store.upsert_windows(&txn, &rows).await?;
        if let Some(pg) = &self.pg {
            let sink_rows: Vec<SinkRow> = results.iter().map(|(e, v)| sink_row(&job, e, v)).collect();
            for table in job.postgres_tables() {
                pg.write(&txn, table, &sink_rows).await?;
            }
        }
        match self.store.save_checkpoint(&txn, &job.spec.id, &p.part, p.seq, &cp).await? {
            Saved::Committed { seq } => {
                txn.commit().await?;
                p.seq = seq;
                p.next_offset = next_offset;
            }
            Saved::Stale => {
                let _ = txn.rollback().await;
                return Err(RunError::Stale);
            }
        }
        let live = results.into_iter().map(|(e, v)| (e.key, e.is_final, v)).collect();
        self.hub.publish(&job.spec.id, live);
        Ok(())
    }
}

fn error_headers(code: &str, reason: &str) -> Vec<(String, Vec<u8>)> {
    vec![("loom.error.code".into(), code.as_bytes().to_vec()), ("loom.error.reason".into(), reason.as_bytes().to_vec())]
}

/// The result record (Kafka, WebSocket, REST):
/// `{"job","key":{…},"window_start","window_end","values":{…},"count","version","final"}`.
pub fn result_json(job: &Job, e: &Emission) -> Value {
    let mut values = Map::new();
    for (name, v) in job.names().zip(&e.values) {
        values.insert(name.to_owned(), v.clone());
    }
    json!({
        "job": job.spec.id,
        "key": job.key_object(&e.key),
        "window_start": rfc3339(e.window.start),
        "window_end": rfc3339(e.window.end),
        "values": values,
        "count": e.count,
        "version": e.version,
        "final": e.is_final,
    })
}

/// A stored result row as the API shows it.
pub fn row_json(job: Option<&Job>, w: &WindowRow) -> Value {
    let values: Value = serde_json::from_str(&w.values).unwrap_or(Value::Null);
    let key = job.map_or_else(|| serde_json::from_str(&w.key).unwrap_or(Value::Null), |j| j.key_object(&w.key));
    json!({
        "job": w.job,
        "key": key,
        "window_start": rfc3339(w.start),
        "window_end": rfc3339(w.end),
        "values": values,
        "count": w.count,
        "version": w.version,
        "final": w.is_final,
    })
}

fn sink_row(job: &Job, e: &Emission, v: &Value) -> SinkRow {
    SinkRow {
        job: job.spec.id.clone(),
        key: v["key"].clone(),
        key_text: e.key.clone(),
        start: e.window.start,
        end: e.window.end,
        values: v["values"].clone(),
        count: e.count as i64,
        version: e.version as i32,
        is_final: e.is_final,
    }
}
