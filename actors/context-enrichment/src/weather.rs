//! Weather, the pure parts: cache keys by (H3 cell, hour), the Open-Meteo request and response
//! shapes (`/v1/forecast` for recent and coming hours, `/v1/archive` for older ones — several
//! coordinates per request, answered as an array, or as one object for one coordinate), the
//! circuit breaker and the rate budget. The actor that calls the provider is `provider.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Hourly variables asked for, in Open-Meteo's names.
pub const HOURLY: &str = "temperature_2m,relative_humidity_2m,precipitation,weather_code,wind_speed_10m";
/// Hours older than this go to the archive API.
pub const ARCHIVE_AFTER_MS: i64 = 60 * 86_400_000;
/// Coordinates per provider request at most.
pub const MAX_PER_CALL: usize = 50;

/// What the cache and the provider are asked for: one H3 cell in one UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub cell: u64,
    pub hour_ms: i64,
}

impl Key {
    /// The key of a valid coordinate at an instant, at H3 `resolution`.
    pub fn of(lat: f64, lon: f64, ms: i64, resolution: h3o::Resolution) -> Option<Key> {
        let cell = h3o::LatLng::new(lat, lon).ok()?.to_cell(resolution);
        Some(Key { cell: u64::from(cell), hour_ms: ms.div_euclid(3_600_000) * 3_600_000 })
    }

    /// The cell's centre, where the provider is asked.
    pub fn centre(&self) -> Option<(f64, f64)> {
        let c = h3o::CellIndex::try_from(self.cell).ok()?;
        let ll = h3o::LatLng::from(c);
        Some((ll.lat(), ll.lng()))
    }

    pub fn cache_key(&self) -> String {
        format!("enrich:wx:{:x}:{}", self.cell, self.hour_ms)
    }

    pub fn hour(&self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.hour_ms)
            .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:00").to_string())
    }

    pub fn api(&self, now_ms: i64) -> Api {
        if self.hour_ms < now_ms - ARCHIVE_AFTER_MS { Api::Archive } else { Api::Forecast }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    Forecast,
    Archive,
}

impl Api {
    pub fn source(self) -> &'static str {
        match self {
            Api::Forecast => "open-meteo-forecast",
            Api::Archive => "open-meteo-archive",
        }
    }
}

/// One hour's weather at a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub temperature_c: Option<f64>,
    pub relative_humidity_pct: Option<f64>,
    pub precipitation_mm: Option<f64>,
    pub weather_code: Option<i64>,
    pub wind_speed_kmh: Option<f64>,
    pub source: String,
}

/// The request for `keys` (all of one hour and one API): its path and query.
pub fn request(api: Api, keys: &[Key]) -> Option<String> {
    let first = keys.first()?;
    let mut lats = Vec::with_capacity(keys.len());
    let mut lons = Vec::with_capacity(keys.len());
    for k in keys {
        let (a, o) = k.centre()?;
        lats.push(format!("{a:.5}"));
        lons.push(format!("{o:.5}"));
    }
    let (lat, lon) = (lats.join(","), lons.join(","));
    Some(match api {
        Api::Forecast => {
            let h = first.hour();
            format!(
                "/v1/forecast?latitude={lat}&longitude={lon}&hourly={HOURLY}&start_hour={h}&end_hour={h}&timezone=GMT"
            )
        }
        Api::Archive => {
            let d = &first.hour()[..10];
            format!(
                "/v1/archive?latitude={lat}&longitude={lon}&hourly={HOURLY}&start_date={d}&end_date={d}&timezone=GMT"
            )
        }
    })
}

#[derive(Debug, Deserialize)]
struct Location {
    hourly: Hourly,
}

#[derive(Debug, Deserialize)]
struct Hourly {
    time: Vec<String>,
    #[serde(default)]
    temperature_2m: Vec<Option<f64>>,
    #[serde(default)]
    relative_humidity_2m: Vec<Option<f64>>,
    #[serde(default)]
    precipitation: Vec<Option<f64>>,
    #[serde(default)]
    weather_code: Vec<Option<f64>>,
    #[serde(default)]
    wind_speed_10m: Vec<Option<f64>>,
}

