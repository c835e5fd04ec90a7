//! Request and response bodies of the Confluent API and Loom's additions, plus the
//! compatibility levels and modes.

use serde::{Deserialize, Serialize};

/// A reference from one schema to another registered schema (Confluent's form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// `POST /subjects/{s}/versions`, `POST /subjects/{s}`, `POST /compatibility/...`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    /// The JSON Schema, as a string.
    pub schema: String,
    /// Must be `JSON`; Confluent's default (`AVRO`, when absent) is refused.
    #[serde(default)]
    pub schema_type: Option<String>,
    /// Registered schemas this one references by `name`.
    #[serde(default)]
    pub references: Vec<Reference>,
    // Other fields clients send (`normalize`, `metadata`, `ruleSet`) are ignored: normalization
    // is always on, and metadata and rule sets are not supported.
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Compatibility {
    pub fn parse(s: &str) -> Option<Compatibility> {
        Some(match s.to_ascii_uppercase().as_str() {
            "NONE" => Compatibility::None,
            "BACKWARD" => Compatibility::Backward,
            "BACKWARD_TRANSITIVE" => Compatibility::BackwardTransitive,
            "FORWARD" => Compatibility::Forward,
            "FORWARD_TRANSITIVE" => Compatibility::ForwardTransitive,
            "FULL" => Compatibility::Full,
            "FULL_TRANSITIVE" => Compatibility::FullTransitive,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    pub fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive | Compatibility::ForwardTransitive | Compatibility::FullTransitive
        )
    }

    /// (new schema must read old data, old schema must read new data)
    pub fn directions(self) -> (bool, bool) {
        match self {
            Compatibility::None => (false, false),
            Compatibility::Backward | Compatibility::BackwardTransitive => (true, false),
            Compatibility::Forward | Compatibility::ForwardTransitive => (false, true),
            Compatibility::Full | Compatibility::FullTransitive => (true, true),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // Confluent's mode names
pub enum Mode {
    ReadWrite,
    ReadOnly,
    ReadOnlyOverride,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Mode::ReadWrite,
            "READONLY" => Mode::ReadOnly,
            "READONLY_OVERRIDE" => Mode::ReadOnlyOverride,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
        }
    }

    pub fn writable(self) -> bool {
        self == Mode::ReadWrite
    }
}
