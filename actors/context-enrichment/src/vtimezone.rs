//! A calendar's VTIMEZONE definitions mapped to IANA zones (pure), so `TZID=Pacific Standard
//! Time` (Outlook, Exchange), `TZID=/mozilla.org/20050126_1/Europe/Berlin` (Thunderbird) or any
//! custom name resolves to a zone chrono-tz can compute in (recurrences need a real zone to
//! follow daylight-saving changes).
//!
//! For each VTIMEZONE, in this order: its TZID if it is an IANA name; an IANA name ending the
//! TZID after a `/` (vendor prefixes); `X-LIC-LOCATION` if it is one; else the IANA zone whose
//! UTC offsets equal the definition's — evaluated from its STANDARD/DAYLIGHT observances
//! (DTSTART, TZOFFSETFROM, TZOFFSETTO, RRULE, RDATE) — on the 1st and 15th of every month of
//! a recent sample year and an hour either side of each of that year's transitions. Zones
//! with the same offsets in that year are interchangeable for it; the first in chrono-tz's
//! order wins, canonical `Area/City` names before aliases. A definition no zone matches is
//! left out (its TZID is then unknown, as without a VTIMEZONE).
//!
//! Bounded against hostile text: only the VTIMEZONEs the events name are resolved, at most
//! [`MAX_ZONES`]; 16 observances each, 64 RDATEs each; only `FREQ=YEARLY` rules are read, and
//! expanded from the year before the asked window; matches are cached by definition.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use icalendar::parser::Component;

/// Observance onsets expanded per evaluation at most.
const MAX_ONSETS: u16 = 500;
/// VTIMEZONEs resolved per calendar (only those its events name), observances read per
/// VTIMEZONE, RDATEs read per observance: a hostile definition stays cheap.
pub const MAX_ZONES: usize = 32;
const MAX_OBSERVANCES: usize = 16;
const MAX_RDATES: usize = 64;

/// A TZID as the zone map keys it.
pub fn key(tzid: &str) -> &str {
    tzid.trim().trim_end_matches(':').trim_end()
}

/// An IANA zone by exact name.
pub fn iana(name: &str) -> Option<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).ok()
}

/// An IANA name ending `name` after a `/`: `/mozilla.org/20050126_1/Europe/Berlin`.
pub fn suffix(name: &str) -> Option<chrono_tz::Tz> {
    name.char_indices().filter(|(_, c)| *c == '/').find_map(|(i, _)| iana(&name[i + 1..]))
}

/// One STANDARD or DAYLIGHT block.
#[derive(Debug, Clone)]
struct Observance {
    /// Its first onset, in the local time before it (as RFC 5545 writes it).
    start: NaiveDateTime,
    from: i32,
    to: i32,
    rule: Option<String>,
    rdates: Vec<NaiveDateTime>,
}

/// `+0100`, `-0530`, `+013045` → seconds east of UTC.
fn utc_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<i32>().ok();
    let secs = if digits.len() == 6 { n(4..6)? } else { 0 };
    Some(sign * (n(0..2)? * 3600 + n(2..4)? * 60 + secs))
}

