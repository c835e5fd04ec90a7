//! Event time: where a record's timestamp comes from and how it is read. A JSON pointer to an
//! RFC 3339 string or an epoch number (seconds, milliseconds, microseconds or nanoseconds —
//! stated, or told apart by magnitude), or the Kafka record's own timestamp. A record without a
//! usable time is an error with a reason the caller dead-letters; it is never dropped silently.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a numeric or string timestamp is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 strings; numbers by magnitude (< 10^11 s, < 10^14 ms, < 10^17 µs, else ns).
    #[default]
    Auto,
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
}

/// Where the event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSource {
    Field {
        pointer: String,
        format: TimeFormat,
    },
    /// The Kafka record's timestamp (create or log-append time).
    RecordTimestamp,
}

/// Why a record has no usable event time (the dead letter's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("missing_time: no value at {0}")]
    Missing(String),
    #[error("invalid_time: the value at {pointer} is not a time ({why})")]
    Invalid { pointer: String, why: String },
    #[error("missing_time: the record carries no timestamp")]
    NoRecordTimestamp,
    #[error("time_out_of_range: {0} is outside years 1970-9999")]
    OutOfRange(String),
}

impl TimeError {
    /// The stable reason code (the part before the colon).
    pub fn code(&self) -> &'static str {
        match self {
            TimeError::Missing(_) | TimeError::NoRecordTimestamp => "missing_time",
            TimeError::Invalid { .. } => "invalid_time",
            TimeError::OutOfRange(_) => "time_out_of_range",
        }
    }
}

/// Latest accepted time: 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = 253_402_300_799_999;

impl TimeSource {
    /// The event time in milliseconds since the epoch.
    pub fn extract(&self, event: &Value, record_ms: Option<i64>) -> Result<i64, TimeError> {
        match self {
            TimeSource::RecordTimestamp => {
                let ms = record_ms.ok_or(TimeError::NoRecordTimestamp)?;
                check_range(ms, &ms.to_string())
            }
            TimeSource::Field { pointer, format } => {
                let v = event
                    .pointer(pointer)
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| TimeError::Missing(pointer.clone()))?;
                read(v, *format)
                    .map_err(|why| TimeError::Invalid { pointer: pointer.clone(), why })
                    .and_then(|ms| check_range(ms, &format!("the value at {pointer}")))
            }
        }
    }
}

fn check_range(ms: i64, what: &str) -> Result<i64, TimeError> {
    if (0..=MAX_MS).contains(&ms) { Ok(ms) } else { Err(TimeError::OutOfRange(what.to_owned())) }
}

fn read(v: &Value, format: TimeFormat) -> Result<i64, String> {
    match v {
        Value::String(s) => match format {
            TimeFormat::Auto | TimeFormat::Rfc3339 => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Ok(t.timestamp_millis()),
                Err(e) if format == TimeFormat::Auto => {
                    s.trim().parse::<f64>().map_err(|_| format!("not RFC 3339: {e}")).and_then(|n| epoch(n, format))
                }
                Err(e) => Err(format!("not RFC 3339: {e}")),
            },
            _ => s.trim().parse::<f64>().map_err(|_| "not a number".to_owned()).and_then(|n| epoch(n, format)),
        },
        Value::Number(n) if format != TimeFormat::Rfc3339 => match n.as_i64() {
            Some(i) => epoch_int(i, format),
            None => epoch(n.as_f64().ok_or_else(|| "not a finite number".to_owned())?, format),
        },
        Value::Number(_) => Err("a number where an RFC 3339 string is expected".into()),
        other => Err(format!("a {} is not a time", kind(other))),
    }
}

fn epoch(n: f64, format: TimeFormat) -> Result<i64, String> {
    if !n.is_finite() {
        return Err("not a finite number".into());
    }
    let per_ms = match format {
        TimeFormat::EpochS => 1e-3,
        TimeFormat::EpochMs => 1.0,
        TimeFormat::EpochUs => 1e3,
        TimeFormat::EpochNs => 1e6,
        _ => {
            let a = n.abs();
            if a < 1e11 {
                1e-3
            } else if a < 1e14 {
                1.0
            } else if a < 1e17 {
                1e3
            } else {
                1e6
            }
        }
    };
    // rounded to the microsecond first: 1767225600.123 s is 1767225600123 ms, not …122.9999
    let ms = ((n / per_ms) * 1000.0).round().div_euclid(1000.0);
    if ms.abs() > 9.0e15 {
        return Err("out of range".into());
    }
    Ok(ms as i64)
}

