//! The configuration structs: the shape of `cluster.toml`, its defaults, and the resolved form
//! handed to the node. Field docs here are the config reference (README links to this file).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use loom_protocol::{Scope, ServiceId};
use serde::{Deserialize, Serialize};

use crate::secret::redact_url;
use crate::{HumanDuration, Secret};

/// The whole node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub cluster: ClusterSection,
    pub log: LogSection,
    pub http: HttpSection,
    pub auth: AuthSection,
    pub storage: StorageSection,
    pub kafka: KafkaSection,
    pub router: RouterSection,
    pub privacy: PrivacySection,
    pub device_identity: DeviceIdentitySection,
    pub enrichment: EnrichmentSection,
    pub files: FilesSection,
    pub supervision: SupervisionSection,
    pub health: HealthSection,
    pub services: ServicesSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Node name, unique in a cluster (`LOOM_NODE_NAME`).
    pub name: String,
    /// IP address every service listener and the cluster listener bind to (`LOOM_BIND_ADDR`).
    pub bind_addr: IpAddr,
    /// Where embedded stores keep their files (`LOOM_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Bound on graceful shutdown: drain, stop actor trees, flush (`LOOM_SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: HumanDuration,
    /// Enables `POST /admin/faults` (admin scope) for chaos tests (`LOOM_FAULT_INJECTION`).
    pub fault_injection: bool,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: "loom-1".into(),
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_dir: PathBuf::from("data"),
            shutdown_timeout: HumanDuration::from_secs(10),
            fault_injection: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Cluster port (`LOOM_CLUSTER_PORT`).
    pub port: u16,
    /// `host:port` of other nodes to join through (`LOOM_SEEDS`, comma-separated). Empty: one node.
    pub seeds: Vec<String>,
    /// Shared secret authenticating cluster traffic; required when `seeds` is set (`LOOM_COOKIE`).
    /// Without it the node runs alone and opens no cluster listener.
    pub cookie: Option<Secret>,
    /// How often each node probes one peer over gossip (`LOOM_CLUSTER_PROBE_PERIOD`).
    pub probe_period: HumanDuration,
    /// How long a probe waits for its ack before asking others to probe indirectly
    /// (`LOOM_CLUSTER_PROBE_TIMEOUT`); must be shorter than `probe_period`.
    pub probe_timeout: HumanDuration,
    /// How long a suspected (unreachable) member has to refute before it is declared down
    /// (`LOOM_CLUSTER_SUSPECT_TIMEOUT`). Detection takes about `probe_period` + this.
    pub suspect_timeout: HumanDuration,
    /// Gossip datagrams older or newer than this (by their sealed timestamp) are rejected as
    /// replays; also how long seen datagrams are remembered (`LOOM_CLUSTER_MAX_CLOCK_SKEW`).
    pub max_clock_skew: HumanDuration,
    /// Bound on one cross-node call, including the reply (`LOOM_CLUSTER_CALL_TIMEOUT`).
    pub call_timeout: HumanDuration,
    /// TCP port of the data plane, where peers send keyed calls (`LOOM_CLUSTER_DATA_PORT`;
    /// 0: any free port, announced through gossip).
    pub data_port: u16,
    /// Whether this node runs the data plane (`LOOM_CLUSTER_DATA_PLANE`). Off: it opens no data
    /// port and announces none, so peers call it through the ractor_cluster sessions (slower;
    /// for networks that allow one cluster port only).
    pub data_plane: bool,
    /// The host or IP address peers reach this node at (`LOOM_ADVERTISE_ADDR`; resolved once
    /// at start). Default: `node.bind_addr`, which then must not be a wildcard (0.0.0.0, ::).
    pub advertise_addr: Option<String>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            port: 4697,
            seeds: Vec::new(),
            cookie: None,
            probe_period: HumanDuration::from_millis(500),
            probe_timeout: HumanDuration::from_millis(300),
            suspect_timeout: HumanDuration::from_millis(2500),
            max_clock_skew: HumanDuration::from_millis(30_000),
            call_timeout: HumanDuration::from_millis(5_000),
            data_port: 4698,
            data_plane: true,
            advertise_addr: None,
        }
    }
}

