//! Routing rules: the stored model, compilation (CEL through the `cel` crate) with errors that
//! name the rule and position, and evaluation of a rule set over one event (pure: no I/O; schema
//! validation is asked of the caller through [`Schemas`]).
//!
//! Semantics: enabled rules run in priority order (highest first, then id). A rule whose `match`
//! is true applies its actions in order to the working event; `route` emits the event as it is at
//! that point to every rendered topic; `drop` ends evaluation and discards the event. The first
//! matching rule ends evaluation unless it sets `"continue": true`. An event no rule routes or
//! drops is `NoMatch` (the router dead-letters it as `no_route`). Payloads are parsed as JSON
//! only when some rule reads or changes the event; a pure topic mapping (literal conditions and
//! topics) passes any bytes through untouched. Any error — unparseable payload (when parsed), an
//! expression failing, a bad rendered topic, a schema violation — is `Fail`.
//!
//! CEL variables: `event` (the JSON payload), `key` (string or null), `headers` (map of
//! strings), `topic`, `partition`, `offset`, `timestamp` (ms or null).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use loom_expr::cel::{self, Context};
use loom_expr::{Expr, remove_pointer, set_pointer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_RULES: usize = 1000;
pub const MAX_ACTIONS: usize = 32;
pub const MAX_TOPICS_PER_ROUTE: usize = 16;
pub use loom_expr::MAX_EXPRESSION;
/// A routed event may go to this many topics in all.
pub const MAX_OUTPUTS: usize = 64;

/// A rule as stored and as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "hot-sensors", "priority": 10, "match": "event.temp > 30.0",
    "actions": [{"set": {"path": "/alert", "value": "true"}}, {"route": {"topics": ["alerts.{event.site}"]}}]}))]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// CEL condition; `true` matches everything.
    #[serde(rename = "match")]
    pub condition: String,
    pub actions: Vec<Action>,
    /// Keep evaluating lower-priority rules after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Emit the working event to every topic (templates: `alerts.{event.site}`).
    Route {
        topics: Vec<String>,
    },
    /// Set the field at a JSON pointer to the value of a CEL expression.
    Set {
        path: String,
        value: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
    /// Set a header to the (string) value of a CEL expression.
    Header {
        name: String,
        value: String,
    },
    /// Set the record key to the (string) value of a CEL expression.
    Key {
        value: String,
    },
    /// Validate the working event against the latest schema of a subject (a template).
    Validate {
        subject: String,
    },
    Drop {},
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Route { .. } => "route",
            Action::Set { .. } => "set",
            Action::Rename { .. } => "rename",
            Action::Remove { .. } => "remove",
            Action::Header { .. } => "header",
            Action::Key { .. } => "key",
            Action::Validate { .. } => "validate",
            Action::Drop {} => "drop",
        }
    }
}

/// A rule definition error: which rule, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("rule '{rule}': {at}: {message}")]
pub struct RuleError {
    pub rule: String,
    /// `match`, `actions[2].value`, `actions[0].topics[1]`, …
    pub at: String,
    pub message: String,
    /// Line and column inside the expression, when the CEL parser gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<(isize, isize)>,
}

fn compile(rule: &str, at: &str, source: &str) -> Result<Expr, RuleError> {
    Expr::compile(source).map_err(|e| RuleError {
        rule: rule.to_owned(),
        at: at.to_owned(),
        message: e.message,
        position: e.position,
    })
}

/// A template: literal text with `{expression}` parts.
#[derive(Debug)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Expr),
}

fn template(rule: &str, at: &str, source: &str) -> Result<Template, RuleError> {
    let err = |message: String| RuleError { rule: rule.to_owned(), at: at.to_owned(), message, position: None };
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or_else(|| err(format!("unclosed '{{' at byte {open}")))? + open;
        parts.push(Part::Expr(compile(rule, at, &rest[open + 1..close])?));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(err("'}' without '{'".into()));
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    if parts.is_empty() {
        return Err(err("empty template".into()));
    }
    Ok(Template { parts })
}

