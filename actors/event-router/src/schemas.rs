//! `validate` actions: the router is a Schema Registry client, like a Confluent serializer. The
//! latest schema of a subject is fetched over the registry's REST API (this node's own registry
//! by default), compiled once with `jsonschema`, cached for 30 s (a missing subject for 2 s), and
//! events are validated in-process. Evaluation is synchronous, so a subject not cached yet is
//! recorded as missing; the router fetches it and evaluates the event again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::rules::{SchemaProblem, Schemas};

const TTL: Duration = Duration::from_secs(30);
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
const MAX_SUBJECTS: usize = 10_000;

type Entry = (Instant, Result<Arc<jsonschema::Validator>, String>);

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

impl Schemas for SchemaCache {
    fn validate(&self, subject: &str, event: &Value) -> Result<(), SchemaProblem> {
        let entry = self.cache.lock().ok().and_then(|c| c.get(subject).cloned());
        let fresh = |at: Instant, ok: bool| at.elapsed() < if ok { TTL } else { NEGATIVE_TTL };
        match entry {
            Some((at, Ok(v))) if fresh(at, true) => {
                let errors: Vec<String> =
                    v.iter_errors(event).take(5).map(|e| format!("{} at '{}'", e, e.instance_path())).collect();
                if errors.is_empty() { Ok(()) } else { Err(SchemaProblem::Invalid(errors.join("; "))) }
            }
            Some((at, Err(e))) if fresh(at, false) => Err(SchemaProblem::Unavailable(e)),
            _ => {
                if let Ok(mut m) = self.missing.lock() {
                    m.push(subject.to_owned());
                }
                Err(SchemaProblem::Unavailable("schema not loaded yet".into()))
            }
        }
    }
}