impl ClusterSection {
    pub fn is_multi_node(&self) -> bool {
        !self.seeds.is_empty()
    }

    /// True when the node opens the cluster listeners: a cookie is set (a node started without
    /// seeds can still be the seed of others).
    pub fn is_clustered(&self) -> bool {
        self.cookie.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (default).
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `tracing` filter directives, e.g. `info,loom_http=debug` (`LOOM_LOG`).
    pub filter: String,
    /// `json` or `pretty` (`LOOM_LOG_FORMAT`).
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { filter: "info".into(), format: LogFormat::Json }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Largest accepted request body in bytes (`LOOM_HTTP_BODY_LIMIT`); larger → 413.
    pub body_limit_bytes: usize,
    /// Per-request time limit (`LOOM_HTTP_REQUEST_TIMEOUT`); slower → 504.
    pub request_timeout: HumanDuration,
    /// Requests handled at once per service port; more → 503 `overloaded`.
    pub max_concurrent_requests: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout: HumanDuration::from_secs(30),
            max_concurrent_requests: 1024,
        }
    }
}

/// One bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token (appears in logs; the token never does).
    pub name: String,
    pub token: Secret,
    /// `read`, `write`, `admin`; admin implies write implies read.
    pub scopes: Vec<Scope>,
}

impl TokenConfig {
    /// The strongest scope the token holds.
    pub fn max_scope(&self) -> Option<Scope> {
        self.scopes.iter().copied().max()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Bearer tokens (`LOOM_AUTH_TOKENS` as `name:scope:token,…`). Empty: auth off.
    pub tokens: Vec<TokenConfig>,
}

impl AuthSection {
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite://…` or `postgres://…` (`LOOM_DATABASE_URL`). Unset: SQLite file in the data dir.
    pub database_url: Option<String>,
    /// Connection pool size for PostgreSQL (SQLite uses one writer).
    pub database_max_connections: u32,
    /// `redis://…` (`LOOM_REDIS_URL`). Unset: in-process cache.
    pub redis_url: Option<String>,
    /// Entry bound of the in-process cache.
    pub cache_max_entries: u64,
    pub objects: ObjectStoreSection,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            database_url: None,
            database_max_connections: 10,
            redis_url: None,
            cache_max_entries: 100_000,
            objects: ObjectStoreSection::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectBackend {
    /// Files under `path` (default `<data_dir>/objects`).
    Local,
    /// An S3-compatible store (MinIO, AWS S3, s3s-fs).
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSection {
    /// `local` or `s3` (`LOOM_OBJECT_STORE`).
    pub backend: ObjectBackend,
    /// Root directory for `local` (default `<data_dir>/objects`).
    pub path: Option<PathBuf>,
    /// S3 endpoint URL (`LOOM_S3_ENDPOINT`), e.g. `http://minio:9000`.
    pub endpoint: Option<String>,
    /// S3 bucket (`LOOM_S3_BUCKET`).
    pub bucket: Option<String>,
    /// S3 region (`LOOM_S3_REGION`).
    pub region: String,
    /// `LOOM_S3_ACCESS_KEY`.
    pub access_key: Option<Secret>,
    /// `LOOM_S3_SECRET_KEY`.
    pub secret_key: Option<Secret>,
}

impl Default for ObjectStoreSection {
    fn default() -> Self {
        ObjectStoreSection {
            backend: ObjectBackend::Local,
            path: None,
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Bootstrap brokers (`LOOM_KAFKA_BROKERS`, comma-separated). Empty: Kafka bridge off.
    pub brokers: Vec<String>,
    /// Consumer-group session timeout (`LOOM_KAFKA_SESSION_TIMEOUT`). A dead member's
    /// partitions move after this; some brokers (Tansu) also take about half of it to join.
    pub session_timeout: HumanDuration,
    /// Consumer-group heartbeat interval (`LOOM_KAFKA_HEARTBEAT_INTERVAL`).
    pub heartbeat_interval: HumanDuration,
    /// How often stored offsets (of fully processed records) are committed.
    pub commit_interval: HumanDuration,
    /// Records of one partition in processing at once; beyond it the partition is paused.
    pub max_in_flight_per_partition: usize,
    /// A produce not acknowledged within this fails (librdkafka retries until then).
    pub produce_timeout: HumanDuration,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: Vec::new(),
            session_timeout: HumanDuration::from_secs(10),
            heartbeat_interval: HumanDuration::from_millis(1000),
            commit_interval: HumanDuration::from_millis(1000),
            max_in_flight_per_partition: 2000,
            produce_timeout: HumanDuration::from_secs(30),
        }
    }
}

impl KafkaSection {
    pub fn enabled(&self) -> bool {
        !self.brokers.is_empty()
    }
}

/// The Event Router (8013).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    /// Topics the router consumes (`LOOM_ROUTER_SOURCES`, comma-separated). Empty: the router
    /// serves `/route` and the rules API but runs no consumer.
    pub sources: Vec<String>,
    /// The router's consumer group (`LOOM_ROUTER_GROUP`).
    pub group: String,
    /// Where failed events go, with their original bytes and error headers (`LOOM_ROUTER_DLQ_TOPIC`).
    pub dlq_topic: String,
    /// Partitions of the topics the router creates when they are missing (DLQ, routed topics).
    pub topic_partitions: i32,
    /// Base URL of the Schema Registry used by `validate` actions (`LOOM_ROUTER_SCHEMA_REGISTRY`);
    /// default: this node's own registry.
    pub schema_registry_url: Option<String>,
}

impl Default for RouterSection {
    fn default() -> Self {
        RouterSection {
            sources: Vec::new(),
            group: "loom-event-router".into(),
            dlq_topic: "loom.router.dlq".into(),
            topic_partitions: 6,
            schema_registry_url: None,
        }
    }
}

/// The Privacy Filter (8011).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySection {
    /// How long audit entries are kept (`LOOM_PRIVACY_AUDIT_RETENTION`); older ones are deleted
    /// hourly.
    pub audit_retention: HumanDuration,
    /// Stream mode: topics filtered into other topics with a named policy
    /// (`LOOM_PRIVACY_STREAMS="from:to:policy,…"`); needs `kafka.brokers`.
    pub streams: Vec<PrivacyStream>,
    /// The stream mode's consumer group (`LOOM_PRIVACY_GROUP`).
    pub group: String,
    /// Where records that cannot be filtered go, raw, with error headers (`LOOM_PRIVACY_DLQ_TOPIC`).
    pub dlq_topic: String,
    /// Custom pattern recognizers, used by every scan beside the built-in ones (TOML only).
    pub recognizers: Vec<PrivacyRecognizer>,
    /// Regions (ISO 3166 alpha-2) whose national phone formats are recognized without a country
    /// code, besides those a request or nearby words name (`LOOM_PRIVACY_PHONE_REGIONS="US,DE"`);
    /// by default Presidio's list.
    pub phone_regions: Vec<String>,
}

/// A custom recognizer of the Privacy Filter: a regular expression (linear-time engine) for an
/// entity type, with a score and optional context words that raise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyRecognizer {
    pub name: String,
    /// Entity type in Presidio's style (`EMPLOYEE_ID`).
    pub entity: String,
    pub pattern: String,
    #[serde(default = "half")]
    pub score: f32,
    #[serde(default)]
    pub context: Vec<String>,
}

