//! Jobs: submission (a stored derivation answers at once; otherwise the job is queued), the
//! bounded pool of worker actors that run them, cancellation, and the live view the WebSocket
//! follows. A job's record lives in the object store and is rewritten on every state change,
//! so any node sharing the store answers `GET /jobs/{id}`.
//!
//! Isolation today: decoding runs in a blocking task with `image::Limits` checked before any
//! pixel is decoded, under `files.job_timeout`; a panic in it fails the job `parser_crashed`
//! and leaves the worker and the node up. Not yet: worker processes with rlimits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loom_service::{Handle, Mailbox};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::error::{Failure, FileError};
use crate::imaging::{self, Limits};
use crate::ops::{Op, PIPELINE_VERSION};
use crate::store::{Derivation, FileRecord, FileStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn ended(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }

    fn name(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub file: String,
    pub op: String,
    pub params: Value,
    pub state: State,
    pub progress: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// The result came from a stored derivation (no work was done).
    pub cached: bool,
    pub node: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(RactorMessage)]
pub enum WorkerMsg {
    Run { job: Job, spec: Op },
}

/// What the workers and the API share.
pub struct Shared {
    pub store: FileStore,
    pub limits: Limits,
    pub timeout: Duration,
    pub node: String,
    /// Jobs queued or running on this node.
    in_flight: AtomicUsize,
    queue: usize,
    live: Mutex<HashMap<String, watch::Sender<Job>>>,
    cancelled: Mutex<HashSet<String>>,
}

impl Shared {
    pub fn new(store: FileStore, limits: Limits, timeout: Duration, node: String, queue: usize) -> Shared {
        Shared {
            store,
            limits,
            timeout,
            node,
            in_flight: AtomicUsize::new(0),
            queue,
            live: Mutex::default(),
            cancelled: Mutex::default(),
        }
    }

    /// The live view of a job this node runs, if it does.
    pub fn follow(&self, id: &str) -> Option<watch::Receiver<Job>> {
        self.live.lock().ok()?.get(id).map(watch::Sender::subscribe)
    }

    async fn save(&self, job: &Job) {
        if let Err(e) = self.store.put_job(job).await {
            tracing::warn!(job = job.id, error = %e, "job record not saved");
        }
        if let Ok(live) = self.live.lock()
            && let Some(tx) = live.get(&job.id)
        {
            tx.send_replace(job.clone());
        }
        if job.state.ended() {
            metrics::counter!(crate::metrics::JOBS, "op" => job.op.clone(), "state" => job.state.name()).increment(1);
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
        if let Ok(mut c) = self.cancelled.lock() {
            c.remove(id);
        }
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.cancelled.lock().map(|c| c.contains(id)).unwrap_or(false)
    }
}

/// The API's side: submit and cancel.
#[derive(Clone)]
pub struct Jobs {
    pub shared: Arc<Shared>,
    pub workers: Arc<Vec<Handle<WorkerMsg>>>,
    next: Arc<AtomicUsize>,
}

/// Which media an operation runs on in this build; other media are refused before queueing.
fn check_media(op: &Op, file: &FileRecord) -> Result<(), FileError> {
    let t = file.media_type.as_str();
    if t.starts_with("image/") {
        return Ok(());
    }
    if t.starts_with("video/") || t.starts_with("audio/") || t == "application/pdf" {
        return Err(FileError::NotBuilt(format!("`{}` on {t}", op.name())));
    }
    Err(FileError::Unsupported(format!("`{}` does not apply to {t}", op.name())))
}

impl Jobs {
    pub fn new(shared: Arc<Shared>, workers: Vec<Handle<WorkerMsg>>) -> Jobs {
        Jobs { shared, workers: Arc::new(workers), next: Arc::default() }
    }

    pub async fn submit(&self, file: &FileRecord, op: Op) -> Result<Job, FileError> {
        check_media(&op, file)?;
        let now = loom_storage::documents::now_ms();
        let mut job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            file: file.id.clone(),
            op: op.name().to_owned(),
            params: serde_json::to_value(&op).unwrap_or(Value::Null),
            state: State::Queued,
            progress: 0.0,
            result: None,
            error: None,
            cached: false,
            node: self.shared.node.clone(),
            created_ms: now,
            updated_ms: now,
        };
        if let Some(d) = self.shared.store.derivation(&file.id, &op.derivation_key(&file.id)).await? {
            job.state = State::Succeeded;
            job.progress = 1.0;
            job.result = Some(d.result);
            job.cached = true;
            metrics::counter!(crate::metrics::DERIVATIONS_REUSED, "op" => job.op.clone()).increment(1);
            self.shared.save(&job).await;
            return Ok(job);
        }
        if self.shared.in_flight.fetch_add(1, Ordering::AcqRel) >= self.shared.queue {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(FileError::QueueFull(self.shared.queue));
        }
        let (tx, _) = watch::channel(job.clone());
        if let Ok(mut live) = self.shared.live.lock() {
            live.insert(job.id.clone(), tx);
        }
        self.shared.save(&job).await;
        let n = self.workers.len().max(1);
        for i in 0..n {
            let worker = &self.workers[(self.next.fetch_add(1, Ordering::Relaxed) + i) % n];
            if worker.cast(WorkerMsg::Run { job: job.clone(), spec: op.clone() }).is_ok() {
                return Ok(job);
            }
        }
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.forget(&job.id);
        Err(FileError::QueueFull(self.shared.queue))
    }

    /// Cancels a queued or running job of this node; a job that ended answers 409.
    pub async fn cancel(&self, id: &str) -> Result<Job, FileError> {
        let mut job = self.shared.store.job(id).await?.ok_or_else(|| FileError::NotFound(format!("job {id}")))?;
        if job.state.ended() {
            return Err(FileError::Ended(job.state.name()));
        }
        if let Ok(mut c) = self.shared.cancelled.lock() {
            c.insert(id.to_owned());
        }
        job.state = State::Cancelled;
        job.updated_ms = loom_storage::documents::now_ms();
        self.shared.save(&job).await;
        Ok(job)
    }
}

/// One worker: runs the jobs cast to it one at a time.
pub struct Worker {
    pub mailbox: Arc<Mailbox>,
}

#[ractor::async_trait]
impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(&self, _: ActorRef<WorkerMsg>, shared: Arc<Shared>) -> Result<Arc<Shared>, ActorProcessingErr> {
        Ok(shared)
    }

    async fn handle(
        &self,
        _: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        self.mailbox.handled();
        let WorkerMsg::Run { job, spec } = msg;
        let id = job.id.clone();
        run(shared, job, spec).await;
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.forget(&id);
        Ok(())
    }
}

