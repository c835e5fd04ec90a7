//! Per-identifier-type link limits: a shared identifier value (a public IP, an office wifi, an
//! account, a household) may tie together at most a configured number of devices, so one popular
//! value never glues thousands of devices into one group. Defaults per type live here and
//! `device_identity.identifier_limits` overrides or adds types. Values are normalized here and
//! only their keyed hashes are stored; refusals name the type and the limit, never the value.
//! Pure logic, table-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Built-in limits: the most devices one value of the type may link.
pub const DEFAULTS: [(&str, u32); 4] = [("account", 16), ("household", 16), ("ip", 32), ("wifi", 32)];

/// Longest accepted identifier value.
const MAX_VALUE_LEN: usize = 512;

/// The limit per identifier type in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits(BTreeMap<String, u32>);

impl Default for Limits {
    fn default() -> Self {
        Limits::new(&BTreeMap::new())
    }
}

impl Limits {
    /// The defaults with `overrides` applied (an override may also add a type).
    pub fn new(overrides: &BTreeMap<String, u32>) -> Limits {
        let mut map: BTreeMap<String, u32> = DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        map.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Limits(map)
    }

    pub fn get(&self, kind: &str) -> Option<u32> {
        self.0.get(kind).copied()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// A link or registration refused because an identifier value would link too many devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub kind: String,
    pub limit: u32,
    /// Devices the value would link.
    pub devices: usize,
}

/// May `joining` devices be associated with a value of `kind` that already links `linked`?
/// Devices already linked by the value do not count twice.
pub fn check(kind: &str, limit: u32, linked: &BTreeSet<String>, joining: &BTreeSet<String>) -> Result<(), Exceeded> {
    let devices = linked.union(joining).count();
    let grows = joining.iter().any(|d| !linked.contains(d));
    if grows && devices > limit as usize {
        return Err(Exceeded { kind: kind.to_owned(), limit, devices });
    }
    Ok(())
}

/// The canonical form of a value of `kind`, or why it is refused (naming the type, never the
/// value). IPs are parsed and printed canonically (so `::ffff:1.2.3.4`, `1.2.3.4` agree); names
/// compare case-insensitively, except wifi network names, which are case-sensitive.
pub fn normalize(limits: &Limits, kind: &str, value: &str) -> Result<String, String> {
    if limits.get(kind).is_none() {
        let known: Vec<&str> = limits.kinds().collect();
        return Err(format!("`{kind}` is not an identifier type; known types: {}", known.join(", ")));
    }
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return Err(format!("a `{kind}` identifier must be 1 to {MAX_VALUE_LEN} characters"));
    }
    Ok(match kind {
        "ip" => {
            let ip: IpAddr =
                value.parse().map_err(|_| "an `ip` identifier must be an IPv4 or IPv6 address".to_owned())?;
            match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            }
            .to_string()
        }
        "wifi" => value.to_owned(),
        _ => value.to_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_decision_counts_distinct_devices_and_never_refuses_what_is_already_linked() {
        // (limit, linked, joining, expected)
        let cases: Vec<(u32, &[&str], &[&str], Result<(), usize>)> = vec![
            (2, &[], &["a"], Ok(())),
            (2, &["a"], &["b"], Ok(())),
            (2, &["a", "b"], &["c"], Err(3)),
            (2, &["a", "b"], &["a"], Ok(())),
            (2, &["a", "b"], &["a", "b"], Ok(())),
            (2, &["a"], &["b", "c"], Err(3)),
            (3, &["a"], &["b", "c"], Ok(())),
            (1, &[], &["a", "b"], Err(2)),
            // already over (the limit was lowered): existing devices may still be re-linked
            (1, &["a", "b", "c"], &["b"], Ok(())),
            (1, &["a", "b", "c"], &["d"], Err(4)),
        ];
        for (i, (limit, linked, joining, want)) in cases.into_iter().enumerate() {
            let got = check("wifi", limit, &set(linked), &set(joining));
            let want = want.map_err(|devices| Exceeded { kind: "wifi".into(), limit, devices });
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn config_overrides_and_adds_types_over_the_defaults() {
        let overrides: BTreeMap<String, u32> = [("ip".to_owned(), 4), ("vehicle".to_owned(), 2)].into();
        let limits = Limits::new(&overrides);
        let cases = [("ip", Some(4)), ("wifi", Some(32)), ("account", Some(16)), ("vehicle", Some(2)), ("mac", None)];
        for (kind, want) in cases {
            assert_eq!(limits.get(kind), want, "{kind}");
        }
        assert_eq!(Limits::default().get("ip"), Some(32));
    }

    #[test]
    fn values_are_normalized_and_refusals_never_repeat_the_value() {
        let limits = Limits::default();
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("ip", " 192.0.2.7 ", Ok("192.0.2.7")),
            ("ip", "::ffff:192.0.2.7", Ok("192.0.2.7")),
            ("ip", "2001:DB8::1", Ok("2001:db8::1")),
            ("ip", "secret-host.example", Err("an `ip` identifier must be an IPv4 or IPv6 address")),
            ("wifi", "Office-5G", Ok("Office-5G")),
            ("account", "Alice@Example.com", Ok("alice@example.com")),
            ("household", "  ", Err("a `household` identifier must be 1 to 512 characters")),
            ("mac", "secret-mac", Err("`mac` is not an identifier type; known types: account, household, ip, wifi")),
        ];
        for (kind, value, want) in cases {
            let got = normalize(&limits, kind, value);
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "{kind}");
            if let Err(e) = got {
                assert!(!e.contains(value.trim()) || value.trim().is_empty(), "{e}");
            }
        }
    }
}
