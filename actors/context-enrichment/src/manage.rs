//! The configuration routes on 8023 — enrichment rules (`/rules`), tenant places and geofences
//! (`/places`) and calendars (`/calendars/{subject}`) — each a cluster-wide book
//! (`loom_service::book`): stored as documents in the shared database, compiled on every node,
//! reloaded on a cluster broadcast after each write and on a 2 s poll.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson, ApiRouter, routes, writes_under};
use loom_service::book::{Book, Spec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::calendar::{self, Calendar, CalendarSpec};
use crate::error::EnrichError;
use crate::geofence::{self, Fence, PlaceSpec};
use crate::rules::{self, Rule, RuleSpec};

impl Spec for RuleSpec {
    type Compiled = Arc<Rule>;
    type Error = EnrichError;
    fn id(&self) -> &str {
        &self.id
    }
    fn compile(&self, version: i32) -> std::result::Result<Arc<Rule>, EnrichError> {
        Ok(Arc::new(rules::compile(self, version)?))
    }
}

impl Spec for PlaceSpec {
    type Compiled = Arc<Fence>;
    type Error = EnrichError;
    fn id(&self) -> &str {
        &self.id
    }
    fn compile(&self, version: i32) -> std::result::Result<Arc<Fence>, EnrichError> {
        Ok(Arc::new(geofence::compile(self, version)?))
    }
}

impl Spec for CalendarSpec {
    type Compiled = Arc<Calendar>;
    type Error = EnrichError;
    fn id(&self) -> &str {
        &self.subject
    }
    fn compile(&self, version: i32) -> std::result::Result<Arc<Calendar>, EnrichError> {
        Ok(Arc::new(calendar::compile(self, version)?))
    }
}

/// The three books, shared by the configuration routes and `/enrich`.
#[derive(Clone)]
pub struct Books {
    pub rules: Book<RuleSpec>,
    pub places: Book<PlaceSpec>,
    pub calendars: Book<CalendarSpec>,
}

impl Books {
    pub fn new(db: loom_storage::sea_orm::DatabaseConnection, cluster: Option<loom_cluster::Cluster>) -> Books {
        Books {
            rules: Book::new(db.clone(), "enrich.rule", "enrich.rules", rules::MAX_RULES, cluster.clone()),
            places: Book::new(db.clone(), "enrich.place", "enrich.places", geofence::MAX_PLACES, cluster.clone()),
            calendars: Book::new(db, "enrich.calendar", "enrich.calendars", calendar::MAX_CALENDARS, cluster),
        }
    }

    pub fn follow(&self) {
        tokio::spawn(self.rules.clone().follow());
        tokio::spawn(self.places.clone().follow());
        tokio::spawn(self.calendars.clone().follow());
    }

    /// The enabled rules in evaluation order, and the book's revision.
    pub fn rules(&self) -> (Vec<Arc<Rule>>, i64) {
        (rules::ordered(self.rules.all().into_iter().map(|e| e.compiled.clone()).collect()), self.rules.revision())
    }

    pub fn fences(&self) -> Vec<Arc<Fence>> {
        self.places.all().into_iter().map(|e| e.compiled.clone()).collect()
    }

    pub fn calendar(&self, subject: &str) -> Option<Arc<Calendar>> {
        self.calendars.get(subject).map(|e| e.compiled.clone())
    }
}

/// Cluster-wide writes: rules, places, calendars.
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    ["/rules", "/places", "/calendars"].iter().any(|p| writes_under(method, path, p))
}

pub fn routes(books: Books) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(read_rule, replace_rule, remove_rule))
        .routes(routes!(list_places, create_place))
        .routes(routes!(read_place, replace_place, remove_place))
        .routes(routes!(list_calendars))
        .routes(routes!(read_calendar, put_calendar, remove_calendar))
        .routes(routes!(calendar_events))
        .with_state(books)
}

type Result<T> = std::result::Result<T, ApiError>;

async fn create_in<S: Spec<Error = EnrichError>>(book: &Book<S>, what: &str, spec: S) -> Result<Response> {
    if book.stored().await.map_err(EnrichError::from)?.iter().any(|s| s.spec.id() == spec.id()) {
        let id = spec.id();
        return Err(EnrichError::Conflict(format!("{what} '{id}' exists; PUT /{what}s/{id} replaces it")).into());
    }
    Ok((StatusCode::CREATED, Json(book.put(spec).await?)).into_response())
}

