//! Monitor specs — what a user writes — and their validation into a [`Monitor`] the ingest and
//! report paths run. Every failure names its field (`window`, `fields./lat.range`, …).

use std::collections::BTreeMap;

use loom_streams::duration;
use loom_streams::pointer::Pointer;
use loom_streams::time::{TimeFormat, TimeSource, parse_request_time};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::QualityError;
use crate::profile::FieldRule;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSpec>,
    /// Tumbling event-time window ("1m", "10m", "1h").
    pub window: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Pointers whose values together are a key that should be unique per window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsSpec>,
}

/// Where open conditions go (`alerts.rs`): the Health Aggregator as the check
/// `check:data-quality/<id>` (default on) and, optionally, a Kafka topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    #[serde(default = "yes")]
    pub health: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

fn yes() -> bool {
    true
}

/// A legal Kafka topic name: 1-249 of A-Z a-z 0-9 . _ -, not "." or "..".
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    pub subject: String,
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
pub struct FieldSpec {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessSpec {
    pub per: String,
    pub max_gap: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ReferenceSpec {
    /// The windows of the preceding span ("24h") — a moving baseline.
    Rolling(String),
    /// The windows starting in [from, to) — a frozen baseline.
    Fixed { from: String, to: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Psi,
    Ks,
    Js,
    Wasserstein,
    Chi2,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Psi => "psi",
            Method::Ks => "ks",
            Method::Js => "js",
            Method::Wasserstein => "wasserstein",
            Method::Chi2 => "chi2",
        }
    }

    /// Whether the method decides by a p-value (then corrected across fields).
    pub fn tested(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2)
    }

    pub fn numeric(self) -> bool {
        !matches!(self, Method::Chi2)
    }

    pub fn categorical(self) -> bool {
        matches!(self, Method::Psi | Method::Js | Method::Chi2)
    }

    /// Default threshold: significance for tests, the distance for the rest (Evidently's).
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::Ks | Method::Chi2 => 0.05,
            Method::Psi | Method::Js | Method::Wasserstein => 0.1,
        }
    }
}

fn all_methods() -> Vec<Method> {
    vec![Method::Psi, Method::Ks, Method::Js, Method::Wasserstein, Method::Chi2]
}

fn min_samples() -> u64 {
    100
}

fn min_effect() -> f64 {
    0.05
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSpec {
    pub fields: Vec<String>,
    #[serde(default = "all_methods")]
    pub methods: Vec<Method>,
    /// Fewer non-null values than this on either side: `insufficient_data`, never drifted.
    #[serde(default = "min_samples")]
    pub min_samples: u64,
    /// A tested method (ks, chi2) flags only when the effect is at least this: the KS D, or the
    /// total-variation distance of the category shares.
    #[serde(default = "min_effect")]
    pub min_effect: f64,
    /// Per-method thresholds overriding the defaults (p-value for ks/chi2, distance otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<Method, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyMethod {
    #[default]
    Mad,
    Ewma,
    HoltWinters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySpec {
    /// `volume`, `compliance`, `quality_score`, `null_rate:/f`, `missing_rate:/f`, `mean:/f`,
    /// `distinct:/f`, `duplicate_keys`, `gaps`.
    pub metrics: Vec<String>,
    #[serde(default)]
    pub method: AnomalyMethod,
    /// |score| beyond which a point is anomalous (MAD: robust z, default 3.5; EWMA and
    /// Holt-Winters: standard deviations of the residuals, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Holt-Winters season ("1d" with 1h windows: 24 windows per season).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
}

/// A metric the anomaly detector follows.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Volume,
    Compliance,
    QualityScore,
    NullRate(String),
    MissingRate(String),
    Mean(String),
    Distinct(String),
    DuplicateKeys,
    Gaps,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s.split_once(':') {
            None => match s {
                "volume" => Metric::Volume,
                "compliance" => Metric::Compliance,
                "quality_score" => Metric::QualityScore,
                "duplicate_keys" => Metric::DuplicateKeys,
                "gaps" => Metric::Gaps,
                _ => return None,
            },
            Some((kind, f)) if f.starts_with('/') => match kind {
                "null_rate" => Metric::NullRate(f.into()),
                "missing_rate" => Metric::MissingRate(f.into()),
                "mean" => Metric::Mean(f.into()),
                "distinct" => Metric::Distinct(f.into()),
                _ => return None,
            },
            Some(_) => return None,
        })
    }

    /// The field the metric reads, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Metric::NullRate(f) | Metric::MissingRate(f) | Metric::Mean(f) | Metric::Distinct(f) => Some(f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    Rolling(i64),
    Fixed { from: i64, to: i64 },
}