fn half() -> f32 {
    0.5
}

/// One stream of the Privacy Filter's stream mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyStream {
    pub from: String,
    pub to: String,
    pub policy: String,
}

impl Default for PrivacySection {
    fn default() -> Self {
        PrivacySection {
            audit_retention: HumanDuration::from_millis(30 * 86_400_000),
            streams: Vec::new(),
            group: "loom-privacy-filter".into(),
            dlq_topic: "loom.privacy.dlq".into(),
            recognizers: Vec::new(),
            phone_regions: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"].map(String::from).to_vec(),
        }
    }
}

/// The Device Identity service (8012).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceIdentitySection {
    /// 32-byte master key, 64 hex characters or standard base64 (`LOOM_DEVICE_MASTER_KEY`). It
    /// encrypts the tenant id keys at rest (AES-256-GCM) and keys the subject hashes used by GDPR
    /// erasure; every node sharing a database needs the same one, and losing it loses every key.
    /// Unset: on SQLite a node-local key file `<data_dir>/device-identity.key` is created (mode
    /// 0600) and used; on a shared database (PostgreSQL) the service refuses every operation that
    /// needs a key (503 `master_key_required`), because node-local keys could not read each
    /// other's rows.
    pub master_key: Option<Secret>,
    /// The most devices one value of an identifier type may link, per type, over the built-in
    /// defaults (`ip` 32, `wifi` 32, `account` 16, `household` 16); a new type may be added
    /// (`LOOM_DEVICE_IDENTIFIER_LIMITS="ip=8,wifi=64"`).
    pub identifier_limits: std::collections::BTreeMap<String, u32>,
}

