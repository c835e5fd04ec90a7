//! Telemetry for a node: structured JSON logs (`logging`) and Prometheus metrics routed to one
//! registry per service port (`metrics`), with every metric name described in `names`.

pub mod logging;
pub mod metrics;
pub mod names;

pub use logging::init_logging;
pub use metrics::MetricsRegistry;
