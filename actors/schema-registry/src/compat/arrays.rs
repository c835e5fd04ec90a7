//! Array rules, as Confluent's `ArraySchemaDiff` decides them: the list form of `items`, tuple
//! positions (common ones compared; added or removed ones judged by the other side's content
//! model — open, partially open through an `additionalItems` / `unevaluatedItems` schema, or
//! closed), the tail after the tuple, `unevaluatedItems` and the item-count bounds. None of
//! them depends on the policy: Confluent's LENIENT set has no array rule.
//!
//! Both dialects reduce to one model. Draft-07 and earlier: `items` is a list schema or a
//! tuple array, `additionalItems` the tail (`prefixItems` is an unknown keyword). 2020-12 and
//! 2019-09 (by the root `$schema`, as Confluent): `prefixItems` is the tuple and `items` the
//! list schema without a tuple, the tail after one (`items: false` closes it). Pointers name
//! the reader's own keywords (`#/prefixItems/1`, `#/items` for a 2020-12 tail) where Confluent
//! writes the draft-07 ones (`#/items/1`, `#/additionalItems`).

use serde_json::{Map, Value};

use super::{Checker, child, is_empty_schema};

/// One side's array schema in Confluent's terms.
struct Model<'a> {
    /// `items` as one schema for every element (everit's `allItemSchema`).
    list: Option<&'a Value>,
    tuple: &'a [Value],
    /// Elements past the tuple are allowed at all.
    permits: bool,
    /// Their schema (`additionalItems`, or 2020-12 `items` after `prefixItems`).
    tail: Option<&'a Value>,
    /// `unevaluatedItems`, `true` counting as absent.
    uneval: Option<&'a Value>,
    modern: bool,
}

impl<'a> Model<'a> {
    fn of(s: &'a Map<String, Value>, modern: bool) -> Model<'a> {
        let uneval = s.get("unevaluatedItems").filter(|u| **u != Value::Bool(true));
        let items = s.get("items");
        // A 2019-09 schema may still spell its tuple as an `items` array: read it as drafted.
        if modern && !matches!(items, Some(Value::Array(_))) {
            let tuple = s.get("prefixItems").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let (mut list, mut permits, mut tail) = (None, true, None);
            match items {
                Some(Value::Bool(false)) => permits = false,
                Some(i @ Value::Object(_)) if tuple.is_empty() => list = Some(i),
                Some(i @ Value::Object(_)) => tail = Some(i),
                _ => {}
            }
            return Model { list, tuple, permits, tail, uneval, modern: true };
        }
        let (list, tuple) = match items {
            Some(Value::Array(t)) => (None, t.as_slice()),
            Some(i) => (Some(i), &[][..]),
            None => (None, &[][..]),
        };
        let (permits, tail) = match s.get("additionalItems") {
            Some(Value::Bool(false)) => (false, None),
            Some(a @ Value::Object(_)) => (true, Some(a)),
            _ => (true, None),
        };
        Model { list, tuple, permits, tail, uneval, modern: false }
    }

    /// Confluent's `isOpenContentModel` for arrays: any element may follow the tuple.
    fn open(&self) -> bool {
        self.permits && self.tail.is_none() && self.uneval.is_none()
    }

    /// Confluent's `schemaFromPartiallyOpenContentModel`: the tail schema, else (the tail
    /// allowed and unconstrained) an `unevaluatedItems` schema.
    fn partial(&self) -> Option<&'a Value> {
        self.tail.or_else(|| if self.permits { self.uneval.filter(|u| u.is_object()) } else { None })
    }

    fn position(&self, path: &str, i: usize) -> String {
        child(&child(path, if self.modern { "prefixItems" } else { "items" }), &i.to_string())
    }

    fn tail_path(&self, path: &str) -> String {
        child(path, if self.modern { "items" } else { "additionalItems" })
    }
}