fn local(v: &str) -> Option<NaiveDateTime> {
    let v = v.trim().trim_end_matches(['Z', 'z']);
    NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(v, "%Y%m%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
}

fn observances(vtz: &Component<'_>) -> Vec<Observance> {
    vtz.components
        .iter()
        .filter(|c| matches!(c.name.as_str(), "STANDARD" | "DAYLIGHT"))
        .take(MAX_OBSERVANCES)
        .filter_map(|c| {
            let prop = |n: &str| c.find_prop(n).map(|p| p.val.as_str().to_owned());
            Some(Observance {
                start: local(&prop("DTSTART")?)?,
                from: utc_offset(&prop("TZOFFSETFROM")?)?,
                to: utc_offset(&prop("TZOFFSETTO")?)?,
                rule: prop("RRULE").filter(|r| !r.trim().is_empty()),
                rdates: c
                    .properties
                    .iter()
                    .filter(|p| p.name.as_str() == "RDATE")
                    .flat_map(|p| p.val.as_str().split(',').filter_map(local).collect::<Vec<_>>())
                    .take(MAX_RDATES)
                    .collect(),
            })
        })
        .collect()
}

/// The onsets (in UTC) of `o` up to `hi`: its DTSTART and RDATEs, and its rule's in `[lo, hi]`.
fn onsets(o: &Observance, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let shift = Duration::seconds(i64::from(o.from));
    let mut out: Vec<DateTime<Utc>> =
        std::iter::once(o.start).chain(o.rdates.iter().copied()).map(|l| l.and_utc() - shift).collect();
    // Observances recur yearly; other rules are not time-zone rules and are ignored. Without a
    // COUNT, the expansion starts a year before the window (same month, day and time), so a
    // rule from 1601 costs a few steps, not four centuries.
    let yearly = o.rule.as_deref().filter(|r| r.to_ascii_uppercase().contains("FREQ=YEARLY"));
    if let Some(rule) = yearly {
        let from_year = (lo + shift).year() - 1;
        let start = if rule.to_ascii_uppercase().contains("COUNT=") || o.start.year() >= from_year {
            o.start
        } else {
            o.start.with_year(from_year).unwrap_or(o.start)
        };
        // Local times computed as if in UTC (the rule counts wall-clock days), then shifted.
        let dt_start = start.and_utc().with_timezone(&rrule::Tz::UTC);
        let set = rrule::RRule::from_str(rule.trim().trim_start_matches("RRULE:"))
            .ok()
            .and_then(|r| r.validate(dt_start).ok())
            .map(|r| rrule::RRuleSet::new(dt_start).rrule(r));
        if let Some(set) = set {
            let after = (lo + shift - Duration::days(1)).with_timezone(&rrule::Tz::UTC);
            let before = (hi + shift + Duration::days(1)).with_timezone(&rrule::Tz::UTC);
            out.extend(
                set.after(after)
                    .before(before)
                    .all(MAX_ONSETS)
                    .dates
                    .into_iter()
                    .map(|d| d.with_timezone(&Utc) - shift),
            );
        }
    }
    // DTSTART and RDATEs however old (the latest before `hi` may be centuries back), rule
    // onsets only inside the window they were expanded for.
    out.retain(|t| *t <= hi);
    out
}

/// The definition's offset at `t`: that of the latest onset at or before it.
fn offset_at(obs: &[Observance], t: DateTime<Utc>) -> Option<i32> {
    let lo = t - Duration::days(800);
    obs.iter()
        .flat_map(|o| onsets(o, lo, t).into_iter().map(move |at| (at, o.to)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, to)| to)
}

/// Definitions already matched (the same Outlook zones recur in every calendar, and a stored
/// calendar is compiled again on every node and every write of the book).
static MATCHED: std::sync::LazyLock<std::sync::Mutex<HashMap<u64, Option<chrono_tz::Tz>>>> =
    std::sync::LazyLock::new(Default::default);
const MAX_MATCHED: usize = 4096;

fn matching_cached(obs: &[Observance]) -> Option<chrono_tz::Tz> {
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{obs:?}").hash(&mut h);
        h.finish()
    };
    if let Some(hit) = MATCHED.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return *hit;
    }
    let found = matching(obs);
    let mut cache = MATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= MAX_MATCHED {
        cache.clear();
    }
    cache.insert(key, found);
    found
}

