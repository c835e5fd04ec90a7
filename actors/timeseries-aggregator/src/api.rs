//! The routes on 8020: jobs CRUD (`/jobs`), REST ingest (`POST /jobs/{id}/events`), batches
//! (`POST /jobs/{id}/batch`, JSON or NDJSON), results (`GET /jobs/{id}/windows`), the live feed
//! (`GET /ws/jobs/{id}`) and `GET /jobs/{id}/stats`.

use axum::http::Method;
use loom_http::writes_under;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson, ApiJsonAny, ApiRouter, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::TsError;
use crate::hub::{Hub, Update};
use crate::jobs::JobBook;
use crate::kafka::KafkaSide;
use crate::pipeline::row_json;
use crate::rest::{Feed, MAX_BATCH, MAX_EVENTS, Request};
use crate::sinks::PgSink;
use crate::spec::{Job, JobSpec};
use crate::stats::Stats;
use crate::store::WindowQuery;

/// Result rows per `/windows` page at most.
const MAX_WINDOWS: u64 = 10_000;

#[derive(Clone)]
pub struct Api {
    pub book: JobBook,
    pub feed: Feed,
    pub hub: Hub,
    pub stats: Stats,
    pub kafka: Option<loom_config::KafkaSection>,
    pub pg: Option<PgSink>,
    pub side: Option<KafkaSide>,
}

/// Cluster-wide writes: job definitions (`/jobs/{id}/events` and `/batch` feed a job).
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    writes_under(method, path, "/jobs") && path.split('/').count() <= 3
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, put_job, delete_job))
        .routes(routes!(post_events))
        .routes(routes!(post_batch))
        .routes(routes!(windows))
        .routes(routes!(stats))
        .routes(routes!(ws_job))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;

/// The installed jobs and the book's revision.
#[utoipa::path(get, path = "/jobs", responses((status = 200, description = "`{revision, jobs: [{id, ..., version, revision, updated_ms}]}`", body = Object)))]
async fn list_jobs(State(api): State<Api>) -> Result<Json<Value>> {
    Ok(Json(json!({ "revision": api.book.revision(), "jobs": api.book.stored().await? })))
}

/// Checks what a job needs beyond its spec (Kafka, PostgreSQL) and prepares it (topics, table).
async fn prepare(api: &Api, spec: &JobSpec) -> std::result::Result<(), TsError> {
    let job = Job::compile(spec.clone(), 0)?;
    if job.uses_kafka() {
        let Some(kafka) = &api.kafka else { return Err(TsError::KafkaOff) };
        let mut topics: Vec<&str> = job.kafka_topics().collect();
        topics.push(&job.late_topic);
        topics.push(&job.dead_letter_topic);
        loom_kafka::admin::ensure_topics(kafka, &topics, 6).await.map_err(|e| TsError::Kafka(e.to_string()))?;
    }
    let tables: Vec<&str> = job.postgres_tables().collect();
    if !tables.is_empty() {
        let Some(pg) = &api.pg else { return Err(TsError::PostgresOff) };
        for t in tables {
            pg.create(t).await?;
        }
    }
    Ok(())
}

/// Creates a job (409 `conflict` when the id exists; PUT replaces) and prepares its Kafka topics and PostgreSQL tables.
#[utoipa::path(post, path = "/jobs", request_body(content = Object, description = "A job spec: `id`, `source`? (Kafka topics; REST-fed without), `time`, `key` pointers, `window`, `aggregates`, `allowed_lateness`?, `idle_timeout`?, `emit`?, `watermark`?, `max_future_skew`?, `max_open_windows`?, `late_topic`?, `dead_letter_topic`?, `sinks`? (README, Time-Series Aggregation)", example = json!({"id": "temp-5m",
        "time": {"field": "/ts"}, "key": ["/device"], "window": {"type": "tumbling", "size": "5m"},
        "aggregates": [{"name": "n", "fn": "count"}, {"name": "mean", "fn": "avg", "field": "/temp"}],
        "allowed_lateness": "30s", "emit": "final"})),
    responses((status = 201, description = "the stored job with its version", body = Object)))]
