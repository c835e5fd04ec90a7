//! Aggregate functions as mergeable states. Every state can absorb one value and merge another
//! state of the same function, so hopping windows, session merges, partial results of batches
//! and cross-partition rollups all reuse partial states. Finishing a state gives the JSON value.
//!
//! | fn | state | error |
//! |---|---|---|
//! | count, rate | events | exact (rate = count / window seconds) |
//! | sum, avg | Neumaier-compensated sum + count | float rounding only, any order |
//! | min, max | extremum | exact |
//! | variance, stddev | Welford/Chan moments (sample, n − 1; null below 2 values) | float rounding |
//! | first, last | (event time, value), ties by value | exact, order-independent |
//! | count_distinct | HyperLogLog++ (precision 12: exact while sparse, ≈1.6 % standard error beyond) | |
//! | percentile(q) | DDSketch, relative accuracy 1 % | value within ±1 % of the true rank-q value |

use std::hash::BuildHasher;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// An aggregate function as written in a job spec.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Variance,
    Stddev,
    First,
    Last,
    CountDistinct,
    Percentile,
    Rate,
}

impl AggFn {
    /// Whether the function reads a field, and whether that field must be a number.
    pub fn needs_field(self) -> bool {
        !matches!(self, AggFn::Count | AggFn::Rate)
    }

    pub fn numeric(self) -> bool {
        matches!(
            self,
            AggFn::Sum | AggFn::Min | AggFn::Max | AggFn::Avg | AggFn::Variance | AggFn::Stddev | AggFn::Percentile
        )
    }
}

/// DDSketch relative accuracy of `percentile`.
pub const PERCENTILE_RELATIVE_ACCURACY: f64 = 0.01;
/// HyperLogLog++ precision of `count_distinct` (2^12 registers once dense).
pub const DISTINCT_PRECISION: u8 = 12;

/// A fixed hasher (xxh3, no random seed) so sketches built on different nodes merge.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StableHasher;

impl BuildHasher for StableHasher {
    type Hasher = xxhash_rust::xxh3::Xxh3;
    fn build_hasher(&self) -> Self::Hasher {
        xxhash_rust::xxh3::Xxh3::new()
    }
}

pub type Distinct = HyperLogLogPlus<String, StableHasher>;

/// A compensated (Neumaier) sum: the same result to rounding in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub sum: f64,
    pub compensation: f64,
    pub n: u64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
        self.n += 1;
    }

    fn merge(&mut self, o: &Sum) {
        let n = self.n + o.n;
        self.add(o.sum);
        self.add(o.compensation);
        self.n = n;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The partial state of one aggregate in one window.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggState {
    Count(u64),
    Sum(Sum),
    Min(Option<f64>),
    Max(Option<f64>),
    Moments { n: u64, mean: f64, m2: f64 },
    First(Option<(i64, Value)>),
    Last(Option<(i64, Value)>),
    Distinct(Box<Distinct>),
    Quantile(Box<DDSketch>),
}

impl std::fmt::Debug for AggState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AggState::Distinct(_) => f.write_str("Distinct(..)"),
            AggState::Quantile(q) => write!(f, "Quantile(n={})", q.count()),
            AggState::Count(n) => write!(f, "Count({n})"),
            AggState::Sum(s) => write!(f, "Sum({s:?})"),
            AggState::Min(v) => write!(f, "Min({v:?})"),
            AggState::Max(v) => write!(f, "Max({v:?})"),
            AggState::Moments { n, mean, m2 } => write!(f, "Moments({n}, {mean}, {m2})"),
            AggState::First(v) => write!(f, "First({v:?})"),
            AggState::Last(v) => write!(f, "Last({v:?})"),
        }
    }
}

/// A value an aggregate absorbs: the field's number (numeric functions) or its JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    None,
    Number(f64),
    Json(Value),
}

/// Orders JSON values deterministically for first/last ties (their canonical text).
fn tie_key(v: &Value) -> String {
    v.to_string()
}

fn earlier(a: &(i64, Value), b: &(i64, Value)) -> bool {
    (a.0, tie_key(&a.1)) < (b.0, tie_key(&b.1))
}

impl AggState {
    pub fn new(f: AggFn) -> AggState {
        match f {
            AggFn::Count | AggFn::Rate => AggState::Count(0),
            AggFn::Sum | AggFn::Avg => AggState::Sum(Sum::default()),
            AggFn::Min => AggState::Min(None),
            AggFn::Max => AggState::Max(None),
            AggFn::Variance | AggFn::Stddev => AggState::Moments { n: 0, mean: 0.0, m2: 0.0 },
            AggFn::First => AggState::First(None),
            AggFn::Last => AggState::Last(None),
            AggFn::CountDistinct => AggState::Distinct(Box::new(
                Distinct::new(DISTINCT_PRECISION, StableHasher).expect("precision in 4..=18"),
            )),
            AggFn::Percentile => AggState::Quantile(Box::new(DDSketch::new(sketch_config()))),
        }
    }

