//! presidio-anonymizer's engine (pure): the text replace builder (entities applied from the
//! last to the first, items in that order, offsets into the output) and its operators with
//! their checks, run lazily — an operator is checked only when an entity uses it, right before
//! it runs, after that entity's range check — as `EngineBase._operate` does.
//!
//! Operators: Presidio's `replace`, `redact`, `keep`, `mask`, `hash` (with `salt`: Presidio's
//! salted SHA-2; without: Loom's HMAC under a managed key instead of a random salt) and
//! `encrypt` (with `key`: Presidio's AES-CBC; without: Loom's managed AES-SIV token), plus Loom's
//! `generalize` and `pseudonymize`; `decrypt` (with or without `key`, likewise) and
//! `deanonymize_keep` on the way back.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{OpConfig, PresidioError, Span, Want, bad_type, py_str, required, truthy};
use crate::crypto::caller;
use crate::operators::{Keyed, Operator};

/// The anonymizers `GET /anonymizers` lists: Presidio's that Loom runs (not `custom`, which
/// Presidio's own HTTP API refuses, nor the Azure `surrogate_ahds`), then Loom's own.
pub const ANONYMIZERS: &[&str] =
    &["encrypt", "hash", "keep", "mask", "redact", "replace", "generalize", "pseudonymize"];
/// `GET /deanonymizers`: Presidio's list.
pub const DEANONYMIZERS: &[&str] = &["decrypt", "deanonymize_keep"];

/// One replaced span, Presidio's `OperatorResult` with its field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub start: usize,
    pub end: usize,
    pub entity_type: String,
    pub text: String,
    pub operator: String,
    pub score: Value,
}

/// Presidio's `EngineResult`: `text`, then `items`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub text: String,
    pub items: Vec<Item>,
}

/// How entities are ordered before they are applied (Python's `sorted(reverse=True)`, stable).
#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// `RecognizerResult.__gt__`: by (start, end).
    StartEnd,
    /// `PIIEntity.__gt__` (deanonymize): by start only.
    Start,
}

/// Applies `apply(entity, original text) -> (replacement, operator name)` to each entity, from
/// the last to the first, as Presidio's `TextReplaceBuilder`: a range check first, then the
/// operator; overlapping entities overlap in the output as they do in Presidio.
pub fn operate(
    text: &str,
    entities: &[Span],
    order: Order,
    mut apply: impl FnMut(&Span, &str) -> Result<(String, String), PresidioError>,
) -> Result<Outcome, PresidioError> {
    let original: Vec<char> = text.chars().collect();
    let len = original.len();
    let mut sorted: Vec<&Span> = entities.iter().collect();
    match order {
        Order::StartEnd => sorted.sort_by_key(|e| std::cmp::Reverse((e.start, e.end))),
        Order::Start => sorted.sort_by_key(|e| std::cmp::Reverse(e.start)),
    }
    let mut output = original.clone();
    let mut last = len;
    let mut pending: Vec<(usize, Item)> = Vec::with_capacity(sorted.len());
    for e in sorted {
        if len < e.start || e.end > len {
            return Err(PresidioError::invalid(format!(
                "Invalid analyzer result, start: {} and end: {}, while text length is only {len}.",
                e.start, e.end
            )));
        }
        let value: String = original[e.start..e.end].iter().collect();
        let (new, operator) = apply(e, &value)?;
        let new_chars: Vec<char> = new.chars().collect();
        let end = e.end.min(last);
        last = e.start;
        let after = output.split_off(end.min(output.len()));
        output.truncate(e.start);
        let from_end = after.len() + new_chars.len();
        output.extend(&new_chars);
        output.extend(after);
        let item =
            Item { start: 0, end: 0, entity_type: e.entity_type.clone(), text: new, operator, score: e.score.clone() };
        pending.push((from_end, item));
    }
    let final_len = output.len();
    let items = pending
        .into_iter()
        .map(|(from_end, mut item)| {
            item.start = final_len.saturating_sub(from_end);
            item.end = item.start + item.text.chars().count();
            item
        })
        .collect();
    Ok(Outcome { text: output.into_iter().collect(), items })
}