/// Reads a provider answer for `keys` (in request order); `Err` when it is not Open-Meteo's
/// shape or names a different number of locations (garbage is refused, never half-used).
pub fn parse(api: Api, keys: &[Key], body: &[u8]) -> Result<Vec<Option<Observation>>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("error").and_then(Value::as_bool) == Some(true) {
        return Err(format!("provider error: {}", v["reason"].as_str().unwrap_or("unspecified")));
    }
    let locations: Vec<Location> = match v {
        Value::Array(a) => a.into_iter().map(serde_json::from_value).collect::<Result<_, _>>(),
        one => serde_json::from_value(one).map(|l| vec![l]),
    }
    .map_err(|e| format!("not Open-Meteo's shape: {e}"))?;
    if locations.len() != keys.len() {
        return Err(format!("{} locations answered for {} asked", locations.len(), keys.len()));
    }
    Ok(keys
        .iter()
        .zip(locations)
        .map(|(k, l)| {
            let h = &l.hourly;
            let at = h.time.iter().position(|t| *t == k.hour())?;
            let get = |v: &Vec<Option<f64>>| v.get(at).copied().flatten();
            Some(Observation {
                temperature_c: get(&h.temperature_2m),
                relative_humidity_pct: get(&h.relative_humidity_2m),
                precipitation_mm: get(&h.precipitation),
                weather_code: get(&h.weather_code).map(|c| c as i64),
                wind_speed_kmh: get(&h.wind_speed_10m),
                source: api.source().into(),
            })
        })
        .collect())
}

/// A circuit breaker: `failures` consecutive failed calls open it for `cooldown`; then one
/// probe is let through (half-open) — its success closes it, its failure opens it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    failures: u32,
    cooldown_ms: i64,
    state: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed { failed: u32 },
    Open { until_ms: i64 },
    HalfOpen,
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Breaker {
        Breaker {
            failures: failures.max(1),
            cooldown_ms: cooldown.as_millis() as i64,
            state: BreakerState::Closed { failed: 0 },
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&mut self, now_ms: i64) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen => false,
        }
    }

    pub fn record(&mut self, ok: bool, now_ms: i64) {
        self.state = match (self.state, ok) {
            (_, true) => BreakerState::Closed { failed: 0 },
            (BreakerState::Closed { failed }, false) if failed + 1 < self.failures => {
                BreakerState::Closed { failed: failed + 1 }
            }
            (_, false) => BreakerState::Open { until_ms: now_ms + self.cooldown_ms },
        };
    }

    pub fn name(&self) -> &'static str {
        match self.state {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A token bucket of `per_minute` calls, refilled continuously.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    per_minute: f64,
    tokens: f64,
    at_ms: i64,
}

impl Budget {
    pub fn new(per_minute: u32, now_ms: i64) -> Budget {
        Budget { per_minute: per_minute.max(1) as f64, tokens: per_minute.max(1) as f64, at_ms: now_ms }
    }

