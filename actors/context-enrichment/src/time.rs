//! Time context — pure computations on a coordinate and an instant: the IANA time zone from
//! the timezone-boundary-builder polygons (`tzf-rs` with tzf-dist's *lite* data: simplified
//! polygons plus a tile pre-index; a point within a few hundred metres of a border may land in
//! the neighbouring zone, and points at sea get the nautical `Etc/GMT±N` zones), local time and
//! UTC offset (`chrono-tz`, IANA rules), weekday and weekend (Saturday–Sunday, or the
//! country's own: Friday–Saturday in much of the Middle East and North Africa, Friday in Iran
//! and Afghanistan), the day part from configurable local hours, and sunrise/sunset for the local
//! date by NOAA's solar calculator (Meeus' low-precision solar coordinates and the equation of
//! time, two passes; zenith 90.833°: the upper limb with standard refraction) — the algorithm
//! `astral` uses, which the `sunrise` crate's simpler equation missed by up to 2 minutes — with
//! polar day and night named when the sun does not rise or set.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

pub const SOURCE: &str = "timezone-boundary-builder";

/// The zone index (≈ 4 MB of compiled-in polygons, built at first use).
pub struct Zones {
    finder: tzf_rs::DefaultFinder,
}

impl Zones {
    pub fn load() -> Zones {
        Zones { finder: tzf_rs::DefaultFinder::new() }
    }

    /// `tzf-dist@<data version>`.
    pub fn provenance(&self) -> String {
        format!("tzf-dist@{}", self.finder.data_version())
    }

    /// The zone name at a valid coordinate.
    pub fn zone(&self, lat: f64, lon: f64) -> &str {
        self.finder.get_tz_name(lon, lat)
    }
}

/// Where the local day parts begin: morning, afternoon, evening, night (hours).
pub type DayParts = [u32; 4];

pub fn day_part(hour: u32, parts: &DayParts) -> &'static str {
    let [m, a, e, n] = *parts;
    if hour < m || hour >= n {
        "night"
    } else if hour < a {
        "morning"
    } else if hour < e {
        "afternoon"
    } else {
        "evening"
    }
}

/// The weekend days of a country (ISO 3166-1 alpha-2), Saturday–Sunday unless listed.
pub fn weekend(country: Option<&str>, day: Weekday) -> bool {
    const FRI_SAT: &[&str] =
        &["AE", "BH", "DZ", "EG", "IL", "IQ", "JO", "KW", "LY", "OM", "QA", "SA", "SD", "SY", "YE", "BD", "MV"];
    const FRI: &[&str] = &["IR", "AF"];
    match country {
        Some(c) if FRI_SAT.contains(&c) => matches!(day, Weekday::Fri | Weekday::Sat),
        Some(c) if FRI.contains(&c) => day == Weekday::Fri,
        Some("NP") => day == Weekday::Sat,
        _ => matches!(day, Weekday::Sat | Weekday::Sun),
    }
}

/// Sunrise, sunset and whether it is light, for a local date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sun {
    pub sunrise: Option<String>,
    pub sunset: Option<String>,
    pub daylight: bool,
    /// `polar_day` or `polar_night` when the sun neither rises nor sets that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polar: Option<&'static str>,
}

/// The zenith of sunrise and sunset: 90° + 16′ (the sun's upper limb) + 34′ (refraction).
const ZENITH: f64 = 90.833;

fn julian_century(date: NaiveDate, minutes: f64) -> f64 {
    let jd = date.num_days_from_ce() as f64 + 1_721_424.5 + minutes / 1440.0;
    (jd - 2_451_545.0) / 36_525.0
}

