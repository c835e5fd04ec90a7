//! Validation of a loaded configuration. Each rule names the field and why it is wrong.

use std::collections::{HashMap, HashSet};

use crate::{ConfigError, NodeConfig, ObjectBackend};

/// Shortest accepted bearer token.
pub const MIN_SECRET_LEN: usize = 16;
/// Shortest accepted cluster cookie.
pub const MIN_COOKIE_LEN: usize = 8;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), reason: reason.into() }
}

pub(crate) fn validate(c: &NodeConfig) -> Result<(), ConfigError> {
    validate_node(c)?;
    validate_cluster(c)?;
    validate_http(c)?;
    validate_auth(c)?;
    validate_storage(c)?;
    validate_kafka(c)?;
    validate_supervision(c)?;
    validate_health(c)?;
    validate_device_identity(c)?;
    validate_enrichment(c)?;
    validate_files(c)?;
    validate_services(c)
}

fn validate_node(c: &NodeConfig) -> Result<(), ConfigError> {
    let name = &c.node.name;
    let ok_char = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(invalid(
            "node.name",
            format!("`{name}` must be 1-64 characters of letters, digits, `-`, `_` or `.`"),
        ));
    }
    if c.node.shutdown_timeout.get().is_zero() {
        return Err(invalid("node.shutdown_timeout", "must be greater than zero"));
    }
    Ok(())
}

fn validate_cluster(c: &NodeConfig) -> Result<(), ConfigError> {
    if c.cluster.port == 0 {
        return Err(invalid("cluster.port", "must be a port between 1 and 65535"));
    }
    for (i, seed) in c.cluster.seeds.iter().enumerate() {
        check_host_port(seed).map_err(|why| invalid(format!("cluster.seeds[{i}]"), why))?;
    }
    let cl = &c.cluster;
    let positive = [
        ("cluster.probe_period", cl.probe_period),
        ("cluster.probe_timeout", cl.probe_timeout),
        ("cluster.suspect_timeout", cl.suspect_timeout),
        ("cluster.max_clock_skew", cl.max_clock_skew),
        ("cluster.call_timeout", cl.call_timeout),
    ];
    for (field, value) in positive {
        if value.get().is_zero() {
            return Err(invalid(field, "must be longer than zero"));
        }
    }
    if cl.probe_timeout.get() >= cl.probe_period.get() {
        return Err(invalid("cluster.probe_timeout", "must be shorter than cluster.probe_period"));
    }
    if cl.data_port != 0 && cl.data_port == cl.port {
        return Err(invalid("cluster.data_port", "must differ from cluster.port (or be 0 for any free port)"));
    }
    match &cl.advertise_addr {
        Some(a)
            if a.is_empty()
                || a.len() > 253
                || (a.contains([':', '/', ' ']) && a.parse::<std::net::IpAddr>().is_err()) =>
        {
            return Err(invalid("cluster.advertise_addr", "must be a host name or an IP address (no port)"));
        }
        None if cl.cookie.is_some() && c.node.bind_addr.is_unspecified() => {
            return Err(invalid(
                "cluster.advertise_addr",
                format!(
                    "required when node.bind_addr is {} and a cookie is set: peers need an address that reaches this node (set LOOM_ADVERTISE_ADDR to its host name or IP)",
                    c.node.bind_addr
                ),
            ));
        }
        _ => {}
    }
    match &c.cluster.cookie {
        None if c.cluster.is_multi_node() => Err(invalid(
            "cluster.cookie",
            "required when cluster.seeds is set: a multi-node cluster must authenticate its members (set LOOM_COOKIE)",
        )),
        Some(cookie) if cookie.expose().len() < MIN_COOKIE_LEN => {
            Err(invalid("cluster.cookie", format!("must be at least {MIN_COOKIE_LEN} characters")))
        }
        _ => Ok(()),
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` must be host:port"))?;
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{s}` has an invalid port `{port}`")),
    }
}

