//! Prometheus metrics with one registry per service port. A routing recorder sends every series
//! to the registry named by its `service` label (node-wide series, without that label, go to the
//! node registry), so the ten ports never expose the same series twice.

use std::collections::HashMap;
use std::sync::OnceLock;

use loom_protocol::ServiceId;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Latency buckets for every `_seconds` histogram: 0.5 ms … 30 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The label that routes a series to a service's registry.
pub const SERVICE_LABEL: &str = "service";

/// Read side of the metrics: renders one service's (or the node's) series as Prometheus text.
pub struct MetricsRegistry {
    node: PrometheusHandle,
    services: HashMap<&'static str, PrometheusHandle>,
}

struct RoutingRecorder {
    node: PrometheusRecorder,
    services: HashMap<&'static str, PrometheusRecorder>,
}

fn new_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .expect("bucket list is non-empty")
        .build_recorder()
}

impl RoutingRecorder {
    fn route(&self, key: &Key) -> &PrometheusRecorder {
        key.labels().find(|l| l.key() == SERVICE_LABEL).and_then(|l| self.services.get(l.value())).unwrap_or(&self.node)
    }

    fn all(&self) -> impl Iterator<Item = &PrometheusRecorder> {
        std::iter::once(&self.node).chain(self.services.values())
    }
}

impl Recorder for RoutingRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.all().for_each(|r| r.describe_counter(key.clone(), unit, description.clone()));
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.all().for_each(|r| r.describe_gauge(key.clone(), unit, description.clone()));
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.all().for_each(|r| r.describe_histogram(key.clone(), unit, description.clone()));
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.route(key).register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.route(key).register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.route(key).register_histogram(key, metadata)
    }
}

static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();

impl MetricsRegistry {
    /// Installs the routing recorder as the process-wide recorder (once) and returns its registry.
    pub fn global() -> &'static MetricsRegistry {
        GLOBAL.get_or_init(|| {
            let node = new_recorder();
            let services: HashMap<_, _> = ServiceId::ALL.iter().map(|id| (id.name(), new_recorder())).collect();
            let registry = MetricsRegistry {
                node: node.handle(),
                services: services.iter().map(|(k, r)| (*k, r.handle())).collect(),
            };
            // Fails only if another recorder was installed first, which Loom never does.
            let _ = metrics::set_global_recorder(RoutingRecorder { node, services });
            crate::names::describe_all();
            registry
        })
    }

    /// Prometheus text of one service's series.
    pub fn render_service(&self, id: ServiceId) -> String {
        let handle = &self.services[id.name()];
        handle.run_upkeep();
        handle.render()
    }

    /// Prometheus text of node-wide series (no `service` label).
    pub fn render_node(&self) -> String {
        self.node.run_upkeep();
        self.node.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_go_to_the_registry_of_their_service() {
        let registry = MetricsRegistry::global();
        metrics::counter!("loom_test_routed_total", SERVICE_LABEL => "dedup").increment(3);
        metrics::counter!("loom_test_node_total").increment(1);
        let dedup = registry.render_service(ServiceId::Dedup);
        let schema = registry.render_service(ServiceId::SchemaRegistry);
        let node = registry.render_node();
        assert!(dedup.contains("loom_test_routed_total{service=\"dedup\"} 3"), "{dedup}");
        assert!(!schema.contains("loom_test_routed_total"), "{schema}");
        assert!(!node.contains("loom_test_routed_total"), "{node}");
        assert!(node.contains("loom_test_node_total 1"), "{node}");
        assert!(!dedup.contains("loom_test_node_total"), "{dedup}");
    }
}