/// `operators.get(entity_type) or operators["DEFAULT"]`.
pub fn config_for<'a>(configs: &'a BTreeMap<String, OpConfig>, entity: &str) -> Option<&'a OpConfig> {
    configs.get(entity).or_else(|| configs.get("DEFAULT"))
}

/// An anonymizer, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Anonymizer {
    Replace(Option<String>),
    Redact,
    Keep,
    Mask {
        masking_char: String,
        chars: i128,
        from_end: bool,
    },
    /// `salt: None`: Loom's keyed HMAC (Presidio draws a random salt per entity).
    Hash {
        sha512: bool,
        salt: Option<Vec<u8>>,
    },
    /// `key: None`: Loom's managed key.
    Encrypt {
        key: Option<Vec<u8>>,
    },
    /// Loom's `generalize` and `pseudonymize`.
    Loom(Operator),
}

impl Anonymizer {
    /// Needs a managed key.
    pub fn is_keyed(&self) -> bool {
        match self {
            Anonymizer::Hash { salt, .. } => salt.is_none(),
            Anonymizer::Encrypt { key } => key.is_none(),
            Anonymizer::Loom(op) => op.is_keyed(),
            _ => false,
        }
    }

    /// The replacement of `value`, an entity of `entity`.
    pub fn apply(&self, value: &str, entity: &str, keyed: &dyn Keyed) -> String {
        match self {
            Anonymizer::Replace(Some(v)) => v.clone(),
            Anonymizer::Replace(None) => format!("<{entity}>"),
            Anonymizer::Redact => String::new(),
            Anonymizer::Keep => value.to_owned(),
            Anonymizer::Mask { masking_char, chars, from_end } => {
                let chars_of: Vec<char> = value.chars().collect();
                let n = if *chars > 0 { (*chars).min(chars_of.len() as i128) as usize } else { 0 };
                let mask = masking_char.repeat(n);
                if *from_end {
                    chars_of[..chars_of.len() - n].iter().collect::<String>() + &mask
                } else {
                    mask + &chars_of[n..].iter().collect::<String>()
                }
            }
            Anonymizer::Hash { sha512, salt: Some(salt) } => caller::salted_hash(value, salt, *sha512),
            Anonymizer::Hash { sha512: true, salt: None } => keyed.hash512(entity, value),
            Anonymizer::Hash { sha512: false, salt: None } => keyed.hash(entity, value),
            // The key's size was checked: encryption cannot fail.
            Anonymizer::Encrypt { key: Some(key) } => caller::encrypt(key, value).unwrap_or_default(),
            Anonymizer::Encrypt { key: None } => keyed.encrypt(entity, value),
            Anonymizer::Loom(op) => op.apply(value, entity, keyed),
        }
    }
}

/// Presidio's `Encrypt.validate` (also `Decrypt`'s): `None` when absent — Loom's managed key.
fn caller_key(params: &Map<String, Value>) -> Result<Option<Vec<u8>>, PresidioError> {
    let key = match params.get("key") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(v) if truthy(v) => return Err(PresidioError::invalid("Invalid parameter value for 'key'.")),
        Some(_) => Vec::new(),
    };
    if caller::valid_key(&key) {
        Ok(Some(key))
    } else {
        Err(PresidioError::invalid("Invalid input, key must be of length 128, 192 or 256 bits"))
    }
}

