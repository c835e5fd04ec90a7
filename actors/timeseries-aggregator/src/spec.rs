//! Job specs: the JSON users write (`POST /jobs`), validated into a [`Job`] the pipeline runs —
//! every failure names its field (`window.slide`, `aggregates[2].q`, …). Also how one event is
//! prepared for the engine: key, event time, each aggregate's input, or the dead-letter reason.
//! Pure; table-tested.

use std::str::FromStr;

use loom_streams::aggregate::AggFn;
use loom_streams::time::{TimeFormat, TimeSource};
use loom_streams::{Emit, EngineSpec, Event, Input, WindowKind, WindowSpec, duration};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TsError;

/// Open windows a job may hold per partition unless it says otherwise.
pub const DEFAULT_MAX_OPEN_WINDOWS: usize = 100_000;
pub const MAX_OPEN_WINDOWS_LIMIT: usize = 10_000_000;
pub const MAX_AGGREGATES: usize = 64;
pub const MAX_KEY_FIELDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    pub time: TimeSpec,
    #[serde(default)]
    pub key: Vec<String>,
    pub window: WindowJson,
    pub aggregates: Vec<AggregateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub emit: Emit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_future_skew: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_windows: Option<usize>,
    /// Where late records go (default `loom.timeseries.<id>.late`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_topic: Option<String>,
    /// Where records without a usable time, key or field go (default `loom.timeseries.<id>.dlq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    #[serde(default)]
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// A JSON pointer; absent means the Kafka record timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default)]
    pub format: TimeFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowJson {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    pub name: String,
    #[serde(rename = "fn")]
    pub function: AggFn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    #[serde(default)]
    pub per_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    Kafka { topic: String },
    Postgres { table: String },
}

/// A validated job, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: JobSpec,
    pub version: i32,
    pub engine: EngineSpec,
    pub time: TimeSource,
    pub aggregates: Vec<AggregateSpec>,
    pub max_future_skew_ms: i64,
    pub late_topic: String,
    pub dead_letter_topic: String,
}

/// Why an event cannot be aggregated (the dead letter's `loom.error.code` and reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub code: &'static str,
    pub reason: String,
}

