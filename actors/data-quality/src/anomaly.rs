//! Anomalies on a per-window metric series, judged against the windows before it:
//!
//! - `mad`: robust z = 0.6745 (x − median) / MAD (Iglewicz & Hoaglin), anomalous beyond 3.5.
//! - `ewma`: exponentially weighted mean and variance (α = 0.3); z = (x − mean) / σ, beyond 3.
//! - `holt_winters`: additive level, trend and season (α = 0.3, β = 0.05, γ = 0.1, fixed), the
//!   one-step forecast against x, z = residual / σ of the earlier one-step residuals, beyond 3.
//!
//! With fewer than [`MIN_HISTORY`] earlier windows (Holt-Winters: two seasons) the answer is
//! `insufficient_history`, never a guess. A flat history (MAD or σ of 0) flags only a value
//! that differs from it.

use serde::Serialize;

use crate::monitor::AnomalyMethod;

pub const MIN_HISTORY: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub anomalous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn decide(value: f64, expected: f64, spread: f64, threshold: f64) -> Judgement {
    let (score, anomalous) = if spread > 0.0 {
        let z = (value - expected) / spread;
        (Some(z), z.abs() > threshold)
    } else {
        (None, (value - expected).abs() > 1e-9 * (1.0 + expected.abs()))
    };
    Judgement { value, expected: Some(expected), score, anomalous, reason: None }
}

/// Judges `value` against `history` (oldest first), without a noise floor (the tests' form).
#[cfg(test)]
pub fn judge(
    method: AnomalyMethod,
    history: &[f64],
    value: f64,
    threshold: Option<f64>,
    season: Option<usize>,
) -> Judgement {
    judge_with_noise(method, history, value, threshold, season, &|_| 0.0)
}

/// [`judge`] with a floor under the spread: `noise(expected)` is the sampling noise of the
/// metric itself (a rate over n records: √(p(1 − p)/n); a count: √expected), so a history
/// that happens to be flat or quiet does not turn ordinary sampling noise into an anomaly.
pub fn judge_with_noise(
    method: AnomalyMethod,
    history: &[f64],
    value: f64,
    threshold: Option<f64>,
    season: Option<usize>,
    noise: &dyn Fn(f64) -> f64,
) -> Judgement {
    let decide = |value: f64, expected: f64, spread: f64, threshold: f64| {
        decide(value, expected, spread.max(noise(expected)), threshold)
    };
    let insufficient =
        Judgement { value, expected: None, score: None, anomalous: false, reason: Some("insufficient_history") };
    match method {
        AnomalyMethod::Mad => {
            if history.len() < MIN_HISTORY {
                return insufficient;
            }
            let mut h = history.to_vec();
            let med = median(&mut h);
            let mut dev: Vec<f64> = history.iter().map(|x| (x - med).abs()).collect();
            let mad = median(&mut dev);
            // robust z = 0.6745 (x − med) / MAD  ⇔  (x − med) / (MAD / 0.6745)
            decide(value, med, mad / 0.6745, threshold.unwrap_or(3.5))
        }
        AnomalyMethod::Ewma => {
            if history.len() < MIN_HISTORY {
                return insufficient;
            }
            let alpha = 0.3;
            let (mut mean, mut var) = (history[0], 0.0);
            for &x in &history[1..] {
                let diff = x - mean;
                let incr = alpha * diff;
                mean += incr;
                var = (1.0 - alpha) * (var + diff * incr);
            }
            decide(value, mean, var.sqrt(), threshold.unwrap_or(3.0))
        }
        AnomalyMethod::HoltWinters => {
            let Some(s) = season.filter(|&s| s >= 2) else { return insufficient };
            if history.len() < 2 * s {
                return insufficient;
            }
            let (alpha, beta, gamma) = (0.3, 0.05, 0.1);
            let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
            let mut level = mean(&history[..s]);
            let mut trend = (mean(&history[s..2 * s]) - level) / s as f64;
            let mut seasonal: Vec<f64> = history[..s].iter().map(|x| x - level).collect();
            let mut residuals = Vec::new();
            for (t, &x) in history.iter().enumerate().skip(s) {
                let forecast = level + trend + seasonal[t % s];
                residuals.push(x - forecast);
                let last_level = level;
                level = alpha * (x - seasonal[t % s]) + (1.0 - alpha) * (level + trend);
                trend = beta * (level - last_level) + (1.0 - beta) * trend;
                seasonal[t % s] = gamma * (x - level) + (1.0 - gamma) * seasonal[t % s];
            }
            let forecast = level + trend + seasonal[history.len() % s];
            let rm = mean(&residuals);
            let sd = (residuals.iter().map(|r| (r - rm).powi(2)).sum::<f64>() / residuals.len() as f64).sqrt();
            decide(value, forecast, sd, threshold.unwrap_or(3.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_flags_a_jump_and_passes_the_usual() {
        let history: Vec<f64> =
            (0..48).map(|i| 1000.0 + [0.0, 12.0, -7.0, 5.0, -10.0, 3.0][i % 6] + ((i * 7) % 5) as f64 - 2.0).collect();
        for m in [AnomalyMethod::Mad, AnomalyMethod::Ewma, AnomalyMethod::HoltWinters] {
            let season = Some(6);
            assert!(!judge(m, &history, 1001.0, None, season).anomalous, "{m:?} usual");
            let j = judge(m, &history, 1400.0, None, season);
            assert!(j.anomalous && j.score.unwrap() > 3.0, "{m:?} jump: {j:?}");
        }
    }

    #[test]
    fn holt_winters_follows_the_season_where_mad_cannot() {
        // A strong daily pattern: the trough value is normal at a trough, abnormal at a peak.
        let pattern = [100.0, 400.0, 900.0, 400.0];
        let history: Vec<f64> = (0..40).map(|i| pattern[i % 4] + (i % 3) as f64).collect();
        // next index 40 is a trough (pattern[0])
        assert!(!judge(AnomalyMethod::HoltWinters, &history, 101.0, None, Some(4)).anomalous);
        assert!(judge(AnomalyMethod::HoltWinters, &history, 900.0, None, Some(4)).anomalous);
    }

    #[test]
    fn short_or_flat_histories_are_stated() {
        let j = judge(AnomalyMethod::Mad, &[1.0, 2.0], 100.0, None, None);
        assert_eq!((j.anomalous, j.reason), (false, Some("insufficient_history")));
        let j = judge(AnomalyMethod::HoltWinters, &[1.0; 10], 1.0, None, Some(6));
        assert_eq!(j.reason, Some("insufficient_history"));
        let flat = [5.0; 20];
        assert!(!judge(AnomalyMethod::Mad, &flat, 5.0, None, None).anomalous);
        assert!(judge(AnomalyMethod::Mad, &flat, 6.0, None, None).anomalous);
    }
}