async fn create_job(State(api): State<Api>, ApiJson(spec): ApiJson<JobSpec>) -> Result<Response> {
    if api.book.stored().await?.iter().any(|j| j.spec.id == spec.id) {
        return Err(TsError::Conflict(format!("job '{}' exists; PUT /jobs/{} replaces it", spec.id, spec.id)).into());
    }
    prepare(&api, &spec).await?;
    let stored = api.book.put(spec).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "the stored job", body = Object)))]
async fn get_job(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let job = api.book.stored().await?.into_iter().find(|j| j.spec.id == id);
    let job = job.ok_or_else(|| TsError::NotFound(format!("job '{id}'")))?;
    Ok(Json(serde_json::to_value(job).unwrap_or_default()))
}

/// Creates or replaces a job; the body's `id` must be the path's.
#[utoipa::path(put, path = "/jobs/{id}", params(("id" = String, Path, description = "job id")), request_body(content = Object, description = "A job spec: `id`, `source`? (Kafka topics; REST-fed without), `time`, `key` pointers, `window`, `aggregates`, `allowed_lateness`?, `idle_timeout`?, `emit`?, `watermark`?, `max_future_skew`?, `max_open_windows`?, `late_topic`?, `dead_letter_topic`?, `sinks`? (README, Time-Series Aggregation)"),
    responses((status = 200, description = "the stored job with its new version", body = Object)))]
async fn put_job(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<JobSpec>,
) -> Result<Json<Value>> {
    if spec.id != id {
        return Err(TsError::Invalid(format!("the body's id '{}' is not the path's '{id}'", spec.id)).into());
    }
    prepare(&api, &spec).await?;
    Ok(Json(serde_json::to_value(api.book.put(spec).await?).unwrap_or_default()))
}

/// Deletes a job.
#[utoipa::path(delete, path = "/jobs/{id}", params(("id" = String, Path, description = "job id")), responses((status = 204, description = "deleted")))]
async fn delete_job(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode> {
    api.book.delete(&id).await?;
    api.stats.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

fn known(api: &Api, id: &str) -> std::result::Result<Arc<Job>, TsError> {
    api.book.get(id).ok_or_else(|| TsError::NotFound(format!("job '{id}'")))
}

/// `{"events": [...]}` or a bare array.
fn events_of(body: Value) -> std::result::Result<Vec<Value>, TsError> {
    match body {
        Value::Array(a) => Ok(a),
        Value::Object(mut o) => match o.remove("events") {
            Some(Value::Array(a)) => Ok(a),
            _ => Err(TsError::Invalid("expected {\"events\": [...]} or a JSON array of events".into())),
        },
        _ => Err(TsError::Invalid("expected {\"events\": [...]} or a JSON array of events".into())),
    }
}

/// Feeds live events to a job (aggregated on the job's owner node, like a Kafka source).
#[utoipa::path(post, path = "/jobs/{id}/events", params(("id" = String, Path, description = "job id")),
    request_body(content = Object, description = "`{\"events\": [object, ...]}` or a bare JSON array of events (at most 10,000)"),
    responses((status = 200, description = "`{accepted, skipped, late: [{index, window_start, window_end, watermark, partial}], rejected: [...], emitted, watermark, open_windows}`", body = Object)))]
async fn post_events(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJsonAny(body): ApiJsonAny<Value>,
) -> Result<Json<Value>> {
    known(&api, &id)?;
    let events = events_of(body)?;
    if events.len() > MAX_EVENTS {
        return Err(TsError::TooMany(MAX_EVENTS).into());
    }
    Ok(Json(api.feed.call(&id, Request::Ingest { events }).await?))
}

/// Aggregates a historical batch on its own and recomputes every window it touches (posting it again changes nothing).
#[utoipa::path(post, path = "/jobs/{id}/batch",
    params(
        ("id" = String, Path, description = "job id"),
        ("x-batch-id" = Option<String>, Header, description = "the batch's id for an NDJSON body (default the SHA-256 of its events)"),
    ),
    request_body(description = "`{\"batch_id\"?, \"events\": [...]}` or a bare JSON array; or NDJSON (a Content-Type containing `ndjson`, `jsonl` or `json-seq`), one event per line (at most 200,000 events)",
        content((Object = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 200, description = "`{batch_id, events, accepted, rejected: [...], windows_touched, windows_updated}`", body = Object)))]
