//! Watermarks: how far event time has progressed. A source partition's watermark is the largest
//! event time it has delivered (a window closes when the watermark passes its end plus the
//! allowed lateness, so disorder up to the lateness is absorbed). A job's watermark over several
//! partitions is the minimum over the *active* ones: a partition that delivered nothing for
//! `idle_timeout` (processing time) stops holding the others back, and an idle partition's own
//! windows close by the combined watermark. Optional per-key watermarks work the same way one
//! level down (a slow device does not hold back the others).

use std::collections::HashMap;
use std::hash::Hash;

/// Largest event time seen per member (partition or key) and when it was last active.
#[derive(Debug, Clone)]
pub struct Watermarks<K> {
    members: HashMap<K, Member>,
    idle_timeout_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    max_event_ms: i64,
    last_active_ms: i64,
}

/// No event time seen yet.
pub const NONE: i64 = i64::MIN;

impl<K: Hash + Eq + Clone> Watermarks<K> {
    pub fn new(idle_timeout_ms: i64) -> Self {
        Watermarks { members: HashMap::new(), idle_timeout_ms }
    }

    /// Records an event of `member` at event time `event_ms`, seen at processing time `now_ms`.
    pub fn observe(&mut self, member: K, event_ms: i64, now_ms: i64) {
        let m = self.members.entry(member).or_insert(Member { max_event_ms: NONE, last_active_ms: now_ms });
        m.max_event_ms = m.max_event_ms.max(event_ms);
        m.last_active_ms = m.last_active_ms.max(now_ms);
    }

    /// Marks `member` active without an event (a partition just assigned), so it holds the
    /// combined watermark back until it delivers or goes idle.
    pub fn touch(&mut self, member: K, now_ms: i64) {
        self.members.entry(member).or_insert(Member { max_event_ms: NONE, last_active_ms: now_ms }).last_active_ms =
            now_ms;
    }

    pub fn remove(&mut self, member: &K) {
        self.members.remove(member);
    }

    fn idle(&self, m: &Member, now_ms: i64) -> bool {
        now_ms - m.last_active_ms >= self.idle_timeout_ms
    }

    /// The member's own watermark ([`NONE`] if it has delivered nothing).
    pub fn own(&self, member: &K) -> i64 {
        self.members.get(member).map_or(NONE, |m| m.max_event_ms)
    }

    /// The combined watermark: the minimum over active members; when all are idle, the maximum
    /// over all (nothing is left to wait for).
    pub fn combined(&self, now_ms: i64) -> i64 {
        let active = self.members.values().filter(|m| !self.idle(m, now_ms)).map(|m| m.max_event_ms).min();
        match active {
            Some(min) => min,
            None => self.members.values().map(|m| m.max_event_ms).max().unwrap_or(NONE),
        }
    }

    /// The watermark that closes `member`'s windows: its own, or — once it is idle — at least the
    /// combined watermark of the others.
    pub fn effective(&self, member: &K, now_ms: i64) -> i64 {
        match self.members.get(member) {
            None => self.combined(now_ms),
            Some(m) if self.idle(m, now_ms) => m.max_event_ms.max(self.combined(now_ms)),
            Some(m) => m.max_event_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Every member's own watermark.
    pub fn marks(&self) -> impl Iterator<Item = (&K, i64)> {
        self.members.iter().map(|(k, m)| (k, m.max_event_ms))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps: (member, event time or None for a touch, processing time) and the expected
    /// combined watermark and effective watermark of member 0 after each step.
    #[test]
    fn watermark_progress_table() {
        let idle = 1_000;
        let steps: &[(u8, Option<i64>, i64, i64, i64)] = &[
            // member, event, now, combined, effective(0)
            (0, Some(100), 0, 100, 100),
            (1, Some(50), 0, 50, 100),
            (0, Some(300), 10, 50, 300),
            (1, Some(40), 20, 50, 300), // older events never move a watermark back
            (1, Some(200), 30, 200, 300),
            (2, None, 40, NONE, 300), // a new partition holds the job back until it delivers
            (2, Some(250), 50, 200, 300),
            // member 1 goes idle at 1030: combined = min(active 0, 2)
            (0, Some(310), 1_040, 250, 310),
            (2, Some(260), 1_045, 260, 310),
            // 1 and 2 idle
            (0, None, 5_000, 310, 310), // only 0 is active
        ];
        let mut w = Watermarks::new(idle);
        for (i, &(member, event, now, combined, effective0)) in steps.iter().enumerate() {
            match event {
                Some(t) => w.observe(member, t, now),
                None => w.touch(member, now),
            }
            assert_eq!(w.combined(now), combined, "step {i}: combined");
            assert_eq!(w.effective(&0, now), effective0, "step {i}: effective of 0");
        }
        // all idle
        assert_eq!(w.combined(10_000), 310);
    }

    #[test]
    fn an_idle_member_closes_by_the_others() {
        let mut w = Watermarks::new(1_000);
        w.observe("slow", 100, 0);
        w.observe("fast", 5_000, 0);
        assert_eq!(w.effective(&"slow", 500), 100);
        w.observe("fast", 9_000, 2_000);
        // slow has been idle for 2 s: its windows close by the fast one's progress
        assert_eq!(w.effective(&"slow", 2_000), 9_000);
        assert_eq!(w.combined(2_000), 9_000);
        w.remove(&"fast");
        assert_eq!(w.len(), 1);
        assert_eq!(w.effective(&"unknown", 2_000), 100);
    }
}
