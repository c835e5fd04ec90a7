//! Drift statistics between a window and its reference, pure and table-tested against
//! `scipy.stats` / `scipy.spatial.distance` and Evidently's formulas (the oracle test in
//! `tests/tests/quality.rs` runs scipy itself).
//!
//! | method | what | as in |
//! |---|---|---|
//! | `ks` | two-sample Kolmogorov–Smirnov D and two-sided p | `scipy.stats.ks_2samp(method="auto")`: exact lattice-path p while max(n₁, n₂) ≤ 10,000 (Hodges' inside method, Viehmann's 1 − p recursion), else the Kolmogorov limit with Stephens' correction |
//! | `wasserstein` | W₁ = ∫ \|F₁ − F₂\| | `scipy.stats.wasserstein_distance` |
//! | `js` | Jensen–Shannon distance (natural log) of the binned shares | `scipy.spatial.distance.jensenshannon` over Evidently's bins |
//! | `psi` | Σ (r − c) ln(r / c) | Evidently: Sturges bins over both samples, empty bins filled with 0.0001 (or min/10⁶) |
//! | `chi2` | Pearson χ² of current counts against reference shares × n | Evidently's `chisquare` test; p from χ²(k − 1) |
//!
//! Samples are sorted values with equal weight: a window's exact values (up to
//! [`crate::profile::EXACT_VALUES`]) or, beyond, its sketch's quantile points.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// D and W₁ from one walk over both sorted samples (the ECDFs after each distinct value).
pub fn ecdf_distances(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let (mut d, mut w) = (0.0f64, 0.0f64);
    let mut prev: Option<(f64, f64)> = None; // (value, |Fa - Fb| after it)
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        if let Some((px, diff)) = prev {
            w += diff * (x - px);
        }
        let diff = (i as f64 / na - j as f64 / nb).abs();
        d = d.max(diff);
        prev = Some((x, diff));
    }
    (d, w)
}

/// A two-sample KS result; `exact` when the p-value is the exact lattice-path one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    pub statistic: f64,
    pub p_value: f64,
    pub exact: bool,
}

/// Largest sample for which the p-value is exact (scipy's `MAX_AUTO_N`).
pub const KS_EXACT_MAX: u64 = 10_000;

/// KS of two sorted samples whose true sizes are `n1`, `n2` (larger than the samples when
/// they are a sketch's quantile points: then the p-value is asymptotic).
pub fn ks(a: &[f64], b: &[f64], n1: u64, n2: u64) -> Ks {
    let (d, _) = ecdf_distances(a, b);
    let raw = a.len() as u64 == n1 && b.len() as u64 == n2;
    if raw && n1.max(n2) <= KS_EXACT_MAX && n1 > 0 && n2 > 0 {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round() as u64;
        let d = h as f64 / lcm as f64;
        if h == 0 {
            return Ks { statistic: d, p_value: 1.0, exact: true };
        }
        let p = if n1 == n2 { prob_outside_square(n1, h) } else { outer_prob_inside(n1, n2, g, h) };
        if p.is_finite() && (0.0..=1.0).contains(&p) {
            return Ks { statistic: d, p_value: p, exact: true };
        }
        return Ks { statistic: d, p_value: ks_asymptotic(d, n1, n2), exact: false };
    }
    Ks { statistic: d, p_value: ks_asymptotic(d, n1, n2), exact: false }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D_{n,n} ≥ h/n), Horner-like to avoid cancellation (scipy `_compute_prob_outside_square`).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as f64, h as i64);
    let mut p = 0.0;
    let mut k = (n / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            let (kh, j) = ((k * h) as f64, j as f64);
            p1 = (n - kh - j) * p1 / (n + kh + j + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// The share of lattice paths from (0,0) to (m,n) leaving |x/m − y/n| < h/lcm, computed as
/// 1 − p directly (scipy `_compute_outer_prob_inside_method`).
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n as i64, m as i64) } else { (m as i64, n as i64) };
    let (g, h) = (g as i64, h as i64);
    let (mg, ng) = (m / g, n / g);
    let ceil_div = |x: i64, y: i64| -> i64 { x.div_euclid(y) + i64::from(x.rem_euclid(y) != 0) };
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = a.get((jj + minj - lastminj) as usize).copied().unwrap_or(1.0);
            val = (prev * i as f64 + val * j as f64) / (i + j) as f64;
            if let Some(slot) = a.get_mut(jj as usize) {
                *slot = val;
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            for k in (maxj - minj)..(maxj - minj + (lastlen - curlen)) {
                if let Some(slot) = a.get_mut(k as usize) {
                    *slot = 1.0;
                }
            }
        }
    }
    a.get((maxj - minj - 1) as usize).copied().unwrap_or(f64::NAN)
}

