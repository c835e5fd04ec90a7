//! The data routes on 8023: `POST /enrich`, `GET /place`, `GET /time`, `GET /holidays`,
//! `GET /stats` (the configuration routes are in `manage.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use loom_http::{ApiError, ApiJson, ApiRouter, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use std::collections::HashMap;

use crate::data::Data;
use crate::enrich::{self, Include, Pointers, Sources};
use crate::error::EnrichError;
use crate::provider::{Outcome, WeatherMsg, WeatherStats};
use crate::time::DayParts;
use crate::weather::Key;

/// Events per `/enrich` request.
pub const MAX_EVENTS: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    events: AtomicU64,
    refused: AtomicU64,
    place: AtomicU64,
    time: AtomicU64,
    holidays: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
}

#[derive(Clone)]
pub struct Api {
    pub data: Arc<Data>,
    pub day_parts: DayParts,
    pub stats: Arc<Stats>,
    pub weather: Weather,
    pub books: crate::manage::Books,
    pub calendar_margin: chrono::Duration,
}

/// The weather side: the cache every handler reads first and the actor behind the misses.
#[derive(Clone)]
pub struct Weather {
    pub cache: loom_storage::Cache,
    pub actor: loom_service::Handle<WeatherMsg>,
    pub resolution: h3o::Resolution,
    pub stats: Arc<WeatherStats>,
    /// How long a request waits for the provider at most; then its keys are `unavailable`.
    pub wait: std::time::Duration,
}