/// (declination°, equation of time in minutes) at Julian century `t` (NOAA / Meeus).
fn solar_position(t: f64) -> (f64, f64) {
    let l0 = (280.46646 + t * (36_000.769_83 + 0.000_303_2 * t)).rem_euclid(360.0);
    let m = 357.52911 + t * (35_999.050_29 - 0.000_153_7 * t);
    let e = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
    let mr = m.to_radians();
    let c = mr.sin() * (1.914602 - t * (0.004817 + 0.000014 * t))
        + (2.0 * mr).sin() * (0.019993 - 0.000101 * t)
        + (3.0 * mr).sin() * 0.000289;
    let omega = (125.04 - 1934.136 * t).to_radians();
    let lambda = (l0 + c - 0.00569 - 0.00478 * omega.sin()).to_radians();
    let eps0 = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0;
    let eps = (eps0 + 0.00256 * omega.cos()).to_radians();
    let decl = (eps.sin() * lambda.sin()).asin();
    let y = (eps / 2.0).tan().powi(2);
    let (l0r, two_l0) = (l0.to_radians(), 2.0 * l0.to_radians());
    let eq = y * two_l0.sin() - 2.0 * e * mr.sin() + 4.0 * e * y * mr.sin() * two_l0.cos()
        - 0.5 * y * y * (4.0 * l0r).sin()
        - 1.25 * e * e * (2.0 * mr).sin();
    (decl.to_degrees(), 4.0 * eq.to_degrees())
}

/// Sunrise (`rising`) or sunset on a UTC date, or `Err(true)` when the sun stays up all day,
/// `Err(false)` when it stays down.
fn solar_event(lat: f64, lon: f64, date: NaiveDate, rising: bool) -> Result<DateTime<Utc>, bool> {
    let mut minutes = 720.0;
    for _ in 0..2 {
        let (decl, eq) = solar_position(julian_century(date, minutes));
        let (phi, d) = (lat.to_radians(), decl.to_radians());
        let h = (ZENITH.to_radians().cos() - phi.sin() * d.sin()) / (phi.cos() * d.cos());
        if !h.is_finite() || h < -1.0 {
            return Err(true);
        }
        if h > 1.0 {
            return Err(false);
        }
        let ha = h.acos().to_degrees() * if rising { 1.0 } else { -1.0 };
        minutes = 720.0 - 4.0 * (lon + ha) - eq;
    }
    let midnight = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or(false)?;
    Ok(midnight + chrono::Duration::milliseconds((minutes * 60_000.0).round() as i64))
}

/// The event on the *local* date `date` in `tz` (the UTC date is shifted until it lands there).
fn local_event(lat: f64, lon: f64, date: NaiveDate, tz: Tz, rising: bool) -> Result<DateTime<Utc>, bool> {
    let mut utc_date = date;
    for _ in 0..3 {
        let t = solar_event(lat, lon, utc_date, rising)?;
        let local = t.with_timezone(&tz).date_naive();
        match local.cmp(&date) {
            std::cmp::Ordering::Equal => return Ok(t),
            std::cmp::Ordering::Less => utc_date = utc_date.succ_opt().ok_or(false)?,
            std::cmp::Ordering::Greater => utc_date = utc_date.pred_opt().ok_or(false)?,
        }
    }
    solar_event(lat, lon, utc_date, rising)
}

pub fn sun(lat: f64, lon: f64, date: NaiveDate, at: DateTime<Utc>, tz: Tz) -> Option<Sun> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    Some(match (local_event(lat, lon, date, tz, true), local_event(lat, lon, date, tz, false)) {
        (Ok(r), Ok(s)) => {
            let daylight = if r <= s { at >= r && at < s } else { at >= r || at < s };
            Sun { sunrise: Some(local(r)), sunset: Some(local(s)), daylight, polar: None }
        }
        (Err(up), _) | (_, Err(up)) => {
            Sun { sunrise: None, sunset: None, daylight: up, polar: Some(if up { "polar_day" } else { "polar_night" }) }
        }
    })
}

/// Local-time facts of an instant in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    pub tz: Tz,
    pub local: String,
    pub utc_offset: String,
    pub date: NaiveDate,
    pub weekday: Weekday,
    pub hour: u32,
}

