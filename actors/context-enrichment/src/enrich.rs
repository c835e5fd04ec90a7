//! One event's context from the loaded indexes — pure (no I/O, no clock but the event's).
//! Each context group carries its provenance; what cannot be computed is null with a reason in
//! `context.reasons`, never a failed request:
//!
//! - coordinates: `missing_coordinates`, `invalid_latitude` (not a number, NaN, outside
//!   [-90, 90]), `invalid_longitude` (outside [-180, 180]; 180 itself is valid) — the place is
//!   null and time context is computed in UTC without sun or holiday;
//! - time: `missing_time`, `invalid_time` — the time group is null (and the calendar group);
//! - calendar: `missing_subject` (no subject at `/subject`), `no_calendar` (none stored for it).
//!
//! A tenant geofence holding the point wins over the nearest city (`geofence.rs`); enrichment
//! rules run after every group is computed (`rules.rs`, applied by the caller).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::holidays::Holidays;
use crate::place::{self, Places};
use crate::time::{self, DayParts, Zones};

/// Where an event's inputs are (JSON pointers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pointers {
    pub lat: String,
    pub lon: String,
    pub ts: String,
    /// Whose calendar (`/subject`).
    pub subject: String,
    /// Whose geofences (`/tenant`).
    pub tenant: String,
}

impl Default for Pointers {
    fn default() -> Self {
        Pointers {
            lat: "/lat".into(),
            lon: "/lon".into(),
            ts: "/ts".into(),
            subject: "/subject".into(),
            tenant: "/tenant".into(),
        }
    }
}

/// The context groups asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    pub place: bool,
    pub time: bool,
    pub weather: bool,
    pub calendar: bool,
    pub rules: bool,
}

impl Include {
    pub const ALL: Include = Include { place: true, time: true, weather: true, calendar: true, rules: true };
    pub const NONE: Include = Include { place: false, time: false, weather: false, calendar: false, rules: false };
}

/// An event's valid coordinate and time, if it has both.
pub fn position(event: &Value, p: &Pointers) -> Option<(f64, f64, i64)> {
    let (lat, lon) = coordinates(event, p).ok()?;
    let source =
        loom_streams::time::TimeSource::Field { pointer: p.ts.clone(), format: loom_streams::time::TimeFormat::Auto };
    Some((lat, lon, source.extract(event, None).ok()?))
}

/// The weather group of one key's outcome.
pub fn weather_group(key: &crate::weather::Key, outcome: &crate::provider::Outcome) -> Value {
    use crate::provider::Outcome;
    let cell = format!("{:x}", key.cell);
    match outcome {
        Outcome::Found { obs, cached } => json!({
            "temperature_c": obs.temperature_c,
            "relative_humidity_pct": obs.relative_humidity_pct,
            "precipitation_mm": obs.precipitation_mm,
            "weather_code": obs.weather_code,
            "wind_speed_kmh": obs.wind_speed_kmh,
            "hour": format!("{}Z", key.hour()),
            "cell": cell,
            "provenance": {"source": obs.source, "version": null, "cached": cached},
        }),
        Outcome::NoData => json!({"unavailable": "no_data", "hour": format!("{}Z", key.hour()), "cell": cell}),
        Outcome::Unavailable(why) => json!({"unavailable": why, "hour": format!("{}Z", key.hour()), "cell": cell}),
    }
}

/// What the groups are computed from.
pub struct Sources<'a> {
    pub places: Option<&'a Places>,
    pub zones: Option<&'a Zones>,
    pub holidays: Option<&'a Holidays>,
    pub day_parts: DayParts,
    /// Why there is no holiday table, when there is none.
    pub holidays_missing: Option<&'a str>,
    /// Tenant places and geofences.
    pub fences: &'a [std::sync::Arc<crate::geofence::Fence>],
    /// A subject's calendar.
    pub calendars: Option<&'a dyn Fn(&str) -> Option<std::sync::Arc<crate::calendar::Calendar>>>,
    pub calendar_margin: chrono::Duration,
}

