//! Window assigners. Tumbling (size), hopping (size, slide) and session (gap) windows over
//! event-time milliseconds, optionally aligned to a time zone's calendar (a `1d` window in
//! Europe/Berlin runs from local midnight to local midnight: 23 or 25 hours across a DST switch)
//! and shifted by an offset. Session windows are assigned here as the event's own `[t, t + gap)`
//! and merged by the engine, which knows the key's other sessions.

use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// The kind and sizes of a job's windows, validated (positive sizes, slide ≤ size).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Shifts bucket boundaries (a `1d` window with offset `6h` runs 06:00–06:00).
    pub offset_ms: i64,
    /// Buckets follow this zone's wall clock instead of UTC.
    pub tz: Option<Tz>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size_ms: i64 },
    Hopping { size_ms: i64, slide_ms: i64 },
    Session { gap_ms: i64 },
}

/// A half-open interval `[start, end)` of event time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Zone-aligned windows up to this size follow the event's UTC offset (see `window_from_local`).
const SHORT_WINDOW_MS: i64 = 3_600_000;

/// Hopping windows an event may fall in at most (size / slide is bounded by the spec check).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1000;

impl WindowSpec {
    /// Checks sizes: positive, slide ≤ size, at most [`MAX_WINDOWS_PER_EVENT`] windows per event.
    /// Returns the offending field and why.
    pub fn new(kind: WindowKind, offset_ms: i64, tz: Option<Tz>) -> Result<WindowSpec, (&'static str, String)> {
        match kind {
            WindowKind::Tumbling { size_ms } if size_ms <= 0 => return Err(("window.size", "must be positive".into())),
            WindowKind::Hopping { size_ms, .. } if size_ms <= 0 => {
                return Err(("window.size", "must be positive".into()));
            }
            WindowKind::Hopping { slide_ms, .. } if slide_ms <= 0 => {
                return Err(("window.slide", "must be positive".into()));
            }
            WindowKind::Hopping { size_ms, slide_ms } if slide_ms > size_ms => {
                return Err((
                    "window.slide",
                    "must not be larger than window.size (events would fall in no window)".into(),
                ));
            }
            WindowKind::Hopping { size_ms, slide_ms } if size_ms / slide_ms > MAX_WINDOWS_PER_EVENT => {
                return Err(("window.slide", format!("size / slide must be at most {MAX_WINDOWS_PER_EVENT}")));
            }
            WindowKind::Session { gap_ms } if gap_ms <= 0 => return Err(("window.gap", "must be positive".into())),
            WindowKind::Session { .. } if offset_ms != 0 || tz.is_some() => {
                return Err(("window.offset", "session windows take no offset or time zone".into()));
            }
            _ => {}
        }
        if offset_ms < 0 {
            return Err(("window.offset", "must not be negative".into()));
        }
        Ok(WindowSpec { kind, offset_ms, tz })
    }

    pub fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }

    /// The windows an event at `ts` belongs to, oldest first. For sessions: the event's own
    /// `[ts, ts + gap)`, before merging.
    pub fn assign(&self, ts: i64) -> Vec<Window> {
        let mut out = Vec::new();
        self.assign_into(ts, &mut out);
        out
    }

    /// [`WindowSpec::assign`] into a buffer the caller reuses (appends, oldest first).
    pub fn assign_into(&self, ts: i64, out: &mut Vec<Window>) {
        match self.kind {
            WindowKind::Session { gap_ms } => out.push(Window { start: ts, end: ts.saturating_add(gap_ms) }),
            WindowKind::Tumbling { size_ms } => {
                let local = self.utc_to_local(ts);
                let start = floor_to(local - self.offset_ms, size_ms) + self.offset_ms;
                out.push(self.window_from_local(start, size_ms, ts));
            }
            WindowKind::Hopping { size_ms, slide_ms } => {
                let local = self.utc_to_local(ts);
                let last = floor_to(local - self.offset_ms, slide_ms) + self.offset_ms;
                let first = out.len();
                let mut start = last;
                while start > local - size_ms {
                    out.push(self.window_from_local(start, size_ms, ts));
                    start -= slide_ms;
                }
                out[first..].reverse();
            }
        }
    }

    /// The window `[local_start, local_start + size)` of wall-clock time in UTC. Windows of up
    /// to an hour take the event's own UTC offset for both bounds, so around a DST switch the
    /// repeated hour has its own windows (and a skipped hour none); longer windows follow the
    /// wall calendar (a day is 23 or 25 hours; an ambiguous bound takes its first occurrence,
    /// a skipped one the next valid time).
    fn window_from_local(&self, local_start: i64, size_ms: i64, ts: i64) -> Window {
        if self.tz.is_some() && size_ms <= SHORT_WINDOW_MS {
            let offset = self.utc_to_local(ts) - ts;
            return Window { start: local_start - offset, end: local_start + size_ms - offset };
        }
        Window { start: self.local_to_utc(local_start), end: self.local_to_utc(local_start + size_ms) }
    }

    /// UTC ms → the zone's wall-clock time written as if it were UTC ms.
    fn utc_to_local(&self, ts: i64) -> i64 {
        let Some(tz) = self.tz else { return ts };
        match tz.timestamp_millis_opt(ts) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                ts + i64::from(t.offset().fix().local_minus_utc()) * 1000
            }
            LocalResult::None => ts,
        }
    }

    /// Wall-clock ms (as if UTC) → UTC ms. An ambiguous wall time (the repeated hour when clocks
    /// go back) takes its first occurrence; a skipped one (clocks go forward) the next valid time.
    fn local_to_utc(&self, local: i64) -> i64 {
        let Some(tz) = self.tz else { return local };
        let Some(naive) = chrono::DateTime::from_timestamp_millis(local).map(|d| d.naive_utc()) else { return local };
        resolve(&tz, naive, local)
    }
}