    /// Absorbs one event's input at event time `ts`.
    pub fn add(&mut self, ts: i64, input: &Input) {
        match (self, input) {
            (AggState::Count(n), _) => *n += 1,
            (AggState::Sum(s), Input::Number(x)) => s.add(*x),
            (AggState::Min(m), Input::Number(x)) => *m = Some(m.map_or(*x, |m| m.min(*x))),
            (AggState::Max(m), Input::Number(x)) => *m = Some(m.map_or(*x, |m| m.max(*x))),
            (AggState::Moments { n, mean, m2 }, Input::Number(x)) => {
                *n += 1;
                let delta = x - *mean;
                *mean += delta / *n as f64;
                *m2 += delta * (x - *mean);
            }
            (AggState::First(cur), Input::Json(v)) => {
                let cand = (ts, v.clone());
                if cur.as_ref().is_none_or(|c| earlier(&cand, c)) {
                    *cur = Some(cand);
                }
            }
            (AggState::Last(cur), Input::Json(v)) => {
                let cand = (ts, v.clone());
                if cur.as_ref().is_none_or(|c| earlier(c, &cand)) {
                    *cur = Some(cand);
                }
            }
            (AggState::Distinct(h), Input::Json(v)) => h.insert(&canonical(v)),
            (AggState::Quantile(q), Input::Number(x)) => q.add(*x),
            _ => {}
        }
    }

    /// Merges another partial state of the same function.
    pub fn merge(&mut self, other: &AggState) {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Sum(a), AggState::Sum(b)) => a.merge(b),
            (AggState::Min(a), AggState::Min(b)) => *a = opt(*a, *b, f64::min),
            (AggState::Max(a), AggState::Max(b)) => *a = opt(*a, *b, f64::max),
            (AggState::Moments { n, mean, m2 }, AggState::Moments { n: nb, mean: mb, m2: m2b }) => {
                if *nb == 0 {
                    return;
                }
                let total = *n + nb;
                let delta = mb - *mean;
                let (na, nbf, t) = (*n as f64, *nb as f64, total as f64);
                *mean += delta * nbf / t;
                *m2 += m2b + delta * delta * na * nbf / t;
                *n = total;
            }
            (AggState::First(a), AggState::First(Some(b))) if a.as_ref().is_none_or(|x| earlier(b, x)) => {
                *a = Some(b.clone());
            }
            (AggState::Last(a), AggState::Last(Some(b))) if a.as_ref().is_none_or(|x| earlier(x, b)) => {
                *a = Some(b.clone());
            }
            (AggState::Distinct(a), AggState::Distinct(b)) => {
                let _ = a.merge(b.as_ref());
            }
            (AggState::Quantile(a), AggState::Quantile(b)) => {
                let _ = a.merge(b);
            }
            _ => {}
        }
    }

    /// The aggregate's value for a window of `window_ms` (rate) — null where undefined.
    pub fn finish(&self, f: AggFn, q: f64, window_ms: i64) -> Value {
        match (f, self) {
            (AggFn::Rate, AggState::Count(n)) => num(*n as f64 / (window_ms.max(1) as f64 / 1000.0)),
            (_, AggState::Count(n)) => json!(n),
            (AggFn::Avg, AggState::Sum(s)) if s.n > 0 => num(s.value() / s.n as f64),
            (AggFn::Avg, AggState::Sum(_)) => Value::Null,
            (_, AggState::Sum(s)) => num(s.value()),
            (_, AggState::Min(m) | AggState::Max(m)) => m.map_or(Value::Null, num),
            (AggFn::Stddev, AggState::Moments { n, m2, .. }) if *n > 1 => num((m2 / (*n - 1) as f64).sqrt()),
            (_, AggState::Moments { n, m2, .. }) if *n > 1 => num(m2 / (*n - 1) as f64),
            (_, AggState::Moments { .. }) => Value::Null,
            (_, AggState::First(v) | AggState::Last(v)) => v.as_ref().map_or(Value::Null, |(_, v)| v.clone()),
            (_, AggState::Distinct(h)) => json!(h.as_ref().clone().count().round() as u64),
            (_, AggState::Quantile(s)) => s.quantile(q).ok().flatten().map_or(Value::Null, num),
        }
    }
}

/// An empty DDSketch with `percentile`'s accuracy (for services that keep their own sketches).
pub fn quantile_sketch() -> DDSketch {
    DDSketch::new(sketch_config())
}

/// An empty HyperLogLog++ with `count_distinct`'s precision and the stable hasher.
pub fn distinct_sketch() -> Distinct {
    Distinct::new(DISTINCT_PRECISION, StableHasher).expect("precision in 4..=18")
}

fn sketch_config() -> SketchConfig {
    SketchConfig::new(PERCENTILE_RELATIVE_ACCURACY, 2048, 1.0e-9)
}

