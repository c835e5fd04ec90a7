//! A window's profile: mergeable sketches of every watched field, never the records. Profiles
//! of the same monitor merge across batches, partitions, nodes and windows (the reference of a
//! drift test is the merge of its windows); merging is associative and counts stay exact.
//!
//! | per field | kept as | error |
//! |---|---|---|
//! | present, null, type mix, range/enum violations | counters | exact |
//! | numeric values | the values themselves up to [`EXACT_VALUES`], then a uniform bottom-k sample of that many (the drift tests' input) and DDSketch (1 % relative accuracy, the quantiles) | exact, then a sample's error (tests use the sample sizes) and quantiles within ±1 % of the true value |
//! | mean, variance, min, max | Welford/Chan moments, extrema | float rounding |
//! | categories (strings, booleans) | exact counts of the first [`CATEGORIES`] values; later new values count as `other`; a merge over the cap keeps the largest and folds the rest into `other` | exact below the cap |
//! | distinct values | HyperLogLog++ (precision 12: exact while sparse, ≈1.6 % beyond) | |
//! | duplicates of the `unique` key | 64-bit key hashes up to [`EXACT_VALUES`], then the HyperLogLog | exact, then the HLL's error |

use std::collections::BTreeMap;

use loom_streams::aggregate::{Distinct, canonical, distinct_sketch, quantile_sketch};
use loom_streams::hyperloglogplus::HyperLogLog;
use loom_streams::pointer::Pointer;
use loom_streams::sketches_ddsketch::DDSketch;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Numeric values kept exactly per field and window (the KS test is exact up to here).
pub const EXACT_VALUES: usize = 10_000;
/// Distinct categories counted exactly per field and window.
pub const CATEGORIES: usize = 1_024;
/// Quantile points a sketch stands in with when a test needs a sample.
pub const QUANTILE_POINTS: usize = 1_000;
/// Longest category kept (longer values are cut at a char boundary).
const CATEGORY_BYTES: usize = 256;
/// Schema violation kinds counted per window ("keyword at path").
const VIOLATION_KINDS: usize = 64;

#[derive(Clone, Serialize, Deserialize)]
pub struct Numeric {
    pub n: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub m2: f64,
    /// A bottom-k sample: the [`EXACT_VALUES`] values with the smallest random priorities
    /// (all of them while `n` ≤ [`EXACT_VALUES`]), with up to a quarter more buffered before
    /// the next trim. The union of two such samples trimmed to k is a uniform sample of the
    /// merged values, so it merges across parts, nodes and windows without bias.
    pub kept: Vec<(u64, f64)>,
    /// The largest priority kept after the last trim (`u64::MAX` until the first trim).
    pub cutoff: u64,
    pub sketch: DDSketch,
}

impl Default for Numeric {
    fn default() -> Self {
        Numeric {
            n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            kept: Vec::new(),
            cutoff: u64::MAX,
            sketch: quantile_sketch(),
        }
    }
}

