//! JSON Schema compatibility: can a reader schema accept every instance a writer schema
//! accepts? BACKWARD checks the new schema reading data of the old; FORWARD the reverse; FULL
//! both; the `_TRANSITIVE` forms against every live version. The decisions and rule names are
//! Confluent's (`io.confluent.kafka.schemaregistry.json.diff`): `check(reader, writer)` is its
//! `SchemaDiff.compare(original = writer, update = reader)` reporting only the differences
//! outside the policy's compatible set. Objects and tuples are judged by content model — open,
//! partially open (a `patternProperties` pattern, an `additionalProperties` /
//! `additionalItems` / `unevaluated*` schema covering the name or position) or closed — in
//! `compat/objects.rs` and `compat/arrays.rs`; types, enums, numeric and string bounds and
//! combinators here. Each finding names the JSON pointer, the rule and a suggested fix. The
//! LENIENT policy is Confluent's: it also accepts optional properties added to an open model,
//! properties removed from a closed one, `additionalProperties` / `unevaluatedProperties`
//! closed or narrowed and partially open models not covering a property (never an array
//! change). Pure logic with table-driven tests, Confluent's own cases among them.

mod arrays;
mod objects;

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
        reader_modern: modern(reader),
        writer_modern: modern(writer),
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
    /// `patternProperties` regexes compiled once per check (`None`: does not compile).
    patterns: RefCell<HashMap<String, Option<jsonschema::Validator>>>,
}

/// Whether a root schema is read as 2020-12 / 2019-09 (`prefixItems` tuples), as Confluent
/// decides by `$schema`; anything else is draft-07.
fn modern(root: &Value) -> bool {
    root.get("$schema")
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("draft/2020-12") || s.contains("draft/2019-09"))
}

/// `true` or `{}`: a schema that accepts anything (Confluent's `EmptySchema`).
fn is_empty_schema(v: &Value) -> bool {
    v == &Value::Bool(true) || v.as_object().is_some_and(Map::is_empty)
}