/// Integer epochs without float rounding.
fn epoch_int(i: i64, format: TimeFormat) -> Result<i64, String> {
    let a = i.unsigned_abs();
    let format = match format {
        TimeFormat::Auto if a < 100_000_000_000 => TimeFormat::EpochS,
        TimeFormat::Auto if a < 100_000_000_000_000 => TimeFormat::EpochMs,
        TimeFormat::Auto if a < 100_000_000_000_000_000 => TimeFormat::EpochUs,
        TimeFormat::Auto => TimeFormat::EpochNs,
        f => f,
    };
    match format {
        TimeFormat::EpochS => i.checked_mul(1000).ok_or_else(|| "out of range".to_owned()),
        TimeFormat::EpochUs => Ok(i.div_euclid(1000)),
        TimeFormat::EpochNs => Ok(i.div_euclid(1_000_000)),
        _ => Ok(i),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// RFC 3339 UTC with milliseconds, the form of every time Loom answers with.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses a time given in a request (RFC 3339, or epoch milliseconds).
pub fn parse_request_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    s.parse::<i64>().map_err(|_| format!("'{s}' is neither RFC 3339 nor epoch milliseconds"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(format: TimeFormat) -> TimeSource {
        TimeSource::Field { pointer: "/ts".into(), format }
    }

    #[test]
    fn reads_every_supported_form() {
        let t = 1_767_225_600_123; // 2026-01-01T00:00:00.123Z
        for (value, format, want) in [
            (json!("2026-01-01T00:00:00.123Z"), TimeFormat::Auto, Ok(t)),
            (json!("2026-01-01T01:00:00.123+01:00"), TimeFormat::Rfc3339, Ok(t)),
            (json!(1_767_225_600.123), TimeFormat::Auto, Ok(t)),
            (json!(1_767_225_600_123_i64), TimeFormat::Auto, Ok(t)),
            (json!(1_767_225_600_123_456_i64), TimeFormat::Auto, Ok(t)),
            (json!(1_767_225_600_123_456_789_i64), TimeFormat::Auto, Ok(t)),
            (json!(1_767_225_600), TimeFormat::EpochS, Ok(t - 123)),
            (json!(1_767_225_600_123_i64), TimeFormat::EpochMs, Ok(t)),
            (json!("1767225600123"), TimeFormat::EpochMs, Ok(t)),
            (json!("1767225600123"), TimeFormat::Auto, Ok(t)),
            (json!(5), TimeFormat::EpochMs, Ok(5)),
        ] {
            assert_eq!(field(format).extract(&json!({ "ts": value }), None), want, "{value} {format:?}");
        }
    }

    #[test]
    fn unusable_times_are_errors_with_reasons() {
        for (event, format, code) in [
            (json!({}), TimeFormat::Auto, "missing_time"),
            (json!({"ts": null}), TimeFormat::Auto, "missing_time"),
            (json!({"ts": "yesterday"}), TimeFormat::Auto, "invalid_time"),
            (json!({"ts": true}), TimeFormat::Auto, "invalid_time"),
            (json!({"ts": {"s": 1}}), TimeFormat::Auto, "invalid_time"),
            (json!({"ts": 1_767_225_600}), TimeFormat::Rfc3339, "invalid_time"),
            (json!({"ts": "NaN"}), TimeFormat::EpochMs, "invalid_time"),
            (json!({"ts": -5}), TimeFormat::EpochMs, "time_out_of_range"),
            (json!({"ts": "0001-01-01T00:00:00Z"}), TimeFormat::Auto, "time_out_of_range"),
            (json!({"ts": 1e300}), TimeFormat::EpochMs, "invalid_time"),
        ] {
            let got = field(format).extract(&event, None).expect_err("must fail");
            assert_eq!(got.code(), code, "{event}");
        }
    }

    #[test]
    fn record_timestamps() {
        assert_eq!(TimeSource::RecordTimestamp.extract(&json!({}), Some(42)), Ok(42));
        assert_eq!(TimeSource::RecordTimestamp.extract(&json!({}), None), Err(TimeError::NoRecordTimestamp));
    }

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(parse_request_time("2026-01-01T00:00:00.123Z"), Ok(1_767_225_600_123));
        assert_eq!(parse_request_time("5"), Ok(5));
        assert!(parse_request_time("soon").is_err());
    }
}
