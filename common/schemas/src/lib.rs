//! A Schema Registry client shared by the services that validate events (the router's
//! `validate` actions, the quality monitors' schema compliance), like a Confluent serializer:
//! the latest schema of a subject is fetched over the registry's REST API (this node's own
//! registry by default, [`registry_url`]), compiled once with `jsonschema`, cached for 30 s (a
//! missing subject for 2 s), and events are validated in-process. [`SchemaCache::cached`] is
//! synchronous, so a caller on a hot path records a subject not cached yet as missing
//! ([`SchemaCache::take_missing`]) and fetches it off the path; [`SchemaCache::validator`]
//! fetches on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use jsonschema::Validator;
use loom_config::NodeConfig;
use loom_protocol::ServiceId;
use serde_json::Value;

const TTL: Duration = Duration::from_secs(30);
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
const MAX_SUBJECTS: usize = 10_000;

type Entry = (Instant, Result<Arc<jsonschema::Validator>, String>);

/// The registry a node's services ask: `router.schema_registry_url`, else this node's own.
pub fn registry_url(config: &NodeConfig) -> String {
    config.router.schema_registry_url.clone().unwrap_or_else(|| {
        let port =
            config.services.get(ServiceId::SchemaRegistry).port.unwrap_or(ServiceId::SchemaRegistry.default_port());
        format!("http://{}:{port}", config.node.bind_addr)
    })
}

/// Why an event could not be checked, or that it is invalid.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaProblem {
    /// The event violates the schema.
    Invalid(String),
    /// The schema could not be obtained (unknown subject, registry down).
    Unavailable(String),
}

/// One violation: the schema keyword that failed (`maximum`, `required`, `type`, …) and the
/// JSON pointer of the offending value in the event (`""` for the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub keyword: String,
    pub path: String,
}

/// Compiles a JSON Schema (the draft its `$schema` names, else 2020-12).
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// Every violation of `event` against `v` (at most `max`).
pub fn violations(v: &jsonschema::Validator, event: &Value, max: usize) -> Vec<Violation> {
    v.iter_errors(event)
        .take(max)
        .map(|e| {
            let schema_path = e.schema_path().to_string();
            let keyword = schema_path.rsplit('/').next().unwrap_or_default().to_owned();
            Violation { keyword, path: e.instance_path().to_string() }
        })
        .collect()
}

pub struct SchemaCache {
    base: String,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Entry>>,
    missing: Mutex<Vec<String>>,
}

impl SchemaCache {
    pub fn new(base: String) -> SchemaCache {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        SchemaCache {
            base: base.trim_end_matches('/').to_owned(),
            http,
            cache: Mutex::default(),
            missing: Mutex::default(),
        }
    }

    /// Subjects asked for since the last call and not cached.
    pub fn take_missing(&self) -> Vec<String> {
        let mut list = self.missing.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        list.sort_unstable();
        list.dedup();
        list
    }

    /// The cached validator of `subject`, if fresh: `None` when it must be fetched first
    /// (and then it is recorded as missing).
    pub fn cached(&self, subject: &str) -> Option<Result<Arc<jsonschema::Validator>, String>> {
        let entry = self.cache.lock().ok().and_then(|c| c.get(subject).cloned());
        let fresh = |at: Instant, ok: bool| at.elapsed() < if ok { TTL } else { NEGATIVE_TTL };
        match entry {
            Some((at, outcome)) if fresh(at, outcome.is_ok()) => Some(outcome),
            _ => {
                if let Ok(mut m) = self.missing.lock() {
                    m.push(subject.to_owned());
                }
                None
            }
        }
    }

