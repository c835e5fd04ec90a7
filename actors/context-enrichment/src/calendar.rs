//! Calendars (`PUT /calendars/{subject}`): iCalendar text (RFC 5545) parsed once when stored
//! (the `icalendar` crate's parser), its VEVENTs expanded per lookup only within the asked
//! window (the `rrule` crate, with its iteration limits). Pure.
//!
//! What is read of each VEVENT: DTSTART (UTC `…Z`, `TZID=`, floating, or `VALUE=DATE` for
//! all-day events), DTEND or DURATION (default: one day for all-day events, zero otherwise; an
//! end before the start reads as the two swapped), RRULE (empty ones and COUNT=0 add no
//! instances, a negative COUNT is dropped), EXDATE and RDATE (several properties, comma lists), RECURRENCE-ID (the override
//! replaces the master's instance at that time; with `RANGE=THISANDFUTURE` its shift and length
//! apply to every later instance), SEQUENCE (per UID the master with the highest counts, per
//! recurrence id the override with the highest; an override with its own RRULE and a lower
//! SEQUENCE than the master is dropped when the master no longer has its instance, and any
//! override of an EXDATE'd instance is), STATUS:CANCELLED (skipped: a cancelled meeting is not
//! context), SUMMARY, LOCATION, UID. A TZID is an IANA name or one the calendar's VTIMEZONE
//! maps to an IANA zone (`vtimezone.rs`: Windows names, vendor prefixes); an unknown TZID is
//! refused with the event's UID named. Floating times and dates are in the calendar's time zone
//! (`?tz=` when stored, else X-WR-TIMEZONE, else UTC). DTSTART is the first instance unless it
//! lies after the rules' last UNTIL. UNTIL is normalised to UTC as RFC 5545 requires with a
//! zoned DTSTART. These rules follow recurring-ical-events (PyPI), the oracle the suite
//! compares expansions with (`tests/tests/calendar_oracle.rs`). Limits: [`MAX_ICS_BYTES`] of text,
//! [`MAX_EVENTS`] VEVENTs, nesting of BEGIN blocks at most 8 deep (the parser is recursive), at
//! most [`MAX_INSTANCES`] instances per lookup.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use icalendar::parser::{Component, Property};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Bytes of iCalendar text per calendar.
pub const MAX_ICS_BYTES: usize = 1024 * 1024;
/// VEVENTs per calendar.
pub const MAX_EVENTS: usize = 10_000;
/// Calendars per cluster.
pub const MAX_CALENDARS: usize = 2_000;
/// Instances one lookup expands at most.
pub const MAX_INSTANCES: u16 = 1_000;
/// Events attached to one enriched event at most.
pub const MAX_ATTACHED: usize = 50;

/// A calendar as stored: the subject it belongs to, its text and its floating-time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub subject: String,
    pub ics: String,
    /// The zone of floating times and all-day dates (IANA name).
    pub tz: String,
}

/// Why a calendar is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CalendarError(pub String);

#[derive(Debug, Clone)]
enum Recurrence {
    Once,
    Rule(Box<rrule::RRuleSet>),
}

#[derive(Debug, Clone)]
struct VEvent {
    uid: String,
    summary: Option<String>,
    location: Option<String>,
    all_day: bool,
    start: DateTime<Utc>,
    duration: Duration,
    /// Added to every rule instance (a DTEND before DTSTART: the two read swapped).
    shift: Duration,
    recurrence: Recurrence,
    /// Instance starts replaced by RECURRENCE-ID overrides of the same UID.
    overridden: HashSet<i64>,
    /// RANGE=THISANDFUTURE overrides: (recurrence id, shift, duration) for the instances after
    /// the id, sorted by id.
    future: Vec<(i64, Duration, Duration)>,
}

impl VEvent {
    /// Whether the event has an instance starting at `at` (unix seconds), EXDATEs applied.
    fn produces(&self, at: i64) -> bool {
        match &self.recurrence {
            Recurrence::Once => self.start.timestamp() == at,
            Recurrence::Rule(set) => {
                let tz = set.get_dt_start().timezone();
                let t = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
                let (after, before) =
                    ((t - Duration::seconds(1)).with_timezone(&tz), (t + Duration::seconds(1)).with_timezone(&tz));
                set.as_ref().clone().after(after).before(before).all(2).dates.iter().any(|d| d.timestamp() == at)
            }
        }
    }

    /// The shift and length of the rule instance that starts at `at` before shifting.
    fn instance_at(&self, at: i64) -> (Duration, Duration) {
        self.future.iter().rev().find(|f| f.0 < at).map_or((self.shift, self.duration), |f| (f.1, f.2))
    }
}