pub fn local(tz_name: &str, ms: i64) -> Option<Local> {
    let tz: Tz = tz_name.parse().ok()?;
    let at = Utc.timestamp_millis_opt(ms).single()?;
    let t = at.with_timezone(&tz);
    let secs = t.offset().fix().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let utc_offset = format!("{sign}{:02}:{:02}", secs.abs() / 3600, (secs.abs() % 3600) / 60);
    Some(Local {
        tz,
        local: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        utc_offset,
        date: t.date_naive(),
        weekday: t.weekday(),
        hour: t.hour(),
    })
}

pub fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn zones_local_time_and_day_parts() {
        let z = Zones::load();
        // (lat, lon, zone)
        let cases = [
            (48.8566, 2.3522, "Europe/Paris"),
            (35.6895, 139.6917, "Asia/Tokyo"),
            (-18.1248, 178.4501, "Pacific/Fiji"),
            (64.1466, -21.9426, "Atlantic/Reykjavik"),
            (-54.8019, -68.3030, "America/Argentina/Ushuaia"),
            (40.7128, -74.0060, "America/New_York"),
        ];
        for (lat, lon, want) in cases {
            assert_eq!(z.zone(lat, lon), want, "({lat},{lon})");
        }
        assert!(z.provenance().starts_with("tzf-dist@"));
        let l = local("Europe/Paris", ms("2026-07-14T10:00:00Z")).unwrap();
        assert_eq!((l.utc_offset.as_str(), l.hour, l.weekday), ("+02:00", 12, Weekday::Tue));
        assert_eq!(l.local, "2026-07-14T12:00:00.000+02:00");
        let l = local("America/St_Johns", ms("2026-01-05T12:00:00Z")).unwrap();
        assert_eq!(l.utc_offset, "-03:30");
        assert!(local("Not/AZone", 0).is_none());
        let parts = [6, 12, 18, 22];
        let want = [
            (0, "night"),
            (5, "night"),
            (6, "morning"),
            (11, "morning"),
            (12, "afternoon"),
            (18, "evening"),
            (21, "evening"),
            (22, "night"),
        ];
        for (h, p) in want {
            assert_eq!(day_part(h, &parts), p, "{h}");
        }
        assert!(weekend(Some("FR"), Weekday::Sun) && !weekend(Some("FR"), Weekday::Fri));
        assert!(weekend(Some("SA"), Weekday::Fri) && !weekend(Some("SA"), Weekday::Sun));
        assert!(weekend(None, Weekday::Sat));
    }

    #[test]
    fn sunrise_sunset_and_polar_day_and_night() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
        let noon = Utc.timestamp_millis_opt(ms("2026-06-21T12:00:00Z")).unwrap();
        let s = sun(48.8566, 2.3522, d, noon, paris).unwrap();
        // timeanddate.com: 05:46 and 21:58 CEST
        assert!(s.sunrise.as_deref().unwrap().starts_with("2026-06-21T05:4"), "{s:?}");
        assert!(s.sunset.as_deref().unwrap().starts_with("2026-06-21T21:5"), "{s:?}");
        assert!(s.daylight && s.polar.is_none());
        let midnight = Utc.timestamp_millis_opt(ms("2026-06-21T23:00:00Z")).unwrap();
        assert!(!sun(48.8566, 2.3522, d, midnight, paris).unwrap().daylight);
        let utc: Tz = "UTC".parse().unwrap();
        // Longyearbyen (78.2° N): midnight sun in June, polar night in December.
        let s = sun(78.22, 15.65, d, midnight, utc).unwrap();
        assert_eq!((s.polar, s.daylight), (Some("polar_day"), true), "{s:?}");
        let dec = NaiveDate::from_ymd_opt(2026, 12, 21).unwrap();
        let s = sun(78.22, 15.65, dec, noon, utc).unwrap();
        assert_eq!((s.polar, s.daylight), (Some("polar_night"), false), "{s:?}");
        let s = sun(-78.0, 166.0, dec, noon, utc).unwrap();
        assert_eq!(s.polar, Some("polar_day"), "McMurdo in December: {s:?}");
    }
}