fn pointer_ok(rule: &str, at: &str, p: &str) -> Result<(), RuleError> {
    if loom_expr::field_pointer(p) {
        Ok(())
    } else {
        Err(RuleError {
            rule: rule.to_owned(),
            at: at.to_owned(),
            message: format!("'{p}' is not a JSON pointer to a field (like /device/id)"),
            position: None,
        })
    }
}

/// Valid Kafka topic name.
pub fn topic_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug)]
enum Step {
    Route(Vec<Template>),
    Set(String, Expr),
    Rename(String, String),
    Remove(String),
    Header(String, Expr),
    Key(Expr),
    Validate(Template),
    Drop,
}

/// Per-rule counters, registered once at compile time (the hot path never builds labels).
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    pub matched: metrics::Counter,
    pub routed: metrics::Counter,
    pub failed: metrics::Counter,
    pub latency: metrics::Histogram,
}

impl RuleMetrics {
    fn new(id: &str) -> RuleMetrics {
        let labels = |outcome: &'static str| {
            [("service", "event-router".to_owned()), ("rule", id.to_owned()), ("outcome", outcome.to_owned())]
        };
        RuleMetrics {
            matched: metrics::counter!(crate::names::RULE_EVENTS, &labels("matched")),
            routed: metrics::counter!(crate::names::RULE_EVENTS, &labels("routed")),
            failed: metrics::counter!(crate::names::RULE_EVENTS, &labels("failed")),
            latency: metrics::histogram!(crate::names::RULE_DURATION, "service" => "event-router", "rule" => id.to_owned()),
        }
    }
}

#[derive(Debug)]
pub struct CompiledRule {
    pub spec: RuleSpec,
    pub version: i32,
    condition: Expr,
    steps: Vec<Step>,
    pub metrics: RuleMetrics,
}

/// Checks and compiles one rule.
pub fn compile_rule(spec: RuleSpec, version: i32) -> Result<CompiledRule, RuleError> {
    let id = spec.id.clone();
    let err = |at: &str, message: String| RuleError { rule: id.clone(), at: at.to_owned(), message, position: None };
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(err("id", "a rule id is 1-128 characters of [A-Za-z0-9._-]".into()));
    }
    if spec.actions.is_empty() {
        return Err(err("actions", "a rule needs at least one action".into()));
    }
    if spec.actions.len() > MAX_ACTIONS {
        return Err(err("actions", format!("at most {MAX_ACTIONS} actions")));
    }
    let condition = compile(&id, "match", &spec.condition)?;
    let mut steps = Vec::with_capacity(spec.actions.len());
    for (i, action) in spec.actions.iter().enumerate() {
        let at = |field: &str| {
            format!(
                "actions[{i}].{}{}",
                action.name(),
                if field.is_empty() { String::new() } else { format!(".{field}") }
            )
        };
        steps.push(match action {
            Action::Route { topics } => {
                if topics.is_empty() || topics.len() > MAX_TOPICS_PER_ROUTE {
                    return Err(err(&at("topics"), format!("1 to {MAX_TOPICS_PER_ROUTE} topics")));
                }
                let mut out = Vec::new();
                for (j, t) in topics.iter().enumerate() {
                    let tpl = template(&id, &format!("{}[{j}]", at("topics")), t)?;
                    // A literal topic must be valid now; a templated one is checked per event.
                    if let [Part::Text(text)] = tpl.parts.as_slice()
                        && !topic_ok(text)
                    {
                        return Err(err(
                            &format!("{}[{j}]", at("topics")),
                            format!("'{text}' is not a valid topic name"),
                        ));
                    }
                    out.push(tpl);
                }
                Step::Route(out)
            }
            Action::Set { path, value } => {
                pointer_ok(&id, &at("path"), path)?;
                Step::Set(path.clone(), compile(&id, &at("value"), value)?)
            }
            Action::Rename { from, to } => {
                pointer_ok(&id, &at("from"), from)?;
                pointer_ok(&id, &at("to"), to)?;
                Step::Rename(from.clone(), to.clone())
            }
            Action::Remove { path } => {
                pointer_ok(&id, &at("path"), path)?;
                Step::Remove(path.clone())
            }
            Action::Header { name, value } => {
                if name.is_empty() || name.len() > 256 {
                    return Err(err(&at("name"), "a header name is 1-256 bytes".into()));
                }
                Step::Header(name.clone(), compile(&id, &at("value"), value)?)
            }
            Action::Key { value } => Step::Key(compile(&id, &at("value"), value)?),
            Action::Validate { subject } => Step::Validate(template(&id, &at("subject"), subject)?),
            Action::Drop {} => Step::Drop,
        });
    }
    let metrics = RuleMetrics::new(&id);
    Ok(CompiledRule { spec, version, condition, steps, metrics })
}

