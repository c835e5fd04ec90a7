//! Every metric name Loom records, with its help text, in one place. Names follow Prometheus
//! conventions (`_total` counters, base units); `promtool check metrics` lints them in tests.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const HTTP_REQUESTS: &str = "loom_http_requests_total";
pub const HTTP_DURATION: &str = "loom_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "loom_http_requests_in_flight";
pub const HTTP_REJECTED: &str = "loom_http_rejected_total";
pub const ACTOR_RESTARTS: &str = "loom_actor_restarts_total";
pub const ACTOR_UP: &str = "loom_actor_up";
pub const ACTOR_MAILBOX_DEPTH: &str = "loom_actor_mailbox_depth";
pub const ACTOR_MAILBOX_SHED: &str = "loom_actor_mailbox_shed_total";
pub const ACTOR_MESSAGES: &str = "loom_actor_messages_total";
pub const SERVICE_READY: &str = "loom_service_ready";
pub const SUPERVISOR_ESCALATIONS: &str = "loom_supervisor_escalations_total";
pub const NODE_INFO: &str = "loom_node_info";
pub const NODE_START_TIME: &str = "loom_node_start_time_seconds";
pub const NODE_STARTUP_DURATION: &str = "loom_node_startup_duration_seconds";
pub const CLUSTER_MEMBERS: &str = "loom_cluster_members";
pub const CLUSTER_MEMBER_CHANGES: &str = "loom_cluster_member_changes_total";
pub const CLUSTER_DATAGRAMS: &str = "loom_cluster_gossip_datagrams_total";
pub const CLUSTER_SESSIONS: &str = "loom_cluster_sessions";
pub const CLUSTER_CALLS: &str = "loom_cluster_calls_total";
pub const CLUSTER_CALL_DURATION: &str = "loom_cluster_call_duration_seconds";
pub const CLUSTER_DATA_DIALS: &str = "loom_cluster_data_dials_total";
pub const CLUSTER_DATA_REFUSED: &str = "loom_cluster_data_refused_total";
pub const KAFKA_CONSUMED: &str = "loom_kafka_consumed_total";
pub const KAFKA_CONSUMED_BYTES: &str = "loom_kafka_consumed_bytes_total";
pub const KAFKA_PRODUCED: &str = "loom_kafka_produced_total";
pub const KAFKA_ERRORS: &str = "loom_kafka_errors_total";
pub const KAFKA_LAG: &str = "loom_kafka_consumer_lag";
pub const KAFKA_IN_FLIGHT: &str = "loom_kafka_in_flight";
pub const KAFKA_COMMITTABLE: &str = "loom_kafka_committable_offset";
pub const KAFKA_PAUSES: &str = "loom_kafka_partition_pauses_total";
pub const KAFKA_REBALANCES: &str = "loom_kafka_rebalances_total";
pub const KAFKA_ASSIGNED: &str = "loom_kafka_partitions_assigned";
pub const KAFKA_PRODUCE_DURATION: &str = "loom_kafka_produce_duration_seconds";
pub const SLA_AVAILABILITY: &str = "loom_sla_availability_ratio";
pub const SLA_BURN_RATE: &str = "loom_sla_error_budget_burn_rate";

/// Registers help text and units for every metric above. Call once after installing the recorder.
pub fn describe_all() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests served, by route, method and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency, by route and method");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now");
    describe_counter!(HTTP_REJECTED, "HTTP requests refused by a limit or auth, by reason");
    describe_counter!(ACTOR_RESTARTS, "Restarts of a supervised actor by its supervisor");
    describe_gauge!(ACTOR_UP, "1 while the supervised actor runs, 0 while it is down or restarting");
    describe_gauge!(ACTOR_MAILBOX_DEPTH, "Messages sent to the actor and not yet handled");
    describe_counter!(ACTOR_MAILBOX_SHED, "Messages refused because the actor's mailbox was full");
    describe_counter!(ACTOR_MESSAGES, "Messages handled by the actor");
    describe_gauge!(SERVICE_READY, "1 when the service answers /ready with 200");
    describe_counter!(SUPERVISOR_ESCALATIONS, "Times a supervisor gave up on a child and escalated");
    describe_gauge!(NODE_INFO, "Always 1; labels carry the node name and version");
    describe_gauge!(NODE_START_TIME, Unit::Seconds, "Unix time the node started");
    describe_gauge!(CLUSTER_MEMBERS, "Cluster members in this node's view, by state (joining, up, unreachable, down)");
    describe_counter!(CLUSTER_MEMBER_CHANGES, "Membership state changes seen by this node, by new state");
    describe_counter!(CLUSTER_DATAGRAMS, "Gossip datagrams received, by outcome (accepted or why rejected)");
    describe_gauge!(CLUSTER_SESSIONS, "Ready ractor_cluster sessions to other members");
    describe_counter!(CLUSTER_CALLS, "Keyed calls, by service, route (local or remote) and outcome");
    describe_histogram!(CLUSTER_CALL_DURATION, Unit::Seconds, "Keyed call latency, by service and route");
    describe_counter!(CLUSTER_DATA_DIALS, "Data-plane connections dialed to peers, by outcome (ok, failed, timeout)");
    describe_counter!(
        CLUSTER_DATA_REFUSED,
        "Data-plane connections closed for garbage, by side (server, client) and reason (bad_magic, bad_tag, ...)"
    );
    describe_gauge!(
        SLA_AVAILABILITY,
        "Service availability over a rolling window (1h, 24h, 30d), as seen by this node"
    );
    describe_gauge!(SLA_BURN_RATE, "Error-budget burn rate over a rolling window against the SLA objective");
    describe_counter!(KAFKA_CONSUMED, "Records consumed, by service, topic and partition");
    describe_counter!(KAFKA_CONSUMED_BYTES, "Payload bytes consumed, by service and topic");
    describe_counter!(KAFKA_PRODUCED, "Records produced and acknowledged, by service and topic");
    describe_counter!(
        KAFKA_ERRORS,
        "Kafka client errors, by service and kind (produce, consume, commit, retry, client)"
    );
    describe_gauge!(KAFKA_LAG, "High watermark minus the committable offset, by service, topic and partition");
    describe_gauge!(KAFKA_IN_FLIGHT, "Consumed records not fully processed yet, by service, topic and partition");
    describe_gauge!(KAFKA_COMMITTABLE, "The offset stored for commit (first record not fully processed)");
    describe_counter!(KAFKA_PAUSES, "Times a partition was paused because its in-flight bound was reached");
    describe_counter!(KAFKA_REBALANCES, "Consumer-group rebalance events, by service and kind (assign, revoke, error)");
    describe_gauge!(KAFKA_ASSIGNED, "Partitions assigned to this node's consumer-group member, by service");
    describe_histogram!(KAFKA_PRODUCE_DURATION, Unit::Seconds, "Time from produce to broker acknowledgement");
    describe_gauge!(NODE_STARTUP_DURATION, Unit::Seconds, "Time from process start to all services ready");
}