fn text_at<'e>(event: &'e Value, pointer: &str) -> Option<&'e str> {
    event.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The place group: a tenant geofence holding the point, else the nearest city (with
/// `geofence: null`).
pub fn place_or_fence(s: &Sources, places: &Places, lat: f64, lon: f64, tenant: Option<&str>) -> Value {
    let mut city = place_group(places, lat, lon);
    if !s.fences.is_empty() {
        let hits = crate::geofence::hits(s.fences, lat, lon, tenant);
        if let Some(g) = crate::geofence::place_group(&hits, Some(&city)) {
            return g;
        }
    }
    city["geofence"] = Value::Null;
    city
}

/// A coordinate read from an event.
pub fn coordinates(event: &Value, p: &Pointers) -> Result<(f64, f64), &'static str> {
    let (lat, lon) = (event.pointer(&p.lat), event.pointer(&p.lon));
    if lat.is_none_or(Value::is_null) && lon.is_none_or(Value::is_null) {
        return Err("missing_coordinates");
    }
    let num = |v: Option<&Value>| v.and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()));
    let lat = num(lat).filter(|x| x.is_finite() && (-90.0..=90.0).contains(x)).ok_or("invalid_latitude")?;
    let lon = num(lon).filter(|x| x.is_finite() && (-180.0..=180.0).contains(x)).ok_or("invalid_longitude")?;
    Ok((lat, lon))
}

fn provenance(source: String) -> Value {
    let version = source.split_once('@').map(|(_, v)| v.to_owned());
    json!({"source": source, "version": version})
}

pub fn place_group(places: &Places, lat: f64, lon: f64) -> Value {
    let p = places.nearest(lat, lon);
    let mut v = json!(p);
    v["provenance"] = provenance(format!("{}@{}", place::SOURCE, place::VERSION));
    v["provenance"]["confidence"] = json!(p.confidence);
    v
}

/// The time group of an instant, at a coordinate when there is one (else in UTC).
pub fn time_group(s: &Sources, at: Option<(f64, f64)>, ms: i64, country: Option<(&str, &str)>) -> Option<Value> {
    let zone = match (at, s.zones) {
        (Some((lat, lon)), Some(z)) => z.zone(lat, lon).to_owned(),
        _ => "Etc/UTC".to_owned(),
    };
    let l = time::local(&zone, ms).or_else(|| time::local("Etc/UTC", ms))?;
    let cc = country.map(|(cc, _)| cc);
    let mut v = json!({
        "tz": l.tz.name(),
        "local": l.local,
        "utc_offset": l.utc_offset,
        "weekday": time::weekday_name(l.weekday),
        "weekend": time::weekend(cc, l.weekday),
        "day_part": time::day_part(l.hour, &s.day_parts),
        "holiday": null,
        "sunrise": null,
        "sunset": null,
        "daylight": null,
    });
    let mut prov = Map::new();
    if let Some(z) = s.zones.filter(|_| at.is_some()) {
        prov.insert("tz".into(), provenance(z.provenance()));
    }
    if let Some((lat, lon)) = at {
        let utc = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)?;
        if let Some(sun) = time::sun(lat, lon, l.date, utc, l.tz) {
            v["sunrise"] = json!(sun.sunrise);
            v["sunset"] = json!(sun.sunset);
            v["daylight"] = json!(sun.daylight);
            if let Some(p) = sun.polar {
                v["polar"] = json!(p);
            }
        }
    }
    match (country, s.holidays) {
        (Some((cc, admin1)), Some(h)) => {
            let found = h.lookup(cc, Some(admin1), &l.date.format("%Y-%m-%d").to_string());
            v["holiday"] = json!(found.holiday);
            let mut p = provenance(h.provenance());
            p["subdivision"] = json!(found.subdivision);
            if let Some(r) = found.reason {
                p["reason"] = json!(r);
            }
            prov.insert("holiday".into(), p);
        }
        (Some(_), None) => {
            prov.insert("holiday".into(), json!({"source": null, "reason": s.holidays_missing}));
        }
        (None, _) => {}
    }
    v["provenance"] = Value::Object(prov);
    Some(v)
}

