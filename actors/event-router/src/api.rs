//! The routes on 8013: rules CRUD (`/rules`), `POST /rules/test` (decisions without producing),
//! `POST /route` (the ingestion path without Kafka clients), `/topics`, `/stats`, `GET /dlq`
//! (browse dead letters by cause, rule, time), and replays (`/replays`, `/ws/replays/{id}`).

use axum::http::Method;
use loom_http::writes_under;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson, ApiRouter, routes};
use loom_kafka::Record;
use loom_kafka::admin::{Start, TopicReader};
use loom_kafka::consumer::SubscriptionStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::RouterError;
use crate::replay::{ReplaySpec, Replays, view};
use crate::router::{self as engine, Router};
use crate::rulebook::RuleBook;
use crate::rules::{RuleSet, RuleSpec, compile_rule};
use crate::schemas::SubjectCheck;

/// Events per `/route` or `/rules/test` request.
pub const MAX_EVENTS: usize = 1000;
/// Dead letters returned per `/dlq` page, and records scanned per request.
const MAX_DLQ_PAGE: usize = 1000;
const MAX_DLQ_SCAN: u64 = 200_000;

#[derive(Clone)]
pub struct Api {
    pub book: RuleBook,
    pub router: Arc<Router>,
    pub replays: Replays,
    pub subscription: Option<Arc<SubscriptionStatus>>,
    pub sources: Vec<String>,
    pub group: String,
}

/// Cluster-wide writes: rules (`/rules/test` only evaluates) and replay jobs.
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    (writes_under(method, path, "/rules") && path != "/rules/test") || writes_under(method, path, "/replays")
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(test_rules))
        .routes(routes!(get_rule, put_rule, delete_rule))
        .routes(routes!(route_events))
        .routes(routes!(topics))
        .routes(routes!(stats))
        .routes(routes!(dlq))
        .routes(routes!(list_replays, create_replay))
        .routes(routes!(get_replay, cancel_replay))
        .routes(routes!(ws_replay))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;

/// The stored rules and the rule-set version this node routes with.
#[utoipa::path(get, path = "/rules", responses((status = 200, description = "`{version, rules: [{id, priority, enabled, match, actions, ..., version, revision, updated_ms}]}`", body = Object)))]
async fn list_rules(State(api): State<Api>) -> Result<Json<Value>> {
    let rules = api.book.stored().await?;
    Ok(Json(json!({ "version": api.router.rules().version, "rules": rules })))
}

/// Creates a rule (409 `conflict` when the id exists; PUT replaces); literal `validate` subjects must exist.
#[utoipa::path(post, path = "/rules", request_body(content = RuleSpec, description = "A rule: `id`, `priority`?, `enabled`?, `description`?, `match` (a CEL condition), `actions` (route, set, rename, remove, header, key, validate, drop), `continue`?"),
    responses((status = 201, description = "the stored rule with its version, plus `warnings` when a `validate` subject could not be checked", body = Object)))]
async fn create_rule(State(api): State<Api>, ApiJson(spec): ApiJson<RuleSpec>) -> Result<Response> {
    if api.book.store.rule(&spec.id).await.map_err(RouterError::from)?.is_some_and(|r| !r.deleted) {
        return Err(
            RouterError::Conflict(format!("rule '{}' exists; PUT /rules/{} replaces it", spec.id, spec.id)).into()
        );
    }
    let warnings = check_subjects(&api, &spec).await?;
    let stored = api.book.put(spec).await?;
    Ok((StatusCode::CREATED, Json(with_warnings(stored, warnings))).into_response())
}