/// Presidio's `create_operator_class` then `validate` (and the salt checks of `Hash.operate`).
pub fn anonymizer(config: &OpConfig) -> Result<Anonymizer, PresidioError> {
    let p = &config.params;
    Ok(match config.name.as_str() {
        "replace" => {
            let v = p.get("new_value").cloned().unwrap_or(Value::Null);
            if truthy(&v) && !v.is_string() {
                return Err(bad_type("new_value", Want::Str, &v));
            }
            Anonymizer::Replace(v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
        }
        "redact" => Anonymizer::Redact,
        "keep" => Anonymizer::Keep,
        "mask" => {
            let masking_char = required(p, "masking_char", Want::Str)?.as_str().unwrap_or_default().to_owned();
            if masking_char.chars().count() > 1 {
                return Err(PresidioError::invalid("Invalid input, masking_char must be a character"));
            }
            let chars = required(p, "chars_to_mask", Want::Int)?;
            let chars = (chars.as_i64().map(i128::from))
                .or(chars.as_u64().map(i128::from))
                .or(chars.as_bool().map(i128::from))
                .unwrap_or(0);
            let from_end = required(p, "from_end", Want::Bool)?.as_bool().unwrap_or(false);
            Anonymizer::Mask { masking_char, chars, from_end }
        }
        "hash" => {
            let hash_type = p.get("hash_type").cloned().unwrap_or(json!("sha256"));
            if hash_type.is_null() {
                return Err(PresidioError::invalid("Expected parameter hash_type"));
            }
            let sha512 = match hash_type.as_str() {
                Some("sha256") => false,
                Some("sha512") => true,
                _ => {
                    return Err(PresidioError::invalid(format!(
                        "Parameter hash_type value {} is not in range of values ['sha256', 'sha512']",
                        py_str(&hash_type)
                    )));
                }
            };
            let salt = match p.get("salt") {
                None => None,
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(PresidioError::invalid(
                        "Salt parameter cannot be empty. Either omit the salt parameter to auto-generate a random salt, or provide a salt of at least 16 bytes (128 bits).",
                    ));
                }
                Some(Value::String(s)) if s.len() < 16 => {
                    return Err(PresidioError::invalid(format!(
                        "Salt must be at least 16 bytes (128 bits). Provided salt is {} bytes.",
                        s.len()
                    )));
                }
                Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
                Some(other) => return Err(bad_type("salt", Want::Str, other)),
            };
            Anonymizer::Hash { sha512, salt }
        }
        "encrypt" => Anonymizer::Encrypt { key: caller_key(p)? },
        "generalize" | "pseudonymize" => {
            let mut spec = Map::new();
            spec.insert("type".into(), json!(config.name));
            for k in ["precision", "level"].iter().filter(|_| config.name == "generalize") {
                if let Some(v) = p.get(*k).filter(|v| !v.is_null()) {
                    spec.insert((*k).into(), v.clone());
                }
            }
            let op: Operator = serde_json::from_value(Value::Object(spec))
                .map_err(|e| PresidioError::invalid(format!("Invalid input, {}: {e}", config.name)))?;
            op.check().map_err(|e| PresidioError::invalid(e.to_string()))?;
            Anonymizer::Loom(op)
        }
        other => return Err(PresidioError::invalid(format!("Invalid operator class '{other}'."))),
    })
}

/// A deanonymizer, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Deanonymizer {
    /// `key: None`: a Loom token, opened with its managed key.
    Decrypt {
        key: Option<Vec<u8>>,
    },
    Keep,
}