impl<'a> Checker<'a> {
    pub(super) fn array(&mut self, r: &'a Map<String, Value>, w: &'a Map<String, Value>, path: &str, depth: usize) {
        let (rm, wm) = (Model::of(r, self.reader_modern), Model::of(w, self.writer_modern));
        // The list form. Confluent calls any list schema the writer lacked SCHEMA_ADDED, `{}`
        // and `true` too; Loom lets those through, as they constrain nothing.
        match (rm.list, wm.list) {
            (Some(rl), None) if !is_empty_schema(rl) => self.flag(
                &child(path, "items"),
                "SCHEMA_ADDED",
                "the reader constrains every item where the writer did not",
                "leave items unconstrained",
            ),
            (Some(rl), Some(wl)) => self.schema(rl, wl, child(path, "items"), depth + 1),
            _ => {}
        }
        self.tuple(&rm, &wm, path, depth);
        self.tail(&rm, &wm, path, depth);
        self.unevaluated(r, w, path, depth, "unevaluatedItems", false);
        self.bound(r, w, path, ("minItems", true, "MIN_ITEMS_ADDED", "MIN_ITEMS_INCREASED"));
        self.bound(r, w, path, ("maxItems", false, "MAX_ITEMS_ADDED", "MAX_ITEMS_DECREASED"));
        if r.get("uniqueItems") == Some(&Value::Bool(true)) && w.get("uniqueItems") != Some(&Value::Bool(true)) {
            self.flag(path, "UNIQUE_ITEMS_ADDED", "the reader requires unique items", "drop uniqueItems");
        }
    }

    fn tuple(&mut self, rm: &Model<'a>, wm: &Model<'a>, path: &str, depth: usize) {
        let common = rm.tuple.len().min(wm.tuple.len());
        for i in 0..common {
            self.schema(&rm.tuple[i], &wm.tuple[i], rm.position(path, i), depth + 1);
        }
        // Positions the reader dropped: its tail now reads what the writer put there.
        for (i, wi) in wm.tuple.iter().enumerate().skip(common) {
            let ipath = rm.position(path, i);
            if rm.open() {
                continue;
            }
            if let Some(p) = rm.partial() {
                if !self.covers(p, wi, &ipath, depth) {
                    self.flag(
                        &ipath,
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        format!("position {i} was removed and the reader's schema for later items rejects it"),
                        "keep the position, or widen the schema of the items after the tuple",
                    );
                }
            } else if wi != &Value::Bool(false) {
                self.flag(
                    &ipath,
                    "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    format!("position {i} was removed from a closed tuple: arrays that long are rejected"),
                    "keep the position, or allow items after the tuple",
                );
            }
        }
        // Positions the reader added: the writer's tail may already have put anything there.
        for (i, ri) in rm.tuple.iter().enumerate().skip(common) {
            let ipath = rm.position(path, i);
            if wm.open() {
                if !is_empty_schema(ri) {
                    self.flag(
                        &ipath,
                        "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                        format!("position {i} is new, but the writer's open tuple may already carry any value there"),
                        "close the writer's tuple (additionalItems: false, or items: false in 2020-12) first",
                    );
                }
            } else if let Some(p) = wm.partial()
                && !self.covers(ri, p, &ipath, depth)
            {
                self.flag(
                    &ipath,
                    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    format!("position {i} is new and narrower than the writer's schema for later items"),
                    "accept what the writer allowed after its tuple",
                );
            }
        }
    }

    /// Confluent's compareAdditionalItems: the elements after the tuple.
    fn tail(&mut self, rm: &Model<'a>, wm: &Model<'a>, path: &str, depth: usize) {
        let tpath = rm.tail_path(path);
        if wm.permits && !rm.permits {
            return self.flag(
                &tpath,
                "ADDITIONAL_ITEMS_REMOVED",
                "the reader allows no items after the tuple where the writer did",
                "keep additional items allowed",
            );
        }
        if !rm.permits || !wm.permits {
            return;
        }
        match (rm.tail, wm.tail) {
            (Some(rt), None) if !is_empty_schema(rt) => self.flag(
                &tpath,
                "ADDITIONAL_ITEMS_NARROWED",
                "the reader constrains the items after the tuple the writer left free",
                "leave the items after the tuple unconstrained",
            ),
            (Some(rt), Some(wt)) => self.schema(rt, wt, tpath, depth + 1),
            _ => {}
        }
    }
}