fn validate_http(c: &NodeConfig) -> Result<(), ConfigError> {
    const MAX_BODY: usize = 1 << 30;
    if c.http.body_limit_bytes == 0 || c.http.body_limit_bytes > MAX_BODY {
        return Err(invalid("http.body_limit_bytes", format!("must be between 1 and {MAX_BODY}")));
    }
    if c.http.request_timeout.get().is_zero() {
        return Err(invalid("http.request_timeout", "must be greater than zero"));
    }
    if c.http.max_concurrent_requests == 0 {
        return Err(invalid("http.max_concurrent_requests", "must be at least 1"));
    }
    Ok(())
}

fn validate_auth(c: &NodeConfig) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut secrets = HashSet::new();
    for (i, t) in c.auth.tokens.iter().enumerate() {
        let field = format!("auth.tokens[{i}]");
        if t.name.is_empty() {
            return Err(invalid(format!("{field}.name"), "must not be empty"));
        }
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("{field}.name"), format!("`{}` is used twice", t.name)));
        }
        if t.token.expose().len() < MIN_SECRET_LEN {
            return Err(invalid(format!("{field}.token"), format!("must be at least {MIN_SECRET_LEN} characters")));
        }
        if !secrets.insert(t.token.expose()) {
            return Err(invalid(format!("{field}.token"), "the same token is configured twice"));
        }
        if t.scopes.is_empty() {
            return Err(invalid(format!("{field}.scopes"), "must list at least one of read, write, admin"));
        }
    }
    Ok(())
}

fn validate_storage(c: &NodeConfig) -> Result<(), ConfigError> {
    let db = c.database_url();
    if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
        return Err(invalid("storage.database_url", "must start with sqlite:, postgres:// or postgresql://"));
    }
    if c.storage.database_max_connections == 0 {
        return Err(invalid("storage.database_max_connections", "must be at least 1"));
    }
    if let Some(url) = &c.storage.redis_url
        && !(url.starts_with("redis://") || url.starts_with("rediss://"))
    {
        return Err(invalid("storage.redis_url", "must start with redis:// or rediss://"));
    }
    if c.storage.cache_max_entries == 0 {
        return Err(invalid("storage.cache_max_entries", "must be at least 1"));
    }
    let o = &c.storage.objects;
    if o.backend == ObjectBackend::S3 {
        if o.bucket.as_deref().unwrap_or("").is_empty() {
            return Err(invalid("storage.objects.bucket", "required when backend = \"s3\" (LOOM_S3_BUCKET)"));
        }
        if let Some(endpoint) = &o.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid("storage.objects.endpoint", "must start with http:// or https://"));
        }
        if o.access_key.is_some() != o.secret_key.is_some() {
            return Err(invalid("storage.objects.secret_key", "access_key and secret_key must be set together"));
        }
    }
    Ok(())
}