/// A validated monitor.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub spec: MonitorSpec,
    pub version: i32,
    pub time: TimeSource,
    pub window_ms: i64,
    /// Every watched field (declared or drift-tested) with its rule, in pointer order.
    pub fields: BTreeMap<String, FieldRule>,
    pub reference: Reference,
    pub max_gap_ms: Option<i64>,
    pub metrics: Vec<(String, Metric)>,
    pub season_windows: Option<usize>,
}

/// A stored monitor, compiled.
pub type Entry = std::sync::Arc<loom_service::book::Entry<MonitorSpec>>;

/// Monitors per cluster at most.
pub const MAX_MONITORS: usize = 256;
/// Watched fields per monitor at most.
pub const MAX_FIELDS: usize = 64;
/// Shortest window.
const MIN_WINDOW_MS: i64 = 1_000;

fn pointer(field: &str, p: &str) -> Result<(), QualityError> {
    if !p.starts_with('/') || p.len() > 512 {
        return Err(QualityError::spec(field, format!("'{p}' is not a JSON pointer (RFC 6901, starting with '/')")));
    }
    Ok(())
}

fn dur(field: &str, s: &str) -> Result<i64, QualityError> {
    let ms = duration::parse_ms(s).map_err(|e| QualityError::spec(field, e))?;
    if ms <= 0 {
        return Err(QualityError::spec(field, "must be longer than zero"));
    }
    Ok(ms)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Monitor {
    /// Validates a spec; every error names the field.
    pub fn compile(spec: MonitorSpec, version: i32) -> Result<Monitor, QualityError> {
        if !valid_id(&spec.id) {
            return Err(QualityError::spec("id", "1-128 characters of A-Z a-z 0-9 . _ -"));
        }
        let window_ms = dur("window", &spec.window)?;
        if window_ms < MIN_WINDOW_MS {
            return Err(QualityError::spec("window", "at least 1s"));
        }
        let time = match spec.time.as_ref().and_then(|t| t.field.as_ref()) {
            Some(p) => {
                pointer("time.field", p)?;
                TimeSource::Field {
                    pointer: p.clone(),
                    format: spec.time.as_ref().map(|t| t.format).unwrap_or_default(),
                }
            }
            None if spec.source.is_some() => TimeSource::RecordTimestamp,
            None => TimeSource::Field { pointer: "/ts".into(), format: TimeFormat::Auto },
        };
        if let Some(s) = &spec.source
            && !valid_topic(&s.topic)
        {
            return Err(QualityError::spec("source.topic", "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"));
        }
        if let Some(t) = spec.alerts.as_ref().and_then(|a| a.topic.as_ref())
            && !valid_topic(t)
        {
            return Err(QualityError::spec("alerts.topic", "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"));
        }
        if let Some(s) = &spec.schema
            && s.subject.is_empty()
        {
            return Err(QualityError::spec("schema.subject", "must not be empty"));
        }
        if spec.group_by.len() > 4 {
            return Err(QualityError::spec("group_by", "at most 4 pointers"));
        }
        for (i, p) in spec.group_by.iter().enumerate() {
            pointer(&format!("group_by[{i}]"), p)?;
        }
        for (i, p) in spec.unique.iter().enumerate() {
            pointer(&format!("unique[{i}]"), p)?;
        }
        let mut fields = BTreeMap::new();
        for (p, f) in &spec.fields {
            let at = format!("fields.{p}");
            pointer(&at, p)?;
            let range = match f.range {
                Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo <= hi => Some((lo, hi)),
                Some(_) => return Err(QualityError::spec(format!("{at}.range"), "[low, high] with low ≤ high")),
                None => None,
            };
            let allowed = match &f.allowed {
                Some(v) if v.is_empty() || v.len() > 1024 => {
                    return Err(QualityError::spec(format!("{at}.enum"), "1-1024 allowed values"));
                }
                Some(v) => Some(v.iter().map(loom_streams::aggregate::canonical).collect()),
                None => None,
            };
            fields.insert(p.clone(), FieldRule { required: f.required, range, allowed, at: Pointer::new(p) });
        }
        if let Some(d) = &spec.drift {
            if d.fields.is_empty() {
                return Err(QualityError::spec("drift.fields", "name at least one field"));
            }
            if d.methods.is_empty() {
                return Err(QualityError::spec("drift.methods", "name at least one method"));
            }
            for (i, p) in d.fields.iter().enumerate() {
                pointer(&format!("drift.fields[{i}]"), p)?;
                fields.entry(p.clone()).or_insert_with(|| FieldRule { at: Pointer::new(p), ..FieldRule::default() });
            }
            if !(0.0..=1.0).contains(&d.min_effect) {
                return Err(QualityError::spec("drift.min_effect", "between 0 and 1"));
            }
            for (m, t) in &d.thresholds {
                if !t.is_finite() || *t <= 0.0 || (m.tested() && *t >= 1.0) {
                    return Err(QualityError::spec(
                        format!("drift.thresholds.{}", m.name()),
                        "a positive number (below 1 for ks and chi2, a significance level)",
                    ));
                }
            }
        }
        let mut metrics = Vec::new();
        let mut season_windows = None;
        if let Some(a) = &spec.anomaly {
            if a.metrics.is_empty() || a.metrics.len() > 32 {
                return Err(QualityError::spec("anomaly.metrics", "1-32 metrics"));
            }
            for (i, m) in a.metrics.iter().enumerate() {
                let metric = Metric::parse(m).ok_or_else(|| {
                    QualityError::spec(
                        format!("anomaly.metrics[{i}]"),
                        format!(
                            "'{m}' is not a metric: volume, compliance, quality_score, duplicate_keys, gaps, \
                             null_rate:/f, missing_rate:/f, mean:/f, distinct:/f"
                        ),
                    )
                })?;
                if let Some(f) = metric.field() {
                    fields
                        .entry(f.to_owned())
                        .or_insert_with(|| FieldRule { at: Pointer::new(f), ..FieldRule::default() });
                }
                metrics.push((m.clone(), metric));
            }
            if let Some(t) = a.threshold
                && (!t.is_finite() || t <= 0.0)
            {
                return Err(QualityError::spec("anomaly.threshold", "a positive number"));
            }
            match (&a.season, a.method) {
                (Some(s), _) => {
                    let ms = dur("anomaly.season", s)?;
                    if ms % window_ms != 0 || ms / window_ms < 2 || ms / window_ms > 1000 {
                        return Err(QualityError::spec("anomaly.season", "2-1000 whole windows"));
                    }
                    season_windows = Some((ms / window_ms) as usize);
                }
                (None, AnomalyMethod::HoltWinters) => {
                    return Err(QualityError::spec("anomaly.season", "holt_winters needs a season (\"1d\")"));
                }
                (None, _) => {}
            }
        }
        if fields.len() > MAX_FIELDS {
            return Err(QualityError::spec("fields", format!("at most {MAX_FIELDS} watched fields")));
        }
        let reference = match spec.reference.as_ref() {
            None => Reference::Rolling(24 * 3_600_000),
            Some(ReferenceSpec::Rolling(span)) => {
                let ms = dur("reference.rolling", span)?;
                if ms < window_ms {
                    return Err(QualityError::spec("reference.rolling", "at least one window"));
                }
                Reference::Rolling(ms)
            }
            Some(ReferenceSpec::Fixed { from, to }) => {
                let from = parse_request_time(from).map_err(|e| QualityError::spec("reference.fixed.from", e))?;
                let to = parse_request_time(to).map_err(|e| QualityError::spec("reference.fixed.to", e))?;
                if to <= from {
                    return Err(QualityError::spec("reference.fixed", "to must be after from"));
                }
                Reference::Fixed { from, to }
            }
        };
        let max_gap_ms = match &spec.freshness {
            Some(f) => {
                pointer("freshness.per", &f.per)?;
                Some(dur("freshness.max_gap", &f.max_gap)?)
            }
            None => None,
        };
        Ok(Monitor { spec, version, time, window_ms, fields, reference, max_gap_ms, metrics, season_windows })
    }

    pub fn window_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.window_ms) * self.window_ms
    }

    /// The thresholds a drift test decides with.
    pub fn threshold(&self, m: Method) -> f64 {
        self.spec.drift.as_ref().and_then(|d| d.thresholds.get(&m).copied()).unwrap_or(m.default_threshold())
    }
}

