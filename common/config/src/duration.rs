//! Durations written the way people write them in config: `500ms`, `10s`, `2m`, `1h`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses `<integer><unit>` with unit one of `ms`, `s`, `m`, `h`, `d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let value: u64 =
            digits.parse().map_err(|_| format!("invalid duration `{text}`, expected e.g. `500ms`, `10s`, `2m`"))?;
        let millis = match unit {
            "ms" => Some(value),
            "s" => value.checked_mul(1_000),
            "m" => value.checked_mul(60_000),
            "h" => value.checked_mul(3_600_000),
            "d" => value.checked_mul(86_400_000),
            _ => return Err(format!("invalid duration `{text}`: unit must be ms, s, m, h or d")),
        }
        .ok_or_else(|| format!("duration `{text}` is too large"))?;
        Ok(HumanDuration::from_millis(millis))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(86_400_000) && ms > 0 {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("500ms", Some(500), "500ms"),
            ("10s", Some(10_000), "10s"),
            ("2m", Some(120_000), "2m"),
            ("1h", Some(3_600_000), "1h"),
            ("30d", Some(2_592_000_000), "30d"),
            ("48h", Some(172_800_000), "2d"),
            ("0s", Some(0), "0s"),
            ("1500ms", Some(1_500), "1500ms"),
            ("10", None, ""),
            ("s", None, ""),
            ("1.5s", None, ""),
            ("10 days", None, ""),
        ];
        for (input, millis, shown) in cases {
            match (HumanDuration::parse(input), millis) {
                (Ok(d), Some(ms)) => {
                    assert_eq!(d.get(), Duration::from_millis(*ms), "{input}");
                    assert_eq!(d.to_string(), *shown, "{input}");
                }
                (Err(_), None) => {}
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
