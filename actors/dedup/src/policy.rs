//! Policies: the JSON users write (`POST /policies`), validated into a [`Policy`] the engine
//! runs — every failure names its field (`window.time`, `fuzzy.record.fields[2].weight`, …).
//! Also how one event becomes the engine's [`Input`]: its identity hash, event time and the
//! features the fuzzy tiers compare. Pure; table-tested.

use loom_streams::duration;
use loom_streams::time::{TimeFormat, TimeSource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DedupError;
use crate::features::{self, Input, RecordField};

/// Keys a policy keeps exactly per partition unless it says otherwise.
pub const DEFAULT_MAX_KEYS: u64 = 1_000_000;
pub const MAX_KEYS_LIMIT: u64 = 100_000_000;
pub const MAX_COUNT_WINDOW: u64 = 100_000_000;
pub const MAX_IDENTITY_FIELDS: usize = 32;
pub const MAX_RECORD_FIELDS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    pub identity: IdentitySpec,
    /// Pointers removed before a `content` identity is hashed (`/received_at`, gateway ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSpec>,
    pub window: WindowJson,
    #[serde(default)]
    pub keep: Keep,
    /// A key seen again extends its life by another window.
    #[serde(default)]
    pub ttl_reset: bool,
    #[serde(default)]
    pub late: LateAction,
    #[serde(default)]
    pub missing_identity: MissingIdentity,
    #[serde(default)]
    pub tier: Tier,
    /// Exact keys per partition; beyond it `overflow` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    #[serde(default)]
    pub overflow: Overflow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bloom: Option<BloomSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzy: Option<FuzzySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    #[serde(default)]
    pub store: StoreKind,
    /// A pointer to the event's own id, used as `of.id` in REST verdicts (default: `rest:<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub topic: String,
}

