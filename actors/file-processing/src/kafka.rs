//! The Kafka bridge (`files.topics`): requests on the uploaded topic — `{"id": sha256}` or
//! `{"url": "s3://bucket/key"}`, with `"ops": [...]` (operation bodies as `POST …/jobs` takes)
//! — become jobs; one result per request goes to the processed topic, keyed by the file id:
//! `{"file": {record}, "results": [{"op","job","state","result"?,"error"?}], "source":
//! {"topic","partition","offset"}}`. A request that cannot be read gets a result with its
//! `error` instead. With the bridge's offset discipline: a record is done once its result is
//! acknowledged; a full job queue or an unreachable store or broker retries the record (and
//! those after it on the partition), so nothing is skipped; a retried request finds its
//! finished operations as stored derivations.

use std::time::Duration;

use loom_kafka::producer::Outgoing;
use loom_kafka::{Producer, Record};
use serde_json::{Value, json};

use crate::api::Api;
use crate::error::FileError;
use crate::ops::Op;

/// Most operations one request may ask for.
pub const MAX_OPS: usize = 16;

pub struct UploadedProcessor {
    pub api: Api,
    pub producer: Producer,
    pub processed: String,
    /// How long a request waits for its jobs (the job timeout plus queueing).
    pub wait: Duration,
}

/// Why a record goes back to be retried.
struct Retry(String);

fn error_value(e: &FileError) -> Value {
    json!({"code": loom_protocol::ServiceError::code(e), "message": e.to_string()})
}

impl UploadedProcessor {
    async fn handle(&self, r: &Record) -> Result<(), Retry> {
        let source = json!({"topic": r.topic, "partition": r.partition, "offset": r.offset});
        let result = match self.request(r).await {
            Ok(v) => v,
            Err(Some(e))
                if matches!(e, FileError::QueueFull(_) | FileError::Store(_) | FileError::ToolUnavailable(_)) =>
            {
                return Err(Retry(e.to_string()));
            }
            Err(Some(e)) => json!({"error": error_value(&e)}),
            Err(None) => return Err(Retry("the job queue is full".into())),
        };
        let mut out = result;
        out["source"] = source;
        let key = out["file"]["id"].as_str().map(str::to_owned);
        let payload = serde_json::to_vec(&out).unwrap_or_default();
        let sent = self
            .producer
            .send(Outgoing {
                topic: &self.processed,
                key: key.as_deref().map(str::as_bytes),
                payload: Some(&payload),
                headers: &[],
                partition: None,
            })
            .await;
        sent.map(|_| ()).map_err(|e| Retry(e.to_string()))
    }

    /// The result of one request; `Err(Some)` for a request-level error, `Err(None)` to retry.
    async fn request(&self, r: &Record) -> Result<Value, Option<FileError>> {
        let body: Value = r
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok())
            .filter(Value::is_object)
            .ok_or_else(|| Some(FileError::Invalid("the request is not a JSON object".into())))?;
        let ops = match body.get("ops") {
            None => Vec::new(),
            Some(Value::Array(ops)) if ops.len() <= MAX_OPS => ops.clone(),
            Some(_) => return Err(Some(FileError::Invalid(format!("`ops` is an array of at most {MAX_OPS}")))),
        };
        let file = match (body.get("id").and_then(Value::as_str), body.get("url").and_then(Value::as_str)) {
            (Some(id), None) => self
                .api
                .store
                .record(id)
                .await
                .map_err(Some)?
                .ok_or_else(|| Some(FileError::NotFound(format!("file {id}"))))?,
            (None, Some(url)) => self.api.import_url(url).await.map_err(Some)?,
            _ => return Err(Some(FileError::Invalid("exactly one of `id` and `url`".into()))),
        };
        let mut results = Vec::with_capacity(ops.len());
        for op_body in &ops {
            let op = match Op::parse(op_body) {
                Ok(op) => op,
                Err(e) => {
                    results.push(json!({"op": op_body.get("op"), "state": "refused", "error": error_value(&e)}));
                    continue;
                }
            };
            let name = op.name();
            let job = match self.api.jobs.submit(&file, op).await {
                Ok(job) => job,
                Err(e @ (FileError::QueueFull(_) | FileError::Store(_))) => return Err(Some(e)),
                Err(e) => {
                    results.push(json!({"op": name, "state": "refused", "error": error_value(&e)}));
                    continue;
                }
            };
            let job =
                if job.state.ended() { job } else { self.api.jobs.wait(&job.id, self.wait).await.map_err(Some)? };
            let mut r = json!({"op": name, "job": job.id, "state": job.state, "cached": job.cached});
            if let Some(result) = job.result {
                r["result"] = result;
            }
            if let Some(error) = job.error {
                r["error"] = serde_json::to_value(error).unwrap_or(Value::Null);
            }
            results.push(r);
        }
        Ok(json!({"file": file, "results": results}))
    }
}

#[ractor::async_trait]
impl loom_kafka::Processor for UploadedProcessor {
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        for (i, r) in batch.iter().enumerate() {
            if let Err(Retry(why)) = self.handle(r).await {
                tracing::warn!(
                    topic = r.topic,
                    partition = r.partition,
                    offset = r.offset,
                    why,
                    "file request retried"
                );
                return batch[i..].to_vec();
            }
        }
        Vec::new()
    }
}
