//! The windowing engine of one source partition (or one REST-fed job): keyed window state,
//! watermarks, firing and the late-data policy — pure and synchronous, so actors stay thin and
//! every rule here is tested without I/O.
//!
//! - An event is assigned its windows (sessions merge with the key's overlapping ones) and
//!   absorbed by each window's aggregate states.
//! - The partition watermark is the largest event time seen (or, while the partition is idle,
//!   the job-wide floor the owner sets). A window closes when the watermark reaches
//!   `end + allowed_lateness`: it is emitted as final (version + 1) and its state is dropped.
//! - An event whose window has closed is late: it is reported with the window and watermark so
//!   the caller sends it to the late topic, and counted — never dropped silently. With hopping
//!   windows an event can be late for its older windows and still count in the newer ones.
//! - With `emit = updates`, every changed window is also emitted provisionally (`final = false`)
//!   with a growing version after each batch.
//! - The open windows are bounded (`max_open_windows`): an event that would open one more is
//!   refused with [`Rejected::WindowBudget`], for the caller to dead-letter and count.
//! - [`Engine::snapshot`] / [`Engine::restore`] are the checkpoint: state and watermarks, stored
//!   by the caller atomically with the consumed offsets.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{AggFn, AggState, Input};
use crate::watermark::{NONE, Watermarks};
use crate::window::{Window, WindowKind, WindowSpec};

/// When results are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Once per window, when it closes (watermark ≥ end + allowed lateness).
    #[default]
    Final,
    /// Provisional results after every change, then the final one.
    #[serde(alias = "both")]
    Updates,
}

/// What the engine needs to know of a job.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub window: WindowSpec,
    /// The job's aggregates in order: function and quantile (for `percentile`).
    pub aggregates: Vec<(AggFn, f64)>,
    pub allowed_lateness_ms: i64,
    pub emit: Emit,
    pub per_key_watermark: bool,
    pub idle_timeout_ms: i64,
    pub max_open_windows: usize,
}

/// One event, already keyed, timed and with each aggregate's input extracted.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The canonical JSON text of the key's values.
    pub key: String,
    pub ts: i64,
    /// One input per aggregate, in the spec's order.
    pub inputs: Vec<Input>,
}

/// A result: one window of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub key: String,
    pub window: Window,
    /// One value per aggregate, in the spec's order.
    pub values: Vec<Value>,
    pub count: u64,
    pub version: u32,
    pub is_final: bool,
}

/// An event that arrived after (one of) its windows closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// The (earliest) closed window it belonged to.
    pub window: Window,
    /// The watermark it was late against.
    pub watermark: i64,
    /// True when it still counted in some of its (hopping) windows.
    pub partial: bool,
}

/// An event the engine refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("window_budget_exceeded: the job already holds its maximum of {0} open windows")]
    WindowBudget(usize),
}

impl Rejected {
    pub fn code(&self) -> &'static str {
        match self {
            Rejected::WindowBudget(_) => "window_budget_exceeded",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot {
    end: i64,
    states: Vec<AggState>,
    count: u64,
    version: u32,
    #[serde(default)]
    dirty: bool,
}

/// Counters of what the engine did, for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub events: u64,
    pub late: u64,
    pub rejected: u64,
    pub emitted: u64,
    pub finals: u64,
}

/// The checkpointed form of an engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    slots: Vec<(String, i64, Slot)>,
    max_ts: i64,
    /// The job-wide floor applied while idle (windows it closed must stay closed after a reload).
    #[serde(default = "no_floor")]
    floor: i64,
    key_marks: Vec<(String, i64)>,
    stats: EngineStats,
}

fn no_floor() -> i64 {
    NONE
}

impl Snapshot {
    /// The watermark the snapshot's engine had (to carry over when its job changes).
    pub fn watermark(&self) -> i64 {
        self.max_ts.max(self.floor)
    }
}

pub struct Engine {
    spec: EngineSpec,
    slots: slots::Slots,
    /// Reused for each event's windows.
    scratch: Vec<Window>,
    /// (close at = end + lateness, key, start) of every open window.
    closing: BTreeSet<(i64, String, i64)>,
    max_ts: i64,
    /// Job-wide watermark floor, applied while this partition is idle.
    floor: i64,
    keys: Watermarks<String>,
    stats: EngineStats,
}

impl Engine {
    pub fn new(spec: EngineSpec) -> Engine {
        let keys = Watermarks::new(spec.idle_timeout_ms);
        Engine {
            spec,
            slots: slots::Slots::default(),
            scratch: Vec::new(),
            closing: BTreeSet::new(),
            max_ts: NONE,
            floor: NONE,
            keys,
            stats: EngineStats::default(),
        }
    }

    pub fn spec(&self) -> &EngineSpec {
        &self.spec
    }

    /// This partition's own watermark (largest event time seen).
    pub fn watermark(&self) -> i64 {
        self.max_ts.max(self.floor)
    }

