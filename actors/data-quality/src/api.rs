//! The routes on 8031: monitors CRUD (`/monitors`, admin scope like every configuration
//! route), `POST /monitors/{id}/records`, `GET /monitors/{id}/report`, `GET /monitors/{id}/drift`
//! `POST /profile` and the live feed `GET /ws/monitors/{id}` (`live.rs`).

use axum::http::Method;
use loom_http::writes_under;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson, ApiRouter, routes};
use loom_streams::time::{parse_request_time, rfc3339};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::QualityError;
use crate::ingest::Freshness;
use crate::monitor::{Monitor, MonitorSpec, Reference};
use crate::profile::{FieldProfile, FieldRule, WindowProfile};
use crate::report::{self, Win};
use crate::rest::{Book, Ingest, MAX_RECORDS};
use crate::store::Store;

#[derive(Clone)]
pub struct Api {
    pub book: Book,
    pub ingest: Ingest,
    pub store: Store,
    pub schemas: std::sync::Arc<loom_schemas::SchemaCache>,
    /// The Kafka bridge, when configured (monitors with a `source` need it).
    pub kafka: Option<loom_config::KafkaSection>,
}

/// Cluster-wide writes: monitor definitions (`/monitors/{id}/records` feeds a monitor).
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    writes_under(method, path, "/monitors") && !path.ends_with("/records")
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, replace, remove))
        .routes(routes!(records))
        .routes(routes!(report))
        .routes(routes!(drift))
        .routes(routes!(alerts))
        .routes(routes!(profile))
        .routes(routes!(crate::live::ws))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;
/// Windows one report covers at most.
const MAX_WINDOWS: i64 = 1_000;

pub(crate) async fn entry(api: &Api, id: &str) -> std::result::Result<crate::monitor::Entry, QualityError> {
    api.book.get_fresh(id).await?.ok_or_else(|| QualityError::NotFound(format!("monitor '{id}'")))
}

/// The installed monitors and the book's revision.
#[utoipa::path(get, path = "/monitors", responses((status = 200, description = "`{revision, monitors: [...]}`", body = Object)))]
async fn list(State(api): State<Api>) -> Result<Json<Value>> {
    Ok(Json(json!({"revision": api.book.revision(), "monitors": api.book.stored().await.map_err(QualityError::from)?})))
}

/// Checks what a monitor needs beyond its spec: its schema subject exists in the registry
/// and compiles (422 `unknown_subject`; 503 `registry_unavailable` when it cannot be asked);
/// a source or an alert topic needs the Kafka bridge (409 `kafka_not_configured`), and the
/// topic is created (6 partitions) when absent.
async fn prepare(api: &Api, spec: &MonitorSpec) -> std::result::Result<(), QualityError> {
    Monitor::compile(spec.clone(), 0)?;
    if let Some(source) = &spec.source {
        let kafka = api.kafka.as_ref().ok_or(QualityError::KafkaOff)?;
        crate::kafka::ensure_topic(kafka, &source.topic).await?;
    }
    if let Some(topic) = spec.alerts.as_ref().and_then(|a| a.topic.as_ref()) {
        let kafka = api.kafka.as_ref().ok_or(QualityError::KafkaOff)?;
        crate::kafka::ensure_topic(kafka, topic).await?;
    }
    if let Some(s) = &spec.schema {
        match api.schemas.check_subject(&s.subject).await {
            loom_schemas::SubjectCheck::Usable => {}
            loom_schemas::SubjectCheck::Unusable(m) => return Err(QualityError::Subject(m)),
            loom_schemas::SubjectCheck::Unknown(m) => return Err(QualityError::Registry(m)),
        }
    }
    Ok(())
}

/// Creates a monitor (409 `conflict` when the id exists; PUT replaces).
#[utoipa::path(post, path = "/monitors", request_body(content = Object, description = "A monitor spec: `id`, `window`, optional `source` topic, `schema` subject, `time`, `group_by`, `fields` rules, `unique`, `freshness`, `reference`, `drift`, `anomaly`, `alerts` (README, Data Quality)", example = json!({"id": "gps",
        "time": {"field": "/ts"}, "window": "10m",
        "fields": {"/speed": {"required": true, "range": [0, 200]}, "/platform": {"enum": ["ios", "android", "web"]}},
        "unique": ["/id"], "freshness": {"per": "/device", "max_gap": "5m"}})),
    responses((status = 201, description = "the stored monitor with its version", body = Object)))]
