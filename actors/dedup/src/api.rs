//! The routes on 8022: policies CRUD (`/policies`, admin scope like every `/policies` route),
//! `POST /check` (and `?dry_run=true`), `GET /policies/{id}/stats` and
//! `DELETE /policies/{id}/state`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson};
use loom_http::{ApiRouter, routes, writes_under};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::DedupError;
use crate::kafka::StreamSide;
use crate::policy::{Policy, PolicySpec, StoreKind};
use crate::rest::{Book, Checker, MAX_EVENTS, Request};
use crate::stats::Stats;
use crate::store::Store;

#[derive(Clone)]
pub struct Api {
    pub book: Book,
    pub checker: Checker,
    pub stats: Stats,
    pub store: Store,
    pub kafka: Option<loom_config::KafkaSection>,
    pub redis: bool,
    pub stream: Option<StreamSide>,
    pub node: String,
}

/// Cluster-wide writes: policies (and clearing a policy's state).
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    writes_under(method, path, "/policies")
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, replace, remove))
        .routes(routes!(stats))
        .routes(routes!(clear_state))
        .routes(routes!(check))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;

/// The installed policy `id` (reloaded first when unknown here), or `not_found`.
async fn entry(api: &Api, id: &str) -> std::result::Result<crate::part::PolicyEntry, DedupError> {
    api.book.get_fresh(id).await?.ok_or_else(|| DedupError::NotFound(format!("policy '{id}'")))
}

/// The installed policies and the book's revision.
#[utoipa::path(get, path = "/policies", responses((status = 200, description = "`{revision, policies: [...]}`", body = Object)))]
async fn list(State(api): State<Api>) -> Result<Json<Value>> {
    Ok(Json(json!({ "revision": api.book.revision(), "policies": api.book.stored().await.map_err(DedupError::from)? })))
}

/// Checks what a policy needs beyond its spec (Kafka, Redis) and creates its topics.
async fn prepare(api: &Api, spec: &PolicySpec) -> std::result::Result<(), DedupError> {
    let policy = Policy::compile(spec.clone(), 0)?;
    if policy.spec.store == StoreKind::Redis && !api.redis {
        return Err(DedupError::RedisOff);
    }
    if let Some(source) = &policy.spec.source {
        let Some(kafka) = &api.kafka else { return Err(DedupError::KafkaOff) };
        crate::kafka::ensure_topics(kafka, &policy, &source.topic).await?;
    }
    Ok(())
}

/// Creates a policy (409 `conflict` when the id exists; PUT replaces).
#[utoipa::path(post, path = "/policies", request_body(content = Object, description = "A policy spec: `id`, `key` pointers, `window`, `store`, optional `source` topics, fuzzy options (README, Data Deduplication)", example = json!({"id": "readings",
        "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10m"}, "keep": "first"})),
    responses((status = 201, description = "the stored policy with its version", body = Object)))]
async fn create(State(api): State<Api>, ApiJson(spec): ApiJson<PolicySpec>) -> Result<Response> {
    if api.book.stored().await.map_err(DedupError::from)?.iter().any(|p| p.spec.id == spec.id) {
        return Err(DedupError::Conflict(format!(
            "policy '{}' exists; PUT /policies/{} replaces it",
            spec.id, spec.id
        ))
        .into());
    }
    prepare(&api, &spec).await?;
    let stored = api.book.put(spec).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// One policy.
#[utoipa::path(get, path = "/policies/{id}", params(("id" = String, Path, description = "policy id")), responses((status = 200, description = "the stored policy", body = Object)))]
async fn read(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let p = api.book.stored().await.map_err(DedupError::from)?.into_iter().find(|p| p.spec.id == id);
    let p = p.ok_or_else(|| DedupError::NotFound(format!("policy '{id}'")))?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}

/// Creates or replaces a policy; the body's `id` must be the path's.
#[utoipa::path(put, path = "/policies/{id}", params(("id" = String, Path, description = "policy id")), request_body(content = Object, description = "A policy spec"),
    responses((status = 200, description = "the stored policy with its new version", body = Object)))]
