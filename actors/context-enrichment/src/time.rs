//! Time context — pure computations on a coordinate and an instant: the IANA time zone from
//! the timezone-boundary-builder polygons (`tzf-rs` with tzf-dist's *lite* data: simplified
//! polygons plus a tile pre-index; a point within a few hundred metres of a border may land in
//! the neighbouring zone, and points at sea get the nautical `Etc/GMT±N` zones), local time and
//! UTC offset (`chrono-tz`, IANA rules), weekday and weekend (Saturday–Sunday, or the
//! country's own: Friday–Saturday in much of the Middle East and North Africa, Friday in Iran
//! and Afghanistan), the day part from configurable local hours, and sunrise/sunset for the local
//! date (`sunrise`, NOAA's solar equation, upper limb with refraction) — with polar day and
//! night named when the sun does not rise or set.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;
use sunrise::{Coordinates, SolarDay, SolarEvent};

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

/// The sun's declination (degrees) on a day of the year — Cooper's approximation, enough to tell
/// polar day from polar night.
fn declination(day_of_year: u32) -> f64 {
    -23.44 * (360.0 / 365.0 * (day_of_year as f64 + 10.0)).to_radians().cos()
}

pub fn sun(lat: f64, lon: f64, date: NaiveDate, at: DateTime<Utc>, tz: Tz) -> Option<Sun> {
    let day = SolarDay::new(Coordinates::new(lat, lon)?, date);
    let rise = day.event_time(SolarEvent::Sunrise);
    let set = day.event_time(SolarEvent::Sunset);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    Some(match (rise, set) {
        (Some(r), Some(s)) => {
            let daylight = if r <= s { at >= r && at < s } else { at >= r || at < s };
            Sun { sunrise: Some(local(r)), sunset: Some(local(s)), daylight, polar: None }
        }
        _ => {
            // Noon altitude: 90° − |lat − δ|; above the horizon (with refraction) all day → polar day.
            let noon = 90.0 - (lat - declination(date.ordinal())).abs();
            let polar = if noon > -0.833 { "polar_day" } else { "polar_night" };
            Sun { sunrise: rise.map(local), sunset: set.map(local), daylight: polar == "polar_day", polar: Some(polar) }
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
