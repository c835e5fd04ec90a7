//! Stream mode: filters Kafka topics into other topics with a named policy, through the Kafka
//! bridge (`privacy.streams`: `from` → `to` with `policy`). A JSON payload is filtered field by
//! field; any other UTF-8 payload as free text; key and headers are kept. A record that cannot be
//! filtered (not UTF-8) goes to `privacy.dlq_topic` with `loom.error.class` / `.message` and its
//! source topic/partition/offset headers — the DLQ holds raw data, so it must be access-controlled
//! like the source. A missing policy or an unavailable key store is not the record's fault: the
//! batch is retried (the partition waits, its lag grows, the error is counted), so nothing passes
//! unfiltered and nothing is lost. Every batch's decisions are audited with the source topic.

use std::collections::HashMap;

use loom_kafka::producer::{Outgoing, Pending};
use loom_kafka::{Producer, Record};
use loom_protocol::RequestId;
use serde_json::Value;

use crate::api::{Api, AuditContext, audit_rows, policy_plan};
use crate::error::FilterError;

/// Partitions of output and DLQ topics the stream mode creates when they are missing.
const CREATED_PARTITIONS: i32 = 6;

/// One configured stream.
#[derive(Debug, Clone)]
pub struct Route {
    pub to: String,
    pub policy: String,
}

pub struct StreamProcessor {
    pub api: Api,
    pub routes: HashMap<String, Route>,
    pub producer: Producer,
    pub dlq_topic: String,
    pub kafka: loom_config::KafkaSection,
    /// Output topics known to exist (created with [`CREATED_PARTITIONS`] when missing).
    pub created: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What became of one record after the scan.
enum Filtered {
    Out(Option<Vec<u8>>),
    Dead(&'static str, String),
}

/// Filters one payload with its own keyed context, so one bad record is dead-lettered alone;
/// `Err` only when the key store is unavailable (the batch is then retried).
fn filter_payload(
    plan: &crate::api::Plan,
    keyed: &crate::keys::KeyedCtx,
    payload: Option<&[u8]>,
) -> Result<(Filtered, crate::structured::Decisions), FilterError> {
    // A tombstone (no payload) stays a tombstone: compaction deletes keep working.
    let Some(payload) = payload else { return Ok((Filtered::Out(None), Default::default())) };
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(_) => {
            return Ok((
                Filtered::Dead("not_text", "the payload is neither JSON nor UTF-8 text".into()),
                Default::default(),
            ));
        }
    };
    // Objects and arrays are filtered field by field; anything else as free text (a bare
    // number or string payload is text, not a JSON scalar).
    let trimmed = text.trim_start();
    let structured = (trimmed.starts_with('{') || trimmed.starts_with('['))
        .then(|| serde_json::from_str::<Value>(text).ok())
        .flatten();
    let (mut value, json) = match structured {
        Some(v) => (v, true),
        None => (Value::String(text.to_owned()), false),
    };
    let mut scan = plan.scan(keyed);
    scan.filter(&mut value, "", "", 0);
    let too_deep = scan.too_deep;
    let decisions = std::mem::take(&mut scan.decisions);
    drop(scan);
    match keyed.take_error() {
        Some(e @ FilterError::Unavailable(_)) => return Err(e),
        Some(e) => return Ok((Filtered::Dead("filter_error", e.to_string()), Default::default())),
        None => {}
    }
    if too_deep {
        let e = FilterError::TooDeep(crate::structured::MAX_DEPTH);
        return Ok((Filtered::Dead("too_deep", e.to_string()), Default::default()));
    }
    let out = match (json, value) {
        (false, Value::String(text)) => text.into_bytes(),
        (_, v) => serde_json::to_vec(&v).unwrap_or_default(),
    };
    Ok((Filtered::Out(Some(out)), decisions))
}

impl StreamProcessor {
    async fn dead_letter(&self, r: &Record, class: &str, message: &str) -> Result<(), FilterError> {
        let headers = loom_kafka::service::dead_letter_headers(r, class, message);
        let out = Outgoing {
            topic: &self.dlq_topic,
            key: r.key.as_deref(),
            payload: r.payload.as_deref(),
            headers: &headers,
            partition: None,
        };
        self.producer.send(out).await.map(|_| ()).map_err(|e| FilterError::Unavailable(e.to_string()))
    }