/// Literal `validate` subjects must exist in the Schema Registry when a rule is written (a
/// template subject can only be checked at run time). A registry that cannot be asked does not
/// block the write: the answer carries a warning instead.
async fn check_subjects(api: &Api, spec: &RuleSpec) -> Result<Vec<String>> {
    // A rule that does not compile is refused for that first.
    compile_rule(spec.clone(), 0).map_err(RouterError::BadRule)?;
    let mut warnings = Vec::new();
    for (i, action) in spec.actions.iter().enumerate() {
        let crate::rules::Action::Validate { subject } = action else { continue };
        if subject.contains('{') {
            continue;
        }
        match api.router.schemas.check_subject(subject).await {
            SubjectCheck::Usable => {}
            SubjectCheck::Unusable(message) => {
                return Err(RouterError::BadRule(crate::rules::RuleError {
                    rule: spec.id.clone(),
                    at: format!("actions[{i}].validate.subject"),
                    message: format!("subject '{subject}' cannot be used: {message}"),
                    position: None,
                })
                .into());
            }
            SubjectCheck::Unknown(message) => {
                warnings.push(format!("actions[{i}].validate.subject: '{subject}' not checked: {message}"));
            }
        }
    }
    Ok(warnings)
}

fn with_warnings(stored: crate::rulebook::StoredRule, warnings: Vec<String>) -> Value {
    let mut v = serde_json::to_value(stored).unwrap_or_default();
    if !warnings.is_empty() {
        v["warnings"] = json!(warnings);
    }
    v
}

/// One rule.
#[utoipa::path(get, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")), responses((status = 200, description = "the stored rule", body = Object)))]
async fn get_rule(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let rule = api.book.stored().await?.into_iter().find(|r| r.spec.id == id);
    let rule = rule.ok_or_else(|| RouterError::NotFound(format!("rule '{id}'")))?;
    Ok(Json(serde_json::to_value(rule).unwrap_or_default()))
}

/// Creates or replaces a rule; the body's `id` must be the path's.
#[utoipa::path(put, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")), request_body(content = RuleSpec, description = "A rule: `id`, `priority`?, `enabled`?, `description`?, `match` (a CEL condition), `actions` (route, set, rename, remove, header, key, validate, drop), `continue`?"),
    responses((status = 200, description = "the stored rule with its new version, plus `warnings` when a `validate` subject could not be checked", body = Object)))]