impl loom_service::book::Spec for MonitorSpec {
    type Compiled = Monitor;
    type Error = QualityError;

    fn id(&self) -> &str {
        &self.id
    }

    fn compile(&self, version: i32) -> Result<Monitor, QualityError> {
        Monitor::compile(self.clone(), version)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(v: Value) -> Result<Monitor, String> {
        let spec: MonitorSpec = serde_json::from_value(v).map_err(|e| format!("serde: {e}"))?;
        Monitor::compile(spec, 1).map_err(|e| match e {
            QualityError::BadSpec { field, .. } => field,
            other => other.to_string(),
        })
    }

    #[test]
    fn the_issue_example_compiles() {
        let m =
            compile(json!({"id": "gps", "source": {"topic": "device.gps"}, "schema": {"subject": "device.gps-value"},
            "time": {"field": "/ts"}, "window": "1m", "group_by": ["/platform"],
            "fields": {"/lat": {"required": true, "range": [-90, 90]}, "/speed": {"required": false}},
            "freshness": {"per": "/device", "max_gap": "5m"},
            "reference": {"rolling": "24h"},
            "drift": {"fields": ["/speed", "/platform"], "methods": ["psi", "ks", "js", "wasserstein", "chi2"]},
            "anomaly": {"metrics": ["volume", "null_rate:/speed", "compliance"], "method": "mad"}}))
            .unwrap();
        assert_eq!(m.window_ms, 60_000);
        assert_eq!(m.fields.keys().collect::<Vec<_>>(), ["/lat", "/platform", "/speed"]);
        assert_eq!(m.reference, Reference::Rolling(86_400_000));
        assert_eq!(m.window_start(60_001), 60_000);
        assert_eq!(m.window_start(-1), -60_000);
    }

    #[test]
    fn every_bad_spec_names_its_field() {
        let base = json!({"id": "m", "window": "1m"});
        let cases: &[(Value, &str)] = &[
            (json!({"id": "bad id!"}), "id"),
            (json!({"window": "0s"}), "window"),
            (json!({"window": "10ms"}), "window"),
            (json!({"window": "soon"}), "window"),
            (json!({"fields": {"lat": {}}}), "fields.lat"),
            (json!({"fields": {"/lat": {"range": [5, 1]}}}), "fields./lat.range"),
            (json!({"fields": {"/lat": {"enum": []}}}), "fields./lat.enum"),
            (json!({"drift": {"fields": []}}), "drift.fields"),
            (json!({"drift": {"fields": ["/a"], "methods": []}}), "drift.methods"),
            (json!({"drift": {"fields": ["/a"], "thresholds": {"ks": 2}}}), "drift.thresholds.ks"),
            (json!({"anomaly": {"metrics": ["volumes"]}}), "anomaly.metrics[0]"),
            (json!({"anomaly": {"metrics": ["volume"], "method": "holt_winters"}}), "anomaly.season"),
            (json!({"anomaly": {"metrics": ["volume"], "season": "90s"}}), "anomaly.season"),
            (
                json!({"reference": {"fixed": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}}),
                "reference.fixed",
            ),
            (json!({"reference": {"rolling": "30s"}}), "reference.rolling"),
            (json!({"freshness": {"per": "/d", "max_gap": "-1m"}}), "freshness.max_gap"),
            (json!({"group_by": ["x"]}), "group_by[0]"),
        ];
        for (patch, field) in cases {
            let mut v = base.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            assert_eq!(compile(v.clone()).err().as_deref(), Some(*field), "{v}");
        }
        assert!(compile(json!({"id": "m", "window": "1m", "extra": 1})).unwrap_err().starts_with("serde"));
    }
}