/// A compiled, ordered rule set with its version (the highest revision among its rules).
#[derive(Debug, Default)]
pub struct RuleSet {
    pub version: i64,
    pub rules: Vec<Arc<CompiledRule>>,
    /// Some rule reads or changes the event (an expression, a transform, a validation). When
    /// none does — a pure topic mapping — payloads are passed through without being parsed.
    pub reads_event: bool,
}

impl CompiledRule {
    fn reads_event(&self) -> bool {
        let templated = |t: &Template| t.parts.iter().any(|p| matches!(p, Part::Expr(_)));
        self.condition.constant().is_none()
            || self.steps.iter().any(|s| match s {
                Step::Route(topics) => topics.iter().any(templated),
                Step::Drop => false,
                _ => true,
            })
    }
}

impl RuleSet {
    pub fn new(version: i64, mut rules: Vec<Arc<CompiledRule>>) -> RuleSet {
        rules.sort_by(|a, b| b.spec.priority.cmp(&a.spec.priority).then_with(|| a.spec.id.cmp(&b.spec.id)));
        let reads_event = rules.iter().any(|r| r.spec.enabled && r.reads_event());
        RuleSet { version, rules, reads_event }
    }
}

/// The event a rule set is evaluated over.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(String, Vec<u8>)],
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

/// Which rule (and version) made a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRef {
    pub id: String,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub topic: String,
    #[serde(serialize_with = "lossy_opt")]
    pub key: Option<Vec<u8>>,
    #[serde(serialize_with = "lossy")]
    pub payload: Vec<u8>,
    #[serde(serialize_with = "lossy_headers")]
    pub headers: Vec<(String, Vec<u8>)>,
    pub rule: RuleRef,
}

fn lossy<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v))
}
fn lossy_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => lossy(v, s),
        None => s.serialize_none(),
    }
}
fn lossy_headers<S: serde::Serializer>(v: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
    let map: BTreeMap<&str, String> =
        v.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())).collect();
    map.serialize(s)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Route { outputs: Vec<Output>, matched: Vec<RuleRef> },
    Drop { rule: RuleRef, matched: Vec<RuleRef> },
    NoMatch,
    Fail { class: &'static str, message: String, rule: Option<RuleRef> },
}

/// Schema validation, provided by the caller.
pub trait Schemas {
    /// Ok when `event` is valid against the latest schema of `subject`; Err(message) if not.
    fn validate(&self, subject: &str, event: &Value) -> Result<(), SchemaProblem>;
}

pub use loom_schemas::SchemaProblem;

fn headers_map(headers: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect()
}

struct Working<'e> {
    event: &'e Event<'e>,
    json: Value,
    modified: bool,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Working<'_> {
    fn context<'r>(&self, root: &'r Context<'static, 'static>) -> Result<Context<'r, 'static>, String> {
        let mut c = root.new_inner_scope();
        c.add_variable("event", &self.json).map_err(|e| e.to_string())?;
        let key = self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned());
        c.add_variable("key", key).map_err(|e| e.to_string())?;
        c.add_variable("headers", headers_map(&self.headers)).map_err(|e| e.to_string())?;
        c.add_variable("topic", self.event.topic).map_err(|e| e.to_string())?;
        c.add_variable("partition", self.event.partition).map_err(|e| e.to_string())?;
        c.add_variable("offset", self.event.offset).map_err(|e| e.to_string())?;
        c.add_variable("timestamp", self.event.timestamp_ms).map_err(|e| e.to_string())?;
        Ok(c)
    }

    fn payload(&self) -> Vec<u8> {
        if self.modified { serde_json::to_vec(&self.json).unwrap_or_default() } else { self.event.payload.to_vec() }
    }
}

