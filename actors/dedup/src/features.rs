//! What the engine compares, computed once per event (pure): the identity hash (listed fields,
//! or the canonical JSON with `ignore` pointers removed), the event time, and the features of the
//! fuzzy tiers — numeric values of a group, a MinHash signature of a text field (bounded
//! shingling), and normalised record fields with their blocking keys. Hashes are xxh3 with fixed
//! seeds, so every node computes the same ones and checkpoints restore anywhere.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128};

use crate::policy::{Comparator, Identity, Policy};

/// MinHash signature length (hash functions).
pub const SIGNATURE: usize = 128;
/// Text bytes shingled at most: a 1 MB field costs the same as a 64 KiB one.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Record field characters compared at most.
pub const MAX_FIELD_CHARS: usize = 256;

/// One event, prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// `None`: an identity field is missing (`missing` says which).
    pub key: Option<u128>,
    pub missing: Option<String>,
    /// Event time (ms since the epoch).
    pub ts: i64,
    /// The event's own id (the policy's `event_id` pointer), for REST verdicts.
    pub event_id: Option<String>,
    pub numeric: Option<NumericFeatures>,
    pub text: Option<Vec<u32>>,
    pub record: Option<RecordFeatures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericFeatures {
    pub group: u64,
    pub ts: i64,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordFeatures {
    pub values: Vec<Option<String>>,
    /// One hash per blocking key the record has all parts of.
    pub blocks: Vec<u64>,
}

/// A record-matching field: where, how compared, its weight and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordField {
    pub pointer: String,
    pub comparator: Comparator,
    pub weight: f64,
    pub scale: f64,
}

/// One part of a blocking key: a pointer and what of its value is used.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPart {
    pub pointer: String,
    /// `Some(n)`: the first n characters.
    pub prefix: Option<usize>,
}

impl BlockPart {
    /// `"/surname"` or `"/surname:3"`.
    pub fn parse(s: &str) -> Result<BlockPart, String> {
        let (pointer, prefix) = match s.rsplit_once(':') {
            Some((p, n)) => (p, Some(n.parse::<usize>().map_err(|_| format!("'{n}' is not a prefix length"))?)),
            None => (s, None),
        };
        if !pointer.starts_with('/') {
            return Err(format!("'{pointer}' is not a JSON pointer"));
        }
        if prefix == Some(0) {
            return Err("a prefix of at least 1 character".into());
        }
        Ok(BlockPart { pointer: pointer.to_owned(), prefix })
    }
}

/// Canonical JSON: object keys sorted, no whitespace (numbers as serde_json writes them).
pub fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// Removes the value at a JSON pointer, if there is one.
fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else { return };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() { Some(v) } else { v.pointer_mut(parent) };
    match target {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// The identity hash, or the first missing pointer.
pub fn identity(identity: &Identity, event: &Value) -> Result<u128, String> {
    let mut bytes = Vec::with_capacity(64);
    match identity {
        Identity::Fields(fields) => {
            for f in fields {
                match event.pointer(f) {
                    None | Some(Value::Null) => return Err(f.clone()),
                    Some(v) => canonical(v, &mut bytes),
                }
                bytes.push(0xff);
            }
        }
        Identity::Content { ignore } => {
            if ignore.is_empty() {
                canonical(event, &mut bytes);
            } else {
                let mut e = event.clone();
                for p in ignore {
                    remove_pointer(&mut e, p);
                }
                canonical(&e, &mut bytes);
            }
        }
    }
    Ok(xxh3_128(&bytes))
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Lower-case, trimmed, whitespace collapsed, at most [`MAX_FIELD_CHARS`] characters.
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w.to_lowercase());
    }
    out.chars().take(MAX_FIELD_CHARS).collect()
}

/// The MinHash signature of a text's character shingles (bounded: [`MAX_TEXT_BYTES`]).
pub fn minhash(text: &str, shingle: usize) -> Vec<u32> {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let norm = normalise_long(&text[..end]);
    let chars: Vec<char> = norm.chars().collect();
    let mut sig = vec![u32::MAX; SIGNATURE];
    let mut buf = String::new();
    let n = if chars.len() <= shingle { 1 } else { chars.len() - shingle + 1 };
    for i in 0..n {
        buf.clear();
        buf.extend(chars[i..(i + shingle).min(chars.len())].iter());
        let h = xxh3_64_with_seed(buf.as_bytes(), 0x5eed);
        for (j, slot) in sig.iter_mut().enumerate() {
            // a family of hash functions: h_j(x) = mix(x ^ seed_j)
            let v = mix(h ^ SEEDS[j]) as u32;
            if v < *slot {
                *slot = v;
            }
        }
    }
    sig
}

fn normalise_long(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w.to_lowercase());
    }
    out
}