async fn read_in<S: Spec<Error = EnrichError>>(book: &Book<S>, what: &str, id: &str) -> Result<Json<Value>> {
    let s = book.stored().await.map_err(EnrichError::from)?.into_iter().find(|s| s.spec.id() == id);
    let s = s.ok_or_else(|| EnrichError::NotFound(format!("{what} '{id}'")))?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

async fn replace_in<S: Spec<Error = EnrichError>>(book: &Book<S>, id: &str, spec: S) -> Result<Json<Value>> {
    if spec.id() != id {
        return Err(EnrichError::Invalid(format!("the body's id '{}' is not the path's '{id}'", spec.id())).into());
    }
    Ok(Json(serde_json::to_value(book.put(spec).await?).unwrap_or_default()))
}

async fn remove_in<S: Spec<Error = EnrichError>>(book: &Book<S>, what: &str, id: &str) -> Result<StatusCode> {
    book.delete(id).await.map_err(|e| match e {
        loom_service::book::BookError::NotFound(_) => EnrichError::NotFound(format!("{what} '{id}'")),
        e => e.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The enrichment rules and the book's revision.
#[utoipa::path(get, path = "/rules", responses((status = 200, description = "`{revision, rules: [...]}`", body = Object)))]
async fn list_rules(State(b): State<Books>) -> Result<Json<Value>> {
    Ok(Json(json!({"revision": b.rules.revision(), "rules": b.rules.stored().await.map_err(EnrichError::from)?})))
}

/// Creates a rule (409 `conflict` when the id exists; PUT replaces).
#[utoipa::path(post, path = "/rules", request_body = RuleSpec,
    responses((status = 201, description = "the stored rule with its version", body = Object)))]
async fn create_rule(State(b): State<Books>, ApiJson(spec): ApiJson<RuleSpec>) -> Result<Response> {
    create_in(&b.rules, "rule", spec).await
}

/// One rule.
#[utoipa::path(get, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")),
    responses((status = 200, description = "the stored rule", body = Object)))]
async fn read_rule(State(b): State<Books>, Path(id): Path<String>) -> Result<Json<Value>> {
    read_in(&b.rules, "rule", &id).await
}

/// Creates or replaces a rule; the body's `id` must be the path's.
#[utoipa::path(put, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")), request_body = RuleSpec,
    responses((status = 200, description = "the stored rule with its new version", body = Object)))]
async fn replace_rule(
    State(b): State<Books>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<Json<Value>> {
    replace_in(&b.rules, &id, spec).await
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/rules/{id}", params(("id" = String, Path, description = "rule id")), responses((status = 204, description = "deleted")))]
async fn remove_rule(State(b): State<Books>, Path(id): Path<String>) -> Result<StatusCode> {
    remove_in(&b.rules, "rule", &id).await
}

/// The tenant places and geofences and the book's revision.
#[utoipa::path(get, path = "/places", responses((status = 200, description = "`{revision, places: [...]}`", body = Object)))]
async fn list_places(State(b): State<Books>) -> Result<Json<Value>> {
    Ok(Json(json!({"revision": b.places.revision(), "places": b.places.stored().await.map_err(EnrichError::from)?})))
}

/// Creates a place: a point with `radius_m`, or a GeoJSON Polygon/MultiPolygon `geometry`.
#[utoipa::path(post, path = "/places", request_body = PlaceSpec,
    responses((status = 201, description = "the stored place with its version", body = Object)))]
async fn create_place(State(b): State<Books>, ApiJson(spec): ApiJson<PlaceSpec>) -> Result<Response> {
    create_in(&b.places, "place", spec).await
}

/// One place.
#[utoipa::path(get, path = "/places/{id}", params(("id" = String, Path, description = "place id")),
    responses((status = 200, description = "the stored place", body = Object)))]
async fn read_place(State(b): State<Books>, Path(id): Path<String>) -> Result<Json<Value>> {
    read_in(&b.places, "place", &id).await
}

/// Creates or replaces a place; the body's `id` must be the path's.
#[utoipa::path(put, path = "/places/{id}", params(("id" = String, Path, description = "place id")), request_body = PlaceSpec,
    responses((status = 200, description = "the stored place with its new version", body = Object)))]
async fn replace_place(
    State(b): State<Books>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<PlaceSpec>,
) -> Result<Json<Value>> {
    replace_in(&b.places, &id, spec).await
}

/// Deletes a place.
#[utoipa::path(delete, path = "/places/{id}", params(("id" = String, Path, description = "place id")), responses((status = 204, description = "deleted")))]
async fn remove_place(State(b): State<Books>, Path(id): Path<String>) -> Result<StatusCode> {
    remove_in(&b.places, "place", &id).await
}

fn summary(s: &loom_service::book::Stored<CalendarSpec>, events: Option<usize>) -> Value {
    json!({"subject": s.spec.subject, "tz": s.spec.tz, "version": s.version, "revision": s.revision,
           "updated_ms": s.updated_ms, "bytes": s.spec.ics.len(), "events": events})
}

/// The stored calendars (subjects, versions, sizes; not their text).
#[utoipa::path(get, path = "/calendars", responses((status = 200, description = "`{revision, calendars: [{subject, tz, version, bytes, events}]}`", body = Object)))]
async fn list_calendars(State(b): State<Books>) -> Result<Json<Value>> {
    let list: Vec<Value> = b
        .calendars
        .stored()
        .await
        .map_err(EnrichError::from)?
        .iter()
        .map(|s| summary(s, b.calendar(&s.spec.subject).map(|c| c.event_count())))
        .collect();
    Ok(Json(json!({"revision": b.calendars.revision(), "calendars": list})))
}

/// One calendar: its summary and its iCalendar text.
#[utoipa::path(get, path = "/calendars/{subject}", params(("subject" = String, Path, description = "the subject (person, device, room) the calendar belongs to")),
    responses((status = 200, description = "`{subject, tz, version, events, ics}`", body = Object)))]