/// (keyword, is a lower bound, rule when added, rule when tightened)
type BoundRule = (&'static str, bool, &'static str, &'static str);

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

struct Checker<'a> {
    reader_root: &'a Value,
    writer_root: &'a Value,
    /// Each side's dialect, from its root `$schema`.
    reader_modern: bool,
    writer_modern: bool,
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

    /// A rule in Confluent's LENIENT compatible set: reported under STRICT only.
    fn flag_unless_lenient(
        &mut self,
        path: &str,
        rule: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        if self.policy == Policy::Strict {
            self.flag(path, rule, message, fix);
        }
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
            reader_modern: self.reader_modern,
            writer_modern: self.writer_modern,
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
                vec!["OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"],
            ),
            (
                "required property added",
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["b"], "additionalProperties": false}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
                vec!["REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"],
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
            // Was PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, a rule Confluent does not have:
            // it never compares pattern maps, so a pattern alone changes nothing (case X1).
            (
                "pattern property added to an open writer",
                json!({"type": "object", "patternProperties": {"^x-": {"type": "string"}}}),
                json!({"type": "object"}),
                vec![],
            ),
            // Confluent says SCHEMA_ADDED for any list schema the writer lacked; `{}` and
            // `true` constrain nothing, so Loom lets them through.
            ("empty items schema added", json!({"type": "array", "items": {}}), json!({"type": "array"}), vec![]),
            (
                "unevaluatedItems closed",
                json!({"type": "array", "prefixItems": [{"type": "string"}], "unevaluatedItems": false}),
                json!({"type": "array", "prefixItems": [{"type": "string"}]}),
                vec!["UNEVALUATED_ITEMS_REMOVED"],
            ),
            (
                "existing property made required",
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                json!({"type": "object", "properties": {"a": {"type": "string"}}}),
                vec!["REQUIRED_ATTRIBUTE_ADDED"],
            ),
        ]
    }

    /// (id, Confluent's description, original = writer, update = reader, the incompatible
    /// differences under STRICT as "RULE pointer", compatible under LENIENT).
    ///
    /// `d7#N` and `2020#N` are the cases of Confluent's `diff-schema-examples.json` and
    /// `diff-schema-examples-2020-12.json` (json-schema-provider tests) that involve
    /// `patternProperties`, partially open models, tuples, `additionalItems` or
    /// `unevaluatedItems`; X (patterns) and Y (tuples) are derived from its
    /// `ObjectSchemaDiff` / `ArraySchemaDiff` code for changes it has no test for. Confluent
    /// also lists its compatible differences; Loom reports only incompatible ones, so those
    /// are the expectation. Pointers are Confluent's except in 2020-12 schemas, where Loom
    /// names the reader's own keywords (`#/prefixItems/N`, `#/items` for the tail) where
    /// Confluent writes `#/items/N` and `#/additionalItems`.
    type ConfluentCase = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str], bool);

    const CONFLUENT_CASES: &[ConfluentCase] = &[
        (
            "d7#35",
            "Detect property added to partially open content model 1",
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"integer"}}}"#,
            r#"{"properties":{"foo":{"type":"string"},"I_123":{"type":"number"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"integer"}}}"#,
            &[],
            true,
        ),
        (
            "d7#36",
            "Detect property added to partially open content model 2",
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "d7#37",
            "Detect property added to partially open content model 3",
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"number"}},"additionalProperties":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/properties/bar",
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/bar",
            ],
            false,
        ),
        (
            "d7#38",
            "Detect property added to partially open content model 4",
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"required":["bar"],"additionalProperties":{"type":"string"}}"#,
            &["REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL #/properties/bar"],
            false,
        ),
        (
            "d7#39",
            "Detect property removed from partially open content model 1",
            r#"{"properties":{"foo":{"type":"string"},"I_123":{"type":"integer"}},"additionalProperties":false}"#,
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"number"}}}"#,
            &[],
            true,
        ),
        (
            "d7#40",
            "Detect property removed from partially open content model 2",
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":false}"#,
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "d7#41",
            "Detect property removed from partially open content model 3",
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"number"}},"additionalProperties":false}"#,
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/properties/bar",
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/bar",
            ],
            false,
        ),
        (
            "d7#42",
            "Detect property removed from partially open content model 4",
            r#"{"properties":{"foo":{"type":"string"},"bar":{"oneOf":[{"type":"null"},{"type":"string"}]}},"additionalProperties":false}"#,
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "d7#43",
            "Detect property removed from partially open content model 5",
            r#"{"properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":false}"#,
            r#"{"properties":{"foo":{"type":"string"}},"additionalProperties":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "d7#64",
            "Detect changes to items schema list",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}]}"#,
            r#"{"type":"array"}"#,
            &[],
            true,
        ),
        (
            "d7#65",
            "Detect item added to partially open content model 1",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"string"}],"additionalItems":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "d7#66",
            "Detect item added to partially open content model 2",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            &["TYPE_CHANGED #/items/2", "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/items/2"],
            false,
        ),
        (
            "d7#67",
            "Detect item removed from partially open content model 1",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"string"}],"additionalItems":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "d7#68",
            "Detect item removed from partially open content model 2",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"oneOf":[{"type":"null"},{"type":"string"}]}],"additionalItems":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "d7#69",
            "Detect item removed from partially open content model 3",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":{"type":"string"}}"#,
            &["TYPE_CHANGED #/items/2", "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/items/2"],
            false,
        ),
        (
            "d7#70",
            "Detect changes to items in the schema list",
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            r#"{"type":"array","items":[{"type":"number"}]}"#,
            &["TYPE_CHANGED #/items/0"],
            false,
        ),
        (
            "d7#87",
            "Detect removed boolean additional items",
            r#"{"additionalItems":true}"#,
            r#"{"additionalItems":false}"#,
            &["ADDITIONAL_ITEMS_REMOVED #/additionalItems"],
            false,
        ),
        (
            "d7#88",
            "Detect changes to additional items schema",
            r#"{"additionalItems":{"type":"string"}}"#,
            r#"{"additionalItems":{"type":"number"}}"#,
            &["TYPE_CHANGED #/additionalItems"],
            false,
        ),
        (
            "d7#89",
            "Detect adding empty schema to open content model for array",
            r#"{"type":"array","additionalItems":true,"items":[{"type":"number"}]}"#,
            r#"{"type":"array","additionalItems":true,"items":[{"type":"number"},true]}"#,
            &[],
            true,
        ),
        (
            "d7#90",
            "Detect removing empty schema from open content model for array",
            r#"{"type":"array","additionalItems":true,"items":[{"type":"number"},true]}"#,
            r#"{"type":"array","additionalItems":true,"items":[{"type":"number"}]}"#,
            &[],
            true,
        ),
        (
            "d7#91",
            "Detect adding false to closed content model for array",
            r#"{"type":"array","additionalItems":false,"items":[{"type":"number"}]}"#,
            r#"{"type":"array","additionalItems":false,"items":[{"type":"number"},false]}"#,
            &[],
            true,
        ),
        (
            "d7#92",
            "Detect removing false from closed content model for array",
            r#"{"type":"array","additionalItems":false,"items":[{"type":"number"},false]}"#,
            r#"{"type":"array","additionalItems":false,"items":[{"type":"number"}]}"#,
            &[],
            true,
        ),
        (
            "d7#93",
            "Detect adding to closed content model for array",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":false}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"boolean"}],"additionalItems":true}"#,
            &[],
            true,
        ),
        (
            "d7#94",
            "Detect removing from closed content model for array",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"},{"type":"boolean"}],"additionalItems":false}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":true}"#,
            &[],
            true,
        ),
        (
            "d7#95",
            "Detect removing from open content model for array",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":true}"#,
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":true}"#,
            &[],
            true,
        ),
        (
            "d7#96",
            "Detect adding to closed content model for array",
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":false}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":false}"#,
            &[],
            true,
        ),
        (
            "d7#97",
            "Detect removing number from closed content model for array",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":false}"#,
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"number"}}"#,
            &[],
            true,
        ),
        (
            "d7#98",
            "Detect adding number to partially open content model for array",
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"number"}}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":true}"#,
            &[],
            true,
        ),
        (
            "2020#34",
            "Detect property added to partially open content model 1",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"integer"}}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"I_123":{"type":"number"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"integer"}}}"#,
            &[],
            true,
        ),
        (
            "2020#35",
            "Detect property added to partially open content model 2",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#36",
            "Detect property added to partially open content model 2, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"unevaluatedProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"unevaluatedProperties":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#37",
            "Detect property added to partially open content model 3",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"number"}},"additionalProperties":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/properties/bar",
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/bar",
            ],
            false,
        ),
        (
            "2020#38",
            "Detect property added to partially open content model 3, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"unevaluatedProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"number"}},"unevaluatedProperties":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/properties/bar",
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/bar",
            ],
            false,
        ),
        (
            "2020#39",
            "Detect property added to partially open content model 4",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"required":["bar"],"additionalProperties":{"type":"string"}}"#,
            &["REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL #/properties/bar"],
            false,
        ),
        (
            "2020#40",
            "Detect property added to partially open content model 4, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"unevaluatedProperties":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"required":["bar"],"unevaluatedProperties":{"type":"string"}}"#,
            &["REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL #/properties/bar"],
            false,
        ),
        (
            "2020#41",
            "Detect property removed from partially open content model 1",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"I_123":{"type":"integer"}},"additionalProperties":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":false,"patternProperties":{"^S_":{"type":"string"},"^I_":{"type":"number"}}}"#,
            &[],
            true,
        ),
        (
            "2020#42",
            "Detect property removed from partially open content model 2",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#43",
            "Detect property removed from partially open content model 3",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"number"}},"additionalProperties":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/properties/bar",
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/bar",
            ],
            false,
        ),
        (
            "2020#44",
            "Detect property removed from partially open content model 4",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"oneOf":[{"type":"null"},{"type":"string"}]}},"additionalProperties":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "2020#45",
            "Detect property removed from partially open content model 5",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"},"bar":{"type":"string"}},"additionalProperties":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"foo":{"type":"string"}},"additionalProperties":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "2020#66",
            "Detect changes to items schema list",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array"}"#,
            &[],
            true,
        ),
        (
            "2020#67",
            "Detect item added to partially open content model 1",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"string"}],"items":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#68",
            "Detect item added to partially open content model 1, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"string"}],"unevaluatedItems":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#69",
            "Detect item added to partially open content model 2",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"number"}],"items":{"type":"string"}}"#,
            &["TYPE_CHANGED #/prefixItems/2", "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/prefixItems/2"],
            false,
        ),
        (
            "2020#70",
            "Detect item added to partially open content model 2, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            &["TYPE_CHANGED #/prefixItems/2", "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/prefixItems/2"],
            false,
        ),
        (
            "2020#71",
            "Detect item removed from partially open content model 1",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"string"}],"items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#72",
            "Detect item removed from partially open content model 1, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"string"}],"unevaluatedItems":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            &[],
            true,
        ),
        (
            "2020#73",
            "Detect item removed from partially open content model 2",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"oneOf":[{"type":"null"},{"type":"string"}]}],"items":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "2020#74",
            "Detect item removed from partially open content model 2, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"oneOf":[{"type":"null"},{"type":"string"}]}],"unevaluatedItems":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"unevaluatedItems":{"oneOf":[{"type":"null"},{"type":"string"}]}}"#,
            &[],
            true,
        ),
        (
            "2020#75",
            "Detect item removed from partially open content model 3",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"number"}],"items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/prefixItems/2",
                "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/prefixItems/2",
            ],
            false,
        ),
        (
            "2020#76",
            "Detect item removed from partially open content model 3, unevaluated",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"unevaluatedItems":{"type":"string"}}"#,
            &[
                "TYPE_CHANGED #/prefixItems/2",
                "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/prefixItems/2",
            ],
            false,
        ),
        (
            "2020#77",
            "Detect changes to items in the schema list",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"number"}]}"#,
            &["TYPE_CHANGED #/prefixItems/0"],
            false,
        ),
        (
            "2020#97",
            "Detect removed boolean additional items",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","items":true}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","items":false}"#,
            &["ADDITIONAL_ITEMS_REMOVED #/items"],
            false,
        ),
        (
            "2020#98",
            "Detect changes to additional items schema",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","items":{"type":"number"}}"#,
            &["TYPE_CHANGED #/items"],
            false,
        ),
        (
            "2020#99",
            "Detect adding empty schema to open content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":true,"prefixItems":[{"type":"number"}]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":true,"prefixItems":[{"type":"number"},true]}"#,
            &[],
            true,
        ),
        (
            "2020#100",
            "Detect removing empty schema from open content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":true,"prefixItems":[{"type":"number"},true]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":true,"prefixItems":[{"type":"number"}]}"#,
            &[],
            true,
        ),
        (
            "2020#101",
            "Detect adding false to closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":false,"prefixItems":[{"type":"number"}]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":false,"prefixItems":[{"type":"number"},false]}"#,
            &[],
            true,
        ),
        (
            "2020#102",
            "Detect removing false from closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":false,"prefixItems":[{"type":"number"},false]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":false,"prefixItems":[{"type":"number"}]}"#,
            &[],
            true,
        ),
        (
            "2020#103",
            "Detect adding to closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"boolean"}],"items":true}"#,
            &[],
            true,
        ),
        (
            "2020#104",
            "Detect removing from closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"},{"type":"boolean"}],"items":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":true}"#,
            &[],
            true,
        ),
        (
            "2020#105",
            "Detect removing from open content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":true}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":true}"#,
            &[],
            true,
        ),
        (
            "2020#106",
            "Detect adding to closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":false}"#,
            &[],
            true,
        ),
        (
            "2020#107",
            "Detect removing number from closed content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":false}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":{"type":"number"}}"#,
            &[],
            true,
        ),
        (
            "2020#108",
            "Detect adding number to partially open content model for array",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":{"type":"number"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":true}"#,
            &[],
            true,
        ),
        (
            "X1",
            "pattern added to open model, nothing else",
            r#"{"type":"object"}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"string"}}}"#,
            &[],
            true,
        ),
        (
            "X2",
            "pattern removed from closed model",
            r#"{"type":"object","additionalProperties":false,"patternProperties":{"^x-":{"type":"string"}}}"#,
            r#"{"type":"object","additionalProperties":false}"#,
            &[],
            true,
        ),
        (
            "X3",
            "pattern schema narrowed (same pattern)",
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"integer"}}}"#,
            &[],
            true,
        ),
        (
            "X4",
            "pattern schema widened (same pattern)",
            r#"{"type":"object","patternProperties":{"^x-":{"type":"integer"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}}}"#,
            &[],
            true,
        ),
        (
            "X5",
            "property removed; update has a non-matching pattern and no additionalProperties (treated as closed)",
            r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}"#,
            r#"{"type":"object","properties":{"a":{"type":"string"}},"patternProperties":{"^x-":{"type":"string"}}}"#,
            &["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL #/properties/b"],
            true,
        ),
        (
            "X6",
            "property removed, covered by update's pattern",
            r#"{"type":"object","properties":{"x-a":{"type":"string"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"string"}}}"#,
            &[],
            true,
        ),
        (
            "X7",
            "property removed, update's pattern narrower",
            r#"{"type":"object","properties":{"x-a":{"type":"number"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"integer"}}}"#,
            &[
                "TYPE_NARROWED #/properties/x-a",
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/x-a",
            ],
            false,
        ),
        (
            "X8",
            "optional property added, original has a non-matching pattern, no additionalProperties",
            r#"{"type":"object","patternProperties":{"^x-":{"type":"string"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"string"}},"properties":{"b":{"type":"string"}}}"#,
            &[],
            true,
        ),
        (
            "X9",
            "optional property added, covered by original's pattern (same schema)",
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}},"properties":{"x-a":{"type":"number"}}}"#,
            &[],
            true,
        ),
        (
            "X10",
            "optional property added, narrower than original's pattern",
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}}}"#,
            r#"{"type":"object","patternProperties":{"^x-":{"type":"number"}},"properties":{"x-a":{"type":"integer"}}}"#,
            &[
                "TYPE_NARROWED #/properties/x-a",
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/x-a",
            ],
            false,
        ),
        (
            "X11",
            "pattern match is an unanchored find(): 'x-' pattern covers 'ax-b'",
            r#"{"type":"object","patternProperties":{"x-":{"type":"string"}},"additionalProperties":false}"#,
            r#"{"type":"object","patternProperties":{"x-":{"type":"string"}},"additionalProperties":false,"properties":{"ax-b":{"type":"number"}}}"#,
            &[
                "TYPE_CHANGED #/properties/ax-b",
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL #/properties/ax-b",
            ],
            false,
        ),
        (
            "Y1",
            "tuple -> list (draft-07)",
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            r#"{"type":"array","items":{"type":"string"}}"#,
            &["SCHEMA_ADDED #/items"],
            false,
        ),
        (
            "Y2",
            "list -> tuple (draft-07)",
            r#"{"type":"array","items":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            &["ITEM_ADDED_TO_OPEN_CONTENT_MODEL #/items/0"],
            false,
        ),
        (
            "Y3",
            "position added to open tuple",
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}]}"#,
            &["ITEM_ADDED_TO_OPEN_CONTENT_MODEL #/items/1"],
            false,
        ),
        (
            "Y4",
            "position removed from closed tuple that stays closed",
            r#"{"type":"array","items":[{"type":"string"},{"type":"number"}],"additionalItems":false}"#,
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":false}"#,
            &["ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL #/items/1"],
            false,
        ),
        (
            "Y5",
            "additionalItems schema added to open tuple",
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"string"}}"#,
            &["ADDITIONAL_ITEMS_NARROWED #/additionalItems"],
            false,
        ),
        (
            "Y6",
            "additionalItems schema dropped (extended)",
            r#"{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"string"}}"#,
            r#"{"type":"array","items":[{"type":"string"}]}"#,
            &[],
            true,
        ),
        (
            "Y7",
            "2020-12 tuple -> list",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}]}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":{"type":"string"}}"#,
            &["SCHEMA_ADDED #/items"],
            false,
        ),
        (
            "Y8",
            "2020-12 list -> tuple",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","items":{"type":"string"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}]}"#,
            &["ITEM_ADDED_TO_OPEN_CONTENT_MODEL #/prefixItems/0"],
            false,
        ),
        (
            "Y9",
            "2020-12 items-after-prefix narrowed",
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":{"type":"number"}}"#,
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":{"type":"integer"}}"#,
            &["TYPE_NARROWED #/items"],
            false,
        ),
    ];

    #[test]
    fn confluent_cases_decide_as_confluent() {
        assert_eq!(CONFLUENT_CASES.len(), 84);
        let mut failures = Vec::new();
        for (id, description, original, update, want, lenient_ok) in CONFLUENT_CASES {
            let (writer, reader): (Value, Value) =
                (serde_json::from_str(original).unwrap(), serde_json::from_str(update).unwrap());
            // Confluent iterates properties in hash order: compare as multisets.
            let mut got: Vec<String> =
                check(&reader, &writer, Policy::Strict).iter().map(|i| format!("{} {}", i.rule, i.path)).collect();
            got.sort();
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            if got != want {
                failures.push(format!("{id} ({description}) STRICT: got {got:?}, want {want:?}"));
            }
            let lenient = check(&reader, &writer, Policy::Lenient);
            if lenient.is_empty() != *lenient_ok {
                failures.push(format!("{id} ({description}) LENIENT: got {lenient:?}, want compatible={lenient_ok}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases disagree:\n{}",
            failures.len(),
            CONFLUENT_CASES.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn patterns_match_as_the_validator_does() {
        // Unanchored, as Confluent's find(): `x-` covers `ax-b` (case X11 covers the verdict).
        let writer =
            json!({"type": "object", "patternProperties": {"x-": {"type": "string"}}, "additionalProperties": false});
        let reader = json!({"type": "object", "patternProperties": {"x-": {"type": "string"}}, "additionalProperties": false, "properties": {"ax-b": {"type": "string"}}});
        assert!(check(&reader, &writer, Policy::Strict).is_empty());
        // ECMA-262 classes: `\d` covers ASCII digits only, so an Arabic-Indic name is not
        // covered and falls to the closed model (optional property added: compatible), while
        // an ASCII one is compared with the pattern's schema.
        let writer = json!({"type": "object", "patternProperties": {"^\\d+$": {"type": "integer"}}, "additionalProperties": false});
        let ascii = json!({"type": "object", "patternProperties": {"^\\d+$": {"type": "integer"}}, "additionalProperties": false, "properties": {"12": {"type": "string"}}});
        let rules: Vec<&str> = check(&ascii, &writer, Policy::Strict).iter().map(|i| i.rule).collect();
        assert_eq!(rules, ["TYPE_CHANGED", "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"]);
        let arabic = json!({"type": "object", "patternProperties": {"^\\d+$": {"type": "integer"}}, "additionalProperties": false, "properties": {"\u{0661}\u{0662}": {"type": "string"}}});
        assert!(check(&arabic, &writer, Policy::Strict).is_empty());
        // A pattern the validator cannot compile: coverage is unknown, so the check refuses
        // rather than guesses.
        let writer = json!({"type": "object", "patternProperties": {"(unclosed": {"type": "integer"}}});
        let reader = json!({"type": "object", "patternProperties": {"(unclosed": {"type": "integer"}}, "properties": {"a": {"type": "string"}}});
        let found = check(&reader, &writer, Policy::Strict);
        assert_eq!(found.iter().map(|i| i.rule).collect::<Vec<_>>(), ["PATTERN_PROPERTY_UNDECIDABLE"]);
        assert_eq!(found[0].path, "#/patternProperties/(unclosed");
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
