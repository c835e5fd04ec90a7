//! PII detection (pure). Recognizers are a pattern plus a validator (checksum, range, a
//! libphonenumber parse) and context words; a `RegexSet` pass finds which recognizers can match
//! at all, then only those run, each a linear scan, so the cost stays linear in the input with a
//! small constant per recognizer. Context words within 50 characters before a match (or in the
//! field name, in structured mode) raise its score by 0.35, as Presidio does; findings under the
//! threshold are dropped, overlaps keep the higher score (then the longer span).
//!
//! Entity types use Presidio's names: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE,
//! US_SSN, IP_ADDRESS, MAC_ADDRESS, URL, GPS_COORDINATES, DATE_OF_BIRTH, US_PASSPORT, and the
//! names of custom recognizers.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Serialize;

use crate::{checks, phone};

/// Raised score when a context word is near.
const CONTEXT_BOOST: f32 = 0.35;
/// How far before a match context words are looked for (characters).
const CONTEXT_WINDOW: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub entity_type: String,
    /// Character offsets (not bytes) into the scanned string, end exclusive.
    pub start: usize,
    pub end: usize,
    pub score: f32,
    #[serde(skip)]
    pub byte_start: usize,
    #[serde(skip)]
    pub byte_end: usize,
    pub recognizer: String,
}

/// A validator: the match, the settings, and the lowercased context (the window before the
/// match and the field name or request context words).
type Validate = fn(&str, &Settings, &str) -> Option<f32>;

#[derive(Clone)]
pub struct Recognizer {
    pub name: String,
    pub entity: String,
    pub regex: Regex,
    /// Score of a match the validator accepts, before context.
    pub score: f32,
    pub validate: Option<Validate>,
    pub context: Vec<String>,
}

/// Recognizers from `privacy.recognizers` (patterns already validated by the config loader;
/// one that still fails to compile is skipped with an error log).
pub fn from_config(list: &[loom_config::PrivacyRecognizer]) -> Vec<Recognizer> {
    list.iter()
        .filter_map(|r| match regex::RegexBuilder::new(&r.pattern).size_limit(1 << 20).build() {
            Ok(regex) => Some(Recognizer {
                name: r.name.clone(),
                entity: r.entity.clone(),
                regex,
                score: r.score,
                validate: None,
                context: r.context.iter().map(|c| c.to_ascii_lowercase()).collect(),
            }),
            Err(e) => {
                tracing::error!(recognizer = %r.name, error = %e, "custom recognizer skipped");
                None
            }
        })
        .collect()
}

