//! Stream mode: enriches Kafka topics into other topics through the Kafka bridge
//! (`enrichment.streams`: `from` → `to`). Every record whose payload is a JSON object is written
//! to `to` with its `context` (all groups, the default pointers), key and headers kept, in the
//! partition's order; a tombstone stays a tombstone. A record that is not a JSON object goes to
//! `enrichment.dlq_topic` raw, with `loom.error.class` (`not_json`, `not_an_object`) and its
//! source topic/partition/offset headers. A failure that is not the record's (the producer, the
//! reference data) retries the whole batch: at least once, with the bridge's offset discipline
//! (an offset is committed only after its batch's outputs are acknowledged).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use loom_kafka::producer::{Outgoing, Pending};
use loom_kafka::{Producer, Record};
use serde_json::Value;

use crate::api::{Api, enrich_events};
use crate::enrich::{Include, Pointers};
use crate::error::EnrichError;

/// Partitions of output and DLQ topics the stream mode creates when they are missing.
const CREATED_PARTITIONS: i32 = 6;

pub struct StreamProcessor {
    pub api: Api,
    /// Source topic → output topic.
    pub routes: HashMap<String, String>,
    pub producer: Producer,
    pub dlq_topic: String,
    pub kafka: loom_config::KafkaSection,
    /// Output topics known to exist.
    pub created: Mutex<HashSet<String>>,
}

/// What a payload is to the stream: an event to enrich, a tombstone, or a dead letter.
#[derive(Debug, PartialEq)]
pub enum Input {
    Event(Value),
    Tombstone,
    Dead(&'static str),
}

/// Classifies one payload (pure).
pub fn classify(payload: Option<&[u8]>) -> Input {
    let Some(p) = payload else { return Input::Tombstone };
    match serde_json::from_slice::<Value>(p) {
        Ok(v @ Value::Object(_)) => Input::Event(v),
        Ok(_) => Input::Dead("not_an_object"),
        Err(_) => Input::Dead("not_json"),
    }
}

impl StreamProcessor {
    async fn ensure(&self, topic: &str) -> Result<(), EnrichError> {
        if self.created.lock().is_ok_and(|c| c.contains(topic)) {
            return Ok(());
        }
        loom_kafka::admin::ensure_topics(&self.kafka, &[topic, &self.dlq_topic], CREATED_PARTITIONS)
            .await
            .map_err(|e| EnrichError::Unavailable(format!("creating {topic}: {e}")))?;
        if let Ok(mut c) = self.created.lock() {
            c.insert(topic.to_owned());
        }
        Ok(())
    }

    async fn dead_letter(&self, r: &Record, class: &str) -> Result<(), EnrichError> {
        let message = match class {
            "not_json" => "the payload is not JSON",
            _ => "the payload is JSON but not an object",
        };
        let headers = loom_kafka::service::dead_letter_headers(r, class, message);
        let out = Outgoing {
            topic: &self.dlq_topic,
            key: r.key.as_deref(),
            payload: r.payload.as_deref(),
            headers: &headers,
            partition: None,
        };
        self.producer.send(out).await.map(|_| ()).map_err(|e| EnrichError::Unavailable(e.to_string()))
    }

    async fn run(&self, batch: &[Record]) -> Result<(), EnrichError> {
        let Some(first) = batch.first() else { return Ok(()) };
        let to = self
            .routes
            .get(&first.topic)
            .ok_or_else(|| EnrichError::NotFound(format!("a stream for topic '{}'", first.topic)))?;
        self.ensure(to).await?;
        let inputs: Vec<Input> = batch.iter().map(|r| classify(r.payload.as_deref())).collect();
        let events: Vec<Value> =
            inputs.iter().filter_map(|i| if let Input::Event(v) = i { Some(v.clone()) } else { None }).collect();
        let enriched = if events.is_empty() {
            Vec::new()
        } else {
            let mut out = enrich_events(&self.api, events, Include::ALL, Pointers::default()).await?;
            match out.get_mut("events").map(Value::take) {
                Some(Value::Array(v)) => v,
                _ => return Err(EnrichError::Unavailable("enrichment answered no events".into())),
            }
        };
        let mut enriched = enriched.into_iter();
        // Enqueue in offset order (the output keeps the partition's order), then wait.
        let mut pending: Vec<Result<Pending, loom_kafka::ProduceError>> = Vec::new();
        let mut dead = Vec::new();
        for (r, input) in batch.iter().zip(&inputs) {
            let payload = match input {
                Input::Event(_) => Some(serde_json::to_vec(&enriched.next().unwrap_or_default()).unwrap_or_default()),
                Input::Tombstone => None,
                Input::Dead(class) => {
                    dead.push((r, *class));
                    continue;
                }
            };
            pending.push(self.producer.enqueue(Outgoing {
                topic: to,
                key: r.key.as_deref(),
                payload: payload.as_deref(),
                headers: &r.headers,
                partition: None,
            }));
        }
        for p in pending {
            p.map_err(|e| EnrichError::Unavailable(e.to_string()))?
                .acknowledged()
                .await
                .map_err(|e| EnrichError::Unavailable(e.to_string()))?;
        }
        for (r, class) in dead {
            self.dead_letter(r, class).await?;
        }
        crate::metrics::streamed(&first.topic, batch.len());
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
                loom_kafka::count_error("context-enrichment", "stream_batch");
                tracing::warn!(topic = batch.first().map(|r| r.topic.as_str()).unwrap_or(""), error = %e,
                    "enrichment stream batch failed; it will be retried");
                batch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_are_classified() {
        let cases: [(Option<&[u8]>, Input); 6] = [
            (Some(br#"{"lat": 1}"#), Input::Event(json!({"lat": 1}))),
            (None, Input::Tombstone),
            (Some(b"[1, 2]"), Input::Dead("not_an_object")),
            (Some(b"42"), Input::Dead("not_an_object")),
            (Some(b"{nope"), Input::Dead("not_json")),
            (Some(&[0xff, 0xfe]), Input::Dead("not_json")),
        ];
        for (p, want) in cases {
            assert_eq!(classify(p), want, "{p:?}");
        }
    }
}
