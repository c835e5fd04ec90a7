//! One truth per cluster: configuration written through one node is what every node serves.
//! On a shared PostgreSQL, each service's cluster-wide writes (router rules, privacy policies,
//! registry schemas, aggregation jobs, dedup policies, enrichment rules and places, quality monitors, devices) are read back
//! identically on the other nodes within 2 s, by a node started after the write too, and two
//! writes racing on two nodes end in one version history everywhere. Clustered on node-local
//! SQLite, the same writes answer 409 `cluster_store_required` while reads and the data plane
//! keep working.

// Tests print what they measured (how long the other nodes took to serve a write).
#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, eventually, http, infra};
use reqwest::Method;
use serde_json::{Value, json};

/// How soon the other nodes must serve a write (the bound).
const VISIBLE: Duration = Duration::from_secs(2);

async fn call(node: &LoomNode, port: u16, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(port, path)).timeout(Duration::from_secs(10));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// One cluster-wide resource of a service: where it is written and where it is read.
struct Case {
    what: &'static str,
    port: u16,
    create: (Method, &'static str, Value),
    read: String,
    /// A second write of the same resource, racing a third (both on different nodes).
    race: Option<(Method, String, Value, Value)>,
}

fn rule(priority: i64) -> Value {
    json!({"id": "truth-rule", "priority": priority, "match": "true", "actions": [{"route": {"topics": ["truth.out"]}}]})
}

fn privacy(description: &str) -> Value {
    json!({"name": "truth-policy", "description": description, "entities": ["email"],
           "operators": {"EMAIL_ADDRESS": {"type": "hash"}}})
}

fn job(size: &str) -> Value {
    json!({"id": "truth-job", "time": {"field": "/ts"}, "key": ["/device"], "window": {"type": "tumbling", "size": size},
           "aggregates": [{"name": "n", "fn": "count"}], "allowed_lateness": "30s", "idle_timeout": "5s", "emit": "final"})
}

fn dedup(window: &str) -> Value {
    json!({"id": "truth-dedup", "identity": {"fields": ["/device", "/seq"]}, "window": {"time": window}, "keep": "first"})
}

fn enrich_rule(label: &str) -> Value {
    json!({"id": "truth-enrich", "when": "true", "set": {"/context/label": label}})
}

fn fence(radius: f64) -> Value {
    json!({"id": "truth-place", "point": {"lat": 48.1374, "lon": 11.5755}, "radius_m": radius})
}

fn calendar(summary: &str) -> Value {
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//loom//truth//EN\r\nBEGIN:VEVENT\r\nUID:t\r\n\
         SUMMARY:{summary}\r\nDTSTART:20260105T090000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    json!({"ics": ics})
}

fn monitor(window: &str) -> Value {
    json!({"id": "truth-monitor", "time": {"field": "/ts"}, "window": window, "group_by": [],
           "fields": {"/speed": {"required": true, "range": [0, 200]}}})
}

/// A JSON schema told apart by its title only, so each version is compatible with the last.
fn schema(title: &str) -> Value {
    let s = json!({"type": "object", "title": title, "properties": {"speed": {"type": "number"}}}).to_string();
    json!({"schemaType": "JSON", "schema": s})
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "router rule",
            port: 8013,
            create: (Method::POST, "/rules", rule(1)),
            read: "/rules/truth-rule".into(),
            race: Some((Method::PUT, "/rules/truth-rule".into(), rule(2), rule(3))),
        },
        Case {
            what: "privacy policy",
            port: 8011,
            create: (Method::POST, "/policies", privacy("first")),
            read: "/policies/truth-policy".into(),
            race: Some((Method::PUT, "/policies/truth-policy".into(), privacy("second"), privacy("third"))),
        },
        Case {
            what: "registry schema",
            port: 8010,
            create: (Method::POST, "/subjects/truth-subject/versions", schema("a")),
            read: "/subjects/truth-subject/versions".into(),
            race: Some((Method::POST, "/subjects/truth-subject/versions".into(), schema("b"), schema("c"))),
        },
        Case {
            what: "aggregation job",
            port: 8020,
            create: (Method::POST, "/jobs", job("1m")),
            read: "/jobs/truth-job".into(),
            race: Some((Method::PUT, "/jobs/truth-job".into(), job("2m"), job("5m"))),
        },
        Case {
            what: "dedup policy",
            port: 8022,
            create: (Method::POST, "/policies", dedup("10m")),
            read: "/policies/truth-dedup".into(),
            race: Some((Method::PUT, "/policies/truth-dedup".into(), dedup("20m"), dedup("30m"))),
        },
        Case {
            what: "enrichment rule",
            port: 8023,
            create: (Method::POST, "/rules", enrich_rule("a")),
            read: "/rules/truth-enrich".into(),
            race: Some((Method::PUT, "/rules/truth-enrich".into(), enrich_rule("b"), enrich_rule("c"))),
        },
        Case {
            what: "enrichment place",
            port: 8023,
            create: (Method::POST, "/places", fence(100.0)),
            read: "/places/truth-place".into(),
            race: Some((Method::PUT, "/places/truth-place".into(), fence(200.0), fence(300.0))),
        },
        Case {
            what: "enrichment calendar",
            port: 8023,
            create: (Method::PUT, "/calendars/truth-subject", calendar("a")),
            read: "/calendars/truth-subject".into(),
            race: Some((Method::PUT, "/calendars/truth-subject".into(), calendar("b"), calendar("c"))),
        },
        Case {
            what: "quality monitor",
            port: 8031,
            create: (Method::POST, "/monitors", monitor("10m")),
            read: "/monitors/truth-monitor".into(),
            race: Some((Method::PUT, "/monitors/truth-monitor".into(), monitor("20m"), monitor("30m"))),
        },
    ]
}