    /// The validator of `subject`, fetched when not cached.
    pub async fn validator(&self, subject: &str) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(outcome) = self.cached(subject) {
            return outcome;
        }
        self.fetch(subject).await;
        self.cache
            .lock()
            .ok()
            .and_then(|c| c.get(subject).map(|(_, o)| o.clone()))
            .unwrap_or_else(|| Err("schema cache unavailable".into()))
    }

    /// Validates `event` against the cached schema of `subject` (see [`SchemaCache::cached`]).
    pub fn validate(&self, subject: &str, event: &Value) -> Result<(), SchemaProblem> {
        match self.cached(subject) {
            Some(Ok(v)) => {
                let errors: Vec<String> =
                    v.iter_errors(event).take(5).map(|e| format!("{} at '{}'", e, e.instance_path())).collect();
                if errors.is_empty() { Ok(()) } else { Err(SchemaProblem::Invalid(errors.join("; "))) }
            }
            Some(Err(e)) => Err(SchemaProblem::Unavailable(e)),
            None => Err(SchemaProblem::Unavailable("schema not loaded yet".into())),
        }
    }

    /// Fetches and compiles the latest schema of `subject` (also caching a failure briefly).
    pub async fn fetch(&self, subject: &str) {
        let outcome = self.load(subject).await;
        if let Err(e) = &outcome {
            tracing::warn!(%subject, error = %e, "schema for a validate action unavailable");
        }
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_SUBJECTS {
                c.retain(|_, (at, _)| at.elapsed() < TTL);
            }
            c.insert(subject.to_owned(), (Instant::now(), outcome.map(Arc::new)));
        }
    }

    /// Checks at rule-write time that `subject` exists and its schema compiles (and caches it).
    pub async fn check_subject(&self, subject: &str) -> SubjectCheck {
        match self.load_checked(subject).await {
            Ok(validator) => {
                if let Ok(mut c) = self.cache.lock()
                    && c.len() < MAX_SUBJECTS
                {
                    c.insert(subject.to_owned(), (Instant::now(), Ok(Arc::new(validator))));
                }
                SubjectCheck::Usable
            }
            Err(Problem::Registry(m)) => SubjectCheck::Unusable(m),
            Err(Problem::Unreachable(m)) => SubjectCheck::Unknown(m),
        }
    }

    async fn load(&self, subject: &str) -> Result<jsonschema::Validator, String> {
        self.load_checked(subject).await.map_err(|p| match p {
            Problem::Registry(m) | Problem::Unreachable(m) => m,
        })
    }

    async fn load_checked(&self, subject: &str) -> Result<jsonschema::Validator, Problem> {
        use Problem::{Registry, Unreachable};
        let url = format!("{}/subjects/{}/versions/latest", self.base, urlencode(subject));
        let resp =
            self.http.get(&url).send().await.map_err(|e| Unreachable(format!("schema registry unreachable: {e}")))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(Unreachable(format!("schema registry answered {status}")));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| Unreachable(format!("schema registry answered {status} with a bad body: {e}")))?;
        if !status.is_success() {
            let msg = body.get("message").and_then(Value::as_str).unwrap_or("no message");
            return Err(Registry(format!("schema registry answered {status}: {msg}")));
        }
        let text = body
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| Registry("the registry's answer has no schema".into()))?;
        let schema: Value =
            serde_json::from_str(text).map_err(|e| Registry(format!("the subject's schema is not JSON: {e}")))?;
        jsonschema::validator_for(&schema).map_err(|e| Registry(format!("the subject's schema does not compile: {e}")))
    }
}

/// Why a schema could not be loaded: the registry said no, or could not be asked.
enum Problem {
    Registry(String),
    Unreachable(String),
}

/// A `validate` subject checked when a rule is written.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectCheck {
    Usable,
    /// The registry answered: no such subject, or its schema is unusable. The rule is refused.
    Unusable(String),
    /// The registry could not be asked; the rule is accepted with a warning.
    Unknown(String),
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn violations_name_the_keyword_and_the_path() {
        let schema = json!({"type": "object", "required": ["lat"],
            "properties": {"lat": {"type": "number", "maximum": 90}, "tags": {"items": {"type": "string"}}}});
        let v = jsonschema::validator_for(&schema).unwrap();
        let cases = [
            (json!({"lat": 10}), vec![]),
            (json!({"lat": 91}), vec![("maximum", "/lat")]),
            (json!({}), vec![("required", "")]),
            (json!({"lat": "x", "tags": [1]}), vec![("type", "/lat"), ("type", "/tags/0")]),
            (json!([1]), vec![("type", "")]),
        ];
        for (event, want) in cases {
            let mut got: Vec<(String, String)> =
                violations(&v, &event, 10).into_iter().map(|x| (x.keyword, x.path)).collect();
            got.sort();
            let want: Vec<(String, String)> = want.iter().map(|(k, p)| (k.to_string(), p.to_string())).collect();
            assert_eq!(got, want, "{event}");
        }
    }
}
