//! The router's metric names (service label `event-router`, so they appear on 8013's /metrics).

pub const RULE_EVENTS: &str = "loom_router_rule_events_total";
pub const RULE_DURATION: &str = "loom_router_rule_duration_seconds";
pub const EVENTS: &str = "loom_router_events_total";
pub const RULESET_VERSION: &str = "loom_router_ruleset_version";

/// Help texts, registered once when the service starts.
pub fn describe() {
    metrics::describe_counter!(RULE_EVENTS, "Events per rule, by outcome (matched, routed, failed)");
    metrics::describe_histogram!(RULE_DURATION, metrics::Unit::Seconds, "Time one rule took on one event");
    metrics::describe_counter!(
        EVENTS,
        "Events handled by the router, by outcome (routed, dropped, dead_lettered, retried)"
    );
    metrics::describe_gauge!(RULESET_VERSION, "The rule-set revision this node routes with");
}
