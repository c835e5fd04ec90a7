//! Table-driven tests of loading: file parsing, environment overrides, validation messages.

use std::collections::HashMap;
use std::io::Write;

use loom_protocol::{Scope, ServiceId};

use crate::{ConfigError, NodeConfig};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_text(text: &str, pairs: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    NodeConfig::load(Some(file.path()), &env(pairs))
}

#[test]
fn defaults_are_one_embedded_node_with_ten_services() {
    let c = NodeConfig::load(None, &env(&[])).unwrap();
    assert_eq!(c.node.bind_addr.to_string(), "127.0.0.1");
    assert_eq!(c.services.enabled().len(), 10);
    assert!(c.database_url().starts_with("sqlite://"), "{}", c.database_url());
    assert!(c.storage.redis_url.is_none());
    assert!(!c.kafka.enabled());
    assert!(!c.auth.enabled());
    let ports: Vec<u16> = c.services.enabled().iter().map(|(_, p)| *p).collect();
    assert_eq!(ports, [8010, 8011, 8012, 8013, 8020, 8021, 8022, 8023, 8030, 8031]);
}

#[test]
fn the_repository_cluster_toml_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml");
    let c = NodeConfig::load(Some(&path), &env(&[])).unwrap();
    assert_eq!(c.services.enabled().len(), 10);
    assert_eq!(c.cluster.port, 4697);
}

#[test]
fn environment_overrides_apply() {
    let c = NodeConfig::load(
        None,
        &env(&[
            ("LOOM_NODE_NAME", "n2"),
            ("LOOM_BIND_ADDR", "127.0.0.2"),
            ("LOOM_SEEDS", "127.0.0.1:4697, 127.0.0.3:4697"),
            ("LOOM_COOKIE", "0123456789abcdef"),
            ("LOOM_DATA_DIR", "/tmp/x"),
            ("LOOM_DATABASE_URL", "postgres://u:p@h/db"),
            ("LOOM_REDIS_URL", "redis://127.0.0.1:6379"),
            ("LOOM_KAFKA_BROKERS", "127.0.0.1:9092"),
            ("LOOM_LOG", "debug"),
            ("LOOM_SERVICES", "schema-registry,health-aggregator"),
            ("LOOM_AUTH_TOKENS", "ops:admin:aaaaaaaaaaaaaaaa,ci:read+write:bbbbbbbbbbbbbbbb"),
            ("LOOM_CLUSTER_DATA_PORT", "0"),
            ("LOOM_ADVERTISE_ADDR", "loom-2.example"),
        ]),
    )
    .unwrap();
    assert_eq!((c.cluster.data_port, c.cluster.advertise_addr.as_deref()), (0, Some("loom-2.example")));
    assert_eq!(c.node.name, "n2");
    assert_eq!(c.node.bind_addr.to_string(), "127.0.0.2");
    assert_eq!(c.cluster.seeds, ["127.0.0.1:4697", "127.0.0.3:4697"]);
    assert_eq!(c.database_url(), "postgres://u:p@h/db");
    assert_eq!(c.kafka.brokers, ["127.0.0.1:9092"]);
    assert_eq!(c.log.filter, "debug");
    let enabled: Vec<ServiceId> = c.services.enabled().iter().map(|(id, _)| *id).collect();
    assert_eq!(enabled, [ServiceId::SchemaRegistry, ServiceId::HealthAggregator]);
    assert_eq!(c.auth.tokens.len(), 2);
    assert_eq!(c.auth.tokens[1].max_scope(), Some(Scope::Write));
}

