//! The request/correlation id: accepted from `x-request-id` or generated, carried from the HTTP
//! edge into actor messages so one id follows a request through the tree.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Header carrying the id in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest id accepted from a client; longer ones are replaced by a generated id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh, time-ordered id (UUIDv7).
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts a client-provided id when it is 1..=128 visible ASCII characters; anything else
    /// (empty, too long, control characters, non-ASCII) is refused so it cannot be used for log
    /// injection.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty() && value.len() <= MAX_REQUEST_ID_LEN && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| RequestId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_visible_ascii_up_to_the_limit() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let max = "b".repeat(MAX_REQUEST_ID_LEN);
        let cases: &[(&str, bool)] = &[
            ("abc-123", true),
            (&max, true),
            ("", false),
            (&long, false),
            ("has space", false),
            ("line\nbreak", false),
            ("ümlaut", false),
        ];
        for (input, ok) in cases {
            assert_eq!(RequestId::parse(input).is_some(), *ok, "{input:?}");
        }
    }

    #[test]
    fn generated_ids_are_unique_uuids() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(a.as_str()).is_ok());
    }
}