/// Two-sided p of D for sizes n1, n2 from the Kolmogorov distribution at
/// (√nₑ + 0.12 + 0.11/√nₑ)·D, nₑ = n₁n₂/(n₁+n₂) (Stephens 1970).
pub fn ks_asymptotic(d: f64, n1: u64, n2: u64) -> f64 {
    let en = (n1 as f64 * n2 as f64) / (n1 + n2) as f64;
    let s = en.sqrt();
    kolmogorov_sf((s + 0.12 + 0.11 / s) * d).clamp(0.0, 1.0)
}

/// Q(λ) = P(K > λ) of the Kolmogorov distribution.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if !lambda.is_finite() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // 1 − √(2π)/λ Σ exp(−(2k−1)²π²/(8λ²)): converges fast for small λ.
        let c = -std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let s: f64 = (1..=8).map(|k| ((2 * k - 1) as f64).powi(2) * c).map(f64::exp).sum();
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s
    } else {
        let s: f64 = (1..=100)
            .map(|k| {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * (k * k) as f64 * lambda * lambda).exp()
            })
            .sum();
        2.0 * s
    }
}

/// Bin edges as `numpy.histogram_bin_edges(values, bins="sturges")` for `n` values spanning
/// [min, max].
pub fn sturges_edges(min: f64, max: f64, n: u64) -> Vec<f64> {
    let (mut first, mut last) = (min, max);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let bins = if n == 0 || max == min {
        1
    } else {
        let width = (max - min) / ((n as f64).log2() + 1.0);
        ((last - first) / width).ceil().max(1.0) as usize
    };
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| first + i as f64 * step).collect();
    if let Some(e) = edges.last_mut() {
        *e = last;
    }
    edges
}

/// Counts of `values` (each of weight `weight`) in `edges`, as `numpy.histogram` assigns them
/// (half-open bins, the last closed; values outside are not counted).
pub fn histogram(values: &[f64], weight: f64, edges: &[f64]) -> Vec<f64> {
    let bins = edges.len().saturating_sub(1);
    let mut out = vec![0.0; bins];
    if bins == 0 {
        return out;
    }
    let (first, last) = (edges[0], edges[bins]);
    let norm = bins as f64 / (last - first);
    for &x in values {
        if !(first..=last).contains(&x) {
            continue;
        }
        let mut i = (((x - first) * norm) as usize).min(bins - 1);
        if i > 0 && x < edges[i] {
            i -= 1;
        }
        if i + 1 < bins && x >= edges[i + 1] {
            i += 1;
        }
        out[i] += weight;
    }
    out
}

/// Evidently's empty-bin fill: 0.0001, or min/10⁶ of the non-empty shares when that min is
/// at most 0.0001.
fn fill_zeroes(shares: &mut [f64]) {
    let min = shares.iter().copied().filter(|&s| s != 0.0).fold(f64::INFINITY, f64::min);
    let fill = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// Population stability index of reference and current shares (each summing to ≈ 1).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let (mut r, mut c) = (reference.to_vec(), current.to_vec());
    fill_zeroes(&mut r);
    fill_zeroes(&mut c);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// Jensen–Shannon distance (natural log) of two non-negative vectors, normalised first.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp <= 0.0 || sq <= 0.0 {
        return f64::NAN;
    }
    let rel_entr = |x: f64, y: f64| if x > 0.0 && y > 0.0 { x * (x / y).ln() } else { 0.0 };
    let js: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = (a + b) / 2.0;
            rel_entr(a, m) + rel_entr(b, m)
        })
        .sum::<f64>()
        / 2.0;
    js.max(0.0).sqrt()
}

/// Pearson χ² of `observed` against `reference` counts scaled to the observed total, with its
/// p-value; `None` as the statistic when a category absent from the reference is observed
/// (infinite: p = 0). Fewer than two categories: no test (statistic 0, p 1).
pub fn chi2(reference: &[f64], observed: &[f64]) -> (Option<f64>, f64) {
    let (nr, no): (f64, f64) = (reference.iter().sum(), observed.iter().sum());
    if reference.len() < 2 || nr <= 0.0 || no <= 0.0 {
        return (Some(0.0), 1.0);
    }
    let k = no / nr;
    let mut stat = 0.0;
    for (r, o) in reference.iter().zip(observed) {
        let e = r * k;
        if e == 0.0 {
            if *o > 0.0 {
                return (None, 0.0);
            }
            continue;
        }
        stat += (o - e).powi(2) / e;
    }
    let p = ChiSquared::new((reference.len() - 1) as f64).map(|d| d.sf(stat)).unwrap_or(f64::NAN);
    (Some(stat), p)
}