/// The CEL scope of one event, built only when an expression needs it (literal conditions
/// and plain topic names never do) and dropped after each transform.
struct Scope<'r> {
    root: &'r Context<'static, 'static>,
    ctx: Option<Context<'r, 'static>>,
}

impl<'r> Scope<'r> {
    fn get(&mut self, w: &Working<'_>) -> Result<&Context<'r, 'static>, String> {
        if self.ctx.is_none() {
            self.ctx = Some(w.context(self.root)?);
        }
        self.ctx.as_ref().ok_or_else(|| "no CEL scope".to_owned())
    }
}

fn eval(e: &Expr, scope: &mut Scope<'_>, w: &Working<'_>) -> Result<cel::Value, String> {
    match e.constant() {
        Some(b) => Ok(cel::Value::Bool(b)),
        None => e.eval(scope.get(w)?),
    }
}

fn render(t: &Template, scope: &mut Scope<'_>, w: &Working<'_>) -> Result<String, String> {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            Part::Text(s) => out.push_str(s),
            Part::Expr(e) => {
                let v = eval(e, scope, w)?;
                out.push_str(
                    &loom_expr::scalar_text(&v)
                        .ok_or_else(|| format!("template part evaluated to {v:?}, not a scalar"))?,
                );
            }
        }
    }
    Ok(out)
}

/// Evaluates the rule set over one event.
pub fn evaluate(set: &RuleSet, event: &Event<'_>, schemas: &dyn Schemas) -> Decision {
    loom_expr::with_root(|root| evaluate_in(root, set, event, schemas))
}

