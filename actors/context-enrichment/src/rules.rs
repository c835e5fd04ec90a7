//! Enrichment rules: CEL conditions over an event and its computed context that set fields
//! (`{"when": "context.time.day_part == 'morning'", "set": {"/context/activity": "commute"}}`),
//! stored cluster-wide in a book like the router's rules and compiled by the same CEL compiler
//! (`loom-expr`). Pure: no I/O.
//!
//! Semantics: enabled rules run in priority order (highest first, then id), every matching rule
//! applies (later rules see earlier rules' writes). `set` writes JSON literals, `compute` writes
//! the value of a CEL expression; a pointer starting `/context/` writes into the context, any
//! other into the event; missing parents are created. A rule whose condition or expression
//! fails (a field that is absent — guard with `has()` — or a type mismatch) is skipped for
//! that event and named in `context.reasons.rules`; it never fails the request.
//!
//! CEL variables: `event` (the event as received, plus earlier rules' writes), `context` (the
//! context groups computed so far).

use std::collections::BTreeMap;
use std::sync::Arc;

use loom_expr::Expr;
use loom_expr::cel::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Rules per cluster.
pub const MAX_RULES: usize = 1000;
/// Writes (`set` plus `compute`) per rule.
pub const MAX_WRITES: usize = 32;

/// A rule as stored and as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "commute-end", "priority": 10,
    "when": "context.time.day_part == 'morning' && has(context.place.geofence) && context.place.geofence == 'office'",
    "set": {"/context/activity": "commute_end"}}))]
pub struct RuleSpec {
    /// 1-128 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A CEL condition over `event` and `context`.
    pub when: String,
    /// JSON pointer → literal JSON value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub set: BTreeMap<String, Value>,
    /// JSON pointer → CEL expression whose value is written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compute: BTreeMap<String, String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// A rule that does not compile: where in it and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule '{rule}': {at}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub at: String,
    pub message: String,
    pub position: Option<(isize, isize)>,
}

enum Write {
    Literal(Value),
    Expr(Expr),
}

/// A compiled rule.
pub struct Rule {
    pub id: String,
    pub version: i32,
    pub priority: i32,
    pub enabled: bool,
    when: Expr,
    writes: Vec<(String, Write)>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).field("version", &self.version).finish()
    }
}

pub fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub fn compile(spec: &RuleSpec, version: i32) -> Result<Rule, RuleError> {
    let err =
        |at: &str, message: String, position| RuleError { rule: spec.id.clone(), at: at.into(), message, position };
    let expr = |at: &str, src: &str| Expr::compile(src).map_err(|e| err(at, e.message, e.position));
    if !id_ok(&spec.id) {
        return Err(err("id", "a rule id is 1-128 characters of [A-Za-z0-9._-]".into(), None));
    }
    if spec.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(err("description", "at most 1024 bytes".into(), None));
    }
    let when = expr("when", &spec.when)?;
    let n = spec.set.len() + spec.compute.len();
    if n == 0 {
        return Err(err("set", "a rule needs at least one write in `set` or `compute`".into(), None));
    }
    if n > MAX_WRITES {
        return Err(err("set", format!("at most {MAX_WRITES} writes per rule"), None));
    }
    let pointer = |at: String, p: &str| {
        if !loom_expr::field_pointer(p) || p == "/context" || p.len() > 512 {
            Err(err(&at, format!("'{p}' is not a JSON pointer to a field (like /context/activity)"), None))
        } else {
            Ok(())
        }
    };
    let mut writes = Vec::with_capacity(n);
    for (p, v) in &spec.set {
        pointer(format!("set.{p}"), p)?;
        writes.push((p.clone(), Write::Literal(v.clone())));
    }
    for (p, src) in &spec.compute {
        if spec.set.contains_key(p) {
            return Err(err(&format!("compute.{p}"), "the pointer is in `set` too".into(), None));
        }
        pointer(format!("compute.{p}"), p)?;
        writes.push((p.clone(), Write::Expr(expr(&format!("compute.{p}"), src)?)));
    }
    Ok(Rule { id: spec.id.clone(), version, priority: spec.priority, enabled: spec.enabled, when, writes })
}

/// The enabled rules in evaluation order.
pub fn ordered(mut rules: Vec<Arc<Rule>>) -> Vec<Arc<Rule>> {
    rules.retain(|r| r.enabled);
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    rules
}

fn scope<'r>(root: &'r Context<'static, 'static>, event: &Value, ctx: &Value) -> Result<Context<'r, 'static>, String> {
    let mut s = root.new_inner_scope();
    s.add_variable("event", event).map_err(|e| e.to_string())?;
    s.add_variable("context", ctx).map_err(|e| e.to_string())?;
    Ok(s)
}

/// What the rules did to one event.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// `(id, version)` of each rule that matched and wrote.
    pub applied: Vec<(String, i32)>,
    /// `(id, why)` of each rule that failed on this event.
    pub errors: Vec<(String, String)>,
}