async fn post_batch(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    known(&api, &id)?;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("ndjson") || c.contains("jsonl") || c.contains("json-seq"));
    let (batch_id, events) = if ndjson {
        let mut events = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value =
                serde_json::from_slice(line).map_err(|e| TsError::Invalid(format!("line {}: not JSON: {e}", i + 1)))?;
            events.push(v);
        }
        (headers.get("x-batch-id").and_then(|v| v.to_str().ok()).map(str::to_owned), events)
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| TsError::Invalid(format!("not JSON: {e}")))?;
        let batch_id = v.get("batch_id").and_then(Value::as_str).map(str::to_owned);
        (batch_id, events_of(v)?)
    };
    if events.len() > MAX_BATCH {
        return Err(TsError::TooMany(MAX_BATCH).into());
    }
    Ok(Json(api.feed.call(&id, Request::Batch { batch_id, events }).await?))
}

#[derive(Debug, Deserialize)]
struct WindowsQuery {
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "final")]
    final_only: Option<bool>,
    limit: Option<u64>,
}

/// A `key` parameter as the canonical key text: `["d1","temp"]`, or a single value `d1`.
fn key_param(s: &str) -> String {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(a)) => Value::Array(a).to_string(),
        Ok(Value::String(v)) => json!([v]).to_string(),
        Ok(v) if !v.is_object() => json!([v]).to_string(),
        _ => json!([s]).to_string(),
    }
}

fn time_param(name: &str, v: &Option<String>, default: i64) -> std::result::Result<i64, TsError> {
    match v {
        None => Ok(default),
        Some(s) => loom_streams::time::parse_request_time(s).map_err(|e| TsError::Invalid(format!("{name}: {e}"))),
    }
}

/// A job's stored result windows, oldest first, filtered by key, time and finality.
#[utoipa::path(get, path = "/jobs/{id}/windows",
    params(
        ("id" = String, Path, description = "job id"),
        ("key" = Option<String>, Query, description = "a key: a JSON array of the key's values (`[\"d1\",\"temp\"]`) or a single value (`d1`)"),
        ("from" = Option<String>, Query, description = "windows starting at or after this time (RFC 3339 or epoch ms)"),
        ("to" = Option<String>, Query, description = "windows starting before this time (RFC 3339 or epoch ms)"),
        ("final" = Option<bool>, Query, description = "only final windows (default false)"),
        ("limit" = Option<u64>, Query, description = "rows, clamped to 1..=10,000 (default 1000)"),
    ),
    responses((status = 200, description = "`{job, count, windows: [{job, key, window_start, window_end, values, count, version, final}]}`", body = Object)))]
async fn windows(State(api): State<Api>, Path(id): Path<String>, Query(q): Query<WindowsQuery>) -> Result<Json<Value>> {
    let job = known(&api, &id)?;
    let from = time_param("from", &q.from, 0)?;
    let to = time_param("to", &q.to, i64::MAX / 2)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_WINDOWS);
    let key = q.key.as_deref().map(key_param);
    let rows = api
        .book
        .store
        .windows(
            &id,
            &WindowQuery {
                key: key.as_deref(),
                from,
                to,
                final_only: q.final_only.unwrap_or(false),
                limit,
                newest_first: false,
            },
        )
        .await
        .map_err(TsError::from)?;
    let windows: Vec<Value> = rows.iter().map(|r| row_json(Some(&job), r)).collect();
    Ok(Json(json!({ "job": id, "count": windows.len(), "windows": windows })))
}