async fn create(State(api): State<Api>, ApiJson(spec): ApiJson<MonitorSpec>) -> Result<Response> {
    if api.book.stored().await.map_err(QualityError::from)?.iter().any(|m| m.spec.id == spec.id) {
        let id = &spec.id;
        return Err(QualityError::Conflict(format!("monitor '{id}' exists; PUT /monitors/{id} replaces it")).into());
    }
    prepare(&api, &spec).await?;
    let stored = api.book.put(spec).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// One monitor.
#[utoipa::path(get, path = "/monitors/{id}", params(("id" = String, Path, description = "monitor id")), responses((status = 200, description = "the stored monitor", body = Object)))]
async fn read(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let m = api.book.stored().await.map_err(QualityError::from)?.into_iter().find(|m| m.spec.id == id);
    let m = m.ok_or_else(|| QualityError::NotFound(format!("monitor '{id}'")))?;
    Ok(Json(serde_json::to_value(m).unwrap_or_default()))
}

/// Creates or replaces a monitor; the body's `id` must be the path's.
#[utoipa::path(put, path = "/monitors/{id}", params(("id" = String, Path, description = "monitor id")), request_body(content = Object, description = "A monitor spec"),
    responses((status = 200, description = "the stored monitor with its new version", body = Object)))]
async fn replace(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<MonitorSpec>,
) -> Result<Json<Value>> {
    if spec.id != id {
        return Err(QualityError::Invalid(format!("the body's id '{}' is not the path's '{id}'", spec.id)).into());
    }
    prepare(&api, &spec).await?;
    Ok(Json(serde_json::to_value(api.book.put(spec).await?).unwrap_or_default()))
}

/// Deletes a monitor and its stored windows.
#[utoipa::path(delete, path = "/monitors/{id}", params(("id" = String, Path, description = "monitor id")), responses((status = 204, description = "deleted")))]
async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode> {
    api.book.delete(&id).await.map_err(QualityError::from)?;
    api.store.delete(&id).await.map_err(QualityError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"records": [...]}` with at most [`MAX_RECORDS`] and nothing else.
fn records_of(body: Value) -> std::result::Result<Vec<Value>, QualityError> {
    let Value::Object(mut body) = body else {
        return Err(QualityError::Invalid("expected {\"records\": [...]}".into()));
    };
    let Some(Value::Array(records)) = body.remove("records") else {
        return Err(QualityError::Invalid("\"records\" (an array of JSON objects) is required".into()));
    };
    if let Some(k) = body.keys().next() {
        return Err(QualityError::Invalid(format!("unknown field '{k}'; expected records")));
    }
    if records.len() > MAX_RECORDS {
        return Err(QualityError::TooMany(MAX_RECORDS));
    }
    Ok(records)
}

/// Feeds a batch of records to a monitor: each is profiled into its event-time window.
#[utoipa::path(post, path = "/monitors/{id}/records", params(("id" = String, Path, description = "monitor id")),
    request_body(content = Object, description = "`{\"records\": [object, ...]}` (at most 10,000 records, nothing else)"),
    responses((status = 200, description = "`{accepted, refused, refusals: [{index, code, message}], windows, monitor, version}` (plus `schema.unavailable` when the schema could not be fetched)", body = Object)))]
