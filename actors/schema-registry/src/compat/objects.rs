//! Object rules, as Confluent's `ObjectSchemaDiff` decides them: properties in both schemas,
//! properties added or removed judged by the other side's content model (open, partially open
//! through `patternProperties` / an `additionalProperties` or `unevaluatedProperties` schema,
//! or closed), newly required properties, `additionalProperties`, `unevaluatedProperties` and
//! the property-count bounds. `patternProperties` maps are never compared with each other
//! (Confluent does not): a pattern only closes a model and covers the names it matches.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Checker, EMPTY, Policy, child, is_empty_schema};

/// Where a property name falls in a model that is not open.
enum Cover<'a> {
    /// A pattern, `additionalProperties` or `unevaluatedProperties` schema covers the name.
    Partial(&'a Value),
    /// The model is closed for this name.
    Closed,
    /// A pattern the validator's regex engine cannot compile: coverage cannot be decided.
    Undecidable(&'a str),
}

/// Confluent's `isOpenContentModel`: any property with any value may be present.
/// `additionalProperties` absent or `true`, no `patternProperties`, `unevaluatedProperties`
/// absent or `true`.
fn open(s: &Map<String, Value>) -> bool {
    matches!(s.get("additionalProperties"), None | Some(Value::Bool(true)))
        && s.get("patternProperties").and_then(Value::as_object).is_none_or(Map::is_empty)
        && matches!(s.get("unevaluatedProperties"), None | Some(Value::Bool(true)))
}

fn required(s: &Map<String, Value>) -> BTreeSet<&str> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

impl<'a> Checker<'a> {
    /// Confluent's `schemaFromPartiallyOpenContentModel`: the first pattern (in key order)
    /// whose regex is found anywhere in `name` (an unanchored search, as Java's `find()`),
    /// else an `additionalProperties` schema, else (with `additionalProperties` absent or
    /// `true`) an `unevaluatedProperties` schema.
    fn cover(&self, s: &'a Map<String, Value>, name: &str) -> Cover<'a> {
        for (pattern, schema) in s.get("patternProperties").and_then(Value::as_object).into_iter().flatten() {
            match self.pattern_matches(pattern, name) {
                Some(true) => return Cover::Partial(schema),
                Some(false) => {}
                None => return Cover::Undecidable(pattern),
            }
        }
        match s.get("additionalProperties") {
            Some(a @ Value::Object(_)) => return Cover::Partial(a),
            Some(Value::Bool(false)) => return Cover::Closed,
            _ => {}
        }
        match s.get("unevaluatedProperties") {
            Some(u @ Value::Object(_)) => Cover::Partial(u),
            _ => Cover::Closed,
        }
    }

    /// Whether `pattern` matches `name` the way the validator decides `patternProperties`
    /// (the `jsonschema` crate's ECMA-262 dialect, unanchored), so a compatibility decision
    /// never disagrees with what validation enforces. `None`: the pattern does not compile
    /// there (lookbehind, Java-only syntax, …) — the caller refuses to guess.
    fn pattern_matches(&self, pattern: &str, name: &str) -> Option<bool> {
        let mut cache = self.shared.patterns.borrow_mut();
        let compiled = cache
            .entry(pattern.to_owned())
            .or_insert_with(|| jsonschema::validator_for(&serde_json::json!({"pattern": pattern})).ok());
        compiled.as_ref().map(|v| v.is_valid(&Value::String(name.to_owned())))
    }

    fn undecidable(&mut self, path: &str, pattern: &str) {
        self.flag(
            &child(&child(path, "patternProperties"), pattern),
            "PATTERN_PROPERTY_UNDECIDABLE",
            format!("pattern `{pattern}` does not compile as an ECMA-262 regex, so which names it covers is unknown"),
            "use a pattern without lookbehind, backreferences or Java-only syntax",
        );
    }

    /// Runs a nested comparison; true when it found nothing (Confluent's "covered").
    pub(super) fn covers(&mut self, reader: &'a Value, writer: &'a Value, path: &str, depth: usize) -> bool {
        let before = self.out.len();
        self.schema(reader, writer, path.to_owned(), depth + 1);
        self.out.len() == before
    }

    pub(super) fn object(&mut self, r: &'a Map<String, Value>, w: &'a Map<String, Value>, path: &str, depth: usize) {
        let empty: &'a Map<String, Value> = &EMPTY;
        let rp = r.get("properties").and_then(Value::as_object).unwrap_or(empty);
        let wp = w.get("properties").and_then(Value::as_object).unwrap_or(empty);
        let (rreq, wreq) = (required(r), required(w));
        // Newly required properties the writer already declared (Confluent's compareRequired).
        // Loom also flags names neither side declares, which Confluent lets through although an
        // open writer may have omitted them; names the reader adds are judged just below.
        for name in rreq.difference(&wreq) {
            let added = rp.contains_key(*name) && !wp.contains_key(*name);
            let has_default = rp.get(*name).and_then(|p| p.get("default")).is_some();
            if !added && !has_default {
                self.flag(
                    &child(&child(path, "required"), name),
                    "REQUIRED_ATTRIBUTE_ADDED",
                    format!("`{name}` is now required; data written before may lack it"),
                    format!("make `{name}` optional or give it a default"),
                );
            }
        }
        for (name, rs) in rp {
            let ppath = child(&child(path, "properties"), name);
            match wp.get(name) {
                Some(ws) => self.schema(rs, ws, ppath, depth + 1),
                None => self.property_added(w, name, rs, rreq.contains(name.as_str()), path, depth),
            }
        }
        for (name, ws) in wp {
            if !rp.contains_key(name) {
                self.property_removed(r, name, ws, path, depth);
            }
        }
        self.additional_properties(r, w, path, depth);
        self.unevaluated(r, w, path, depth, "unevaluatedProperties", true);
        self.bound(r, w, path, ("minProperties", true, "MIN_PROPERTIES_ADDED", "MIN_PROPERTIES_INCREASED"));
        self.bound(r, w, path, ("maxProperties", false, "MAX_PROPERTIES_ADDED", "MAX_PROPERTIES_DECREASED"));
    }

    /// A property only the reader declares, judged by the writer's model: what may the writer
    /// already have written under that name?
    fn property_added(
        &mut self,
        w: &'a Map<String, Value>,
        name: &str,
        rs: &'a Value,
        is_required: bool,
        path: &str,
        depth: usize,
    ) {
        let ppath = &child(&child(path, "properties"), name);
        let has_default = rs.get("default").is_some();
        if open(w) {
            // Anything may be there already: only an unconstrained property is safe.
            if is_empty_schema(rs) {
                return;
            }
            match (is_required, has_default) {
                (true, false) => self.flag(
                    ppath,
                    "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    format!("`{name}` is new and required; data written before may lack it or carry any value"),
                    format!("make `{name}` optional and close the writer model, or give it a default"),
                ),
                (true, true) => self.flag_unless_lenient(
                    ppath,
                    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL",
                    format!("`{name}` is new; the writer's open model may already carry it with any value"),
                    "close the writer model (additionalProperties: false) first, or select the LENIENT policy",
                ),
                (false, _) => self.flag_unless_lenient(
                    ppath,
                    "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    format!("`{name}` is new, but the writer's open model may already carry it with any value"),
                    "close the writer model (additionalProperties: false) first, or select the LENIENT policy",
                ),
            }
            return;
        }
        match self.cover(w, name) {
            Cover::Partial(p) => {
                if !self.covers(rs, p, ppath, depth) {
                    self.flag_unless_lenient(
                        ppath,
                        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        format!("`{name}` is new and narrower than the writer's schema for such names"),
                        "accept what the writer's pattern or additionalProperties allowed",
                    );
                }
            }
            Cover::Undecidable(pattern) => self.undecidable(path, pattern),
            Cover::Closed => {}
        }
        if is_required && !has_default {
            self.flag(
                ppath,
                "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                format!("`{name}` is new and required; data written before lacks it"),
                format!("make `{name}` optional or give it a default"),
            );
        }
    }

    /// A property only the writer declares, judged by the reader's model: will the reader
    /// still accept it where the writer wrote it?
    fn property_removed(&mut self, r: &'a Map<String, Value>, name: &str, ws: &'a Value, path: &str, depth: usize) {
        let ppath = &child(&child(path, "properties"), name);
        if open(r) {
            return;
        }
        match self.cover(r, name) {
            Cover::Partial(p) => {
                if !self.covers(p, ws, ppath, depth) {
                    self.flag_unless_lenient(
                        ppath,
                        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        format!("`{name}` was removed and the reader's schema for such names rejects what was written"),
                        "keep the property, or widen the pattern or additionalProperties schema",
                    );
                }
            }
            Cover::Undecidable(pattern) => self.undecidable(path, pattern),
            Cover::Closed if ws == &Value::Bool(false) => {}
            Cover::Closed => self.flag_unless_lenient(
                ppath,
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                format!("`{name}` was removed from a closed model: data carrying it is rejected"),
                "keep the property, or open the model",
            ),
        }
    }

    /// Confluent's compareAdditionalProperties. An empty schema (`{}`) added is not flagged:
    /// it constrains nothing (Confluent calls it narrowed).
    fn additional_properties(
        &mut self,
        r: &'a Map<String, Value>,
        w: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let apath = child(path, "additionalProperties");
        let permits = |s: &Map<String, Value>| s.get("additionalProperties") != Some(&Value::Bool(false));
        let schema_of = |s: &'a Map<String, Value>| s.get("additionalProperties").filter(|a| a.is_object());
        if permits(w) && !permits(r) {
            return self.flag_unless_lenient(
                &apath,
                "ADDITIONAL_PROPERTIES_REMOVED",
                "the reader closed a model the writer left open",
                "keep additionalProperties open",
            );
        }
        if !permits(r) || !permits(w) {
            return; // added (compatible) or both closed
        }
        match (schema_of(r), schema_of(w)) {
            (Some(ra), None) if !is_empty_schema(ra) => self.flag_unless_lenient(
                &apath,
                "ADDITIONAL_PROPERTIES_NARROWED",
                "the reader constrains extra properties the writer allowed freely",
                "leave additionalProperties unconstrained",
            ),
            (Some(ra), Some(wa)) => self.schema(ra, wa, apath, depth + 1),
            _ => {}
        }
    }

    /// `unevaluatedProperties` / `unevaluatedItems` (`keyword`), Confluent's table: becoming
    /// `false` is REMOVED, a schema where there was none (or `true`) NARROWED, both schemas
    /// compared. `true` counts as absent. With `lenient_ok` (properties, not items) REMOVED and
    /// NARROWED are compatible under the LENIENT policy.
    pub(super) fn unevaluated(
        &mut self,
        r: &'a Map<String, Value>,
        w: &'a Map<String, Value>,
        path: &str,
        depth: usize,
        keyword: &'static str,
        lenient_ok: bool,
    ) {
        let get = |s: &'a Map<String, Value>| s.get(keyword).filter(|u| **u != Value::Bool(true));
        let upath = child(path, keyword);
        let (removed, narrowed) = if keyword == "unevaluatedItems" {
            ("UNEVALUATED_ITEMS_REMOVED", "UNEVALUATED_ITEMS_NARROWED")
        } else {
            ("UNEVALUATED_PROPERTIES_REMOVED", "UNEVALUATED_PROPERTIES_NARROWED")
        };
        let tolerated = lenient_ok && self.policy == Policy::Lenient;
        match (get(r), get(w)) {
            (Some(Value::Bool(false)), Some(Value::Bool(false))) | (None, _) | (Some(_), Some(Value::Bool(false))) => {}
            (Some(Value::Bool(false)), _) if !tolerated => {
                self.flag(&upath, removed, format!("the reader set {keyword} to false"), format!("keep {keyword} open"))
            }
            (Some(ru), None) if !tolerated && !is_empty_schema(ru) => self.flag(
                &upath,
                narrowed,
                format!("the reader constrains {keyword} the writer left free"),
                format!("leave {keyword} unconstrained"),
            ),
            (Some(ru), Some(wu)) if ru.is_object() => self.schema(ru, wu, upath, depth + 1),
            _ => {}
        }
    }
}