    pub fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60_000.0).min(self.per_minute);
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The delay before retry `attempt` (1, 2, …): 200 ms × 2^(attempt−1), ± 50 % jitter from `unit`
/// (a number in [0, 1)).
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let base = 200.0 * f64::from(1u32 << (attempt.clamp(1, 6) - 1));
    Duration::from_millis((base * (0.5 + unit)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> h3o::Resolution {
        h3o::Resolution::Seven
    }

    #[test]
    fn keys_share_a_cell_and_an_hour() {
        let t = 1_784_023_200_000; // 2026-07-14T10:00:00Z
        let a = Key::of(48.8566, 2.3522, t + 1_000, res()).unwrap();
        let b = Key::of(48.8567, 2.3523, t + 3_599_000, res()).unwrap();
        assert_eq!(a, b, "same cell, same hour");
        assert_ne!(a, Key::of(48.8566, 2.3522, t + 3_600_000, res()).unwrap(), "next hour");
        assert_ne!(a, Key::of(52.52, 13.405, t, res()).unwrap(), "another city");
        assert_eq!(a.hour(), "2026-07-14T10:00");
        let (lat, lon) = a.centre().unwrap();
        assert!((lat - 48.8566).abs() < 0.02 && (lon - 2.3522).abs() < 0.02, "{lat},{lon}");
        assert_eq!(a.api(t + 86_400_000), Api::Forecast);
        assert_eq!(a.api(t + 61 * 86_400_000), Api::Archive);
        assert!(Key::of(f64::NAN, 0.0, t, res()).is_none());
    }

    #[test]
    fn requests_and_answers_have_open_meteo_s_shape() {
        let t = 1_784_023_200_000;
        let keys = [Key::of(48.85, 2.35, t, res()).unwrap(), Key::of(52.52, 13.40, t, res()).unwrap()];
        let q = request(Api::Forecast, &keys).unwrap();
        assert!(q.starts_with("/v1/forecast?latitude=48.8"), "{q}");
        assert!(q.contains("&start_hour=2026-07-14T10:00&end_hour=2026-07-14T10:00&timezone=GMT"), "{q}");
        let q = request(Api::Archive, &keys[..1]).unwrap();
        assert!(q.contains("/v1/archive?") && q.contains("start_date=2026-07-14&end_date=2026-07-14"), "{q}");
        let hourly = |temp: f64| {
            serde_json::json!({"latitude": 48.86, "longitude": 2.34, "generationtime_ms": 0.1, "utc_offset_seconds": 0,
                "timezone": "GMT", "elevation": 40.0, "hourly_units": {"time": "iso8601", "temperature_2m": "°C"},
                "hourly": {"time": ["2026-07-14T09:00", "2026-07-14T10:00"], "temperature_2m": [temp - 1.0, temp],
                           "relative_humidity_2m": [50, 55], "precipitation": [0.0, 0.4], "weather_code": [3, 61],
                           "wind_speed_10m": [10.0, 12.5]}})
        };
        let two = serde_json::to_vec(&serde_json::json!([hourly(21.0), hourly(18.0)])).unwrap();
        let got = parse(Api::Forecast, &keys, &two).unwrap();
        assert_eq!(got[0].as_ref().unwrap().temperature_c, Some(21.0));
        assert_eq!(got[1].as_ref().unwrap().weather_code, Some(61));
        assert_eq!(got[1].as_ref().unwrap().source, "open-meteo-forecast");
        let one = serde_json::to_vec(&hourly(5.0)).unwrap();
        assert_eq!(parse(Api::Archive, &keys[..1], &one).unwrap()[0].as_ref().unwrap().precipitation_mm, Some(0.4));
        // (body, why it is refused)
        let bad: [(&[u8], &str); 4] = [
            (b"<html>", "not JSON"),
            (br#"{"error": true, "reason": "Latitude must be in range"}"#, "provider error"),
            (br#"[{"nope": 1}]"#, "shape"),
            (&one, "locations answered"),
        ];
        for (body, why) in bad {
            let e = parse(Api::Forecast, &keys, body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let missing_hour = serde_json::to_vec(&serde_json::json!({"hourly": {"time": ["2026-07-14T11:00"]}})).unwrap();
        assert_eq!(parse(Api::Forecast, &keys[..1], &missing_hour).unwrap(), vec![None]);
    }

    #[test]
    fn the_breaker_opens_probes_and_closes() {
        let mut b = Breaker::new(3, Duration::from_secs(10));
        // (time, call result or None for "asked only", expected allow, state after)
        let steps: [(i64, Option<bool>, bool, &str); 9] = [
            (0, Some(false), true, "closed"),
            (1, Some(false), true, "closed"),
            (2, Some(false), true, "open"),
            (3, None, false, "open"),
            (10_002, Some(false), true, "open"),
            (10_003, None, false, "open"),
            (20_002, None, true, "half_open"),
            (20_003, None, false, "half_open"),
            (20_004, Some(true), false, "closed"),
        ];
        for (at, result, allowed, state) in steps {
            assert_eq!(b.allow(at), allowed, "at {at}");
            if let Some(ok) = result {
                b.record(ok, at);
            }
            assert_eq!(b.name(), state, "at {at}");
        }
        assert!(b.allow(20_005));
    }

    #[test]
    fn the_budget_refills_per_minute_and_backoff_grows_with_jitter() {
        let mut b = Budget::new(2, 0);
        assert!(b.take(0) && b.take(0) && !b.take(0));
        assert!(!b.take(20_000), "a third of a token");
        assert!(b.take(30_000));
        assert!(!b.take(30_001));
        assert_eq!(backoff(1, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(3, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(3, 0.999), Duration::from_millis(1199));
    }
}