fn dead(code: &'static str, reason: impl Into<String>) -> DeadLetter {
    DeadLetter { code, reason: reason.into() }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn pointer(field: &str, p: &str) -> Result<(), TsError> {
    if p.is_empty() || !p.starts_with('/') || p.len() > 512 {
        return Err(TsError::spec(field, format!("'{p}' is not a JSON pointer (RFC 6901, starting with '/')")));
    }
    Ok(())
}

fn dur(field: &str, s: &Option<String>, default: i64) -> Result<i64, TsError> {
    match s {
        None => Ok(default),
        Some(s) => duration::parse_ms(s).map_err(|e| TsError::spec(field, e)),
    }
}

/// A SQL table name Loom creates: lowercase identifier, at most 48 characters (room for
/// partition suffixes).
pub fn valid_table(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && t.len() <= 48
        && t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !t.starts_with("ts_")
}

impl Job {
    /// Validates a spec; every error names the field.
    pub fn compile(spec: JobSpec, version: i32) -> Result<Job, TsError> {
        if !valid_name(&spec.id, 128) {
            return Err(TsError::spec("id", "1-128 characters of A-Z a-z 0-9 . _ -"));
        }
        if let Some(src) = &spec.source
            && !valid_name(&src.topic, 249)
        {
            return Err(TsError::spec("source.topic", "not a valid Kafka topic name"));
        }
        let time = match &spec.time.field {
            Some(p) => {
                pointer("time.field", p)?;
                TimeSource::Field { pointer: p.clone(), format: spec.time.format }
            }
            None if spec.source.is_some() => TimeSource::RecordTimestamp,
            None => return Err(TsError::spec("time.field", "required for a job without a Kafka source")),
        };
        if spec.key.len() > MAX_KEY_FIELDS {
            return Err(TsError::spec("key", format!("at most {MAX_KEY_FIELDS} fields")));
        }
        for (i, k) in spec.key.iter().enumerate() {
            pointer(&format!("key[{i}]"), k)?;
        }
        let window = window(&spec.window)?;
        if spec.aggregates.is_empty() || spec.aggregates.len() > MAX_AGGREGATES {
            return Err(TsError::spec("aggregates", format!("1 to {MAX_AGGREGATES} aggregates")));
        }
        let mut aggs = Vec::new();
        for (i, a) in spec.aggregates.iter().enumerate() {
            let at = |f: &str| format!("aggregates[{i}].{f}");
            if !valid_name(&a.name, 64) {
                return Err(TsError::spec(at("name"), "1-64 characters of A-Z a-z 0-9 . _ -"));
            }
            if spec.aggregates[..i].iter().any(|b| b.name == a.name) {
                return Err(TsError::spec(at("name"), format!("'{}' is used twice", a.name)));
            }
            match (&a.field, a.function.needs_field()) {
                (None, true) => return Err(TsError::spec(at("field"), format!("{:?} needs a field", a.function))),
                (Some(p), _) => pointer(&at("field"), p)?,
                _ => {}
            }
            let q = match (a.function, a.q) {
                (AggFn::Percentile, Some(q)) if q > 0.0 && q < 1.0 => q,
                (AggFn::Percentile, _) => return Err(TsError::spec(at("q"), "percentile needs q with 0 < q < 1")),
                (_, Some(_)) => return Err(TsError::spec(at("q"), "only percentile takes q")),
                (_, None) => 0.0,
            };
            aggs.push((a.function, q));
        }
        let lateness = dur("allowed_lateness", &spec.allowed_lateness, 0)?;
        let idle = dur("idle_timeout", &spec.idle_timeout, 60_000)?;
        if idle <= 0 {
            return Err(TsError::spec("idle_timeout", "must be positive"));
        }
        let skew = dur("max_future_skew", &spec.max_future_skew, 300_000)?;
        let max_open = spec.max_open_windows.unwrap_or(DEFAULT_MAX_OPEN_WINDOWS);
        if max_open == 0 || max_open > MAX_OPEN_WINDOWS_LIMIT {
            return Err(TsError::spec("max_open_windows", format!("1 to {MAX_OPEN_WINDOWS_LIMIT}")));
        }
        for (field, topic) in [("late_topic", &spec.late_topic), ("dead_letter_topic", &spec.dead_letter_topic)] {
            if let Some(t) = topic
                && !valid_name(t, 249)
            {
                return Err(TsError::spec(field, "not a valid Kafka topic name"));
            }
        }
        for (i, s) in spec.sinks.iter().enumerate() {
            match s {
                SinkSpec::Kafka { topic } if !valid_name(topic, 249) => {
                    return Err(TsError::spec(format!("sinks[{i}].kafka.topic"), "not a valid Kafka topic name"));
                }
                SinkSpec::Postgres { table } if !valid_table(table) => {
                    return Err(TsError::spec(
                        format!("sinks[{i}].postgres.table"),
                        "a lowercase SQL identifier of at most 48 characters, not starting with ts_",
                    ));
                }
                _ => {}
            }
        }
        if spec.sinks.len() > 8 {
            return Err(TsError::spec("sinks", "at most 8 sinks"));
        }
        let late_topic = spec.late_topic.clone().unwrap_or_else(|| format!("loom.timeseries.{}.late", spec.id));
        let dead_letter_topic =
            spec.dead_letter_topic.clone().unwrap_or_else(|| format!("loom.timeseries.{}.dlq", spec.id));
        let engine = EngineSpec {
            window,
            aggregates: aggs,
            allowed_lateness_ms: lateness,
            emit: spec.emit,
            per_key_watermark: spec.watermark.is_some_and(|w| w.per_key),
            idle_timeout_ms: idle,
            max_open_windows: max_open,
        };
        Ok(Job {
            aggregates: spec.aggregates.clone(),
            spec,
            version,
            engine,
            time,
            max_future_skew_ms: skew,
            late_topic,
            dead_letter_topic,
        })
    }

    pub fn uses_kafka(&self) -> bool {
        self.spec.source.is_some() || self.spec.sinks.iter().any(|s| matches!(s, SinkSpec::Kafka { .. }))
    }

    pub fn postgres_tables(&self) -> impl Iterator<Item = &str> {
        self.spec.sinks.iter().filter_map(|s| match s {
            SinkSpec::Postgres { table } => Some(table.as_str()),
            _ => None,
        })
    }

    pub fn kafka_topics(&self) -> impl Iterator<Item = &str> {
        self.spec.sinks.iter().filter_map(|s| match s {
            SinkSpec::Kafka { topic } => Some(topic.as_str()),
            _ => None,
        })
    }

    /// Turns one event into the engine's input, or says why it is a dead letter.
    pub fn prepare(&self, event: &Value, record_ms: Option<i64>, now_ms: i64) -> Result<Event, DeadLetter> {
        if !event.is_object() {
            return Err(dead("not_an_object", "an event must be a JSON object"));
        }
        let ts = self.time.extract(event, record_ms).map_err(|e| dead(e.code(), e.to_string()))?;
        if ts > now_ms.saturating_add(self.max_future_skew_ms) {
            return Err(dead(
                "future_time",
                format!("event time is more than {} ahead of the clock", duration::format_ms(self.max_future_skew_ms)),
            ));
        }
        let mut parts = Vec::with_capacity(self.spec.key.len());
        for p in &self.spec.key {
            match event.pointer(p) {
                Some(v) if !v.is_null() => parts.push(v.clone()),
                _ => return Err(dead("missing_key", format!("no value at key field {p}"))),
            }
        }
        let key = Value::Array(parts).to_string();
        if key.len() > 1024 {
            return Err(dead("key_too_large", "the key's values exceed 1024 bytes"));
        }
        let mut inputs = Vec::with_capacity(self.aggregates.len());
        for a in &self.aggregates {
            let input = match &a.field {
                None => Input::None,
                Some(p) => match event.pointer(p) {
                    None | Some(Value::Null) => return Err(dead("missing_field", format!("no value at {p}"))),
                    Some(v) if a.function.numeric() => match v.as_f64() {
                        Some(x) if x.is_finite() => Input::Number(x),
                        _ => return Err(dead("not_numeric", format!("the value at {p} is not a finite number"))),
                    },
                    Some(v) => Input::Json(v.clone()),
                },
            };
            inputs.push(input);
        }
        Ok(Event { key, ts, inputs })
    }

    /// The key as the results show it: `{"device": "d1", "metric": "temp"}` (last pointer
    /// segment → value), from the engine's canonical key text.
    pub fn key_object(&self, key: &str) -> Value {
        let values: Vec<Value> = serde_json::from_str(key).unwrap_or_default();
        let mut m = Map::new();
        for (p, v) in self.spec.key.iter().zip(values) {
            let name = p.rsplit('/').next().unwrap_or(p).replace("~1", "/").replace("~0", "~");
            m.insert(name, v);
        }
        Value::Object(m)
    }

    /// The names of the job's aggregates, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.aggregates.iter().map(|a| a.name.as_str())
    }
}