/// The Context Enrichment service (8023).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentSection {
    /// The public-holiday table `scripts/gen-holidays.py` writes (`LOOM_ENRICH_HOLIDAYS`).
    /// Unset: `<data_dir>/context/holidays.json`, else `$HOME/.cache/loom/context/holidays.json`
    /// (where `scripts/infra.sh` generates it); without one, `holiday` is null with the reason.
    pub holidays: Option<PathBuf>,
    /// Local hours where the day parts begin (`LOOM_ENRICH_DAY_PARTS="6,12,18,22"`): morning,
    /// afternoon, evening, night; before the first it is night too.
    pub day_parts: [u32; 4],
    /// How far before and after an event's time calendar events still count as overlapping it
    /// (`LOOM_ENRICH_CALENDAR_MARGIN`, default 0s: only events in progress at that instant).
    pub calendar_margin: HumanDuration,
    /// Stream mode: topics whose events are enriched into other topics
    /// (`LOOM_ENRICH_STREAMS="in:out,…"`); needs `kafka.brokers`.
    pub streams: Vec<EnrichStream>,
    /// The stream mode's consumer group (`LOOM_ENRICH_GROUP`).
    pub group: String,
    /// Where records that are not JSON objects go, raw, with error headers
    /// (`LOOM_ENRICH_DLQ_TOPIC`).
    pub dlq_topic: String,
    pub weather: WeatherSection,
}

/// One enrichment stream: every JSON object on `from` is written to `to` with its `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichStream {
    pub from: String,
    pub to: String,
}

impl Default for EnrichmentSection {
    fn default() -> Self {
        EnrichmentSection {
            holidays: None,
            day_parts: [6, 12, 18, 22],
            calendar_margin: HumanDuration::from_secs(0),
            streams: Vec::new(),
            group: "loom-context-enrichment".into(),
            dlq_topic: "loom.enrichment.dlq".into(),
            weather: WeatherSection::default(),
        }
    }
}

