//! Public holidays — the table `scripts/gen-holidays.py` generates from the PyPI `holidays`
//! package (≥ 30 countries, 2000–2050 where the package covers them): national holidays per
//! country and, per subdivision, what differs (`extra` holidays, `absent` national ones). A
//! place's subdivision comes from its GeoNames admin1 name through the package's aliases (plus
//! English names the generator adds), exact first, then folded to lowercase ASCII letters.
//! Pure: parsing and lookups, no I/O beyond [`Holidays::load`].

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Table {
    source: String,
    version: String,
    years: [i32; 2],
    countries: HashMap<String, Country>,
}

#[derive(Debug, Deserialize)]
struct Country {
    national: HashMap<String, String>,
    #[serde(default)]
    subdivisions: HashMap<String, Subdivision>,
    #[serde(default)]
    aliases: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Subdivision {
    #[serde(default)]
    extra: HashMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
}

/// A holiday on a date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holiday {
    pub name: String,
    pub country_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
}

/// What a lookup found out.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub holiday: Option<Holiday>,
    /// The subdivision code the place resolved to, if any.
    pub subdivision: Option<String>,
    /// Why the answer may be incomplete: `country_not_covered`, `year_not_covered`.
    pub reason: Option<&'static str>,
}

pub struct Holidays {
    table: Table,
    /// Per country: folded alias → subdivision code.
    folded: HashMap<String, HashMap<String, String>>,
}

