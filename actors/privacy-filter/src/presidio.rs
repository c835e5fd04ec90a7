//! presidio-anonymizer's HTTP contract (pure): reading `/anonymize` and `/deanonymize` bodies
//! with its checks, in its order and with its messages, and its `{"error": "..."}` answers with
//! its statuses (400 body, 415 content type, 422 parameters). Reference: presidio-anonymizer
//! 2.2.366 (`app.py`, `AppEntitiesConvertor`, `PIIEntity`, `RecognizerResult`,
//! `OperatorConfig`, `services/validators.py`).
//!
//! Where Presidio answers 500 for a client's mistake (a body that is not an object, a field of
//! the wrong JSON type it does not check), Loom answers 400 or 422 with a message in Presidio's
//! style instead: a 500 says the server failed.
//!
//! - `conflicts.rs`: the default conflict resolution before operators run.
//! - `engine.rs`: Presidio's text replace builder, its operators and their checks.

pub mod conflicts;
pub mod engine;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// Flask's text for a body it cannot parse.
pub const BAD_REQUEST: &str = "The browser (or proxy) sent a request that this server could not understand.";
const NOT_JSON: &str = "Did not attempt to load JSON data because the request Content-Type was not 'application/json'.";

/// Presidio's error body.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PresidioError {
    /// The message, as presidio-anonymizer words it.
    pub error: String,
    #[serde(skip)]
    pub status: u16,
}

impl PresidioError {
    pub fn new(status: u16, message: impl Into<String>) -> PresidioError {
        PresidioError { error: message.into(), status }
    }

    /// 422: Presidio's `InvalidParamError`.
    pub fn invalid(message: impl Into<String>) -> PresidioError {
        PresidioError::new(422, message)
    }
}

/// One analyzer result (`/anonymize`) or anonymizer result (`/deanonymize`): code-point offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub entity_type: String,
    /// As given (`/anonymize` echoes it, int or float), or `float(score)` / null (`/deanonymize`).
    pub score: Value,
}

impl Span {
    /// The score as a number for comparisons (a bool counts as 0 or 1, as in Python).
    pub fn rank(&self) -> f64 {
        match &self.score {
            Value::Number(n) => n.as_f64().unwrap_or(0.0),
            Value::Bool(b) => f64::from(u8::from(*b)),
            _ => 0.0,
        }
    }
}

/// One operator config: `type` and the remaining keys as parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OpConfig {
    pub name: String,
    pub params: Map<String, Value>,
}

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `str()` of the value `json.loads` makes of it (for messages that quote a value).
pub fn py_str(v: &Value) -> String {
    fn repr(v: &Value) -> String {
        match v {
            Value::String(s) => format!("'{s}'"),
            other => py_str(other),
        }
    }
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e16 { format!("{f:.1}") } else { format!("{f}") }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => {
            format!("{{{}}}", o.iter().map(|(k, v)| format!("'{k}': {}", repr(v))).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The JSON type names of Presidio's validators (`None` for float, object and null, which its
/// table lacks).
fn type_name(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if !n.is_f64() => Some("number"),
        Value::Array(_) => Some("array"),
        _ => None,
    }
}

/// The type a parameter must have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want {
    Str,
    /// An integer (a bool is one, as in Python).
    Int,
    Bool,
}

impl Want {
    fn name(self) -> &'static str {
        match self {
            Want::Str => "string",
            Want::Int => "number",
            Want::Bool => "boolean",
        }
    }

    fn holds(self, v: &Value) -> bool {
        match self {
            Want::Str => v.is_string(),
            Want::Int => v.is_i64() || v.is_u64() || v.is_boolean(),
            Want::Bool => v.is_boolean(),
        }
    }
}

/// Presidio's wrong-type message.
pub fn bad_type(name: &str, want: Want, got: &Value) -> PresidioError {
    PresidioError::invalid(match type_name(got) {
        Some(got) => format!("Invalid parameter value for {name}. Expecting '{}', but got '{got}'.", want.name()),
        None => format!("Invalid parameter value for '{name}'."),
    })
}

/// `validate_type`: a truthy value of another type is refused. Loom also refuses a falsy value
/// of another type (`""` as a number), on which Presidio fails later with a 500.
pub fn check_type(name: &str, want: Want, v: &Value) -> Result<(), PresidioError> {
    if v.is_null() || want.holds(v) { Ok(()) } else { Err(bad_type(name, want, v)) }
}

/// `validate_parameter`: present (not null) and of the type.
pub fn required<'a>(params: &'a Map<String, Value>, name: &str, want: Want) -> Result<&'a Value, PresidioError> {
    match params.get(name) {
        None | Some(Value::Null) => Err(PresidioError::invalid(format!("Expected parameter {name}"))),
        Some(v) => check_type(name, want, v).map(|()| v),
    }
}

/// Flask's `request.get_json()` and app.py's `if not content`: the body as a JSON object.
pub fn body(content_type: Option<&str>, bytes: &[u8]) -> Result<Map<String, Value>, PresidioError> {
    let mime = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if !json {
        return Err(PresidioError::new(415, NOT_JSON));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| PresidioError::new(400, BAD_REQUEST))?;
    match value {
        Value::Object(map) if !map.is_empty() => Ok(map),
        // Presidio: 400 for a falsy body, 500 for any other non-object.
        _ => Err(PresidioError::new(400, "Invalid request json")),
    }
}