/// Analysis settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub threshold: f32,
    /// Regions tried for phone numbers written without a country code, besides the ones
    /// context words name (the request's `phone_regions`, then `privacy.phone_regions`).
    pub phone_regions: Vec<phonenumber::country::Id>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: 0.3,
            phone_regions: phone::regions(phone::DEFAULT_REGIONS).unwrap_or_default(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

fn phone(s: &str, settings: &Settings, context: &str) -> Option<f32> {
    let named = phone::context_regions(context);
    if named.is_empty() {
        return phone::score(s, &settings.phone_regions);
    }
    let mut regions = settings.phone_regions.clone();
    regions.extend(named.into_iter().filter(|r| !settings.phone_regions.contains(r)));
    phone::score(s, &regions)
}

fn ipv6(s: &str, _: &Settings, _: &str) -> Option<f32> {
    (s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()).then_some(0.6)
}

fn gps(s: &str, _: &Settings, _: &str) -> Option<f32> {
    let (lat, lon) = s.split_once(',')?;
    checks::coordinates(lat.trim().parse().ok()?, lon.trim().parse().ok()?).then_some(0.7)
}

fn ssn(s: &str, _: &Settings, _: &str) -> Option<f32> {
    // Separated digits look like an SSN on their own; nine bare digits need context.
    checks::ssn(s).then_some(if s.contains('-') || s.contains(' ') { 0.6 } else { 0.2 })
}

fn builtin(
    name: &str,
    entity: &str,
    pattern: &str,
    score: f32,
    validate: Option<Validate>,
    context: &[&str],
) -> Recognizer {
    Recognizer {
        name: name.into(),
        entity: entity.into(),
        regex: Regex::new(pattern).unwrap_or_else(|e| panic!("built-in pattern {name}: {e}")),
        score,
        validate,
        context: context.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// The built-in recognizers (compiled once).
pub static BUILTIN: LazyLock<Vec<Recognizer>> = LazyLock::new(|| {
    vec![
        builtin(
            "email",
            "EMAIL_ADDRESS",
            r"(?i)\b[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b",
            1.0,
            None,
            &["email", "e-mail", "mail", "contact"],
        ),
        builtin(
            "phone",
            "PHONE_NUMBER",
            // An international prefix (`+49`, `0049`, then an optional `(0)`), or an area code in
            // brackets, then digit groups of 1-5 with one separator each (space, `.`, `-`, `/`);
            // not glued to a preceding letter or digit. libphonenumber decides (`phone.rs`).
            r"(?:(?:\+|\b00)\d{1,3}[ .-]?(?:\(0\)[ .-]?)?|\(\d{1,5}\)[ .-]?|\b)\d{1,5}(?:[ ./-]?\d{1,5}){0,6}\b",
            0.0,
            Some(phone),
            &["phone", "tel", "telephone", "mobile", "cell", "call", "fax", "number"],
        ),
        builtin(
            "credit_card",
            "CREDIT_CARD",
            r"\b(?:\d[ -]?){12,18}\d\b",
            1.0,
            Some(|s, _, _| checks::luhn(s).then_some(1.0)),
            &["card", "credit", "visa", "mastercard", "amex", "payment"],
        ),
        builtin(
            "iban",
            "IBAN_CODE",
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            1.0,
            Some(|s, _, _| checks::iban(s).then_some(1.0)),
            &["iban", "bank", "account", "transfer"],
        ),
        builtin(
            "us_ssn",
            "US_SSN",
            r"\b\d{3}[- ]?\d{2}[- ]?\d{4}\b",
            0.0,
            Some(ssn),
            &["ssn", "social security", "social", "security number"],
        ),
        builtin(
            "ipv4",
            "IP_ADDRESS",
            r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b",
            0.6,
            None,
            &["ip", "address", "host", "client"],
        ),
        builtin(
            "ipv6",
            "IP_ADDRESS",
            r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}",
            0.0,
            Some(ipv6),
            &["ip", "ipv6", "address"],
        ),
        builtin(
            "mac",
            "MAC_ADDRESS",
            r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b",
            0.8,
            None,
            &["mac", "device", "wifi", "bssid"],
        ),
        builtin("url", "URL", r#"(?i)\bhttps?://[^\s"'<>]*[^\s"'<>.,;:!?)]"#, 0.6, None, &["url", "link", "website"]),
        builtin(
            "gps",
            "GPS_COORDINATES",
            r"-?\b\d{1,2}\.\d{3,}\s*,\s*-?\d{1,3}\.\d{3,}\b",
            0.0,
            Some(gps),
            &["gps", "location", "lat", "lon", "coordinates", "position"],
        ),
        builtin(
            "dob",
            "DATE_OF_BIRTH",
            r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2}))\b",
            0.05,
            None,
            &["born", "birth", "dob", "birthday", "date of birth"],
        ),
        builtin("us_passport", "US_PASSPORT", r"\b[A-Z]?\d{8,9}\b", 0.05, None, &["passport"]),
    ]
});

static BUILTIN_SET: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(BUILTIN.iter().map(|r| r.regex.as_str())).unwrap_or_else(|_| RegexSet::empty()));

