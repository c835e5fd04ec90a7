//! JSON Schema compatibility: can a reader schema accept every instance a writer schema
//! accepts? BACKWARD checks the new schema reading data of the old; FORWARD the reverse; FULL
//! both; the `_TRANSITIVE` forms against every live version. The rules are the ones Confluent and
//! Karapace apply (open vs closed content models, required properties and defaults, type
//! widening/narrowing, enum, numeric and string bounds, `additionalProperties`,
//! `patternProperties`, `items`, combinators), and each finding names the JSON pointer, the rule
//! and a suggested fix. The LENIENT policy additionally allows adding optional properties to an
//! open model (strictly, a writer's open model may already carry that property with any value).
//! Pure logic with table-driven tests.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use serde::Serialize;
use serde_json::{Map, Value};

/// One reason a reader cannot read what a writer wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incompatibility {
    /// JSON pointer into the reader schema (`#/properties/speed`).
    pub path: String,
    /// The rule that fired, in Confluent's vocabulary (`TYPE_NARROWED`, …).
    pub rule: &'static str,
    pub message: String,
    pub fix: String,
}

impl Incompatibility {
    /// Confluent's verbose message form, which its clients print.
    pub fn confluent_message(&self) -> String {
        format!(
            "Found incompatible change: Difference{{jsonPath='{}', type={}}}: {}; fix: {}",
            self.path, self.rule, self.message, self.fix
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Strict,
    Lenient,
}

/// Checks that `reader` accepts every instance `writer` accepts.
pub fn check(reader: &Value, writer: &Value, policy: Policy) -> Vec<Incompatibility> {
    let shared = Rc::new(Shared::default());
    let mut c = Checker {
        reader_root: reader,
        writer_root: writer,
        policy,
        out: Vec::new(),
        seen: BTreeSet::new(),
        shared: shared.clone(),
    };
    c.schema(reader, writer, "#".to_owned(), 0);
    if shared.steps.get() > MAX_STEPS {
        c.out.push(Incompatibility {
            path: "#".into(),
            rule: "SCHEMA_TOO_COMPLEX",
            message: format!("the comparison needed more than {MAX_STEPS} steps and was abandoned"),
            fix: "simplify the combinators or recursive references of the schema".into(),
        });
    }
    c.out
}

const MAX_DEPTH: usize = 64;

/// Comparisons one check may make. Combinators inside recursive schemas multiply the work, so
/// the check is bounded; running out is reported as an incompatibility, never as a pass.
const MAX_STEPS: usize = 200_000;

/// State shared by a check and the nested quiet checks of its combinators.
#[derive(Default)]
struct Shared {
    steps: Cell<usize>,
    /// Results of nested checks by (reader, writer) node identity.
    memo: RefCell<HashMap<(usize, usize), bool>>,
}

/// (keyword, is a lower bound, rule when added, rule when tightened)
type BoundRule = (&'static str, bool, &'static str, &'static str);

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

struct Checker<'a> {
    reader_root: &'a Value,
    writer_root: &'a Value,
    policy: Policy,
    out: Vec<Incompatibility>,
    seen: BTreeSet<(usize, usize)>,
    shared: Rc<Shared>,
}

fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// The set of JSON types a schema admits (`None`: any).
fn types(s: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match s.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()),
        _ => None,
    }
}

fn admits(reader: &BTreeSet<String>, writer_type: &str) -> bool {
    reader.contains(writer_type) || (writer_type == "integer" && reader.contains("number"))
}

fn is_closed(s: &Map<String, Value>) -> bool {
    matches!(s.get("additionalProperties"), Some(Value::Bool(false)))
        || matches!(s.get("unevaluatedProperties"), Some(Value::Bool(false)))
}