fn fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'ä' | 'à' | 'á' | 'â' | 'ã' | 'å' => Some('a'),
            'ö' | 'ò' | 'ó' | 'ô' | 'õ' | 'ø' => Some('o'),
            'ü' | 'ù' | 'ú' | 'û' => Some('u'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'í' | 'ì' | 'î' | 'ï' => Some('i'),
            'ç' => Some('c'),
            'ñ' => Some('n'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

impl Holidays {
    pub fn parse(bytes: &[u8]) -> Result<Holidays, String> {
        let table: Table = serde_json::from_slice(bytes).map_err(|e| format!("not a holiday table: {e}"))?;
        let folded = table
            .countries
            .iter()
            .map(|(cc, c)| (cc.clone(), c.aliases.iter().map(|(k, v)| (fold(k), v.clone())).collect()))
            .collect();
        Ok(Holidays { table, folded })
    }

    pub fn load(path: &Path) -> Result<Holidays, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Holidays::parse(&bytes)
    }

    /// `holidays@<version>`.
    pub fn provenance(&self) -> String {
        format!("{}@{}", self.table.source, self.table.version)
    }

    pub fn version(&self) -> &str {
        &self.table.version
    }

    pub fn years(&self) -> [i32; 2] {
        self.table.years
    }

    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.table.countries.keys().map(String::as_str)
    }

    /// The subdivision code of an admin1 name (or a code) in a country.
    pub fn subdivision(&self, cc: &str, admin1: &str) -> Option<String> {
        let c = self.table.countries.get(cc)?;
        if let Some(code) = c.aliases.get(admin1) {
            return Some(code.clone());
        }
        self.folded.get(cc)?.get(&fold(admin1)).cloned()
    }

    /// The holiday of `date` (`YYYY-MM-DD`) in a country, and its subdivision when known.
    pub fn lookup(&self, cc: &str, admin1: Option<&str>, date: &str) -> Lookup {
        let Some(c) = self.table.countries.get(cc) else {
            return Lookup { holiday: None, subdivision: None, reason: Some("country_not_covered") };
        };
        let year: i32 = date.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
        let reason = (year < self.table.years[0] || year > self.table.years[1]).then_some("year_not_covered");
        let code = admin1.and_then(|a| self.subdivision(cc, a));
        let sub = code.as_ref().and_then(|s| c.subdivisions.get(s));
        let holiday = match sub {
            Some(s) if s.extra.contains_key(date) => {
                Some(Holiday { name: s.extra[date].clone(), country_code: cc.into(), subdivision: code.clone() })
            }
            Some(s) if s.absent.iter().any(|d| d == date) => None,
            _ => c.national.get(date).map(|n| Holiday { name: n.clone(), country_code: cc.into(), subdivision: None }),
        };
        Lookup { holiday, subdivision: code, reason }
    }

    /// Every holiday of a year in a country (and subdivision), by date.
    pub fn year(&self, cc: &str, subdivision: Option<&str>, year: i32) -> Option<Vec<(String, String)>> {
        let c = self.table.countries.get(cc)?;
        let sub = match subdivision {
            Some(s) => Some(c.subdivisions.get(s)?),
            None => None,
        };
        let prefix = format!("{year:04}-");
        let mut out: Vec<(String, String)> = c
            .national
            .iter()
            .filter(|(d, _)| d.starts_with(&prefix) && sub.is_none_or(|s| !s.absent.contains(d)))
            .map(|(d, n)| (d.clone(), n.clone()))
            .collect();
        if let Some(s) = sub {
            for (d, n) in s.extra.iter().filter(|(d, _)| d.starts_with(&prefix)) {
                out.retain(|(x, _)| x != d);
                out.push((d.clone(), n.clone()));
            }
        }
        out.sort();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"{"source": "holidays", "version": "0.109", "years": [2000, 2050], "countries": {
        "DE": {"national": {"2026-01-01": "New Year's Day", "2026-10-03": "German Unity Day"},
               "subdivisions": {"BY": {"extra": {"2026-01-06": "Epiphany"}}, "BE": {},
                                "XX": {"absent": ["2026-10-03"]}},
               "aliases": {"Bayern": "BY", "Bavaria": "BY", "Baden-Württemberg": "BW", "BY": "BY", "XX": "XX"}}}}"#;

    #[test]
    fn national_subdivision_and_coverage() {
        let h = Holidays::parse(TABLE.as_bytes()).unwrap();
        assert_eq!(h.provenance(), "holidays@0.109");
        // (country, admin1, date, expected name, expected subdivision of the holiday, reason)
        let cases: Vec<(&str, Option<&str>, &str, Option<&str>, Option<&str>, Option<&str>)> = vec![
            ("DE", None, "2026-01-01", Some("New Year's Day"), None, None),
            ("DE", Some("Bavaria"), "2026-01-06", Some("Epiphany"), Some("BY"), None),
            ("DE", Some("Berlin"), "2026-01-06", None, None, None),
            ("DE", Some("Bavaria"), "2026-10-03", Some("German Unity Day"), None, None),
            ("DE", Some("XX"), "2026-10-03", None, None, None),
            ("DE", None, "2026-03-03", None, None, None),
            ("DE", None, "2051-01-01", None, None, Some("year_not_covered")),
            ("QQ", None, "2026-01-01", None, None, Some("country_not_covered")),
        ];
        for (cc, admin1, date, name, sub, reason) in cases {
            let l = h.lookup(cc, admin1, date);
            assert_eq!(l.holiday.as_ref().map(|x| x.name.as_str()), name, "{cc} {admin1:?} {date}");
            assert_eq!(l.holiday.as_ref().and_then(|x| x.subdivision.as_deref()), sub, "{cc} {admin1:?} {date}");
            assert_eq!(l.reason, reason, "{cc} {date}");
        }
        assert_eq!(h.subdivision("DE", "baden wurttemberg"), Some("BW".into()), "folded");
        assert_eq!(h.subdivision("DE", "Narnia"), None);
        let by = h.year("DE", Some("BY"), 2026).unwrap();
        assert_eq!(by.len(), 3);
        assert_eq!(h.year("DE", Some("XX"), 2026).unwrap().len(), 1);
        assert!(h.year("DE", Some("ZZ"), 2026).is_none());
        assert!(Holidays::parse(b"{}").is_err());
    }
}