fn window(w: &WindowJson) -> Result<WindowSpec, TsError> {
    let need = |field: &str, v: &Option<String>| -> Result<i64, TsError> {
        match v {
            Some(s) => duration::parse_ms(s).map_err(|e| TsError::spec(format!("window.{field}"), e)),
            None => Err(TsError::spec(format!("window.{field}"), format!("required for {} windows", w.kind))),
        }
    };
    let kind = match w.kind.as_str() {
        "tumbling" => WindowKind::Tumbling { size_ms: need("size", &w.size)? },
        "hopping" => WindowKind::Hopping { size_ms: need("size", &w.size)?, slide_ms: need("slide", &w.slide)? },
        "session" => WindowKind::Session { gap_ms: need("gap", &w.gap)? },
        other => return Err(TsError::spec("window.type", format!("'{other}' is not tumbling, hopping or session"))),
    };
    let offset = match &w.offset {
        Some(s) => duration::parse_ms(s).map_err(|e| TsError::spec("window.offset", e))?,
        None => 0,
    };
    let tz = match &w.time_zone {
        Some(z) => Some(
            chrono_tz::Tz::from_str(z)
                .map_err(|_| TsError::spec("window.time_zone", format!("'{z}' is not an IANA time zone")))?,
        ),
        None => None,
    };
    WindowSpec::new(kind, offset, tz).map_err(|(field, message)| TsError::spec(field, message))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({"id": "temp-1m", "time": {"field": "/ts"}, "key": ["/device", "/metric"],
               "window": {"type": "tumbling", "size": "1m"},
               "aggregates": [{"name": "n", "fn": "count"}, {"name": "avg", "fn": "avg", "field": "/value"},
                              {"name": "p95", "fn": "percentile", "q": 0.95, "field": "/value"}],
               "allowed_lateness": "30s", "idle_timeout": "1m", "emit": "final"})
    }

    fn compile(v: Value) -> Result<Job, String> {
        let spec: JobSpec = serde_json::from_value(v).map_err(|e| format!("serde: {e}"))?;
        Job::compile(spec, 1).map_err(|e| match e {
            TsError::BadSpec { field, .. } => field,
            other => other.to_string(),
        })
    }

    #[test]
    fn the_issue_example_compiles() {
        let mut v = base();
        v["source"] = json!({"topic": "sensors.temp"});
        v["sinks"] = json!([{"kafka": {"topic": "agg.temp.1m"}}, {"postgres": {"table": "temp_1m"}}]);
        let job = compile(v).expect("valid");
        assert_eq!(job.engine.allowed_lateness_ms, 30_000);
        assert_eq!(job.late_topic, "loom.timeseries.temp-1m.late");
        assert_eq!(job.postgres_tables().collect::<Vec<_>>(), vec!["temp_1m"]);
        assert!(job.uses_kafka());
    }

    #[test]
    fn invalid_specs_name_their_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/id", json!("bad id!"), "id"),
            ("/window", json!({"type": "tumbling", "size": "0s"}), "window.size"),
            ("/window", json!({"type": "hopping", "size": "1m", "slide": "2m"}), "window.slide"),
            ("/window", json!({"type": "hopping", "size": "1m"}), "window.slide"),
            ("/window", json!({"type": "sliding", "size": "1m"}), "window.type"),
            ("/window", json!({"type": "tumbling", "size": "1d", "time_zone": "Mars/Olympus"}), "window.time_zone"),
            ("/window", json!({"type": "session", "gap": "-1s"}), "window.gap"),
            ("/aggregates", json!([]), "aggregates"),
            ("/aggregates", json!([{"name": "a", "fn": "avg"}]), "aggregates[0].field"),
            ("/aggregates", json!([{"name": "p", "fn": "percentile", "field": "/v", "q": 1.5}]), "aggregates[0].q"),
            ("/aggregates", json!([{"name": "n", "fn": "count"}, {"name": "n", "fn": "count"}]), "aggregates[1].name"),
            ("/aggregates", json!([{"name": "n", "fn": "count", "q": 0.5}]), "aggregates[0].q"),
            ("/aggregates", json!([{"name": "x", "fn": "sum", "field": "value"}]), "aggregates[0].field"),
            ("/allowed_lateness", json!("soon"), "allowed_lateness"),
            ("/idle_timeout", json!("0s"), "idle_timeout"),
            ("/max_open_windows", json!(0), "max_open_windows"),
            ("/key", json!(["device"]), "key[0]"),
            ("/sinks", json!([{"postgres": {"table": "Bad-Name"}}]), "sinks[0].postgres.table"),
            ("/sinks", json!([{"postgres": {"table": "ts_windows"}}]), "sinks[0].postgres.table"),
            ("/time", json!({}), "time.field"),
        ];
        for (at, value, field) in cases {
            let mut v = base();
            v[at.trim_start_matches('/')] = value.clone();
            assert_eq!(compile(v).map(|_| ()), Err(field.to_owned()), "{at} = {value}");
        }
        let mut v = base();
        v["colour"] = json!("red");
        assert!(compile(v).expect_err("unknown field").starts_with("serde"));
    }

    #[test]
    fn events_become_engine_input_or_dead_letters() {
        let job = compile(base()).expect("valid");
        let now = 1_767_225_600_000;
        let ok =
            job.prepare(&json!({"device": "d1", "metric": "t", "ts": "2026-01-01T00:00:00Z", "value": 2.5}), None, now);
        let ev = ok.expect("prepared");
        assert_eq!(ev.key, r#"["d1","t"]"#);
        assert_eq!(ev.inputs, vec![Input::None, Input::Number(2.5), Input::Number(2.5)]);
        assert_eq!(job.key_object(&ev.key), json!({"device": "d1", "metric": "t"}));
        for (event, code) in [
            (json!([1]), "not_an_object"),
            (json!({"device": "d1", "metric": "t", "value": 1}), "missing_time"),
            (json!({"device": "d1", "metric": "t", "ts": "later", "value": 1}), "invalid_time"),
            (json!({"device": "d1", "metric": "t", "ts": "2026-01-01T01:00:00Z", "value": 1}), "future_time"),
            (json!({"metric": "t", "ts": "2026-01-01T00:00:00Z", "value": 1}), "missing_key"),
            (json!({"device": "d1", "metric": "t", "ts": "2026-01-01T00:00:00Z"}), "missing_field"),
            (json!({"device": "d1", "metric": "t", "ts": "2026-01-01T00:00:00Z", "value": "NaN"}), "not_numeric"),
            (json!({"device": "d1", "metric": "t", "ts": "2026-01-01T00:00:00Z", "value": [1]}), "not_numeric"),
        ] {
            assert_eq!(job.prepare(&event, None, now).map(|_| ()).map_err(|d| d.code), Err(code), "{event}");
        }
    }
}
