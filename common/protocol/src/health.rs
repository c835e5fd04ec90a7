//! Health vocabulary for `application/health+json` (draft-inadarei-api-health-check): the
//! pass/warn/fail status and one check result.

use serde::{Deserialize, Serialize};

/// Overall or per-check status. Ordered so that the worst status is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

impl HealthStatus {
    /// The worst of a set of statuses; `Pass` for an empty set.
    pub fn worst(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses.into_iter().max().unwrap_or(HealthStatus::Pass)
    }
}

/// One entry of the `checks` object of a health response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `component:measurement`, e.g. `core:responseTime` or `database:connections`.
    pub name: String,
    pub status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// RFC 3339 time of the observation.
    pub time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_wins() {
        use HealthStatus::*;
        let cases: &[(&[HealthStatus], HealthStatus)] =
            &[(&[], Pass), (&[Pass, Pass], Pass), (&[Pass, Warn], Warn), (&[Warn, Fail, Pass], Fail)];
        for (input, want) in cases {
            assert_eq!(HealthStatus::worst(input.iter().copied()), *want, "{input:?}");
        }
    }
}