/// splitmix64's finaliser: a strong 64-bit mixer.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const SEEDS: [u64; SIGNATURE] = {
    let mut s = [0u64; SIGNATURE];
    let mut i = 0;
    while i < SIGNATURE {
        s[i] = mix(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1));
        i += 1;
    }
    s
};

/// Estimated Jaccard similarity of two signatures.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// LSH banding for a threshold: (bands, rows) with bands × rows = [`SIGNATURE`], chosen so the
/// S-curve's midpoint (1/b)^(1/r) sits below the threshold (recall first; candidates are then
/// verified against the threshold).
pub fn banding(threshold: f64) -> (usize, usize) {
    if threshold >= 0.8 {
        (16, 8)
    } else if threshold >= 0.5 {
        (32, 4)
    } else {
        (64, 2)
    }
}

/// The band hashes of a signature.
pub fn bands(sig: &[u32], bands: usize) -> Vec<u64> {
    let rows = sig.len() / bands;
    (0..bands)
        .map(|b| {
            let mut bytes = Vec::with_capacity(rows * 4 + 1);
            bytes.push(b as u8);
            for v in &sig[b * rows..(b + 1) * rows] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            xxh3_64_with_seed(&bytes, 0xba4d)
        })
        .collect()
}

/// Similarity in [0, 1] of two record field values under a comparator.
pub fn similarity(f: &RecordField, a: &str, b: &str) -> f64 {
    match f.comparator {
        Comparator::Exact => f64::from(u8::from(a == b)),
        Comparator::JaroWinkler => strsim::jaro_winkler(a, b),
        Comparator::Levenshtein => strsim::normalized_levenshtein(a, b),
        Comparator::Numeric => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => (1.0 - (x - y).abs() / f.scale).max(0.0),
            _ => f64::from(u8::from(a == b)),
        },
        Comparator::Date => match (date(a), date(b)) {
            (Some(x), Some(y)) => (1.0 - ((x - y).num_days().abs() as f64) / f.scale).max(0.0),
            _ => f64::from(u8::from(a == b)),
        },
    }
}

fn date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y%m%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        .or_else(|_| chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d"))
        .ok()
}

/// The weighted match score of two records: the mean similarity over the fields both have,
/// scaled down by the share of weight present (a record missing most fields cannot match well).
pub fn record_score(fields: &[RecordField], a: &RecordFeatures, b: &RecordFeatures) -> f64 {
    let total: f64 = fields.iter().map(|f| f.weight).sum();
    let (mut sum, mut present) = (0.0, 0.0);
    for (i, f) in fields.iter().enumerate() {
        if let (Some(Some(x)), Some(Some(y))) = (a.values.get(i), b.values.get(i)) {
            sum += f.weight * similarity(f, x, y);
            present += f.weight;
        }
    }
    if present == 0.0 {
        return 0.0;
    }
    let score = sum / present;
    if present * 2.0 < total { score * present / total } else { score }
}

fn record_features(r: &crate::policy::Record, event: &Value) -> RecordFeatures {
    let values = r
        .fields
        .iter()
        .map(|f| event.pointer(&f.pointer).and_then(text_of).map(|s| normalise(&s)).filter(|s| !s.is_empty()))
        .collect();
    let blocks = r
        .blocking
        .iter()
        .enumerate()
        .filter_map(|(i, parts)| {
            let mut bytes = vec![i as u8];
            for p in parts {
                let v = normalise(&event.pointer(&p.pointer).and_then(text_of)?);
                if v.is_empty() {
                    return None;
                }
                let v: String = match p.prefix {
                    Some(n) => v.chars().take(n).collect(),
                    None => v,
                };
                bytes.extend_from_slice(v.as_bytes());
                bytes.push(0xff);
            }
            Some(xxh3_64_with_seed(&bytes, 0xb10c))
        })
        .collect();
    RecordFeatures { values, blocks }
}