/// The IANA zone whose offsets equal the definition's in a recent sample year.
fn matching(obs: &[Observance]) -> Option<chrono_tz::Tz> {
    let year = obs.iter().map(|o| o.start.year()).max()?.clamp(2024, 2100);
    let at = |m: u32, d: u32| Utc.with_ymd_and_hms(year, m, d, 12, 0, 0).single();
    let mut samples: Vec<DateTime<Utc>> = (1..=12).flat_map(|m| [at(m, 1), at(m, 15)]).flatten().collect();
    let (lo, hi) = (at(1, 1)?, at(12, 31)?);
    for o in obs {
        for t in onsets(o, lo, hi).into_iter().filter(|t| *t >= lo) {
            samples.extend([t - Duration::hours(1), t + Duration::hours(1)]);
        }
    }
    let want: Vec<i32> = samples.iter().map(|t| offset_at(obs, *t)).collect::<Option<_>>()?;
    let fits = |tz: &chrono_tz::Tz| {
        samples
            .iter()
            .zip(&want)
            .all(|(t, w)| tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc() == *w)
    };
    let canonical = |tz: &&chrono_tz::Tz| {
        let n = tz.name();
        n.contains('/')
            && !n.starts_with("Etc/")
            && n.split('/').next().is_some_and(|a| a.len() > 2 && a != "US" && a != "SystemV")
    };
    chrono_tz::TZ_VARIANTS
        .iter()
        .filter(canonical)
        .find(|tz| fits(tz))
        .or_else(|| chrono_tz::TZ_VARIANTS.iter().find(|tz| fits(tz)))
        .copied()
}

