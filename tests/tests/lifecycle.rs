//! Process lifecycle: graceful shutdown on SIGTERM/SIGINT (exit 0 within the bound, an in-flight
//! request completed, readiness dropped first), and clear one-line errors with non-zero exits for
//! bad config, a port already in use and a multi-node config without a cookie.

use std::time::{Duration, Instant};

use loom_testkit::node::claim_address;
use loom_testkit::{LoomNode, NodeOptions, http};
use serde_json::json;

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_and_exits_zero_within_the_bound() {
    let mut node = LoomNode::start_ready(
        "life-1",
        NodeOptions::default().env("LOOM_FAULT_INJECTION", "true").env("LOOM_SHUTDOWN_TIMEOUT", "10s"),
    )
    .await;
    // a slow request: the core actor of the event router holds it for 1.5 s
    let url = node.url(8013, "/admin/faults");
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let response = http().post(url).json(&json!({"actor": "core", "kind": "delay", "ms": 1500})).send().await;
        (response.map(|r| r.status().as_u16()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    node.signal("TERM");

    let status = node.wait_exit(Duration::from_secs(12)).await.expect("exited within the shutdown bound");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", node.logs());
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let (response, elapsed) = slow.await.unwrap();
    assert_eq!(response.expect("in-flight request completed"), 202);
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");

    let lines = node.log_lines();
    assert!(lines.iter().any(|l| l["message"] == "shutdown requested" && l["signal"] == "SIGTERM"));
    assert!(lines.iter().any(|l| l["message"] == "node stopped"), "{}", node.logs());
    // after exit nothing listens any more
    assert!(http().get(node.url(8010, "/health")).send().await.is_err());
}

#[tokio::test]
async fn sigint_also_shuts_down_cleanly() {
    let mut node = LoomNode::start_ready("life-2", NodeOptions::default()).await;
    node.signal("INT");
    let status = node.wait_exit(Duration::from_secs(10)).await.expect("exited");
    assert_eq!(status.code(), Some(0), "{}", node.logs());
}

async fn failed_start(name: &str, options: NodeOptions) -> (i32, String) {
    let mut node = LoomNode::start(name, options);
    let status = node.wait_exit(Duration::from_secs(20)).await.expect("exits on its own");
    let stderr = node.stderr();
    (status.code().expect("exit code"), stderr)
}

#[tokio::test]
async fn bad_config_exits_non_zero_with_one_line_naming_the_field() {
    let cases: &[(NodeOptions, &str)] = &[
        (NodeOptions::default().config("[node]\nnmae = \"x\"\n"), "unknown field `nmae`"),
        (NodeOptions::default().env("LOOM_CLUSTER_PORT", "http"), "LOOM_CLUSTER_PORT"),
        (
            NodeOptions::default().env("LOOM_SEEDS", "127.0.0.2:4697"),
            "`cluster.cookie`: required when cluster.seeds is set",
        ),
        (NodeOptions::default().env("LOOM_LOG", "info,=["), "`log.filter`"),
        (NodeOptions::default().env("LOOM_DATABASE_URL", "mysql://x"), "`storage.database_url`"),
    ];
    for (i, (options, want)) in cases.iter().enumerate() {
        let (code, stderr) = failed_start(&format!("bad-{i}"), options.clone()).await;
        assert_eq!(code, 2, "case {i}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "case {i}: one line: {stderr:?}");
        assert!(stderr.starts_with("loom: error: "), "case {i}: {stderr}");
        assert!(stderr.contains(want), "case {i}: want {want:?} in {stderr:?}");
    }
}

#[tokio::test]
async fn a_port_in_use_exits_non_zero_naming_the_service_and_address() {
    let address = claim_address();
    let taken = std::net::TcpListener::bind((address.ip.as_str(), 8021)).expect("bind 8021 first");
    let ip = address.ip.clone();
    let mut node = LoomNode::start_on("busy", address, NodeOptions::default());
    let status = node.wait_exit(Duration::from_secs(20)).await.expect("exits");
    drop(taken);
    let stderr = node.stderr();
    assert_eq!(status.code(), Some(1), "{}", node.logs());
    assert_eq!(
        stderr.trim(),
        format!("loom: error: cannot listen for file-processing on {ip}:8021: address already in use")
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_start_failure() {
    let (code, stderr) =
        failed_start("nodb", NodeOptions::default().env("LOOM_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"))
            .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("loom: error: cannot open stores: database (postgres://nobody@127.0.0.1:1/none)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn config_check_prints_the_resolved_config_without_secrets() {
    let options = NodeOptions::default()
        .args(&["config", "check"])
        .env("LOOM_SEEDS", "127.0.0.2:4697")
        .env("LOOM_COOKIE", "super-secret-cookie-value")
        .env("LOOM_DATABASE_URL", "postgres://loom:dbpass@db/loom")
        .env("LOOM_AUTH_TOKENS", "ops:admin:admin-token-0123456789");
    let mut node = LoomNode::start("check", options);
    let status = node.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", node.logs());
    let out = node.stdout();
    assert!(out.starts_with("# configuration is valid"), "{out}");
    for secret in ["super-secret-cookie-value", "dbpass", "admin-token-0123456789"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    let parsed: toml::Value = toml::from_str(&out).expect("prints TOML");
    assert_eq!(parsed["node"]["name"].as_str(), Some("check"));
    assert_eq!(parsed["services"]["dedup"]["port"].as_integer(), Some(8022));
    assert_eq!(parsed["cluster"]["seeds"][0].as_str(), Some("127.0.0.2:4697"));
}