    /// Sets the job-wide floor (the combined watermark of the job's partitions, when this one is
    /// idle); it never moves the watermark back.
    pub fn set_floor(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn open_windows(&self) -> usize {
        self.slots.len()
    }

    fn key_watermark(&self, key: &str, now_ms: i64) -> i64 {
        if self.spec.per_key_watermark {
            let own = self.keys.own(&key.to_owned());
            if own == NONE {
                // a key seen for the first time has made no progress: nothing of it is late
                return NONE;
            }
            // an idle key closes by the partition's watermark
            let eff = self.keys.effective(&key.to_owned(), now_ms);
            if eff > own { self.watermark() } else { own }
        } else {
            self.watermark()
        }
    }

    fn closed(&self, w: &Window, watermark: i64) -> bool {
        watermark != NONE && w.end.saturating_add(self.spec.allowed_lateness_ms) <= watermark
    }

    /// Absorbs one event. `Ok(None)`: counted; `Ok(Some(late))`: late for (some of) its
    /// windows; `Err`: refused, nothing counted.
    pub fn ingest(&mut self, ev: &Event, now_ms: i64) -> Result<Option<Late>, Rejected> {
        let wm = self.key_watermark(&ev.key, now_ms);
        let result = match self.spec.window.kind {
            WindowKind::Session { gap_ms } => self.ingest_session(ev, wm, gap_ms),
            _ => self.ingest_fixed(ev, wm),
        };
        match &result {
            Ok(late) => {
                self.stats.events += 1;
                if late.is_some() {
                    self.stats.late += 1;
                }
                self.max_ts = self.max_ts.max(ev.ts);
                if self.spec.per_key_watermark {
                    self.keys.observe(ev.key.clone(), ev.ts, now_ms);
                }
            }
            Err(_) => self.stats.rejected += 1,
        }
        result
    }

    fn ingest_fixed(&mut self, ev: &Event, wm: i64) -> Result<Option<Late>, Rejected> {
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.spec.window.assign_into(ev.ts, &mut windows);
        let mut late: Option<Late> = None;
        windows.retain(|w| {
            if self.closed(w, wm) {
                late.get_or_insert(Late { window: *w, watermark: wm, partial: false });
                false
            } else {
                true
            }
        });
        let new = windows.iter().filter(|w| !self.slots.contains(&ev.key, w.start)).count();
        if new > 0 && self.slots.len() + new > self.spec.max_open_windows {
            self.scratch = windows;
            return Err(Rejected::WindowBudget(self.spec.max_open_windows));
        }
        if let Some(l) = &mut late {
            l.partial = !windows.is_empty();
        }
        for w in &windows {
            self.absorb(&ev.key, *w, ev);
        }
        self.scratch = windows;
        Ok(late)
    }

    fn absorb(&mut self, key: &str, w: Window, ev: &Event) {
        let aggregates = &self.spec.aggregates;
        let (slot, created) = self.slots.get_or_insert_with(key, w.start, || Slot {
            end: w.end,
            states: aggregates.iter().map(|(f, _)| AggState::new(*f)).collect(),
            count: 0,
            version: 0,
            dirty: false,
        });
        for (state, input) in slot.states.iter_mut().zip(&ev.inputs) {
            state.add(ev.ts, input);
        }
        slot.count += 1;
        slot.dirty = true;
        if created {
            self.closing.insert((w.end.saturating_add(self.spec.allowed_lateness_ms), key.to_owned(), w.start));
        }
    }

    fn ingest_session(&mut self, ev: &Event, wm: i64, gap_ms: i64) -> Result<Option<Late>, Rejected> {
        let mut merged = Window { start: ev.ts, end: ev.ts.saturating_add(gap_ms) };
        // Sessions of a key never overlap, so walking back from the last one starting before the
        // new window's end finds every overlapping one.
        let mut overlapping: Vec<i64> = Vec::new();
        for (start, slot) in self.slots.before(&ev.key, merged.end) {
            if slot.end <= ev.ts {
                break;
            }
            overlapping.push(start);
            merged.start = merged.start.min(start);
            merged.end = merged.end.max(slot.end);
        }
        if self.closed(&merged, wm) {
            return Ok(Some(Late { window: merged, watermark: wm, partial: false }));
        }
        if overlapping.is_empty() && self.slots.len() >= self.spec.max_open_windows {
            return Err(Rejected::WindowBudget(self.spec.max_open_windows));
        }
        let lateness = self.spec.allowed_lateness_ms;
        let mut combined = Slot {
            end: merged.end,
            states: self.spec.aggregates.iter().map(|(f, _)| AggState::new(*f)).collect(),
            count: 0,
            version: 0,
            dirty: true,
        };
        for start in overlapping {
            if let Some(old) = self.slots.remove(&ev.key, start) {
                self.closing.remove(&(old.end.saturating_add(lateness), ev.key.clone(), start));
                for (a, b) in combined.states.iter_mut().zip(&old.states) {
                    a.merge(b);
                }
                combined.count += old.count;
                combined.version = combined.version.max(old.version);
            }
        }
        self.closing.insert((merged.end.saturating_add(lateness), ev.key.clone(), merged.start));
        self.slots.insert(&ev.key, merged.start, combined);
        self.absorb(&ev.key, merged, ev);
        Ok(None)
    }

    /// Closes every window the watermark has passed (final emissions, in close order) and, with
    /// `emit = updates`, emits the other changed windows provisionally.
    pub fn advance(&mut self, now_ms: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        let wm = self.watermark();
        let mut deferred = Vec::new();
        while let Some(first) = self.closing.first() {
            if wm == NONE || first.0 > wm {
                break;
            }
            let Some((close_at, key, start)) = self.closing.pop_first() else { break };
            if self.spec.per_key_watermark && close_at > self.key_watermark(&key, now_ms) {
                deferred.push((close_at, key, start));
                continue;
            }
            if let Some(slot) = self.slots.remove(&key, start) {
                out.push(self.emission(key, start, slot, true));
            }
        }
        self.closing.extend(deferred);
        if self.spec.emit == Emit::Updates {
            let dirty: Vec<(String, i64)> =
                self.slots.sorted().into_iter().filter(|(_, _, s)| s.dirty).map(|(k, s, _)| (k.clone(), s)).collect();
            for (key, start) in dirty {
                if let Some(slot) = self.slots.get_mut(&key, start) {
                    slot.dirty = false;
                    slot.version += 1;
                    let e = Emission {
                        values: finish(&self.spec, &slot.states, slot.end - start),
                        window: Window { start, end: slot.end },
                        count: slot.count,
                        version: slot.version,
                        is_final: false,
                        key,
                    };
                    out.push(e);
                }
            }
        }
        if self.spec.per_key_watermark && self.keys.len() > self.spec.max_open_windows.saturating_mul(2) {
            self.prune_keys(now_ms);
        }
        self.stats.emitted += out.len() as u64;
        self.stats.finals += out.iter().filter(|e| e.is_final).count() as u64;
        out
    }

    fn emission(&self, key: String, start: i64, slot: Slot, is_final: bool) -> Emission {
        Emission {
            values: finish(&self.spec, &slot.states, slot.end - start),
            window: Window { start, end: slot.end },
            count: slot.count,
            version: slot.version + 1,
            is_final,
            key,
        }
    }

    /// Forgets per-key watermarks of keys without open windows (bounded memory).
    fn prune_keys(&mut self, _now_ms: i64) {
        let open: std::collections::HashSet<&String> = self.slots.keys().collect();
        let mut keep = Watermarks::new(self.spec.idle_timeout_ms);
        for k in open {
            keep.observe(k.clone(), self.keys.own(k), _now_ms);
        }
        self.keys = keep;
    }

    /// Takes every open window's partial state out (batch recomputation), leaving the engine
    /// empty: (key, window, count, states).
    pub fn drain_partials(&mut self) -> Vec<(String, Window, u64, Vec<AggState>)> {
        self.closing.clear();
        self.slots
            .take()
            .into_iter()
            .map(|(key, start, slot)| (key, Window { start, end: slot.end }, slot.count, slot.states))
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            slots: self.slots.sorted().into_iter().map(|(k, s, slot)| (k.clone(), s, slot.clone())).collect(),
            max_ts: self.max_ts,
            floor: self.floor,
            // every key's mark (bounded by the pruning in `advance`), not only keys with open
            // windows: a key whose windows closed must still find its old events late
            key_marks: self.keys.marks().map(|(k, ts)| (k.clone(), ts)).collect(),
            stats: self.stats,
        }
    }