/// A parsed calendar.
#[derive(Debug)]
pub struct Calendar {
    pub subject: String,
    pub version: i32,
    pub tz: chrono_tz::Tz,
    events: Vec<VEvent>,
}

/// One instance overlapping a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub uid: String,
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub start: String,
    pub end: String,
    pub all_day: bool,
    pub recurring: bool,
}

pub fn subject_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c.is_control() || c == '/')
}

fn zone(name: &str) -> Option<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).ok()
}

/// The local time's instant, earliest on a fold and shifted past a gap (RFC 5545 §3.3.5).
fn resolve(tz: chrono_tz::Tz, t: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => d.with_timezone(&Utc),
        chrono::LocalResult::None => {
            let later = t + Duration::hours(1);
            tz.from_local_datetime(&later).earliest().map_or_else(|| t.and_utc(), |d| d.with_timezone(&Utc))
        }
    }
}

fn param<'a>(p: &'a Property<'_>, key: &str) -> Option<&'a str> {
    p.params.iter().find(|x| x.key.as_str().eq_ignore_ascii_case(key)).and_then(|x| x.val.as_ref()).map(|v| v.as_str())
}

/// A date or date-time value: (local time, its zone, whether it is a date).
#[derive(Debug, Clone, Copy)]
enum When {
    Utc(NaiveDateTime),
    Zoned(NaiveDateTime, chrono_tz::Tz),
    Floating(NaiveDateTime),
    Date(NaiveDate),
}

impl When {
    fn instant(self, floating: chrono_tz::Tz) -> DateTime<Utc> {
        match self {
            When::Utc(t) => t.and_utc(),
            When::Zoned(t, tz) => resolve(tz, t),
            When::Floating(t) => resolve(floating, t),
            When::Date(d) => resolve(floating, d.and_hms_opt(0, 0, 0).unwrap_or_default()),
        }
    }

    /// The date as written (before any zone conversion).
    fn local_date(self) -> NaiveDate {
        match self {
            When::Utc(t) | When::Zoned(t, _) | When::Floating(t) => t.date(),
            When::Date(d) => d,
        }
    }

    /// As rrule wants DTSTART: in its zone (floating and dates in the calendar's).
    fn zoned(self, floating: chrono_tz::Tz) -> DateTime<rrule::Tz> {
        let tz = match self {
            When::Utc(_) => chrono_tz::UTC,
            When::Zoned(_, tz) => tz,
            When::Floating(_) | When::Date(_) => floating,
        };
        self.instant(floating).with_timezone(&rrule::Tz::Tz(tz))
    }
}

/// TZIDs a calendar's VTIMEZONEs define, mapped to IANA zones (`vtimezone.rs`).
type Zones = HashMap<String, chrono_tz::Tz>;

fn parse_value(v: &str, tzid: Option<&str>, date: bool, zones: &Zones) -> Result<When, String> {
    let v = v.trim();
    if date || (v.len() == 8 && v.chars().all(|c| c.is_ascii_digit())) {
        return NaiveDate::parse_from_str(v, "%Y%m%d").map(When::Date).map_err(|_| format!("'{v}' is not a DATE"));
    }
    let (text, utc) = match v.strip_suffix('Z').or_else(|| v.strip_suffix('z')) {
        Some(t) => (t, true),
        None => (v, false),
    };
    let t = NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").map_err(|_| format!("'{v}' is not a DATE-TIME"))?;
    Ok(match (utc, tzid) {
        (true, _) => When::Utc(t),
        (false, Some(name)) => {
            let tz = zone(name)
                .or_else(|| zones.get(crate::vtimezone::key(name)).copied())
                .or_else(|| crate::vtimezone::suffix(name));
            When::Zoned(
                t,
                tz.ok_or_else(|| {
                    format!("unknown TZID '{name}' (not an IANA name, and no VTIMEZONE of it maps to one)")
                })?,
            )
        }
        (false, None) => When::Floating(t),
    })
}

fn values(p: &Property<'_>, zones: &Zones) -> Result<Vec<When>, String> {
    let date = param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    let period = param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("PERIOD"));
    p.val
        .as_str()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = if period { s.split('/').next().unwrap_or(s) } else { s };
            parse_value(s, param(p, "TZID"), date, zones)
        })
        .collect()
}

fn when_of(p: &Property<'_>, zones: &Zones) -> Result<When, String> {
    values(p, zones)?.into_iter().next().ok_or_else(|| format!("{} has no value", p.name.as_str()))
}

