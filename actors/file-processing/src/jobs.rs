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
use crate::{media, probe};

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
    Run { job: Job, spec: Op, media_type: String },
}

/// What the workers and the API share.
pub struct Shared {
    pub store: FileStore,
    pub limits: Limits,
    pub timeout: Duration,
    pub node: String,
    /// Where jobs copy sources for the tools (`<data_dir>/files-scratch`).
    pub scratch: std::path::PathBuf,
    /// Crashes or timeouts after which a file is quarantined.
    pub quarantine_after: u32,
    /// Jobs queued or running on this node.
    in_flight: AtomicUsize,
    queue: usize,
    live: Mutex<HashMap<String, watch::Sender<Job>>>,
    cancelled: Mutex<HashSet<String>>,
}

impl Shared {
    pub fn new(
        store: FileStore,
        limits: Limits,
        timeout: Duration,
        node: String,
        scratch: std::path::PathBuf,
        queue: usize,
        quarantine_after: u32,
    ) -> Shared {
        Shared {
            store,
            limits,
            timeout,
            node,
            scratch,
            quarantine_after,
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

impl Jobs {
    pub fn new(shared: Arc<Shared>, workers: Vec<Handle<WorkerMsg>>) -> Jobs {
        Jobs { shared, workers: Arc::new(workers), next: Arc::default() }
    }

    pub async fn submit(&self, file: &FileRecord, op: Op) -> Result<Job, FileError> {
        check_media(&op, &file.media_type)?;
        if self.shared.store.strikes(&file.id).await?.is_some_and(|s| s.quarantined) {
            return Err(FileError::Quarantined(file.id.clone()));
        }
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
            if worker
                .cast(WorkerMsg::Run { job: job.clone(), spec: op.clone(), media_type: file.media_type.clone() })
                .is_ok()
            {
                return Ok(job);
            }
        }
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.forget(&job.id);
        Err(FileError::QueueFull(self.shared.queue))
    }

    /// Waits for a job to end (its live view on this node, else the store), at most `limit`.
    pub async fn wait(&self, id: &str, limit: Duration) -> Result<Job, FileError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let job = self.shared.store.job(id).await?.ok_or_else(|| FileError::NotFound(format!("job {id}")))?;
            if job.state.ended() {
                return Ok(job);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(FileError::Store(format!("job {id} did not end within {} s", limit.as_secs())));
            }
            match self.shared.follow(id) {
                Some(mut rx) => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
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
        let WorkerMsg::Run { job, spec, media_type } = msg;
        let id = job.id.clone();
        run(shared, job, spec, &media_type).await;
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.forget(&id);
        Ok(())
    }
}

async fn run(shared: &Shared, mut job: Job, spec: Op, media_type: &str) {
    if shared.is_cancelled(&job.id) {
        return;
    }
    job.state = State::Running;
    job.progress = 0.1;
    job.updated_ms = loom_storage::documents::now_ms();
    shared.save(&job).await;
    let started = std::time::Instant::now();
    // A cancel drops the work: its tools are killed with it (`kill_on_drop`); a decode already
    // in a blocking thread finishes there, bounded by the image limits, and is discarded.
    let cancelled = async {
        match shared.follow(&job.id) {
            Some(mut rx) => {
                let _ = rx.wait_for(|j| j.state == State::Cancelled).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(shared.timeout, execute(shared, &job.file, media_type, &spec)) => match r {
            Ok(r) => r,
            Err(_) => Err(Failure::new("timeout", format!("the job ran past {} s", shared.timeout.as_secs()))),
        },
        () = cancelled => {
            metrics::histogram!(crate::metrics::JOB_SECONDS, "op" => job.op.clone()).record(started.elapsed().as_secs_f64());
            return;
        }
    };
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
            if matches!(f.code.as_str(), "parser_crashed" | "timeout") {
                match shared.store.strike(&job.file, &f.code, &job.op, shared.quarantine_after).await {
                    Ok(s) if s.quarantined => {
                        tracing::warn!(
                            file = job.file,
                            strikes = s.strikes,
                            "file quarantined after repeated parser failures"
                        );
                        metrics::counter!(crate::metrics::QUARANTINED).increment(1);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(file = job.file, error = %e, "strike not recorded"),
                }
            }
            job.state = State::Failed;
            job.error = Some(f);
        }
    }
    shared.save(&job).await;
}

/// Runs CPU work off the async threads; a panic in it fails the job, not the worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(join) if join.is_panic() => {
            Err(Failure::new("parser_crashed", "the decoder crashed on this file; the node is unaffected"))
        }
        Err(join) => Err(Failure::new("parser_crashed", join.to_string())),
    }
}

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new("internal", e.to_string())
}