/// The `context` object of one event.
pub fn context(s: &Sources, event: &Value, p: &Pointers, include: Include) -> Value {
    let mut ctx = Map::new();
    let mut reasons = Map::new();
    let at = match coordinates(event, p) {
        Ok(c) => Some(c),
        Err(r) => {
            reasons.insert("coordinates".into(), json!(r));
            None
        }
    };
    let mut country = None;
    if include.place || include.time {
        if let (Some((lat, lon)), Some(places)) = (at, s.places) {
            let g = place_or_fence(s, places, lat, lon, text_at(event, &p.tenant));
            country = Some((
                g["country_code"].as_str().unwrap_or("").to_owned(),
                g["admin1"].as_str().unwrap_or("").to_owned(),
            ));
            if include.place {
                ctx.insert("place".into(), g);
            }
        } else if include.place {
            ctx.insert("place".into(), Value::Null);
        }
    }
    if include.time || include.calendar {
        let source = loom_streams::time::TimeSource::Field {
            pointer: p.ts.clone(),
            format: loom_streams::time::TimeFormat::Auto,
        };
        match source.extract(event, None) {
            Ok(ms) => {
                if include.time {
                    let c = country.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
                    ctx.insert("time".into(), time_group(s, at, ms, c).unwrap_or(Value::Null));
                }
                if include.calendar {
                    let group = match (text_at(event, &p.subject), s.calendars) {
                        (None, _) => Err("missing_subject"),
                        (Some(subject), Some(find)) => find(subject).ok_or("no_calendar").and_then(|c| {
                            let at =
                                chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).ok_or("invalid_time")?;
                            Ok(c.group(at, s.calendar_margin))
                        }),
                        (Some(_), None) => Err("no_calendar"),
                    };
                    match group {
                        Ok(g) => ctx.insert("calendar".into(), g),
                        Err(r) => {
                            reasons.insert("calendar".into(), json!(r));
                            ctx.insert("calendar".into(), Value::Null)
                        }
                    };
                }
            }
            Err(e) => {
                let code = if matches!(e, loom_streams::time::TimeError::Missing(_)) {
                    "missing_time"
                } else {
                    "invalid_time"
                };
                reasons.insert("time".into(), json!(code));
                if include.time {
                    ctx.insert("time".into(), Value::Null);
                }
                if include.calendar {
                    ctx.insert("calendar".into(), Value::Null);
                }
            }
        }
    }
    if !reasons.is_empty() {
        ctx.insert("reasons".into(), Value::Object(reasons));
    }
    Value::Object(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_checked_with_a_reason() {
        let p = Pointers::default();
        let cases = [
            (json!({"lat": 48.1, "lon": 11.5}), Ok((48.1, 11.5))),
            (json!({"lat": "48.1", "lon": "11.5"}), Ok((48.1, 11.5))),
            (json!({"lat": 90, "lon": 180}), Ok((90.0, 180.0))),
            (json!({"lat": -90, "lon": -180}), Ok((-90.0, -180.0))),
            (json!({"lat": 91, "lon": 0}), Err("invalid_latitude")),
            (json!({"lat": 0, "lon": 180.0001}), Err("invalid_longitude")),
            (json!({"lat": "x", "lon": null}), Err("invalid_latitude")),
            (json!({"lat": "NaN", "lon": 0}), Err("invalid_latitude")),
            (json!({"lat": 1}), Err("invalid_longitude")),
            (json!({}), Err("missing_coordinates")),
            (json!({"lat": null, "lon": null}), Err("missing_coordinates")),
        ];
        for (e, want) in cases {
            assert_eq!(coordinates(&e, &p), want, "{e}");
        }
    }

    #[test]
    fn without_indexes_time_is_utc_and_reasons_are_given() {
        let s = Sources {
            places: None,
            zones: None,
            holidays: None,
            day_parts: [6, 12, 18, 22],
            holidays_missing: None,
            fences: &[],
            calendars: None,
            calendar_margin: chrono::Duration::zero(),
        };
        let both = Include { place: true, time: true, ..Include::NONE };
        let c = context(&s, &json!({"ts": "2026-07-14T10:00:00Z"}), &Pointers::default(), both);
        assert_eq!(c["time"]["tz"], "Etc/UTC");
        assert_eq!(c["time"]["day_part"], "morning");
        assert_eq!(c["time"]["weekday"], "Tuesday");
        assert_eq!(c["place"], Value::Null);
        assert_eq!(c["reasons"]["coordinates"], "missing_coordinates");
        let c = context(&s, &json!({"ts": "not a time"}), &Pointers::default(), both);
        assert_eq!((c["time"].clone(), c["reasons"]["time"].clone()), (Value::Null, json!("invalid_time")));
        let c = context(&s, &json!({"lat": 1, "lon": 2}), &Pointers::default(), both);
        assert_eq!(c["reasons"]["time"], "missing_time");
    }
}