/// Presidio's deanonymize `create_operator_class` then `validate`; no config at all (Presidio
/// fails with a 500) is Loom's managed decrypt.
pub fn deanonymizer(config: Option<&OpConfig>) -> Result<Deanonymizer, PresidioError> {
    let Some(config) = config else { return Ok(Deanonymizer::Decrypt { key: None }) };
    match config.name.as_str() {
        "decrypt" => Ok(Deanonymizer::Decrypt { key: caller_key(&config.params)? }),
        "deanonymize_keep" => Ok(Deanonymizer::Keep),
        other => Err(PresidioError::invalid(format!("Invalid operator class '{other}'."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoKeys;
    impl Keyed for NoKeys {
        fn hash(&self, _: &str, v: &str) -> String {
            format!("hmac256({v})")
        }
        fn hash512(&self, _: &str, v: &str) -> String {
            format!("hmac512({v})")
        }
        fn encrypt(&self, e: &str, _: &str) -> String {
            format!("<ENC:{e}>")
        }
        fn pseudonym(&self, e: &str, _: &str) -> String {
            format!("<{e}_1>")
        }
    }

    fn config(v: Value) -> OpConfig {
        let mut params = v.as_object().cloned().unwrap_or_default();
        let name = params.remove("type").map(|t| py_str(&t)).unwrap_or_default();
        OpConfig { name, params }
    }

    fn span(entity_type: &str, start: usize, end: usize) -> Span {
        Span { start, end, entity_type: entity_type.into(), score: json!(0.5) }
    }

    fn run(text: &str, spans: &[Span], op: Value) -> Result<(String, Vec<(usize, usize, String)>), PresidioError> {
        let a = anonymizer(&config(op))?;
        let out = operate(text, spans, Order::StartEnd, |e, v| Ok((a.apply(v, &e.entity_type, &NoKeys), "op".into())))?;
        Ok((out.text, out.items.into_iter().map(|i| (i.start, i.end, i.text)).collect()))
    }

    #[test]
    fn operators_as_presidio_runs_them() {
        let name = [span("PERSON", 11, 21)];
        let text = "My name is John Smith";
        // (operator, output text) — from presidio-anonymizer 2.2.366.
        let cases: Vec<(Value, &str)> = vec![
            (json!({"type": "replace"}), "My name is <PERSON>"),
            (json!({"type": "replace", "new_value": ""}), "My name is <PERSON>"),
            (json!({"type": "replace", "new_value": "X", "extra": 1}), "My name is X"),
            (json!({"type": "redact"}), "My name is "),
            (json!({"type": "keep"}), "My name is John Smith"),
            (
                json!({"type": "mask", "masking_char": "*", "chars_to_mask": 4, "from_end": true}),
                "My name is John S****",
            ),
            (
                json!({"type": "mask", "masking_char": "*", "chars_to_mask": 100, "from_end": false}),
                "My name is **********",
            ),
            (
                json!({"type": "mask", "masking_char": "*", "chars_to_mask": -1, "from_end": false}),
                "My name is John Smith",
            ),
            (json!({"type": "mask", "masking_char": "", "chars_to_mask": 4, "from_end": true}), "My name is John S"),
            (
                json!({"type": "mask", "masking_char": "#", "chars_to_mask": true, "from_end": false}),
                "My name is #ohn Smith",
            ),
            (
                json!({"type": "hash", "salt": "0123456789abcdef"}),
                "My name is faf7794197a93da914969d7fb7b16ef5a19e4159e4789e551601727e25e28f1a",
            ),
            (json!({"type": "hash"}), "My name is hmac256(John Smith)"),
            (json!({"type": "hash", "hash_type": "sha512"}), "My name is hmac512(John Smith)"),
            (json!({"type": "encrypt"}), "My name is <ENC:PERSON>"),
            (json!({"type": "pseudonymize"}), "My name is <PERSON_1>"),
        ];
        for (op, want) in cases {
            assert_eq!(run(text, &name, op.clone()).map(|r| r.0), Ok(want.to_owned()), "{op}");
        }
    }

    #[test]
    fn operator_checks_answer_as_presidio_does() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"type": "foo"}), "Invalid operator class 'foo'."),
            (json!({"type": 5}), "Invalid operator class '5'."),
            (
                json!({"type": "replace", "new_value": 5}),
                "Invalid parameter value for new_value. Expecting 'string', but got 'number'.",
            ),
            (json!({"type": "mask", "chars_to_mask": 4, "from_end": true}), "Expected parameter masking_char"),
            (
                json!({"type": "mask", "masking_char": "**", "chars_to_mask": 4, "from_end": true}),
                "Invalid input, masking_char must be a character",
            ),
            (json!({"type": "mask", "masking_char": "*", "from_end": true}), "Expected parameter chars_to_mask"),
            (
                json!({"type": "mask", "masking_char": "*", "chars_to_mask": "4", "from_end": true}),
                "Invalid parameter value for chars_to_mask. Expecting 'number', but got 'string'.",
            ),
            (json!({"type": "mask", "masking_char": "*", "chars_to_mask": 4}), "Expected parameter from_end"),
            (
                json!({"type": "mask", "masking_char": "*", "chars_to_mask": 4, "from_end": "yes"}),
                "Invalid parameter value for from_end. Expecting 'boolean', but got 'string'.",
            ),
            (
                json!({"type": "hash", "hash_type": "md5"}),
                "Parameter hash_type value md5 is not in range of values ['sha256', 'sha512']",
            ),
            (
                json!({"type": "hash", "hash_type": 5}),
                "Parameter hash_type value 5 is not in range of values ['sha256', 'sha512']",
            ),
            (json!({"type": "hash", "hash_type": null}), "Expected parameter hash_type"),
            (
                json!({"type": "hash", "salt": ""}),
                "Salt parameter cannot be empty. Either omit the salt parameter to auto-generate a random salt, or provide a salt of at least 16 bytes (128 bits).",
            ),
            (
                json!({"type": "hash", "salt": "short"}),
                "Salt must be at least 16 bytes (128 bits). Provided salt is 5 bytes.",
            ),
            (
                json!({"type": "hash", "salt": "ünïcødé"}),
                "Salt must be at least 16 bytes (128 bits). Provided salt is 11 bytes.",
            ),
            (json!({"type": "encrypt", "key": "short"}), "Invalid input, key must be of length 128, 192 or 256 bits"),
            (json!({"type": "encrypt", "key": 1234}), "Invalid parameter value for 'key'."),
            // Presidio: 500 for these.
            (
                json!({"type": "hash", "salt": 12345}),
                "Invalid parameter value for salt. Expecting 'string', but got 'number'.",
            ),
            (
                json!({"type": "encrypt", "key": "x".repeat(64)}),
                "Invalid input, key must be of length 128, 192 or 256 bits",
            ),
        ];
        for (op, message) in cases {
            assert_eq!(anonymizer(&config(op.clone())), Err(PresidioError::invalid(message)), "{op}");
        }
        assert_eq!(
            deanonymizer(Some(&config(json!({"type": "replace"})))),
            Err(PresidioError::invalid("Invalid operator class 'replace'."))
        );
        assert_eq!(deanonymizer(None), Ok(Deanonymizer::Decrypt { key: None }));
    }

    #[test]
    fn the_builder_replaces_from_the_end_as_presidio_does() {
        let keep = json!({"type": "keep"});
        let replace = json!({"type": "replace"});
        // (text, spans, operator, output, items (start, end, text) in Presidio's order)
        type Case<'a> = (&'a str, Vec<Span>, Value, &'a str, Vec<(usize, usize, &'a str)>);
        let cases: Vec<Case> = vec![
            (
                "My name is John Smith, call 212-555-1234",
                vec![span("PERSON", 11, 21), span("PHONE_NUMBER", 28, 40)],
                replace.clone(),
                "My name is <PERSON>, call <PHONE_NUMBER>",
                vec![(26, 40, "<PHONE_NUMBER>"), (11, 19, "<PERSON>")],
            ),
            // Partial overlap of two types: both applied; the overlap is repeated.
            (
                "abcdefghij",
                vec![span("A", 0, 6), span("B", 4, 10)],
                keep,
                "abcdefefghij",
                vec![(6, 12, "efghij"), (0, 6, "abcdef")],
            ),
            (
                "abcdefghij",
                vec![span("A", 0, 6), span("B", 4, 10)],
                replace.clone(),
                "<A><B>",
                vec![(3, 6, "<B>"), (0, 3, "<A>")],
            ),
            ("abc", vec![span("X", 1, 1)], replace.clone(), "a<X>bc", vec![(1, 4, "<X>")]),
            ("ü Ä", vec![span("X", 2, 3)], replace.clone(), "ü <X>", vec![(2, 5, "<X>")]),
        ];
        for (text, spans, op, want, items) in cases {
            let (out, got) = run(text, &spans, op).unwrap();
            assert_eq!(out, want, "{text}");
            let items: Vec<(usize, usize, String)> = items.into_iter().map(|(s, e, t)| (s, e, t.to_owned())).collect();
            assert_eq!(got, items, "{text}");
        }
        assert_eq!(
            run("abc", &[span("X", 1, 2), span("Y", 2, 5)], replace),
            Err(PresidioError::invalid("Invalid analyzer result, start: 2 and end: 5, while text length is only 3."))
        );
    }
}