async fn replace(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> Result<Json<Value>> {
    if spec.id != id {
        return Err(DedupError::Invalid(format!("the body's id '{}' is not the path's '{id}'", spec.id)).into());
    }
    prepare(&api, &spec).await?;
    Ok(Json(serde_json::to_value(api.book.put(spec).await?).unwrap_or_default()))
}

/// Deletes a policy and its REST keys (stream checkpoints stay; see README).
#[utoipa::path(delete, path = "/policies/{id}", params(("id" = String, Path, description = "policy id")), responses((status = 204, description = "deleted")))]
async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode> {
    api.book.delete(&id).await.map_err(DedupError::from)?;
    // REST keys go with the policy; stream checkpoints stay, so a policy created again under
    // the same id over the same topics continues its exactly-once output (see README).
    api.store.delete(&id, crate::rest::REST_PART).await.map_err(DedupError::from)?;
    api.stats.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct CheckQuery {
    dry_run: Option<bool>,
}

/// Checks events against a policy: each is `unique` or `duplicate` (with the first sighting); `dry_run` leaves the state unchanged.
#[utoipa::path(post, path = "/check", params(("dry_run" = Option<bool>, Query, description = "check without recording")),
    request_body(content = Object, description = "`{\"policy\": id, \"events\": [object, ...]}` (at most 10,000 events)"),
    responses((status = 200, description = "one verdict per event", body = Object)))]
async fn check(
    State(api): State<Api>,
    Query(q): Query<CheckQuery>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>> {
    let Value::Object(mut body) = body else {
        return Err(DedupError::Invalid("expected {\"policy\": \"…\", \"events\": [...]}".into()).into());
    };
    let Some(Value::String(policy)) = body.remove("policy") else {
        return Err(DedupError::Invalid("\"policy\" (the policy id, a string) is required".into()).into());
    };
    let Some(Value::Array(events)) = body.remove("events") else {
        return Err(DedupError::Invalid("\"events\" (an array of JSON objects) is required".into()).into());
    };
    if let Some(k) = body.keys().next() {
        return Err(DedupError::Invalid(format!("unknown field '{k}'; expected policy and events")).into());
    }
    if events.len() > MAX_EVENTS {
        return Err(DedupError::TooMany(MAX_EVENTS).into());
    }
    entry(&api, &policy).await?;
    let dry_run = q.dry_run.unwrap_or(false);
    Ok(Json(api.checker.call(&policy, Request::Check { events, dry_run }).await?))
}

/// A policy's counters, partitions, state size, checkpoints and stream status on this node.
#[utoipa::path(get, path = "/policies/{id}/stats", params(("id" = String, Path, description = "policy id")), responses((status = 200, description = "counters and state", body = Object)))]
async fn stats(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let entry = entry(&api, &id).await?;
    let (total, parts, state) = api.stats.get(&id);
    let saved: Vec<Value> = api
        .store
        .parts(&id)
        .await
        .map_err(DedupError::from)?
        .into_iter()
        .map(|(part, seq, next_offset, bytes)| json!({"part": part, "seq": seq, "next_offset": next_offset, "bytes": bytes}))
        .collect();
    let stream = match &api.stream {
        Some(s) => s.status(&id),
        None => Value::Null,
    };
    Ok(Json(json!({
        "policy": id,
        "version": entry.version,
        "node": api.node,
        "counters": total,
        "parts": parts,
        "state": state,
        "checkpoints": saved,
        "stream": stream,
    })))
}

/// Forgets every key a policy has seen (REST and stream parts).
#[utoipa::path(delete, path = "/policies/{id}/state", params(("id" = String, Path, description = "policy id")), responses((status = 200, description = "what was cleared", body = Object)))]
async fn clear_state(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    entry(&api, &id).await?;
    let mut out = api.checker.call(&id, Request::Clear).await?;
    if let Some(s) = &api.stream {
        out["stream_parts_cleared"] = json!(s.clear(&id).await);
    }
    Ok(Json(out))
}