/// Each key's outcome: cached ones at once, the rest from the weather actor (bounded wait).
async fn weather_of(w: &Weather, keys: Vec<Key>) -> HashMap<Key, Outcome> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return out;
    }
    let names: Vec<String> = keys.iter().map(Key::cache_key).collect();
    let cached = w.cache.get_many(&names).await.unwrap_or_else(|_| vec![None; keys.len()]);
    let mut missing = Vec::new();
    for (k, c) in keys.into_iter().zip(cached) {
        match c.as_deref().and_then(crate::provider::decode) {
            Some(o) => {
                out.insert(k, o);
            }
            None => missing.push(k),
        }
    }
    let (hits, misses) = (out.len() as u64, missing.len() as u64);
    w.stats.cache_hits.fetch_add(hits, Ordering::Relaxed);
    w.stats.cache_misses.fetch_add(misses, Ordering::Relaxed);
    crate::metrics::weather_cache(hits, misses);
    if missing.is_empty() {
        return out;
    }
    let asked = missing.clone();
    match w.actor.call(|reply| WeatherMsg::Fetch { keys: missing, reply }, w.wait).await {
        Ok(found) => out.extend(found),
        Err(e) => {
            let why = if matches!(e, loom_service::CallError::Timeout { .. }) { "timeout" } else { "busy" };
            w.stats.unavailable.fetch_add(asked.len() as u64, Ordering::Relaxed);
            out.extend(asked.into_iter().map(|k| (k, Outcome::Unavailable(why))));
        }
    }
    out
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(enrich))
        .routes(routes!(place))
        .routes(routes!(time))
        .routes(routes!(holidays))
        .routes(routes!(stats))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> std::result::Result<T, EnrichError> {
    q.map(|Query(q)| q).map_err(|e| EnrichError::Invalid(e.body_text()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrichBody {
    events: Vec<Value>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    pointers: Option<Pointers>,
}

fn include_of(list: Option<&[String]>) -> std::result::Result<Include, EnrichError> {
    let Some(list) = list else { return Ok(Include::ALL) };
    let mut inc = Include::NONE;
    for name in list {
        match name.as_str() {
            "place" => inc.place = true,
            "time" => inc.time = true,
            "weather" => inc.weather = true,
            "calendar" => inc.calendar = true,
            "rules" => inc.rules = true,
            other => {
                return Err(EnrichError::Invalid(format!(
                    "include: '{other}' is not one of place, time, weather, calendar, rules"
                )));
            }
        }
    }
    Ok(inc)
}

/// Enriches events with place, time and weather context, each group with its provenance.
#[utoipa::path(post, path = "/enrich",
    request_body(content = Object, description = "`{\"events\": [object, ...] (at most 10,000), \"include\"?: [\"place\",\"time\",\"weather\",\"calendar\",\"rules\"], \"pointers\"?: {lat, lon, ts, subject, tenant}}`"),
    responses((status = 200, description = "`{events: [...]}` each with a `context` object", body = Object)))]
async fn enrich(State(api): State<Api>, ApiJson(body): ApiJson<EnrichBody>) -> Result<Json<Value>> {
    if body.events.len() > MAX_EVENTS {
        return Err(EnrichError::TooMany(MAX_EVENTS).into());
    }
    let include = include_of(body.include.as_deref())?;
    let pointers = body.pointers.unwrap_or_default();
    let named = [
        ("lat", &pointers.lat),
        ("lon", &pointers.lon),
        ("ts", &pointers.ts),
        ("subject", &pointers.subject),
        ("tenant", &pointers.tenant),
    ];
    for (name, p) in named {
        if !p.starts_with('/') {
            return Err(EnrichError::Invalid(format!("pointers.{name}: '{p}' is not a JSON pointer")).into());
        }
    }
    Ok(Json(enrich_events(&api, body.events, include, pointers).await?))
}

/// Enriches a batch (the `/enrich` body's events, or a stream's records): `{count, events,
/// refused: [{index, code}]}`, events in order, non-objects unchanged and listed in `refused`.
pub async fn enrich_events(
    api: &Api,
    input: Vec<Value>,
    include: Include,
    pointers: Pointers,
) -> std::result::Result<Value, EnrichError> {
    let keys: Vec<Option<Key>> = if include.weather {
        let res = api.weather.resolution;
        input
            .iter()
            .map(|e| enrich::position(e, &pointers).and_then(|(lat, lon, ms)| Key::of(lat, lon, ms, res)))
            .collect()
    } else {
        Vec::new()
    };
    let mut distinct: Vec<Key> = keys.iter().flatten().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let weather = weather_of(&api.weather, distinct).await;
    let places = api.data.places().await?;
    let zones = if include.time { Some(api.data.zones().await?) } else { None };
    let holidays = if include.time { Some(api.data.holidays().await) } else { None };
    let (day_parts, stats, margin) = (api.day_parts, api.stats.clone(), api.calendar_margin);
    let fences = if include.place || include.time { api.books.fences() } else { Vec::new() };
    let (rules, revision) = if include.rules { api.books.rules() } else { (Vec::new(), 0) };
    let books = api.books.clone();
    tokio::task::spawn_blocking(move || {
        let missing = holidays.as_ref().and_then(|h| h.as_ref().err().cloned());
        let find = |subject: &str| books.calendar(subject);
        let s = Sources {
            places: Some(&places),
            zones: zones.as_deref(),
            holidays: holidays.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.as_ref()),
            day_parts,
            holidays_missing: missing.as_deref(),
            fences: &fences,
            calendars: Some(&find),
            calendar_margin: margin,
        };
        let mut refused = Vec::new();
        let mut events = Vec::with_capacity(input.len());
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let (mut n_place, mut n_time, mut n_holiday) = (0u64, 0u64, 0u64);
        for (i, mut e) in input.into_iter().enumerate() {
            if !e.is_object() {
                refused.push(json!({"index": i, "code": "not_an_object"}));
                events.push(e);
                continue;
            }
            let mut ctx = enrich::context(&s, &e, &pointers, include);
            if include.weather {
                ctx["weather"] = match keys.get(i).copied().flatten() {
                    Some(k) => weather.get(&k).map_or(Value::Null, |o| enrich::weather_group(&k, o)),
                    None => Value::Null,
                };
            }
            if !rules.is_empty()
                && let Value::Object(m) = &mut ctx
            {
                let applied = crate::rules::apply(&rules, &mut e, m);
                let mut g = crate::rules::group(&applied, revision);
                if !applied.errors.is_empty() {
                    let errors: Vec<Value> =
                        applied.errors.iter().map(|(id, why)| json!({"id": id, "message": why})).collect();
                    g["errors"] = json!(errors);
                    let reasons = m.entry("reasons").or_insert_with(|| json!({}));
                    reasons["rules"] = json!("rule_failed");
                }
                m.insert("rules".into(), g);
            }
            n_place += u64::from(ctx.get("place").is_some_and(|p| !p.is_null()));
            n_time += u64::from(ctx.get("time").is_some_and(|t| !t.is_null()));
            n_holiday += u64::from(ctx.pointer("/time/holiday").is_some_and(|h| !h.is_null()));
            for r in ctx.get("reasons").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
                *reasons.entry(r.as_str().unwrap_or("other").to_owned()).or_default() += 1;
            }
            e["context"] = ctx;
            events.push(e);
        }
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        stats.refused.fetch_add(refused.len() as u64, Ordering::Relaxed);
        stats.place.fetch_add(n_place, Ordering::Relaxed);
        stats.time.fetch_add(n_time, Ordering::Relaxed);
        stats.holidays.fetch_add(n_holiday, Ordering::Relaxed);
        crate::metrics::enriched(events.len() - refused.len(), refused.len(), n_place, n_time, &reasons);
        let mut all = stats.reasons.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in reasons {
            *all.entry(k).or_default() += v;
        }
        json!({"count": events.len(), "events": events, "refused": refused})
    })
    .await
    .map_err(|_| EnrichError::Unavailable("enrichment failed".into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceQuery {
    lat: Option<String>,
    lon: Option<String>,
    ts: Option<String>,
    tenant: Option<String>,
}

fn at_of(q: &PlaceQuery) -> std::result::Result<Option<(f64, f64)>, EnrichError> {
    let e = json!({"lat": q.lat, "lon": q.lon});
    match enrich::coordinates(&e, &Pointers::default()) {
        Ok(c) => Ok(Some(c)),
        Err("missing_coordinates") => Ok(None),
        Err(r) => Err(EnrichError::Coordinates(r)),
    }
}

/// The nearest populated place (GeoNames cities) or the tenant's place that contains the point.
#[utoipa::path(get, path = "/place", params(
        ("lat" = Option<String>, Query, description = "latitude, decimal degrees"),
        ("lon" = Option<String>, Query, description = "longitude, decimal degrees"),
        ("tenant" = Option<String>, Query, description = "whose geofences apply besides the shared ones")),
    responses((status = 200, description = "`{name, country_code, admin1, geonameid, distance_km, confidence, geofence, provenance}`", body = Object)))]