async fn records(State(api): State<Api>, Path(id): Path<String>, ApiJson(body): ApiJson<Value>) -> Result<Json<Value>> {
    let records = records_of(body)?;
    entry(&api, &id).await?;
    Ok(Json(api.ingest.call(&id, records).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group: Option<String>,
}

pub(crate) fn time(name: &str, v: &Option<String>) -> std::result::Result<Option<i64>, QualityError> {
    v.as_deref().map(|s| parse_request_time(s).map_err(|e| QualityError::Invalid(format!("{name}: {e}")))).transpose()
}

/// Every window (merged across parts) a report over [from, to) needs: its own, its
/// references' and its anomaly history.
pub(crate) async fn load(
    store: &Store,
    m: &Monitor,
    from: i64,
    to: i64,
) -> std::result::Result<Vec<Win>, QualityError> {
    let mut load_from = from - report::HISTORY.max(m.season_windows.unwrap_or(0) * 3) as i64 * m.window_ms;
    match m.reference {
        Reference::Fixed { from: f, .. } => load_from = load_from.min(f),
        Reference::Rolling(span) if m.spec.drift.is_some() => load_from = load_from.min(from - span),
        Reference::Rolling(_) => {}
    }
    let load_to = match m.reference {
        Reference::Fixed { to: t, .. } => to.max(t),
        Reference::Rolling(_) => to,
    };
    let rows = store.windows(&m.spec.id, load_from, load_to).await?;
    report::merge_rows(rows).map_err(QualityError::Store)
}

/// [from, to) aligned to windows, defaulting to the 24 windows up to the newest.
pub(crate) async fn span(api: &Api, m: &Monitor, q: &ReportQuery) -> std::result::Result<(i64, i64), QualityError> {
    let latest =
        api.store.latest(&m.spec.id).await?.unwrap_or_else(|| m.window_start(loom_storage::documents::now_ms()));
    let to = time("to", &q.to)?.unwrap_or(latest + m.window_ms);
    let from = time("from", &q.from)?.unwrap_or(to - 24 * m.window_ms);
    if to <= from {
        return Err(QualityError::Invalid("to must be after from".into()));
    }
    if (to - from) / m.window_ms > MAX_WINDOWS {
        return Err(QualityError::TooManyWindows(MAX_WINDOWS as usize));
    }
    Ok((m.window_start(from), to))
}

pub(crate) fn silent_devices(m: &Monitor, states: &[Vec<u8>]) -> Value {
    let Some(max_gap) = m.max_gap_ms else { return Value::Null };
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for s in states {
        for (d, t) in Freshness::from_bytes(s).last {
            let e = last.entry(d).or_insert(t);
            *e = (*e).max(t);
        }
    }
    let Some(&newest) = last.values().max() else { return json!({"tracked": 0, "silent": 0, "devices": []}) };
    let mut silent: Vec<(&String, &i64)> = last.iter().filter(|(_, t)| newest - **t > max_gap).collect();
    silent.sort_by_key(|(_, t)| **t);
    json!({
        "as_of": rfc3339(newest),
        "max_gap_ms": max_gap,
        "tracked": last.len(),
        "silent": silent.len(),
        "devices": silent.iter().take(100).map(|(d, t)| json!({"device": d, "last_seen": rfc3339(**t)})).collect::<Vec<_>>(),
    })
}

/// A monitor's per-window quality report over [from, to) (default: the 24 windows up to the newest) with device freshness.
#[utoipa::path(get, path = "/monitors/{id}/report", params(("id" = String, Path, description = "monitor id"),
        ("from" = Option<String>, Query, description = "start (RFC 3339 or unix milliseconds); default: 24 windows before `to`"),
        ("to" = Option<String>, Query, description = "end, exclusive (RFC 3339 or unix milliseconds); default: after the newest window"),
        ("group" = Option<String>, Query, description = "only this `group_by` group")),
    responses((status = 200, description = "`{monitor, version, from, to, window_ms, windows: [...], freshness}`", body = Object)))]
async fn report(State(api): State<Api>, Path(id): Path<String>, Query(q): Query<ReportQuery>) -> Result<Json<Value>> {
    let entry = entry(&api, &id).await?;
    let m = &entry.compiled;
    let (from, to) = span(&api, m, &q).await?;
    let all = load(&api.store, m, from, to).await?;
    let windows: Vec<Value> = all
        .iter()
        .filter(|w| w.start >= from && w.start < to && q.group.as_ref().is_none_or(|g| *g == w.group))
        .map(|w| report::window(m, w, &all))
        .collect();
    let states = api.store.part_states(&id).await.map_err(QualityError::from)?;
    Ok(Json(json!({
        "monitor": id,
        "version": entry.version,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "window_ms": m.window_ms,
        "windows": windows,
        "freshness": silent_devices(m, &states),
    })))
}