/// The File Processing service (8021): upload and job limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSection {
    /// Largest upload in bytes (`LOOM_FILES_MAX_UPLOAD`); bigger answers 413 while streaming.
    pub max_upload: u64,
    /// Jobs running at once on this node (`LOOM_FILES_WORKERS`).
    pub workers: usize,
    /// Jobs queued or running on this node before `POST …/jobs` answers 429 (`LOOM_FILES_QUEUE`).
    pub queue: usize,
    /// Widest or tallest image decoded, in pixels (`LOOM_FILES_MAX_IMAGE_DIMENSION`): the
    /// decompression-bomb guard, checked from the header before any pixel is decoded.
    pub max_image_dimension: u32,
    /// Most memory one image decode may allocate, in bytes (`LOOM_FILES_MAX_IMAGE_ALLOC`).
    pub max_image_alloc: u64,
    /// A job running longer fails with `timeout` (`LOOM_FILES_JOB_TIMEOUT`).
    pub job_timeout: HumanDuration,
    /// An ffmpeg run that reports no progress this long is killed and its job fails `timeout`
    /// (`LOOM_FILES_NO_PROGRESS_TIMEOUT`; ffmpeg reports every 2 s).
    pub no_progress_timeout: HumanDuration,
    /// Address-space limit of each ffmpeg/poppler run, in bytes (`LOOM_FILES_TOOL_MEMORY`).
    pub tool_memory: u64,
    /// Parser crashes or timeouts after which a file is quarantined (`LOOM_FILES_QUARANTINE_AFTER`).
    pub quarantine_after: u32,
    /// The Kafka bridge (`LOOM_FILES_TOPICS="files.uploaded:files.processed"`): requests read
    /// from the first topic, results written to the second. Unset: off.
    pub topics: Option<FilesTopics>,
    /// The bridge's consumer group (`LOOM_FILES_GROUP`).
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesTopics {
    pub uploaded: String,
    pub processed: String,
}

impl Default for FilesSection {
    fn default() -> Self {
        FilesSection {
            max_upload: 1 << 30,
            workers: 2,
            queue: 64,
            max_image_dimension: 16_384,
            max_image_alloc: 512 << 20,
            job_timeout: HumanDuration::from_secs(120),
            no_progress_timeout: HumanDuration::from_secs(30),
            tool_memory: 4 << 30,
            quarantine_after: 3,
            topics: None,
            group: "loom-file-processing".into(),
        }
    }
}

/// The weather provider behind `context.weather`: Open-Meteo's API (or a self-hosted one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeatherSection {
    /// Forecast API base (`LOOM_ENRICH_WEATHER_URL`), `/v1/forecast` is appended; empty turns
    /// weather off (`"unavailable": "not_configured"`).
    pub url: String,
    /// Historical API base (`LOOM_ENRICH_WEATHER_ARCHIVE_URL`), `/v1/archive` is appended; used
    /// for hours older than 60 days.
    pub archive_url: String,
    /// H3 resolution of the cache cells (`LOOM_ENRICH_WEATHER_RESOLUTION`, 0-15; 7 ≈ 5 km²).
    pub resolution: u8,
    /// Bound on one provider call (`LOOM_ENRICH_WEATHER_TIMEOUT`).
    pub timeout: HumanDuration,
    /// Retries of a failed call, with exponential backoff and jitter (`LOOM_ENRICH_WEATHER_RETRIES`).
    pub retries: u32,
    /// Consecutive failed calls that open the circuit (`LOOM_ENRICH_WEATHER_BREAKER_FAILURES`).
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe (`LOOM_ENRICH_WEATHER_BREAKER_COOLDOWN`).
    pub breaker_cooldown: HumanDuration,
    /// Provider calls per minute at most (`LOOM_ENRICH_WEATHER_BUDGET`; Open-Meteo's free tier: 600).
    pub budget_per_minute: u32,
}

impl Default for WeatherSection {
    fn default() -> Self {
        WeatherSection {
            url: "https://api.open-meteo.com".into(),
            archive_url: "https://archive-api.open-meteo.com".into(),
            resolution: 7,
            timeout: HumanDuration::from_secs(3),
            retries: 2,
            breaker_failures: 5,
            breaker_cooldown: HumanDuration::from_secs(30),
            budget_per_minute: 600,
        }
    }
}

