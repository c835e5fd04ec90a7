//! The one table of `LOOM_*` environment overrides. Each entry names the variable, the config
//! field it sets, and how to parse it. Empty values are ignored (an unset override).

use std::collections::HashMap;
use std::path::PathBuf;

use loom_protocol::{Scope, ServiceId};

use crate::{
    ConfigError, EnrichStream, FilesTopics, HumanDuration, NodeConfig, ObjectBackend, PrivacyStream, Secret,
    TokenConfig,
};

type Apply = fn(&mut NodeConfig, &str) -> Result<(), String>;

/// One environment override.
pub struct EnvOverride {
    pub var: &'static str,
    pub field: &'static str,
    apply: Apply,
}

macro_rules! env_table {
    ($( $var:literal => $field:literal : $apply:expr ),* $(,)?) => {
        /// Every supported environment override, in the order they are applied.
        pub static ENV_OVERRIDES: &[EnvOverride] = &[
            $( EnvOverride { var: $var, field: $field, apply: $apply } ),*
        ];
    };
}

env_table! {
    "LOOM_NODE_NAME" => "node.name": |c, v| { c.node.name = v.to_owned(); Ok(()) },
    "LOOM_BIND_ADDR" => "node.bind_addr": |c, v| {
        c.node.bind_addr = v.parse().map_err(|_| format!("`{v}` is not an IP address"))?;
        Ok(())
    },
    "LOOM_DATA_DIR" => "node.data_dir": |c, v| { c.node.data_dir = PathBuf::from(v); Ok(()) },
    "LOOM_SHUTDOWN_TIMEOUT" => "node.shutdown_timeout": |c, v| {
        c.node.shutdown_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_FAULT_INJECTION" => "node.fault_injection": |c, v| {
        c.node.fault_injection = parse_bool(v)?;
        Ok(())
    },
    "LOOM_FILES_MAX_UPLOAD" => "files.max_upload": |c, v| {
        c.files.max_upload = v.parse().map_err(|_| format!("`{v}` is not a byte count"))?;
        Ok(())
    },
    "LOOM_FILES_WORKERS" => "files.workers": |c, v| {
        c.files.workers = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_FILES_QUEUE" => "files.queue": |c, v| {
        c.files.queue = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_FILES_MAX_IMAGE_DIMENSION" => "files.max_image_dimension": |c, v| {
        c.files.max_image_dimension = v.parse().map_err(|_| format!("`{v}` is not a pixel count"))?;
        Ok(())
    },
    "LOOM_FILES_MAX_IMAGE_ALLOC" => "files.max_image_alloc": |c, v| {
        c.files.max_image_alloc = v.parse().map_err(|_| format!("`{v}` is not a byte count"))?;
        Ok(())
    },
    "LOOM_FILES_NO_PROGRESS_TIMEOUT" => "files.no_progress_timeout": |c, v| {
        c.files.no_progress_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_FILES_JOB_TIMEOUT" => "files.job_timeout": |c, v| {
        c.files.job_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_FILES_TOOL_MEMORY" => "files.tool_memory": |c, v| {
        c.files.tool_memory = v.parse().map_err(|_| format!("`{v}` is not a byte count"))?;
        Ok(())
    },
    "LOOM_FILES_QUARANTINE_AFTER" => "files.quarantine_after": |c, v| {
        c.files.quarantine_after = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_FILES_TOPICS" => "files.topics": |c, v| {
        c.files.topics = match v.split_once(':') {
            _ if v.is_empty() => None,
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(':') => {
                Some(FilesTopics { uploaded: a.to_owned(), processed: b.to_owned() })
            }
            _ => return Err(format!("`{v}` must be `uploaded_topic:processed_topic`")),
        };
        Ok(())
    },
    "LOOM_FILES_GROUP" => "files.group": |c, v| { c.files.group = v.to_owned(); Ok(()) },
    "LOOM_ENRICH_HOLIDAYS" => "enrichment.holidays": |c, v| {
        c.enrichment.holidays = Some(PathBuf::from(v));
        Ok(())
    },
    "LOOM_ENRICH_DAY_PARTS" => "enrichment.day_parts": |c, v| {
        let hours: Vec<u32> = split_list(v)
            .iter()
            .map(|h| h.parse::<u32>().map_err(|_| format!("`{h}` is not an hour")))
            .collect::<Result<_, _>>()?;
        c.enrichment.day_parts = hours.try_into().map_err(|_| "four hours: morning,afternoon,evening,night".to_owned())?;
        Ok(())
    },
    "LOOM_ENRICH_CALENDAR_MARGIN" => "enrichment.calendar_margin": |c, v| {
        c.enrichment.calendar_margin = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_ENRICH_STREAMS" => "enrichment.streams": |c, v| {
        c.enrichment.streams = split_list(v)
            .iter()
            .map(|entry| match entry.split(':').collect::<Vec<_>>()[..] {
                [from, to] => Ok(EnrichStream { from: from.into(), to: to.into() }),
                _ => Err(format!("`{entry}` must be `from_topic:to_topic`")),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    },
    "LOOM_ENRICH_GROUP" => "enrichment.group": |c, v| { c.enrichment.group = v.to_owned(); Ok(()) },
    "LOOM_ENRICH_DLQ_TOPIC" => "enrichment.dlq_topic": |c, v| { c.enrichment.dlq_topic = v.to_owned(); Ok(()) },
    "LOOM_ENRICH_WEATHER_URL" => "enrichment.weather.url": |c, v| { c.enrichment.weather.url = v.to_owned(); Ok(()) },
    "LOOM_ENRICH_WEATHER_ARCHIVE_URL" => "enrichment.weather.archive_url": |c, v| {
        c.enrichment.weather.archive_url = v.to_owned();
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_RESOLUTION" => "enrichment.weather.resolution": |c, v| {
        c.enrichment.weather.resolution = v.parse().map_err(|_| format!("`{v}` is not an H3 resolution"))?;
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_TIMEOUT" => "enrichment.weather.timeout": |c, v| {
        c.enrichment.weather.timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_RETRIES" => "enrichment.weather.retries": |c, v| {
        c.enrichment.weather.retries = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_BREAKER_FAILURES" => "enrichment.weather.breaker_failures": |c, v| {
        c.enrichment.weather.breaker_failures = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_BREAKER_COOLDOWN" => "enrichment.weather.breaker_cooldown": |c, v| {
        c.enrichment.weather.breaker_cooldown = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_ENRICH_WEATHER_BUDGET" => "enrichment.weather.budget_per_minute": |c, v| {
        c.enrichment.weather.budget_per_minute = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_CLUSTER_PORT" => "cluster.port": |c, v| { c.cluster.port = parse_port(v)?; Ok(()) },
    "LOOM_SEEDS" => "cluster.seeds": |c, v| { c.cluster.seeds = split_list(v); Ok(()) },
    "LOOM_COOKIE" => "cluster.cookie": |c, v| { c.cluster.cookie = Some(Secret::new(v)); Ok(()) },
    "LOOM_CLUSTER_PROBE_PERIOD" => "cluster.probe_period": |c, v| {
        c.cluster.probe_period = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_CLUSTER_PROBE_TIMEOUT" => "cluster.probe_timeout": |c, v| {
        c.cluster.probe_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_CLUSTER_SUSPECT_TIMEOUT" => "cluster.suspect_timeout": |c, v| {
        c.cluster.suspect_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_CLUSTER_MAX_CLOCK_SKEW" => "cluster.max_clock_skew": |c, v| {
        c.cluster.max_clock_skew = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_CLUSTER_CALL_TIMEOUT" => "cluster.call_timeout": |c, v| {
        c.cluster.call_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_CLUSTER_DATA_PORT" => "cluster.data_port": |c, v| {
        c.cluster.data_port = v.parse().map_err(|_| format!("`{v}` is not a port (0-65535)"))?;
        Ok(())
    },
    "LOOM_CLUSTER_DATA_PLANE" => "cluster.data_plane": |c, v| {
        c.cluster.data_plane = parse_bool(v)?;
        Ok(())
    },
    "LOOM_ADVERTISE_ADDR" => "cluster.advertise_addr": |c, v| {
        c.cluster.advertise_addr = Some(v.to_owned()).filter(|v| !v.is_empty());
        Ok(())
    },
    "LOOM_LOG" => "log.filter": |c, v| { c.log.filter = v.to_owned(); Ok(()) },
    "LOOM_LOG_FORMAT" => "log.format": |c, v| {
        c.log.format = match v {
            "json" => crate::LogFormat::Json,
            "pretty" => crate::LogFormat::Pretty,
            other => return Err(format!("`{other}` is not a log format, expected json or pretty")),
        };
        Ok(())
    },
    "LOOM_HTTP_BODY_LIMIT" => "http.body_limit_bytes": |c, v| {
        c.http.body_limit_bytes = v.parse().map_err(|_| format!("`{v}` is not a byte count"))?;
        Ok(())
    },
    "LOOM_HTTP_REQUEST_TIMEOUT" => "http.request_timeout": |c, v| {
        c.http.request_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_AUTH_TOKENS" => "auth.tokens": |c, v| { c.auth.tokens = parse_tokens(v)?; Ok(()) },
    "LOOM_DATABASE_URL" => "storage.database_url": |c, v| {
        c.storage.database_url = Some(v.to_owned());
        Ok(())
    },
    "LOOM_REDIS_URL" => "storage.redis_url": |c, v| { c.storage.redis_url = Some(v.to_owned()); Ok(()) },
    "LOOM_OBJECT_STORE" => "storage.objects.backend": |c, v| {
        c.storage.objects.backend = match v {
            "local" => ObjectBackend::Local,
            "s3" => ObjectBackend::S3,
            other => return Err(format!("`{other}` is not an object store, expected local or s3")),
        };
        Ok(())
    },
    "LOOM_S3_ENDPOINT" => "storage.objects.endpoint": |c, v| {
        c.storage.objects.endpoint = Some(v.to_owned());
        Ok(())
    },
    "LOOM_S3_BUCKET" => "storage.objects.bucket": |c, v| {
        c.storage.objects.bucket = Some(v.to_owned());
        Ok(())
    },
    "LOOM_S3_REGION" => "storage.objects.region": |c, v| {
        c.storage.objects.region = v.to_owned();
        Ok(())
    },
    "LOOM_S3_ACCESS_KEY" => "storage.objects.access_key": |c, v| {
        c.storage.objects.access_key = Some(Secret::new(v));
        Ok(())
    },
    "LOOM_S3_SECRET_KEY" => "storage.objects.secret_key": |c, v| {
        c.storage.objects.secret_key = Some(Secret::new(v));
        Ok(())
    },
    "LOOM_KAFKA_BROKERS" => "kafka.brokers": |c, v| { c.kafka.brokers = split_list(v); Ok(()) },
    "LOOM_KAFKA_SESSION_TIMEOUT" => "kafka.session_timeout": |c, v| {
        c.kafka.session_timeout = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_KAFKA_HEARTBEAT_INTERVAL" => "kafka.heartbeat_interval": |c, v| {
        c.kafka.heartbeat_interval = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_KAFKA_MAX_IN_FLIGHT" => "kafka.max_in_flight_per_partition": |c, v| {
        c.kafka.max_in_flight_per_partition = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_ROUTER_SOURCES" => "router.sources": |c, v| { c.router.sources = split_list(v); Ok(()) },
    "LOOM_ROUTER_GROUP" => "router.group": |c, v| { c.router.group = v.to_owned(); Ok(()) },
    "LOOM_ROUTER_DLQ_TOPIC" => "router.dlq_topic": |c, v| { c.router.dlq_topic = v.to_owned(); Ok(()) },
    "LOOM_HEALTH_INTERVAL" => "health.interval": |c, v| { c.health.interval = HumanDuration::parse(v)?; Ok(()) },
    "LOOM_HEALTH_TIMEOUT" => "health.timeout": |c, v| { c.health.timeout = HumanDuration::parse(v)?; Ok(()) },
    "LOOM_HEALTH_FAILURE_THRESHOLD" => "health.failure_threshold": |c, v| {
        c.health.failure_threshold = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_HEALTH_SUCCESS_THRESHOLD" => "health.success_threshold": |c, v| {
        c.health.success_threshold = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_HEALTH_REMEDIATION_MAX_ACTIONS" => "health.remediation.max_actions": |c, v| {
        c.health.remediation.max_actions = v.parse().map_err(|_| format!("`{v}` is not a count"))?;
        Ok(())
    },
    "LOOM_PRIVACY_AUDIT_RETENTION" => "privacy.audit_retention": |c, v| {
        c.privacy.audit_retention = HumanDuration::parse(v)?;
        Ok(())
    },
    "LOOM_PRIVACY_STREAMS" => "privacy.streams": |c, v| {
        c.privacy.streams = split_list(v)
            .iter()
            .map(|entry| match entry.split(':').collect::<Vec<_>>()[..] {
                [from, to, policy] => Ok(PrivacyStream { from: from.into(), to: to.into(), policy: policy.into() }),
                _ => Err(format!("`{entry}` must be `from_topic:to_topic:policy`")),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    },
    "LOOM_PRIVACY_GROUP" => "privacy.group": |c, v| { c.privacy.group = v.to_owned(); Ok(()) },
    "LOOM_PRIVACY_DLQ_TOPIC" => "privacy.dlq_topic": |c, v| { c.privacy.dlq_topic = v.to_owned(); Ok(()) },
    "LOOM_PRIVACY_PHONE_REGIONS" => "privacy.phone_regions": |c, v| {
        c.privacy.phone_regions = split_list(v).iter().map(|r| r.to_ascii_uppercase()).collect();
        Ok(())
    },
    "LOOM_ROUTER_SCHEMA_REGISTRY" => "router.schema_registry_url": |c, v| {
        c.router.schema_registry_url = Some(v.to_owned());
        Ok(())
    },
    "LOOM_DEVICE_MASTER_KEY" => "device_identity.master_key": |c, v| {
        c.device_identity.master_key = Some(Secret::new(v));
        Ok(())
    },
    "LOOM_DEVICE_IDENTIFIER_LIMITS" => "device_identity.identifier_limits": |c, v| {
        for entry in split_list(v) {
            let (kind, limit) = entry.split_once('=').ok_or_else(|| format!("`{entry}` must be `type=limit`"))?;
            let limit = limit.trim().parse().map_err(|_| format!("`{}` is not a count", limit.trim()))?;
            c.device_identity.identifier_limits.insert(kind.trim().to_owned(), limit);
        }
        Ok(())
    },
    "LOOM_SERVICES" => "services.*.enabled": |c, v| {
        let wanted: Vec<ServiceId> = split_list(v)
            .iter()
            .map(|name| name.parse::<ServiceId>())
            .collect::<Result<_, _>>()?;
        for id in ServiceId::ALL {
            c.services.get_mut(id).enabled = wanted.contains(&id);
        }
        Ok(())
    },
}

pub(crate) fn apply(config: &mut NodeConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    for entry in ENV_OVERRIDES {
        let Some(value) = env.get(entry.var) else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        (entry.apply)(config, value).map_err(|reason| ConfigError::Env {
            var: entry.var.to_owned(),
            field: entry.field,
            reason,
        })?;
    }
    Ok(())
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.parse().map_err(|_| format!("`{v}` is not a port (1-65535)"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("`{other}` is not a boolean, expected true or false")),
    }
}

/// `name:scope[+scope]:token,…` — the token may contain `:`; it never appears in errors.
fn parse_tokens(v: &str) -> Result<Vec<TokenConfig>, String> {
    split_list(v)
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(scopes), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("entry {} must be `name:scope[+scope]:token`", i + 1));
            };
            let scopes = scopes
                .split('+')
                .map(|s| s.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("entry {} ({name}): {e}", i + 1))?;
            Ok(TokenConfig { name: name.to_owned(), token: Secret::new(token), scopes })
        })
        .collect()
}