    /// Rebuilds an engine from its checkpoint (state of the same spec).
    pub fn restore(spec: EngineSpec, snap: Snapshot, now_ms: i64) -> Engine {
        let mut e = Engine::new(spec);
        let lateness = e.spec.allowed_lateness_ms;
        for (key, start, slot) in snap.slots {
            e.closing.insert((slot.end.saturating_add(lateness), key.clone(), start));
            e.slots.insert(&key, start, slot);
        }
        for (k, ts) in snap.key_marks {
            if ts != NONE {
                e.keys.observe(k, ts, now_ms);
            }
        }
        e.max_ts = snap.max_ts;
        e.floor = snap.floor;
        e.stats = snap.stats;
        e
    }
}

/// The values of a window's states, in the spec's order.
pub fn finish(spec: &EngineSpec, states: &[AggState], window_ms: i64) -> Vec<Value> {
    spec.aggregates.iter().zip(states).map(|((f, q), s)| s.finish(*f, *q, window_ms)).collect()
}

/// Merges partial states window by window: (key, window) → (count, states).
pub fn merge_partials(
    spec: &EngineSpec,
    parts: impl IntoIterator<Item = (String, Window, u64, Vec<AggState>)>,
) -> HashMap<(String, Window), (u64, Vec<AggState>)> {
    let mut out: HashMap<(String, Window), (u64, Vec<AggState>)> = HashMap::new();
    for (key, w, count, states) in parts {
        let entry = out
            .entry((key, w))
            .or_insert_with(|| (0, spec.aggregates.iter().map(|(f, _)| AggState::new(*f)).collect()));
        entry.0 += count;
        for (a, b) in entry.1.iter_mut().zip(&states) {
            a.merge(b);
        }
    }
    out
}

mod slots;
#[cfg(test)]
mod tests;