/// The zones a calendar's VTIMEZONE components define, by TZID — only for the TZIDs in
/// `wanted` (those its events name, keyed by [`key`]), at most [`MAX_ZONES`].
pub fn zones(
    components: &[Component<'_>],
    wanted: &std::collections::HashSet<String>,
) -> HashMap<String, chrono_tz::Tz> {
    let mut out = HashMap::new();
    for vtz in components.iter().filter(|c| c.name.as_str() == "VTIMEZONE") {
        // Keyed as `calendar.rs` looks names up: trimmed, a stray trailing ':' dropped (seen in
        // Outlook exports: `TZID:Pacific Standard Time:`).
        let Some(tzid) = vtz.find_prop("TZID").map(|p| key(p.val.as_str()).to_owned()) else { continue };
        if !wanted.contains(&tzid) || out.contains_key(&tzid) {
            continue;
        }
        if out.len() >= MAX_ZONES {
            break;
        }
        let named = iana(&tzid).or_else(|| suffix(&tzid));
        let lic = || vtz.find_prop("X-LIC-LOCATION").and_then(|p| iana(p.val.as_str().trim()));
        if let Some(tz) = named.or_else(lic).or_else(|| matching_cached(&observances(vtz))) {
            out.insert(tzid, tz);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vtimezone(body: &str) -> HashMap<String, chrono_tz::Tz> {
        let text = format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n");
        let unfolded = icalendar::parser::unfold(&text);
        let cal = icalendar::parser::read_calendar(&unfolded).unwrap();
        let wanted =
            cal.components.iter().filter_map(|c| c.find_prop("TZID")).map(|p| key(p.val.as_str()).to_owned()).collect();
        zones(&cal.components, &wanted)
    }

    const PACIFIC: &str = "BEGIN:VTIMEZONE\r\nTZID:Pacific Standard Time\r\n\
BEGIN:STANDARD\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:-0700\r\nTZOFFSETTO:-0800\r\n\
RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:-0800\r\nTZOFFSETTO:-0700\r\n\
RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n";

    const W_EUROPE: &str = "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n\
BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n";

    const INDIA: &str = "BEGIN:VTIMEZONE\r\nTZID:India Standard Time\r\nBEGIN:STANDARD\r\n\
DTSTART:16010101T000000\r\nTZOFFSETFROM:+0530\r\nTZOFFSETTO:+0530\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

    /// The zone a definition maps to computes the same instants as the definition's own rules.
    #[test]
    fn windows_and_vendor_names_map_to_zones_with_the_same_offsets() {
        let cases: [(&str, &str, &[(&str, i32)]); 4] = [
            (
                PACIFIC,
                "Pacific Standard Time",
                &[
                    ("2026-01-15T12:00:00Z", -8),
                    ("2026-07-01T12:00:00Z", -7),
                    ("2026-03-08T09:59:59Z", -8),
                    ("2026-03-08T10:00:00Z", -7),
                    ("2026-11-01T08:59:59Z", -7),
                    ("2026-11-01T09:00:00Z", -8),
                ],
            ),
            (
                W_EUROPE,
                "W. Europe Standard Time",
                &[
                    ("2026-01-15T12:00:00Z", 1),
                    ("2026-03-29T00:59:59Z", 1),
                    ("2026-03-29T01:00:00Z", 2),
                    ("2026-10-25T00:59:59Z", 2),
                    ("2026-10-25T01:00:00Z", 1),
                ],
            ),
            (INDIA, "India Standard Time", &[("2026-06-01T00:00:00Z", 5)]),
            (
                "BEGIN:VTIMEZONE\r\nTZID:/mozilla.org/20050126_1/Europe/Berlin\r\nEND:VTIMEZONE\r\n",
                "/mozilla.org/20050126_1/Europe/Berlin",
                &[("2026-07-01T00:00:00Z", 2)],
            ),
        ];
        for (body, tzid, checks) in cases {
            let z = vtimezone(body);
            let tz = z.get(tzid).copied().unwrap_or_else(|| panic!("{tzid} maps to a zone"));
            for (t, hours) in checks {
                let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
                let got = tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc();
                let want = if tzid.starts_with("India") { 5 * 3600 + 1800 } else { hours * 3600 };
                assert_eq!(got, want, "{tzid} ({}) at {t}", tz.name());
            }
        }
    }

    #[test]
    fn names_prefixes_and_garbage() {
        assert_eq!(suffix("/mozilla.org/20050126_1/America/New_York").map(|t| t.name()), Some("America/New_York"));
        assert_eq!(suffix("Pacific Standard Time"), None);
        let cases = [
            ("+0100", Some(3600)),
            ("-0530", Some(-19800)),
            ("+013045", Some(5445)),
            ("0100", None),
            ("+1", None),
            ("+01:00", None),
        ];
        for (s, want) in cases {
            assert_eq!(utc_offset(s), want, "{s}");
        }
        // A definition without usable observances maps to nothing (its TZID stays unknown).
        let z = vtimezone(
            "BEGIN:VTIMEZONE\r\nTZID:Nowhere\r\nBEGIN:STANDARD\r\nDTSTART:x\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n",
        );
        assert!(z.is_empty());
        // A hostile definition (a secondly "observance" from 1601, many RDATEs) stays cheap: the
        // rule is not a yearly time-zone rule and is ignored, RDATEs are capped.
        let rdates: Vec<String> = (0..5000).map(|i| format!("{}0101T000000", 1700 + i % 300)).collect();
        let hostile = format!(
            "BEGIN:VTIMEZONE\r\nTZID:Hostile\r\nBEGIN:STANDARD\r\nDTSTART:16010101T000000\r\nTZOFFSETFROM:+0000\r\n\
             TZOFFSETTO:+0000\r\nRRULE:FREQ=SECONDLY\r\nRDATE:{}\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n",
            rdates.join(",")
        );
        let started = std::time::Instant::now();
        let z = vtimezone(&hostile);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(
            z.get("Hostile").is_some_and(|t| t
                .offset_from_utc_datetime(&Utc::now().naive_utc())
                .fix()
                .local_minus_utc()
                == 0)
        );
        // X-LIC-LOCATION names the zone.
        let z = vtimezone("BEGIN:VTIMEZONE\r\nTZID:Custom\r\nX-LIC-LOCATION:Asia/Tokyo\r\nEND:VTIMEZONE\r\n");
        assert_eq!(z.get("Custom").map(|t| t.name()), Some("Asia/Tokyo"));
    }
}
