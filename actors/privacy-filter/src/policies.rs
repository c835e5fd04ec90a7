//! Named policies: which entities to look for and what to do with them, per source or tenant —
//! operators by entity type and by field path, skip/always paths, threshold, allow/deny lists.
//! Stored versioned in `pf_policies`; each node caches a policy for [`POLICY_TTL`] and drops its
//! cache when a write anywhere in the cluster is announced on [`POLICIES_TOPIC`], so a change is
//! in force everywhere at once (or within the TTL if the broadcast is lost).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analyzer;
use crate::error::FilterError;
use crate::operators::Operator;
use crate::store::{Store, now_ms};

pub const POLICIES_TOPIC: &str = "privacy.policies";
pub const POLICY_TTL: Duration = Duration::from_secs(2);
const MAX_POLICIES: usize = 1_000;
const MAX_ENTRIES: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Entity types (`EMAIL_ADDRESS`) or the seed's rule names (`email`); default: all.
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    /// For entities without an operator of their own (default: replace with `<ENTITY>`).
    #[serde(default)]
    pub default_operator: Option<Operator>,
    #[serde(default)]
    pub operators: BTreeMap<String, Operator>,
    /// Operators by JSON pointer, for the field and everything under it.
    #[serde(default)]
    pub fields: BTreeMap<String, Operator>,
    #[serde(default)]
    pub skip: Vec<String>,
    #[serde(default)]
    pub always: BTreeMap<String, String>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub allow_list: Vec<String>,
    #[serde(default)]
    pub deny_list: Vec<String>,
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl PolicySpec {
    /// Entity types the policy scans for (rule names expanded), `None` for all. `custom`: the
    /// entity types of the configured recognizers.
    pub fn entity_types(&self, custom: &[String]) -> Result<Option<Vec<String>>, FilterError> {
        let Some(list) = &self.entities else { return Ok(None) };
        let mut out = Vec::new();
        for e in list {
            if analyzer::ALL_ENTITIES.contains(&e.as_str()) || custom.contains(e) {
                out.push(e.clone());
            } else {
                let types = analyzer::entities_for_rule(e).ok_or_else(|| FilterError::UnknownRule(e.clone()))?;
                out.extend(types.iter().map(|s| (*s).to_owned()));
            }
        }
        Ok(Some(out))
    }

    /// Every problem is a 400 naming the policy and the place.
    pub fn check(&self, custom: &[String]) -> Result<(), FilterError> {
        let bad = |m: String| Err(FilterError::Invalid(format!("policy '{}': {m}", self.name)));
        if !name_ok(&self.name) {
            return bad("names are 1-128 characters of letters, digits, '.', '_' or '-'".into());
        }
        self.entity_types(custom)
            .map_err(|e| FilterError::Invalid(format!("policy '{}': entities: {e}", self.name)))?;
        let sizes = [self.operators.len(), self.fields.len(), self.skip.len(), self.always.len()];
        if sizes.iter().any(|n| *n > MAX_ENTRIES) || self.allow_list.len() + self.deny_list.len() > 10 * MAX_ENTRIES {
            return bad(format!("at most {MAX_ENTRIES} entries per list"));
        }
        let ops = self.default_operator.iter().map(|o| ("default_operator".to_owned(), o));
        let ops = ops
            .chain(self.operators.iter().map(|(e, o)| (format!("operators.{e}"), o)))
            .chain(self.fields.iter().map(|(p, o)| (format!("fields.{p}"), o)));
        for (at, op) in ops {
            if let Err(e) = op.check() {
                return bad(format!("{at}: {e}"));
            }
        }
        for p in self.skip.iter().chain(self.always.keys()).chain(self.fields.keys()) {
            if !p.starts_with('/') {
                return bad(format!("'{p}' is not a JSON pointer (like /user/email)"));
            }
        }
        if let Some(t) = self.score_threshold
            && !(0.0..=1.0).contains(&t)
        {
            return bad("score_threshold must be between 0 and 1".into());
        }
        Ok(())
    }
}

