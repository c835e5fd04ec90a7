//! The REST feed of jobs: `POST /jobs/{id}/events` and `/batch` on any node go to the job's
//! owner (rendezvous hash of the job id over the `up` members), where one [`RestActor`] runs
//! every REST-fed partition of the jobs this node owns, one request at a time. If ownership
//! moves, the checkpoint's sequence check makes the new owner continue from the committed state
//! (a stale owner's commit is refused and redone from the checkpoint).
//!
//! Batches (`/batch`) are historical: their events are aggregated on their own into partial
//! states per (key, window), stored under the batch's id (the SHA-256 of its events unless the
//! client names it), and every window they touch is recomputed from all stored parts — so
//! posting a batch again changes nothing, and batches in any order give the same table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use loom_cluster::{Cluster, Keyed};
use loom_protocol::ServiceId;
use loom_service::{Handle, Mailbox};
use loom_streams::{AggState, Engine, engine};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::error::TsError;
use crate::jobs::JobBook;
use crate::pipeline::{Item, Partition, Pipeline, Rejection, RunError, row_json};
use crate::store::{PartRow, WindowRow};

/// Events per `/events` request.
pub const MAX_EVENTS: usize = 10_000;
/// Events per `/batch` request.
pub const MAX_BATCH: usize = 200_000;
const REST_PART: &str = "rest";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Ingest { events: Vec<Value> },
    Batch { batch_id: Option<String>, events: Vec<Value> },
}

#[derive(RactorMessage)]
pub enum RestMsg {
    Run { job: String, request: Request, reply: RpcReplyPort<Result<Value, TsError>> },
    Tick,
}

pub struct RestActor {
    pub mailbox: Arc<Mailbox>,
}

pub struct RestArgs {
    pub book: JobBook,
    pub pipeline: Pipeline,
}

pub struct RestState {
    book: JobBook,
    pipeline: Pipeline,
    parts: HashMap<String, Partition>,
    ticker: tokio::task::JoinHandle<()>,
}

#[ractor::async_trait]
impl Actor for RestActor {
    type Msg = RestMsg;
    type State = RestState;
    type Arguments = RestArgs;

    async fn pre_start(&self, me: ActorRef<RestMsg>, args: RestArgs) -> Result<RestState, ActorProcessingErr> {
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if me.cast(RestMsg::Tick).is_err() {
                    return;
                }
            }
        });
        Ok(RestState { book: args.book, pipeline: args.pipeline, parts: HashMap::new(), ticker })
    }

    async fn post_stop(&self, _: ActorRef<RestMsg>, state: &mut RestState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<RestMsg>,
        msg: RestMsg,
        state: &mut RestState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RestMsg::Run { job, request, reply } => {
                self.mailbox.handled();
                let out = match request {
                    Request::Ingest { events } => ingest(state, &job, events).await,
                    Request::Batch { batch_id, events } => batch(state, &job, batch_id, events).await,
                };
                let _ = reply.send(out);
            }
            RestMsg::Tick => tick(state).await,
        }
        Ok(())
    }
}

async fn partition<'a>(state: &'a mut RestState, id: &str) -> Result<&'a mut Partition, TsError> {
    let job = state.book.get(id).ok_or_else(|| TsError::NotFound(format!("job '{id}'")))?;
    let fresh = state.parts.get(id).is_none_or(|p| p.job.version != job.version || p.poisoned);
    if fresh {
        let p = state.pipeline.load(job, REST_PART).await?;
        state.parts.insert(id.to_owned(), p);
    }
    state.parts.get_mut(id).ok_or_else(|| TsError::NotFound(format!("job '{id}'")))
}

async fn ingest(state: &mut RestState, id: &str, events: Vec<Value>) -> Result<Value, TsError> {
    for attempt in 0..2 {
        let pipeline = state.pipeline.clone();
        let p = partition(state, id).await?;
        let items =
            events.iter().map(|v| Item { offset: -1, value: Ok(v.clone()), record_ms: None, record: None }).collect();
        match pipeline.run(p, items).await {
            Ok(report) => {
                let watermark = loom_streams::time::rfc3339(p.engine.watermark().max(0));
                let mut v = serde_json::to_value(report).unwrap_or_default();
                v["watermark"] = json!(watermark);
                v["open_windows"] = json!(p.engine.open_windows());
                return Ok(v);
            }
            Err(RunError::Stale) if attempt == 0 => {
                tracing::info!(job = id, "REST partition moved meanwhile; reloading from its checkpoint");
                state.parts.remove(id);
            }
            Err(RunError::Stale) => {
                state.parts.remove(id);
                return Err(TsError::Conflict("the job's state is being written by another node; retry".into()));
            }
            Err(RunError::Failed(e)) => {
                state.parts.remove(id);
                return Err(e);
            }
        }
    }
    Err(TsError::Conflict("retry".into()))
}

async fn tick(state: &mut RestState) {
    let pipeline = state.pipeline.clone();
    let book = state.book.clone();
    // Partitions of deleted or changed jobs are dropped (the next request reloads).
    state.parts.retain(|id, p| book.get(id).is_some_and(|j| j.version == p.job.version));
    let mut failed = Vec::new();
    for (id, p) in state.parts.iter_mut() {
        if let Err(e) = pipeline.tick(p, None).await {
            tracing::debug!(job = %id, error = ?e, "tick did not commit; reloading next time");
            failed.push(id.clone());
        }
    }
    for id in failed {
        state.parts.remove(&id);
    }
}

