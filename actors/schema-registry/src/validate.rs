//! Validation with the `jsonschema` crate (drafts 4, 6, 7, 2019-09, 2020-12; draft 7 — the
//! Confluent default — when `$schema` is absent). Compiled validators are cached per global
//! schema id on every node; a schema id never changes meaning, so the cache needs no
//! invalidation, only a bound. References to other registered schemas resolve through a
//! retriever that serves them by reference name.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde::Serialize;
use serde_json::Value;

/// Compiled validators kept per node.
const CACHE_CAPACITY: usize = 10_000;
/// Errors reported per instance at most.
const MAX_ERRORS: usize = 100;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    /// JSON pointer into the validated data.
    pub path: String,
    pub keyword: String,
    pub message: String,
}

/// Referenced schemas by reference name.
struct Refs(HashMap<String, Value>);

impl Retrieve for Refs {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let full = uri.as_str();
        let path = uri.path().as_str().trim_start_matches('/');
        self.0
            .get(full)
            .or_else(|| self.0.get(path))
            .or_else(|| self.0.iter().find(|(name, _)| full.ends_with(name.as_str())).map(|(_, v)| v))
            .cloned()
            .ok_or_else(|| format!("unresolved reference {full}: not among this schema's references").into())
    }
}

/// Compiles `schema` with `references` (name → schema); the error is a readable reason.
pub fn compile(schema: &Value, references: HashMap<String, Value>) -> Result<Validator, String> {
    let mut options = jsonschema::options().with_retriever(Refs(references));
    if schema.get("$schema").is_none() {
        options = options.with_draft(Draft::Draft7);
    }
    options.build(schema).map_err(|e| e.to_string())
}

pub fn violations(validator: &Validator, data: &Value) -> Vec<Violation> {
    validator
        .iter_errors(data)
        .take(MAX_ERRORS)
        .map(|e| Violation {
            path: e.instance_path().as_str().to_owned(),
            keyword: e.kind().keyword().to_owned(),
            message: e.to_string(),
        })
        .collect()
}

/// Compiled validators by schema id.
#[derive(Clone, Default)]
pub struct ValidatorCache {
    inner: Arc<RwLock<HashMap<i32, Arc<Validator>>>>,
}

impl ValidatorCache {
    pub fn get(&self, id: i32) -> Option<Arc<Validator>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    pub fn insert(&self, id: i32, validator: Validator) -> Arc<Validator> {
        let validator = Arc::new(validator);
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAPACITY {
            map.clear(); // crude but bounded; recompiling is cheap next to a request
        }
        map.insert(id, validator.clone());
        validator
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn drafts_and_errors() {
        let gps = json!({"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}}, "required": ["lat"]});
        let v = compile(&gps, HashMap::new()).unwrap();
        // (data, expected (path, keyword) pairs)
        let cases: &[(Value, &[(&str, &str)])] = &[
            (json!({"lat": 10}), &[]),
            (json!({"lat": 100}), &[("/lat", "maximum")]),
            (json!({}), &[("", "required")]),
            (json!({"lat": "x"}), &[("/lat", "type")]),
        ];
        for (data, want) in cases {
            let got: Vec<(String, String)> = violations(&v, data).into_iter().map(|e| (e.path, e.keyword)).collect();
            let want: Vec<(String, String)> = want.iter().map(|(p, k)| (p.to_string(), k.to_string())).collect();
            assert_eq!(got, want, "{data}");
        }
        // draft 2020-12 keyword honoured when declared
        let tuple =
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{"type": "string"}]});
        assert!(!violations(&compile(&tuple, HashMap::new()).unwrap(), &json!([1])).is_empty());
        assert!(compile(&json!({"type": 12}), HashMap::new()).is_err());
    }

    #[test]
    fn references_resolve_by_name() {
        let refs = HashMap::from([("point.json".to_owned(), json!({"type": "object", "required": ["x"]}))]);
        let v = compile(&json!({"type": "array", "items": {"$ref": "point.json"}}), refs).unwrap();
        assert!(violations(&v, &json!([{"x": 1}])).is_empty());
        assert_eq!(violations(&v, &json!([{}])).len(), 1);
    }
}