async fn read_calendar(State(b): State<Books>, Path(subject): Path<String>) -> Result<Json<Value>> {
    let s = b.calendars.stored().await.map_err(EnrichError::from)?.into_iter().find(|s| s.spec.subject == subject);
    let s = s.ok_or_else(|| EnrichError::NotFound(format!("calendar '{subject}'")))?;
    let mut v = summary(&s, b.calendar(&subject).map(|c| c.event_count()));
    v["ics"] = json!(s.spec.ics);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarQuery {
    tz: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarJson {
    ics: Option<String>,
    tz: Option<String>,
    url: Option<String>,
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> std::result::Result<T, EnrichError> {
    q.map(|Query(q)| q).map_err(|e| EnrichError::Invalid(e.body_text()))
}

/// Stores a subject's calendar: iCalendar text (RFC 5545) as the body (`text/calendar`), or
/// JSON `{"ics", "tz"?}`; `tz` is the zone of floating times and all-day dates.
#[utoipa::path(put, path = "/calendars/{subject}",
    params(("subject" = String, Path, description = "the subject the calendar belongs to"),
           ("tz" = Option<String>, Query, description = "IANA zone of floating times (default: X-WR-TIMEZONE, else UTC)")),
    request_body(content((String = "text/calendar"), (Object = "application/json")), description = "iCalendar text, at most 1 MiB"),
    responses((status = 200, description = "the calendar's summary with its new version", body = Object)))]
async fn put_calendar(
    State(b): State<Books>,
    Path(subject): Path<String>,
    q: std::result::Result<Query<CalendarQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    let q = query(q)?;
    if !calendar::subject_ok(&subject) {
        return Err(EnrichError::Invalid("a subject is 1-256 characters, no '/' or control characters".into()).into());
    }
    if body.len() > calendar::MAX_ICS_BYTES {
        return Err(
            EnrichError::TooLarge(format!("at most {} bytes of iCalendar text", calendar::MAX_ICS_BYTES)).into()
        );
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let (ics, tz) = if json {
        let j: CalendarJson = serde_json::from_slice(&body).map_err(|e| EnrichError::Invalid(format!("body: {e}")))?;
        if j.url.is_some() {
            return Err(EnrichError::NotBuilt("calendar subscriptions by URL").into());
        }
        (j.ics.ok_or_else(|| EnrichError::Invalid("body: `ics` is required".into()))?, j.tz.or(q.tz))
    } else {
        let text =
            String::from_utf8(body.to_vec()).map_err(|_| EnrichError::Invalid("the body is not UTF-8 text".into()))?;
        (text, q.tz)
    };
    let tz = calendar::default_zone(&ics, tz.as_deref()).map_err(EnrichError::from)?;
    let spec = CalendarSpec { subject: subject.clone(), ics, tz };
    let stored = b.calendars.put(spec).await?;
    Ok(Json(summary(&stored, b.calendar(&subject).map(|c| c.event_count()))))
}

/// Deletes a subject's calendar.
#[utoipa::path(delete, path = "/calendars/{subject}", params(("subject" = String, Path, description = "the subject")), responses((status = 204, description = "deleted")))]
async fn remove_calendar(State(b): State<Books>, Path(subject): Path<String>) -> Result<StatusCode> {
    remove_in(&b.calendars, "calendar", &subject).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    from: String,
    to: String,
}

/// The calendar's event instances overlapping `[from, to]` (recurrences expanded in the window only; at most 1,000).
#[utoipa::path(get, path = "/calendars/{subject}/events",
    params(("subject" = String, Path, description = "the subject"),
           ("from" = String, Query, description = "RFC 3339 or epoch ms"),
           ("to" = String, Query, description = "RFC 3339 or epoch ms; at most 400 days after `from`")),
    responses((status = 200, description = "`{subject, version, events: [{uid, summary, start, end, all_day, recurring}], limited}`", body = Object)))]
async fn calendar_events(
    State(b): State<Books>,
    Path(subject): Path<String>,
    q: std::result::Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let t = |s: &str| {
        loom_streams::time::parse_request_time(s)
            .ok()
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .ok_or_else(|| EnrichError::Time(format!("'{s}' is not RFC 3339 or epoch milliseconds")))
    };
    let (from, to) = (t(&q.from)?, t(&q.to)?);
    if to < from || to - from > chrono::Duration::days(400) {
        return Err(EnrichError::Invalid("`to` must be after `from` and at most 400 days later".into()).into());
    }
    b.calendars.get_fresh(&subject).await.map_err(EnrichError::from)?;
    let c = b.calendar(&subject).ok_or_else(|| EnrichError::NotFound(format!("calendar '{subject}'")))?;
    let found = tokio::task::spawn_blocking(move || {
        let f = c.overlapping(from, to, usize::from(calendar::MAX_INSTANCES));
        json!({"subject": c.subject, "version": c.version, "events": f.instances, "limited": f.limited})
    })
    .await
    .map_err(|_| EnrichError::Unavailable("expansion failed".into()))?;
    Ok(Json(found))
}
