//! Structured mode (pure): a JSON document scanned field by field. Strings are analyzed with the
//! field's name as context; numbers in fields whose name makes the entity certain (`lat`,
//! `longitude`, …) are findings on their own; `skip` paths are left alone and `always` paths are
//! replaced whole. A `fields` operator applies to every finding at or under its path, before
//! the per-entity operators. Findings carry the JSON pointer of their field, never the value;
//! `decisions` counts (path, entity, operator) for the audit log.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::analyzer::{self, Finding, Recognizer, Settings};
use crate::operators::{self, Keyed, Operator};

/// Nesting beyond this is not scanned: the request is refused (`/filter`, 422) or the record
/// dead-lettered (stream mode), and the subtree is never passed on unscanned.
pub const MAX_DEPTH: usize = 64;
/// Findings listed per request; beyond it they are still applied, only not listed.
pub const MAX_LISTED: usize = 10_000;
/// Distinct (path, entity, operator) decisions kept per request; beyond, paths aggregate to `*`.
pub const MAX_DECISIONS: usize = 1_000;

/// (JSON pointer, entity type, operator) → how many findings.
pub type Decisions = BTreeMap<(String, String, &'static str), i64>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldFinding {
    /// JSON pointer of the field.
    pub path: String,
    pub entity_type: String,
    /// Character offsets inside the original string value (whole value for numbers).
    pub start: usize,
    pub end: usize,
    pub score: f32,
    pub operator: &'static str,
}

pub struct Scan<'a> {
    pub entities: Option<&'a [String]>,
    pub custom: &'a [Recognizer],
    pub settings: &'a Settings,
    pub operators: &'a BTreeMap<String, Operator>,
    pub default: &'a Operator,
    pub skip: &'a [String],
    pub always: &'a BTreeMap<String, String>,
    /// Operators by field path (the field and everything under it).
    pub fields: &'a BTreeMap<String, Operator>,
    pub keyed: &'a dyn Keyed,
    pub findings: Vec<FieldFinding>,
    pub counts: BTreeMap<String, usize>,
    pub decisions: Decisions,
    pub too_deep: bool,
}

/// The operator a `fields` entry sets for `path`: the longest entry at or above it.
pub fn field_operator<'o>(fields: &'o BTreeMap<String, Operator>, path: &str) -> Option<&'o Operator> {
    fields
        .iter()
        .filter(|(p, _)| path == p.as_str() || path.starts_with(&format!("{p}/")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, op)| op)
}

impl<'a> Scan<'a> {
    pub fn new(
        settings: &'a Settings,
        default: &'a Operator,
        operators: &'a BTreeMap<String, Operator>,
        keyed: &'a dyn Keyed,
    ) -> Scan<'a> {
        static EMPTY_OPS: BTreeMap<String, Operator> = BTreeMap::new();
        static EMPTY_ALWAYS: BTreeMap<String, String> = BTreeMap::new();
        Scan {
            entities: None,
            custom: &[],
            settings,
            operators,
            default,
            skip: &[],
            always: &EMPTY_ALWAYS,
            fields: &EMPTY_OPS,
            keyed,
            findings: Vec::new(),
            counts: BTreeMap::new(),
            decisions: BTreeMap::new(),
            too_deep: false,
        }
    }
}