async fn batch(
    state: &mut RestState,
    id: &str,
    batch_id: Option<String>,
    events: Vec<Value>,
) -> Result<Value, TsError> {
    let job = state.book.get(id).ok_or_else(|| TsError::NotFound(format!("job '{id}'")))?;
    if job.engine.window.is_session() {
        return Err(TsError::Invalid("batches are not supported for session windows (sessions span batches)".into()));
    }
    let batch_id = match batch_id {
        Some(b) if !b.is_empty() && b.len() <= 128 => b,
        Some(_) => return Err(TsError::Invalid("batch_id must be 1-128 characters".into())),
        None => {
            let digest = sha2::Sha256::digest(serde_json::to_vec(&events).unwrap_or_default());
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        }
    };
    let mut spec = job.engine.clone();
    spec.allowed_lateness_ms = i64::MAX / 4;
    spec.per_key_watermark = false;
    let mut engine = Engine::new(spec);
    let now = crate::store::now_ms();
    let mut rejected = Vec::new();
    for (index, v) in events.iter().enumerate() {
        match job.prepare(v, None, now) {
            Err(d) => rejected.push(Rejection { index, code: d.code, message: d.reason }),
            Ok(ev) => {
                if let Err(e) = engine.ingest(&ev, now) {
                    rejected.push(Rejection { index, code: e.code(), message: e.to_string() });
                }
            }
        }
    }
    let parts: Vec<PartRow> = engine
        .drain_partials()
        .into_iter()
        .map(|(key, w, count, states)| PartRow {
            key,
            start: w.start,
            end: w.end,
            count: count as i64,
            states: serde_json::to_string(&states).unwrap_or_default(),
        })
        .collect();
    let store = &state.pipeline.store;
    let txn = store.begin().await?;
    let mut touched: BTreeSet<(String, i64)> = store.batch_windows(&txn, id, &batch_id).await?.into_iter().collect();
    touched.extend(parts.iter().map(|p| (p.key.clone(), p.start)));
    store.replace_parts(&txn, id, &batch_id, &parts).await?;
    let mut rows: Vec<WindowRow> = Vec::new();
    for (key, start) in &touched {
        let stored = store.parts_of(&txn, id, key, *start).await?;
        let Some(end) = stored.first().map(|p| p.end) else { continue };
        let decoded = stored.into_iter().filter_map(|p| {
            let states: Vec<AggState> = serde_json::from_str(&p.states).ok()?;
            Some((p.key, loom_streams::Window { start: p.start, end: p.end }, p.count as u64, states))
        });
        let merged = engine::merge_partials(&job.engine, decoded);
        for ((k, w), (count, states)) in merged {
            let mut values = serde_json::Map::new();
            for (name, v) in job.names().zip(engine::finish(&job.engine, &states, w.end - w.start)) {
                values.insert(name.to_owned(), v);
            }
            let values = Value::Object(values).to_string();
            let (version, same) = store.window_version(&txn, id, &k, w.start).await?;
            if same.as_ref().is_some_and(|(vals, c)| *vals == values && *c == count as i64) {
                continue;
            }
            rows.push(WindowRow {
                job: id.to_owned(),
                key: k,
                start: w.start,
                end,
                values,
                count: count as i64,
                version: version + 1,
                is_final: true,
            });
        }
    }
    store.upsert_windows(&txn, &rows).await?;
    if let Some(pg) = &state.pipeline.pg {
        for table in job.postgres_tables() {
            pg.ensure_partitions(table, rows.iter().map(|r| r.start)).await?;
        }
        let sink_rows: Vec<crate::sinks::SinkRow> = rows
            .iter()
            .map(|r| {
                let v = row_json(Some(&job), r);
                crate::sinks::SinkRow {
                    job: id.to_owned(),
                    key: v["key"].clone(),
                    key_text: r.key.clone(),
                    start: r.start,
                    end: r.end,
                    values: v["values"].clone(),
                    count: r.count,
                    version: r.version,
                    is_final: true,
                }
            })
            .collect();
        for table in job.postgres_tables() {
            pg.write(&txn, table, &sink_rows).await?;
        }
    }
    txn.commit().await?;
    let live: Vec<(String, bool, Value)> =
        rows.iter().map(|r| (r.key.clone(), true, row_json(Some(&job), r))).collect();
    state.pipeline.hub.publish(id, live);
    Ok(json!({
        "batch_id": batch_id,
        "events": events.len(),
        "accepted": events.len() - rejected.len(),
        "rejected": rejected,
        "windows_touched": touched.len(),
        "windows_updated": rows.len(),
    }))
}

/// The typed client of the REST feed: every call runs on the job's owner.
#[derive(Clone)]
pub struct Feed {
    client: Keyed<Request, Value>,
}

/// Serves this node's share of the jobs' REST feeds through `actor` and returns the client.
pub fn serve(cluster: &Cluster, actor: Handle<RestMsg>, timeout: Duration) -> Feed {
    let client = cluster.serve_keyed(ServiceId::TimeseriesAggregator, move |job: String, request: Request| {
        let actor = actor.clone();
        async move {
            let out = actor
                .call(|reply| RestMsg::Run { job, request, reply }, timeout)
                .await
                .map_err(|e| TsError::from(e).to_wire())?;
            out.map_err(|e| e.to_wire())
        }
    });
    Feed { client }
}

impl Feed {
    pub async fn call(&self, job: &str, request: Request) -> Result<Value, TsError> {
        self.client.call(job, request).await.map(|s| s.value).map_err(TsError::from_call)
    }
}