async fn run(shared: &Shared, mut job: Job, spec: Op) {
    if shared.is_cancelled(&job.id) {
        return;
    }
    job.state = State::Running;
    job.progress = 0.1;
    job.updated_ms = loom_storage::documents::now_ms();
    shared.save(&job).await;
    let started = std::time::Instant::now();
    let outcome = execute(shared, &job.file, &spec).await;
    metrics::histogram!(crate::metrics::JOB_SECONDS, "op" => job.op.clone()).record(started.elapsed().as_secs_f64());
    if shared.is_cancelled(&job.id) {
        return;
    }
    job.updated_ms = loom_storage::documents::now_ms();
    match outcome {
        Ok(result) => {
            let d = Derivation {
                op: job.op.clone(),
                params: job.params.clone(),
                pipeline: PIPELINE_VERSION,
                result: result.clone(),
            };
            if let Err(e) = shared.store.put_derivation(&job.file, &spec.derivation_key(&job.file), &d).await {
                tracing::warn!(job = job.id, error = %e, "derivation not stored; the next ask recomputes");
            }
            job.state = State::Succeeded;
            job.progress = 1.0;
            job.result = Some(result);
        }
        Err(f) => {
            job.state = State::Failed;
            job.error = Some(f);
        }
    }
    shared.save(&job).await;
}

/// Where a computation's pixels come from: the CPU work, off the async threads.
enum Computed {
    Thumbnails(Vec<(Vec<u8>, u32, u32)>),
    Metadata(Value),
}

async fn execute(shared: &Shared, file: &str, spec: &Op) -> Result<Value, Failure> {
    let bytes = shared.store.bytes(file).await.map_err(|e| Failure::new("store_unavailable", e.to_string()))?;
    let limits = shared.limits;
    let work = spec.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<Computed, Failure> {
        match work {
            Op::Thumbnail { sizes, fit, format } => {
                let decoded = imaging::decode(&bytes, limits)?;
                let mut out = Vec::with_capacity(sizes.len());
                for size in sizes {
                    let t = imaging::thumbnail(&decoded.image, size, fit);
                    out.push((imaging::encode(&t, format)?, t.width(), t.height()));
                }
                Ok(Computed::Thumbnails(out))
            }
            Op::Metadata {} => imaging::metadata(&bytes, limits).map(Computed::Metadata),
        }
    });
    let computed = match tokio::time::timeout(shared.timeout, task).await {
        Err(_) => return Err(Failure::new("timeout", format!("the job ran past {} s", shared.timeout.as_secs()))),
        Ok(Err(join)) if join.is_panic() => {
            return Err(Failure::new("parser_crashed", "the decoder crashed on this file; the node is unaffected"));
        }
        Ok(Err(join)) => return Err(Failure::new("parser_crashed", join.to_string())),
        Ok(Ok(r)) => r?,
    };
    match (computed, spec) {
        (Computed::Thumbnails(thumbs), Op::Thumbnail { format, .. }) => {
            let mut outputs = Vec::with_capacity(thumbs.len());
            for (bytes, width, height) in thumbs {
                let meta = json!({"width": width, "height": height});
                let rec = shared
                    .store
                    .put_output(bytes, format.media_type(), file, meta)
                    .await
                    .map_err(|e| Failure::new("store_unavailable", e.to_string()))?;
                outputs.push(json!({"id": rec.id, "media_type": rec.media_type, "width": width, "height": height, "size": rec.size}));
            }
            Ok(json!({"outputs": outputs}))
        }
        (Computed::Metadata(m), _) => Ok(json!({"metadata": m})),
        (Computed::Thumbnails(_), _) => Err(Failure::new("internal", "mismatched result")),
    }
}
