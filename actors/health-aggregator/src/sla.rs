//! SLA monitoring: per service, availability over rolling windows (1 h, 24 h, 30 d) from
//! periodic samples, and the error-budget burn rate against an objective (burn 1.0 spends the
//! budget exactly over the window; above it, faster). A service counts as available at a sample
//! when at least one node reports it passing — any node answers any request. Samples land in
//! fixed-size bucket rings (minutes for 1 h and 24 h, hours for 30 d), so memory is bounded.
//! Pure logic with table tests; `stream.rs` samples and publishes. Kept in memory: a restart
//! starts the windows afresh.

use serde::Serialize;

/// The default objective (99.9 %).
pub const DEFAULT_OBJECTIVE: f64 = 0.999;

/// A ring of `len` buckets of `width` seconds each.
#[derive(Debug, Clone)]
struct Ring {
    width: u64,
    buckets: Vec<(u64, u32, u32)>, // (bucket index, good, total)
}

impl Ring {
    fn new(width: u64, len: usize) -> Ring {
        Ring { width, buckets: vec![(u64::MAX, 0, 0); len] }
    }

    fn record(&mut self, now: u64, good: bool) {
        let index = now / self.width;
        let len = self.buckets.len() as u64;
        let slot = &mut self.buckets[(index % len) as usize];
        if slot.0 != index {
            *slot = (index, 0, 0);
        }
        slot.1 += u32::from(good);
        slot.2 += 1;
    }

    /// (good, total) over the last `len` buckets ending at `now`.
    fn sum(&self, now: u64) -> (u64, u64) {
        let current = now / self.width;
        let oldest = current.saturating_sub(self.buckets.len() as u64 - 1);
        self.buckets
            .iter()
            .filter(|(i, _, _)| *i != u64::MAX && *i >= oldest && *i <= current)
            .fold((0, 0), |(g, t), (_, good, total)| (g + u64::from(*good), t + u64::from(*total)))
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowReport {
    pub window: &'static str,
    /// `None` until the window has a sample.
    pub availability: Option<f64>,
    pub burn_rate: Option<f64>,
    pub samples: u64,
}

/// The windows of one service.
#[derive(Debug, Clone)]
pub struct Tracker {
    rings: [(&'static str, Ring); 3],
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker { rings: [("1h", Ring::new(60, 60)), ("24h", Ring::new(60, 1440)), ("30d", Ring::new(3600, 720))] }
    }
}

impl Tracker {
    pub fn record(&mut self, now_secs: u64, available: bool) {
        for (_, ring) in &mut self.rings {
            ring.record(now_secs, available);
        }
    }

    pub fn report(&self, now_secs: u64, objective: f64) -> Vec<WindowReport> {
        self.rings
            .iter()
            .map(|(name, ring)| {
                let (good, total) = ring.sum(now_secs);
                let availability = (total > 0).then(|| good as f64 / total as f64);
                let budget = (1.0 - objective).max(f64::EPSILON);
                WindowReport {
                    window: name,
                    availability,
                    burn_rate: availability.map(|a| ((1.0 - a) / budget * 1000.0).round() / 1000.0),
                    samples: total,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_roll_and_burn_rates_follow_the_budget() {
        let mut t = Tracker::default();
        let start = 1_800_000_000u64;
        // 50 minutes up, 10 minutes down, one sample a minute.
        for m in 0..60 {
            t.record(start + m * 60, m < 50);
        }
        let now = start + 59 * 60;
        let r = t.report(now, 0.99);
        // (window, availability, burn rate)
        let want = [("1h", 50.0 / 60.0, 16.667), ("24h", 50.0 / 60.0, 16.667), ("30d", 50.0 / 60.0, 16.667)];
        for (got, (w, a, b)) in r.iter().zip(want) {
            assert_eq!(got.window, w);
            assert!((got.availability.unwrap() - a).abs() < 1e-9, "{got:?}");
            assert!((got.burn_rate.unwrap() - b).abs() < 0.01, "{got:?}");
        }
        // Two hours later the 1 h window has only the new (good) samples.
        for m in 0..60 {
            t.record(now + 3600 + m * 60, true);
        }
        let later = t.report(now + 3600 + 59 * 60, 0.99);
        assert_eq!(later[0].availability, Some(1.0));
        assert_eq!(later[0].burn_rate, Some(0.0));
        assert!(later[1].availability.unwrap() < 1.0, "24 h still remembers the outage");
        assert_eq!(Tracker::default().report(now, 0.999)[0].availability, None);
    }
}