fn num(s: &Map<String, Value>, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn child(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

impl<'a> Checker<'a> {
    fn flag(&mut self, path: &str, rule: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.out.push(Incompatibility { path: path.to_owned(), rule, message: message.into(), fix: fix.into() });
    }

    /// Follows a local `$ref` (`#/definitions/x`, `#/$defs/x`) within its root.
    fn resolve(&self, s: &'a Value, root: &'a Value) -> &'a Value {
        let mut current = s;
        for _ in 0..16 {
            match current.get("$ref").and_then(Value::as_str) {
                Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
                    Some(target) => current = target,
                    None => return current,
                },
                _ => return current,
            }
        }
        current
    }

    fn schema(&mut self, reader: &'a Value, writer: &'a Value, path: String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let steps = self.shared.steps.get() + 1;
        self.shared.steps.set(steps);
        if steps > MAX_STEPS {
            return self.flag(&path, "SCHEMA_TOO_COMPLEX", "comparison abandoned", "simplify the schema");
        }
        let reader = self.resolve(reader, self.reader_root);
        let writer = self.resolve(writer, self.writer_root);
        if !self.seen.insert((reader as *const Value as usize, writer as *const Value as usize)) {
            return; // already compared (recursive schemas)
        }
        match (reader, writer) {
            (Value::Bool(true), _) | (_, Value::Bool(false)) => return,
            (Value::Bool(false), _) => {
                return self.flag(&path, "SCHEMA_NARROWED", "the reader accepts nothing", "accept the writer's values");
            }
            (Value::Object(r), Value::Bool(true)) if !r.is_empty() => {
                return self.flag(
                    &path,
                    "SCHEMA_NARROWED",
                    "the writer accepts any value here but the reader constrains it",
                    "keep this schema unconstrained",
                );
            }
            _ => {}
        }
        let (Some(r), Some(w)) = (obj(reader), obj(writer)) else { return };
        if self.combinators(reader, writer, &path, depth) {
            return;
        }
        self.type_rule(r, w, &path);
        self.enum_rule(r, w, &path);
        self.numeric(r, w, &path);
        self.string(r, w, &path);
        self.object(r, w, &path, depth);
        self.array(r, w, &path, depth);
    }

    /// anyOf/oneOf/allOf. Returns true when the combinators decided the comparison.
    fn combinators(&mut self, reader: &'a Value, writer: &'a Value, path: &str, depth: usize) -> bool {
        let branches = |s: &'a Value, k: &str| s.get(k).and_then(Value::as_array);
        let reader_any = branches(reader, "anyOf").or_else(|| branches(reader, "oneOf"));
        let writer_any = branches(writer, "anyOf").or_else(|| branches(writer, "oneOf"));
        if reader.get("oneOf").is_some() && writer.get("anyOf").is_some() {
            self.flag(
                path,
                "COMBINED_TYPE_CHANGED",
                "anyOf became oneOf: values matching several branches are now invalid",
                "keep anyOf",
            );
            return true;
        }
        match (reader_any, writer_any) {
            (Some(rb), Some(wb)) => {
                for (i, wbranch) in wb.iter().enumerate() {
                    if !rb.iter().any(|rbranch| self.quietly_compatible(rbranch, wbranch, depth)) {
                        self.flag(
                            &child(path, &format!("anyOf/{i}")),
                            "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                            format!("writer branch {i} is not accepted by any reader branch"),
                            "keep a reader branch that accepts it",
                        );
                    }
                }
                true
            }
            (Some(rb), None) => {
                if !rb.iter().any(|rbranch| self.quietly_compatible(rbranch, writer, depth)) {
                    self.flag(
                        path,
                        "TYPE_CHANGED",
                        "no branch of the reader accepts the writer's schema",
                        "add a branch accepting the old schema",
                    );
                }
                true
            }
            (None, Some(wb)) => {
                for (i, wbranch) in wb.iter().enumerate() {
                    if !self.quietly_compatible(reader, wbranch, depth) {
                        self.flag(
                            path,
                            "TYPE_NARROWED",
                            format!("writer branch {i} of its anyOf/oneOf is not accepted"),
                            "accept every branch the writer allowed",
                        );
                    }
                }
                true
            }
            (None, None) => {
                if let Some(all) = reader.get("allOf").and_then(Value::as_array) {
                    for (i, rbranch) in all.iter().enumerate() {
                        self.schema(rbranch, writer, child(path, &format!("allOf/{i}")), depth + 1);
                    }
                }
                false
            }
        }
    }

    /// Whether `reader` accepts `writer`, without reporting. Pairs already on the current
    /// comparison path count as compatible (recursive schemas); results are memoized across
    /// the whole check, so recursive combinators stay polynomial.
    fn quietly_compatible(&self, reader: &'a Value, writer: &'a Value, depth: usize) -> bool {
        let key = (reader as *const Value as usize, writer as *const Value as usize);
        if let Some(known) = self.shared.memo.borrow().get(&key) {
            return *known;
        }
        let mut c = Checker {
            reader_root: self.reader_root,
            writer_root: self.writer_root,
            policy: self.policy,
            out: Vec::new(),
            seen: self.seen.clone(),
            shared: self.shared.clone(),
        };
        c.schema(reader, writer, String::new(), depth + 1);
        let ok = c.out.is_empty();
        self.shared.memo.borrow_mut().insert(key, ok);
        ok
    }

    fn type_rule(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let Some(rt) = types(r) else { return };
        match types(w) {
            None => self.flag(
                path,
                "TYPE_NARROWED",
                format!("the writer allowed any type, the reader only {rt:?}"),
                "drop the type constraint",
            ),
            Some(wt) => {
                let missing: Vec<&String> = wt.iter().filter(|t| !admits(&rt, t)).collect();
                if !missing.is_empty() {
                    // Narrowed: the reader still takes part of what the writer wrote (some
                    // type, or integers out of numbers); changed: none of it.
                    let overlaps =
                        wt.iter().any(|t| admits(&rt, t)) || (wt.contains("number") && rt.contains("integer"));
                    let rule = if overlaps { "TYPE_NARROWED" } else { "TYPE_CHANGED" };
                    self.flag(
                        path,
                        rule,
                        format!("type {missing:?} written before is no longer accepted (reader: {rt:?})"),
                        format!("add {missing:?} to the type"),
                    );
                }
            }
        }
    }

    fn enum_rule(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        let writer_values: Option<Vec<&Value>> = w
            .get("enum")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .or_else(|| w.get("const").map(|c| vec![c]));
        let reader_values: Option<Vec<&Value>> = r
            .get("enum")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .or_else(|| r.get("const").map(|c| vec![c]));
        match (reader_values, writer_values) {
            (Some(_), None) => self.flag(
                path,
                "ENUM_ARRAY_NARROWED",
                "the reader added an enum/const the writer did not have",
                "remove the enum or make it a superset",
            ),
            (Some(rv), Some(wv)) => {
                let dropped: Vec<&&Value> = wv.iter().filter(|v| !rv.contains(v)).collect();
                if !dropped.is_empty() {
                    self.flag(
                        path,
                        "ENUM_ARRAY_NARROWED",
                        format!("values {dropped:?} were removed from the enum"),
                        "keep every value the writer could produce",
                    );
                }
            }
            _ => {}
        }
    }

    fn bound(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str, rule: BoundRule) {
        let (key, lower, rule_added, rule_changed) = rule;
        let Some(rv) = num(r, key) else { return };
        match num(w, key) {
            None => self.flag(path, rule_added, format!("the reader added {key} = {rv}"), format!("remove {key}")),
            Some(wv) if (lower && rv > wv) || (!lower && rv < wv) => self.flag(
                path,
                rule_changed,
                format!("{key} moved from {wv} to {rv}, rejecting values the writer allowed"),
                format!("keep {key} at {wv} or {}", if lower { "lower" } else { "higher" }),
            ),
            _ => {}
        }
    }

    fn numeric(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        self.bound(r, w, path, ("minimum", true, "MINIMUM_ADDED", "MINIMUM_INCREASED"));
        self.bound(r, w, path, ("exclusiveMinimum", true, "EXCLUSIVE_MINIMUM_ADDED", "EXCLUSIVE_MINIMUM_INCREASED"));
        self.bound(r, w, path, ("maximum", false, "MAXIMUM_ADDED", "MAXIMUM_DECREASED"));
        self.bound(r, w, path, ("exclusiveMaximum", false, "EXCLUSIVE_MAXIMUM_ADDED", "EXCLUSIVE_MAXIMUM_DECREASED"));
        if let Some(rm) = num(r, "multipleOf") {
            match num(w, "multipleOf") {
                None => self.flag(
                    path,
                    "MULTIPLE_OF_ADDED",
                    format!("the reader added multipleOf {rm}"),
                    "remove multipleOf",
                ),
                Some(wm) if ((wm / rm) - (wm / rm).round()).abs() > 1e-9 => self.flag(
                    path,
                    "MULTIPLE_OF_CHANGED",
                    format!("multipleOf {wm} values are not all multiples of {rm}"),
                    format!("use a divisor of {wm}"),
                ),
                _ => {}
            }
        }
    }

    fn string(&mut self, r: &Map<String, Value>, w: &Map<String, Value>, path: &str) {
        self.bound(r, w, path, ("minLength", true, "MIN_LENGTH_ADDED", "MIN_LENGTH_INCREASED"));
        self.bound(r, w, path, ("maxLength", false, "MAX_LENGTH_ADDED", "MAX_LENGTH_DECREASED"));
        if let Some(rp) = r.get("pattern").and_then(Value::as_str) {
            match w.get("pattern").and_then(Value::as_str) {
                None => {
                    self.flag(path, "PATTERN_ADDED", format!("the reader added pattern {rp:?}"), "remove the pattern")
                }
                Some(wp) if wp != rp => self.flag(
                    path,
                    "PATTERN_CHANGED",
                    format!("pattern changed from {wp:?} to {rp:?}"),
                    "keep the writer's pattern",
                ),
                _ => {}
            }
        }
    }

    fn object(&mut self, r: &'a Map<String, Value>, w: &'a Map<String, Value>, path: &str, depth: usize) {
        let empty: &'a Map<String, Value> = &EMPTY;
        let rp = r.get("properties").and_then(Value::as_object).unwrap_or(empty);
        let wp = w.get("properties").and_then(Value::as_object).unwrap_or(empty);
        let required = |s: &Map<String, Value>| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let (rreq, wreq) = (required(r), required(w));
        let writer_closed = is_closed(w);
        let reader_closed = is_closed(r);
        // Properties in both: recurse.
        for (name, rs) in rp {
            let ppath = child(&child(path, "properties"), name);
            match wp.get(name) {
                Some(ws) => self.schema(rs, ws, ppath, depth + 1),
                None => {
                    // The writer never declared it. An open writer may still have written it.
                    let accepts_anything = rs == &Value::Bool(true) || rs.as_object().is_some_and(Map::is_empty);
                    if !writer_closed && !accepts_anything && (self.policy != Policy::Lenient || rreq.contains(name)) {
                        let from_additional = w.get("additionalProperties").filter(|a| a.is_object());
                        match from_additional {
                            Some(wa) => self.schema(rs, wa, ppath, depth + 1),
                            None => self.flag(
                                &ppath,
                                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                                format!("`{name}` is new, but the writer's open model may already carry it with any value"),
                                "close the writer model (additionalProperties: false) first, or select the LENIENT policy",
                            ),
                        }
                    }
                }
            }
        }
        // Properties the reader dropped.
        for (name, ws) in wp {
            if rp.contains_key(name) {
                continue;
            }
            let ppath = child(&child(path, "properties"), name);
            if reader_closed {
                self.flag(
                    &ppath,
                    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    format!("`{name}` was removed from a closed model: data carrying it is rejected"),
                    "keep the property, or open the model",
                );
            } else if let Some(ra) = r.get("additionalProperties").filter(|a| a.is_object()) {
                self.schema(ra, ws, ppath, depth + 1);
            }
        }
        // Newly required properties.
        for name in rreq.difference(&wreq) {
            let has_default = rp.get(name).and_then(|p| p.get("default")).is_some();
            if !has_default {
                self.flag(
                    &child(&child(path, "required"), name),
                    "REQUIRED_PROPERTY_ADDED",
                    format!("`{name}` is now required; data written before may lack it"),
                    format!("make `{name}` optional or give it a default"),
                );
            }
        }
        // additionalProperties closing or narrowing.
        match (r.get("additionalProperties"), w.get("additionalProperties")) {
            (Some(Value::Bool(false)), Some(Value::Bool(false))) => {}
            (Some(Value::Bool(false)), _) => self.flag(
                &child(path, "additionalProperties"),
                "ADDITIONAL_PROPERTIES_REMOVED",
                "the reader closed a model the writer left open",
                "keep additionalProperties open",
            ),
            (Some(ra), Some(wa)) if ra.is_object() => {
                self.schema(ra, wa, child(path, "additionalProperties"), depth + 1)
            }
            (Some(ra), None) if ra.is_object() && !ra.as_object().is_some_and(Map::is_empty) => self.flag(
                &child(path, "additionalProperties"),
                "ADDITIONAL_PROPERTIES_NARROWED",
                "the reader constrains extra properties the writer allowed freely",
                "leave additionalProperties unconstrained",
            ),
            _ => {}
        }
        // patternProperties.
        let rpp = r.get("patternProperties").and_then(Value::as_object).unwrap_or(empty);
        let wpp = w.get("patternProperties").and_then(Value::as_object).unwrap_or(empty);
        for (pattern, rs) in rpp {
            let ppath = child(&child(path, "patternProperties"), pattern);
            match wpp.get(pattern) {
                Some(ws) => self.schema(rs, ws, ppath, depth + 1),
                None if !writer_closed => self.flag(
                    &ppath,
                    "PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    format!("pattern `{pattern}` is new; the writer may already have written matching properties"),
                    "remove the pattern property",
                ),
                None => {}
            }
        }
        for pattern in wpp.keys() {
            if !rpp.contains_key(pattern) && reader_closed {
                self.flag(
                    &child(&child(path, "patternProperties"), pattern),
                    "PATTERN_PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    format!("pattern `{pattern}` was removed from a closed model"),
                    "keep the pattern property",
                );
            }
        }
        self.bound(r, w, path, ("minProperties", true, "MIN_PROPERTIES_ADDED", "MIN_PROPERTIES_INCREASED"));
        self.bound(r, w, path, ("maxProperties", false, "MAX_PROPERTIES_ADDED", "MAX_PROPERTIES_DECREASED"));
    }

    fn array(&mut self, r: &'a Map<String, Value>, w: &'a Map<String, Value>, path: &str, depth: usize) {
        match (r.get("items"), w.get("items")) {
            (Some(ri @ (Value::Object(_) | Value::Bool(_))), Some(wi @ (Value::Object(_) | Value::Bool(_)))) => {
                self.schema(ri, wi, child(path, "items"), depth + 1)
            }
            (Some(Value::Array(rt)), Some(Value::Array(wt))) => {
                for (i, (ri, wi)) in rt.iter().zip(wt).enumerate() {
                    self.schema(ri, wi, child(&child(path, "items"), &i.to_string()), depth + 1);
                }
            }
            (Some(ri), None) if ri.is_object() && !ri.as_object().is_some_and(Map::is_empty) => self.flag(
                &child(path, "items"),
                "ITEMS_NARROWED",
                "the reader constrains items the writer left free",
                "leave items unconstrained",
            ),
            _ => {}
        }
        if let (Some(Value::Array(rt)), Some(Value::Array(wt))) = (r.get("prefixItems"), w.get("prefixItems")) {
            for (i, (ri, wi)) in rt.iter().zip(wt).enumerate() {
                self.schema(ri, wi, child(&child(path, "prefixItems"), &i.to_string()), depth + 1);
            }
        }
        if r.get("additionalItems") == Some(&Value::Bool(false))
            && w.get("additionalItems") != Some(&Value::Bool(false))
        {
            self.flag(
                &child(path, "additionalItems"),
                "ADDITIONAL_ITEMS_REMOVED",
                "the reader closed the tuple",
                "keep additionalItems open",
            );
        }
        self.bound(r, w, path, ("minItems", true, "MIN_ITEMS_ADDED", "MIN_ITEMS_INCREASED"));
        self.bound(r, w, path, ("maxItems", false, "MAX_ITEMS_ADDED", "MAX_ITEMS_DECREASED"));
        if r.get("uniqueItems") == Some(&Value::Bool(true)) && w.get("uniqueItems") != Some(&Value::Bool(true)) {
            self.flag(path, "UNIQUE_ITEMS_ADDED", "the reader requires unique items", "drop uniqueItems");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// (name, reader, writer, rules expected; empty = compatible)
    fn cases() -> Vec<(&'static str, Value, Value, Vec<&'static str>)> {
        let gps = json!({"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]});
        vec![
            ("identical", gps.clone(), gps.clone(), vec![]),
            ("integer widened to number", json!({"type": "number"}), json!({"type": "integer"}), vec![]),
            (
                "number narrowed to integer",
                json!({"type": "integer"}),
                json!({"type": "number"}),
                vec!["TYPE_NARROWED"],
            ),
            ("string to number", json!({"type": "number"}), json!({"type": "string"}), vec!["TYPE_CHANGED"]),
            ("type union widened", json!({"type": ["string", "null"]}), json!({"type": "string"}), vec![]),
            (
                "type union narrowed",
                json!({"type": "string"}),
                json!({"type": ["string", "null"]}),
                vec!["TYPE_NARROWED"],
            ),
            (
                "optional property added to a closed writer",
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
                vec![],
            ),
            (
                "optional property added to an open writer",
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                vec!["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"],
            ),
            (
                "required property added",
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
                vec!["REQUIRED_PROPERTY_ADDED"],
            ),
            (
                "required property with a default added",
                json!({"type": "object", "properties": {"b": {"type": "string", "default": "x"}}, "required": ["b"], "additionalProperties": false}),
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                vec![],
            ),
            (
                "property removed from an open reader",
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
                vec![],
            ),
            (
                "property removed from a closed reader",
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}),
                vec!["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"],
            ),
            (
                "model closed",
                json!({"type": "object", "additionalProperties": false}),
                json!({"type": "object"}),
                vec!["ADDITIONAL_PROPERTIES_REMOVED"],
            ),
            ("enum widened", json!({"enum": ["a", "b", "c"]}), json!({"enum": ["a", "b"]}), vec![]),
            ("enum narrowed", json!({"enum": ["a"]}), json!({"enum": ["a", "b"]}), vec!["ENUM_ARRAY_NARROWED"]),
            (
                "enum added",
                json!({"type": "string", "enum": ["a"]}),
                json!({"type": "string"}),
                vec!["ENUM_ARRAY_NARROWED"],
            ),
            (
                "minimum relaxed",
                json!({"type": "number", "minimum": -10}),
                json!({"type": "number", "minimum": 0}),
                vec![],
            ),
            (
                "minimum raised",
                json!({"type": "number", "minimum": 5}),
                json!({"type": "number", "minimum": 0}),
                vec!["MINIMUM_INCREASED"],
            ),
            (
                "maximum added",
                json!({"type": "number", "maximum": 5}),
                json!({"type": "number"}),
                vec!["MAXIMUM_ADDED"],
            ),
            (
                "maxLength lowered",
                json!({"type": "string", "maxLength": 5}),
                json!({"type": "string", "maxLength": 10}),
                vec!["MAX_LENGTH_DECREASED"],
            ),
            (
                "pattern added",
                json!({"type": "string", "pattern": "^a"}),
                json!({"type": "string"}),
                vec!["PATTERN_ADDED"],
            ),
            (
                "multipleOf divisor ok",
                json!({"type": "number", "multipleOf": 2}),
                json!({"type": "number", "multipleOf": 4}),
                vec![],
            ),
            (
                "multipleOf not a divisor",
                json!({"type": "number", "multipleOf": 3}),
                json!({"type": "number", "multipleOf": 4}),
                vec!["MULTIPLE_OF_CHANGED"],
            ),
            (
                "items narrowed",
                json!({"type": "array", "items": {"type": "integer"}}),
                json!({"type": "array", "items": {"type": "number"}}),
                vec!["TYPE_NARROWED"],
            ),
            (
                "maxItems added",
                json!({"type": "array", "maxItems": 3}),
                json!({"type": "array"}),
                vec!["MAX_ITEMS_ADDED"],
            ),
            (
                "anyOf branch added",
                json!({"anyOf": [{"type": "string"}, {"type": "number"}]}),
                json!({"anyOf": [{"type": "string"}]}),
                vec![],
            ),
            (
                "anyOf branch removed",
                json!({"anyOf": [{"type": "string"}]}),
                json!({"anyOf": [{"type": "string"}, {"type": "number"}]}),
                vec!["COMBINED_TYPE_SUBSCHEMAS_CHANGED"],
            ),
            (
                "plain to anyOf",
                json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
                json!({"type": "string"}),
                vec![],
            ),
            (
                "anyOf to oneOf",
                json!({"oneOf": [{"type": "string"}]}),
                json!({"anyOf": [{"type": "string"}]}),
                vec!["COMBINED_TYPE_CHANGED"],
            ),
            (
                "nested property narrowed, with its pointer",
                json!({"type": "object", "properties": {"pos": {"type": "object", "properties": {"lat": {"type": "integer"}}}}}),
                json!({"type": "object", "properties": {"pos": {"type": "object", "properties": {"lat": {"type": "number"}}}}}),
                vec!["TYPE_NARROWED"],
            ),
            (
                "local refs are followed",
                json!({"$defs": {"p": {"type": "integer"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/p"}}}),
                json!({"definitions": {"p": {"type": "number"}}, "type": "object", "properties": {"a": {"$ref": "#/definitions/p"}}}),
                vec!["TYPE_NARROWED"],
            ),
            ("true reader accepts all", json!(true), json!({"type": "string"}), vec![]),
            (
                "pattern property added to an open writer",
                json!({"type": "object", "patternProperties": {"^x-": {"type": "string"}}}),
                json!({"type": "object"}),
                vec!["PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"],
            ),
        ]
    }

    #[test]
    fn rules_fire_as_confluent_and_karapace_decide() {
        for (name, reader, writer, want) in cases() {
            let got: Vec<&str> = check(&reader, &writer, Policy::Strict).iter().map(|i| i.rule).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn findings_carry_the_pointer_and_a_fix() {
        let reader = json!({"type": "object", "properties": {"pos": {"type": "object", "properties": {"lat": {"type": "integer"}}}}});
        let writer = json!({"type": "object", "properties": {"pos": {"type": "object", "properties": {"lat": {"type": "number"}}}}});
        let found = check(&reader, &writer, Policy::Strict);
        assert_eq!(found[0].path, "#/properties/pos/properties/lat");
        assert!(!found[0].fix.is_empty());
        assert!(found[0].confluent_message().contains("type=TYPE_NARROWED"));
    }

    #[test]
    fn lenient_allows_optional_properties_on_open_models_only() {
        let writer = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let optional = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
        let required = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"]});
        assert!(check(&optional, &writer, Policy::Lenient).is_empty());
        assert!(!check(&required, &writer, Policy::Lenient).is_empty());
        assert!(!check(&optional, &writer, Policy::Strict).is_empty());
    }

    #[test]
    fn recursive_schemas_terminate() {
        let tree = json!({"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"});
        assert!(check(&tree, &tree, Policy::Strict).is_empty());
    }

    #[test]
    fn recursive_combinators_stay_bounded() {
        // Every node is an anyOf of four branches that all recurse into the root: without the
        // memo each level multiplies the work by 16, and a 64-deep comparison never ends.
        let branchy = |t: &str| {
            json!({"anyOf": [
                {"type": "object", "properties": {"a": {"$ref": "#"}, "b": {"$ref": "#"}}},
                {"type": "array", "items": {"$ref": "#"}},
                {"type": "object", "properties": {"c": {"$ref": "#"}}},
                {"type": t}
            ]})
        };
        let started = std::time::Instant::now();
        assert!(check(&branchy("string"), &branchy("string"), Policy::Strict).is_empty());
        let found = check(&branchy("string"), &branchy("boolean"), Policy::Strict);
        assert!(!found.is_empty());
        // Not a timing assertion of speed, a guard against the exponential case (minutes).
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}