fn validate_kafka(c: &NodeConfig) -> Result<(), ConfigError> {
    for (i, broker) in c.kafka.brokers.iter().enumerate() {
        check_host_port(broker).map_err(|why| invalid(format!("kafka.brokers[{i}]"), why))?;
    }
    let k = &c.kafka;
    if k.heartbeat_interval >= k.session_timeout {
        return Err(invalid("kafka.heartbeat_interval", "must be shorter than kafka.session_timeout"));
    }
    if k.max_in_flight_per_partition == 0 {
        return Err(invalid("kafka.max_in_flight_per_partition", "must be at least 1"));
    }
    let r = &c.router;
    for (i, topic) in r.sources.iter().chain(std::iter::once(&r.dlq_topic)).enumerate() {
        if !topic_ok(topic) {
            let field = if i < r.sources.len() { format!("router.sources[{i}]") } else { "router.dlq_topic".into() };
            return Err(invalid(field, TOPIC_RULE));
        }
    }
    let p = &c.privacy;
    if !topic_ok(&p.dlq_topic) {
        return Err(invalid("privacy.dlq_topic", TOPIC_RULE));
    }
    for (i, r) in p.phone_regions.iter().enumerate() {
        if r.len() != 2 || !r.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!("privacy.phone_regions[{i}]"), "an ISO 3166 alpha-2 region code, like \"DE\""));
        }
    }
    for (i, s) in p.streams.iter().enumerate() {
        for (name, topic) in [("from", &s.from), ("to", &s.to)] {
            if !topic_ok(topic) {
                return Err(invalid(format!("privacy.streams[{i}].{name}"), TOPIC_RULE));
            }
        }
        if s.from == s.to || s.to == p.dlq_topic {
            return Err(invalid(format!("privacy.streams[{i}].to"), "must differ from its source and the DLQ"));
        }
        if s.policy.is_empty() || s.policy.len() > 128 {
            return Err(invalid(format!("privacy.streams[{i}].policy"), "a policy name is 1-128 characters"));
        }
        if p.streams[..i].iter().any(|o| o.from == s.from) {
            return Err(invalid(format!("privacy.streams[{i}].from"), "a topic is filtered by one stream only"));
        }
    }
    validate_recognizers(&p.recognizers)?;
    if r.sources.contains(&r.dlq_topic) {
        return Err(invalid("router.dlq_topic", "must not be one of router.sources"));
    }
    if !(1..=1000).contains(&r.topic_partitions) {
        return Err(invalid("router.topic_partitions", "must be 1..=1000"));
    }
    if let Some(url) = &r.schema_registry_url
        && !url.starts_with("http://")
        && !url.starts_with("https://")
    {
        return Err(invalid("router.schema_registry_url", "must start with http:// or https://"));
    }
    Ok(())
}

/// Custom recognizers: at most 64, named, an UPPER_SNAKE entity, a pattern that compiles within
/// bounds (the regex engine is linear-time), a score in 0..=1.
fn validate_recognizers(list: &[crate::PrivacyRecognizer]) -> Result<(), ConfigError> {
    if list.len() > 64 {
        return Err(invalid("privacy.recognizers", "at most 64 recognizers"));
    }
    for (i, r) in list.iter().enumerate() {
        let at = |f: &str| format!("privacy.recognizers[{i}].{f}");
        if r.name.is_empty() || r.name.len() > 64 {
            return Err(invalid(at("name"), "1-64 characters"));
        }
        let entity_ok = r.entity.len() <= 64
            && r.entity.starts_with(|c: char| c.is_ascii_uppercase())
            && r.entity.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !entity_ok {
            return Err(invalid(at("entity"), "an entity type is UPPER_SNAKE_CASE, 1-64 characters"));
        }
        if r.pattern.is_empty() || r.pattern.len() > 1024 {
            return Err(invalid(at("pattern"), "1-1024 bytes"));
        }
        if let Err(e) = regex::RegexBuilder::new(&r.pattern).size_limit(1 << 20).build() {
            let first = e.to_string().lines().last().unwrap_or("invalid").trim().to_owned();
            return Err(invalid(at("pattern"), format!("does not compile: {first}")));
        }
        if !(0.0..=1.0).contains(&r.score) {
            return Err(invalid(at("score"), "must be between 0 and 1"));
        }
    }
    Ok(())
}

/// Most remediation rules.
pub const MAX_REMEDIATION_RULES: usize = 32;