/// The Health Check Aggregator (8030): its check definitions (like Kubernetes probes and Consul
/// checks) and what it does about failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Time between two runs of one check (`LOOM_HEALTH_INTERVAL`): dependency probes and the
    /// liveness ping of every service's core actor.
    pub interval: HumanDuration,
    /// How long one check may take before it counts as failed (`LOOM_HEALTH_TIMEOUT`); at most
    /// `interval`.
    pub timeout: HumanDuration,
    /// Consecutive failures that turn a passing check `fail` (`LOOM_HEALTH_FAILURE_THRESHOLD`).
    pub failure_threshold: u32,
    /// Consecutive successes that turn a failing check `pass` (`LOOM_HEALTH_SUCCESS_THRESHOLD`).
    pub success_threshold: u32,
    pub remediation: RemediationSection,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            interval: HumanDuration::from_secs(1),
            timeout: HumanDuration::from_secs(1),
            failure_threshold: 2,
            success_threshold: 2,
            remediation: RemediationSection::default(),
        }
    }
}

/// Automated remediation: rules, their shared rate limit and the flapping detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationSection {
    /// Actions all rules together may take within `window` (`LOOM_HEALTH_REMEDIATION_MAX_ACTIONS`);
    /// 0 turns automated remediation off (operators may still trigger actions).
    pub max_actions: u32,
    pub window: HumanDuration,
    /// A component whose status changes more than `flap_threshold` times within `flap_window`
    /// is flapping.
    pub flap_threshold: u32,
    pub flap_window: HumanDuration,
    /// How long an opened circuit holds a flapping component `fail`, and a `not_ready` action
    /// holds a node's services not ready at least.
    pub cool_down: HumanDuration,
    /// The rules, first match per (component, trigger) acts (TOML only). None by default.
    pub rules: Vec<RemediationRule>,
}

impl Default for RemediationSection {
    fn default() -> Self {
        RemediationSection {
            max_actions: 10,
            window: HumanDuration::from_secs(600),
            flap_threshold: 4,
            flap_window: HumanDuration::from_secs(60),
            cool_down: HumanDuration::from_secs(60),
            rules: Vec::new(),
        }
    }
}

/// One remediation rule: on which component and trigger, which action, how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationRule {
    /// Names the rule in the audit trail (1-64 of `a-z`, `0-9`, `-`, `_`).
    pub name: String,
    /// A service name (`dedup`), a dependency (`dep:kafka`), or a prefix ending in `*`.
    pub component: String,
    pub on: RemediationTrigger,
    pub action: RemediationAction,
    /// Times this rule may act within `window`.
    #[serde(default = "one")]
    pub max_actions: u32,
    #[serde(default = "ten_minutes")]
    pub window: HumanDuration,
}

fn one() -> u32 {
    1
}

fn ten_minutes() -> HumanDuration {
    HumanDuration::from_secs(600)
}

/// What starts a remediation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationTrigger {
    /// The component (on this node, for `restart` and `not_ready`) turns `fail`.
    Fail,
    /// The component's status flips more than `flap_threshold` times within `flap_window`.
    Flapping,
}

/// What a remediation rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationAction {
    /// Restart the service's actor tree through the root supervisor.
    Restart,
    /// Hold the component `fail` (circuit open) for `cool_down` instead of flapping.
    OpenCircuit,
    /// Mark every service of the node not ready until the component passes again.
    NotReady,
}

impl RemediationAction {
    pub fn name(self) -> &'static str {
        match self {
            RemediationAction::Restart => "restart",
            RemediationAction::OpenCircuit => "open_circuit",
            RemediationAction::NotReady => "not_ready",
        }
    }
}

/// Restart policy applied to every supervised child unless a service overrides it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionSection {
    /// Restarts allowed within `window` before the supervisor escalates to its parent.
    pub max_restarts: u32,
    pub window: HumanDuration,
    /// First restart delay; doubles per consecutive restart up to `backoff_max`.
    pub backoff_initial: HumanDuration,
    pub backoff_max: HumanDuration,
    /// Messages a service actor may have queued before senders are refused (503 `overloaded`).
    pub mailbox_capacity: usize,
}