/// An ISO 8601 / RFC 5545 duration (`P1D`, `PT1H30M`, `-PT15M`, `P2W`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let s = s.strip_prefix('P')?;
    let (mut total, mut num, mut in_time, mut any) = (0i64, String::new(), false, false);
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' if !in_time && num.is_empty() => in_time = true,
            'W' | 'D' | 'H' | 'M' | 'S' => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                any = true;
                total += n * match (c, in_time) {
                    ('W', false) => 7 * 86_400,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
    (any && num.is_empty()).then(|| Duration::seconds(if neg { -total } else { total }))
}

/// RRULE text with UNTIL in UTC (dates end-of-day in the calendar's zone, floating in it),
/// and that UNTIL; `None` for a rule with no instances (COUNT=0).
fn normalise_rrule(rule: &str, floating: chrono_tz::Tz) -> Result<Option<(String, Option<DateTime<Utc>>)>, String> {
    let (mut parts, mut until) = (Vec::new(), None);
    for part in rule.trim().trim_start_matches("RRULE:").split(';').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("UNTIL") => {
                let at = match parse_value(v, None, false, &Zones::new())? {
                    When::Date(d) => resolve(floating, d.and_hms_opt(23, 59, 59).unwrap_or_default()),
                    other => other.instant(floating),
                };
                until = Some(at);
                parts.push(format!("UNTIL={}", at.format("%Y%m%dT%H%M%SZ")));
            }
            // A negative COUNT (seen in exports) is dropped, as recurring-ical-events does; a
            // COUNT of 0 leaves the rule without instances.
            Some((k, v)) if k.eq_ignore_ascii_case("COUNT") && v.trim().parse::<i64>().is_ok_and(|n| n < 0) => {}
            Some((k, v)) if k.eq_ignore_ascii_case("COUNT") && v.trim() == "0" => return Ok(None),
            _ => parts.push(part.to_owned()),
        }
    }
    Ok(Some((parts.join(";"), until)))
}

/// A VEVENT's start and length: DTEND or DURATION (default: a day for all-day events, zero
/// otherwise). An end before the start reads as the two swapped, as recurring-ical-events does.
fn span(
    c: &Component<'_>,
    zones: &Zones,
    tz: chrono_tz::Tz,
) -> Result<(DateTime<Utc>, Duration), (&'static str, String)> {
    let dtstart = c.find_prop("DTSTART").ok_or(("DTSTART", "missing".to_owned()))?;
    let sw = when_of(dtstart, zones).map_err(|m| ("DTSTART", m))?;
    let start = sw.instant(tz);
    if let Some(end) = c.find_prop("DTEND") {
        let end = when_of(end, zones).map_err(|m| ("DTEND", m))?.instant(tz);
        return Ok(if end < start { (end, start - end) } else { (start, end - start) });
    }
    if let Some(d) = c.find_prop("DURATION") {
        let d = parse_duration(d.val.as_str())
            .ok_or_else(|| ("DURATION", format!("'{}' is not a duration", d.val.as_str())))?;
        return Ok(if d < Duration::zero() { (start + d, -d) } else { (start, d) });
    }
    Ok((start, if matches!(sw, When::Date(_)) { Duration::days(1) } else { Duration::zero() }))
}

fn text(c: &Component<'_>, name: &str) -> Option<String> {
    c.find_prop(name).map(|p| p.val.clone().unescape_text().as_str().chars().take(512).collect())
}

/// The deepest BEGIN nesting in the text (checked before the recursive parser runs).
fn nesting(ics: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for line in ics.lines() {
        // Bytes, not str slices: byte 6 of a line may fall inside a multi-byte character.
        let l = line.trim_start().as_bytes();
        if l.get(..6).is_some_and(|b| b.eq_ignore_ascii_case(b"BEGIN:")) {
            depth += 1;
            max = max.max(depth);
        } else if l.get(..4).is_some_and(|b| b.eq_ignore_ascii_case(b"END:")) {
            depth = depth.saturating_sub(1);
        }
    }
    max
}

/// The zone floating times are in: the one asked for, else X-WR-TIMEZONE, else UTC.
pub fn default_zone(ics: &str, asked: Option<&str>) -> Result<String, CalendarError> {
    if let Some(z) = asked {
        return zone(z).map(|z| z.name().to_owned()).ok_or_else(|| CalendarError(format!("unknown time zone '{z}'")));
    }
    let wr = ics.lines().find_map(|l| l.strip_prefix("X-WR-TIMEZONE:")).map(str::trim);
    Ok(wr.and_then(zone).map_or_else(|| "UTC".to_owned(), |z| z.name().to_owned()))
}

