//! The ten services a Loom node can host, with their documented names and ports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the ten shared services. The order of [`ServiceId::ALL`] is the start order; shutdown
/// runs in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceId {
    SchemaRegistry,
    PrivacyFilter,
    DeviceIdentity,
    EventRouter,
    TimeseriesAggregator,
    FileProcessing,
    Dedup,
    ContextEnrichment,
    HealthAggregator,
    DataQuality,
}

impl ServiceId {
    pub const ALL: [ServiceId; 10] = [
        ServiceId::SchemaRegistry,
        ServiceId::PrivacyFilter,
        ServiceId::DeviceIdentity,
        ServiceId::EventRouter,
        ServiceId::TimeseriesAggregator,
        ServiceId::FileProcessing,
        ServiceId::Dedup,
        ServiceId::ContextEnrichment,
        ServiceId::HealthAggregator,
        ServiceId::DataQuality,
    ];

    /// Stable kebab-case name used in config keys, metric labels, logs and URLs.
    pub const fn name(self) -> &'static str {
        match self {
            ServiceId::SchemaRegistry => "schema-registry",
            ServiceId::PrivacyFilter => "privacy-filter",
            ServiceId::DeviceIdentity => "device-identity",
            ServiceId::EventRouter => "event-router",
            ServiceId::TimeseriesAggregator => "timeseries-aggregator",
            ServiceId::FileProcessing => "file-processing",
            ServiceId::Dedup => "dedup",
            ServiceId::ContextEnrichment => "context-enrichment",
            ServiceId::HealthAggregator => "health-aggregator",
            ServiceId::DataQuality => "data-quality",
        }
    }

    /// The documented port of the service.
    pub const fn default_port(self) -> u16 {
        match self {
            ServiceId::SchemaRegistry => 8010,
            ServiceId::PrivacyFilter => 8011,
            ServiceId::DeviceIdentity => 8012,
            ServiceId::EventRouter => 8013,
            ServiceId::TimeseriesAggregator => 8020,
            ServiceId::FileProcessing => 8021,
            ServiceId::Dedup => 8022,
            ServiceId::ContextEnrichment => 8023,
            ServiceId::HealthAggregator => 8030,
            ServiceId::DataQuality => 8031,
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServiceId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceId::ALL.into_iter().find(|id| id.name() == s).ok_or_else(|| {
            let names: Vec<_> = ServiceId::ALL.iter().map(|id| id.name()).collect();
            format!("unknown service `{s}`, expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_round_trip_and_are_unique() {
        let mut ports = std::collections::HashSet::new();
        for id in ServiceId::ALL {
            assert_eq!(id.name().parse::<ServiceId>(), Ok(id));
            assert!(ports.insert(id.default_port()), "duplicate port for {id}");
        }
        let expected = [8010, 8011, 8012, 8013, 8020, 8021, 8022, 8023, 8030, 8031];
        let mut got: Vec<_> = ports.into_iter().collect();
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = "schema".parse::<ServiceId>().unwrap_err();
        assert!(err.contains("unknown service `schema`"), "{err}");
        assert!(err.contains("schema-registry"), "{err}");
    }
}