/// Entity types a seed rule name stands for (`POST /filter {"rules": [...]}`).
pub fn entities_for_rule(rule: &str) -> Option<&'static [&'static str]> {
    Some(match rule.to_ascii_lowercase().as_str() {
        "email" | "email_address" => &["EMAIL_ADDRESS"],
        "phone" | "phone_number" => &["PHONE_NUMBER"],
        "ssn" | "us_ssn" => &["US_SSN"],
        "credit_card" | "card" => &["CREDIT_CARD"],
        "iban" | "iban_code" => &["IBAN_CODE"],
        "ip" | "ip_address" => &["IP_ADDRESS"],
        "mac" | "mac_address" => &["MAC_ADDRESS"],
        "url" => &["URL"],
        "gps" | "location" | "gps_coordinates" => &["GPS_COORDINATES"],
        "dob" | "date_of_birth" => &["DATE_OF_BIRTH"],
        "passport" | "us_passport" => &["US_PASSPORT"],
        _ => return None,
    })
}

pub const ALL_ENTITIES: &[&str] = &[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "URL",
    "GPS_COORDINATES",
    "DATE_OF_BIRTH",
    "US_PASSPORT",
];

fn has_context(lower_before: &str, words: &[String]) -> bool {
    words.iter().any(|w| lower_before.contains(w.as_str()))
}

/// Finds PII in `text`. `entities`: only these types (None: all). `extra_context`: words that
/// count as near every match (a field name in structured mode). `custom`: recognizers from
/// configuration or the request.
pub fn analyze(
    text: &str,
    entities: Option<&[String]>,
    extra_context: &str,
    custom: &[Recognizer],
    settings: &Settings,
) -> Vec<Finding> {
    let wanted = |e: &str| entities.is_none_or(|list| list.iter().any(|x| x == e));
    let extra = extra_context.to_lowercase();
    let mut found = Vec::new();
    let matching = BUILTIN_SET.matches(text);
    let candidates =
        BUILTIN.iter().enumerate().filter(|(i, _)| matching.matched(*i)).map(|(_, r)| r).chain(custom.iter());
    for r in candidates {
        if !wanted(&r.entity) {
            continue;
        }
        for m in r.regex.find_iter(text) {
            let s = m.as_str();
            let window_start = text[..m.start()].char_indices().rev().nth(CONTEXT_WINDOW - 1).map_or(0, |(i, _)| i);
            let before = text[window_start..m.start()].to_lowercase();
            let Some(mut score) = (match r.validate {
                Some(v) if extra.is_empty() => v(s, settings, &before),
                Some(v) => v(s, settings, &format!("{before} {extra}")),
                None => Some(r.score),
            }) else {
                continue;
            };
            if has_context(&before, &r.context) || has_context(&extra, &r.context) {
                score = (score + CONTEXT_BOOST).min(1.0);
            }
            if score < settings.threshold || settings.allow.iter().any(|a| a == s) {
                continue;
            }
            found.push(finding(text, &r.entity, &r.name, m.start(), m.end(), score));
        }
    }
    for d in &settings.deny {
        if d.is_empty() {
            continue;
        }
        for (at, _) in text.match_indices(d.as_str()) {
            found.push(finding(text, "DENY_LIST", "deny_list", at, at + d.len(), 1.0));
        }
    }
    resolve_overlaps(found)
}

fn finding(text: &str, entity: &str, recognizer: &str, start: usize, end: usize, score: f32) -> Finding {
    let char_start = text[..start].chars().count();
    let char_end = char_start + text[start..end].chars().count();
    Finding {
        entity_type: entity.to_owned(),
        start: char_start,
        end: char_end,
        score: (score * 100.0).round() / 100.0,
        byte_start: start,
        byte_end: end,
        recognizer: recognizer.to_owned(),
    }
}

/// Keeps the best of overlapping findings: higher score, then longer span.
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    found.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then((b.byte_end - b.byte_start).cmp(&(a.byte_end - a.byte_start)))
    });
    let mut kept: Vec<Finding> = Vec::new();
    for f in found {
        if kept.iter().all(|k| f.byte_end <= k.byte_start || f.byte_start >= k.byte_end) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.byte_start);
    kept
}