/// Benjamini–Hochberg adjusted p-values (same order as given; NaN stays NaN).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    let m = idx.len() as f64;
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        out[i] = running.min(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn ks_matches_scipy_on_small_samples() {
        // (a, b, scipy.stats.ks_2samp statistic, pvalue) — values from scipy 1.17.
        let cases: &[(&[f64], &[f64], f64, f64)] = &[
            (&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 0.0, 1.0),
            (&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], 1.0, 0.028571428571428577),
            (&[1.0, 2.0, 3.0], &[2.5, 3.5, 4.5, 5.5, 6.5], 0.8, 0.14285714285714288),
            (&[0.1, 0.4, 0.7, 0.9], &[0.2, 0.3, 0.5, 0.6, 0.8, 1.0], 0.25, 0.9952380952380953),
        ];
        for (a, b, d, p) in cases {
            let r = ks(a, b, a.len() as u64, b.len() as u64);
            assert!(r.exact);
            assert!(close(r.statistic, *d, 1e-12), "{a:?} {b:?}: D {} vs {d}", r.statistic);
            assert!(close(r.p_value, *p, 1e-9), "{a:?} {b:?}: p {} vs {p}", r.p_value);
        }
    }

    #[test]
    fn wasserstein_matches_scipy() {
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        assert!(close(ecdf_distances(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).1, 5.0, 1e-12));
        // wasserstein_distance([1, 2, 3], [1, 1, 2, 4]) == 0.5
        assert!(close(ecdf_distances(&[1.0, 2.0, 3.0], &[1.0, 1.0, 2.0, 4.0]).1, 0.5, 1e-12));
    }

    #[test]
    fn sturges_edges_and_histogram_match_numpy() {
        // np.histogram_bin_edges([0, 1, 2, 3, 4, 5, 6, 7], "sturges") → 4 bins over [0, 7].
        let e = sturges_edges(0.0, 7.0, 8);
        assert_eq!(e, vec![0.0, 1.75, 3.5, 5.25, 7.0]);
        assert_eq!(histogram(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 1.0, &e), vec![2.0, 2.0, 2.0, 2.0]);
        assert_eq!(sturges_edges(3.0, 3.0, 5), vec![2.5, 3.5]);
    }

    #[test]
    fn distances_of_known_vectors() {
        // scipy.spatial.distance.jensenshannon([1, 0], [0, 1]) == sqrt(ln 2)
        assert!(close(jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]), std::f64::consts::LN_2.sqrt(), 1e-12));
        assert_eq!(jensen_shannon(&[0.3, 0.7], &[3.0, 7.0]), 0.0);
        // psi of identical shares is 0; of [0.5, 0.5] vs [0.9, 0.1]: 0.4·ln(5/9) − 0.4·ln 5
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        let want = (0.5 - 0.9) * (0.5f64 / 0.9).ln() + (0.5 - 0.1) * (0.5f64 / 0.1).ln();
        assert!(close(psi(&[0.5, 0.5], &[0.9, 0.1]), want, 1e-12));
        // scipy.stats.chisquare([16, 18, 16, 14, 12, 12], [16, 16, 16, 16, 16, 8]) → 3.5, 0.6233876277495822
        let (s, p) = chi2(&[16.0, 16.0, 16.0, 16.0, 16.0, 8.0], &[16.0, 18.0, 16.0, 14.0, 12.0, 12.0]);
        assert!(close(s.unwrap(), 3.5, 1e-12) && close(p, 0.6233876277495822, 1e-9), "{s:?} {p}");
        assert_eq!(chi2(&[5.0, 0.0], &[4.0, 1.0]), (None, 0.0));
    }

    #[test]
    fn benjamini_hochberg_matches_statsmodels() {
        // statsmodels multipletests([0.01, 0.04, 0.03, 0.005], method="fdr_bh")
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
        for (a, b) in q.iter().zip([0.02, 0.04, 0.04, 0.02]) {
            assert!(close(*a, b, 1e-12), "{q:?}");
        }
    }

    #[test]
    fn kolmogorov_limit_is_continuous_across_its_two_series() {
        let (lo, hi) = (kolmogorov_sf(1.18 - 1e-9), kolmogorov_sf(1.18 + 1e-9));
        assert!((lo - hi).abs() < 1e-8, "{lo} {hi}");
        // Q(1.36) ≈ 0.0494 (the classical 5 % critical value)
        assert!((kolmogorov_sf(1.36) - 0.0494).abs() < 5e-4);
    }
}