    async fn run(&self, batch: &[Record]) -> Result<(), FilterError> {
        let Some(first) = batch.first() else { return Ok(()) };
        let route = self
            .routes
            .get(&first.topic)
            .ok_or_else(|| FilterError::NotFound(format!("a stream for topic '{}'", first.topic)))?;
        if !self.created.lock().is_ok_and(|c| c.contains(&route.to)) {
            loom_kafka::admin::ensure_topics(&self.kafka, &[&route.to, &self.dlq_topic], CREATED_PARTITIONS)
                .await
                .map_err(|e| FilterError::Unavailable(format!("creating {}: {e}", route.to)))?;
            if let Ok(mut c) = self.created.lock() {
                c.insert(route.to.clone());
            }
        }
        let policy = self.api.policies.get(&route.policy).await?;
        let plan = policy_plan(&self.api, &policy.spec)?;
        let key = if plan.keyed() { Some(self.api.key_for(None).await?) } else { None };
        let payloads: Vec<Option<Vec<u8>>> = batch.iter().map(|r| r.payload.clone()).collect();
        let (api, scan_key) = (self.api.clone(), key.clone());
        let (outcomes, decisions) = tokio::task::spawn_blocking(move || {
            let mut all = crate::structured::Decisions::new();
            let mut outcomes = Vec::with_capacity(payloads.len());
            for p in &payloads {
                let keyed = api.keyed_ctx(scan_key.clone());
                let (f, d) = filter_payload(&plan, &keyed, p.as_deref())?;
                for (k, n) in d {
                    if all.len() < crate::structured::MAX_DECISIONS || all.contains_key(&k) {
                        *all.entry(k).or_default() += n;
                    } else {
                        *all.entry(("*".into(), k.1, k.2)).or_default() += n;
                    }
                }
                outcomes.push(f);
            }
            Ok::<_, FilterError>((outcomes, all))
        })
        .await
        .map_err(|e| FilterError::Internal(format!("scan failed: {e}")))??;
        // Enqueue in offset order (the output keeps the partition's order), then wait.
        let mut pending: Vec<Result<Pending, loom_kafka::ProduceError>> = Vec::new();
        let mut dead = Vec::new();
        for (r, outcome) in batch.iter().zip(&outcomes) {
            match outcome {
                Filtered::Out(bytes) => pending.push(self.producer.enqueue(Outgoing {
                    topic: &route.to,
                    key: r.key.as_deref(),
                    payload: bytes.as_deref(),
                    headers: &r.headers,
                    partition: None,
                })),
                Filtered::Dead(class, message) => dead.push((r, *class, message.as_str())),
            }
        }
        for p in pending {
            p.map_err(|e| FilterError::Unavailable(e.to_string()))?
                .acknowledged()
                .await
                .map_err(|e| FilterError::Unavailable(e.to_string()))?;
        }
        for (r, class, message) in dead {
            self.dead_letter(r, class, message).await?;
        }
        let request_id = RequestId::parse(&format!("{}-{}-{}", first.topic, first.partition, first.offset))
            .unwrap_or_else(RequestId::generate);
        let ctx = AuditContext {
            request_id: &request_id,
            source: Some(&first.topic),
            subject: None,
            policy: Some(&policy),
            key: key.as_deref(),
        };
        self.api.store.audit(audit_rows(&decisions, &ctx)).await?;
        Ok(())
    }
}

#[ractor::async_trait]
impl loom_kafka::Processor for StreamProcessor {
    /// All or nothing per batch: on a failure the whole batch is retried (outputs already
    /// produced are produced again — at least once).
    async fn process(&self, batch: Vec<Record>) -> Vec<Record> {
        match self.run(&batch).await {
            Ok(()) => Vec::new(),
            Err(e) => {
                loom_kafka::count_error("privacy-filter", "stream_batch");
                tracing::warn!(topic = batch.first().map(|r| r.topic.as_str()).unwrap_or(""), error = %e,
                    "privacy stream batch not filtered; it will be retried");
                batch
            }
        }
    }
}

/// The configured streams by source topic.
pub fn routes(streams: &[loom_config::PrivacyStream]) -> HashMap<String, Route> {
    streams.iter().map(|s| (s.from.clone(), Route { to: s.to.clone(), policy: s.policy.clone() })).collect()
}