/// See the module doc. `Err((code, reason))` for an event that cannot be checked at all.
pub fn prepare(
    policy: &Policy,
    event: &Value,
    record_ms: Option<i64>,
    now_ms: i64,
) -> Result<Input, (&'static str, String)> {
    if !event.is_object() {
        return Err(("not_an_object", "an event is a JSON object".into()));
    }
    let ts = match policy.time.extract(event, record_ms) {
        Ok(t) => t,
        Err(e) if policy.time_fallback && e.code() == "missing_time" => record_ms.unwrap_or(now_ms),
        Err(e) => return Err((e.code(), e.to_string())),
    };
    let (key, missing) = match identity(&policy.identity, event) {
        Ok(k) => (Some(k), None),
        Err(p) => (None, Some(p)),
    };
    let event_id = policy.spec.event_id.as_ref().and_then(|p| event.pointer(p)).and_then(text_of);
    let numeric = policy.numeric.as_ref().and_then(|n| {
        let mut g = Vec::new();
        for p in &n.same {
            canonical(event.pointer(p)?, &mut g);
            g.push(0xff);
        }
        let ts = n.time.extract(event, record_ms).ok()?;
        let values = n.fields.iter().map(|(p, _)| event.pointer(p)?.as_f64()).collect::<Option<Vec<f64>>>()?;
        Some(NumericFeatures { group: xxh3_64_with_seed(&g, 0x9e0), ts, values })
    });
    let text = policy.text.as_ref().and_then(|t| match event.pointer(&t.field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(minhash(s, t.shingle)),
        _ => None,
    });
    let record = policy.record.as_ref().map(|r| record_features(r, event));
    Ok(Input { key, missing, ts, event_id, numeric, text, record })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let cases = [
            (
                json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "x"}}),
                r#"{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}"#,
            ),
            (json!([]), "[]"),
            (json!("é\""), r#""é\"""#),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            canonical(&v, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn identities() {
        let fields = Identity::Fields(vec!["/device".into(), "/seq".into()]);
        let content = Identity::Content { ignore: vec!["/received_at".into(), "/meta/gw".into()] };
        let a = json!({"device": "d1", "seq": 1, "received_at": "r1", "meta": {"gw": "g1", "x": 1}});
        let b = json!({"meta": {"x": 1, "gw": "g2"}, "seq": 1, "device": "d1", "received_at": "r2"});
        let c = json!({"device": "d1", "seq": 2, "meta": {"x": 1}});
        assert_eq!(identity(&fields, &a), identity(&fields, &b));
        assert_ne!(identity(&fields, &a), identity(&fields, &c));
        assert_eq!(identity(&content, &a), identity(&content, &b), "ignored pointers and key order do not count");
        assert_ne!(identity(&content, &a), identity(&content, &c));
        assert_eq!(identity(&fields, &json!({"device": "d1"})), Err("/seq".into()));
        assert_eq!(identity(&fields, &json!({"device": "d1", "seq": null})), Err("/seq".into()));
        // field boundaries matter: ("ab","c") is not ("a","bc")
        let two = Identity::Fields(vec!["/x".into(), "/y".into()]);
        assert_ne!(identity(&two, &json!({"x": "ab", "y": "c"})), identity(&two, &json!({"x": "a", "y": "bc"})));
    }

    #[test]
    fn minhash_estimates_jaccard_and_is_bounded() {
        let a = "the quick brown fox jumps over the lazy dog near the river bank at dawn";
        let b = "the quick brown fox jumps over the lazy dog near the river bank at dusk";
        let c = "completely different words about sensor calibration procedures";
        let (sa, sb, sc) = (minhash(a, 5), minhash(b, 5), minhash(c, 5));
        assert!(jaccard(&sa, &sb) > 0.8, "{}", jaccard(&sa, &sb));
        assert!(jaccard(&sa, &sc) < 0.2, "{}", jaccard(&sa, &sc));
        assert_eq!(minhash(a, 5), minhash(&a.to_uppercase(), 5), "case does not count");
        let huge = "lorem ipsum ".repeat(100_000);
        let t = std::time::Instant::now();
        let _ = minhash(&huge, 5);
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "1 MB of text is shingled only up to its bound");
        assert_eq!(minhash("", 5).len(), SIGNATURE);
    }

    #[test]
    fn comparators() {
        let f = |comparator, scale| RecordField { pointer: "/x".into(), comparator, weight: 1.0, scale };
        let cases = [
            (f(Comparator::Exact, 1.0), "a", "a", 1.0),
            (f(Comparator::Exact, 1.0), "a", "b", 0.0),
            (f(Comparator::JaroWinkler, 1.0), "martha", "marhta", 0.961),
            (f(Comparator::Levenshtein, 1.0), "kitten", "sitting", 0.571),
            (f(Comparator::Numeric, 10.0), "100", "95", 0.5),
            (f(Comparator::Numeric, 10.0), "100", "80", 0.0),
            (f(Comparator::Date, 10.0), "19560409", "1956-04-14", 0.5),
            (f(Comparator::Date, 10.0), "not a date", "not a date", 1.0),
        ];
        for (field, a, b, want) in cases {
            let got = similarity(&field, a, b);
            assert!((got - want).abs() < 1e-3, "{:?} {a} {b}: {got} != {want}", field.comparator);
        }
    }

    #[test]
    fn block_parts() {
        assert_eq!(BlockPart::parse("/surname:3").unwrap(), BlockPart { pointer: "/surname".into(), prefix: Some(3) });
        assert_eq!(BlockPart::parse("/postcode").unwrap().prefix, None);
        assert!(BlockPart::parse("surname").is_err());
        assert!(BlockPart::parse("/s:x").is_err());
        assert!(BlockPart::parse("/s:0").is_err());
    }
}