async fn place(
    State(api): State<Api>,
    q: std::result::Result<Query<PlaceQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let (lat, lon) = at_of(&q)?.ok_or(EnrichError::Coordinates("missing_coordinates"))?;
    let places = api.data.places().await?;
    let fences = api.books.fences();
    let s = Sources {
        places: None,
        zones: None,
        holidays: None,
        day_parts: api.day_parts,
        holidays_missing: None,
        fences: &fences,
        calendars: None,
        calendar_margin: api.calendar_margin,
    };
    Ok(Json(enrich::place_or_fence(&s, &places, lat, lon, q.tenant.as_deref())))
}

/// Time context at a point and instant: zone, local time, day part, holiday, sunrise and sunset.
#[utoipa::path(get, path = "/time", params(
        ("lat" = Option<String>, Query, description = "latitude, decimal degrees"),
        ("lon" = Option<String>, Query, description = "longitude, decimal degrees"),
        ("ts" = Option<String>, Query, description = "RFC 3339 or epoch milliseconds; now when absent")),
    responses((status = 200, description = "the `context.time` group", body = Object)))]
async fn time(
    State(api): State<Api>,
    q: std::result::Result<Query<PlaceQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let at = at_of(&q)?;
    let ms = match &q.ts {
        Some(t) => loom_streams::time::parse_request_time(t).map_err(EnrichError::Time)?,
        None => loom_storage::documents::now_ms(),
    };
    let zones = api.data.zones().await?;
    let holidays = api.data.holidays().await;
    let country = match at {
        Some((lat, lon)) => {
            let p = api.data.places().await?.nearest(lat, lon);
            Some((p.country_code, p.admin1))
        }
        None => None,
    };
    let missing = holidays.as_ref().err().cloned();
    let s = Sources {
        places: None,
        zones: Some(&zones),
        holidays: holidays.as_ref().ok().map(|h| h.as_ref()),
        day_parts: api.day_parts,
        holidays_missing: missing.as_deref(),
        fences: &[],
        calendars: None,
        calendar_margin: api.calendar_margin,
    };
    let c = country.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
    let v = enrich::time_group(&s, at, ms, c).ok_or_else(|| EnrichError::Time("out of range".into()))?;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayQuery {
    country: String,
    subdivision: Option<String>,
    year: i32,
}

/// The public holidays of a country (and subdivision) in a year, from the shipped tables.
#[utoipa::path(get, path = "/holidays", params(
        ("country" = String, Query, description = "ISO 3166-1 alpha-2"),
        ("subdivision" = Option<String>, Query, description = "ISO 3166-2 subdivision code"),
        ("year" = i32, Query, description = "calendar year")),
    responses((status = 200, description = "`{country, subdivision, year, covered, holidays: [{date, name}], provenance}`", body = Object)))]