impl Scan<'_> {
    fn operator_at(&self, path: &str, entity: &str) -> &Operator {
        field_operator(self.fields, path).or_else(|| self.operators.get(entity)).unwrap_or(self.default)
    }

    fn record(&mut self, f: FieldFinding) {
        let mut key = (f.path.clone(), f.entity_type.clone(), f.operator);
        if self.decisions.len() >= MAX_DECISIONS && !self.decisions.contains_key(&key) {
            key.0 = "*".into();
        }
        *self.decisions.entry(key).or_default() += 1;
        *self.counts.entry(f.entity_type.clone()).or_default() += 1;
        if self.findings.len() < MAX_LISTED {
            self.findings.push(f);
        }
    }

    fn wanted(&self, entity: &str) -> bool {
        self.entities.is_none_or(|list| list.iter().any(|e| e == entity))
    }

    /// An object key, filtered like a string value of the object at `path`; findings are
    /// recorded at the key's filtered path (never the raw key).
    fn filter_key(&mut self, key: &str, path: &str) -> String {
        let found: Vec<Finding> = analyzer::analyze(key, self.entities, "", self.custom, self.settings);
        if found.is_empty() {
            return key.to_owned();
        }
        let (out, _) = operators::anonymize(key, &found, |e| self.operator_at(path, e), self.keyed);
        let at = format!("{path}/{}", out.replace('~', "~0").replace('/', "~1"));
        for f in &found {
            let operator = self.operator_at(path, &f.entity_type).name();
            self.record(FieldFinding {
                path: at.clone(),
                entity_type: f.entity_type.clone(),
                start: f.start,
                end: f.end,
                score: f.score,
                operator,
            });
        }
        out
    }

    /// Filters `value` (at JSON pointer `path`, field name `key`) in place.
    pub fn filter(&mut self, value: &mut Value, path: &str, key: &str, depth: usize) {
        if self.skip.iter().any(|s| path == s || path.starts_with(&format!("{s}/"))) {
            return;
        }
        if let Some(entity) = self.always.get(path) {
            let text = match &*value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let op = self.operator_at(path, entity).clone();
            *value = Value::String(op.apply(&text, entity, self.keyed));
            let end = text.chars().count();
            self.record(FieldFinding {
                path: path.into(),
                entity_type: entity.clone(),
                start: 0,
                end,
                score: 1.0,
                operator: op.name(),
            });
            return;
        }
        if depth > MAX_DEPTH {
            // Fail closed: what is not scanned is not passed on.
            self.too_deep = true;
            *value = Value::Null;
            return;
        }
        match value {
            Value::String(s) => {
                let found: Vec<Finding> = analyzer::analyze(s, self.entities, key, self.custom, self.settings);
                if found.is_empty() {
                    return;
                }
                let (out, _) = operators::anonymize(s, &found, |e| self.operator_at(path, e), self.keyed);
                for f in &found {
                    let operator = self.operator_at(path, &f.entity_type).name();
                    self.record(FieldFinding {
                        path: path.into(),
                        entity_type: f.entity_type.clone(),
                        start: f.start,
                        end: f.end,
                        score: f.score,
                        operator,
                    });
                }
                *s = out;
            }
            Value::Number(n) => {
                let Some(entity) = analyzer::entity_for_field(key).filter(|e| self.wanted(e)) else {
                    // A bare number can still be PII (a phone or card number stored as a number).
                    let text = n.to_string();
                    let found: Vec<Finding> = analyzer::analyze(&text, self.entities, key, self.custom, self.settings);
                    if found.is_empty() {
                        return;
                    }
                    let (out, _) = operators::anonymize(&text, &found, |e| self.operator_at(path, e), self.keyed);
                    for f in &found {
                        let operator = self.operator_at(path, &f.entity_type).name();
                        self.record(FieldFinding {
                            path: path.into(),
                            entity_type: f.entity_type.clone(),
                            start: f.start,
                            end: f.end,
                            score: f.score,
                            operator,
                        });
                    }
                    *value = Value::String(out);
                    return;
                };
                if !matches!(entity, "GPS_COORDINATES" | "PHONE_NUMBER" | "US_SSN" | "CREDIT_CARD") {
                    return;
                }
                let text = n.to_string();
                let op = self.operator_at(path, entity).clone();
                let replaced = op.apply(&text, entity, self.keyed);
                // A generalized coordinate stays a number.
                *value = replaced
                    .parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .filter(|_| matches!(op, Operator::Generalize { .. } | Operator::Keep {}))
                    .unwrap_or(Value::String(replaced));
                self.record(FieldFinding {
                    path: path.into(),
                    entity_type: entity.into(),
                    start: 0,
                    end: text.chars().count(),
                    score: 0.85,
                    operator: op.name(),
                });
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.filter(item, &format!("{path}/{i}"), key, depth + 1);
                }
            }
            Value::Object(map) => {
                // Keys are scanned too: a key can be PII (`{"by_email": {"a@b.org": …}}`). A
                // filtered key that collides with another gets a `#n` suffix, never overwrites.
                for (k, mut v) in std::mem::take(map) {
                    let name = self.filter_key(&k, path);
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    self.filter(&mut v, &format!("{path}/{escaped}"), &k, depth + 1);
                    let mut unique = name.clone();
                    let mut n = 2;
                    while map.contains_key(&unique) {
                        unique = format!("{name}#{n}");
                        n += 1;
                    }
                    map.insert(unique, v);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }
}