/// Check timing and thresholds are positive and bounded; remediation rules have unique names,
/// a component, and an action that fits their trigger and component.
fn validate_health(c: &NodeConfig) -> Result<(), ConfigError> {
    use crate::{RemediationAction, RemediationTrigger};
    let h = &c.health;
    let r = &h.remediation;
    let positive = [
        ("health.interval", h.interval),
        ("health.timeout", h.timeout),
        ("health.remediation.window", r.window),
        ("health.remediation.flap_window", r.flap_window),
        ("health.remediation.cool_down", r.cool_down),
    ];
    for (field, value) in positive {
        if value.get().is_zero() {
            return Err(invalid(field, "must be longer than zero"));
        }
    }
    if h.timeout > h.interval {
        return Err(invalid("health.timeout", "must not exceed health.interval"));
    }
    for (field, value) in
        [("health.failure_threshold", h.failure_threshold), ("health.success_threshold", h.success_threshold)]
    {
        if !(1..=100).contains(&value) {
            return Err(invalid(field, "must be between 1 and 100"));
        }
    }
    if r.max_actions > 1000 {
        return Err(invalid("health.remediation.max_actions", "must be at most 1000"));
    }
    if !(2..=1000).contains(&r.flap_threshold) {
        return Err(invalid("health.remediation.flap_threshold", "must be between 2 and 1000"));
    }
    if r.rules.len() > MAX_REMEDIATION_RULES {
        return Err(invalid("health.remediation.rules", format!("at most {MAX_REMEDIATION_RULES} rules")));
    }
    let mut names = HashSet::new();
    for (i, rule) in r.rules.iter().enumerate() {
        let at = |f: &str| format!("health.remediation.rules[{i}].{f}");
        let ok_char = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '_');
        if rule.name.is_empty() || rule.name.len() > 64 || !rule.name.chars().all(ok_char) {
            return Err(invalid(at("name"), "must be 1-64 characters of a-z, 0-9, `-` or `_`"));
        }
        if !names.insert(rule.name.as_str()) {
            return Err(invalid(at("name"), format!("`{}` names another rule too", rule.name)));
        }
        let component = rule.component.as_str();
        if component.is_empty() || component.len() > 64 || component.trim_end_matches('*').contains('*') {
            return Err(invalid(at("component"), "must be 1-64 characters, `*` only at the end"));
        }
        match (rule.action, rule.on) {
            (RemediationAction::OpenCircuit, RemediationTrigger::Fail) => {
                return Err(invalid(at("action"), "open_circuit acts on flapping components (on = \"flapping\")"));
            }
            (RemediationAction::Restart, _) if component.starts_with("dep:") || component == "node" => {
                return Err(invalid(at("action"), "restart acts on services, not dependencies or members"));
            }
            _ => {}
        }
        if !(1..=100).contains(&rule.max_actions) {
            return Err(invalid(at("max_actions"), "must be between 1 and 100"));
        }
        if rule.window.get().is_zero() {
            return Err(invalid(at("window"), "must be longer than zero"));
        }
    }
    Ok(())
}

fn validate_supervision(c: &NodeConfig) -> Result<(), ConfigError> {
    let s = &c.supervision;
    if s.window.get().is_zero() {
        return Err(invalid("supervision.window", "must be greater than zero"));
    }
    if s.backoff_initial > s.backoff_max {
        return Err(invalid("supervision.backoff_initial", "must not exceed supervision.backoff_max"));
    }
    if s.mailbox_capacity == 0 {
        return Err(invalid("supervision.mailbox_capacity", "must be at least 1"));
    }
    Ok(())
}

/// The master key must be 32 bytes written as 64 hex characters or as standard base64 (44
/// characters ending in one `=`); decoding happens in the service. Identifier types are short
/// lowercase names and limits at least 1.
fn validate_files(c: &NodeConfig) -> Result<(), ConfigError> {
    let f = &c.files;
    if f.max_upload == 0 {
        return Err(invalid("files.max_upload", "must be at least 1 byte"));
    }
    if !(1..=64).contains(&f.workers) {
        return Err(invalid("files.workers", "1-64"));
    }
    if f.queue < f.workers || f.queue > 100_000 {
        return Err(invalid("files.queue", "at least files.workers and at most 100000"));
    }
    if !(64..=65_535).contains(&f.max_image_dimension) {
        return Err(invalid("files.max_image_dimension", "64-65535 pixels"));
    }
    if f.max_image_alloc < 1 << 20 {
        return Err(invalid("files.max_image_alloc", "at least 1 MiB"));
    }
    if f.no_progress_timeout.get() < std::time::Duration::from_secs(1) {
        return Err(invalid("files.no_progress_timeout", "must be at least 1s (ffmpeg reports progress every 2 s)"));
    }
    if f.job_timeout.get().is_zero() {
        return Err(invalid("files.job_timeout", "must be positive"));
    }
    if f.tool_memory < 64 << 20 {
        return Err(invalid("files.tool_memory", "at least 64 MiB"));
    }
    if f.quarantine_after == 0 {
        return Err(invalid("files.quarantine_after", "at least 1"));
    }
    Ok(())
}