/// Runs `rules` (already [`ordered`]) over one event and its context, writing into both.
pub fn apply(rules: &[Arc<Rule>], event: &mut Value, ctx: &mut Map<String, Value>) -> Applied {
    let mut out = Applied::default();
    if rules.is_empty() {
        return out;
    }
    loom_expr::with_root(|root| {
        let mut ctx_value = Value::Object(std::mem::take(ctx));
        let mut current: Option<Context<'_, 'static>> = None;
        for rule in rules {
            if current.is_none() {
                match scope(root, event, &ctx_value) {
                    Ok(s) => current = Some(s),
                    Err(e) => {
                        out.errors.push((rule.id.clone(), e));
                        continue;
                    }
                }
            }
            let Some(s) = current.as_ref() else { continue };
            match rule.when.test(s) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    out.errors.push((rule.id.clone(), format!("when: {e}")));
                    continue;
                }
            }
            // Evaluate every write first, so a failing one leaves the event untouched.
            let mut values = Vec::with_capacity(rule.writes.len());
            let mut failed = None;
            for (p, w) in &rule.writes {
                match w {
                    Write::Literal(v) => values.push((p, v.clone())),
                    Write::Expr(e) => match e.eval(s).and_then(|v| v.json().map_err(|e| e.to_string())) {
                        Ok(v) => values.push((p, v)),
                        Err(e) => {
                            failed = Some(format!("compute.{p}: {e}"));
                            break;
                        }
                    },
                }
            }
            if let Some(e) = failed {
                out.errors.push((rule.id.clone(), e));
                continue;
            }
            let mut write_failed = None;
            for (p, v) in values {
                let r = match p.strip_prefix("/context") {
                    Some(rest) if rest.starts_with('/') => loom_expr::set_pointer_creating(&mut ctx_value, rest, v),
                    _ => loom_expr::set_pointer_creating(event, p, v),
                };
                if let Err(e) = r {
                    write_failed = Some(format!("{p}: {e}"));
                }
            }
            match write_failed {
                Some(e) => out.errors.push((rule.id.clone(), e)),
                None => out.applied.push((rule.id.clone(), rule.version)),
            }
            current = None;
        }
        if let Value::Object(m) = ctx_value {
            *ctx = m;
        }
    });
    out
}

/// The `context.rules` group of one event: the rules applied, with the book's revision.
pub fn group(applied: &Applied, revision: i64) -> Value {
    let list: Vec<Value> = applied.applied.iter().map(|(id, v)| json!({"id": id, "version": v})).collect();
    json!({"applied": list, "provenance": {"source": "rules", "version": revision}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> RuleSpec {
        serde_json::from_value(v).unwrap()
    }

    fn rules(specs: &[Value]) -> Vec<Arc<Rule>> {
        ordered(specs.iter().map(|s| Arc::new(compile(&spec(s.clone()), 1).unwrap())).collect())
    }

    #[test]
    fn bad_rules_name_the_field() {
        let cases = [
            (json!({"id": "a", "when": "context.x >", "set": {"/context/y": 1}}), "when", true),
            (json!({"id": "b", "when": "true"}), "set", false),
            (json!({"id": "c", "when": "true", "set": {"context/y": 1}}), "set.context/y", false),
            (json!({"id": "d", "when": "true", "set": {"/context": 1}}), "set./context", false),
            (json!({"id": "e", "when": "true", "compute": {"/x": "1 +"}}), "compute./x", true),
            (json!({"id": "f", "when": "true", "set": {"/x": 1}, "compute": {"/x": "2"}}), "compute./x", false),
            (json!({"id": "bad id", "when": "true", "set": {"/x": 1}}), "id", false),
            (json!({"id": "g", "when": "", "set": {"/x": 1}}), "when", false),
        ];
        for (s, at, positioned) in cases {
            let e = compile(&spec(s.clone()), 0).unwrap_err();
            assert_eq!(e.at, at, "{s}");
            assert_eq!(e.position.is_some(), positioned, "{s}: {e:?}");
        }
        assert!(serde_json::from_value::<RuleSpec>(json!({"id": "x", "when": "true", "sett": {}})).is_err());
    }

    #[test]
    fn rules_apply_in_order_and_see_earlier_writes() {
        let set = rules(&[
            json!({"id": "b-second", "priority": 1, "when": "context.activity == 'commute'",
                   "compute": {"/context/label": "context.activity + '@' + event.device"}}),
            json!({"id": "a-first", "priority": 5, "when": "context.time.day_part == 'morning'",
                   "set": {"/context/activity": "commute", "/flags/seen": true}}),
            json!({"id": "off", "enabled": false, "when": "true", "set": {"/context/off": 1}}),
        ]);
        assert_eq!(set.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a-first", "b-second"]);
        let mut event = json!({"device": "d1"});
        let mut ctx = json!({"time": {"day_part": "morning"}}).as_object().unwrap().clone();
        let a = apply(&set, &mut event, &mut ctx);
        assert_eq!(a.applied, [("a-first".to_owned(), 1), ("b-second".to_owned(), 1)]);
        assert!(a.errors.is_empty(), "{a:?}");
        assert_eq!(ctx["activity"], "commute");
        assert_eq!(ctx["label"], "commute@d1");
        assert_eq!(event, json!({"device": "d1", "flags": {"seen": true}}));
    }

    #[test]
    fn failing_rules_are_skipped_with_a_reason() {
        let set = rules(&[
            json!({"id": "absent", "when": "context.place.geofence == 'office'", "set": {"/context/x": 1}}),
            json!({"id": "guarded", "when": "has(context.place) && context.place != null", "set": {"/context/y": 1}}),
            json!({"id": "not-bool", "when": "1 + 1", "set": {"/context/z": 1}}),
            json!({"id": "bad-write", "when": "true", "set": {"/device/inner": 1}}),
            json!({"id": "bad-compute", "when": "true", "compute": {"/context/w": "event.nope.deeper"}}),
        ]);
        let mut event = json!({"device": "d1"});
        let mut ctx = Map::new();
        let a = apply(&set, &mut event, &mut ctx);
        assert!(a.applied.is_empty(), "{a:?}");
        let failed: Vec<&str> = a.errors.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(failed, ["absent", "bad-compute", "bad-write", "not-bool"]);
        assert!(ctx.is_empty() && event == json!({"device": "d1"}));
    }
}