/// SplitMix64: the priority of a value from its position and bits (deterministic, uniform).
fn priority(n: u64, x: f64) -> u64 {
    let mut z = n.wrapping_add(x.to_bits().rotate_left(29)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Numeric {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        self.sketch.add(x);
        let p = priority(self.n, x);
        if p < self.cutoff {
            self.kept.push((p, x));
            if self.kept.len() >= EXACT_VALUES + EXACT_VALUES / 4 {
                self.trim();
            }
        }
    }

    /// Keeps the [`EXACT_VALUES`] smallest priorities.
    fn trim(&mut self) {
        if self.kept.len() > EXACT_VALUES {
            self.kept.select_nth_unstable_by_key(EXACT_VALUES - 1, |(p, _)| *p);
            self.kept.truncate(EXACT_VALUES);
            self.cutoff = self.kept.iter().map(|(p, _)| *p).max().unwrap_or(u64::MAX);
        }
    }

    pub fn merge(&mut self, o: &Numeric) {
        if o.n == 0 {
            return;
        }
        let total = self.n + o.n;
        let delta = o.mean - self.mean;
        let (na, nb, t) = (self.n as f64, o.n as f64, total as f64);
        self.mean += delta * nb / t;
        self.m2 += o.m2 + delta * delta * na * nb / t;
        self.n = total;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        let _ = self.sketch.merge(&o.sketch);
        let cutoff = self.cutoff.min(o.cutoff);
        self.kept.extend(o.kept.iter().filter(|(p, _)| *p <= cutoff));
        self.kept.retain(|(p, _)| *p <= cutoff);
        self.trim();
        self.cutoff = self.cutoff.min(cutoff);
    }

    /// Whether [`Numeric::sample`] is every value.
    pub fn complete(&self) -> bool {
        self.n as usize == self.kept.len()
    }

    /// The sample, sorted, and whether it is every value (else a uniform sample of
    /// [`EXACT_VALUES`] of them).
    pub fn sample(&self) -> (Vec<f64>, bool) {
        let mut v: Vec<f64> = self.sampled().collect();
        v.sort_by(f64::total_cmp);
        (v, self.complete())
    }

    fn sampled(&self) -> impl Iterator<Item = f64> + '_ {
        let mut ps: Vec<u64> = Vec::new();
        let limit = if self.kept.len() > EXACT_VALUES {
            ps.extend(self.kept.iter().map(|(p, _)| *p));
            ps.select_nth_unstable(EXACT_VALUES - 1);
            ps[EXACT_VALUES - 1]
        } else {
            u64::MAX
        };
        self.kept.iter().filter(move |(p, _)| *p <= limit).map(|(_, x)| *x)
    }

    pub fn std(&self) -> Option<f64> {
        (self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt())
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.complete() && !self.kept.is_empty() {
            let v = self.sample().0;
            // numpy's default (linear) interpolation
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            return Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64));
        }
        self.sketch.quantile(q).ok().flatten()
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Categorical {
    pub counts: BTreeMap<String, u64>,
    /// Values beyond the first [`CATEGORIES`] distinct ones.
    pub other: u64,
}

impl Categorical {
    pub fn add(&mut self, v: &str) {
        let v = cut(v);
        if let Some(n) = self.counts.get_mut(v) {
            *n += 1;
        } else if self.counts.len() < CATEGORIES {
            self.counts.insert(v.to_owned(), 1);
        } else {
            self.other += 1;
        }
    }