#[test]
fn printed_config_never_shows_secrets() {
    let c = NodeConfig::load(
        None,
        &env(&[
            ("LOOM_SEEDS", "127.0.0.1:4697"),
            ("LOOM_COOKIE", "cookie-cookie-cookie"),
            ("LOOM_DATABASE_URL", "postgres://u:dbpassword@h/db"),
            ("LOOM_AUTH_TOKENS", "ops:admin:tokentokentokentoken"),
        ]),
    )
    .unwrap();
    let printed = c.to_redacted_toml();
    for secret in ["cookie-cookie-cookie", "dbpassword", "tokentokentokentoken"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(printed.contains("<redacted>"));
    // the printed form loads back
    NodeConfig::parse_toml(&printed).unwrap();
}

/// (file text, env, expected fragment of the error message)
type ErrorCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn errors_name_the_field_and_why() {
    let cases: &[ErrorCase] = &[
        ("[node]\nnmae = \"x\"\n", &[], "unknown field `nmae`"),
        ("[nodes]\n", &[], "unknown field `nodes`"),
        ("[services.schema]\n", &[], "unknown field `schema`"),
        ("[node]\nbind_addr = \"nope\"\n", &[], "invalid IP address"),
        ("[node]\nshutdown_timeout = \"10\"\n", &[], "invalid duration `10`"),
        ("", &[("LOOM_BIND_ADDR", "x.y")], "LOOM_BIND_ADDR (sets `node.bind_addr`): `x.y` is not an IP address"),
        ("", &[("LOOM_SEEDS", "127.0.0.1:4697")], "`cluster.cookie`: required when cluster.seeds is set"),
        (
            "",
            &[("LOOM_SEEDS", "nohost"), ("LOOM_COOKIE", "0123456789abcdef")],
            "`cluster.seeds[0]`: `nohost` must be host:port",
        ),
        ("", &[("LOOM_COOKIE", "short")], "`cluster.cookie`: must be at least 8"),
        ("", &[("LOOM_CLUSTER_PROBE_TIMEOUT", "2s")], "`cluster.probe_timeout`: must be shorter than"),
        ("[cluster]\nsuspect_timeout = \"0s\"\n", &[], "`cluster.suspect_timeout`: must be longer than zero"),
        ("", &[("LOOM_CLUSTER_PORT", "99999")], "LOOM_CLUSTER_PORT"),
        ("", &[("LOOM_CLUSTER_DATA_PORT", "4697")], "`cluster.data_port`: must differ from cluster.port"),
        ("", &[("LOOM_CLUSTER_DATA_PORT", "x")], "LOOM_CLUSTER_DATA_PORT"),
        (
            "",
            &[("LOOM_BIND_ADDR", "0.0.0.0"), ("LOOM_COOKIE", "0123456789abcdef")],
            "`cluster.advertise_addr`: required when node.bind_addr is 0.0.0.0",
        ),
        ("", &[("LOOM_ADVERTISE_ADDR", "host:4697")], "`cluster.advertise_addr`: must be a host name or an IP"),
        ("", &[("LOOM_DATABASE_URL", "mysql://x")], "`storage.database_url`: must start with"),
        ("", &[("LOOM_REDIS_URL", "http://x")], "`storage.redis_url`"),
        ("", &[("LOOM_OBJECT_STORE", "s3")], "`storage.objects.bucket`: required"),
        ("", &[("LOOM_SERVICES", "schema-registry,nope")], "unknown service `nope`"),
        ("", &[("LOOM_AUTH_TOKENS", "ops:root:aaaaaaaaaaaaaaaa")], "unknown scope `root`"),
        ("", &[("LOOM_AUTH_TOKENS", "ops:admin:short")], "`auth.tokens[0].token`: must be at least 16"),
        ("", &[("LOOM_AUTH_TOKENS", "justonepart")], "must be `name:scope[+scope]:token`"),
        ("[services.dedup]\nport = 8010\n", &[], "`services.dedup.port`: 8010 is also the port of schema-registry"),
        ("[services.dedup]\nport = 4697\n", &[], "4697 is also the cluster port"),
        ("[http]\nbody_limit_bytes = 0\n", &[], "`http.body_limit_bytes`"),
        ("[node]\nname = \"bad name\"\n", &[], "`node.name`"),
        ("[supervision]\nbackoff_initial = \"10s\"\nbackoff_max = \"1s\"\n", &[], "`supervision.backoff_initial`"),
        ("[kafka]\nbrokers = [\"localhost\"]\n", &[], "`kafka.brokers[0]`"),
        ("", &[("LOOM_DEVICE_MASTER_KEY", "abcd")], "`device_identity.master_key`: must be 32 bytes"),
        ("", &[("LOOM_DEVICE_IDENTIFIER_LIMITS", "ip")], "`ip` must be `type=limit`"),
        ("", &[("LOOM_DEVICE_IDENTIFIER_LIMITS", "ip=0")], "`device_identity.identifier_limits.ip`: must be at"),
        ("[device_identity.identifier_limits]\nIP = 3\n", &[], "`device_identity.identifier_limits.IP`"),
        ("", &[("LOOM_PRIVACY_STREAMS", "a:b")], "`a:b` must be `from_topic:to_topic:policy`"),
        ("", &[("LOOM_PRIVACY_STREAMS", "a:a:p")], "`privacy.streams[0].to`: must differ"),
        ("", &[("LOOM_PRIVACY_STREAMS", "a b:c:p")], "`privacy.streams[0].from`"),
        ("", &[("LOOM_PRIVACY_STREAMS", "a:b:p,a:c:p")], "`privacy.streams[1].from`: a topic is filtered by one"),
        ("", &[("LOOM_PRIVACY_AUDIT_RETENTION", "forever")], "LOOM_PRIVACY_AUDIT_RETENTION"),
        (
            "[[privacy.recognizers]]\nname = \"x\"\nentity = \"EMPLOYEE_ID\"\npattern = \"(\"\n",
            &[],
            "`privacy.recognizers[0].pattern`: does not compile",
        ),
        (
            "[[privacy.recognizers]]\nname = \"x\"\nentity = \"employee\"\npattern = \"E\\\\d+\"\n",
            &[],
            "`privacy.recognizers[0].entity`",
        ),
    ];
    for (text, pairs, want) in cases {
        match load_text(text, pairs) {
            Ok(_) => panic!("{text:?} {pairs:?}: loaded, wanted error containing {want:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{text:?} {pairs:?}: got {msg:?}, want {want:?}");
                assert!(!msg.contains('\n'), "error must be one line: {msg:?}");
            }
        }
    }
}