fn opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (x, None) | (None, x) => x,
    }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The canonical text of a JSON value (distinct counting): object keys sorted.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{}:{}", json!(k), canonical(&m[*k]))).collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: AggFn, q: f64, values: &[f64]) -> Value {
        let mut s = AggState::new(f);
        for (i, v) in values.iter().enumerate() {
            let input = if f.numeric() { Input::Number(*v) } else { Input::Json(json!(v)) };
            s.add(i as i64, &input);
        }
        s.finish(f, q, 60_000)
    }

    #[test]
    fn each_function_on_a_small_series() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        for (f, q, want) in [
            (AggFn::Count, 0.0, json!(4)),
            (AggFn::Sum, 0.0, json!(10.0)),
            (AggFn::Min, 0.0, json!(1.0)),
            (AggFn::Max, 0.0, json!(4.0)),
            (AggFn::Avg, 0.0, json!(2.5)),
            (AggFn::Variance, 0.0, json!(1.6666666666666667)),
            (AggFn::First, 0.0, json!(4.0)),
            (AggFn::Last, 0.0, json!(2.0)),
            (AggFn::CountDistinct, 0.0, json!(4)),
            (AggFn::Rate, 0.0, json!(4.0 / 60.0)),
        ] {
            assert_eq!(run(f, q, &xs), want, "{f:?}");
        }
        let sd = run(AggFn::Stddev, 0.0, &xs).as_f64().expect("number");
        assert!((sd - 1.6666666666666667_f64.sqrt()).abs() < 1e-12);
        for f in [AggFn::Avg, AggFn::Min, AggFn::Variance, AggFn::Percentile, AggFn::First] {
            assert_eq!(run(f, 0.5, &[]), Value::Null, "{f:?} of nothing");
        }
        assert_eq!(run(AggFn::Variance, 0.0, &[5.0]), Value::Null);
    }

    #[test]
    fn merging_partial_states_equals_one_pass() {
        let xs: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1009) as f64 / 7.0 - 50.0).collect();
        for f in [
            AggFn::Count,
            AggFn::Sum,
            AggFn::Min,
            AggFn::Max,
            AggFn::Avg,
            AggFn::Variance,
            AggFn::Stddev,
            AggFn::First,
            AggFn::Last,
            AggFn::CountDistinct,
            AggFn::Percentile,
        ] {
            let whole = run(f, 0.9, &xs);
            let input = |v: f64| if f.numeric() { Input::Number(v) } else { Input::Json(json!(v)) };
            let mut parts: Vec<AggState> = (0..3).map(|_| AggState::new(f)).collect();
            for (i, v) in xs.iter().enumerate() {
                parts[i % 3].add(i as i64, &input(*v));
            }
            let mut merged = AggState::new(f);
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            let got = merged.finish(f, 0.9, 60_000);
            match (whole.as_f64(), got.as_f64()) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{f:?}: {a} vs {b}"),
                _ => assert_eq!(whole, got, "{f:?}"),
            }
        }
    }

    #[test]
    fn percentiles_are_within_the_stated_relative_error() {
        let mut xs: Vec<f64> = (1..=10_000).map(|i| (i as f64).powf(1.5)).collect();
        let mut s = AggState::new(AggFn::Percentile);
        for x in &xs {
            s.add(0, &Input::Number(*x));
        }
        xs.sort_by(f64::total_cmp);
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99] {
            let got = s.finish(AggFn::Percentile, q, 1).as_f64().expect("number");
            let rank = ((q * (xs.len() - 1) as f64).floor() as usize).min(xs.len() - 1);
            let (lo, hi) = (xs[rank.saturating_sub(1)], xs[(rank + 1).min(xs.len() - 1)]);
            let tol = PERCENTILE_RELATIVE_ACCURACY;
            assert!(got >= lo * (1.0 - tol) && got <= hi * (1.0 + tol), "q={q}: {got} not near {}", xs[rank]);
        }
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_close_when_large() {
        let mut s = AggState::new(AggFn::CountDistinct);
        for i in 0..100 {
            s.add(0, &Input::Json(json!(format!("d{}", i % 40))));
        }
        assert_eq!(s.finish(AggFn::CountDistinct, 0.0, 1), json!(40));
        let mut big = AggState::new(AggFn::CountDistinct);
        for i in 0..100_000 {
            big.add(0, &Input::Json(json!(i)));
        }
        let n = big.finish(AggFn::CountDistinct, 0.0, 1).as_f64().expect("number");
        assert!((n - 100_000.0).abs() / 100_000.0 < 0.05, "{n}");
    }

    #[test]
    fn states_survive_a_serde_round_trip() {
        for f in [AggFn::Sum, AggFn::Variance, AggFn::CountDistinct, AggFn::Percentile, AggFn::Last] {
            let mut s = AggState::new(f);
            for i in 0..50 {
                s.add(i, &if f.numeric() { Input::Number(i as f64) } else { Input::Json(json!(i % 7)) });
            }
            let back: AggState = serde_json::from_str(&serde_json::to_string(&s).expect("encodes")).expect("decodes");
            assert_eq!(s.finish(f, 0.5, 1), back.finish(f, 0.5, 1), "{f:?}");
        }
    }

    #[test]
    fn canonical_text_sorts_object_keys() {
        assert_eq!(canonical(&json!({"b": 1, "a": [1, "x"]})), canonical(&json!({"a": [1, "x"], "b": 1})));
        assert_eq!(canonical(&json!("x")), "x");
    }
}
