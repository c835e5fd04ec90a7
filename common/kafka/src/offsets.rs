//! At-least-once offset tracking for one partition (pure logic). Records start in offset order
//! and finish in any order; the committable offset is the first record not fully processed, so a
//! commit never passes a gap: everything below it is done, whatever finished after it.

use std::collections::BTreeSet;

#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset started.
    next: Option<i64>,
    /// The last committable offset reported, to report only advances.
    reported: Option<i64>,
}

impl OffsetTracker {
    /// A record was handed to processing.
    pub fn start(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A record is fully processed (produced and acknowledged, or dead-lettered).
    pub fn finish(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The offset to commit: the first record not fully processed, or one past the last
    /// started when all are done. `None` before any record.
    pub fn committable(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }

    /// The committable offset when it moved forward since the last call.
    pub fn advance(&mut self) -> Option<i64> {
        let now = self.committable()?;
        if self.reported.is_some_and(|r| r >= now) {
            return None;
        }
        self.reported = Some(now);
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_never_pass_a_gap() {
        // (started, finished, committable after)
        let cases: &[(&[i64], &[i64], Option<i64>)] = &[
            (&[], &[], None),
            (&[5], &[], Some(5)),
            (&[5], &[5], Some(6)),
            (&[5, 6, 7], &[6, 7], Some(5)),
            (&[5, 6, 7], &[5, 7], Some(6)),
            (&[5, 6, 7], &[5, 6], Some(7)),
            (&[5, 6, 7], &[7, 6, 5], Some(8)),
            // offsets with holes (compacted topics, transaction markers)
            (&[10, 13, 20], &[10], Some(13)),
            (&[10, 13, 20], &[10, 13, 20], Some(21)),
        ];
        for (started, finished, want) in cases {
            let mut t = OffsetTracker::default();
            started.iter().for_each(|o| t.start(*o));
            finished.iter().for_each(|o| t.finish(*o));
            assert_eq!(t.committable(), *want, "started {started:?} finished {finished:?}");
            assert_eq!(t.in_flight(), started.len() - finished.len());
        }
    }

    #[test]
    fn advances_are_reported_once() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.advance(), None);
        t.start(0);
        t.start(1);
        assert_eq!(t.advance(), Some(0));
        assert_eq!(t.advance(), None);
        t.finish(1);
        assert_eq!(t.advance(), None);
        t.finish(0);
        assert_eq!(t.advance(), Some(2));
    }
}