async fn holidays(
    State(api): State<Api>,
    q: std::result::Result<Query<HolidayQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let h = api.data.holidays().await.map_err(EnrichError::Unavailable)?;
    let cc = q.country.to_ascii_uppercase();
    let list = h.year(&cc, q.subdivision.as_deref(), q.year).ok_or_else(|| {
        EnrichError::NotFound(match &q.subdivision {
            Some(s) => format!("country '{cc}' with subdivision '{s}'"),
            None => format!("country '{cc}'"),
        })
    })?;
    let [from, to] = h.years();
    Ok(Json(json!({
        "country": cc,
        "subdivision": q.subdivision,
        "year": q.year,
        "covered": (from..=to).contains(&q.year),
        "holidays": list.into_iter().map(|(date, name)| json!({"date": date, "name": name})).collect::<Vec<_>>(),
        "provenance": {"source": h.provenance(), "version": h.version()},
    })))
}

/// Lookup counts, cache hit rates per source, provider calls and breaker state on this node.
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "counters", body = Object)))]
async fn stats(State(api): State<Api>) -> Json<Value> {
    let s = &api.stats;
    let w = &api.weather.stats;
    let (places, zones, holidays) = api.data.loaded();
    let reasons = s.reasons.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "events": s.events.load(Ordering::Relaxed),
        "refused": s.refused.load(Ordering::Relaxed),
        "lookups": {
            "place": s.place.load(Ordering::Relaxed),
            "time": s.time.load(Ordering::Relaxed),
            "holiday_hits": s.holidays.load(Ordering::Relaxed),
        },
        "reasons": reasons,
        "loaded": {"places": places, "zones": zones, "holidays": holidays},
        "weather": {
            "cache_hits": w.cache_hits.load(Ordering::Relaxed),
            "cache_misses": w.cache_misses.load(Ordering::Relaxed),
            "coalesced": w.coalesced.load(Ordering::Relaxed),
            "provider_calls": w.provider_calls.load(Ordering::Relaxed),
            "provider_failures": w.provider_failures.load(Ordering::Relaxed),
            "unavailable": w.unavailable.load(Ordering::Relaxed),
            "breaker": w.breaker_name(),
            "cache": api.weather.cache.backend(),
        },
        "configuration": {
            "rules": {"count": api.books.rules.all().len(), "revision": api.books.rules.revision()},
            "places": {"count": api.books.places.all().len(), "revision": api.books.places.revision()},
            "calendars": {"count": api.books.calendars.all().len(), "revision": api.books.calendars.revision()},
        },
    }))
}
