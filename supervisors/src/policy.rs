//! Restart policy and budget: pure logic deciding, at each failure, whether to restart a child
//! (and after which backoff) or to escalate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a supervisor treats one child's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more failure escalates.
    pub max_restarts: u32,
    pub window: Duration,
    /// Delay before the first restart in a window; doubles with each further one.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Restart { delay: Duration },
    Escalate { restarts_in_window: usize },
}

/// The restarts a child has used within the current window.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartBudget { policy, recent: VecDeque::new() }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        while let Some(&oldest) = self.recent.front() {
            if now.duration_since(oldest) >= self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return Decision::Escalate { restarts_in_window: self.recent.len() };
        }
        self.recent.push_back(now);
        let exponent = (self.recent.len() - 1).min(31) as u32;
        let delay = self
            .policy
            .backoff_initial
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.policy.backoff_max)
            .min(self.policy.backoff_max);
        Decision::Restart { delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32) -> RestartPolicy {
        RestartPolicy {
            max_restarts: max,
            window: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
        }
    }

    /// (failure times in ms since start, expected decisions)
    #[test]
    fn budget_decisions() {
        use Decision::*;
        let ms = Duration::from_millis;
        let cases: &[(u32, &[u64], &[Decision])] = &[
            // backoff doubles and is capped
            (
                5,
                &[0, 1, 2, 3],
                &[
                    Restart { delay: ms(100) },
                    Restart { delay: ms(200) },
                    Restart { delay: ms(400) },
                    Restart { delay: ms(500) },
                ],
            ),
            // budget of 2: the third failure in the window escalates
            (
                2,
                &[0, 1_000, 2_000],
                &[Restart { delay: ms(100) }, Restart { delay: ms(200) }, Escalate { restarts_in_window: 2 }],
            ),
            // failures older than the window no longer count, and backoff resets
            (
                2,
                &[0, 1_000, 12_000],
                &[Restart { delay: ms(100) }, Restart { delay: ms(200) }, Restart { delay: ms(100) }],
            ),
            // a budget of zero escalates at once
            (0, &[0], &[Escalate { restarts_in_window: 0 }]),
        ];
        for (max, times, want) in cases {
            let start = Instant::now();
            let mut budget = RestartBudget::new(policy(*max));
            let got: Vec<Decision> = times.iter().map(|t| budget.on_failure(start + ms(*t))).collect();
            assert_eq!(&got, want, "max {max}, times {times:?}");
        }
    }
}
