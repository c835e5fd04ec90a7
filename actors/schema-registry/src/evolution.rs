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

/// At most this many fields are listed: a schema is bounded by the request body limit, but
/// `$ref` can make its expansion exponential, so the walk is bounded too.
pub const MAX_FIELDS: usize = 10_000;

/// The fields of `schema`, depth-first in declaration (sorted) order. A `$ref` already being
/// expanded on the current path (a recursive schema) is listed once as `ref … (recursive)` and
/// not expanded again; the listing stops at [`MAX_FIELDS`].
pub fn fields(schema: &Value) -> Vec<Field> {
    let mut walk = Walk { root: schema, out: Vec::new(), refs: Vec::new() };
    walk.walk(schema, "", true, 0);
    walk.out
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => root.pointer(&r[1..]).unwrap_or(s),
        _ => s,
    }
}

struct Walk<'a> {
    root: &'a Value,
    out: Vec<Field>,
    /// The local `$ref`s being expanded on the current path.
    refs: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    fn walk(&mut self, schema: &'a Value, path: &str, required: bool, depth: usize) {
        if depth > 32 || self.out.len() >= MAX_FIELDS {
            return;
        }
        let reference = schema.get("$ref").and_then(Value::as_str).filter(|r| r.starts_with('#'));
        if let Some(r) = reference
            && self.refs.contains(&r)
        {
            if !path.is_empty() {
                self.out.push(Field {
                    path: path.to_owned(),
                    kind: format!("ref {r} (recursive)"),
                    required,
                    constraints: Vec::new(),
                    description: None,
                    examples: Vec::new(),
                });
            }
            return;
        }
        let resolved = resolve(self.root, schema);
        let Some(s) = resolved.as_object() else { return };
        if !path.is_empty() {
            self.out.push(Field {
                path: path.to_owned(),
                kind: kind(s),
                required,
                constraints: CONSTRAINTS.iter().filter_map(|k| s.get(*k).map(|v| format!("{k}: {v}"))).collect(),
                description: s.get("description").and_then(Value::as_str).map(str::to_owned),
                examples: s.get("examples").and_then(Value::as_array).cloned().unwrap_or_default(),
            });
        }
        if let Some(r) = reference {
            self.refs.push(r);
        }
        let req: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                self.walk(p, &format!("{path}/{name}"), req.contains(&name.as_str()), depth + 1);
            }
        }
        if let Some(items) = s.get("items").filter(|i| i.is_object()) {
            self.walk(items, &format!("{path}/*"), false, depth + 1);
        }
        if reference.is_some() {
            self.refs.pop();
        }
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
    fn recursive_and_huge_schemas_stay_bounded() {
        // A tree whose two children are the whole schema: expanding it naively is 2^32 fields.
        let tree = json!({"type": "object", "properties": {"l": {"$ref": "#"}, "r": {"$ref": "#"}}});
        let got: Vec<(String, String)> = fields(&tree).into_iter().map(|f| (f.path, f.kind)).collect();
        assert_eq!(
            got,
            [
                ("/l".to_owned(), "object".to_owned()),
                ("/l/l".into(), "ref # (recursive)".into()),
                ("/l/r".into(), "ref # (recursive)".into()),
                ("/r".into(), "object".into()),
                ("/r/l".into(), "ref # (recursive)".into()),
                ("/r/r".into(), "ref # (recursive)".into())
            ]
        );
        // Mutually recursive definitions.
        let mutual = json!({"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}},
            "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}}},
            "properties": {"x": {"$ref": "#/$defs/a"}}});
        let paths: Vec<String> = fields(&mutual).into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["/x", "/x/b", "/x/b/a"]);
        // Wide non-recursive fan-out through definitions is capped.
        let mut defs = serde_json::Map::new();
        for level in 0..8 {
            let props: serde_json::Map<String, Value> =
                (0..8).map(|i| (format!("p{i}"), json!({"$ref": format!("#/$defs/d{}", level + 1)}))).collect();
            defs.insert(format!("d{level}"), json!({"type": "object", "properties": props}));
        }
        defs.insert("d8".into(), json!({"type": "string"}));
        let wide = json!({"$defs": defs, "$ref": "#/$defs/d0"});
        assert_eq!(fields(&wide).len(), MAX_FIELDS);
        let _ = diff(&tree, &wide);
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
