//! Checksums and range rules that turn a pattern match into a finding (pure): Luhn for card
//! numbers, ISO 13616 mod-97 for IBANs, the SSA's invalid ranges for US SSNs, coordinate ranges.

/// Luhn over the digits of `s` (separators ignored); 13–19 digits.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || s.chars().any(|c| !(c.is_ascii_digit() || c == ' ' || c == '-')) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { *d })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry, the common ones).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IQ" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LC" => 32,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SC" => 31,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "ST" => 25,
        "SV" => 28,
        "TL" => 23,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VA" => 22,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// ISO 13616: known country, its length, and remainder 1 of the rearranged number mod 97.
pub fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    if compact.len() < 15 || !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    if iban_length(&compact[..2]) != Some(compact.len()) || !compact[2..4].chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = c.to_digit(36).unwrap_or(0);
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// US SSN `AAA-GG-SSSS`: area not 000, 666 or 900–999; group not 00; serial not 0000; and not
/// the numbers the SSA has said were never valid (advertising samples).
pub fn ssn(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 9 {
        return false;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    let area_n: u32 = area.parse().unwrap_or(0);
    let never_issued = area == "000" || area == "666" || area_n >= 900 || group == "00" || serial == "0000";
    // advertising samples the SSA voided, and one digit repeated (111-11-1111 …): placeholders
    let placeholder = matches!(digits.as_str(), "078051120" | "219099999" | "123456789")
        || digits.bytes().all(|c| c == digits.as_bytes()[0]);
    !never_issued && !placeholder
}

/// A latitude/longitude pair in range.
pub fn coordinates(lat: f64, lon: f64) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) && !(lat == 0.0 && lon == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_accept_valid_and_refuse_invalid() {
        let cards = [
            ("4111 1111 1111 1111", true),
            ("5500-0000-0000-0004", true),
            ("378282246310005", true),
            ("4111 1111 1111 1112", false),
            ("1234567812345678", false),
            ("4111", false),
        ];
        for (c, want) in cards {
            assert_eq!(luhn(c), want, "{c}");
        }
        let ibans = [
            ("DE89 3704 0044 0532 0130 00", true),
            ("GB29NWBK60161331926819", true),
            ("FR1420041010050500013M02606", true),
            ("DE89 3704 0044 0532 0130 01", false),
            ("GB29NWBK6016133192681", false),
            ("XX29NWBK60161331926819", false),
        ];
        for (i, want) in ibans {
            assert_eq!(iban(i), want, "{i}");
        }
        let ssns = [
            ("536-22-1234", true),
            ("078-05-1120", false),
            ("000-12-3456", false),
            ("666-12-3456", false),
            ("912-12-3456", false),
            ("123-00-4567", false),
            ("123-45-0000", false),
            ("111-11-1111", false),
        ];
        for (s, want) in ssns {
            assert_eq!(ssn(s), want, "{s}");
        }
        assert!(coordinates(45.46, 9.19) && !coordinates(91.0, 9.0) && !coordinates(0.0, 0.0));
    }
}
