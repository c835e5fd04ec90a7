//! How a subject evolved: the fields a schema declares (flattened to JSON pointers with type,
//! required-ness, constraints, description, examples) and the semantic diff between two
//! versions — fields added, removed or changed, and whether the step breaks readers (decided by
//! the compatibility rules, BACKWARD direction). Pure logic; `docs.rs` renders it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::compat::{self, Incompatibility, Policy};

/// One declared field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// `/lat`, `/pos/lat`, `/tags/*` (array items).
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub constraints: Vec<String>,
    pub description: Option<String>,
    pub examples: Vec<Value>,
}

const CONSTRAINTS: [&str; 13] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "enum",
    "const",
    "minItems",
    "maxItems",
];

fn kind(s: &Map<String, Value>) -> String {
    match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ if s.contains_key("$ref") => format!("ref {}", s["$ref"].as_str().unwrap_or("?")),
        _ if s.contains_key("anyOf") || s.contains_key("oneOf") => "union".into(),
        _ if s.contains_key("enum") => "enum".into(),
        _ => "any".into(),
    }
}

/// The fields of `schema`, depth-first in declaration (sorted) order.
pub fn fields(schema: &Value) -> Vec<Field> {
    let mut out = Vec::new();
    walk(schema, schema, "", true, &mut out, 0);
    out
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => root.pointer(&r[1..]).unwrap_or(s),
        _ => s,
    }
}

fn walk(root: &Value, schema: &Value, path: &str, required: bool, out: &mut Vec<Field>, depth: usize) {
    if depth > 32 {
        return;
    }
    let schema = resolve(root, schema);
    let Some(s) = schema.as_object() else { return };
    if !path.is_empty() {
        out.push(Field {
            path: path.to_owned(),
            kind: kind(s),
            required,
            constraints: CONSTRAINTS.iter().filter_map(|k| s.get(*k).map(|v| format!("{k}: {v}"))).collect(),
            description: s.get("description").and_then(Value::as_str).map(str::to_owned),
            examples: s.get("examples").and_then(Value::as_array).cloned().unwrap_or_default(),
        });
    }
    let req: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            walk(root, p, &format!("{path}/{name}"), req.contains(&name.as_str()), out, depth + 1);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        walk(root, items, &format!("{path}/*"), false, out, depth + 1);
    }
}

/// One difference between consecutive versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub kind: &'static str,
    pub path: String,
    pub detail: String,
}

/// What changed from `old` to `new`, and whether readers of the new schema can still read data
/// of the old (BACKWARD) — `breaking` lists why not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub breaking: Vec<Incompatibility>,
}

fn describe(f: &Field) -> String {
    let mut parts = vec![f.kind.clone(), if f.required { "required".into() } else { "optional".into() }];
    parts.extend(f.constraints.iter().cloned());
    parts.join(", ")
}

pub fn diff(old: &Value, new: &Value) -> Diff {
    let before: BTreeMap<String, Field> = fields(old).into_iter().map(|f| (f.path.clone(), f)).collect();
    let after: BTreeMap<String, Field> = fields(new).into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut changes = Vec::new();
    for (path, f) in &after {
        match before.get(path) {
            None => changes.push(Change { kind: "added", path: path.clone(), detail: describe(f) }),
            Some(b) if describe(b) != describe(f) => changes.push(Change {
                kind: "changed",
                path: path.clone(),
                detail: format!("{} → {}", describe(b), describe(f)),
            }),
            _ => {}
        }
    }
    for (path, f) in &before {
        if !after.contains_key(path) {
            changes.push(Change { kind: "removed", path: path.clone(), detail: describe(f) });
        }
    }
    Diff { changes, breaking: compat::check(new, old, Policy::Strict) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_flattened_with_their_facts() {
        let s = json!({"type": "object", "required": ["lat"], "properties": {
            "lat": {"type": "number", "minimum": -90, "description": "latitude", "examples": [45.4]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "pos": {"$ref": "#/$defs/p"}},
            "$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}}}}});
        let got: Vec<(String, String, bool)> = fields(&s).into_iter().map(|f| (f.path, f.kind, f.required)).collect();
        let want = [
            ("/lat", "number", true),
            ("/pos", "object", false),
            ("/pos/x", "integer", false),
            ("/tags", "array", false),
            ("/tags/*", "string", false),
        ];
        assert_eq!(got, want.map(|(p, k, r)| (p.to_owned(), k.to_owned(), r)));
        assert_eq!(fields(&s)[0].constraints, ["minimum: -90"]);
        assert_eq!(fields(&s)[0].description.as_deref(), Some("latitude"));
    }

    #[test]
    fn diffs_say_what_changed_and_whether_it_breaks() {
        let v1 = json!({"type": "object", "properties": {"lat": {"type": "number"}, "old": {"type": "string"}}});
        let v2 = json!({"type": "object", "properties": {"lat": {"type": "integer"}, "alt": {"type": "number"}}});
        let d = diff(&v1, &v2);
        let kinds: Vec<(&str, &str)> = d.changes.iter().map(|c| (c.kind, c.path.as_str())).collect();
        assert_eq!(kinds, [("added", "/alt"), ("changed", "/lat"), ("removed", "/old")]);
        let rules: Vec<&str> = d.breaking.iter().map(|i| i.rule).collect();
        assert!(rules.contains(&"TYPE_NARROWED"), "{rules:?}");
        let same = diff(&v1, &v1);
        assert!(same.changes.is_empty() && same.breaking.is_empty());
    }
}
