//! The HTTP edge every port shares, over real sockets: bearer-token scopes, the body limit
//! (413 problem+json, declared or streamed), the per-request timeout (504), malformed JSON (400).

use std::time::Duration;

use loom_testkit::{LoomNode, NodeOptions, http};
use serde_json::{Value, json};

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn scopes_are_enforced_when_tokens_are_configured() {
    let tokens = format!("reader:read:{READ},writer:write:{WRITE},ops:admin:{ADMIN}");
    let node = LoomNode::start_ready(
        "auth-1",
        NodeOptions::default().env("LOOM_AUTH_TOKENS", tokens).env("LOOM_FAULT_INJECTION", "true"),
    )
    .await;
    let client = http();
    let fault = json!({"actor": "core", "kind": "delay", "ms": 1});

    // probes stay open
    assert_eq!(client.get(node.url(8010, "/health")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(node.url(8010, "/ready")).send().await.unwrap().status(), 200);

    let (status, body) = problem(client.get(node.url(8010, "/metrics")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) =
        problem(client.get(node.url(8010, "/metrics")).bearer_auth("wrong-token-0123456789").send().await.unwrap())
            .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_token")));
    for token in [READ, WRITE, ADMIN] {
        let r = client.get(node.url(8010, "/metrics")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{token}");
    }

    for token in [READ, WRITE] {
        let r = client.post(node.url(8031, "/admin/faults")).bearer_auth(token).json(&fault).send().await.unwrap();
        let (status, body) = problem(r).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{token}");
    }
    let r = client.post(node.url(8031, "/admin/faults")).bearer_auth(ADMIN).json(&fault).send().await.unwrap();
    assert_eq!(r.status(), 202);

    // no token ever reaches the log
    let logs = node.stdout();
    for token in [READ, WRITE, ADMIN] {
        assert!(!logs.contains(token), "{token} logged");
    }
    let metrics = client.get(node.url(8031, "/metrics")).bearer_auth(READ).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("loom_http_rejected_total{service=\"data-quality\",reason=\"unauthorized\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_problem_json() {
    let node = LoomNode::start_ready(
        "limit-1",
        NodeOptions::default().env("LOOM_HTTP_BODY_LIMIT", "1024").env("LOOM_FAULT_INJECTION", "true"),
    )
    .await;
    let client = http();
    let big = json!({"actor": "core", "kind": "delay", "ms": 1, "padding": "x".repeat(4096)});

    // declared length
    let (status, body) = problem(client.post(node.url(8011, "/admin/faults")).json(&big).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));

    // streamed without a length: the extractor stops at the limit
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(serde_json::to_vec(&big).unwrap())];
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = client
        .post(node.url(8011, "/admin/faults"))
        .header("content-type", "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));

    // a body within the limit still works
    let ok = client
        .post(node.url(8011, "/admin/faults"))
        .json(&json!({"actor": "core", "kind": "delay", "ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
}

#[tokio::test]
async fn slow_requests_time_out_with_504_and_bad_json_is_400() {
    let node = LoomNode::start_ready(
        "limit-2",
        NodeOptions::default().env("LOOM_HTTP_REQUEST_TIMEOUT", "300ms").env("LOOM_FAULT_INJECTION", "true"),
    )
    .await;
    let client = http();
    let slow = client
        .post(node.url(8020, "/admin/faults"))
        .json(&json!({"actor": "core", "kind": "delay", "ms": 1500}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(slow).await;
    assert_eq!((status, body["code"].as_str()), (504, Some("request_timeout")));

    let bad = client
        .post(node.url(8020, "/admin/faults"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(bad).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));

    let wrong_shape = client
        .post(node.url(8020, "/admin/faults"))
        .json(&json!({"actor": "core", "kind": "explode"}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(wrong_shape).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")));

    let no_type = client.post(node.url(8020, "/admin/faults")).body("{}").send().await.unwrap();
    let (status, body) = problem(no_type).await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")));

    // the service is still healthy afterwards (the slow actor finished its delay)
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(client.get(node.url(8020, "/ready")).send().await.unwrap().status(), 200);
}