pub fn compile(spec: &CalendarSpec, version: i32) -> Result<Calendar, CalendarError> {
    let err = |m: String| CalendarError(m);
    if !subject_ok(&spec.subject) {
        return Err(err("a subject is 1-256 characters, no '/' or control characters".into()));
    }
    if spec.ics.len() > MAX_ICS_BYTES {
        return Err(err(format!("at most {MAX_ICS_BYTES} bytes of iCalendar text")));
    }
    let tz = zone(&spec.tz).ok_or_else(|| err(format!("unknown time zone '{}'", spec.tz)))?;
    if nesting(&spec.ics) > 8 {
        return Err(err("BEGIN blocks nested more than 8 deep".into()));
    }
    let unfolded = icalendar::parser::unfold(&spec.ics);
    let cal = icalendar::parser::read_calendar(&unfolded).map_err(|e| {
        let first: String = e.lines().take(3).collect::<Vec<_>>().join(" ").chars().take(300).collect();
        err(format!("not iCalendar text: {first}"))
    })?;
    let vevents: Vec<&Component<'_>> = cal.components.iter().filter(|c| c.name.as_str() == "VEVENT").collect();
    if vevents.len() > MAX_EVENTS {
        return Err(err(format!("at most {MAX_EVENTS} VEVENTs per calendar")));
    }
    if cal.components.is_empty() && cal.properties.is_empty() {
        return Err(err("not iCalendar text: no VCALENDAR or VEVENT".into()));
    }
    // The TZIDs the events name: only their VTIMEZONEs are resolved.
    let wanted: HashSet<String> = vevents
        .iter()
        .flat_map(|c| c.properties.iter())
        .filter_map(|p| param(p, "TZID"))
        .filter(|t| zone(t).is_none())
        .map(|t| crate::vtimezone::key(t).to_owned())
        .collect();
    let zones = crate::vtimezone::zones(&cal.components, &wanted);
    let sequence = |c: &Component<'_>| text(c, "SEQUENCE").and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(0);
    let uid_of = |i: usize, c: &Component<'_>| text(c, "UID").unwrap_or_else(|| format!("#{i}"));
    // Which VEVENTs count (RFC 5546's SEQUENCE, as recurring-ical-events reads it): per UID
    // the master with the highest SEQUENCE, per (UID, RECURRENCE-ID) the override with the
    // highest — the first of equals.
    let mut masters: HashMap<String, (usize, i64)> = HashMap::new();
    // Overrides by (UID, instant of the recurrence id); each also knows the id's written date,
    // which is what matches an all-day master's instance (an Outlook all-day series names its
    // instances `RECURRENCE-ID;TZID=…:20200416T000000`).
    let mut overrides: HashMap<(String, i64), (usize, i64)> = HashMap::new();
    let mut rid_dates: HashMap<usize, i64> = HashMap::new();
    for (i, c) in vevents.iter().enumerate() {
        let (uid, seq) = (uid_of(i, c), sequence(c));
        let slot = match c.find_prop("RECURRENCE-ID") {
            Some(rid) => {
                let at = when_of(rid, &zones).map_err(|m| err(format!("VEVENT {uid}: RECURRENCE-ID: {m}")))?;
                rid_dates.insert(i, When::Date(at.local_date()).instant(tz).timestamp());
                overrides.entry((uid, at.instant(tz).timestamp())).or_insert((i, seq))
            }
            None => masters.entry(uid).or_insert((i, seq)),
        };
        if seq > slot.1 {
            *slot = (i, seq);
        }
    }
    let mut events: Vec<VEvent> = Vec::with_capacity(vevents.len());
    // Masters first, so overrides can be checked against them.
    let mut master_of: HashMap<String, (usize, i64, HashSet<i64>)> = HashMap::new();
    let mut order: Vec<(usize, Option<i64>)> = masters.values().map(|(i, _)| (*i, None)).collect();
    order.sort_unstable();
    let mut kept_overrides: Vec<(usize, i64)> = overrides.iter().map(|((_, at), (i, _))| (*i, *at)).collect();
    kept_overrides.sort_unstable();
    order.extend(kept_overrides.into_iter().map(|(i, at)| (i, Some(at))));
    for (i, rid_at) in order {
        let c = vevents[i];
        let uid = uid_of(i, c);
        let fail = |field: &str, m: String| err(format!("VEVENT {uid}: {field}: {m}"));
        let cancelled = text(c, "STATUS").is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"));
        if let Some(at) = rid_at
            && let Some((m, master_seq, exdates)) = master_of.get(&uid)
        {
            let at = if events[*m].all_day { rid_dates.get(&i).copied().unwrap_or(at) } else { at };
            let stale = c.find_prop("RRULE").is_some() && sequence(c) < *master_seq && !events[*m].produces(at);
            if exdates.contains(&at) || stale {
                continue; // an override of an instance the newer master no longer has
            }
            let this_and_future = c
                .find_prop("RECURRENCE-ID")
                .and_then(|p| param(p, "RANGE"))
                .is_some_and(|r| r.eq_ignore_ascii_case("THISANDFUTURE"));
            // Cancelled or not, the override replaces the master's instance at `at`.
            events[*m].overridden.insert(at);
            if this_and_future && !cancelled {
                let (start, duration) = span(c, &zones, tz).map_err(|(f, m)| fail(f, m))?;
                let rid = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
                events[*m].future.push((at, start - rid, duration));
                events[*m].future.sort_by_key(|f| f.0);
            }
        }
        // Cancelled: skipped (a cancelled override removed its instance above).
        if cancelled {
            continue;
        }
        let Some(dtstart) = c.find_prop("DTSTART") else { return Err(fail("DTSTART", "missing".into())) };
        let start_when = when_of(dtstart, &zones).map_err(|m| fail("DTSTART", m))?;
        let all_day = matches!(start_when, When::Date(_));
        let (start, duration) = span(c, &zones, tz).map_err(|(f, m)| fail(f, m))?;
        let rules: Vec<&Property<'_>> =
            c.properties.iter().filter(|p| p.name.as_str() == "RRULE" && !p.val.as_str().trim().is_empty()).collect();
        let rdates: Vec<&Property<'_>> = c.properties.iter().filter(|p| p.name.as_str() == "RDATE").collect();
        let mut exdates = HashSet::new();
        let recurrence = if rid_at.is_some() || (rules.is_empty() && rdates.is_empty()) {
            Recurrence::Once
        } else {
            let dt_start = start_when.zoned(tz);
            let mut set = rrule::RRuleSet::new(dt_start);
            let mut last_until: Option<DateTime<Utc>> = None;
            for r in rules {
                // A rule with no instances (COUNT of 0 or less) adds none.
                let Some((text, until)) = normalise_rrule(r.val.as_str(), tz).map_err(|m| fail("RRULE", m))? else {
                    continue;
                };
                last_until = last_until.max(until);
                let rule = rrule::RRule::from_str(&text).map_err(|e| fail("RRULE", e.to_string()))?;
                match rule.validate(dt_start) {
                    Ok(v) => set = set.rrule(v),
                    // UNTIL before DTSTART: the rule has no instances.
                    Err(rrule::RRuleError::ValidationError(rrule::ValidationError::UntilBeforeStart { .. })) => {}
                    Err(e) => return Err(fail("RRULE", e.to_string())),
                }
            }
            // DTSTART is the first instance (RFC 5545 §3.8.5.3) even when the rule would not
            // produce it — unless it lies after the last UNTIL (as recurring-ical-events reads it).
            if last_until.is_none_or(|u| dt_start.with_timezone(&Utc) <= u) {
                set = set.rdate(dt_start);
            }
            for p in rdates {
                for w in values(p, &zones).map_err(|m| fail("RDATE", m))? {
                    set = set.rdate(w.instant(tz).with_timezone(&dt_start.timezone()));
                }
            }
            for p in c.properties.iter().filter(|p| p.name.as_str() == "EXDATE") {
                for w in values(p, &zones).map_err(|m| fail("EXDATE", m))? {
                    let at = w.instant(tz);
                    exdates.insert(at.timestamp());
                    set = set.exdate(at.with_timezone(&dt_start.timezone()));
                }
            }
            Recurrence::Rule(Box::new(set))
        };
        if rid_at.is_none() {
            master_of.insert(uid.clone(), (events.len(), sequence(c), exdates));
        }
        events.push(VEvent {
            uid,
            summary: text(c, "SUMMARY"),
            location: text(c, "LOCATION"),
            all_day,
            start,
            duration,
            shift: start - start_when.instant(tz),
            recurrence,
            overridden: HashSet::new(),
            future: Vec::new(),
        });
    }
    Ok(Calendar { subject: spec.subject.clone(), version, tz, events })
}