fn stored(e: FileError) -> Failure {
    Failure::new("store_unavailable", e.to_string())
}

/// The job's scratch space: where the tools write, and the source they read — the stored
/// file itself on the local store (content-addressed, so never rewritten), else a local copy.
struct Scratch {
    dir: tempfile::TempDir,
    source: std::path::PathBuf,
}

async fn scratch(shared: &Shared, file: &str) -> Result<Scratch, Failure> {
    std::fs::create_dir_all(&shared.scratch).map_err(internal)?;
    let dir = tempfile::Builder::new().prefix("job-").tempdir_in(&shared.scratch).map_err(internal)?;
    if let Some(source) = shared.store.local_path(file) {
        return Ok(Scratch { dir, source });
    }
    let source = dir.path().join("source");
    shared.store.to_file(file, &source).await.map_err(stored)?;
    Ok(Scratch { dir, source })
}

async fn execute(shared: &Shared, file: &str, media_type: &str, spec: &Op) -> Result<Value, Failure> {
    let kind = Kind::of(media_type);
    let deadline = shared.timeout;
    let limits = shared.limits;
    match spec {
        Op::Thumbnail { sizes, fit, format } => {
            let largest = sizes.iter().copied().max().unwrap_or(128);
            let encoded: Vec<u8> = match kind {
                Kind::Image => shared.store.bytes(file).await.map_err(stored)?.to_vec(),
                Kind::Video => {
                    let s = scratch(shared, file).await?;
                    let m = media::probe(&s.source, deadline).await?;
                    if !probe::has_stream(&m, "video") {
                        return Err(Failure::new("no_stream", "the file has no video stream"));
                    }
                    let at = (media::duration(&m) * 0.1).min(10.0);
                    media::frame(&s.source, at, true, deadline).await?
                }
                Kind::Pdf => {
                    let s = scratch(shared, file).await?;
                    media::pdf_page(&s.source, largest.max(256), s.dir.path(), deadline).await?
                }
                _ => return Err(Failure::new("unsupported_media", "no thumbnail for this type")),
            };
            let (sizes, fit, format) = (sizes.clone(), *fit, *format);
            let thumbs = blocking(move || {
                let decoded = imaging::decode_for_box(&encoded, limits, largest, fit)?;
                let mut out = Vec::with_capacity(sizes.len());
                for size in sizes {
                    let t = imaging::thumbnail(&decoded.image, size, fit);
                    out.push((imaging::encode(&t, format)?, t.width(), t.height()));
                }
                Ok(out)
            })
            .await?;
            let mut outputs = Vec::with_capacity(thumbs.len());
            for (bytes, width, height) in thumbs {
                let rec = shared
                    .store
                    .put_output(bytes, format.media_type(), file, json!({"width": width, "height": height}))
                    .await
                    .map_err(stored)?;
                outputs.push(json!({"id": rec.id, "media_type": rec.media_type, "width": width, "height": height, "size": rec.size}));
            }
            Ok(json!({"outputs": outputs}))
        }
        Op::Metadata {} => {
            let metadata = match kind {
                Kind::Image => {
                    let bytes = shared.store.bytes(file).await.map_err(stored)?;
                    blocking(move || imaging::metadata(&bytes, limits)).await?
                }
                Kind::Video | Kind::Audio => media::probe(&scratch(shared, file).await?.source, deadline).await?,
                Kind::Pdf => media::pdf_info(&scratch(shared, file).await?.source, deadline).await?,
                Kind::Html => html_metadata(&html_of(shared, file).await?),
                _ => return Err(Failure::new("unsupported_media", "no metadata reader for this type")),
            };
            Ok(json!({"metadata": metadata}))
        }
        Op::Audio { format, sample_rate, channels, chunk } => {
            let s = scratch(shared, file).await?;
            // Chunk plans need the duration first; a plain conversion skips the probe.
            let probed = match chunk {
                Some(_) => {
                    let m = media::probe(&s.source, deadline).await?;
                    if !probe::has_stream(&m, "audio") {
                        return Err(Failure::new("no_stream", "the file has no audio stream"));
                    }
                    Some(media::duration(&m))
                }
                None => None,
            };
            let chunks = media::audio(
                &s.source,
                *format,
                *sample_rate,
                *channels,
                chunk.as_ref(),
                probed,
                s.dir.path(),
                deadline,
            )
            .await?;
            let mut outputs = Vec::with_capacity(chunks.len());
            for c in chunks {
                let meta = json!({"start": c.start, "duration": c.duration});
                let rec = shared.store.put_output(c.bytes, format.media_type(), file, meta).await.map_err(stored)?;
                outputs.push(json!({"id": rec.id, "media_type": rec.media_type, "start": c.start, "duration": c.duration, "size": rec.size}));
            }
            Ok(json!({"outputs": outputs}))
        }
        Op::Text {} => match kind {
            Kind::Pdf => {
                let s = scratch(shared, file).await?;
                let info = media::pdf_info(&s.source, deadline).await?;
                let pages = media::pdf_text(&s.source, deadline).await?;
                Ok(text_result(pages, info))
            }
            Kind::Text => {
                let bytes = shared.store.bytes(file).await.map_err(stored)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                Ok(text_result(vec![text], json!({"kind": "text"})))
            }
            Kind::Html => {
                let h = html_of(shared, file).await?;
                let metadata = html_metadata(&h);
                Ok(text_result(vec![h.text], metadata))
            }
            _ => Err(Failure::new("unsupported_media", "no text extractor for this type")),
        },
        Op::Frames { frames, format } => {
            let s = scratch(shared, file).await?;
            let m = media::probe(&s.source, deadline).await?;
            if !probe::has_stream(&m, "video") {
                return Err(Failure::new("no_stream", "the file has no video stream"));
            }
            let pngs = media::frames(&s.source, frames, media::duration(&m), s.dir.path(), deadline).await?;
            let format = *format;
            let encoded = blocking(move || {
                pngs.into_iter()
                    .map(|(t, png)| {
                        let d = imaging::decode(&png, limits)?;
                        Ok((t, imaging::encode(&d.image, format)?, d.image.width(), d.image.height()))
                    })
                    .collect::<Result<Vec<_>, Failure>>()
            })
            .await?;
            let mut outputs = Vec::with_capacity(encoded.len());
            for (t, bytes, width, height) in encoded {
                let meta = json!({"start": t, "width": width, "height": height});
                let rec = shared.store.put_output(bytes, format.media_type(), file, meta).await.map_err(stored)?;
                outputs.push(json!({"id": rec.id, "media_type": rec.media_type, "start": t, "width": width, "height": height, "size": rec.size}));
            }
            Ok(json!({"outputs": outputs}))
        }
    }
}