/// `{"fields": ["/device", "/seq"]}`, `"content"`, or `{"content": {"ignore": [...]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdentitySpec {
    Named(String),
    Fields { fields: Vec<String> },
    Content { content: ContentSpec },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContentSpec {
    #[serde(default)]
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default)]
    pub format: TimeFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WindowJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// How far behind the watermark (newest event time seen) a record may be and still be
    /// checked; older records are `late`. Default: one window — a resend is checked as long as
    /// its original could still be remembered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    #[default]
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LateAction {
    #[default]
    Pass,
    Drop,
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingIdentity {
    #[default]
    Unique,
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Exact,
    Bloom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Keys beyond `max_keys` go to the Bloom tier.
    #[default]
    Bloom,
    /// Records whose key does not fit are passed unchecked (`rule: "shed"`), counted.
    Shed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BloomSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_positive_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FuzzySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericSpec {
    #[serde(default)]
    pub same: Vec<String>,
    pub time_field: String,
    pub within: String,
    /// Pointer → largest |Δ| still "the same".
    pub fields: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub field: String,
    #[serde(default = "minhash")]
    pub method: String,
    pub threshold: f64,
    /// Characters per shingle (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shingle: Option<usize>,
}

fn minhash() -> String {
    "minhash".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    pub fields: Vec<RecordFieldSpec>,
    pub threshold: f64,
    /// Each blocking key is a list of pointers (optionally `"/surname:3"`: the first 3
    /// characters); a record is compared only with earlier records
    /// sharing at least one blocking key.
    pub blocking: Vec<Vec<String>>,
    /// Candidates kept per blocking key (default 32): the bound on comparisons per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_candidates: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFieldSpec {
    pub field: String,
    pub comparator: Comparator,
    #[serde(default = "one")]
    pub weight: f64,
    /// numeric: the |Δ| at which similarity reaches 0; date: days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    Exact,
    JaroWinkler,
    Levenshtein,
    Numeric,
    Date,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// How an event's identity is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Fields(Vec<String>),
    Content { ignore: Vec<String> },
}

/// The window keys live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Event-time milliseconds.
    Time(i64),
    /// The last N records of the partition.
    Count(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bloom {
    pub max_keys: u64,
    pub fpr: f64,
    pub segments: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    pub same: Vec<String>,
    pub time: TimeSource,
    pub within_ms: i64,
    pub fields: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub field: String,
    pub threshold: f64,
    pub shingle: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub fields: Vec<RecordField>,
    pub threshold: f64,
    pub blocking: Vec<Vec<features::BlockPart>>,
    pub max_candidates: usize,
}

/// A validated policy, as the engine and the I/O around it run it.
#[derive(Debug, Clone)]
pub struct Policy {
    pub spec: PolicySpec,
    pub version: i32,
    pub identity: Identity,
    pub time: TimeSource,
    /// True when the time field is the default `/ts`: records without it fall back to the
    /// record timestamp or the arrival time instead of being refused.
    pub time_fallback: bool,
    pub window: Window,
    pub lateness_ms: i64,
    pub max_keys: u64,
    pub bloom: Option<Bloom>,
    pub numeric: Option<Numeric>,
    pub text: Option<Text>,
    pub record: Option<Record>,
}

pub(crate) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn pointer(field: &str, p: &str) -> Result<(), DedupError> {
    if p.is_empty() || !p.starts_with('/') || p.len() > 512 {
        return Err(DedupError::spec(field, format!("'{p}' is not a JSON pointer (RFC 6901, starting with '/')")));
    }
    Ok(())
}

fn dur(field: &str, s: &str) -> Result<i64, DedupError> {
    duration::parse_ms(s).map_err(|e| DedupError::spec(field, e))
}

impl Policy {
    /// Validates a spec; every error names the field.
    pub fn compile(spec: PolicySpec, version: i32) -> Result<Policy, DedupError> {
        if !valid_name(&spec.id, 128) {
            return Err(DedupError::spec("id", "1-128 characters of A-Z a-z 0-9 . _ -"));
        }
        if let Some(src) = &spec.source
            && !valid_name(&src.topic, 249)
        {
            return Err(DedupError::spec("source.topic", "not a valid Kafka topic name"));
        }
        if let Some(out) = &spec.output {
            for (f, t) in [
                ("output.topic", &out.topic),
                ("output.duplicates_topic", &out.duplicates_topic),
                ("output.dead_letter_topic", &out.dead_letter_topic),
            ] {
                if let Some(t) = t
                    && !valid_name(t, 249)
                {
                    return Err(DedupError::spec(f, "not a valid Kafka topic name"));
                }
            }
            if spec.source.is_none() && (out.topic.is_some() || out.duplicates_topic.is_some()) {
                return Err(DedupError::spec("output", "output topics need a source topic"));
            }
        }
        let identity = match &spec.identity {
            IdentitySpec::Named(n) if n == "content" => Identity::Content { ignore: spec.ignore.clone() },
            IdentitySpec::Named(n) => {
                return Err(DedupError::spec(
                    "identity",
                    format!("'{n}': expected \"content\" or {{\"fields\": [...]}}"),
                ));
            }
            IdentitySpec::Content { content } => {
                let mut ignore = spec.ignore.clone();
                ignore.extend(content.ignore.iter().cloned());
                Identity::Content { ignore }
            }
            IdentitySpec::Fields { fields } => {
                if fields.is_empty() || fields.len() > MAX_IDENTITY_FIELDS {
                    return Err(DedupError::spec("identity.fields", format!("1 to {MAX_IDENTITY_FIELDS} pointers")));
                }
                for (i, f) in fields.iter().enumerate() {
                    pointer(&format!("identity.fields[{i}]"), f)?;
                }
                Identity::Fields(fields.clone())
            }
        };
        if let Identity::Content { ignore } = &identity {
            for (i, p) in ignore.iter().enumerate() {
                pointer(&format!("ignore[{i}]"), p)?;
            }
        }
        let (time, time_fallback) = match spec.time.as_ref().and_then(|t| t.field.as_ref()) {
            Some(p) => {
                pointer("time.field", p)?;
                (
                    TimeSource::Field {
                        pointer: p.clone(),
                        format: spec.time.as_ref().map(|t| t.format).unwrap_or_default(),
                    },
                    false,
                )
            }
            None => (TimeSource::Field { pointer: "/ts".into(), format: TimeFormat::Auto }, true),
        };
        let window = match (&spec.window.time, spec.window.count) {
            (Some(t), None) => {
                let ms = dur("window.time", t)?;
                if ms <= 0 {
                    return Err(DedupError::spec("window.time", "must be longer than zero"));
                }
                Window::Time(ms)
            }
            (None, Some(n)) => {
                if n == 0 || n > MAX_COUNT_WINDOW {
                    return Err(DedupError::spec("window.count", format!("1 to {MAX_COUNT_WINDOW} records")));
                }
                Window::Count(n)
            }
            (Some(_), Some(_)) => return Err(DedupError::spec("window", "either time or count, not both")),
            (None, None) => return Err(DedupError::spec("window", "a time ({\"time\": \"10m\"}) or a count")),
        };
        let lateness_ms = match &spec.window.lateness {
            Some(l) => dur("window.lateness", l)?,
            None => match window {
                Window::Time(w) => w,
                Window::Count(_) => 0,
            },
        };
        if lateness_ms < 0 {
            return Err(DedupError::spec("window.lateness", "must not be negative"));
        }
        let max_keys = spec.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 || max_keys > MAX_KEYS_LIMIT {
            return Err(DedupError::spec("max_keys", format!("1 to {MAX_KEYS_LIMIT}")));
        }
        let bloom = if spec.tier == Tier::Bloom || spec.overflow == Overflow::Bloom {
            let b = spec.bloom.clone().unwrap_or_default();
            let fpr = b.false_positive_rate.unwrap_or(0.001);
            if !(fpr > 0.0 && fpr < 0.5) {
                return Err(DedupError::spec("bloom.false_positive_rate", "must be in (0, 0.5)"));
            }
            let keys = b.max_keys.unwrap_or(max_keys);
            if keys == 0 || keys > MAX_KEYS_LIMIT * 10 {
                return Err(DedupError::spec("bloom.max_keys", format!("1 to {}", MAX_KEYS_LIMIT * 10)));
            }
            let segments = b.segments.unwrap_or(4);
            if !(1..=64).contains(&segments) {
                return Err(DedupError::spec("bloom.segments", "1 to 64"));
            }
            Some(Bloom { max_keys: keys, fpr, segments })
        } else {
            None
        };
        let fuzzy = spec.fuzzy.clone().unwrap_or_default();
        let numeric = match &fuzzy.numeric {
            None => None,
            Some(n) => {
                for (i, p) in n.same.iter().enumerate() {
                    pointer(&format!("fuzzy.numeric.same[{i}]"), p)?;
                }
                pointer("fuzzy.numeric.time_field", &n.time_field)?;
                let within_ms = dur("fuzzy.numeric.within", &n.within)?;
                if n.fields.is_empty() || n.fields.len() > MAX_RECORD_FIELDS {
                    return Err(DedupError::spec("fuzzy.numeric.fields", format!("1 to {MAX_RECORD_FIELDS} fields")));
                }
                let mut fields = Vec::new();
                for (p, eps) in &n.fields {
                    pointer("fuzzy.numeric.fields", p)?;
                    if !(eps.is_finite() && *eps >= 0.0) {
                        return Err(DedupError::spec(format!("fuzzy.numeric.fields.{p}"), "a tolerance ≥ 0"));
                    }
                    fields.push((p.clone(), *eps));
                }
                Some(Numeric {
                    same: n.same.clone(),
                    // the policy's own time format when it is the same field
                    time: TimeSource::Field {
                        pointer: n.time_field.clone(),
                        format: match &spec.time {
                            Some(TimeSpec { field: Some(f), format }) if *f == n.time_field => *format,
                            _ => TimeFormat::Auto,
                        },
                    },
                    within_ms,
                    fields,
                })
            }
        };
        let text = match &fuzzy.text {
            None => None,
            Some(t) => {
                pointer("fuzzy.text.field", &t.field)?;
                if t.method != "minhash" {
                    return Err(DedupError::spec(
                        "fuzzy.text.method",
                        format!("'{}': only \"minhash\" is built", t.method),
                    ));
                }
                if !(t.threshold > 0.0 && t.threshold <= 1.0) {
                    return Err(DedupError::spec("fuzzy.text.threshold", "must be in (0, 1]"));
                }
                let shingle = t.shingle.unwrap_or(5);
                if !(1..=32).contains(&shingle) {
                    return Err(DedupError::spec("fuzzy.text.shingle", "1 to 32 characters"));
                }
                Some(Text { field: t.field.clone(), threshold: t.threshold, shingle })
            }
        };
        let record = match &fuzzy.record {
            None => None,
            Some(r) => Some(record(r)?),
        };
        if let Some(p) = &spec.event_id {
            pointer("event_id", p)?;
        }
        if spec.store == StoreKind::Redis && (spec.tier != Tier::Exact || spec.fuzzy.is_some()) {
            return Err(DedupError::spec(
                "store",
                "the redis store keeps exact keys only: no bloom tier or fuzzy rules",
            ));
        }
        if spec.store == StoreKind::Redis && (matches!(window, Window::Count(_)) || spec.keep == Keep::Last) {
            return Err(DedupError::spec(
                "store",
                "the redis store expires keys by time (PX): a time window with keep: first",
            ));
        }
        Ok(Policy {
            spec,
            version,
            identity,
            time,
            time_fallback,
            window,
            lateness_ms,
            max_keys,
            bloom,
            numeric,
            text,
            record,
        })
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The topic uniques go to (default `<source>.unique`).
    pub fn output_topic(&self) -> Option<String> {
        let src = self.spec.source.as_ref()?;
        Some(self.spec.output.as_ref().and_then(|o| o.topic.clone()).unwrap_or_else(|| format!("{}.unique", src.topic)))
    }

    pub fn duplicates_topic(&self) -> Option<String> {
        self.spec.output.as_ref().and_then(|o| o.duplicates_topic.clone())
    }

    /// Where late (with `late: dead_letter`) and unusable records go.
    pub fn dead_letter_topic(&self) -> String {
        self.spec
            .output
            .as_ref()
            .and_then(|o| o.dead_letter_topic.clone())
            .unwrap_or_else(|| format!("loom.dedup.{}.dlq", self.spec.id))
    }

    /// What the engine's state depends on: a saved state is reused by a new version of the
    /// policy only if this is unchanged (a new identity or window starts from empty state).
    pub fn state_fingerprint(&self) -> u64 {
        let v = serde_json::to_value(&self.spec).unwrap_or_default();
        let parts: Vec<&Value> =
            ["identity", "ignore", "time", "window", "keep", "tier", "max_keys", "overflow", "bloom", "fuzzy", "store"]
                .iter()
                .map(|k| v.get(*k).unwrap_or(&Value::Null))
                .collect();
        let mut bytes = Vec::new();
        features::canonical(&Value::Array(parts.into_iter().cloned().collect()), &mut bytes);
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// Prepares one event for the engine (pure): identity, event time, fuzzy features.
    pub fn input(&self, event: &Value, record_ms: Option<i64>, now_ms: i64) -> Result<Input, (&'static str, String)> {
        features::prepare(self, event, record_ms, now_ms)
    }
}

fn record(r: &RecordSpec) -> Result<Record, DedupError> {
    if r.fields.is_empty() || r.fields.len() > MAX_RECORD_FIELDS {
        return Err(DedupError::spec("fuzzy.record.fields", format!("1 to {MAX_RECORD_FIELDS} fields")));
    }
    let mut fields = Vec::new();
    for (i, f) in r.fields.iter().enumerate() {
        let at = |x: &str| format!("fuzzy.record.fields[{i}].{x}");
        pointer(&at("field"), &f.field)?;
        if !(f.weight.is_finite() && f.weight > 0.0) {
            return Err(DedupError::spec(at("weight"), "a weight > 0"));
        }
        let scale = match (f.comparator, f.scale) {
            (Comparator::Numeric | Comparator::Date, None) => {
                return Err(DedupError::spec(at("scale"), "numeric and date comparators need a scale"));
            }
            (_, Some(s)) if !(s.is_finite() && s > 0.0) => return Err(DedupError::spec(at("scale"), "a scale > 0")),
            (_, s) => s.unwrap_or(1.0),
        };
        fields.push(RecordField { pointer: f.field.clone(), comparator: f.comparator, weight: f.weight, scale });
    }
    if !(r.threshold > 0.0 && r.threshold <= 1.0) {
        return Err(DedupError::spec("fuzzy.record.threshold", "must be in (0, 1]"));
    }
    if r.blocking.is_empty() || r.blocking.len() > 16 {
        return Err(DedupError::spec(
            "fuzzy.record.blocking",
            "1 to 16 blocking keys (compare within blocks, never the whole window)",
        ));
    }
    let mut blocking = Vec::new();
    for (i, b) in r.blocking.iter().enumerate() {
        if b.is_empty() || b.len() > 8 {
            return Err(DedupError::spec(format!("fuzzy.record.blocking[{i}]"), "1 to 8 parts"));
        }
        let mut parts = Vec::new();
        for (j, p) in b.iter().enumerate() {
            let at = format!("fuzzy.record.blocking[{i}][{j}]");
            parts.push(features::BlockPart::parse(p).map_err(|e| DedupError::spec(&at, e))?);
        }
        blocking.push(parts);
    }
    let max_candidates = r.max_candidates.unwrap_or(32);
    if !(1..=1000).contains(&max_candidates) {
        return Err(DedupError::spec("fuzzy.record.max_candidates", "1 to 1000"));
    }
    Ok(Record { fields, threshold: r.threshold, blocking, max_candidates })
}

impl loom_service::book::Spec for PolicySpec {
    type Compiled = Policy;
    type Error = DedupError;

    fn id(&self) -> &str {
        &self.id
    }

    fn compile(&self, version: i32) -> Result<Policy, DedupError> {
        Policy::compile(self.clone(), version)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({"id": "readings", "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10m"}})
    }

    fn compile(v: Value) -> Result<Policy, DedupError> {
        let spec: PolicySpec = serde_json::from_value(v).map_err(|e| DedupError::Invalid(e.to_string()))?;
        Policy::compile(spec, 1)
    }

    fn with(path: &str, value: Value) -> Value {
        let mut v = base();
        let mut at = &mut v;
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if at.get(*p).is_none() {
                at[*p] = json!({});
            }
            at = &mut at[*p];
        }
        at[parts[parts.len() - 1]] = value;
        v
    }

    #[test]
    fn the_issue_example_compiles() {
        let p = compile(json!({"id": "readings", "source": {"topic": "sensors.raw"},
            "identity": {"fields": ["/device", "/seq"]},
            "window": {"time": "10m"}, "keep": "first",
            "fuzzy": {"numeric": {"same": ["/device"], "time_field": "/ts", "within": "2s", "fields": {"/value": 0.01}},
                      "text": {"field": "/message", "method": "minhash", "threshold": 0.85}},
            "late": "pass",
            "output": {"topic": "sensors.unique", "duplicates_topic": "sensors.duplicates"}}))
        .unwrap();
        assert_eq!(p.window, Window::Time(600_000));
        assert_eq!(p.output_topic().as_deref(), Some("sensors.unique"));
        assert_eq!(p.numeric.as_ref().unwrap().within_ms, 2000);
        assert!(p.bloom.is_some(), "overflow defaults to the bloom tier");
    }

    #[test]
    fn bad_specs_name_their_field() {
        let cases = [
            (with("/id", json!("a b")), "id"),
            (with("/window", json!({})), "window"),
            (with("/window", json!({"time": "0s"})), "window.time"),
            (with("/window", json!({"count": 0})), "window.count"),
            (with("/window", json!({"time": "1m", "count": 5})), "window"),
            (with("/window/lateness", json!("soon")), "window.lateness"),
            (with("/identity", json!({"fields": []})), "identity.fields"),
            (with("/identity", json!({"fields": ["device"]})), "identity.fields[0]"),
            (with("/identity", json!("everything")), "identity"),
            (with("/bloom", json!({"false_positive_rate": 0.5})), "bloom.false_positive_rate"),
            (with("/bloom", json!({"false_positive_rate": 0.0})), "bloom.false_positive_rate"),
            (
                with("/tier", json!("bloom")).pipe(|mut v| {
                    v["bloom"] = json!({"segments": 0});
                    v
                }),
                "bloom.segments",
            ),
            (with("/max_keys", json!(0)), "max_keys"),
            (
                with("/fuzzy", json!({"text": {"field": "/m", "threshold": 0.9, "method": "simhash"}})),
                "fuzzy.text.method",
            ),
            (with("/fuzzy", json!({"text": {"field": "/m", "threshold": 1.5}})), "fuzzy.text.threshold"),
            (
                with(
                    "/fuzzy",
                    json!({"record": {"fields": [{"field": "/a", "comparator": "numeric"}], "threshold": 0.9, "blocking": [["/a"]]}}),
                ),
                "fuzzy.record.fields[0].scale",
            ),
            (
                with(
                    "/fuzzy",
                    json!({"record": {"fields": [{"field": "/a", "comparator": "exact"}], "threshold": 0.9, "blocking": []}}),
                ),
                "fuzzy.record.blocking",
            ),
            (with("/output", json!({"topic": "x"})), "output"),
            (
                with("/store", json!("redis")).pipe(|mut v| {
                    v["tier"] = json!("bloom");
                    v
                }),
                "store",
            ),
        ];
        for (spec, field) in cases {
            match compile(spec.clone()) {
                Err(DedupError::BadSpec { field: f, .. }) => assert_eq!(f, field, "{spec}"),
                other => panic!("{spec}: expected a bad {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(compile(with("/windw", json!({"time": "1m"}))).is_err());
    }

    trait Pipe: Sized {
        fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
            f(self)
        }
    }
    impl Pipe for Value {}
}
