//! Checks a service reports about what it watches — not about itself — for the Health
//! Aggregator on the same node: a data quality monitor whose conditions hold is one such
//! check. Each is named `check:<service>/<name>`, carries a status (`pass`/`warn`/`fail`) and a
//! JSON detail, and stays until its service clears it. The aggregator polls the board, so a
//! check appears on its dashboard, in `/ws/health` and (when it fails) as an incident's root
//! cause; its peers learn it through the aggregator's cluster topic. Bounded: past
//! [`MAX_CHECKS`] new names are refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use loom_protocol::ServiceId;
use serde_json::Value;

/// Checks per node at most.
pub const MAX_CHECKS: usize = 1024;

/// One reported check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub status: &'static str,
    pub detail: Value,
}

/// The node's board of reported checks. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    inner: Arc<Mutex<BTreeMap<String, Check>>>,
}

/// The component name of a service's check.
pub fn component(service: ServiceId, name: &str) -> String {
    format!("check:{}/{name}", service.name())
}

/// The service a check component belongs to, if it is one.
pub fn service_of(component: &str) -> Option<&str> {
    component.strip_prefix("check:")?.split_once('/').map(|(s, _)| s)
}

impl Checks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Check>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports `service`'s check `name`; false when the board is full.
    pub fn set(&self, service: ServiceId, name: &str, status: &'static str, detail: Value) -> bool {
        let mut map = self.lock();
        let key = component(service, name);
        if !map.contains_key(&key) && map.len() >= MAX_CHECKS {
            return false;
        }
        map.insert(key, Check { status, detail });
        true
    }

    /// Withdraws a check (its subject is gone or no longer watched here).
    pub fn clear(&self, service: ServiceId, name: &str) {
        self.lock().remove(&component(service, name));
    }

    /// The names (without the prefix) `service` reports.
    pub fn names(&self, service: ServiceId) -> Vec<String> {
        let prefix = component(service, "");
        self.lock().keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).collect()
    }

    /// Every check: (component, check).
    pub fn snapshot(&self) -> Vec<(String, Check)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checks_are_named_per_service_and_bounded() {
        let b = Checks::default();
        assert!(b.set(ServiceId::DataQuality, "gps", "fail", json!({"open": 1})));
        assert!(b.set(ServiceId::DataQuality, "gps", "pass", json!({})));
        assert_eq!(b.snapshot().len(), 1);
        assert_eq!(b.snapshot()[0].0, "check:data-quality/gps");
        assert_eq!(service_of("check:data-quality/gps"), Some("data-quality"));
        assert_eq!(service_of("dep:kafka"), None);
        assert_eq!(b.names(ServiceId::DataQuality), vec!["gps".to_owned()]);
        assert!(b.names(ServiceId::Dedup).is_empty());
        b.clear(ServiceId::DataQuality, "gps");
        assert!(b.snapshot().is_empty());
        for i in 0..MAX_CHECKS {
            assert!(b.set(ServiceId::Dedup, &i.to_string(), "pass", json!({})));
        }
        assert!(!b.set(ServiceId::Dedup, "one more", "pass", json!({})));
        assert!(b.set(ServiceId::Dedup, "0", "fail", json!({})), "an existing name still updates");
    }
}