/// Largest HTML document the tokenizer reads (its memory is a few times the input).
const MAX_HTML_BYTES: usize = 64 << 20;

async fn html_of(shared: &Shared, file: &str) -> Result<crate::html::HtmlText, Failure> {
    let bytes = shared.store.bytes(file).await.map_err(stored)?;
    if bytes.len() > MAX_HTML_BYTES {
        return Err(Failure::new(
            "too_large",
            format!("HTML text is read from documents up to {} MiB", MAX_HTML_BYTES >> 20),
        ));
    }
    blocking(move || Ok(crate::html::text(&bytes))).await
}

fn html_metadata(h: &crate::html::HtmlText) -> Value {
    json!({"kind": "html", "title": h.title, "lang": h.lang, "description": h.description, "encoding": h.encoding})
}

/// Most text characters a result carries; beyond, pages are cut and `truncated` is set.
const MAX_TEXT_CHARS: usize = 10_000_000;

fn text_result(pages: Vec<String>, metadata: Value) -> Value {
    let mut budget = MAX_TEXT_CHARS;
    let mut truncated = false;
    let mut out = Vec::with_capacity(pages.len());
    for (i, text) in pages.into_iter().enumerate() {
        let n = text.chars().count();
        let text = if n > budget {
            truncated = true;
            text.chars().take(budget).collect()
        } else {
            text
        };
        budget = budget.saturating_sub(n);
        out.push(json!({"page": i + 1, "text": text}));
    }
    let characters: usize = out.iter().map(|p| p["text"].as_str().map_or(0, |t| t.chars().count())).sum();
    json!({"page_count": out.len(), "pages": out, "characters": characters, "truncated": truncated, "metadata": metadata})
}