fn evaluate_in(root: &Context<'static, 'static>, set: &RuleSet, event: &Event<'_>, schemas: &dyn Schemas) -> Decision {
    let json: Value = if set.reads_event {
        match serde_json::from_slice(event.payload) {
            Ok(v) => v,
            Err(e) => {
                return Decision::Fail {
                    class: "unparseable",
                    message: format!("payload is not JSON: {e}"),
                    rule: None,
                };
            }
        }
    } else {
        Value::Null
    };
    let mut w =
        Working { event, json, modified: false, key: event.key.map(<[u8]>::to_vec), headers: event.headers.to_vec() };
    let mut outputs = Vec::new();
    let mut matched = Vec::new();
    let mut scope = Scope { root, ctx: None };
    for rule in &set.rules {
        if !rule.spec.enabled {
            continue;
        }
        let started = Instant::now();
        let r = RuleRef { id: rule.spec.id.clone(), version: rule.version };
        let fail = |class: &'static str, message: String| {
            rule.metrics.failed.increment(1);
            Decision::Fail { class, message, rule: Some(r.clone()) }
        };
        let is_match = match eval(&rule.condition, &mut scope, &w) {
            Ok(cel::Value::Bool(b)) => b,
            Ok(other) => return fail("rule_error", format!("match evaluated to {other:?}, not a bool")),
            Err(e) => return fail("rule_error", format!("match: {e}")),
        };
        if !is_match {
            continue;
        }
        rule.metrics.matched.increment(1);
        matched.push(r.clone());
        for (i, step) in rule.steps.iter().enumerate() {
            let at = format!("actions[{i}]");
            match step {
                Step::Route(topics) => {
                    for t in topics {
                        let topic = match render(t, &mut scope, &w) {
                            Ok(topic) if topic_ok(&topic) => topic,
                            Ok(topic) => {
                                return fail(
                                    "bad_topic",
                                    format!("{at}: rendered topic '{topic}' is not a valid topic name"),
                                );
                            }
                            Err(e) => return fail("rule_error", format!("{at}: {e}")),
                        };
                        if outputs.len() >= MAX_OUTPUTS {
                            return fail("rule_error", format!("more than {MAX_OUTPUTS} outputs for one event"));
                        }
                        outputs.push(Output {
                            topic,
                            key: w.key.clone(),
                            payload: w.payload(),
                            headers: w.headers.clone(),
                            rule: r.clone(),
                        });
                    }
                    rule.metrics.routed.increment(1);
                }
                Step::Set(path, e) => {
                    let v = match eval(e, &mut scope, &w).and_then(|v| v.json().map_err(|e| e.to_string())) {
                        Ok(v) => v,
                        Err(e) => return fail("rule_error", format!("{at}: {e}")),
                    };
                    if let Err(e) = set_pointer(&mut w.json, path, v) {
                        return fail("transform_error", format!("{at}: set {path}: {e}"));
                    }
                    w.modified = true;
                }
                Step::Rename(from, to) => {
                    if let Some(v) = remove_pointer(&mut w.json, from) {
                        if let Err(e) = set_pointer(&mut w.json, to, v) {
                            return fail("transform_error", format!("{at}: rename to {to}: {e}"));
                        }
                        w.modified = true;
                    }
                }
                Step::Remove(path) => {
                    w.modified |= remove_pointer(&mut w.json, path).is_some();
                }
                Step::Header(name, e) => match eval(e, &mut scope, &w).map(|v| loom_expr::scalar_text(&v)) {
                    Ok(Some(v)) => {
                        w.headers.retain(|(k, _)| k != name);
                        w.headers.push((name.clone(), v.into_bytes()));
                    }
                    Ok(None) => return fail("rule_error", format!("{at}: header value is not a scalar")),
                    Err(e) => return fail("rule_error", format!("{at}: {e}")),
                },
                Step::Key(e) => match eval(e, &mut scope, &w).map(|v| loom_expr::scalar_text(&v)) {
                    Ok(Some(v)) => w.key = Some(v.into_bytes()),
                    Ok(None) => return fail("rule_error", format!("{at}: key is not a scalar")),
                    Err(e) => return fail("rule_error", format!("{at}: {e}")),
                },
                Step::Validate(subject) => {
                    let subject = match render(subject, &mut scope, &w) {
                        Ok(s) => s,
                        Err(e) => return fail("rule_error", format!("{at}: subject: {e}")),
                    };
                    match schemas.validate(&subject, &w.json) {
                        Ok(()) => {}
                        Err(SchemaProblem::Invalid(m)) => return fail("schema_invalid", format!("{subject}: {m}")),
                        Err(SchemaProblem::Unavailable(m)) => {
                            return fail("schema_unavailable", format!("{subject}: {m}"));
                        }
                    }
                }
                Step::Drop => {
                    rule.metrics.latency.record(started.elapsed().as_secs_f64());
                    return Decision::Drop { rule: r, matched };
                }
            }
            // Later steps see earlier transforms.
            if matches!(step, Step::Set(..) | Step::Rename(..) | Step::Remove(..) | Step::Header(..) | Step::Key(..)) {
                scope.ctx = None;
            }
        }
        rule.metrics.latency.record(started.elapsed().as_secs_f64());
        if !rule.spec.continue_ {
            break;
        }
    }
    if outputs.is_empty() { Decision::NoMatch } else { Decision::Route { outputs, matched } }
}

/// A standalone condition (replay filters): the same CEL variables as a rule's `match`, with
/// `event` null when the payload is not JSON.
#[derive(Debug)]
pub struct Filter(Expr);

pub fn compile_filter(source: &str) -> Result<Filter, RuleError> {
    compile("filter", "filter", source).map(Filter)
}

