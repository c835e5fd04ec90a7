//! Durations as users write them in specs: `"500ms"`, `"30s"`, `"1m"`, `"1h"`, `"1d"`, `"1w"`, and
//! sums of them (`"1h30m"`). Parsed to milliseconds; zero is allowed here and refused by callers
//! that need a positive size.

/// Parses a duration string to milliseconds.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"30s\", \"1m\", \"1h\", \"1d\"".into());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{text}' is not a duration: expected a number before a unit (ms, s, m, h, d, w)"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("'{text}': number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor: i64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(format!("'{text}': a unit is required (ms, s, m, h, d, w)")),
            other => return Err(format!("'{text}': unknown unit '{other}' (ms, s, m, h, d, w)")),
        };
        let part = n.checked_mul(factor).ok_or_else(|| format!("'{text}': duration too large"))?;
        total = total.checked_add(part).ok_or_else(|| format!("'{text}': duration too large"))?;
    }
    // Bounded so that window arithmetic on epoch milliseconds never overflows.
    if total > 100 * 365 * 86_400_000 {
        return Err(format!("'{text}': longer than 100 years"));
    }
    Ok(total)
}

/// Formats milliseconds back in the largest exact unit (`60000` → `"1m"`).
pub fn format_ms(ms: i64) -> String {
    for (unit, f) in [("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms % f == 0 {
            return format!("{}{unit}", ms / f);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_and_sums() {
        for (input, want) in [
            ("500ms", Ok(500)),
            ("30s", Ok(30_000)),
            ("1m", Ok(60_000)),
            ("1h", Ok(3_600_000)),
            ("1d", Ok(86_400_000)),
            ("2w", Ok(14 * 86_400_000)),
            ("1h30m", Ok(5_400_000)),
            (" 0s ", Ok(0)),
            ("", Err(())),
            ("s", Err(())),
            ("10", Err(())),
            ("10x", Err(())),
            ("-1s", Err(())),
            ("1.5s", Err(())),
            ("99999999999999999999s", Err(())),
            ("200000w", Err(())),
        ] {
            assert_eq!(parse_ms(input).map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        for (ms, want) in [(60_000, "1m"), (90_000, "90s"), (86_400_000, "1d"), (1, "1ms"), (0, "0ms")] {
            assert_eq!(format_ms(ms), want);
        }
    }
}
