//! The live health stream over a real WebSocket: snapshot then deltas, a node loss streamed from
//! another node within the detection bound, resume by sequence number, filters, and the
//! cluster-wide `application/health+json` aggregate; a killed node and a stopped dependency (a
//! Kafka broker of the test's own, paused) each streamed to every node as one incident with the
//! dependents `impacted`, resolved on recovery; the declared dependency graph checked against
//! each service's own `/health`. Remediation: a stuck actor tree restarted through its
//! supervisor by a rule (audit trail and stream), the rule's rate limit refusing a second
//! restart, an operator's restart and not-ready hold; a flapping broker held open by a circuit
//! breaker; a subscriber that stops reading closed with 1008 and its reason, memory bounded.

#![allow(clippy::print_stderr)] // detection and recovery times are the figures these tests report

use std::time::Duration;

use futures::StreamExt;
use loom_testkit::cluster::{member_options, start_member, start_member_on, wait_up};
use loom_testkit::http;
use serde_json::Value;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/kafka.rs"]
mod kafka;

use kafka::OwnBroker;

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
    // The filtered subscriber hears nothing about h2 itself (h1's incident about it is h1's).
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), only_h1.next()).await {
        let d: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(d["node"], "h1", "{t}");
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

/// A WebSocket subscriber recording every message it gets, with its arrival time.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(url: String) -> Recorder {
        let (mut ws, _) = connect_async(url).await.expect("ws connects");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                {
                    sink.lock().unwrap().push((std::time::Instant::now(), v));
                }
            }
        });
        Recorder { seen, task }
    }

    /// Every entry and delta received so far (snapshot entries included), with arrival times.
    fn deltas(&self) -> Vec<(std::time::Instant, Value)> {
        let mut out = Vec::new();
        for (at, msg) in self.seen.lock().unwrap().iter() {
            match msg["type"].as_str() {
                Some("snapshot") => out.extend(msg["entries"].as_array().unwrap().iter().map(|e| (*at, e.clone()))),
                Some("resume") => out.extend(msg["deltas"].as_array().unwrap().iter().map(|e| (*at, e.clone()))),
                _ => out.push((*at, msg.clone())),
            }
        }
        out
    }

    /// When the first delta matching `pred` arrived.
    fn first(&self, pred: impl Fn(&Value) -> bool) -> Option<std::time::Instant> {
        self.deltas().into_iter().find(|(_, d)| pred(d)).map(|(at, _)| at)
    }

    /// The distinct incident ids streamed so far.
    fn incident_ids(&self) -> std::collections::BTreeSet<String> {
        self.deltas()
            .iter()
            .filter_map(|(_, d)| d["service"].as_str()?.strip_prefix("incident:").map(str::to_owned))
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is(d: &Value, node: &str, service: &str, statuses: &[&str]) -> bool {
    d["node"] == node && d["service"] == service && statuses.iter().any(|s| d["status"] == *s)
}

fn incident_with_root(d: &Value, root: &str, status: &str) -> bool {
    d["service"].as_str().is_some_and(|s| s.starts_with("incident:"))
        && d["status"] == status
        && d["detail"]["incident"]["roots"].as_array().is_some_and(|r| r.iter().any(|x| x == root))
}

#[tokio::test]
async fn a_killed_node_is_one_incident_on_every_node_with_its_services_impacted_until_it_returns() {
    let cookie = format!("incident-{}", std::process::id());
    let n1 = start_member("i1", member_options(&cookie, &[])).await;
    let n2 = start_member("i2", member_options(&cookie, &[&n1])).await;
    let n3 = start_member("i3", member_options(&cookie, &[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["i1", "i2", "i3"], Duration::from_secs(20)).await;
    let observers = [&n1, &n2];
    let mut streams = Vec::new();
    for n in observers {
        streams
            .push(Recorder::start(format!("ws://{}:8030/ws/health?service=node,dedup,incident:*", n.address.ip)).await);
    }
    // The peers' service statuses arrive over the cluster topic before the kill.
    for s in &streams {
        loom_testkit::eventually("i3's dedup passing", Duration::from_secs(15), || async {
            s.first(|d| is(d, "i3", "dedup", &["pass"])).map(|_| ())
        })
        .await;
    }

    let killed_at = std::time::Instant::now();
    let address = n3.kill_into_address().await;
    for (s, observer) in streams.iter().zip(observers) {
        let what = format!("{} streams i3 lost, dedup@i3 impacted and one incident", observer.name);
        let detected = loom_testkit::eventually(&what, Duration::from_secs(10), || async {
            let lost = s.first(|d| is(d, "i3", "node", &["unreachable", "down"]))?;
            s.first(|d| is(d, "i3", "dedup", &["impacted"]) && d["detail"]["root_cause"] == "node:i3")?;
            s.first(|d| incident_with_root(d, "node:i3", "open"))?;
            Some(lost)
        })
        .await;
        let ms = detected.duration_since(killed_at).as_millis();
        eprintln!("{}: node loss streamed {ms} ms after kill -9", observer.name);
        assert!(ms < 5_000, "detection bound: {ms} ms");
        // Its services did not open incidents of their own (inhibition).
        assert_eq!(s.incident_ids().len(), 1, "{:?}", s.deltas());
    }
    let open: Value = http().get(n1.url(8030, "/incidents?state=open")).send().await.unwrap().json().await.unwrap();
    let list = open["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{open}");
    assert_eq!(list[0]["roots"], serde_json::json!(["node:i3"]));
    assert!(
        list[0]["affected"].as_array().unwrap().iter().any(|a| a["component"] == "dedup" && a["role"] == "impacted"),
        "{open}"
    );
    let health: Value = http().get(n1.url(8030, "/health/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["checks"]["dedup:i3"][0]["status"], "impacted", "{health}");

    // The node comes back: the incident resolves on every node.
    let _n3 = start_member_on("i3", address, member_options(&cookie, &[&n1])).await;
    for (s, observer) in streams.iter().zip(observers) {
        let what = format!("{} streams the incident resolved", observer.name);
        loom_testkit::eventually(&what, Duration::from_secs(20), || async {
            s.first(|d| incident_with_root(d, "node:i3", "resolved")).map(|_| ())
        })
        .await;
    }
    let id = list[0]["id"].as_str().unwrap();
    let one: Value = http().get(n1.url(8030, &format!("/incidents/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["state"], "resolved", "{one}");
    assert!(one["resolved_ms"].as_i64().unwrap() >= one["opened_ms"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    for s in &streams {
        assert_eq!(s.incident_ids().len(), 1, "one incident from kill to recovery: {:?}", s.incident_ids());
    }
}

#[tokio::test]
async fn a_stopped_dependency_is_one_incident_with_its_dependents_impacted_on_every_node() {
    let broker = OwnBroker::start();
    loom_testkit::eventually("own broker listening", Duration::from_secs(15), || async {
        tokio::net::TcpStream::connect(&broker.brokers).await.ok().map(|_| ())
    })
    .await;
    let cookie = format!("depinc-{}", std::process::id());
    let opts =
        |seeds: &[&loom_testkit::LoomNode]| member_options(&cookie, seeds).env("LOOM_KAFKA_BROKERS", &broker.brokers);
    let k1 = start_member("k1", opts(&[])).await;
    let k2 = start_member("k2", opts(&[&k1])).await;
    wait_up(&[&k1, &k2], &["k1", "k2"], Duration::from_secs(15)).await;

    // The graph: Kafka passing as probed by both nodes.
    let deps = loom_testkit::eventually("dep:kafka passing on k1 and k2", Duration::from_secs(20), || async {
        let v: Value = http().get(k1.url(8030, "/dependencies")).send().await.ok()?.json().await.ok()?;
        let kafka = v["nodes"].as_array()?.iter().find(|n| n["id"] == "dep:kafka")?.clone();
        (kafka["nodes"]["k1"]["status"] == "pass" && kafka["nodes"]["k2"]["status"] == "pass").then_some(v)
    })
    .await;
    // The declared edges agree with what each service's own /health checks.
    let edges: Vec<(String, String)> = deps["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].as_str().unwrap().to_owned(), e["to"].as_str().unwrap().to_owned()))
        .collect();
    for (name, port) in [
        ("schema-registry", 8010),
        ("privacy-filter", 8011),
        ("device-identity", 8012),
        ("event-router", 8013),
        ("dedup", 8022),
    ] {
        let health: Value = http().get(k1.url(port, "/health")).send().await.unwrap().json().await.unwrap();
        let mut checked: Vec<String> = health["checks"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|list| {
                let c = &list[0];
                let n = c["name"].as_str()?;
                let store = n
                    .strip_suffix(":responseTime")
                    .filter(|_| c["componentType"].as_str().is_some_and(|t| t.starts_with("datastore/")));
                store.map(|s| format!("dep:{s}")).or_else(|| (n == "kafka:reachable").then(|| "dep:kafka".to_owned()))
            })
            .collect();
        checked.sort();
        let mut declared: Vec<String> =
            edges.iter().filter(|(f, t)| f == name && t.starts_with("dep:")).map(|(_, t)| t.clone()).collect();
        declared.sort();
        assert_eq!(declared, checked, "{name}: /dependencies vs its /health");
    }
    assert!(edges.contains(&("event-router".into(), "schema-registry".into())));

    let streams = [
        Recorder::start(format!("ws://{}:8030/ws/health?service=event-router,dep:kafka,incident:*", k1.address.ip))
            .await,
        Recorder::start(format!("ws://{}:8030/ws/health?service=event-router,dep:kafka,incident:*", k2.address.ip))
            .await,
    ];
    broker.signal("STOP");
    let stopped_at = std::time::Instant::now();
    for (s, observer) in streams.iter().zip(["k1", "k2"]) {
        let what = format!("{observer} streams dep:kafka failing, event-router impacted on both nodes, one incident");
        let seen = loom_testkit::eventually(&what, Duration::from_secs(20), || async {
            let mut last = stopped_at;
            for node in ["k1", "k2"] {
                last = last.max(s.first(|d| is(d, node, "dep:kafka", &["fail"]))?);
                last = last.max(s.first(|d| {
                    is(d, node, "event-router", &["impacted"]) && d["detail"]["root_cause"] == "dep:kafka"
                })?);
            }
            Some(last.max(s.first(|d| incident_with_root(d, "dep:kafka", "open"))?))
        })
        .await;
        let ms = seen.duration_since(stopped_at).as_millis();
        eprintln!("{observer}: broker stop streamed (both nodes' view + incident) {ms} ms after SIGSTOP");
        assert!(ms < 10_000, "detection bound: {ms} ms");
        assert_eq!(s.incident_ids().len(), 1, "{:?}", s.incident_ids());
    }
    let health: Value = http().get(k1.url(8030, "/health/cluster")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["checks"]["event-router:k2"][0]["status"], "impacted", "{health}");
    assert_eq!(health["checks"]["dep:kafka:k1"][0]["status"], "fail", "{health}");
    let incident = loom_testkit::eventually("the incident lists both nodes", Duration::from_secs(10), || async {
        let v: Value =
            http().get(k1.url(8030, "/incidents?state=open&limit=5")).send().await.ok()?.json().await.ok()?;
        let list = v["incidents"].as_array()?.clone();
        let i = list.first()?.clone();
        let affected = i["affected"].as_array()?;
        let has = |node: &str, c: &str, role: &str| {
            affected.iter().any(|a| a["node"] == node && a["component"] == c && a["role"] == role)
        };
        (list.len() == 1
            && has("k1", "event-router", "impacted")
            && has("k2", "event-router", "impacted")
            && has("k2", "dep:kafka", "failing"))
        .then_some(i)
    })
    .await;
    assert_eq!(incident["roots"], serde_json::json!(["dep:kafka"]));

    broker.signal("CONT");
    let resumed_at = std::time::Instant::now();
    for (s, observer) in streams.iter().zip(["k1", "k2"]) {
        let at = loom_testkit::eventually(
            &format!("{observer} streams the incident resolved"),
            Duration::from_secs(20),
            || async { s.first(|d| incident_with_root(d, "dep:kafka", "resolved")) },
        )
        .await;
        eprintln!("{observer}: recovery streamed {} ms after SIGCONT", at.duration_since(resumed_at).as_millis());
    }
    let id = incident["id"].as_str().unwrap();
    let one: Value = http().get(k1.url(8030, &format!("/incidents/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((one["state"].as_str(), one["roots"][0].as_str()), (Some("resolved"), Some("dep:kafka")), "{one}");
    let resolved: Value =
        http().get(k1.url(8030, "/incidents?state=resolved")).send().await.unwrap().json().await.unwrap();
    assert_eq!(resolved["incidents"][0]["id"], id, "{resolved}");
    // Every node records what it observed under its own name: k2 has its one incident too.
    let on_k2: Value = http().get(k2.url(8030, "/incidents")).send().await.unwrap().json().await.unwrap();
    let list = on_k2["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{on_k2}");
    assert_eq!(
        (list[0]["state"].as_str(), list[0]["roots"][0].as_str()),
        (Some("resolved"), Some("dep:kafka")),
        "{on_k2}"
    );
    // Bad queries are problems with stable codes.
    for (path, status, code) in [
        ("/incidents?state=closed", 422, "invalid_state"),
        ("/incidents?limit=100000", 422, "invalid_limit"),
        ("/incidents/nope", 404, "incident_not_found"),
    ] {
        let r = http().get(k1.url(8030, path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &streams {
        assert_eq!(s.incident_ids().len(), 1, "one incident from stop to recovery: {:?}", s.deltas());
    }
}

async fn get_json(url: String) -> Option<Value> {
    http().get(url).timeout(Duration::from_secs(5)).send().await.ok()?.json().await.ok()
}

async fn post_json(url: String, body: Value) -> (u16, Value) {
    let r = http().post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// This node's audit rows matching a query string (`action=restart&outcome=applied`).
async fn remediations(node: &loom_testkit::LoomNode, query: &str) -> Vec<Value> {
    let v = get_json(node.url(8030, &format!("/remediations?{query}"))).await.unwrap_or(Value::Null);
    v["remediations"].as_array().cloned().unwrap_or_default()
}

async fn restarts_of(node: &loom_testkit::LoomNode, port: u16, actor: &str) -> Option<(u64, String)> {
    let h = get_json(node.url(port, "/health")).await?;
    let c = &h["checks"][format!("{actor}:restarts")][0];
    Some((c["observedValue"].as_u64()?, h["status"].as_str()?.to_owned()))
}

/// Makes dedup's core actor hang (a stuck tree its supervisor does not notice); the request
/// itself waits for the delay, so it runs in the background.
fn hang_dedup(node: &loom_testkit::LoomNode) -> tokio::task::JoinHandle<()> {
    let url = node.url(8022, "/admin/faults");
    tokio::spawn(async move {
        let _ =
            http().post(url).json(&serde_json::json!({"actor": "core", "kind": "delay", "ms": 30_000})).send().await;
    })
}

const RESTART_RULE: &str = r#"
[node]
shutdown_timeout = "2s"
[health]
interval = "500ms"
timeout = "300ms"
failure_threshold = 2
success_threshold = 1
[[health.remediation.rules]]
name = "restart-stuck-dedup"
component = "dedup"
on = "fail"
action = "restart"
max_actions = 1
window = "10m"
"#;

#[tokio::test]
async fn a_stuck_service_tree_is_restarted_through_its_supervisor_once_per_window_and_audited() {
    let cookie = format!("remedy-{}", std::process::id());
    let r1 = start_member("r1", member_options(&cookie, &[]).config(RESTART_RULE)).await;
    let r2 = start_member("r2", member_options(&cookie, &[&r1]).config(RESTART_RULE)).await;
    wait_up(&[&r1, &r2], &["r1", "r2"], Duration::from_secs(15)).await;
    let local = Recorder::start(format!("ws://{}:8030/ws/health?service=remediation:*", r1.address.ip)).await;
    let remote = Recorder::start(format!("ws://{}:8030/ws/health?node=r1&service=dedup", r2.address.ip)).await;
    assert_eq!(restarts_of(&r1, 8022, "supervisor").await.map(|r| r.0), Some(0));

    // A stuck core: the liveness check fails, the rule restarts dedup's tree through the root.
    let hung = hang_dedup(&r1);
    let applied = loom_testkit::eventually("the restart in the audit trail", Duration::from_secs(30), || async {
        remediations(&r1, "action=restart&outcome=applied").await.into_iter().next()
    })
    .await;
    let want = [("node", "r1"), ("component", "dedup"), ("rule", "restart-stuck-dedup"), ("trigger", "fail")];
    for (field, value) in want {
        assert_eq!(applied[field], value, "{field}: {applied}");
    }
    loom_testkit::eventually("a fresh dedup tree, passing", Duration::from_secs(30), || async {
        (restarts_of(&r1, 8022, "supervisor").await? == (1, "pass".to_owned())).then_some(())
    })
    .await;
    hung.abort();
    // On the stream: the audit delta on r1, the stuck then recovered dedup of r1 on r2.
    let id = applied["id"].as_str().unwrap();
    loom_testkit::eventually("the remediation delta", Duration::from_secs(10), || async {
        local.first(|d| d["service"] == format!("remediation:{id}") && d["status"] == "applied").map(|_| ())
    })
    .await;
    let failed_at =
        loom_testkit::eventually("r1's dedup failing liveness, seen on r2", Duration::from_secs(10), || async {
            remote.first(|d| is(d, "r1", "dedup", &["fail"]) && d["detail"]["check"] == "liveness")
        })
        .await;
    loom_testkit::eventually("r1's dedup passing again, seen on r2", Duration::from_secs(20), || async {
        remote.deltas().into_iter().find(|(at, d)| *at >= failed_at && is(d, "r1", "dedup", &["pass"])).map(|_| ())
    })
    .await;

    // Stuck again within the window: the rule's limit refuses a second restart, audited.
    let hung = hang_dedup(&r1);
    let limited =
        loom_testkit::eventually("the refused restart in the audit trail", Duration::from_secs(30), || async {
            remediations(&r1, "rule=restart-stuck-dedup&outcome=rate_limited").await.into_iter().next()
        })
        .await;
    assert_eq!(limited["detail"]["limit"], "rule", "{limited}");
    assert_eq!(restarts_of(&r1, 8022, "supervisor").await.map(|r| r.0), Some(1), "no second restart");

    // The operator restarts it by hand (under the global limit) and may hold the node not ready.
    let (status, body) = post_json(
        r1.url(8030, "/admin/remediations"),
        serde_json::json!({"node": "r1", "service": "dedup", "action": "restart"}),
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str(), body["rule"].as_str()),
        (202, Some("applied"), Some("manual")),
        "{body}"
    );
    loom_testkit::eventually("the manual restart ends the hang", Duration::from_secs(30), || async {
        (restarts_of(&r1, 8022, "supervisor").await? == (2, "pass".to_owned())).then_some(())
    })
    .await;
    hung.abort();
    // (body, expected status, expected code)
    let refusals = [
        (serde_json::json!({"node": "r2", "service": "dedup", "action": "restart"}), 409, "other_node"),
        (serde_json::json!({"node": "r1", "service": "dedup", "action": "reboot"}), 422, "invalid_action"),
        (serde_json::json!({"node": "r1", "service": "nope", "action": "restart"}), 422, "unknown_service"),
        (serde_json::json!({"node": "r1", "action": "restart"}), 422, "service_required"),
    ];
    for (body, want_status, want_code) in refusals {
        let (status, got) = post_json(r1.url(8030, "/admin/remediations"), body.clone()).await;
        assert_eq!((status, got["code"].as_str()), (want_status, Some(want_code)), "{body}");
    }
    let (status, _) =
        post_json(r1.url(8030, "/admin/remediations"), serde_json::json!({"node": "r1", "action": "not_ready"})).await;
    assert_eq!(status, 202);
    let ready = http().get(r1.url(8010, "/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason: Value = ready.json().await.unwrap();
    assert!(reason["reason"].as_str().unwrap().starts_with("held not ready"), "{reason}");
    assert_eq!(http().get(r2.url(8010, "/ready")).send().await.unwrap().status(), 200, "r2 untouched");
    let (status, body) =
        post_json(r1.url(8030, "/admin/remediations"), serde_json::json!({"node": "r1", "action": "ready"})).await;
    assert_eq!((status, body["outcome"].as_str()), (202, Some("released")), "{body}");
    assert_eq!(http().get(r1.url(8010, "/ready")).send().await.unwrap().status(), 200);

    // The trail: filters, bounded pages with a cursor, newest first.
    let all = remediations(&r1, "limit=200").await;
    let actions: Vec<(&str, &str)> =
        all.iter().rev().map(|a| (a["action"].as_str().unwrap(), a["outcome"].as_str().unwrap())).collect();
    assert_eq!(
        actions,
        [
            ("restart", "applied"),
            ("restart", "rate_limited"),
            ("restart", "applied"),
            ("not_ready", "applied"),
            ("ready", "released")
        ]
    );
    let page = get_json(r1.url(8030, "/remediations?limit=2")).await.unwrap();
    assert_eq!(page["remediations"].as_array().unwrap().len(), 2);
    let next = page["next_before"].as_i64().unwrap();
    let rest = remediations(&r1, &format!("before={next}")).await;
    assert!(rest.iter().all(|a| a["time_ms"].as_i64().unwrap() < next) && !rest.is_empty());
    assert_eq!(get_json(r1.url(8030, "/remediations?limit=201")).await.unwrap()["code"], "invalid_limit");
    assert!(remediations(&r2, "").await.is_empty(), "r2 took no action");
}

const CIRCUIT_RULE: &str = r#"
[health]
interval = "200ms"
timeout = "150ms"
failure_threshold = 1
success_threshold = 1
[health.remediation]
flap_threshold = 3
flap_window = "60s"
cool_down = "5s"
[[health.remediation.rules]]
name = "hold-flapping-kafka"
component = "dep:kafka"
on = "flapping"
action = "open_circuit"
max_actions = 5
"#;

#[tokio::test]
async fn a_flapping_dependency_is_held_open_by_a_circuit_breaker_for_its_cool_down() {
    let broker = OwnBroker::start();
    loom_testkit::eventually("own broker listening", Duration::from_secs(15), || async {
        tokio::net::TcpStream::connect(&broker.brokers).await.ok().map(|_| ())
    })
    .await;
    let cookie = format!("circuit-{}", std::process::id());
    let opts = member_options(&cookie, &[]).env("LOOM_KAFKA_BROKERS", &broker.brokers).config(CIRCUIT_RULE);
    let c1 = start_member("c1", opts).await;
    let stream = Recorder::start(format!("ws://{}:8030/ws/health?node=c1&service=dep:kafka", c1.address.ip)).await;
    let kafka = || async {
        let v = get_json(c1.url(8030, "/dependencies")).await?;
        let k = v["nodes"].as_array()?.iter().find(|n| n["id"] == "dep:kafka")?.clone();
        k["nodes"]["c1"]["status"].as_str().map(str::to_owned)
    };
    loom_testkit::eventually("dep:kafka passing", Duration::from_secs(20), || async {
        (kafka().await? == "pass").then_some(())
    })
    .await;

    // Pause and resume the broker until the circuit opens (each pause and resume is a flip once
    // the probe saw it).
    let mut open = None;
    for _ in 0..10 {
        for (signal, status) in [("STOP", "fail"), ("CONT", "pass")] {
            broker.signal(signal);
            let _ = loom_testkit::eventually("the probe sees the flip", Duration::from_secs(10), || async {
                let circuits = get_json(c1.url(8030, "/circuits")).await?;
                let held = !circuits["circuits"].as_array()?.is_empty();
                (held || kafka().await? == status).then_some(())
            })
            .await;
        }
        let circuits = get_json(c1.url(8030, "/circuits")).await.unwrap();
        if let Some(c) = circuits["circuits"].as_array().unwrap().first() {
            open = Some(c.clone());
            break;
        }
    }
    let open = open.expect("the circuit opened");
    assert_eq!((open["node"].as_str(), open["component"].as_str()), (Some("c1"), Some("dep:kafka")));
    let opened = remediations(&c1, "action=open_circuit&outcome=applied").await;
    assert_eq!((opened.len(), opened[0]["trigger"].as_str()), (1, Some("flapping")), "{opened:?}");
    assert!(opened[0]["detail"]["flips"].as_u64().unwrap() > 3);

    // While open it stays `fail` (circuit open) whatever the broker does.
    broker.signal("STOP");
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.signal("CONT");
    let closed =
        loom_testkit::eventually("the circuit closes after its cool-down", Duration::from_secs(20), || async {
            remediations(&c1, "action=open_circuit&outcome=closed").await.into_iter().next()
        })
        .await;
    assert_eq!(closed["trigger"], "cool_down");
    loom_testkit::eventually("dep:kafka passing again", Duration::from_secs(20), || async {
        (kafka().await? == "pass").then_some(())
    })
    .await;
    let deltas: Vec<Value> = stream.deltas().into_iter().map(|(_, d)| d).collect();
    let first_open =
        deltas.iter().position(|d| d["detail"]["circuit"] == "open").expect("the open circuit was streamed");
    let reopened = deltas[first_open..].iter().position(|d| d["status"] == "pass").map(|i| i + first_open).unwrap();
    assert!(
        deltas[first_open..reopened].iter().all(|d| d["status"] == "fail" && d["detail"]["circuit"] == "open"),
        "held open without flapping: {:?}",
        &deltas[first_open..=reopened]
    );
    assert!(get_json(c1.url(8030, "/circuits")).await.unwrap()["circuits"].as_array().unwrap().is_empty());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_with_1008_and_memory_stays_bounded() {
    let node = loom_testkit::LoomNode::start_ready("slow-1", loom_testkit::NodeOptions::default()).await;
    let url = format!("ws://{}:8030/ws/health?service=remediation:*", node.address.ip);
    // A tiny receive buffer so the kernel cannot hide the stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(format!("{}:8030", node.address.ip).parse().unwrap()).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(&url, tcp).await.unwrap();
    assert_eq!(next_json(&mut slow, Duration::from_secs(5)).await["type"], "snapshot");
    let reader = Recorder::start(url.clone()).await;
    let before = rss_kib(node.pid());

    // Deltas: every operator request is audited and streamed (refused ones too, past the limit).
    // Enough to fill the kernel's buffers on loopback (the node's send buffer grows to 4 MiB)
    // and then the subscriber's 1,024-delta buffer.
    const DELTAS: usize = 16_000;
    let body = serde_json::json!({"node": "slow-1", "action": "ready"});
    let client = reqwest::Client::new(); // one client: building one per request costs more than the request
    futures::stream::iter(0..DELTAS)
        .for_each_concurrent(32, |_| {
            let (url, body, client) = (node.url(8030, "/admin/remediations"), body.clone(), client.clone());
            async move {
                let status = client.post(url).json(&body).send().await.unwrap().status().as_u16();
                assert!(status == 202 || status == 429, "{status}");
            }
        })
        .await;
    loom_testkit::eventually("the reading subscriber got every delta", Duration::from_secs(60), || async {
        (reader.deltas().iter().filter(|(_, d)| d["type"] == "delta").count() == DELTAS).then_some(())
    })
    .await;
    let after = rss_kib(node.pid());

    // The stalled one, read again: what the kernel held, then the close frame with its reason.
    let mut got = 0usize;
    let close = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), slow.next()).await;
        match next.unwrap_or_else(|_| panic!("no close after {got} of {DELTAS} deltas")) {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a reason"),
            Some(Ok(_)) => {}
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1008);
    let reason = close.reason.to_string();
    assert!(reason.starts_with("slow consumer:") && reason.contains("resume with ?since="), "{reason}");
    assert!(got < DELTAS, "dropped before the end ({got} of {DELTAS} delivered)");
    eprintln!("slow consumer: closed after {got} of {DELTAS} deltas; node RSS {before} KiB -> {after} KiB");
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // It resumes where the reason says.
    let since: u64 = reason.rsplit('=').next().unwrap().parse().unwrap();
    let (mut again, _) = connect_async(format!("{url}&since={since}")).await.unwrap();
    let opening = next_json(&mut again, Duration::from_secs(5)).await;
    assert!(opening["type"] == "resume" || opening["type"] == "snapshot", "{opening}");
}
