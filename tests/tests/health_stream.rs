//! The live health stream over a real WebSocket: snapshot then deltas, a node loss streamed from
//! another node within the detection bound, resume by sequence number, filters, and the
//! cluster-wide `application/health+json` aggregate.

use std::time::Duration;

use futures::StreamExt;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::http;
use serde_json::Value;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

async fn next_json<S>(ws: &mut S, within: Duration) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(within, ws.next()).await.expect("a message in time").expect("open").expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn a_node_loss_is_streamed_and_subscribers_resume_and_filter() {
    let cookie = format!("health-{}", std::process::id());
    let n1 = start_member("h1", member_options(&cookie, &[])).await;
    let n2 = start_member("h2", member_options(&cookie, &[&n1])).await;
    wait_up(&[&n1, &n2], &["h1", "h2"], Duration::from_secs(10)).await;
    let base = format!("ws://{}:8030/ws/health", n1.address.ip);

    let (mut nodes_only, _) = connect_async(format!("{base}?service=node")).await.unwrap();
    let snapshot = next_json(&mut nodes_only, Duration::from_secs(5)).await;
    assert_eq!(snapshot["type"], "snapshot");
    let entries = snapshot["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["service"] == "node"), "{snapshot}");
    let mut up: Vec<&str> =
        entries.iter().filter(|e| e["status"] == "up").map(|e| e["node"].as_str().unwrap()).collect();
    up.sort();
    assert_eq!(up, ["h1", "h2"]);
    let seq = snapshot["seq"].as_u64().unwrap();

    let (mut only_h1, _) = connect_async(format!("{base}?node=h1")).await.unwrap();
    let first = next_json(&mut only_h1, Duration::from_secs(5)).await;
    assert!(first["entries"].as_array().unwrap().iter().all(|e| e["node"] == "h1"), "{first}");

    n2.signal("KILL");
    let delta = next_json(&mut nodes_only, Duration::from_secs(5)).await;
    assert_eq!(
        (delta["type"].as_str(), delta["node"].as_str(), delta["service"].as_str()),
        (Some("delta"), Some("h2"), Some("node"))
    );
    assert_ne!(delta["status"], "up");
    assert!(delta["seq"].as_u64().unwrap() > seq);
    // The filtered subscriber hears nothing about h2.
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), only_h1.next()).await {
        assert!(!t.contains("\"h2\""), "{t}");
    }

    // Resuming from the snapshot's seq replays what was missed.
    let (mut resumed, _) = connect_async(format!("{base}?since={seq}&service=node")).await.unwrap();
    let r = next_json(&mut resumed, Duration::from_secs(5)).await;
    assert_eq!(r["type"], "resume", "{r}");
    assert!(r["deltas"].as_array().unwrap().iter().any(|d| d["node"] == "h2"), "{r}");

    let resp = http().get(n1.url(8030, "/health/cluster")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/health+json");
    let body: Value = resp.json().await.unwrap();
    assert!(body["checks"]["node:h1"].is_array() && body["checks"]["dedup:h1"].is_array(), "{body}");

    // SLA windows fill from samples (every 10 s): dedup still passes on h1, so it is available.
    let sla = loom_testkit::eventually("SLA samples", Duration::from_secs(25), || async {
        let v: Value = http().get(n1.url(8030, "/sla")).send().await.ok()?.json().await.ok()?;
        (v["services"]["dedup"][0]["samples"].as_u64()? >= 1).then_some(v)
    })
    .await;
    assert_eq!(sla["services"]["dedup"][0]["window"], "1h");
    assert_eq!(sla["services"]["dedup"][0]["availability"], 1.0);
    let metrics = http().get(n1.url(8030, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("loom_sla_availability_ratio{slo_service=\"dedup\",window=\"1h\"} 1"), "{metrics}");
    let (ok, report) = loom_testkit::promtool(&metrics);
    assert!(ok, "promtool: {report}");
}