fn format_instant(t: DateTime<Utc>, all_day: bool, tz: chrono_tz::Tz) -> String {
    if all_day {
        t.with_timezone(&tz).format("%Y-%m-%d").to_string()
    } else {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

/// What a lookup found, and whether it hit the instance limit.
#[derive(Debug, Default)]
pub struct Found {
    pub instances: Vec<Instance>,
    pub limited: bool,
}

impl Calendar {
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// The instances overlapping `[from, to]` (an instant window when `from == to`), sorted by
    /// start then UID, at most `max`.
    pub fn overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>, max: usize) -> Found {
        let mut out = Found::default();
        let overlaps = |s: DateTime<Utc>, d: Duration| {
            let e = s + d;
            if d.is_zero() { s >= from && s <= to } else { s <= to && e > from }
        };
        for ev in &self.events {
            let mut push = |s: DateTime<Utc>, length: Duration, recurring: bool| {
                out.instances.push(Instance {
                    uid: ev.uid.clone(),
                    summary: ev.summary.clone(),
                    location: ev.location.clone(),
                    start: format_instant(s, ev.all_day, self.tz),
                    end: format_instant(s + length, ev.all_day, self.tz),
                    all_day: ev.all_day,
                    recurring,
                });
            };
            match &ev.recurrence {
                Recurrence::Once => {
                    if overlaps(ev.start, ev.duration) {
                        push(ev.start, ev.duration, false);
                    }
                }
                Recurrence::Rule(set) => {
                    let tz = set.get_dt_start().timezone();
                    // An instance starting up to its (shifted) length before `from` still
                    // overlaps; a shift can bring one from beyond the window into it.
                    let reach = std::iter::once((ev.shift, ev.duration))
                        .chain(ev.future.iter().map(|f| (f.1, f.2)))
                        .map(|(shift, length)| Duration::seconds(shift.num_seconds().abs()) + length)
                        .max()
                        .unwrap_or_default();
                    let after = (from - reach - Duration::seconds(1)).with_timezone(&tz);
                    let before = (to + reach + Duration::seconds(1)).with_timezone(&tz);
                    let r = set.as_ref().clone().after(after).before(before).all(MAX_INSTANCES);
                    out.limited |= r.limited;
                    for d in r.dates {
                        let original = d.with_timezone(&Utc);
                        if ev.overridden.contains(&original.timestamp()) {
                            continue;
                        }
                        let (shift, length) = ev.instance_at(original.timestamp());
                        let s = original + shift;
                        if overlaps(s, length) {
                            push(s, length, true);
                        }
                    }
                }
            }
        }
        out.instances.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.uid.cmp(&b.uid)));
        out.instances.dedup();
        out.limited |= out.instances.len() > max;
        out.instances.truncate(max);
        out
    }

    /// The `context.calendar` group at instant `at` with `margin` either side.
    pub fn group(&self, at: DateTime<Utc>, margin: Duration) -> Value {
        let found = self.overlapping(at - margin, at + margin, MAX_ATTACHED);
        let mut v = json!({
            "subject": self.subject,
            "events": found.instances,
            "provenance": {"source": "calendar", "version": self.version},
        });
        if found.limited {
            v["limited"] = json!(true);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(body: &str, tz: &str) -> Result<Calendar, CalendarError> {
        let ics = format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n");
        compile(&CalendarSpec { subject: "alice".into(), ics, tz: tz.into() }, 1)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn starts(c: &Calendar, from: &str, to: &str) -> Vec<String> {
        c.overlapping(at(from), at(to), 100).instances.into_iter().map(|i| format!("{} {}", i.uid, i.start)).collect()
    }

    #[test]
    fn durations() {
        let cases = [
            ("PT1H", Some(3600)),
            ("PT1H30M", Some(5400)),
            ("P1D", Some(86_400)),
            ("P2W", Some(14 * 86_400)),
            ("-PT15M", Some(-900)),
            ("P1DT2H", Some(93_600)),
            ("PT", None),
            ("1H", None),
            ("PT1D", None),
            ("P1H", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).map(|d| d.num_seconds()), want, "{s}");
        }
    }

    #[test]
    fn weekly_rule_with_tzid_exdate_override_and_dst() {
        let c = cal(
            "BEGIN:VEVENT\r\nUID:sync\r\nSUMMARY:Team sync\r\nDTSTART;TZID=Europe/Berlin:20260302T090000\r\n\
             DTEND;TZID=Europe/Berlin:20260302T093000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260413T070000Z\r\n\
             EXDATE;TZID=Europe/Berlin:20260316T090000\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:sync\r\nSUMMARY:Team sync (moved)\r\nRECURRENCE-ID;TZID=Europe/Berlin:20260323T090000\r\n\
             DTSTART;TZID=Europe/Berlin:20260324T140000\r\nDTEND;TZID=Europe/Berlin:20260324T143000\r\nEND:VEVENT\r\n",
            "UTC",
        )
        .unwrap();
        assert_eq!(
            starts(&c, "2026-03-01T00:00:00Z", "2026-04-30T00:00:00Z"),
            [
                "sync 2026-03-02T08:00:00Z",
                "sync 2026-03-09T08:00:00Z",
                "sync 2026-03-24T13:00:00Z",
                // Berlin is on summer time from 29 March: 09:00 local is 07:00Z.
                "sync 2026-03-30T07:00:00Z",
                "sync 2026-04-06T07:00:00Z",
                "sync 2026-04-13T07:00:00Z",
            ]
        );
        let g = c.group(at("2026-03-09T08:15:00Z"), Duration::zero());
        assert_eq!(g["events"][0]["summary"], "Team sync");
        assert_eq!(g["events"][0]["end"], "2026-03-09T08:30:00Z");
        assert_eq!(c.group(at("2026-03-09T08:30:00Z"), Duration::zero())["events"], json!([]));
        assert_eq!(c.group(at("2026-03-09T08:35:00Z"), Duration::minutes(10))["events"].as_array().unwrap().len(), 1);
    }

    /// What real exports do (each case from a recurring-ical-events issue): the instances in
    /// March–May 2026 as "uid start".
    #[test]
    fn sequences_ranges_zones_and_quirks_of_real_exports() {
        let weekly = "DTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n";
        let cases: Vec<(String, Vec<&str>)> = vec![
            // A newer SEQUENCE of the master replaces the older one (its EXDATE applies).
            (
                format!("BEGIN:VEVENT\r\nUID:a\r\nSEQUENCE:1\r\n{weekly}END:VEVENT\r\n\
                 BEGIN:VEVENT\r\nUID:a\r\nSEQUENCE:2\r\n{weekly}EXDATE:20260309T090000Z\r\nEND:VEVENT\r\n"),
                vec!["a 2026-03-02T09:00:00Z", "a 2026-03-16T09:00:00Z"],
            ),
            // An override of an instance the newer master EXDATEs is dropped.
            (
                format!("BEGIN:VEVENT\r\nUID:b\r\nSEQUENCE:2\r\n{weekly}EXDATE:20260309T090000Z\r\nEND:VEVENT\r\n\
                 BEGIN:VEVENT\r\nUID:b\r\nSEQUENCE:1\r\nRECURRENCE-ID:20260309T090000Z\r\nDTSTART:20260310T090000Z\r\nEND:VEVENT\r\n"),
                vec!["b 2026-03-02T09:00:00Z", "b 2026-03-16T09:00:00Z"],
            ),
            // RANGE=THISANDFUTURE moves this and every later instance by the override's shift.
            (
                format!("BEGIN:VEVENT\r\nUID:c\r\n{weekly}END:VEVENT\r\n\
                 BEGIN:VEVENT\r\nUID:c\r\nRECURRENCE-ID;RANGE=THISANDFUTURE:20260309T090000Z\r\nDTSTART:20260309T113000Z\r\nDTEND:20260309T120000Z\r\nEND:VEVENT\r\n"),
                vec!["c 2026-03-02T09:00:00Z", "c 2026-03-09T11:30:00Z", "c 2026-03-16T11:30:00Z"],
            ),
            // UNTIL before DTSTART: no instance at all.
            (
                "BEGIN:VEVENT\r\nUID:d\r\nDTSTART;VALUE=DATE:20260302\r\nRRULE:FREQ=WEEKLY;UNTIL=20260301\r\nEND:VEVENT\r\n".into(),
                vec![],
            ),
            // DTEND before DTSTART reads as swapped; a negative COUNT is dropped (UNTIL bounds).
            (
                "BEGIN:VEVENT\r\nUID:e\r\nDTSTART:20260302T093000Z\r\nDTEND:20260302T090000Z\r\n\
                 RRULE:FREQ=WEEKLY;COUNT=-1;UNTIL=20260310T000000Z\r\nEND:VEVENT\r\n".into(),
                vec!["e 2026-03-02T09:00:00Z", "e 2026-03-09T09:00:00Z"],
            ),
            // A Windows zone name defined by the calendar's VTIMEZONE (with a stray ':').
            (
                "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time:\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\n\
                 TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n\
                 BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
                 RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
                 BEGIN:VEVENT\r\nUID:f\r\nDTSTART;TZID=W. Europe Standard Time:20260323T090000\r\nRRULE:FREQ=WEEKLY;COUNT=2\r\nEND:VEVENT\r\n"
                    .into(),
                vec!["f 2026-03-23T08:00:00Z", "f 2026-03-30T07:00:00Z"],
            ),
            // An all-day series' instance named by a zoned RECURRENCE-ID of the same date.
            (
                "BEGIN:VEVENT\r\nUID:g\r\nDTSTART;VALUE=DATE:20260302\r\nRRULE:FREQ=WEEKLY;COUNT=2\r\nEND:VEVENT\r\n\
                 BEGIN:VEVENT\r\nUID:g\r\nRECURRENCE-ID;TZID=Europe/London:20260309T000000\r\nDTSTART;VALUE=DATE:20260310\r\nEND:VEVENT\r\n"
                    .into(),
                vec!["g 2026-03-02", "g 2026-03-10"],
            ),
        ];
        for (body, want) in cases {
            let c = cal(&body, "UTC").unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(starts(&c, "2026-03-01T00:00:00Z", "2026-05-31T00:00:00Z"), want, "{body}");
        }
    }

    #[test]
    fn all_day_floating_rdate_and_unbounded_rules() {
        let c = cal(
            "BEGIN:VEVENT\r\nUID:holiday\r\nSUMMARY:Day off\r\nDTSTART;VALUE=DATE:20260501\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:standup\r\nDTSTART:20260101T093000\r\nDURATION:PT15M\r\nRRULE:FREQ=DAILY\r\n\
             RDATE:20260101T180000\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nUID:gone\r\nSTATUS:CANCELLED\r\nDTSTART:20260501T100000Z\r\nEND:VEVENT\r\n",
            "America/New_York",
        )
        .unwrap();
        // The all-day event covers its date in the calendar's zone (New York): 04:00Z to 04:00Z.
        assert_eq!(
            starts(&c, "2026-05-01T03:00:00Z", "2026-05-01T14:00:00Z"),
            ["holiday 2026-05-01", "standup 2026-05-01T13:30:00Z"]
        );
        assert_eq!(starts(&c, "2026-05-01T02:00:00Z", "2026-05-01T03:59:00Z"), Vec::<String>::new());
        // An unbounded daily rule, far in the future: only the window is expanded.
        assert_eq!(starts(&c, "2045-06-01T13:40:00Z", "2045-06-01T13:41:00Z"), ["standup 2045-06-01T13:30:00Z"]);
        assert_eq!(starts(&c, "2026-01-01T23:00:00Z", "2026-01-01T23:00:01Z"), ["standup 2026-01-01T23:00:00Z"]);
    }

    #[test]
    fn bad_calendars_are_refused_with_a_reason() {
        let cases = [
            ("BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n", "DTSTART: missing"),
            ("BEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Mars/Olympus:20260101T000000\r\nEND:VEVENT\r\n", "unknown TZID"),
            ("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:2026-01-01\r\nEND:VEVENT\r\n", "not a DATE-TIME"),
            ("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260101T000000Z\r\nRRULE:FREQ=SOMETIMES\r\nEND:VEVENT\r\n", "RRULE"),
            ("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20260101T000000Z\r\nDURATION:soon\r\nEND:VEVENT\r\n", "DURATION"),
        ];
        for (body, want) in cases {
            let e = cal(body, "UTC").unwrap_err();
            assert!(e.0.contains(want), "{body}: {e}");
        }
        let spec = |ics: String| CalendarSpec { subject: "s".into(), ics, tz: "UTC".into() };
        assert!(compile(&spec("hello".into()), 0).is_err());
        let deep = "BEGIN:X\r\n".repeat(20) + &"END:X\r\n".repeat(20);
        assert!(compile(&spec(deep), 0).unwrap_err().0.contains("nested"));
        assert!(compile(&spec("x".repeat(MAX_ICS_BYTES + 1)), 0).unwrap_err().0.contains("bytes"));
        assert!(cal("", "Nowhere/City").is_err());
        assert!(!subject_ok("a/b") && subject_ok("device-1@acme"));
        // Multi-byte text where the BEGIN:/END: check looks must not panic.
        assert_eq!(nesting("BEGIN:A\r\n en Maßnahmen\r\nEN€\r\nBEGIN:B\r\nß\r\nEND:B\r\nEND:A\r\n"), 2);
        let mb = "BEGIN:VEVENT\r\nUID:ü\r\nSUMMARY:Besprechung en Maßnahmen\r\n DTSTART:20260101T000000Z\r\nDTSTART:20260101T000000Z\r\nEND:VEVENT\r\n";
        assert!(cal(mb, "UTC").is_ok());
    }
}