#[test]
fn privacy_overrides_apply() {
    let c = NodeConfig::load(
        None,
        &env(&[("LOOM_PRIVACY_STREAMS", "raw.events:clean.events:gdpr"), ("LOOM_PRIVACY_AUDIT_RETENTION", "7d")]),
    )
    .unwrap();
    let s = &c.privacy.streams[0];
    assert_eq!((s.from.as_str(), s.to.as_str(), s.policy.as_str()), ("raw.events", "clean.events", "gdpr"));
    assert_eq!(c.privacy.audit_retention.get(), std::time::Duration::from_secs(7 * 86_400));
}

#[test]
fn device_identity_overrides_apply_and_keys_never_print() {
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let c = NodeConfig::load(
        None,
        &env(&[("LOOM_DEVICE_MASTER_KEY", key), ("LOOM_DEVICE_IDENTIFIER_LIMITS", "ip=8, household=4,vehicle=2")]),
    )
    .unwrap();
    assert_eq!(c.device_identity.master_key.as_ref().map(|k| k.expose()), Some(key));
    let limits: Vec<(&str, u32)> = c.device_identity.identifier_limits.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(limits, [("household", 4), ("ip", 8), ("vehicle", 2)]);
    assert!(!c.to_redacted_toml().contains(key));
    let b64 = load_text("[device_identity]\nmaster_key = \"ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=\"\n", &[]);
    assert!(b64.is_ok(), "{b64:?}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err =
        NodeConfig::load(Some(std::path::Path::new("/nonexistent/cluster.toml")), &env(&[])).unwrap_err().to_string();
    assert!(err.starts_with("cannot read config file /nonexistent/cluster.toml"), "{err}");
}

#[test]
fn env_table_has_every_documented_override_once() {
    let vars: Vec<&str> = crate::ENV_OVERRIDES.iter().map(|e| e.var).collect();
    for required in [
        "LOOM_NODE_NAME",
        "LOOM_BIND_ADDR",
        "LOOM_SEEDS",
        "LOOM_COOKIE",
        "LOOM_DATA_DIR",
        "LOOM_DATABASE_URL",
        "LOOM_REDIS_URL",
        "LOOM_KAFKA_BROKERS",
        "LOOM_LOG",
    ] {
        assert_eq!(vars.iter().filter(|v| **v == required).count(), 1, "{required}");
    }
}

#[test]
fn health_checks_and_remediation_load_and_errors_name_the_field() {
    let text = "[health]\ninterval = \"500ms\"\ntimeout = \"200ms\"\nfailure_threshold = 3\n\
        [[health.remediation.rules]]\nname = \"restart-stuck\"\ncomponent = \"dedup\"\non = \"fail\"\naction = \"restart\"\n\
        [[health.remediation.rules]]\nname = \"flaps\"\ncomponent = \"dep:*\"\non = \"flapping\"\naction = \"open_circuit\"\nmax_actions = 5\nwindow = \"1m\"\n";
    let c = load_text(text, &[("LOOM_HEALTH_SUCCESS_THRESHOLD", "4")]).unwrap();
    let h = &c.health;
    assert_eq!((h.interval.get().as_millis(), h.timeout.get().as_millis()), (500, 200));
    assert_eq!((h.failure_threshold, h.success_threshold), (3, 4));
    let rules: Vec<(&str, &str, u32, u128)> = h
        .remediation
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.action.name(), r.max_actions, r.window.get().as_millis()))
        .collect();
    assert_eq!(rules, [("restart-stuck", "restart", 1, 600_000), ("flaps", "open_circuit", 5, 60_000)]);
    let printed = c.to_redacted_toml();
    assert_eq!(NodeConfig::parse_toml(&printed).unwrap().health.remediation.rules, h.remediation.rules);

    let rule = |body: &str| format!("[[health.remediation.rules]]\n{body}\n");
    let base = "name = \"r\"\ncomponent = \"dedup\"\non = \"fail\"\naction = \"restart\"";
    let cases: Vec<(String, &[(&str, &str)], &str)> = vec![
        (String::new(), &[("LOOM_HEALTH_INTERVAL", "0s")], "`health.interval`: must be longer than zero"),
        (String::new(), &[("LOOM_HEALTH_TIMEOUT", "5s")], "`health.timeout`: must not exceed health.interval"),
        (String::new(), &[("LOOM_HEALTH_FAILURE_THRESHOLD", "0")], "`health.failure_threshold`: must be between"),
        (String::new(), &[("LOOM_HEALTH_SUCCESS_THRESHOLD", "x")], "LOOM_HEALTH_SUCCESS_THRESHOLD"),
        ("[health.remediation]\nflap_threshold = 1\n".into(), &[], "`health.remediation.flap_threshold`"),
        ("[health.remediation]\ncool_down = \"0s\"\n".into(), &[], "`health.remediation.cool_down`"),
        (rule(&base.replace("\"r\"", "\"Bad Name\"")), &[], "`health.remediation.rules[0].name`"),
        (format!("{}{}", rule(base), rule(base)), &[], "`health.remediation.rules[1].name`: `r` names another"),
        (rule(&base.replace("\"dedup\"", "\"de*p\"")), &[], "`health.remediation.rules[0].component`"),
        (rule(&base.replace("\"dedup\"", "\"dep:kafka\"")), &[], "`health.remediation.rules[0].action`: restart acts"),
        (rule(&base.replace("\"restart\"", "\"open_circuit\"")), &[], "open_circuit acts on flapping"),
        (rule(&base.replace("\"restart\"", "\"reboot\"")), &[], "unknown variant `reboot`"),
        (rule(&format!("{base}\nmax_actions = 0")), &[], "`health.remediation.rules[0].max_actions`"),
        (rule(&format!("{base}\nwindow = \"0s\"")), &[], "`health.remediation.rules[0].window`"),
    ];
    for (text, pairs, want) in cases {
        match load_text(&text, pairs) {
            Ok(_) => panic!("{text:?} {pairs:?}: loaded, wanted error containing {want:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{text:?} {pairs:?}: got {msg:?}, want {want:?}");
                assert!(!msg.contains('\n'), "error must be one line: {msg:?}");
            }
        }
    }
}