/// `content.get("text", "")`, which must be a string.
pub fn text(body: &Map<String, Value>) -> Result<String, PresidioError> {
    match body.get("text") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad_type("text", Want::Str, other)),
    }
}

/// `operators_config_from_json`: `{key: {"type": name, ...params}}`, every config with a type.
pub fn operators(v: Option<&Value>, field: &str) -> Result<BTreeMap<String, OpConfig>, PresidioError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(PresidioError::invalid(format!("Invalid parameter value for '{field}'."))),
    };
    let mut out = BTreeMap::new();
    for (key, config) in map {
        let Value::Object(config) = config else {
            return Err(PresidioError::invalid(format!("Invalid parameter value for '{field}.{key}'.")));
        };
        let mut params = config.clone();
        let name = params.remove("type").unwrap_or(Value::Null);
        if !truthy(&name) {
            return Err(PresidioError::invalid("Invalid input, operator config must contain operator_name"));
        }
        out.insert(key.clone(), OpConfig { name: py_str(&name), params });
    }
    Ok(out)
}

/// `PIIEntity`'s checks on one result, in its order: start, end, entity_type, sign, order.
fn entity(r: &Map<String, Value>) -> Result<(usize, usize, String), PresidioError> {
    let index = |name: &str| -> Result<(i128, Value), PresidioError> {
        let v = r.get(name).cloned().unwrap_or(Value::Null);
        if v.is_null() {
            return Err(PresidioError::invalid(format!("Invalid input, result must contain {name}")));
        }
        check_type(name, Want::Int, &v)?;
        let n = v.as_i64().map(i128::from).or(v.as_u64().map(i128::from)).or(v.as_bool().map(i128::from));
        Ok((n.unwrap_or(0), v))
    };
    let (start, start_v) = index("start")?;
    let (end, end_v) = index("end")?;
    let entity_type = match r.get("entity_type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) if truthy(v) => return Err(bad_type("entity_type", Want::Str, v)),
        _ => return Err(PresidioError::invalid("Invalid input, result must contain entity_type")),
    };
    if start < 0 || end < 0 {
        return Err(PresidioError::invalid("Invalid input, result start and end must be positive"));
    }
    if start > end {
        return Err(PresidioError::invalid(format!(
            "Invalid input, start index '{}' must be smaller than end index '{}'",
            py_str(&start_v),
            py_str(&end_v)
        )));
    }
    let clamp = |n: i128| usize::try_from(n).unwrap_or(usize::MAX);
    Ok((clamp(start), clamp(end), entity_type))
}

fn list<'a>(v: &'a Value, field: &str) -> Result<Vec<&'a Map<String, Value>>, PresidioError> {
    let bad = || PresidioError::invalid(format!("Invalid parameter value for '{field}'."));
    v.as_array().ok_or_else(bad)?.iter().map(|r| r.as_object().ok_or_else(bad)).collect()
}

/// `analyzer_results_from_json`: required (may be empty); each result with a score.
pub fn analyzer_results(v: Option<&Value>) -> Result<Vec<Span>, PresidioError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Err(PresidioError::invalid("Invalid input, request must contain analyzer results"));
    };
    let mut out = Vec::new();
    for r in list(v, "analyzer_results")? {
        let (start, end, entity_type) = entity(r)?;
        let score = r.get("score").cloned().unwrap_or(Value::Null);
        if score.is_null() {
            return Err(PresidioError::invalid("Invalid input, analyzer result must contain score"));
        }
        out.push(Span { start, end, entity_type, score });
    }
    Ok(out)
}

