//! Drift of one profile against its reference, field by field and method by method
//! (`stats.rs` does the arithmetic). A test decides `drifted` only with enough data on both
//! sides (`min_samples`), an effect at least `min_effect` (KS D, or the total-variation
//! distance of category shares) and a p-value below the threshold after Benjamini–Hochberg
//! correction across the comparison's tests; distances (psi, js, normed wasserstein) decide by
//! their threshold.

use serde::Serialize;

use crate::monitor::{Method, Monitor};
use crate::profile::{FieldProfile, WindowProfile};
use crate::stats;

#[derive(Debug, Clone, Serialize)]
pub struct DriftEntry {
    pub field: String,
    pub method: &'static str,
    /// Null when undefined (`insufficient_data`, or χ² with a category the reference lacks).
    pub statistic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The p-value after Benjamini–Hochberg across this comparison's tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    pub threshold: f64,
    pub n: u64,
    pub n_reference: u64,
    pub drifted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    /// Wasserstein: the raw W₁ (the statistic is W₁ / σ of the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f64>,
    /// KS: whether the p-value is exact (both samples are values, n ≤ 10,000) or asymptotic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Shares of (reference, current) over shared bins: Sturges bins for numbers, the union of
/// categories (and `other`) for the rest. Also the raw counts (χ²).
fn binned(cur: &FieldProfile, reference: &FieldProfile, numeric: bool) -> (Vec<f64>, Vec<f64>) {
    if numeric {
        let (a, b) = (&reference.numeric, &cur.numeric);
        let edges = stats::sturges_edges(a.min.min(b.min), a.max.max(b.max), a.n + b.n);
        let (sa, sb) = (a.sample().0, b.sample().0);
        let ha = stats::histogram(&sa, a.n as f64 / sa.len().max(1) as f64, &edges);
        let hb = stats::histogram(&sb, b.n as f64 / sb.len().max(1) as f64, &edges);
        return (ha, hb);
    }
    let (a, b) = (&reference.categorical, &cur.categorical);
    let mut keys: Vec<&String> = a.counts.keys().chain(b.counts.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut ra: Vec<f64> = keys.iter().map(|k| a.counts.get(*k).copied().unwrap_or(0) as f64).collect();
    let mut rb: Vec<f64> = keys.iter().map(|k| b.counts.get(*k).copied().unwrap_or(0) as f64).collect();
    if a.other + b.other > 0 {
        ra.push(a.other as f64);
        rb.push(b.other as f64);
    }
    (ra, rb)
}

fn shares(counts: &[f64], n: u64) -> Vec<f64> {
    counts.iter().map(|c| c / n.max(1) as f64).collect()
}

/// Every configured (field, method) of the monitor's drift spec, `cur` against `reference`.
pub fn compare(monitor: &Monitor, cur: &WindowProfile, reference: &WindowProfile) -> Vec<DriftEntry> {
    let Some(spec) = &monitor.spec.drift else { return Vec::new() };
    let empty = FieldProfile::default();
    let mut out = Vec::new();
    for field in &spec.fields {
        let c = cur.fields.get(field).unwrap_or(&empty);
        let r = reference.fields.get(field).unwrap_or(&empty);
        let numeric = if r.values() > 0 { r.is_numeric() } else { c.is_numeric() };
        let (n, n_ref) =
            if numeric { (c.numeric.n, r.numeric.n) } else { (c.categorical.total(), r.categorical.total()) };
        for &method in &spec.methods {
            if (numeric && !method.numeric()) || (!numeric && !method.categorical()) {
                continue;
            }
            let mut e = DriftEntry {
                field: field.clone(),
                method: method.name(),
                statistic: None,
                p_value: None,
                p_adjusted: None,
                threshold: monitor.threshold(method),
                n,
                n_reference: n_ref,
                drifted: false,
                effect: None,
                distance: None,
                exact: None,
                reason: None,
            };
            if n < spec.min_samples.max(1) || n_ref < spec.min_samples.max(1) {
                e.reason = Some("insufficient_data");
                out.push(e);
                continue;
            }
            match method {
                Method::Ks => {
                    // Beyond EXACT_VALUES a side is a uniform sample of its values: the test is
                    // run on the samples with their own sizes, so the p-value stays valid.
                    let ((a, all_a), (b, all_b)) = (r.numeric.sample(), c.numeric.sample());
                    let ks = stats::ks(&a, &b, a.len() as u64, b.len() as u64);
                    e.statistic = finite(ks.statistic);
                    e.p_value = finite(ks.p_value);
                    e.effect = e.statistic;
                    e.exact = Some(ks.exact && all_a && all_b);
                }
                Method::Wasserstein => {
                    let (a, b) = (r.numeric.sample().0, c.numeric.sample().0);
                    let w = stats::ecdf_distances(&a, &b).1;
                    // Evidently's normed W₁: divided by the reference's population σ.
                    let sd = r.numeric.std().map(|s| s * ((n_ref - 1) as f64 / n_ref as f64).sqrt());
                    e.distance = finite(w);
                    e.statistic = match sd {
                        Some(sd) if sd > 0.0 => finite(w / sd),
                        _ => finite(if w == 0.0 { 0.0 } else { f64::INFINITY }),
                    };
                    e.drifted = e.statistic.is_none_or(|s| s >= e.threshold);
                }
                Method::Psi | Method::Js => {
                    let (ra, rb) = binned(c, r, numeric);
                    let (pa, pb) = (shares(&ra, n_ref), shares(&rb, n));
                    let s = if method == Method::Psi { stats::psi(&pa, &pb) } else { stats::jensen_shannon(&pa, &pb) };
                    e.statistic = finite(s);
                    e.drifted = e.statistic.is_some_and(|s| s >= e.threshold);
                }
                Method::Chi2 => {
                    let (ra, rb) = binned(c, r, false);
                    let (s, p) = stats::chi2(&ra, &rb);
                    e.statistic = s.and_then(finite);
                    e.p_value = finite(p);
                    let (pa, pb) = (shares(&ra, n_ref), shares(&rb, n));
                    e.effect = Some(pa.iter().zip(&pb).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0);
                }
            }
            out.push(e);
        }
    }
    // Benjamini–Hochberg over this comparison's tests, then the decision.
    let tested: Vec<usize> = (0..out.len()).filter(|&i| out[i].p_value.is_some()).collect();
    let adjusted =
        stats::benjamini_hochberg(&tested.iter().map(|&i| out[i].p_value.unwrap_or(1.0)).collect::<Vec<_>>());
    for (&i, q) in tested.iter().zip(adjusted) {
        let e = &mut out[i];
        e.p_adjusted = finite(q);
        e.drifted = q < e.threshold && e.effect.is_some_and(|x| x >= spec.min_effect);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::monitor::MonitorSpec;
    use crate::profile::FieldRule;

    fn monitor(methods: &[&str]) -> Monitor {
        let spec: MonitorSpec = serde_json::from_value(json!({"id": "m", "window": "10m",
            "drift": {"fields": ["/x", "/c"], "methods": methods}}))
        .unwrap();
        Monitor::compile(spec, 1).unwrap()
    }

    /// A deterministic pseudo-normal sample (sum of 12 uniforms − 6).
    fn normal(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut u = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).map(|_| mean + sd * ((0..12).map(|_| u()).sum::<f64>() - 6.0)).collect()
    }

    fn window(xs: &[f64], cats: &[&str]) -> WindowProfile {
        let mut w = WindowProfile::default();
        let rule = FieldRule::default();
        for x in xs {
            w.fields.entry("/x".into()).or_default().add(Some(&json!(x)), &rule);
        }
        for c in cats {
            w.fields.entry("/c".into()).or_default().add(Some(&json!(c)), &rule);
        }
        w.count = xs.len().max(cats.len()) as u64;
        w
    }

    fn decisions(entries: &[DriftEntry]) -> Vec<(String, &'static str, bool)> {
        entries.iter().map(|e| (e.field.clone(), e.method, e.drifted)).collect()
    }

    #[test]
    fn a_shift_of_half_a_sigma_drifts_and_the_same_distribution_does_not() {
        let m = monitor(&["ks", "psi", "wasserstein", "js", "chi2"]);
        let cats: Vec<&str> = (0..2000).map(|i| ["ios", "android", "android", "web"][i % 4]).collect();
        let reference = window(&normal(2000, 50.0, 5.0, 1), &cats);
        let same = window(&normal(2000, 50.0, 5.0, 2), &cats);
        let shifted = window(&normal(2000, 52.5, 5.0, 3), &cats);
        let quiet = compare(&m, &same, &reference);
        assert!(quiet.iter().all(|e| !e.drifted), "{:?}", decisions(&quiet));
        let loud = compare(&m, &shifted, &reference);
        let ks = loud.iter().find(|e| e.field == "/x" && e.method == "ks").unwrap();
        assert!(ks.drifted && ks.exact == Some(true) && ks.p_value.unwrap() < 1e-6, "{ks:?}");
        assert!(loud.iter().filter(|e| e.field == "/c").all(|e| !e.drifted));
        // categorical fields get psi, js and chi2; numeric ones psi, ks, js and wasserstein
        assert_eq!(loud.iter().filter(|e| e.field == "/c").count(), 3);
        assert_eq!(loud.iter().filter(|e| e.field == "/x").count(), 4);
    }

    #[test]
    fn a_new_category_at_ten_percent_drifts() {
        let m = monitor(&["chi2", "psi"]);
        let old: Vec<&str> = (0..2000).map(|i| ["a", "b"][i % 2]).collect();
        let new: Vec<&str> = (0..2000).map(|i| if i % 10 == 0 { "c" } else { ["a", "b"][i % 2] }).collect();
        let out = compare(&m, &window(&[], &new), &window(&[], &old));
        let chi2 = out.iter().find(|e| e.field == "/c" && e.method == "chi2").unwrap();
        assert!(chi2.drifted && chi2.statistic.is_none() && chi2.p_value == Some(0.0), "{chi2:?}");
        assert!(out.iter().find(|e| e.field == "/c" && e.method == "psi").unwrap().drifted);
    }

    #[test]
    fn too_little_data_is_stated_never_decided() {
        let m = monitor(&["ks"]);
        let out = compare(&m, &window(&normal(50, 0.0, 1.0, 1), &[]), &window(&[], &[]));
        assert_eq!(out[0].reason, Some("insufficient_data"));
        assert!(!out[0].drifted && out[0].statistic.is_none());
    }

    #[test]
    fn a_tiny_shift_in_a_huge_stream_is_not_flagged() {
        // 50,000 values each side (sketch mode): a 0.02σ shift is significant but below min_effect.
        let m = monitor(&["ks"]);
        let out = compare(&m, &window(&normal(50_000, 0.02, 1.0, 5), &[]), &window(&normal(50_000, 0.0, 1.0, 6), &[]));
        assert_eq!(out[0].exact, Some(false));
        assert!(!out[0].drifted, "{:?}", out[0]);
    }
}