    pub fn merge(&mut self, o: &Categorical) {
        for (k, n) in &o.counts {
            *self.counts.entry(k.clone()).or_default() += n;
        }
        self.other += o.other;
        if self.counts.len() > CATEGORIES {
            let mut all: Vec<(String, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            self.other += all[CATEGORIES..].iter().map(|(_, n)| n).sum::<u64>();
            all.truncate(CATEGORIES);
            self.counts = all.into_iter().collect();
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }

    /// The `k` most frequent values, largest first.
    pub fn top(&self, k: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.truncate(k);
        all
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= CATEGORY_BYTES {
        return s;
    }
    let mut end = CATEGORY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// JSON types seen at a field.
#[derive(Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Debug)]
pub struct Types {
    pub boolean: u64,
    pub number: u64,
    pub string: u64,
    pub array: u64,
    pub object: u64,
}

impl Types {
    fn merge(&mut self, o: &Types) {
        self.boolean += o.boolean;
        self.number += o.number;
        self.string += o.string;
        self.array += o.array;
        self.object += o.object;
    }

    pub fn to_json(self) -> Value {
        json!({"boolean": self.boolean, "number": self.number, "string": self.string,
               "array": self.array, "object": self.object})
    }
}

/// What a monitor checks of one field's values (compiled from its spec).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldRule {
    pub required: bool,
    pub range: Option<(f64, f64)>,
    /// Allowed values, canonical JSON text.
    pub allowed: Option<Vec<String>>,
    /// The field's pointer, split once.
    pub at: Pointer,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct FieldProfile {
    pub present: u64,
    pub nulls: u64,
    pub types: Types,
    pub range_violations: u64,
    pub enum_violations: u64,
    pub numeric: Numeric,
    pub categorical: Categorical,
    pub distinct: Box<Distinct>,
}

impl Default for FieldProfile {
    fn default() -> Self {
        FieldProfile {
            present: 0,
            nulls: 0,
            types: Types::default(),
            range_violations: 0,
            enum_violations: 0,
            numeric: Numeric::default(),
            categorical: Categorical::default(),
            distinct: Box::new(distinct_sketch()),
        }
    }
}

impl FieldProfile {
    /// Absorbs the value at the field (`None`: the field is missing).
    pub fn add(&mut self, v: Option<&Value>, rule: &FieldRule) {
        let Some(v) = v else { return };
        self.present += 1;
        match v {
            Value::Null => {
                self.nulls += 1;
                return;
            }
            Value::Bool(b) => {
                self.types.boolean += 1;
                self.categorical.add(if *b { "true" } else { "false" });
            }
            Value::Number(n) => {
                self.types.number += 1;
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    self.numeric.add(x);
                    if let Some((lo, hi)) = rule.range
                        && !(lo..=hi).contains(&x)
                    {
                        self.range_violations += 1;
                    }
                }
            }
            Value::String(s) => {
                self.types.string += 1;
                self.categorical.add(s);
            }
            Value::Array(_) => self.types.array += 1,
            Value::Object(_) => self.types.object += 1,
        }
        // The canonical text hashes into the HyperLogLog (a `&str` hashes like the `String` it
        // borrows, so strings skip the copy; numbers format without a fresh allocation).
        let mut buf = String::new();
        let text: &str = match v {
            Value::String(s) => s,
            Value::Number(n) => {
                use std::fmt::Write as _;
                let _ = write!(buf, "{n}");
                &buf
            }
            Value::Bool(b) => {
                if *b {
                    "true"
                } else {
                    "false"
                }
            }
            other => {
                buf = canonical(other);
                &buf
            }
        };
        if let Some(allowed) = &rule.allowed
            && !allowed.iter().any(|a| a == text)
        {
            self.enum_violations += 1;
        }
        self.distinct.insert(text);
    }

    pub fn merge(&mut self, o: &FieldProfile) {
        self.present += o.present;
        self.nulls += o.nulls;
        self.types.merge(&o.types);
        self.range_violations += o.range_violations;
        self.enum_violations += o.enum_violations;
        self.numeric.merge(&o.numeric);
        self.categorical.merge(&o.categorical);
        let _ = self.distinct.merge(o.distinct.as_ref());
    }

    /// Non-null values.
    pub fn values(&self) -> u64 {
        self.present - self.nulls
    }

    /// Whether the field is mostly numbers (decides numeric vs categorical drift tests).
    pub fn is_numeric(&self) -> bool {
        self.types.number > 0 && self.types.number >= self.types.string + self.types.boolean
    }

    pub fn distinct(&self) -> u64 {
        self.distinct.as_ref().clone().count().round() as u64
    }
}

/// Schema validation outcomes of a window.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SchemaCounts {
    pub checked: u64,
    pub invalid: u64,
    /// "keyword at instance path" → records; at most [`VIOLATION_KINDS`] kinds, the rest in `other`.
    pub violations: BTreeMap<String, u64>,
    pub other: u64,
}

impl SchemaCounts {
    pub fn violation(&mut self, kind: String) {
        if let Some(n) = self.violations.get_mut(&kind) {
            *n += 1;
        } else if self.violations.len() < VIOLATION_KINDS {
            self.violations.insert(kind, 1);
        } else {
            self.other += 1;
        }
    }

    fn merge(&mut self, o: &SchemaCounts) {
        self.checked += o.checked;
        self.invalid += o.invalid;
        for (k, n) in &o.violations {
            if let Some(m) = self.violations.get_mut(k) {
                *m += n;
            } else if self.violations.len() < VIOLATION_KINDS {
                self.violations.insert(k.clone(), *n);
            } else {
                self.other += n;
            }
        }
        self.other += o.other;
    }
}

/// One window's profile of one group.
#[derive(Clone, Serialize, Deserialize)]
pub struct WindowProfile {
    pub count: u64,
    pub fields: BTreeMap<String, FieldProfile>,
    pub schema: SchemaCounts,
    /// Distinct values of the declared unique key (its pointers' values together): their
    /// 64-bit hashes while there are at most [`EXACT_VALUES`], and always a HyperLogLog.
    pub keys: Box<Distinct>,
    pub key_hashes: std::collections::BTreeSet<u64>,
    pub keys_overflow: bool,
    pub keyed: u64,
    /// Gaps longer than `freshness.max_gap` that ended in this window, and the longest.
    pub gaps: u64,
    pub longest_gap_ms: i64,
}

impl Default for WindowProfile {
    fn default() -> Self {
        WindowProfile {
            count: 0,
            fields: BTreeMap::new(),
            schema: SchemaCounts::default(),
            keys: Box::new(distinct_sketch()),
            key_hashes: Default::default(),
            keys_overflow: false,
            keyed: 0,
            gaps: 0,
            longest_gap_ms: 0,
        }
    }
}

/// Serialised profile format (the first byte of a stored profile).
const FORMAT: u8 = 1;

impl WindowProfile {
    pub fn merge(&mut self, o: &WindowProfile) {
        self.count += o.count;
        for (k, f) in &o.fields {
            self.fields.entry(k.clone()).or_default().merge(f);
        }
        self.schema.merge(&o.schema);
        let _ = self.keys.merge(o.keys.as_ref());
        if self.keys_overflow || o.keys_overflow {
            self.overflow_keys();
        } else {
            self.key_hashes.extend(&o.key_hashes);
            if self.key_hashes.len() > EXACT_VALUES {
                self.overflow_keys();
            }
        }
        self.keyed += o.keyed;
        self.gaps += o.gaps;
        self.longest_gap_ms = self.longest_gap_ms.max(o.longest_gap_ms);
    }

    pub fn add_key(&mut self, key: &str) {
        self.keyed += 1;
        self.keys.insert(key);
        if !self.keys_overflow {
            self.key_hashes.insert(xxhash_rust::xxh3::xxh3_64(key.as_bytes()));
            if self.key_hashes.len() > EXACT_VALUES {
                self.overflow_keys();
            }
        }
    }

    fn overflow_keys(&mut self) {
        self.keys_overflow = true;
        self.key_hashes = Default::default();
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<WindowProfile, String> {
        match b.split_first() {
            Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| format!("profile unreadable: {e}")),
            _ => Err("profile of an unknown format".into()),
        }
    }

    /// Duplicate keys: keyed records minus distinct keys — exact (64-bit hashes) up to
    /// [`EXACT_VALUES`] distinct keys, a HyperLogLog estimate beyond.
    pub fn duplicate_keys(&self) -> u64 {
        let distinct = if self.keys_overflow {
            self.keys.as_ref().clone().count().round() as u64
        } else {
            self.key_hashes.len() as u64
        };
        self.keyed.saturating_sub(distinct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(values: &[Value], rule: &FieldRule) -> FieldProfile {
        let mut p = FieldProfile::default();
        for v in values {
            p.add(Some(v), rule);
        }
        p
    }

    #[test]
    fn a_field_counts_types_nulls_and_violations() {
        let rule = FieldRule { required: true, range: Some((0.0, 10.0)), ..FieldRule::default() };
        let p = profile(&[json!(1), json!(11), json!(null), json!("x"), json!(true), json!([1])], &rule);
        assert_eq!((p.present, p.nulls, p.values(), p.range_violations), (6, 1, 5, 1));
        assert_eq!(p.types, Types { boolean: 1, number: 2, string: 1, array: 1, object: 0 });
        assert_eq!(p.numeric.n, 2);
        assert_eq!(p.categorical.counts.len(), 2);
        let rule =
            FieldRule { allowed: Some(vec![canonical(&json!("a")), canonical(&json!("b"))]), ..FieldRule::default() };
        assert_eq!(profile(&[json!("a"), json!("c"), json!(1)], &rule).enum_violations, 2);
    }

    #[test]
    fn merging_in_any_split_gives_the_same_counts_and_moments() {
        let values: Vec<Value> = (0..3000).map(|i| json!((i * 37 % 101) as f64 / 3.0)).collect();
        let rule = FieldRule::default();
        let whole = profile(&values, &rule);
        for split in [1, 999, 1500, 2999] {
            let mut a = profile(&values[..split], &rule);
            a.merge(&profile(&values[split..], &rule));
            assert_eq!((a.present, a.numeric.n, a.distinct()), (whole.present, whole.numeric.n, whole.distinct()));
            assert!((a.numeric.mean - whole.numeric.mean).abs() < 1e-9);
            assert!((a.numeric.std().unwrap() - whole.numeric.std().unwrap()).abs() < 1e-9);
            let (mut x, mut y) = (a.numeric.sample().0, whole.numeric.sample().0);
            x.sort_by(f64::total_cmp);
            y.sort_by(f64::total_cmp);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn beyond_the_exact_cap_a_sketch_stands_in_within_its_error() {
        let mut n = Numeric::default();
        for i in 0..(EXACT_VALUES as u64 * 3) {
            n.add(1.0 + (i % 1000) as f64);
        }
        let (sample, exact) = n.sample();
        assert!(!exact && n.kept.len() < 2 * EXACT_VALUES);
        assert_eq!(sample.len(), EXACT_VALUES);
        // a uniform sample: its mean is within a few standard errors of the values' (500.5)
        let mean = sample.iter().sum::<f64>() / sample.len() as f64;
        assert!((mean - 500.5).abs() < 5.0 * 288.7 / (EXACT_VALUES as f64).sqrt(), "{mean}");
        let median = n.quantile(0.5).unwrap();
        assert!((median - 500.0).abs() / 500.0 < 0.02, "{median}");
    }

    #[test]
    fn categories_are_bounded_and_the_rest_is_other() {
        let mut c = Categorical::default();
        for i in 0..100_000 {
            c.add(&format!("v{i}"));
        }
        assert_eq!((c.counts.len(), c.other, c.total()), (CATEGORIES, 100_000 - CATEGORIES as u64, 100_000));
        let mut big = Categorical::default();
        for i in 0..CATEGORIES {
            big.add(&format!("w{i}"));
            big.add(&format!("w{i}"));
        }
        c.merge(&big);
        assert_eq!(c.counts.len(), CATEGORIES);
        assert_eq!(c.total(), 100_000 + 2 * CATEGORIES as u64);
        assert!(c.counts.keys().all(|k| k.starts_with('w')), "the larger counts are kept");
        c.add(&"é".repeat(500));
        assert!(c.counts.keys().all(|k| k.len() <= 256));
    }

    #[test]
    fn a_profile_survives_its_bytes() {
        let mut w = WindowProfile { count: 3, ..WindowProfile::default() };
        w.fields.insert("/a".into(), profile(&[json!(1.5), json!("x")], &FieldRule::default()));
        w.schema.violation("type at /a".into());
        w.add_key("k1");
        let back = WindowProfile::from_bytes(&w.to_bytes()).unwrap();
        assert_eq!((back.count, back.fields["/a"].numeric.sample().0, back.schema.violations.len()), (3, vec![1.5], 1));
        assert_eq!(back.fields["/a"].distinct(), 2);
        assert!(WindowProfile::from_bytes(b"\x09junk").is_err());
    }
}
