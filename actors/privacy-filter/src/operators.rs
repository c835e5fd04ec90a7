//! Anonymization operators: redact, replace, mask and generalize (pure), and the keyed ones —
//! hash (HMAC-SHA-256 or -512), pseudonymize (stable `<ENTITY_n>`) and encrypt (AES-SIV, reversible by
//! `/deanonymize`) — which reach managed keys through the [`Keyed`] context. Applied to the
//! findings of one string with Presidio's semantics and response items (offsets in the output
//! text).

use serde::{Deserialize, Serialize};

use crate::analyzer::Finding;
use crate::error::FilterError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operator {
    Redact {},
    Replace {
        #[serde(default)]
        new_value: Option<String>,
    },
    Mask {
        #[serde(default = "star")]
        masking_char: String,
        /// How many characters to mask (Presidio's field); default: all.
        #[serde(default)]
        chars_to_mask: Option<usize>,
        #[serde(default)]
        from_end: bool,
    },
    /// Coarser values: GPS to `precision` decimals, dates to year-month (`level: "month"`) or
    /// year (`"year"`).
    Generalize {
        #[serde(default)]
        precision: Option<u32>,
        #[serde(default)]
        level: Option<String>,
    },
    Hash {
        #[serde(default)]
        hash_type: Option<String>,
    },
    Encrypt {
        #[serde(default)]
        key: Option<String>,
    },
    /// Stable `<ENTITY_n>` tokens: the same value gets the same number under the same key.
    Pseudonymize {},
    Keep {},
}

/// The keyed operators' access to managed keys.
pub trait Keyed {
    fn hash(&self, entity: &str, value: &str) -> String;
    /// HMAC-SHA-512 (`hash_type: "sha512"`).
    fn hash512(&self, entity: &str, value: &str) -> String;
    fn encrypt(&self, entity: &str, value: &str) -> String;
    fn pseudonym(&self, entity: &str, value: &str) -> String;
}

fn star() -> String {
    "*".into()
}

impl Operator {
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Redact {} => "redact",
            Operator::Replace { .. } => "replace",
            Operator::Mask { .. } => "mask",
            Operator::Generalize { .. } => "generalize",
            Operator::Hash { .. } => "hash",
            Operator::Encrypt { .. } => "encrypt",
            Operator::Pseudonymize {} => "pseudonymize",
            Operator::Keep {} => "keep",
        }
    }

    /// Needs a managed key.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Operator::Hash { .. } | Operator::Encrypt { .. } | Operator::Pseudonymize {})
    }

    /// Refuses bad parameters (400).
    pub fn check(&self) -> Result<(), FilterError> {
        let invalid = |m: String| Err(FilterError::Invalid(m));
        match self {
            Operator::Hash { hash_type: Some(t) } if t != "sha256" && t != "sha512" => invalid(format!(
                "hash: hash_type '{t}' is not offered; the hash is an HMAC under a managed key (\"sha256\" or \"sha512\")"
            )),
            Operator::Encrypt { key: Some(_) } => {
                invalid("encrypt: keys are managed by Loom (rotated, per subject, erasable); omit `key`".into())
            }
            Operator::Mask { masking_char, .. } if masking_char.chars().count() != 1 => {
                invalid("mask: masking_char must be one character".into())
            }
            Operator::Generalize { level: Some(l), .. } if l != "month" && l != "year" => {
                invalid(format!("generalize: level must be \"month\" or \"year\", not \"{l}\""))
            }
            Operator::Generalize { precision: Some(p), .. } if *p > 6 => {
                invalid("generalize: precision must be 0..=6".into())
            }
            _ => Ok(()),
        }
    }

    /// The replacement for `value`, a finding of `entity`.
    pub fn apply(&self, value: &str, entity: &str, keyed: &dyn Keyed) -> String {
        match self {
            Operator::Redact {} => String::new(),
            Operator::Replace { new_value } => new_value.clone().unwrap_or_else(|| format!("<{entity}>")),
            Operator::Mask { masking_char, chars_to_mask, from_end } => {
                let chars: Vec<char> = value.chars().collect();
                let n = chars_to_mask.unwrap_or(chars.len()).min(chars.len());
                let mask = masking_char.chars().next().unwrap_or('*');
                let range = if *from_end { chars.len() - n..chars.len() } else { 0..n };
                chars.iter().enumerate().map(|(i, c)| if range.contains(&i) { mask } else { *c }).collect()
            }
            Operator::Generalize { precision, level } => {
                generalize(value, entity, precision.unwrap_or(2), level.as_deref())
            }
            Operator::Keep {} => value.to_owned(),
            Operator::Hash { hash_type } if hash_type.as_deref() == Some("sha512") => keyed.hash512(entity, value),
            Operator::Hash { .. } => keyed.hash(entity, value),
            Operator::Encrypt { .. } => keyed.encrypt(entity, value),
            Operator::Pseudonymize {} => keyed.pseudonym(entity, value),
        }
    }
}

fn generalize(value: &str, entity: &str, precision: u32, level: Option<&str>) -> String {
    let round = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map(|v| format!("{:.*}", precision as usize, v))
            .unwrap_or_else(|_| format!("<{entity}>"))
    };
    match entity {
        "GPS_COORDINATES" => match value.split_once(',') {
            Some((lat, lon)) => format!("{},{}", round(lat), round(lon)),
            None => round(value),
        },
        "DATE_OF_BIRTH" => {
            // ISO dates: keep year-month or year; other forms: the year if one is recognisable.
            let year = value.split(|c: char| !c.is_ascii_digit()).find(|p| p.len() == 4);
            match (value.get(..7), level) {
                (Some(ym), Some("month") | None) if value.len() == 10 && value.as_bytes()[4] == b'-' => ym.to_owned(),
                _ => year.map_or_else(|| format!("<{entity}>"), str::to_owned),
            }
        }
        _ => format!("<{entity}>"),
    }
}

/// One replaced span in the output, Presidio's `items` shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub start: usize,
    pub end: usize,
    pub entity_type: String,
    pub text: String,
    pub operator: &'static str,
}

/// Applies `operator_for(entity)` to each finding of `text` (findings must not overlap).
pub fn anonymize<'o>(
    text: &str,
    findings: &[Finding],
    operator_for: impl Fn(&str) -> &'o Operator,
    keyed: &dyn Keyed,
) -> (String, Vec<Item>) {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| f.byte_start);
    let mut out = String::with_capacity(text.len());
    let mut items = Vec::new();
    let mut at = 0;
    for f in sorted {
        if f.byte_start < at || f.byte_end > text.len() {
            continue; // overlapping or out of range: already covered
        }
        out.push_str(&text[at..f.byte_start]);
        let op = operator_for(&f.entity_type);
        let replacement = op.apply(&text[f.byte_start..f.byte_end], &f.entity_type, keyed);
        let start = out.chars().count();
        out.push_str(&replacement);
        items.push(Item {
            start,
            end: start + replacement.chars().count(),
            entity_type: f.entity_type.clone(),
            text: replacement,
            operator: op.name(),
        });
        at = f.byte_end;
    }
    out.push_str(&text[at..]);
    (out, items)
}
