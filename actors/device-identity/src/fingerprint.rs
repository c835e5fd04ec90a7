//! Device fingerprints: the non-identifying attributes of a registration (platform, model,
//! OS family and major version, screen, locale, time zone, browser family…) as weighted features.
//! The fingerprint hash is stable for equal features; similarity is the weighted Jaccard index
//! over features, with a partial credit for the same OS family at another version — so a
//! re-install or an OS update of the same device still scores high, and another device of the
//! same model scores lower than the same device. Pure logic, table-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Feature name → (value, weight).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features(pub BTreeMap<String, String>);

/// How much each feature counts.
fn weight(name: &str) -> f64 {
    match name {
        "platform" => 1.0,
        "model" => 3.0,
        "manufacturer" => 1.0,
        "os_family" => 1.5,
        "os_version" => 1.0,
        "screen" => 2.0,
        "locale" => 1.0,
        "timezone" => 1.0,
        "browser_family" => 1.0,
        "device_class" => 0.5,
        _ => 0.5,
    }
}

impl Features {
    pub fn insert(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            self.0.insert(name.to_owned(), v.to_ascii_lowercase());
        }
    }

    /// SHA-256 over the sorted features, hex, the first 16 bytes.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.0 {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\0");
        }
        h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Weighted Jaccard similarity in [0, 1]; `os_version` earns half credit when only the
    /// minor part differs and nothing when both lack it.
    pub fn similarity(&self, other: &Features) -> f64 {
        let mut shared = 0.0;
        let mut total = 0.0;
        let names: std::collections::BTreeSet<&String> = self.0.keys().chain(other.0.keys()).collect();
        for name in names {
            let w = weight(name);
            total += w;
            match (self.0.get(name), other.0.get(name)) {
                (Some(a), Some(b)) if a == b => shared += w,
                (Some(a), Some(b)) if name == "os_version" && major(a) == major(b) => shared += w * 0.5,
                _ => {}
            }
        }
        if total == 0.0 { 0.0 } else { shared / total }
    }
}

fn major(version: &str) -> &str {
    version.split(['.', ' ']).next().unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Features {
        let mut f = Features::default();
        for (k, v) in pairs {
            f.insert(k, Some(v));
        }
        f
    }

    #[test]
    fn same_device_after_update_or_reinstall_outranks_a_sibling_device() {
        let phone = f(&[
            ("platform", "android"),
            ("model", "Pixel 8"),
            ("os_family", "android"),
            ("os_version", "15"),
            ("screen", "1080x2400"),
            ("locale", "it-IT"),
            ("timezone", "Europe/Rome"),
        ]);
        let reinstalled = phone.clone();
        let updated = f(&[
            ("platform", "android"),
            ("model", "Pixel 8"),
            ("os_family", "android"),
            ("os_version", "16"),
            ("screen", "1080x2400"),
            ("locale", "it-IT"),
            ("timezone", "Europe/Rome"),
        ]);
        let minor = f(&[
            ("platform", "android"),
            ("model", "Pixel 8"),
            ("os_family", "android"),
            ("os_version", "15.1"),
            ("screen", "1080x2400"),
            ("locale", "it-IT"),
            ("timezone", "Europe/Rome"),
        ]);
        let sibling = f(&[
            ("platform", "android"),
            ("model", "Pixel 8"),
            ("os_family", "android"),
            ("os_version", "15"),
            ("screen", "1080x2400"),
            ("locale", "en-US"),
            ("timezone", "America/New_York"),
        ]);
        let other = f(&[
            ("platform", "ios"),
            ("model", "iPhone15,2"),
            ("os_family", "ios"),
            ("os_version", "18"),
            ("screen", "1179x2556"),
        ]);
        let scores = [
            phone.similarity(&reinstalled),
            phone.similarity(&minor),
            phone.similarity(&updated),
            phone.similarity(&sibling),
            phone.similarity(&other),
        ];
        assert_eq!(scores[0], 1.0);
        for w in scores.windows(2) {
            assert!(w[0] > w[1], "expected a strictly falling order: {scores:?}");
        }
        assert!(scores[2] >= 0.85, "{scores:?}");
        assert_eq!(phone.hash(), reinstalled.hash());
        assert_ne!(phone.hash(), updated.hash());
    }

    #[test]
    fn values_are_normalized_and_empty_ones_ignored() {
        let a = f(&[("model", " Pixel 8 "), ("locale", "")]);
        let b = f(&[("model", "pixel 8")]);
        assert_eq!(a, b);
        assert_eq!(Features::default().similarity(&Features::default()), 0.0);
    }
}
