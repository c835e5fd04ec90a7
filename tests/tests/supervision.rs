//! Supervision over real sockets: a panicking core actor is restarted and its service becomes
//! ready again without the node restarting; a spent restart budget escalates to the root, which
//! restarts the whole service tree; both show in /health and /metrics.

use std::time::Duration;

use loom_testkit::{LoomNode, NodeOptions, eventually, http};
use serde_json::{Value, json};

const DEDUP: u16 = 8022;

async fn health(node: &LoomNode, port: u16) -> Value {
    http().get(node.url(port, "/health")).send().await.unwrap().json().await.unwrap()
}

async fn ready(node: &LoomNode, port: u16) -> bool {
    http().get(node.url(port, "/ready")).send().await.map(|r| r.status() == 200).unwrap_or(false)
}

async fn inject(node: &LoomNode, port: u16, fault: Value) -> u16 {
    http().post(node.url(port, "/admin/faults")).json(&fault).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_panicking_child_is_restarted_and_the_service_is_ready_again() {
    let node = LoomNode::start_ready("sup-1", NodeOptions::default().env("LOOM_FAULT_INJECTION", "true")).await;
    let pid = node.pid();

    assert_eq!(inject(&node, DEDUP, json!({"actor": "core", "kind": "panic"})).await, 202);
    let body = eventually("core restarted once", Duration::from_secs(10), || async {
        let body = health(&node, DEDUP).await;
        (body["checks"]["core:restarts"][0]["observedValue"] == 1 && body["status"] == "pass").then_some(body)
    })
    .await;
    let output = body["checks"]["core:restarts"][0]["output"].as_str().unwrap();
    assert!(output.contains("fault injected: panic"), "{output}");
    assert!(ready(&node, DEDUP).await, "dedup is ready again");
    assert_eq!(node.pid(), pid, "the node did not restart");

    // other services were not touched
    let other = health(&node, 8010).await;
    assert_eq!(other["checks"]["core:restarts"][0]["observedValue"], 0);

    let metrics = http().get(node.url(DEDUP, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("loom_actor_restarts_total{service=\"dedup\",actor=\"core\"} 1"), "{metrics}");
    assert!(metrics.contains("loom_actor_up{service=\"dedup\",actor=\"core\"} 1"), "{metrics}");

    // an error return is treated like a panic
    assert_eq!(inject(&node, DEDUP, json!({"actor": "core", "kind": "error"})).await, 202);
    eventually("core restarted twice", Duration::from_secs(10), || async {
        (health(&node, DEDUP).await["checks"]["core:restarts"][0]["observedValue"] == 2).then_some(())
    })
    .await;
    eventually("ready after the second restart", Duration::from_secs(10), || async {
        ready(&node, DEDUP).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_spent_budget_escalates_and_the_root_restarts_the_service_tree() {
    let config =
        "[supervision]\nmax_restarts = 1\nwindow = \"60s\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n";
    let node =
        LoomNode::start_ready("sup-2", NodeOptions::default().config(config).env("LOOM_FAULT_INJECTION", "1")).await;

    assert_eq!(inject(&node, DEDUP, json!({"actor": "core", "kind": "panic"})).await, 202);
    eventually("first restart", Duration::from_secs(10), || async {
        (health(&node, DEDUP).await["checks"]["core:restarts"][0]["observedValue"] == 1).then_some(())
    })
    .await;
    eventually("ready after the first restart", Duration::from_secs(10), || async {
        ready(&node, DEDUP).await.then_some(())
    })
    .await;
    // second failure in the window: dedup's supervisor gives up, the root restarts it
    assert_eq!(inject(&node, DEDUP, json!({"actor": "core", "kind": "panic"})).await, 202);
    let body = eventually("service supervisor restarted by the root", Duration::from_secs(10), || async {
        let body = health(&node, DEDUP).await;
        (body["checks"]["supervisor:restarts"][0]["observedValue"] == 1 && body["status"] == "pass").then_some(body)
    })
    .await;
    let core = body["checks"]["core:restarts"][0]["output"].as_str().unwrap();
    assert!(core.starts_with("running"), "a fresh core runs under the fresh supervisor: {core}");
    eventually("ready after escalation", Duration::from_secs(10), || async { ready(&node, DEDUP).await.then_some(()) })
        .await;
    let metrics = http().get(node.url(DEDUP, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("loom_supervisor_escalations_total{service=\"dedup\",actor=\"core\"} 1"), "{metrics}");
    assert!(metrics.contains("loom_actor_restarts_total{service=\"dedup\",actor=\"supervisor\"} 1"), "{metrics}");
}

#[tokio::test]
async fn fault_injection_is_off_unless_enabled() {
    let node = LoomNode::start_ready("sup-3", NodeOptions::default()).await;
    let response = http()
        .post(node.url(DEDUP, "/admin/faults"))
        .json(&json!({"actor": "core", "kind": "panic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "fault_injection_disabled");
    assert_eq!(health(&node, DEDUP).await["checks"]["core:restarts"][0]["observedValue"], 0);
}