/// The families of media the operations tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Video,
    Audio,
    Pdf,
    Text,
    Html,
    Other,
}

impl Kind {
    pub fn of(media_type: &str) -> Kind {
        match media_type {
            t if t.starts_with("image/") => Kind::Image,
            t if t.starts_with("video/") => Kind::Video,
            t if t.starts_with("audio/") => Kind::Audio,
            "application/pdf" => Kind::Pdf,
            "text/plain" => Kind::Text,
            "text/html" => Kind::Html,
            _ => Kind::Other,
        }
    }
}

/// Which operations apply to which media, and the tools they need: refused before queueing
/// (415 for media an operation does not apply to, 503 when a needed tool is missing here).
pub fn check_media(op: &Op, media_type: &str) -> Result<(), FileError> {
    use Kind::*;
    let kind = Kind::of(media_type);
    let applies = match op {
        Op::Thumbnail { .. } => matches!(kind, Image | Video | Pdf),
        Op::Metadata {} => matches!(kind, Image | Video | Audio | Pdf | Html),
        Op::Audio { .. } => matches!(kind, Video | Audio),
        Op::Text {} => matches!(kind, Pdf | Text | Html),
        Op::Frames { .. } => matches!(kind, Video),
    };
    if !applies {
        return Err(FileError::Unsupported(format!("`{}` does not apply to {media_type}", op.name())));
    }
    let tools: &[&str] = match (op, kind) {
        (_, Video | Audio) => &["ffmpeg", "ffprobe"],
        (Op::Thumbnail { .. }, Pdf) => &["pdftoppm"],
        (_, Pdf) => &["pdfinfo", "pdftotext"],
        _ => &[],
    };
    if let Some(missing) = tools.iter().find(|t| !crate::tools::available(t)) {
        return Err(FileError::ToolUnavailable(format!("{missing} is not installed on this node")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_apply_to_their_media() {
        let thumb = Op::Thumbnail { sizes: vec![128], fit: crate::ops::Fit::Contain, format: crate::ops::Format::Png };
        let cases = [
            (&thumb, "image/png", None),
            (&thumb, "text/plain", Some("unsupported_media")),
            (&thumb, "application/octet-stream", Some("unsupported_media")),
            (&Op::Text {}, "text/html", None),
            (&Op::Metadata {}, "text/html", None),
            (&thumb, "text/html", Some("unsupported_media")),
            (&Op::Text {}, "image/png", Some("unsupported_media")),
            (&Op::Text {}, "text/plain", None),
            (&Op::Metadata {}, "image/jpeg", None),
        ];
        for (op, media_type, want) in cases {
            let got = check_media(op, media_type).err().map(|e| loom_protocol::ServiceError::code(&e));
            assert_eq!(got, want, "{} on {media_type}", op.name());
        }
    }
}
