//! Phone number validation with region candidates (pure). A candidate the analyzer's pattern
//! found is a phone number when libphonenumber (the `phonenumber` crate) says it is a *valid*
//! number: written internationally (`+49 …`, `0049 …`) on its own, otherwise in the national
//! format of one of the candidate regions, tried in order — the request's `phone_regions`,
//! countries named near the number ("Germany", "Paris", "UK" …), then the configured list
//! (`privacy.phone_regions`, by default Presidio's `US, GB, DE, FR, IL, IN, CA, BR`). Presidio's
//! PhoneRecognizer does the same with libphonenumber's matcher over its fixed region list.
//!
//! Scores: a valid international number 0.75, a valid national one 0.4 (Presidio's score for
//! both), context words add 0.35 in the analyzer; a number only *viable* (plausible digits,
//! valid nowhere) 0.2, so it is kept only with context. Dates and dotted quads never are.

use std::str::FromStr;

use phonenumber::country::Id;

/// Presidio 2.2.366's `DEFAULT_SUPPORTED_REGIONS`.
pub const DEFAULT_REGIONS: &[&str] = &["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"];

/// Words (lowercase, matched as substrings of the lowercased context) that name a region.
const COUNTRY_WORDS: &[(&str, &str)] = &[
    ("germany", "DE"),
    ("german", "DE"),
    ("deutschland", "DE"),
    ("berlin", "DE"),
    ("münchen", "DE"),
    ("munich", "DE"),
    ("hamburg", "DE"),
    ("france", "FR"),
    ("french", "FR"),
    ("paris", "FR"),
    ("united kingdom", "GB"),
    ("britain", "GB"),
    ("british", "GB"),
    ("england", "GB"),
    ("london", "GB"),
    (" uk", "GB"),
    ("italy", "IT"),
    ("italia", "IT"),
    ("italian", "IT"),
    ("rome", "IT"),
    ("roma", "IT"),
    ("milan", "IT"),
    ("spain", "ES"),
    ("españa", "ES"),
    ("spanish", "ES"),
    ("madrid", "ES"),
    ("barcelona", "ES"),
    ("netherlands", "NL"),
    ("holland", "NL"),
    ("dutch", "NL"),
    ("amsterdam", "NL"),
    ("austria", "AT"),
    ("österreich", "AT"),
    ("vienna", "AT"),
    ("wien", "AT"),
    ("switzerland", "CH"),
    ("swiss", "CH"),
    ("schweiz", "CH"),
    ("zürich", "CH"),
    ("zurich", "CH"),
    ("geneva", "CH"),
    ("belgium", "BE"),
    ("brussels", "BE"),
    ("poland", "PL"),
    ("warsaw", "PL"),
    ("sweden", "SE"),
    ("stockholm", "SE"),
    ("ireland", "IE"),
    ("dublin", "IE"),
    ("portugal", "PT"),
    ("lisbon", "PT"),
    ("denmark", "DK"),
    ("copenhagen", "DK"),
    ("norway", "NO"),
    ("oslo", "NO"),
    ("finland", "FI"),
    ("helsinki", "FI"),
];

/// Region codes (ISO 3166 alpha-2) as libphonenumber ids; `Err` names the first unknown one.
pub fn regions<S: AsRef<str>>(codes: &[S]) -> Result<Vec<Id>, String> {
    codes.iter().map(|c| Id::from_str(&c.as_ref().to_ascii_uppercase()).map_err(|_| c.as_ref().to_owned())).collect()
}