/// A job's counters on this node, its partitions here (offsets, watermarks, open windows) and its checkpoints.
#[utoipa::path(get, path = "/jobs/{id}/stats", params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "`{job, version, node, open_windows_on_this_node, partitions_on_this_node, checkpoints}`", body = Object)))]
async fn stats(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let job = known(&api, &id)?;
    let counters = api.stats.get(&id);
    let checkpoints = api.book.store.checkpoints(&id).await.map_err(TsError::from)?;
    let mut partitions = Vec::new();
    if let Some(side) = &api.side {
        for (part, next, wm, open) in side.partitions_of(&id).await {
            partitions.push(json!({"partition": part, "next_offset": next, "open_windows": open,
                                   "watermark": (wm > 0).then(|| loom_streams::time::rfc3339(wm))}));
        }
    }
    Ok(Json(json!({
        "job": id,
        "version": job.version,
        "node": counters,
        "open_windows_on_this_node": partitions.iter().filter_map(|p| p["open_windows"].as_u64()).sum::<u64>(),
        "partitions_on_this_node": partitions,
        "checkpoints": checkpoints.iter().map(|(p, seq, next)| json!({"partition": p, "seq": seq, "next_offset": next})).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    key: Option<String>,
    since: Option<u64>,
    #[serde(rename = "final")]
    final_only: Option<bool>,
}

/// Follows a job's results over a WebSocket: a snapshot (or the missed updates after `since`), then live results.
#[utoipa::path(get, path = "/ws/jobs/{id}",
    params(
        ("id" = String, Path, description = "job id"),
        ("key" = Option<String>, Query, description = "only this key: a JSON array of the key's values or a single value"),
        ("since" = Option<u64>, Query, description = "resume after this sequence number (the missed updates instead of a snapshot, while the feed still holds them)"),
        ("final" = Option<bool>, Query, description = "only final windows (default false)"),
    ),
    responses((status = 101, description = "WebSocket upgrade: JSON text frames: `{type: \"snapshot\", seq, windows}` (the newest 1000 windows) or `{type: \"resume\", seq, results}`, then `{type: \"result\", seq, result}` each; a client that falls behind gets `{type: \"resync\", missed}` and a new snapshot")))]
async fn ws_job(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response> {
    let job = known(&api, &id)?;
    Ok(upgrade.on_upgrade(move |socket| live(api, job, q, socket)))
}

/// Snapshot (or the missed updates after `since`), then live results, each with its sequence
/// number. A client that falls behind the bounded feed gets `{"type":"resync"}` and a new
/// snapshot.
async fn live(api: Api, job: Arc<Job>, q: WsQuery, mut socket: WebSocket) {
    let key = q.key.as_deref().map(key_param);
    let final_only = q.final_only.unwrap_or(false);
    let wanted =
        |u: &Update| u.job == job.spec.id && key.as_ref().is_none_or(|k| *k == u.key) && (!final_only || u.is_final);
    let mut rx = api.hub.subscribe();
    let mut resume = q.since.and_then(|s| api.hub.since(s));
    loop {
        let start = match resume.take() {
            Some(missed) => {
                let items: Vec<Value> = missed.iter().filter(|u| wanted(u)).map(|u| result_msg(u)).collect();
                json!({"type": "resume", "seq": api.hub.seq(), "results": items})
            }
            None => {
                // the newest 1000 windows, oldest first
                let rows = api
                    .book
                    .store
                    .windows(
                        &job.spec.id,
                        &WindowQuery {
                            key: key.as_deref(),
                            from: 0,
                            to: i64::MAX / 2,
                            final_only,
                            limit: 1000,
                            newest_first: true,
                        },
                    )
                    .await;
                let windows: Vec<Value> =
                    rows.unwrap_or_default().iter().rev().map(|r| row_json(Some(&job), r)).collect();
                json!({"type": "snapshot", "seq": api.hub.seq(), "windows": windows})
            }
        };
        if socket.send(Message::Text(start.to_string().into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok(u) => {
                        if wanted(&u) && socket.send(Message::Text(result_msg(&u).to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let msg = json!({"type": "resync", "missed": n});
                        if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                            return;
                        }
                        break;
                    }
                    Err(_) => return,
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

fn result_msg(u: &Update) -> Value {
    json!({"type": "result", "seq": u.seq, "result": u.result})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parameters_become_canonical_keys() {
        for (input, want) in [
            ("d1", r#"["d1"]"#),
            (r#"["d1","temp"]"#, r#"["d1","temp"]"#),
            (r#"["d1", "temp"]"#, r#"["d1","temp"]"#),
            ("5", "[5]"),
            (r#""d1""#, r#"["d1"]"#),
            ("{bad", r#"["{bad"]"#),
        ] {
            assert_eq!(key_param(input), want, "{input}");
        }
    }
}