async fn put_rule(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<Json<Value>> {
    if spec.id != id {
        return Err(RouterError::Invalid(format!("the body's id '{}' is not the path's '{id}'", spec.id)).into());
    }
    let warnings = check_subjects(&api, &spec).await?;
    Ok(Json(with_warnings(api.book.put(spec).await?, warnings)))
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")), responses((status = 204, description = "deleted")))]
async fn delete_rule(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode> {
    api.book.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An event given in a request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InEvent {
    value: Value,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The topic the event counts as coming from (rules may match on `topic`).
    #[serde(default)]
    topic: Option<String>,
}

impl InEvent {
    fn record(&self, i: usize) -> Record {
        Record {
            topic: self.topic.clone().unwrap_or_else(|| "http".into()),
            partition: -1,
            offset: i as i64,
            key: self.key.as_ref().map(|k| k.as_bytes().to_vec()),
            payload: Some(serde_json::to_vec(&self.value).unwrap_or_default()),
            headers: self.headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
            timestamp_ms: Some(crate::store::now_ms()),
        }
    }
}

fn check_events(events: &[InEvent]) -> std::result::Result<(), RouterError> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(RouterError::Invalid(format!("give 1 to {MAX_EVENTS} events")));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// Rules to try instead of the stored ones.
    #[serde(default)]
    rules: Option<Vec<RuleSpec>>,
    events: Vec<InEvent>,
}

/// Evaluates events against the stored rules (or the rules given) without producing anything.
#[utoipa::path(post, path = "/rules/test",
    request_body(content = Object, description = "`{\"rules\"?: [rule, ...] (at most 1000), \"events\": [...]}`, each `{value, key?, headers?, topic?}`, 1 to 1000 events"),
    responses((status = 200, description = "`{ruleset_version, results: [{decision: route|drop|no_match|fail, ...}]}`, one decision per event", body = Object)))]
async fn test_rules(State(api): State<Api>, ApiJson(body): ApiJson<TestBody>) -> Result<Json<Value>> {
    check_events(&body.events)?;
    let set = match body.rules {
        Some(specs) => {
            if specs.len() > crate::rules::MAX_RULES {
                return Err(RouterError::Invalid(format!("at most {} rules", crate::rules::MAX_RULES)).into());
            }
            let mut compiled = Vec::new();
            for s in specs {
                compiled.push(Arc::new(compile_rule(s, 0).map_err(RouterError::BadRule)?));
            }
            Arc::new(RuleSet::new(0, compiled))
        }
        None => api.router.rules(),
    };
    let mut results = Vec::new();
    for (i, e) in body.events.iter().enumerate() {
        let r = e.record(i);
        let event = engine::event_of(&r, &r.topic);
        results.push(api.router.decide_with(&set, &event).await);
    }
    Ok(Json(json!({ "ruleset_version": set.version, "results": results })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    events: Vec<InEvent>,
}

/// Routes events through the current rules as if consumed from Kafka: outputs are produced, failures dead-lettered.
#[utoipa::path(post, path = "/route",
    request_body(content = Object, description = "`{\"events\": [...]}`, each `{value, key?, headers?, topic?}`, 1 to 1000 events"),
    responses((status = 200, description = "`{ruleset_version, results: [...]}`: per event its decision with `delivered` (topic, partition, offset) and `dead_lettered`, or `{decision: \"not_delivered\", code, message}` when nothing durable happened (retry that event)", body = Object)))]
async fn route_events(State(api): State<Api>, ApiJson(body): ApiJson<RouteBody>) -> Result<Json<Value>> {
    check_events(&body.events)?;
    if api.router.producer.is_none() {
        return Err(RouterError::KafkaOff.into());
    }
    let set = api.router.rules();
    let records: Vec<Record> = body.events.iter().enumerate().map(|(i, e)| e.record(i)).collect();
    let outcomes = futures::future::join_all(records.iter().map(|r| api.router.route(r, &set))).await;
    let mut results = Vec::new();
    for o in outcomes {
        match o {
            Ok(r) => results.push(serde_json::to_value(r).unwrap_or_default()),
            // Nothing durable happened for this event: say so, the client retries it.
            Err(e) => results.push(json!({ "decision": "not_delivered", "code": e.code(), "message": e.to_string() })),
        }
    }
    Ok(Json(json!({ "ruleset_version": set.version, "results": results })))
}

/// The source topics, consumer group, DLQ topic, each rule's target topics and the events routed per topic.
#[utoipa::path(get, path = "/topics", responses((status = 200, description = "`{sources, group, dlq, rules: [{rule, version, priority, enabled, match, topics}], routed_by_topic}`", body = Object)))]
async fn topics(State(api): State<Api>) -> Json<Value> {
    let set = api.router.rules();
    let counts = api.router.per_topic.lock().map(|t| t.clone()).unwrap_or_default();
    let rules: Vec<Value> = set
        .rules
        .iter()
        .map(|r| {
            let targets: Vec<&String> = r
                .spec
                .actions
                .iter()
                .filter_map(|a| match a {
                    crate::rules::Action::Route { topics } => Some(topics.iter()),
                    _ => None,
                })
                .flatten()
                .collect();
            json!({ "rule": r.spec.id, "version": r.version, "priority": r.spec.priority, "enabled": r.spec.enabled,
                    "match": r.spec.condition, "topics": targets })
        })
        .collect();
    Json(json!({
        "sources": api.sources, "group": api.group, "dlq": api.router.dlq_topic,
        "rules": rules, "routed_by_topic": counts,
    }))
}

/// This node's routing counters, its Kafka producer and consumer state.
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "`{ruleset_version, rules, events, routed, outputs, dropped, dead_lettered, retried, kafka, consumer}`", body = Object)))]
async fn stats(State(api): State<Api>) -> Json<Value> {
    let s = &api.router.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let consumer = api.subscription.as_ref().map(|st| {
        json!({
            "group": api.group, "topics": api.sources, "joined": st.joined.load(Ordering::Relaxed),
            "assigned": st.assigned().iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>(),
            "consumed": st.consumed.load(Ordering::Relaxed), "rebalances": st.rebalances.load(Ordering::Relaxed),
            "last_error": st.last_error.lock().ok().and_then(|e| e.clone()),
        })
    });
    Json(json!({
        "ruleset_version": api.router.rules().version,
        "rules": api.router.rules().rules.len(),
        "events": load(&s.events), "routed": load(&s.routed), "outputs": load(&s.outputs),
        "dropped": load(&s.dropped), "dead_lettered": load(&s.dead_lettered), "retried": load(&s.retried),
        "kafka": api.router.producer.as_ref().map(|p| json!({ "connected": p.connected() })),
        "consumer": consumer,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DlqQuery {
    cause: Option<String>,
    rule: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<usize>,
}

/// Browses the dead-letter topic, filtered by cause, rule and time (at most 200,000 records scanned per request).
#[utoipa::path(get, path = "/dlq",
    params(
        ("cause" = Option<String>, Query, description = "only dead letters of this cause (the error class header)"),
        ("rule" = Option<String>, Query, description = "only dead letters of this rule id"),
        ("since_ms" = Option<i64>, Query, description = "start reading at this time (epoch ms); default the beginning"),
        ("until_ms" = Option<i64>, Query, description = "only dead letters at or before this time (epoch ms)"),
        ("limit" = Option<usize>, Query, description = "entries per page, 1 to 1000 (default 100)"),
    ),
    responses((status = 200, description = "`{entries: [{partition, offset, timestamp_ms, cause, message, rule, rule_version, source, attempts, first_failure_ms, key, value | value_base64, headers}], scanned, truncated}`", body = Object)))]
async fn dlq(State(api): State<Api>, Query(q): Query<DlqQuery>) -> Result<Json<Value>> {
    let kafka = api.router.kafka.clone().ok_or(RouterError::KafkaOff)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_DLQ_PAGE {
        return Err(RouterError::Invalid(format!("limit must be 1..={MAX_DLQ_PAGE}")).into());
    }
    let topic = api.router.dlq_topic.clone();
    let start = q.since_ms.map_or(Start::Beginning, Start::Time);
    let reader = tokio::task::spawn_blocking(move || TopicReader::open(&kafka, &topic, &start))
        .await
        .map_err(|e| RouterError::Kafka(e.to_string()))?;
    let reader = match reader {
        Ok(r) => r,
        // No DLQ topic yet: nothing has failed.
        Err(e) if e.to_string().contains("UnknownTopic") => {
            return Ok(Json(json!({ "entries": [], "scanned": 0, "truncated": false })));
        }
        Err(e) => return Err(RouterError::Kafka(e.to_string()).into()),
    };
    let mut entries = Vec::new();
    let mut scanned = 0u64;
    let mut truncated = false;
    while let Some(next) = reader.next(Duration::from_millis(1500)).await {
        let r = next.map_err(|e| RouterError::Kafka(e.to_string()))?;
        scanned += 1;
        let h = |n: &str| r.header(n).map(|v| String::from_utf8_lossy(v).into_owned());
        let keep = q.cause.as_ref().is_none_or(|c| h(engine::H_CLASS).as_ref() == Some(c))
            && q.rule.as_ref().is_none_or(|c| h(engine::H_RULE).as_ref() == Some(c))
            && q.until_ms.is_none_or(|u| r.timestamp_ms.is_some_and(|t| t <= u));
        if keep {
            let payload = r.payload.as_deref().unwrap_or_default();
            let headers: BTreeMap<String, String> =
                r.headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
            entries.push(json!({
                "partition": r.partition, "offset": r.offset, "timestamp_ms": r.timestamp_ms,
                "cause": h(engine::H_CLASS), "message": h(engine::H_MESSAGE), "rule": h(engine::H_RULE),
                "rule_version": h(engine::H_RULE_VERSION).and_then(|v| v.parse::<i64>().ok()),
                "source": { "topic": h(engine::H_TOPIC), "partition": h(engine::H_PARTITION).and_then(|v| v.parse::<i64>().ok()),
                            "offset": h(engine::H_OFFSET).and_then(|v| v.parse::<i64>().ok()) },
                "attempts": h(engine::H_ATTEMPTS).and_then(|v| v.parse::<i64>().ok()),
                "first_failure_ms": h(engine::H_FIRST_FAILURE).and_then(|v| v.parse::<i64>().ok()),
                "key": r.key.as_deref().map(String::from_utf8_lossy),
                "value": std::str::from_utf8(payload).ok(),
                "value_base64": std::str::from_utf8(payload).is_err().then(|| base64(payload)),
                "headers": headers,
            }));
            if entries.len() >= limit {
                truncated = true;
                break;
            }
        }
        if scanned >= MAX_DLQ_SCAN {
            truncated = true;
            break;
        }
    }
    Ok(Json(json!({ "entries": entries, "scanned": scanned, "truncated": truncated })))
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The latest 100 replay jobs.
#[utoipa::path(get, path = "/replays", responses((status = 200, description = "`{replays: [{id, state, spec, progress, node, created_ms, error}]}`", body = Object)))]
async fn list_replays(State(api): State<Api>) -> Result<Json<Value>> {
    let rows = api.replays.store.replays(100).await.map_err(RouterError::from)?;
    Ok(Json(json!({ "replays": rows.iter().map(view).collect::<Vec<_>>() })))
}

/// Starts a replay job: records of the DLQ or a topic, optionally filtered, back through the router or to a topic.
#[utoipa::path(post, path = "/replays",
    request_body(content = Object, description = "`{source: \"dlq\" | topic, target?: \"router\" (default) | topic, from_offset?, to_offset?, from_time?, to_time?, filter? (CEL), rate_per_sec? (1 to 100,000, default 1000), dry_run?}`"),
    responses((status = 202, description = "the job, `running`: `{id, state, spec, progress, node, created_ms, error}`", body = Object)))]
async fn create_replay(State(api): State<Api>, ApiJson(spec): ApiJson<ReplaySpec>) -> Result<Response> {
    let job = api.replays.create(spec).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// One replay job and its progress.
#[utoipa::path(get, path = "/replays/{id}", params(("id" = String, Path, description = "replay job id (UUID)")), responses((status = 200, description = "`{id, state, spec, progress, node, created_ms, error}`", body = Object)))]
async fn get_replay(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let row = api.replays.job(&id).await?;
    Ok(Json(serde_json::to_value(view(&row)).unwrap_or_default()))
}

/// Cancels a running replay job (409 `conflict` when it has already ended).
#[utoipa::path(delete, path = "/replays/{id}", params(("id" = String, Path, description = "replay job id (UUID)")), responses((status = 200, description = "the job, now `cancelled`", body = Object)))]
async fn cancel_replay(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let row = api.replays.job(&id).await?;
    if !api.replays.store.cancel_replay(&id).await.map_err(RouterError::from)? {
        return Err(RouterError::Conflict(format!("replay '{id}' is already {}", row.state)).into());
    }
    let row = api.replays.store.replay(&id).await.map_err(RouterError::from)?.unwrap_or(row);
    Ok(Json(serde_json::to_value(view(&row)).unwrap_or_default()))
}

/// Streams a replay job's progress over a WebSocket until the job has ended.
///
/// A JSON message when it changes, polled every 500 ms from the store (so any node can serve
/// it); the socket is closed once the job has ended.
#[utoipa::path(get, path = "/ws/replays/{id}", params(("id" = String, Path, description = "replay job id (UUID)")),
    responses((status = 101, description = "WebSocket upgrade: a JSON text frame with the job `{id, state, spec, progress, ...}` each time it changes, then a close once it is no longer running")))]
async fn ws_replay(State(api): State<Api>, Path(id): Path<String>, ws: WebSocketUpgrade) -> Result<Response> {
    api.replays.job(&id).await?;
    Ok(ws.on_upgrade(move |socket| follow_replay(api, id, socket)))
}

async fn follow_replay(api: Api, id: String, mut socket: WebSocket) {
    let mut last = String::new();
    loop {
        let Ok(Some(row)) = api.replays.store.replay(&id).await else { break };
        let text = serde_json::to_string(&view(&row)).unwrap_or_default();
        if text != last {
            if socket.send(Message::Text(text.clone().into())).await.is_err() {
                return;
            }
            last = text;
        }
        if row.state != "running" {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            m = socket.recv() => if matches!(m, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) { return; },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