fn resolve(tz: &Tz, naive: NaiveDateTime, local: i64) -> i64 {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
        LocalResult::None => {
            // Inside a forward gap: the wall time does not exist; the window starts when the
            // clock jumps, found by stepping forward a minute at a time (gaps are ≤ 2 h).
            for minutes in 1..=180 {
                let later = naive + chrono::Duration::minutes(minutes);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = tz.from_local_datetime(&later) {
                    return t.timestamp_millis();
                }
            }
            local
        }
    }
}

/// Floor division to a multiple of `step` (also for negative numbers).
fn floor_to(x: i64, step: i64) -> i64 {
    x.div_euclid(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const H: i64 = 60 * MIN;
    const D: i64 = 24 * H;
    /// 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600_000;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    fn spec(kind: WindowKind) -> WindowSpec {
        WindowSpec::new(kind, 0, None).expect("valid")
    }

    #[test]
    fn tumbling_and_hopping_assignment() {
        let tumbling = spec(WindowKind::Tumbling { size_ms: MIN });
        let hopping = spec(WindowKind::Hopping { size_ms: 10 * MIN, slide_ms: 5 * MIN });
        let offset = WindowSpec::new(WindowKind::Tumbling { size_ms: D }, 6 * H, None).expect("valid");
        for (s, ts, want) in [
            (&tumbling, T0, vec![w(T0, T0 + MIN)]),
            (&tumbling, T0 + MIN - 1, vec![w(T0, T0 + MIN)]),
            (&tumbling, T0 + MIN, vec![w(T0 + MIN, T0 + 2 * MIN)]),
            (&tumbling, 0, vec![w(0, MIN)]),
            (&hopping, T0 + 7 * MIN, vec![w(T0, T0 + 10 * MIN), w(T0 + 5 * MIN, T0 + 15 * MIN)]),
            (&hopping, T0 + 5 * MIN, vec![w(T0, T0 + 10 * MIN), w(T0 + 5 * MIN, T0 + 15 * MIN)]),
            (&hopping, T0 + 4 * MIN, vec![w(T0 - 5 * MIN, T0 + 5 * MIN), w(T0, T0 + 10 * MIN)]),
            (&offset, T0 + 5 * H, vec![w(T0 - 18 * H, T0 + 6 * H)]),
            (&offset, T0 + 6 * H, vec![w(T0 + 6 * H, T0 + 30 * H)]),
            (&spec(WindowKind::Session { gap_ms: 30_000 }), T0 + 5, vec![w(T0 + 5, T0 + 30_005)]),
        ] {
            assert_eq!(s.assign(ts), want, "{:?} at {ts}", s.kind);
        }
    }

    #[test]
    fn hopping_with_uneven_slide_covers_each_event_size_over_slide_times() {
        let s = spec(WindowKind::Hopping { size_ms: 10, slide_ms: 3 });
        for ts in 0..50 {
            let ws = s.assign(ts);
            assert!(ws.iter().all(|w| w.start <= ts && ts < w.end), "{ts}: {ws:?}");
            assert!(ws.len() == 3 || ws.len() == 4, "{ts}: {ws:?}");
        }
    }

    #[test]
    fn calendar_days_in_a_time_zone_follow_dst() {
        let berlin =
            WindowSpec::new(WindowKind::Tumbling { size_ms: D }, 0, Some(chrono_tz::Europe::Berlin)).expect("valid");
        // 2026-01-01T12:00Z: local day starts 2025-12-31T23:00Z
        assert_eq!(berlin.assign(T0 + 12 * H), vec![w(T0 - H, T0 + 23 * H)]);
        // 2026-03-29 (spring forward): local midnight is 23:00Z the day before; the day has 23 h.
        let mar29 = 1_774_742_400_000; // 2026-03-29T00:00:00Z
        let got = berlin.assign(mar29 + 12 * H);
        assert_eq!(got, vec![w(mar29 - H, mar29 + 22 * H)]);
        // 2026-10-25 (fall back): the day has 25 h.
        let oct25 = 1_792_886_400_000; // 2026-10-25T00:00:00Z
        let got = berlin.assign(oct25 + 12 * H);
        assert_eq!(got, vec![w(oct25 - 2 * H, oct25 + 23 * H)]);
        assert_eq!(got[0].end - got[0].start, 25 * H);
    }

    #[test]
    fn hourly_windows_across_the_spring_gap() {
        let berlin =
            WindowSpec::new(WindowKind::Tumbling { size_ms: H }, 0, Some(chrono_tz::Europe::Berlin)).expect("valid");
        let mar29 = 1_774_742_400_000;
        // 01:00Z is 03:00 CEST (02:00 local does not exist): window 03:00–04:00 local = 01:00–02:00Z
        assert_eq!(berlin.assign(mar29 + H + 1), vec![w(mar29 + H, mar29 + 2 * H)]);
        // 00:30Z is 01:30 CET: window 01:00–02:00 local; 02:00 local is skipped, so it ends at 01:00Z
        assert_eq!(berlin.assign(mar29 + 30 * MIN), vec![w(mar29, mar29 + H)]);
    }

    #[test]
    fn short_windows_in_the_repeated_hour_hold_their_events() {
        let berlin = WindowSpec::new(WindowKind::Tumbling { size_ms: 15 * MIN }, 0, Some(chrono_tz::Europe::Berlin))
            .expect("valid");
        let oct25 = 1_792_886_400_000; // 2026-10-25T00:00:00Z; local 02:00-03:00 happens twice
        for ts in [oct25 + 10 * MIN, oct25 + H + 10 * MIN, oct25 + H + 50 * MIN, oct25 + 2 * H + 5 * MIN] {
            let got = berlin.assign(ts);
            assert!(got[0].start <= ts && ts < got[0].end, "{ts}: {got:?}");
            assert_eq!(got[0].end - got[0].start, 15 * MIN, "{ts}: {got:?}");
        }
        // the repeated hour has its own hourly window: 02:00 CEST and 02:00 CET
        let hourly =
            WindowSpec::new(WindowKind::Tumbling { size_ms: H }, 0, Some(chrono_tz::Europe::Berlin)).expect("valid");
        assert_eq!(hourly.assign(oct25 + 10 * MIN), vec![w(oct25, oct25 + H)]);
        assert_eq!(hourly.assign(oct25 + H + 10 * MIN), vec![w(oct25 + H, oct25 + 2 * H)]);
    }

    #[test]
    fn invalid_specs_name_the_field() {
        for (kind, offset, field) in [
            (WindowKind::Tumbling { size_ms: 0 }, 0, "window.size"),
            (WindowKind::Hopping { size_ms: 10, slide_ms: 20 }, 0, "window.slide"),
            (WindowKind::Hopping { size_ms: 10, slide_ms: 0 }, 0, "window.slide"),
            (WindowKind::Hopping { size_ms: 1_000_000, slide_ms: 1 }, 0, "window.slide"),
            (WindowKind::Session { gap_ms: 0 }, 0, "window.gap"),
            (WindowKind::Session { gap_ms: 5 }, 5, "window.offset"),
            (WindowKind::Tumbling { size_ms: 5 }, -1, "window.offset"),
        ] {
            assert_eq!(WindowSpec::new(kind, offset, None).map_err(|e| e.0), Err(field), "{kind:?}");
        }
    }
}