/// A stored policy with its version.
#[derive(Debug, Clone, Serialize)]
pub struct StoredPolicy {
    #[serde(flatten)]
    pub spec: PolicySpec,
    pub version: i32,
    pub updated_ms: i64,
}

pub struct PolicyBook {
    pub store: Store,
    pub cluster: Option<loom_cluster::Cluster>,
    cache: Mutex<HashMap<String, (Instant, Option<Arc<StoredPolicy>>)>>,
}

impl PolicyBook {
    pub fn new(store: Store, cluster: Option<loom_cluster::Cluster>) -> PolicyBook {
        PolicyBook { store, cluster, cache: Mutex::default() }
    }

    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    fn decode(row: crate::store::policies::Model) -> Option<StoredPolicy> {
        if row.deleted {
            return None;
        }
        let spec: PolicySpec = serde_json::from_str(&row.body).ok()?;
        Some(StoredPolicy { spec, version: row.version, updated_ms: row.updated_ms })
    }

    /// The policy in force, or 404.
    pub async fn get(&self, name: &str) -> Result<Arc<StoredPolicy>, FilterError> {
        let hit = self.cache.lock().ok().and_then(|c| c.get(name).filter(|(at, _)| at.elapsed() < POLICY_TTL).cloned());
        let found = match hit {
            Some((_, p)) => p,
            None => {
                let p = self.store.policy(name).await?.and_then(Self::decode).map(Arc::new);
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() >= MAX_POLICIES {
                        c.clear();
                    }
                    c.insert(name.to_owned(), (Instant::now(), p.clone()));
                }
                p
            }
        };
        found.ok_or_else(|| FilterError::NotFound(format!("policy '{name}'")))
    }

    pub async fn list(&self) -> Result<Vec<StoredPolicy>, FilterError> {
        Ok(self.store.policies().await?.into_iter().filter_map(Self::decode).collect())
    }

    pub async fn put(&self, spec: PolicySpec, custom: &[String]) -> Result<StoredPolicy, FilterError> {
        spec.check(custom)?;
        if self.store.policy(&spec.name).await?.is_none_or(|p| p.deleted)
            && self.store.policies().await?.len() >= MAX_POLICIES
        {
            return Err(FilterError::Conflict(format!("at most {MAX_POLICIES} policies")));
        }
        let body = serde_json::to_string(&spec).map_err(|e| FilterError::Invalid(e.to_string()))?;
        let version = self.store.put_policy(&spec.name, Some(&body)).await?;
        self.changed();
        Ok(StoredPolicy { spec, version, updated_ms: now_ms() })
    }

    pub async fn delete(&self, name: &str) -> Result<(), FilterError> {
        if self.store.policy(name).await?.is_none_or(|p| p.deleted) {
            return Err(FilterError::NotFound(format!("policy '{name}'")));
        }
        self.store.put_policy(name, None).await?;
        self.changed();
        Ok(())
    }

    fn changed(&self) {
        self.invalidate();
        if let Some(c) = &self.cluster {
            c.publish(POLICIES_TOPIC, b"changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_are_checked_naming_the_place() {
        let cases = [
            (
                json!({"name": "ok", "entities": ["email", "PHONE_NUMBER"], "operators": {"EMAIL_ADDRESS": {"type": "hash"}}}),
                None,
            ),
            (json!({"name": "bad name!"}), Some("names are")),
            (json!({"name": "p", "entities": ["nope"]}), Some("entities")),
            (
                json!({"name": "p", "operators": {"EMAIL_ADDRESS": {"type": "mask", "masking_char": "ab"}}}),
                Some("operators.EMAIL_ADDRESS"),
            ),
            (json!({"name": "p", "fields": {"user/email": {"type": "redact"}}}), Some("not a JSON pointer")),
            (json!({"name": "p", "default_operator": {"type": "encrypt", "key": "k"}}), Some("default_operator")),
            (json!({"name": "p", "score_threshold": 2.0}), Some("score_threshold")),
        ];
        for (body, want) in cases {
            let spec: PolicySpec = serde_json::from_value(body.clone()).unwrap();
            match (spec.check(&[]), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{body}: {e}"),
                (got, want) => panic!("{body}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