/// The regions named in lowercased context text, in the table's order.
pub fn context_regions(context: &str) -> Vec<Id> {
    let mut out: Vec<Id> = Vec::new();
    for (word, code) in COUNTRY_WORDS {
        if context.contains(word)
            && let Ok(id) = Id::from_str(code)
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

/// A date (`2023-01-15`, `3/10/2011`, `15.01.2023`) or an IPv4 address, which are not numbers
/// to call even when their digits happen to be valid somewhere.
fn not_a_number(s: &str) -> bool {
    let s = s.trim();
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let parts: Vec<&str> = s.split(['-', '/', '.']).collect();
    let digits = parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    digits && (matches!(lens[..], [4, 2, 2]) || matches!(lens[..], [1 | 2, 1 | 2, 2 | 4]))
}

/// libphonenumber's matcher at `VALID` leniency also wants the national prefix where the
/// region's format writes it (`030 …` in Germany, not `30 …`): `555-1234` is a valid German
/// number, but not one written the German way. (Simplified: the first format whose leading
/// digits and pattern fit, and the prefix as the digits' start.)
fn national_prefix_present_if_required(region: Id, candidate: &str, n: &phonenumber::PhoneNumber) -> bool {
    let Some(meta) = phonenumber::metadata::DATABASE.by_id(region.as_ref()) else { return true };
    let national = n.national().to_string();
    let starts = |m: Option<regex::Match<'_>>| m.is_some_and(|m| m.start() == 0);
    let format = meta.formats().iter().find(|f| {
        f.leading_digits().last().is_none_or(|ld| starts(ld.find(&national)))
            && f.pattern().find(&national).is_some_and(|m| m.start() == 0 && m.end() == national.len())
    });
    let Some(rule) = format.filter(|f| !f.is_national_prefix_optional()).and_then(|f| f.national_prefix()) else {
        return true;
    };
    let first_group_only = matches!(rule.trim_start_matches('(').trim_end_matches(')'), "$1" | "$FG");
    if rule.is_empty() || first_group_only {
        return true;
    }
    let digits: String = candidate.chars().filter(char::is_ascii_digit).collect();
    meta.national_prefix().is_none_or(|p| digits.starts_with(p))
}

/// The score of a candidate, trying `regions` in order for a national number.
pub fn score(candidate: &str, regions: &[Id]) -> Option<f32> {
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) || not_a_number(candidate) {
        return None;
    }
    let trimmed = candidate.trim_start();
    let international = match trimmed.strip_prefix("00") {
        Some(rest) if !trimmed.starts_with("000") => Some(format!("+{rest}")),
        _ => trimmed.starts_with('+').then(|| trimmed.to_owned()),
    };
    if let Some(intl) = international {
        if phonenumber::parse(None, &intl).is_ok_and(|n| phonenumber::is_valid(&n)) {
            return Some(0.75);
        }
    } else if regions.iter().any(|r| {
        phonenumber::parse(Some(*r), candidate)
            .is_ok_and(|n| phonenumber::is_valid(&n) && national_prefix_present_if_required(*r, candidate, &n))
    }) {
        return Some(0.4);
    }
    phonenumber::is_viable(candidate).then_some(0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_parse() {
        assert_eq!(regions(&["de", "GB"]), Ok(vec![Id::DE, Id::GB]));
        assert_eq!(regions(&["DE", "XX"]), Err("XX".to_owned()));
        assert_eq!(regions(DEFAULT_REGIONS).map(|r| r.len()), Ok(8));
        assert_eq!(context_regions("my office in vienna, austria"), vec![Id::AT]);
        assert_eq!(context_regions("call our london or paris desk"), vec![Id::FR, Id::GB]);
        assert!(context_regions("phone number").is_empty());
    }

    use crate::analyzer::{Settings, analyze};

    fn found(text: &str, settings: &Settings) -> Vec<(String, f32)> {
        analyze(text, Some(&["PHONE_NUMBER".to_owned()]), "", &[], settings)
            .into_iter()
            .map(|f| (text.chars().skip(f.start).take(f.end - f.start).collect(), f.score))
            .collect()
    }

    /// The research's table (`phone_table.md`): what presidio-analyzer 2.2.366 finds in
    /// `Please reach me at <number> tomorrow.` (regions US GB DE FR IL IN CA BR, score 0.4, no
    /// context word). `true`: the whole number is found; `false`: nothing is.
    const PRESIDIO_TABLE: &[(&str, &str, bool)] = &[
        ("US", "212-555-1234", true),
        ("US", "(212) 555-1234", true),
        ("US intl", "+1 212 555 1234", true),
        ("US 7-digit", "555-1234", false),
        ("DE", "030 12345678", true),
        ("DE mobile", "0151 23456789", true),
        ("DE", "+49 30 12345678", true),
        ("DE mobile", "+49 151 23456789", true),
        ("DE 00-prefix", "0049 30 12345678", true),
        ("DE slash", "030/12345678", true),
        ("DE (0)", "+49 (0)30 12345678", true),
        ("DE E.164", "+493012345678", true),
        ("FR", "01 23 45 67 89", true),
        ("FR mobile", "06 12 34 56 78", true),
        ("FR", "+33 1 23 45 67 89", true),
        ("FR dots", "01.23.45.67.89", true),
        ("FR E.164", "+33123456789", true),
        ("GB", "020 7946 0958", true),
        ("GB mobile", "07911 123456", true),
        ("GB", "+44 20 7946 0958", true),
        ("GB mobile", "+44 7911 123456", true),
        ("IT (valid as DE)", "06 6982 1234", true),
        ("IT", "+39 06 6982 1234", true),
        ("IT mobile", "+39 312 345 6789", true),
        ("ES (ES not a default region)", "912 345 678", false),
        ("ES", "+34 912 345 678", true),
        ("ES mobile", "+34 612 345 678", true),
        ("NL (valid as DE)", "020 123 4567", true),
        ("NL mobile (valid as DE)", "06 12345678", true),
        ("NL", "+31 20 123 4567", true),
        ("NL mobile", "+31 6 12345678", true),
        ("AT (AT not a default region)", "01 5123456", false),
        ("AT", "+43 1 5123456", true),
        ("CH (valid as DE)", "044 668 18 00", true),
        ("CH", "+41 44 668 18 00", true),
        ("BE", "+32 2 555 12 12", true),
        ("PL", "+48 12 345 67 89", true),
        ("SE", "+46 8 123 456 78", true),
        ("IE", "+353 1 234 5678", true),
        ("PT", "+351 21 234 5678", true),
        ("DK", "+45 32 12 34 56", true),
        ("date", "2023-01-15", false),
        ("ipv4", "192.168.1.1", false),
        ("short intl", "+49 123", false),
        ("order number", "12345", false),
    ];

    #[test]
    fn finds_what_presidio_finds_by_country_and_format() {
        let settings = Settings::default();
        for (country, number, presidio) in PRESIDIO_TABLE {
            let text = format!("Please reach me at {number} tomorrow.");
            let got = found(&text, &settings);
            if *presidio {
                assert_eq!(got.len(), 1, "{country} {number}: {got:?}");
                assert_eq!(got[0].0, *number, "{country}: the whole number");
                // Presidio scores 0.4 either way; Loom keeps 0.75 for a valid international
                // number, which cannot be a national number of the wrong country.
                let want = if number.starts_with('+') || number.starts_with("00") { 0.75 } else { 0.4 };
                assert_eq!(got[0].1, want, "{country} {number}");
            } else {
                assert!(got.is_empty(), "{country} {number}: {got:?}");
            }
            // Near a phone word: whatever Presidio finds is found, boosted. Loom also keeps a
            // plausible number valid in no candidate region (0.2 + 0.35; `555-1234`, `912 345
            // 678`), deliberately, but never a date, an address or too few digits (it used to
            // report `2023-01-15` there).
            let near = found(&format!("My phone: {number}"), &settings);
            let hit = near.iter().find(|(s, _)| s == number);
            if *presidio {
                assert!(hit.is_some_and(|(_, score)| *score > 0.7), "{country} {number} near 'phone': {near:?}");
            } else if ["date", "ipv4", "short intl", "order number"].contains(country) {
                assert!(near.is_empty(), "{country} {number} near 'phone': {near:?}");
            }
        }
    }

    #[test]
    fn regions_from_the_request_and_from_context_words() {
        // Where Loom finds more than Presidio: a national number of a region outside the list
        // when the request names the region or a word near it names the country.
        let settings = Settings::default();
        let es = "Please reach me at 912 345 678 tomorrow.";
        assert!(found(es, &settings).is_empty(), "ES is not a default region");
        assert_eq!(found("Our Madrid office: 912 345 678.", &settings), [("912 345 678".to_owned(), 0.4)]);
        assert_eq!(found("in Vienna: 01 5123456", &settings), [("01 5123456".to_owned(), 0.4)]);
        let asked = Settings { phone_regions: regions(&["ES"]).unwrap(), ..Settings::default() };
        assert_eq!(found(es, &asked), [("912 345 678".to_owned(), 0.4)]);
        // The configured list replaces Presidio's: without GB, a GB national number is not found.
        let no_gb = Settings { phone_regions: regions(&["US"]).unwrap(), ..Settings::default() };
        assert!(found("Please reach me at 07911 123456 tomorrow.", &no_gb).is_empty());
    }

    #[test]
    fn dates_and_addresses_are_not_numbers() {
        for s in ["2023-01-15", "3/10/2011", "15.01.2023", "192.168.1.1"] {
            assert_eq!(score(s, &regions(DEFAULT_REGIONS).unwrap()), None, "{s}");
        }
    }
}
