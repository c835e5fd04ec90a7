//! The four ops endpoints on all ten ports of a real node over real sockets: readiness,
//! application/health+json, /version, Prometheus text accepted by promtool with no series
//! repeated across ports, JSON errors for unknown routes and methods, request ids.

use std::collections::HashMap;

use loom_testkit::node::PORTS;
use loom_testkit::{LoomNode, NodeOptions, http, promtool};
use serde_json::Value;

#[tokio::test]
async fn all_ten_ports_answer_the_ops_endpoints() {
    let node = LoomNode::start_ready("ops-1", NodeOptions::default()).await;
    let client = http();
    let names = [
        "schema-registry",
        "privacy-filter",
        "device-identity",
        "event-router",
        "timeseries-aggregator",
        "file-processing",
        "dedup",
        "context-enrichment",
        "health-aggregator",
        "data-quality",
    ];
    // series name+labels → port, to find any series exposed on two ports
    let mut seen: HashMap<String, u16> = HashMap::new();
    for (port, name) in PORTS.iter().zip(names) {
        let health = client.get(node.url(*port, "/health")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{name}");
        assert_eq!(health.headers()["content-type"], "application/health+json", "{name}");
        let body: Value = health.json().await.unwrap();
        assert_eq!(body["status"], "pass", "{name}: {body}");
        assert_eq!(body["serviceId"], name);
        assert_eq!(body["checks"]["core:responseTime"][0]["status"], "pass", "{body}");
        assert_eq!(body["checks"]["core:restarts"][0]["observedValue"], 0, "{body}");

        let version: Value = client.get(node.url(*port, "/version")).send().await.unwrap().json().await.unwrap();
        assert_eq!(version["service"], name);
        assert_eq!(version["node"], "ops-1");
        assert_eq!(version["profile"], "debug");
        assert!(version["version"].as_str().unwrap().starts_with("0."), "{version}");
        assert!(!version["commit"].as_str().unwrap().is_empty());

        let ready: Value = client.get(node.url(*port, "/ready")).send().await.unwrap().json().await.unwrap();
        assert_eq!(ready["status"], "ready");

        let metrics = client.get(node.url(*port, "/metrics")).send().await.unwrap();
        assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = metrics.text().await.unwrap();
        let (ok, report) = promtool(&text);
        assert!(ok, "promtool rejects {name} /metrics: {report}\n{text}");
        assert!(text.contains(&format!("loom_actor_up{{service=\"{name}\",actor=\"core\"}} 1")), "{name}: {text}");
        assert!(text.contains(&format!("loom_http_requests_total{{service=\"{name}\",route=\"/health\"")), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let series = line.rsplit_once(' ').map(|(s, _)| s).unwrap_or(line).to_owned();
            if let Some(other) = seen.insert(series.clone(), *port) {
                panic!("series {series} is exposed on both {other} and {port}");
            }
        }
    }
    // node-wide series appear once, on the health aggregator's port
    let node_metrics = client.get(node.url(8030, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(node_metrics.contains("loom_node_info{node=\"ops-1\""), "{node_metrics}");
    assert!(node_metrics.contains("loom_node_startup_duration_seconds"), "{node_metrics}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_json_and_request_ids_flow() {
    let node = LoomNode::start_ready("ops-2", NodeOptions::default()).await;
    let client = http();

    let missing = client.get(node.url(8010, "/no/such/route")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    let generated = missing.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a generated UUID: {generated}");
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);

    let wrong_method = client.delete(node.url(8013, "/health")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["content-type"], "application/problem+json");
    assert!(wrong_method.headers().contains_key("allow"));
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");

    let given = client.get(node.url(8012, "/version")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc-123");
    let bad = client.get(node.url(8012, "/version")).header("x-request-id", "a".repeat(300)).send().await.unwrap();
    assert_ne!(bad.headers()["x-request-id"].to_str().unwrap(), "a".repeat(300), "oversized ids are replaced");

    // the id is in the structured log line of that request
    let line =
        loom_testkit::eventually("log line of the request", std::time::Duration::from_secs(5), || {
            let lines = node.log_lines();
            async move {
                lines.into_iter().find(|l| l["span"]["request_id"] == "trace-abc-123" && l["message"] == "request")
            }
        })
        .await;
    assert_eq!(line["node"], "ops-2");
    assert_eq!(line["span"]["service"], "device-identity");
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn a_node_reports_its_startup_time() {
    let node = LoomNode::start_ready("ops-3", NodeOptions::default()).await;
    let line = loom_testkit::eventually("node ready log line", std::time::Duration::from_secs(5), || {
        let lines = node.log_lines();
        async move { lines.into_iter().find(|l| l["message"] == "node ready") }
    })
    .await;
    assert_eq!(line["services"], 10);
    assert!(line["startup_ms"].as_u64().is_some(), "{line}");
}