/// `deanonymize_entities_from_json`: optional; the score, when given, becomes a float first.
pub fn anonymizer_results(v: Option<&Value>) -> Result<Vec<Span>, PresidioError> {
    let Some(v) = v.filter(|v| truthy(v)) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for r in list(v, "anonymizer_results")? {
        let score = match r.get("score") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Bool(b)) => Value::from(f64::from(u8::from(*b))),
            Some(Value::Number(n)) => Value::from(n.as_f64().unwrap_or(0.0)),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                Value::from(s.trim().parse::<f64>().unwrap_or(0.0))
            }
            Some(_) => return Err(PresidioError::invalid("Invalid parameter value for 'score'.")),
        };
        let (start, end, entity_type) = entity(r)?;
        out.push(Span { start, end, entity_type, score });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn anonymize_errors(body: Value) -> Result<(), PresidioError> {
        let body = self::body(Some("application/json"), body.to_string().as_bytes())?;
        let ops = operators(body.get("anonymizers"), "anonymizers")?;
        if ops.values().any(|o| o.name == "custom") {
            return Err(PresidioError::new(400, "Custom type anonymizer is not supported"));
        }
        analyzer_results(body.get("analyzer_results"))?;
        text(&body)?;
        Ok(())
    }

    #[test]
    fn request_checks_answer_as_presidio_does() {
        let r = |start: Value, end: Value| json!({"text": "abc", "analyzer_results": [{"start": start, "end": end, "score": 0.5, "entity_type": "X"}]});
        // (body, status, message) — every message as presidio-anonymizer 2.2.366 gives it.
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({}), 400, "Invalid request json"),
            (json!([]), 400, "Invalid request json"),
            (json!(null), 400, "Invalid request json"),
            (json!({"text": "abc"}), 422, "Invalid input, request must contain analyzer results"),
            (
                json!({"text": "abc", "analyzer_results": null}),
                422,
                "Invalid input, request must contain analyzer results",
            ),
            (
                json!({"analyzer_results": [{"end": 1, "score": 1, "entity_type": "X"}]}),
                422,
                "Invalid input, result must contain start",
            ),
            (
                json!({"analyzer_results": [{"start": 1, "score": 1, "entity_type": "X"}]}),
                422,
                "Invalid input, result must contain end",
            ),
            (
                json!({"analyzer_results": [{"start": 0, "end": 1, "score": 1}]}),
                422,
                "Invalid input, result must contain entity_type",
            ),
            (
                json!({"analyzer_results": [{"start": 0, "end": 1, "score": 1, "entity_type": ""}]}),
                422,
                "Invalid input, result must contain entity_type",
            ),
            (
                json!({"analyzer_results": [{"start": 0, "end": 1, "entity_type": "X"}]}),
                422,
                "Invalid input, analyzer result must contain score",
            ),
            (
                r(json!("11"), json!(21)),
                422,
                "Invalid parameter value for start. Expecting 'number', but got 'string'.",
            ),
            (r(json!(11.0), json!(21)), 422, "Invalid parameter value for 'start'."),
            (r(json!(21), json!(11)), 422, "Invalid input, start index '21' must be smaller than end index '11'"),
            (r(json!(true), json!(0)), 422, "Invalid input, start index 'True' must be smaller than end index '0'"),
            (r(json!(-1), json!(2)), 422, "Invalid input, result start and end must be positive"),
            (
                json!({"analyzer_results": [], "anonymizers": {"X": {"new_value": "a"}}}),
                422,
                "Invalid input, operator config must contain operator_name",
            ),
            (
                json!({"analyzer_results": [], "anonymizers": {"X": {"type": "custom"}}}),
                400,
                "Custom type anonymizer is not supported",
            ),
            // Presidio: 500 for these.
            (json!([1]), 400, "Invalid request json"),
            (json!({"analyzer_results": {}}), 422, "Invalid parameter value for 'analyzer_results'."),
            (json!({"analyzer_results": [], "anonymizers": []}), 422, "Invalid parameter value for 'anonymizers'."),
            (
                json!({"analyzer_results": [], "text": 5}),
                422,
                "Invalid parameter value for text. Expecting 'string', but got 'number'.",
            ),
        ];
        for (body, status, message) in cases {
            assert_eq!(anonymize_errors(body.clone()), Err(PresidioError::new(status, message)), "{body}");
        }
        assert_eq!(anonymize_errors(json!({"analyzer_results": []})), Ok(()));
        assert_eq!(anonymize_errors(r(json!(true), json!(2))), Ok(()), "a bool is an int");
        assert_eq!(anonymize_errors(r(json!(1), json!(1))), Ok(()), "an empty span is accepted");
    }

    #[test]
    fn bodies_need_json_content() {
        let cases: &[(Option<&str>, &str, Result<(), (u16, &str)>)] = &[
            (Some("application/json"), "{\"a\": 1}", Ok(())),
            (Some("application/json; charset=utf-8"), "{\"a\": 1}", Ok(())),
            (Some("application/merge-patch+json"), "{\"a\": 1}", Ok(())),
            (Some("text/plain"), "{\"a\": 1}", Err((415, NOT_JSON))),
            (None, "{\"a\": 1}", Err((415, NOT_JSON))),
            (Some("application/json"), "{", Err((400, BAD_REQUEST))),
            (Some("application/json"), "", Err((400, BAD_REQUEST))),
        ];
        for (ct, raw, want) in cases {
            let got = body(*ct, raw.as_bytes()).map(|_| ()).map_err(|e| (e.status, e.error));
            assert_eq!(got, want.map_err(|(s, m)| (s, m.to_owned())), "{ct:?} {raw}");
        }
    }

    #[test]
    fn python_renderings() {
        let cases = [
            (json!(5), "5"),
            (json!(1.0), "1.0"),
            (json!(0.5), "0.5"),
            (json!(true), "True"),
            (json!(null), "None"),
            (json!("md5"), "md5"),
            (json!(["a", 1]), "['a', 1]"),
            (json!({"a": "b"}), "{'a': 'b'}"),
        ];
        for (v, want) in cases {
            assert_eq!(py_str(&v), want);
        }
        let deanon =
            anonymizer_results(Some(&json!([{"start": 0, "end": 1, "entity_type": "X", "score": 1}]))).unwrap();
        assert_eq!(deanon[0].score.to_string(), "1.0", "float(score)");
    }
}