/// Entity a field's name alone makes certain (structured mode), with the value scanned whole.
pub fn entity_for_field(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase().replace(['-', ' '], "_");
    Some(match n.as_str() {
        "email" | "email_address" | "mail" => "EMAIL_ADDRESS",
        "phone" | "phone_number" | "mobile" | "tel" | "telephone" => "PHONE_NUMBER",
        "ssn" | "social_security_number" => "US_SSN",
        "dob" | "date_of_birth" | "birth_date" | "birthdate" | "birthday" => "DATE_OF_BIRTH",
        "lat" | "latitude" | "lon" | "lng" | "longitude" => "GPS_COORDINATES",
        "ip" | "ip_address" | "client_ip" | "remote_addr" => "IP_ADDRESS",
        "mac" | "mac_address" => "MAC_ADDRESS",
        "iban" => "IBAN_CODE",
        "card_number" | "credit_card" | "pan" => "CREDIT_CARD",
        "passport" | "passport_number" => "US_PASSPORT",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// (entity, text, the PII substring — or None for a negative example of that entity)
    const LABELLED: &[(&str, &str, Option<&str>)] = &[
        ("EMAIL_ADDRESS", "write to jane.doe@example.org today", Some("jane.doe@example.org")),
        ("EMAIL_ADDRESS", "odd but valid: o'connor+tag@mail.example.co.uk.", Some("o'connor+tag@mail.example.co.uk")),
        ("EMAIL_ADDRESS", "ALL.CAPS@EXAMPLE.COM", Some("ALL.CAPS@EXAMPLE.COM")),
        ("EMAIL_ADDRESS", "user_1%x@sub-domain.example.io", Some("user_1%x@sub-domain.example.io")),
        ("EMAIL_ADDRESS", "not an email: jane@localhost or @example.org", None),
        ("PHONE_NUMBER", "call me at +44 20 7946 0958", Some("+44 20 7946 0958")),
        ("PHONE_NUMBER", "mobile: +1 415-555-0132", Some("+1 415-555-0132")),
        ("PHONE_NUMBER", "phone (415) 555-2671 please", Some("(415) 555-2671")),
        ("PHONE_NUMBER", "tel +39 06 6982 4000", Some("+39 06 6982 4000")),
        ("PHONE_NUMBER", "order 12345 shipped", None),
        ("PHONE_NUMBER", "phone or ip 151.79.212.189", None),
        ("CREDIT_CARD", "card 4111 1111 1111 1111 exp 12/29", Some("4111 1111 1111 1111")),
        ("CREDIT_CARD", "paid with 5500-0000-0000-0004", Some("5500-0000-0000-0004")),
        ("CREDIT_CARD", "amex 378282246310005", Some("378282246310005")),
        ("CREDIT_CARD", "card 4111 1111 1111 1112 (bad Luhn)", None),
        ("CREDIT_CARD", "tracking 1234567812345678", None),
        ("IBAN_CODE", "IBAN DE89 3704 0044 0532 0130 00", Some("DE89 3704 0044 0532 0130 00")),
        ("IBAN_CODE", "to GB29NWBK60161331926819 now", Some("GB29NWBK60161331926819")),
        ("IBAN_CODE", "FR1420041010050500013M02606", Some("FR1420041010050500013M02606")),
        ("IBAN_CODE", "DE89 3704 0044 0532 0130 01 (bad checksum)", None),
        ("IBAN_CODE", "XX29NWBK60161331926819", None),
        ("US_SSN", "ssn 536-22-1234", Some("536-22-1234")),
        ("US_SSN", "SSN: 219 09 9998", Some("219 09 9998")),
        ("US_SSN", "my social security number is 536221234", Some("536221234")),
        ("US_SSN", "078-05-1120 was the wallet sample", None),
        ("US_SSN", "000-12-3456 and 666-12-3456 and 912-12-3456", None),
        ("US_SSN", "123-00-4567 and 123-45-0000", None),
        ("IP_ADDRESS", "client 192.168.10.42 connected", Some("192.168.10.42")),
        ("IP_ADDRESS", "from 2001:db8::8a2e:370:7334 via v6", Some("2001:db8::8a2e:370:7334")),
        ("IP_ADDRESS", "version 999.1.2.3 is not an address", None),
        ("MAC_ADDRESS", "bssid AA:BB:CC:00:11:22", Some("AA:BB:CC:00:11:22")),
        ("MAC_ADDRESS", "mac 00-1a-2b-3c-4d-5e", Some("00-1a-2b-3c-4d-5e")),
        ("URL", "see https://example.org/a?b=c.", Some("https://example.org/a?b=c")),
        ("GPS_COORDINATES", "at 45.4642, 9.1900 now", Some("45.4642, 9.1900")),
        ("GPS_COORDINATES", "ratio 95.1234, 200.5678", None),
        ("DATE_OF_BIRTH", "born 1984-03-12 in Rome", Some("1984-03-12")),
        ("DATE_OF_BIRTH", "date of birth: 12/03/1984", Some("12/03/1984")),
        ("DATE_OF_BIRTH", "invoice dated 2024-01-15", None),
        ("US_PASSPORT", "passport number 340020013", Some("340020013")),
        ("US_PASSPORT", "order 340020013 shipped", None),
    ];

    #[test]
    #[allow(clippy::print_stderr)]
    fn labelled_examples_precision_and_recall_per_type() {
        let settings = Settings::default();
        let mut tally: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new(); // (tp, fp, fn)
        for (entity, text, pii) in LABELLED {
            let found = analyze(text, Some(&[(*entity).to_owned()]), "", &[], &settings);
            let t = tally.entry(entity).or_default();
            match pii {
                Some(want) => {
                    let hit = found.iter().any(|f| &text[f.byte_start..f.byte_end] == *want);
                    if hit {
                        t.0 += 1
                    } else {
                        t.2 += 1
                    }
                    t.1 += found.iter().filter(|f| &text[f.byte_start..f.byte_end] != *want).count() as u32;
                    assert!(hit, "{entity}: missed {want:?} in {text:?}: {found:?}");
                }
                None => {
                    t.1 += found.len() as u32;
                    if ["CREDIT_CARD", "IBAN_CODE", "US_SSN"].contains(entity) {
                        assert!(found.is_empty(), "{entity}: checksum type false positive in {text:?}: {found:?}");
                    }
                }
            }
        }
        for (entity, (tp, fp, fn_)) in &tally {
            let precision = f64::from(*tp) / f64::from((tp + fp).max(1));
            let recall = f64::from(*tp) / f64::from((tp + fn_).max(1));
            eprintln!("{entity:<16} precision {precision:.2} recall {recall:.2} (tp {tp}, fp {fp}, fn {fn_})");
            assert!(precision >= 0.99 && recall >= 0.99, "{entity}: precision {precision} recall {recall}");
        }
    }

    #[test]
    fn the_seed_example_is_found_whole() {
        let text = "call me at +44 20 7946 0958 or mail jane.doe@example.org, ssn 536-22-1234";
        let found = analyze(text, None, "", &[], &Settings::default());
        let spans: Vec<(&str, &str)> =
            found.iter().map(|f| (f.entity_type.as_str(), &text[f.byte_start..f.byte_end])).collect();
        assert_eq!(
            spans,
            [
                ("PHONE_NUMBER", "+44 20 7946 0958"),
                ("EMAIL_ADDRESS", "jane.doe@example.org"),
                ("US_SSN", "536-22-1234")
            ]
        );
        // Character offsets, not bytes.
        let f = &analyze("é: a@b.io", None, "", &[], &Settings::default())[0];
        assert_eq!((f.start, f.end), (3, 9));
    }

    #[test]
    fn allow_and_deny_lists() {
        let s = Settings {
            allow: vec!["ops@example.org".into()],
            deny: vec!["Project Falcon".into()],
            ..Settings::default()
        };
        let found = analyze("mail ops@example.org about Project Falcon", None, "", &[], &s);
        let types: Vec<&str> = found.iter().map(|f| f.entity_type.as_str()).collect();
        assert_eq!(types, ["DENY_LIST"]);
    }
}
