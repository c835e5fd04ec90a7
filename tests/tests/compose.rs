//! `docker-compose.yml` and the `Dockerfile` cannot run here (no Docker engine), so this test
//! checks they agree with the code: every loom node's environment only uses real `LOOM_*`
//! overrides and, applied to `cluster.toml`, yields a valid configuration; the nodes publish the
//! documented service ports; the infrastructure they point at exists in the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use loom_config::{ENV_OVERRIDES, NodeConfig};
use serde_yaml_ng::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `${VAR:-default}` → `default` (the value compose uses when VAR is unset).
fn expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).expect("closed ${");
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment(service: &Value) -> HashMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                (k.as_str().unwrap().to_owned(), expand(&v))
            })
            .collect(),
        Value::Sequence(list) => {
            list.iter().filter_map(|e| e.as_str()?.split_once('=')).map(|(k, v)| (k.to_owned(), expand(v))).collect()
        }
        _ => HashMap::new(),
    }
}

fn container_ports(service: &Value) -> BTreeSet<u16> {
    service["ports"]
        .as_sequence()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_str())
                .filter_map(|p| p.rsplit(':').next()?.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_agrees_with_cluster_toml() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    let compose: Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for infra in ["kafka", "redis", "timescaledb", "minio"] {
        assert!(names.contains(infra), "compose lacks {infra}: {names:?}");
    }
    let known: BTreeSet<&str> = ENV_OVERRIDES.iter().map(|e| e.var).collect();
    let base = NodeConfig::load(Some(&root().join("cluster.toml")), &HashMap::new()).unwrap();
    let documented: BTreeSet<u16> = base.services.enabled().iter().map(|(_, p)| *p).collect();

    let nodes: BTreeMap<&str, &Value> =
        services.iter().filter_map(|(k, v)| Some((k.as_str()?, v))).filter(|(k, _)| k.starts_with("loom-")).collect();
    assert_eq!(nodes.len(), 3, "three loom nodes: {:?}", nodes.keys());
    for (name, service) in nodes {
        let env = environment(service);
        for var in env.keys().filter(|k| k.starts_with("LOOM_")) {
            assert!(known.contains(var.as_str()), "{name} sets {var}, which loom does not read");
        }
        assert_eq!(env.get("LOOM_NODE_NAME").map(String::as_str), Some(name), "{name}");
        // the environment applied to cluster.toml is a valid multi-node configuration
        let config = NodeConfig::load(Some(&root().join("cluster.toml")), &env)
            .unwrap_or_else(|e| panic!("{name}: compose environment gives an invalid config: {e}"));
        assert!(config.cluster.is_multi_node(), "{name} has seeds");
        assert!(config.cluster.cookie.is_some(), "{name} has a cookie");
        for seed in &config.cluster.seeds {
            let host = seed.rsplit_once(':').unwrap().0;
            assert!(names.contains(host), "{name} seeds from {seed}, not a compose service");
            assert_eq!(seed.rsplit_once(':').unwrap().1, config.cluster.port.to_string(), "{name} seed port");
        }
        assert!(config.database_url().contains("@timescaledb:"), "{name}: {}", config.redacted().database_url());
        assert!(config.storage.redis_url.as_deref().unwrap_or("").contains("redis:"), "{name}");
        assert!(config.kafka.brokers.iter().all(|b| b.starts_with("kafka:")), "{name}: {:?}", config.kafka.brokers);
        assert_eq!(config.storage.objects.backend, loom_config::ObjectBackend::S3, "{name}");
        assert!(config.storage.objects.endpoint.as_deref().unwrap_or("").contains("minio"), "{name}");
        let published = container_ports(service);
        assert_eq!(published, documented, "{name} publishes the documented service ports");
        let enabled: BTreeSet<u16> = config.services.enabled().iter().map(|(_, p)| *p).collect();
        assert_eq!(enabled, documented, "{name} runs every service on its documented port");
    }
}

#[test]
fn dockerfile_is_multi_stage_and_exposes_the_ports() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let stages = text.lines().filter(|l| l.trim_start().to_uppercase().starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: {stages} FROM lines");
    assert!(text.contains("-p loom-node"), "builds the loom binary");
    for port in [8010, 8011, 8012, 8013, 8020, 8021, 8022, 8023, 8030, 8031, 4697] {
        assert!(text.contains(&port.to_string()), "Dockerfile does not expose {port}");
    }
}