impl Default for SupervisionSection {
    fn default() -> Self {
        SupervisionSection {
            max_restarts: 5,
            window: HumanDuration::from_secs(60),
            backoff_initial: HumanDuration::from_millis(50),
            backoff_max: HumanDuration::from_secs(5),
            mailbox_capacity: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub enabled: bool,
    /// Listening port; defaults to the service's documented port.
    pub port: Option<u16>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig { enabled: true, port: None }
    }
}

/// One table per service, keyed by the service's kebab-case name. `LOOM_SERVICES` (comma list)
/// enables exactly the named services.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct ServicesSection {
    pub schema_registry: ServiceConfig,
    pub privacy_filter: ServiceConfig,
    pub device_identity: ServiceConfig,
    pub event_router: ServiceConfig,
    pub timeseries_aggregator: ServiceConfig,
    pub file_processing: ServiceConfig,
    pub dedup: ServiceConfig,
    pub context_enrichment: ServiceConfig,
    pub health_aggregator: ServiceConfig,
    pub data_quality: ServiceConfig,
}

impl ServicesSection {
    pub fn get(&self, id: ServiceId) -> &ServiceConfig {
        match id {
            ServiceId::SchemaRegistry => &self.schema_registry,
            ServiceId::PrivacyFilter => &self.privacy_filter,
            ServiceId::DeviceIdentity => &self.device_identity,
            ServiceId::EventRouter => &self.event_router,
            ServiceId::TimeseriesAggregator => &self.timeseries_aggregator,
            ServiceId::FileProcessing => &self.file_processing,
            ServiceId::Dedup => &self.dedup,
            ServiceId::ContextEnrichment => &self.context_enrichment,
            ServiceId::HealthAggregator => &self.health_aggregator,
            ServiceId::DataQuality => &self.data_quality,
        }
    }

    pub fn get_mut(&mut self, id: ServiceId) -> &mut ServiceConfig {
        match id {
            ServiceId::SchemaRegistry => &mut self.schema_registry,
            ServiceId::PrivacyFilter => &mut self.privacy_filter,
            ServiceId::DeviceIdentity => &mut self.device_identity,
            ServiceId::EventRouter => &mut self.event_router,
            ServiceId::TimeseriesAggregator => &mut self.timeseries_aggregator,
            ServiceId::FileProcessing => &mut self.file_processing,
            ServiceId::Dedup => &mut self.dedup,
            ServiceId::ContextEnrichment => &mut self.context_enrichment,
            ServiceId::HealthAggregator => &mut self.health_aggregator,
            ServiceId::DataQuality => &mut self.data_quality,
        }
    }

    /// Enabled services in start order with their resolved ports.
    pub fn enabled(&self) -> Vec<(ServiceId, u16)> {
        ServiceId::ALL
            .into_iter()
            .filter(|id| self.get(*id).enabled)
            .map(|id| (id, self.get(id).port.unwrap_or(id.default_port())))
            .collect()
    }
}

impl NodeConfig {
    /// Fills derived defaults (ports, data-dir paths) so the printed config is the one in effect.
    pub(crate) fn resolve(&mut self) {
        for id in ServiceId::ALL {
            let service = self.services.get_mut(id);
            service.port.get_or_insert(id.default_port());
        }
        let data_dir = self.node.data_dir.clone();
        self.storage
            .database_url
            .get_or_insert_with(|| format!("sqlite://{}?mode=rwc", data_dir.join("loom.db").display()));
        if self.storage.objects.backend == ObjectBackend::Local {
            self.storage.objects.path.get_or_insert_with(|| data_dir.join("objects"));
        }
    }

    /// The database URL in effect (always set after loading).
    pub fn database_url(&self) -> &str {
        self.storage.database_url.as_deref().unwrap_or("sqlite::memory:")
    }

    /// A copy fit for printing and logging: URL passwords redacted (secrets redact themselves).
    pub fn redacted(&self) -> NodeConfig {
        let mut copy = self.clone();
        copy.storage.database_url = copy.storage.database_url.as_deref().map(redact_url);
        copy.storage.redis_url = copy.storage.redis_url.as_deref().map(redact_url);
        copy
    }
}