fn topic_ok(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
}

const TOPIC_RULE: &str = "a topic name is 1-249 characters of [A-Za-z0-9._-]";

fn validate_enrichment(c: &NodeConfig) -> Result<(), ConfigError> {
    let [m, a, e, n] = c.enrichment.day_parts;
    if !(m < a && a < e && e < n && n <= 24) {
        return Err(invalid(
            "enrichment.day_parts",
            "four increasing local hours (morning < afternoon < evening < night ≤ 24)",
        ));
    }
    let en = &c.enrichment;
    for (i, s) in en.streams.iter().enumerate() {
        for (name, topic) in [("from", &s.from), ("to", &s.to)] {
            if !topic_ok(topic) {
                return Err(invalid(format!("enrichment.streams[{i}].{name}"), TOPIC_RULE));
            }
        }
        if s.from == s.to || s.to == en.dlq_topic || en.streams.iter().any(|o| o.to == s.from) {
            return Err(invalid(
                format!("enrichment.streams[{i}].to"),
                "must differ from its source, the DLQ and every stream's source",
            ));
        }
        if en.streams[..i].iter().any(|o| o.from == s.from) {
            return Err(invalid(format!("enrichment.streams[{i}].from"), "a topic is enriched by one stream only"));
        }
    }
    if !en.streams.is_empty() && !topic_ok(&en.dlq_topic) {
        return Err(invalid("enrichment.dlq_topic", TOPIC_RULE));
    }
    let w = &c.enrichment.weather;
    for (field, url) in [("enrichment.weather.url", &w.url), ("enrichment.weather.archive_url", &w.archive_url)] {
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(field, format!("`{url}` is not an http(s) URL")));
        }
    }
    if w.resolution > 15 {
        return Err(invalid("enrichment.weather.resolution", "an H3 resolution, 0-15"));
    }
    if w.timeout.get().is_zero() || w.breaker_failures == 0 || w.budget_per_minute == 0 {
        return Err(invalid(
            "enrichment.weather",
            "timeout, breaker_failures and budget_per_minute must be greater than zero",
        ));
    }
    Ok(())
}

fn validate_device_identity(c: &NodeConfig) -> Result<(), ConfigError> {
    let d = &c.device_identity;
    if let Some(key) = &d.master_key {
        let k = key.expose().trim();
        let hex = k.len() == 64 && k.chars().all(|ch| ch.is_ascii_hexdigit());
        let b64 = k.len() == 44
            && k.ends_with('=')
            && !k[..43].contains('=')
            && k[..43].chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '+' || ch == '/');
        if !hex && !b64 {
            return Err(invalid(
                "device_identity.master_key",
                "must be 32 bytes as 64 hex characters or 44 base64 characters",
            ));
        }
    }
    for (kind, limit) in &d.identifier_limits {
        if kind.is_empty() || kind.len() > 32 || !kind.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_') {
            return Err(invalid(
                format!("device_identity.identifier_limits.{kind}"),
                "an identifier type is 1-32 characters of [a-z_]",
            ));
        }
        if *limit == 0 {
            return Err(invalid(format!("device_identity.identifier_limits.{kind}"), "must be at least 1"));
        }
    }
    Ok(())
}

fn validate_services(c: &NodeConfig) -> Result<(), ConfigError> {
    let enabled = c.services.enabled();
    if enabled.is_empty() {
        return Err(invalid("services", "at least one service must be enabled"));
    }
    let mut seen: HashMap<u16, &str> = HashMap::new();
    for (id, port) in enabled {
        let field = format!("services.{}.port", id.name());
        if port == 0 {
            return Err(invalid(field, "must be a port between 1 and 65535"));
        }
        if port == c.cluster.port {
            return Err(invalid(field, format!("{port} is also the cluster port")));
        }
        if let Some(other) = seen.insert(port, id.name()) {
            return Err(invalid(field, format!("{port} is also the port of {other}")));
        }
    }
    Ok(())
}