/// The parts of a read that are the stored truth (per-node runtime figures such as a job's
/// live counters are not configuration).
fn truth(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for volatile in ["stats", "runtime", "state", "lag", "owner", "progress"] {
            o.remove(volatile);
        }
    }
    v
}

async fn same_everywhere(what: &str, nodes: &[&LoomNode], port: u16, path: &str, within: Duration) -> Value {
    let started = Instant::now();
    let (s, want) = call(nodes[0], port, Method::GET, path, None).await;
    assert_eq!(s, 200, "{what}: GET {path} on {}: {want}", nodes[0].name);
    let want = truth(&want);
    for node in &nodes[1..] {
        let label = format!("{what} on {} equal to {}", node.name, nodes[0].name);
        eventually(&label, within, || {
            let want = want.clone();
            async move {
                let (s, got) = call(node, port, Method::GET, path, None).await;
                (s == 200 && truth(&got) == want).then_some(())
            }
        })
        .await;
    }
    eprintln!("{what}: served identically by {} nodes after {:?}", nodes.len(), started.elapsed());
    want
}

#[tokio::test]
async fn cluster_wide_configuration_is_one_truth_on_a_shared_database() {
    let db = infra::fresh_postgres_database("one_truth").await;
    let cookie = format!("truth-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| {
        member_options(&cookie, seeds)
            .env("LOOM_DATABASE_URL", &db)
            .env("LOOM_DEVICE_MASTER_KEY", "8d4f0c2a9b1e7d3c5a6f8e0b2d4c6a8e1f3b5d7c9e0a2c4e6b8d0f1a3c5e7b9d")
    };
    let n1 = start_member("t1", opts(&[])).await;
    let n2 = start_member("t2", opts(&[&n1])).await;
    wait_up(&[&n1, &n2], &["t1", "t2"], Duration::from_secs(15)).await;

    // Written on the first node, served by the second within 2 s.
    let cases = cases();
    for c in &cases {
        let (method, path, body) = &c.create;
        let (s, v) = call(&n1, c.port, method.clone(), path, Some(body.clone())).await;
        assert!((200..300).contains(&s), "{}: {method} {path}: {s} {v}", c.what);
        same_everywhere(c.what, &[&n1, &n2], c.port, &c.read, VISIBLE).await;
    }
    let (s, device) = call(
        &n1,
        8012,
        Method::POST,
        "/devices",
        Some(
            json!({"platform": "android", "model": "Pixel 8", "app_instance_id": "truth-app", "serial": "SN-TRUTH-1"}),
        ),
    )
    .await;
    assert!(s == 200 || s == 201, "{s} {device}");
    let device_path = format!("/devices/{}", device["device_id"].as_str().expect("device_id"));
    same_everywhere("device", &[&n1, &n2], 8012, &device_path, VISIBLE).await;

    // A node started after the writes serves them too.
    let n3 = start_member("t3", opts(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["t1", "t2", "t3"], Duration::from_secs(15)).await;
    for c in &cases {
        same_everywhere(c.what, &[&n1, &n3], c.port, &c.read, VISIBLE).await;
    }
    same_everywhere("device", &[&n1, &n3], 8012, &device_path, VISIBLE).await;

    // Two writes of one resource racing on two nodes: both land, one after the other, and every
    // node ends on the same last version.
    for c in &cases {
        let Some((method, path, a, b)) = &c.race else { continue };
        let (ra, rb) = tokio::join!(
            call(&n2, c.port, method.clone(), path, Some(a.clone())),
            call(&n3, c.port, method.clone(), path, Some(b.clone())),
        );
        assert!((200..300).contains(&ra.0), "{}: racing write on t2: {ra:?}", c.what);
        assert!((200..300).contains(&rb.0), "{}: racing write on t3: {rb:?}", c.what);
        let last = same_everywhere(c.what, &[&n1, &n2, &n3], c.port, &c.read, VISIBLE).await;
        let versions = match &last {
            Value::Array(vs) => vs.len() as i64,
            v => v["version"].as_i64().unwrap_or_else(|| panic!("{}: no version in {v}", c.what)),
        };
        assert_eq!(versions, 3, "{}: the create and both racing writes are versions 1..3: {last}", c.what);
    }
}

#[tokio::test]
async fn clustered_on_node_local_databases_cluster_wide_writes_answer_409() {
    let cookie = format!("local-{}", std::process::id());
    let n1 = start_member("l1", member_options(&cookie, &[])).await;
    let n2 = start_member("l2", member_options(&cookie, &[&n1])).await;
    wait_up(&[&n1, &n2], &["l1", "l2"], Duration::from_secs(15)).await;

    for node in [&n1, &n2] {
        for c in cases() {
            let (method, path, body) = c.create;
            let (s, v) = call(node, c.port, method.clone(), path, Some(body)).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (409, Some("cluster_store_required")),
                "{}: {method} {path}: {v}",
                c.what
            );
            assert!(v["detail"].as_str().unwrap().contains("LOOM_DATABASE_URL"), "{v}");
            // Reads still work (and find nothing was stored).
            let (s, _) = call(node, c.port, Method::GET, &c.read, None).await;
            assert_eq!(s, 404, "{}: GET {} after a refused write", c.what, c.read);
        }
        let (s, v) = call(node, 8012, Method::POST, "/devices", Some(json!({"platform": "android"}))).await;
        assert_eq!((s, v["code"].as_str()), (409, Some("cluster_store_required")), "{v}");

        // The data plane is not cluster-wide configuration: it keeps answering.
        let data_plane = [
            (8013, "/rules/test", json!({"event": {"a": 1}})),
            (8011, "/analyze", json!({"text": "mail me at a@example.com", "language": "en"})),
            (8010, "/subjects/none", schema("a")),
            (8031, "/monitors/none/records", json!({"records": []})),
            (8020, "/jobs/none/events", json!({"events": []})),
            (8022, "/check", json!({"policy": "none", "events": []})),
        ];
        for (port, path, body) in data_plane {
            let (s, v) = call(node, port, Method::POST, path, Some(body)).await;
            assert!(s != 409 && s < 500, "POST {path} on {port}: {s} {v}");
        }
    }
}