impl Filter {
    pub fn matches(&self, event: &Event<'_>) -> Result<bool, String> {
        let json = serde_json::from_slice(event.payload).unwrap_or(Value::Null);
        let w = Working {
            event,
            json,
            modified: false,
            key: event.key.map(<[u8]>::to_vec),
            headers: event.headers.to_vec(),
        };
        loom_expr::with_root(|root| match eval(&self.0, &mut Scope { root, ctx: None }, &w) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("filter evaluated to {other:?}, not a bool")),
            Err(e) => Err(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Schemas for unit tests: subject "s" requires a numeric `temp`.
    struct TempSchema;
    impl Schemas for TempSchema {
        fn validate(&self, subject: &str, event: &Value) -> Result<(), SchemaProblem> {
            match subject {
                "s" if event["temp"].is_number() => Ok(()),
                "s" => Err(SchemaProblem::Invalid("temp is not a number".into())),
                other => Err(SchemaProblem::Unavailable(format!("no subject {other}"))),
            }
        }
    }

    fn rule(v: Value) -> RuleSpec {
        serde_json::from_value(v).unwrap()
    }

    fn set(rules: &[Value]) -> RuleSet {
        RuleSet::new(1, rules.iter().map(|r| Arc::new(compile_rule(rule(r.clone()), 1).unwrap())).collect())
    }

    fn run(set: &RuleSet, payload: &str) -> Decision {
        let event = Event { payload: payload.as_bytes(), topic: "in", ..Event::default() };
        evaluate(set, &event, &TempSchema)
    }

    #[test]
    fn bad_rules_name_the_rule_and_the_position() {
        let cases = [
            (json!({"id": "a", "match": "event.x >", "actions": [{"drop": {}}]}), "match", true),
            (json!({"id": "b", "match": "true", "actions": []}), "actions", false),
            (
                json!({"id": "c", "match": "true", "actions": [{"route": {"topics": ["bad topic"]}}]}),
                "actions[0].route.topics[0]",
                false,
            ),
            (
                json!({"id": "d", "match": "true", "actions": [{"set": {"path": "x", "value": "1"}}]}),
                "actions[0].set.path",
                false,
            ),
            (
                json!({"id": "e", "match": "true", "actions": [{"drop": {}}, {"set": {"path": "/x", "value": "1 +"}}]}),
                "actions[1].set.value",
                true,
            ),
            (
                json!({"id": "f", "match": "true", "actions": [{"route": {"topics": ["a.{event.x"]}}]}),
                "actions[0].route.topics[0]",
                false,
            ),
            (json!({"id": "bad id!", "match": "true", "actions": [{"drop": {}}]}), "id", false),
            (
                json!({"id": "g", "match": "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", "actions": [{"drop": {}}]}),
                "match",
                false,
            ),
        ];
        for (spec, at, has_position) in cases {
            let id = spec["id"].as_str().unwrap().to_owned();
            let e = compile_rule(rule(spec), 1).expect_err(&id);
            assert_eq!((e.rule.as_str(), e.at.as_str()), (id.as_str(), at), "{e}");
            assert_eq!(e.position.is_some(), has_position, "{e}");
            assert!(e.to_string().starts_with(&format!("rule '{id}': {at}:")), "{e}");
        }
    }

    #[test]
    fn decisions_follow_priority_transforms_and_continue() {
        let rules = set(&[
            json!({"id": "low", "priority": 1, "match": "true", "actions": [{"route": {"topics": ["all"]}}]}),
            json!({"id": "hot", "priority": 10, "match": "has(event.temp) && event.temp > 30", "continue": true, "actions": [
                {"set": {"path": "/alert", "value": "true"}},
                {"rename": {"from": "/temp", "to": "/celsius"}},
                {"header": {"name": "h", "value": "'v'"}},
                {"key": {"value": "event.device"}},
                {"route": {"topics": ["alerts.{event.site}"]}}]}),
            json!({"id": "noise", "priority": 20, "match": "event.kind == 'noise'", "actions": [{"drop": {}}]}),
        ]);
        // (payload, decision, topics, rules matched)
        let cases: &[(&str, &str, &[&str], &[&str])] = &[
            (
                r#"{"kind":"reading","temp":35,"site":"b","device":"d9"}"#,
                "route",
                &["alerts.b", "all"],
                &["hot", "low"],
            ),
            (r#"{"kind":"reading","temp":10,"site":"b"}"#, "route", &["all"], &["low"]),
            (r#"{"kind":"noise"}"#, "drop", &[], &["noise"]),
        ];
        for (payload, want, topics, matched) in cases {
            let d = run(&rules, payload);
            let (name, got_topics, got_matched) = match &d {
                Decision::Route { outputs, matched } => (
                    "route",
                    outputs.iter().map(|o| o.topic.as_str()).collect::<Vec<_>>(),
                    matched.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ),
                Decision::Drop { matched, .. } => ("drop", vec![], matched.iter().map(|r| r.id.as_str()).collect()),
                other => panic!("{payload}: {other:?}"),
            };
            assert_eq!((name, got_topics.as_slice(), got_matched.as_slice()), (*want, *topics, *matched), "{payload}");
        }
        let Decision::Route { outputs, .. } = run(&rules, r#"{"kind":"r","temp":35,"site":"b","device":"d9"}"#) else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&outputs[0].payload).unwrap();
        assert_eq!(v, json!({"kind": "r", "celsius": 35, "site": "b", "device": "d9", "alert": true}));
        assert_eq!(outputs[0].key.as_deref(), Some(&b"d9"[..]));
        assert_eq!(outputs[0].headers, [("h".to_owned(), b"v".to_vec())]);
        // The lower rule saw the transformed event too; an untouched event keeps its bytes.
        let raw = r#"{"kind":"x",  "temp":1}"#;
        let Decision::Route { outputs, .. } = run(&rules, raw) else { panic!() };
        assert_eq!(outputs[0].payload, raw.as_bytes());
    }

    #[test]
    fn failures_are_classified() {
        let rules = set(&[
            json!({"id": "v", "priority": 5, "match": "event.kind == 'v'", "actions": [{"validate": {"subject": "s"}}, {"route": {"topics": ["ok"]}}]}),
            json!({"id": "u", "priority": 5, "match": "event.kind == 'u'", "actions": [{"validate": {"subject": "nope"}}, {"route": {"topics": ["ok"]}}]}),
            json!({"id": "e", "priority": 5, "match": "event.kind == 'e'", "actions": [{"set": {"path": "/x", "value": "event.no.such"}}]}),
            json!({"id": "t", "priority": 5, "match": "event.kind == 't'", "actions": [{"route": {"topics": ["x.{event.site}"]}}]}),
            json!({"id": "m", "priority": 4, "match": "event.kind", "actions": [{"drop": {}}]}),
        ]);
        let cases = [
            ("not json", "unparseable", None),
            (r#"{"kind":"v","temp":"hot"}"#, "schema_invalid", Some("v")),
            (r#"{"kind":"u"}"#, "schema_unavailable", Some("u")),
            (r#"{"kind":"e"}"#, "rule_error", Some("e")),
            (r#"{"kind":"t","site":"a b"}"#, "bad_topic", Some("t")),
            (r#"{"kind":"z"}"#, "rule_error", Some("m")),
        ];
        for (payload, class, rule) in cases {
            match run(&rules, payload) {
                Decision::Fail { class: got, rule: r, .. } => {
                    assert_eq!((got, r.map(|r| r.id)), (class, rule.map(str::to_owned)), "{payload}");
                }
                other => panic!("{payload}: {other:?}"),
            }
        }
        assert_eq!(run(&rules, r#"{"kind":"v","temp":3}"#).clone(), run(&rules, r#"{"kind":"v","temp":3}"#));
        assert!(matches!(run(&set(&[]), "{}"), Decision::NoMatch));
    }

    #[test]
    fn a_pure_topic_mapping_passes_any_bytes_through() {
        let mapping = set(&[json!({"id": "m", "match": "true", "actions": [{"route": {"topics": ["out"]}}]})]);
        assert!(!mapping.reads_event);
        let Decision::Route { outputs, .. } = run(&mapping, "not json {") else { panic!() };
        assert_eq!(outputs[0].payload, b"not json {");
        let reading =
            set(&[json!({"id": "r", "match": "true", "actions": [{"route": {"topics": ["out.{event.site}"]}}]})]);
        assert!(reading.reads_event);
        assert!(matches!(run(&reading, "not json {"), Decision::Fail { class: "unparseable", .. }));
    }

    #[test]
    fn filters_see_headers_even_for_unparseable_payloads() {
        let f = compile_filter("headers['loom.error.class'] == 'unparseable' && event == null").unwrap();
        let headers = [("loom.error.class".to_owned(), b"unparseable".to_vec())];
        let event = Event { payload: b"garbage", headers: &headers, ..Event::default() };
        assert_eq!(f.matches(&event), Ok(true));
        assert!(compile_filter("1 +").is_err());
    }
}