/// The monitor's alert state as its owner last stored it: open conditions, the latest transitions and what still waits for the alert topic.
#[utoipa::path(get, path = "/monitors/{id}/alerts", params(("id" = String, Path, description = "monitor id")),
    responses((status = 200, description = "`{monitor, version, revision, health, topic, open: [...], overflow, recent: [...], pending, dropped}` (newest transition last)", body = Object)))]
async fn alerts(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let entry = entry(&api, &id).await?;
    let Some(spec) = &entry.compiled.spec.alerts else {
        return Err(QualityError::Invalid(format!("monitor '{id}' has no alerts section")).into());
    };
    let state = api.store.alerts(&id).await.map_err(QualityError::from)?;
    let (revision, state) = match state {
        Some((rev, bytes)) => (rev, crate::alerts::AlertState::from_bytes(&bytes)),
        None => (0, crate::alerts::AlertState::default()),
    };
    let open: Vec<Value> = state
        .open
        .values()
        .map(|o| {
            let mut v = json!(o.condition);
            v["since"] = json!(rfc3339(o.since_ms));
            v["window"] = o.condition.window.map_or(Value::Null, |s| json!(rfc3339(s)));
            v
        })
        .collect();
    Ok(Json(json!({
        "monitor": id,
        "version": entry.version,
        "revision": revision,
        "health": spec.health,
        "topic": spec.topic,
        "open": open,
        "overflow": state.overflow,
        "recent": state.recent,
        "pending": state.pending.len(),
        "dropped": state.dropped,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriftQuery {
    window: Option<String>,
    from: Option<String>,
    to: Option<String>,
    group: Option<String>,
    /// `"24h"` (rolling) or `"<from>/<to>"` (fixed); default: the monitor's.
    reference: Option<String>,
}

fn merged<'a>(wins: impl Iterator<Item = &'a Win>) -> (WindowProfile, usize) {
    let mut out = WindowProfile::default();
    let mut n = 0;
    for w in wins {
        out.merge(&w.profile);
        n += 1;
    }
    (out, n)
}

/// Per-field drift of a window (or a span) against the monitor's reference, or one given here.
#[utoipa::path(get, path = "/monitors/{id}/drift", params(("id" = String, Path, description = "monitor id"),
        ("window" = Option<String>, Query, description = "the window containing this time (RFC 3339 or unix milliseconds); default: the newest window"),
        ("from" = Option<String>, Query, description = "span start, with `to` (instead of `window`)"),
        ("to" = Option<String>, Query, description = "span end, exclusive, with `from`"),
        ("group" = Option<String>, Query, description = "only this `group_by` group"),
        ("reference" = Option<String>, Query, description = "`24h` (rolling, before the current span) or `<from>/<to>` (fixed); default: the monitor's")),
    responses((status = 200, description = "`{monitor, version, group, current, reference, drift}`", body = Object)))]
async fn drift(State(api): State<Api>, Path(id): Path<String>, Query(q): Query<DriftQuery>) -> Result<Json<Value>> {
    let entry = entry(&api, &id).await?;
    let mut m = entry.compiled.clone();
    if m.spec.drift.is_none() {
        return Err(QualityError::Invalid(format!("monitor '{id}' has no drift section")).into());
    }
    let (from, to) = match (time("window", &q.window)?, time("from", &q.from)?, time("to", &q.to)?) {
        (Some(w), None, None) => (m.window_start(w), m.window_start(w) + m.window_ms),
        (None, Some(f), Some(t)) if t > f => (m.window_start(f), t),
        (None, None, None) => {
            let latest = api
                .store
                .latest(&id)
                .await
                .map_err(QualityError::from)?
                .ok_or_else(|| QualityError::NotFound("any window".into()))?;
            (latest, latest + m.window_ms)
        }
        _ => return Err(QualityError::Invalid("either window=<time>, or from=<time>&to=<later time>".into()).into()),
    };
    if (to - from) / m.window_ms > MAX_WINDOWS {
        return Err(QualityError::TooManyWindows(MAX_WINDOWS as usize).into());
    }
    if let Some(r) = &q.reference {
        let mut spec = m.spec.clone();
        spec.reference = Some(match r.split_once('/') {
            Some((f, t)) => crate::monitor::ReferenceSpec::Fixed { from: f.into(), to: t.into() },
            None => crate::monitor::ReferenceSpec::Rolling(r.clone()),
        });
        m = Monitor::compile(spec, entry.version).map_err(|e| QualityError::Invalid(format!("reference: {e}")))?;
    }
    let all = load(&api.store, &m, from, to).await?;
    let in_group = |w: &&Win| q.group.as_ref().is_none_or(|g| *g == w.group);
    let (current, windows) = merged(all.iter().filter(|w| w.start >= from && w.start < to).filter(in_group));
    let (rf, rt) = match m.reference {
        Reference::Fixed { from, to } => (from, to),
        Reference::Rolling(span) => (from - span, from),
    };
    let (reference, ref_windows) = merged(all.iter().filter(|w| w.start >= rf && w.start < rt).filter(in_group));
    Ok(Json(json!({
        "monitor": id,
        "version": entry.version,
        "group": q.group,
        "current": {"from": rfc3339(from), "to": rfc3339(to), "windows": windows, "count": current.count},
        "reference": {"from": rfc3339(rf), "to": rfc3339(rt), "windows": ref_windows, "count": reference.count},
        "drift": crate::drift::compare(&m, &current, &reference),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    records: Vec<Value>,
    /// Pointers to profile; default: the top-level keys of the records (at most 64).
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// A one-off profile of a batch, without a monitor (nothing is stored).
#[utoipa::path(post, path = "/profile",
    request_body(content = Object, description = "`{\"records\": [object, ...], \"fields\": optional [JSON pointer, ...]}` (at most 10,000 records and 64 fields; default fields: the records' top-level keys)"),
    responses((status = 200, description = "`{count, refused, fields: [...]}` (per-field summary and completeness)", body = Object)))]
async fn profile(ApiJson(body): ApiJson<ProfileBody>) -> Result<Json<Value>> {
    if body.records.len() > MAX_RECORDS {
        return Err(QualityError::TooMany(MAX_RECORDS).into());
    }
    let fields: Vec<String> = match body.fields {
        Some(f) => {
            if f.len() > crate::monitor::MAX_FIELDS || f.iter().any(|p| !p.starts_with('/')) {
                return Err(QualityError::Invalid(format!(
                    "fields: at most {} JSON pointers starting with '/'",
                    crate::monitor::MAX_FIELDS
                ))
                .into());
            }
            f
        }
        None => {
            let mut keys: Vec<String> = Vec::new();
            for r in &body.records {
                for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
                    let p = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
                    if !keys.contains(&p) && keys.len() < crate::monitor::MAX_FIELDS {
                        keys.push(p);
                    }
                }
            }
            keys
        }
    };
    let rule = FieldRule::default();
    let mut profiles: BTreeMap<String, FieldProfile> =
        fields.iter().map(|f| (f.clone(), FieldProfile::default())).collect();
    let mut objects = 0u64;
    for r in body.records.iter().filter(|r| r.is_object()) {
        objects += 1;
        for (p, fp) in profiles.iter_mut() {
            fp.add(r.pointer(p), &rule);
        }
    }
    let summaries: Vec<Value> = profiles
        .iter()
        .map(|(name, fp)| {
            let mut v = report::field_summary(name, fp);
            let missing = objects.saturating_sub(fp.present);
            v["completeness"] = json!({"field": name, "missing": missing, "null": fp.nulls,
                "rate": if objects == 0 { 0.0 } else { (missing + fp.nulls) as f64 / objects as f64 }});
            v
        })
        .collect();
    Ok(Json(json!({"count": objects, "refused": body.records.len() as u64 - objects, "fields": summaries})))
}
