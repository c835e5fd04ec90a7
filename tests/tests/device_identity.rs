//! Device Identity over real sockets: keyed v8 ids, determinism and unlinkability, fingerprint
//! matching on re-install and update, enrichment, linking (transitive groups, unlink splits,
//! guardrails), no raw identifier in the database or logs, key rotation, and concurrent links on
//! three nodes sharing PostgreSQL converging to the same groups.

use std::collections::BTreeSet;
use std::time::Duration;

use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::{Value, json};

const DEV: u16 = 8012;

async fn post(node: &LoomNode, path: &str, body: Value) -> (u16, Value) {
    let resp = http().post(node.url(DEV, path)).json(&body).send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(node: &LoomNode, path: &str) -> (u16, Value) {
    let resp = http().get(node.url(DEV, path)).send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn register(node: &LoomNode, body: Value) -> Value {
    let (status, v) = post(node, "/devices", body).await;
    assert!(status == 200 || status == 201, "{status} {v}");
    v
}

fn pixel(app: &str) -> Value {
    json!({"platform": "android", "model": "Pixel 8", "os": "Android", "os_version": "15", "app_instance_id": app,
           "serial": "SN-RAW-SERIAL-0001", "mac": "AA:BB:CC:00:11:22", "screen": "1080x2400", "locale": "it-IT", "timezone": "Europe/Rome"})
}

fn browser(app: &str, os_version: &str, locale: &str) -> Value {
    json!({"platform": "web", "app_instance_id": app, "os_version": os_version, "screen": "1920x1080", "locale": locale, "timezone": "Europe/Rome",
           "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"})
}

async fn members(node: &LoomNode, id: &str) -> BTreeSet<String> {
    let (s, g) = get(node, &format!("/devices/{id}/group")).await;
    assert_eq!(s, 200, "{g}");
    g["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn registration_is_keyed_deterministic_private_and_matches_reinstalls() {
    let db = infra::fresh_postgres_database("devices").await;
    let node = LoomNode::start_ready("devices", NodeOptions::default().env("LOOM_DATABASE_URL", &db)).await;

    let a = register(&node, pixel("app-1")).await;
    let id = a["device_id"].as_str().unwrap().to_owned();
    let parsed = get(&node, &format!("/ids/{id}")).await.1;
    assert_eq!(
        (parsed["version"].clone(), parsed["variant"].clone(), parsed["key_period"].clone()),
        (json!(8), json!("RFC4122"), json!(1))
    );
    assert_eq!(a["status"], "created");
    // Same hardware, new app install: the same id, matched by identifier.
    let again = register(&node, pixel("app-2")).await;
    assert_eq!((again["device_id"].as_str(), again["matched_by"].as_str()), (Some(id.as_str()), Some("identifier")));
    // Another tenant: an unrelated id.
    let mut other = pixel("app-1");
    other["tenant"] = json!("globex");
    assert_ne!(register(&node, other).await["device_id"], a["device_id"]);

    // A browser has no hardware ids: a re-install (new app id) is matched by fingerprint, an OS
    // update with lower confidence, a different browser profile is a new device.
    let b = register(&node, browser("web-1", "15.1", "it-IT")).await;
    assert_eq!(b["enrichment"]["user_agent"]["browser"], "Firefox");
    assert_eq!(b["enrichment"]["user_agent"]["os"], "Linux");
    let reinstall = register(&node, browser("web-2", "15.1", "it-IT")).await;
    assert_eq!(
        (reinstall["device_id"].clone(), reinstall["matched_by"].clone()),
        (b["device_id"].clone(), json!("fingerprint"))
    );
    let updated = register(&node, browser("web-3", "15.2", "it-IT")).await;
    assert_eq!(updated["device_id"], b["device_id"]);
    assert!(
        updated["confidence"].as_f64().unwrap() < reinstall["confidence"].as_f64().unwrap(),
        "{updated} vs {reinstall}"
    );
    let router = register(&node, json!({"platform": "linux", "mac": "00:00:0C:12:34:56"})).await;
    assert_eq!(router["enrichment"]["mac_vendor"], "Cisco Systems, Inc", "{router}");
    let stranger = register(&node, browser("web-4", "15.1", "en-US")).await;
    assert_eq!(stranger["status"], "created");
    assert_ne!(stranger["device_id"], b["device_id"]);

    // Reads and metadata; identifiers only by name.
    let (s, d) = get(&node, &format!("/devices/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(d["identifiers"], json!(["app_instance_id", "mac", "serial"]));
    let patched = http()
        .patch(node.url(DEV, &format!("/devices/{id}")))
        .json(&json!({"metadata": {"owner": "fleet-7"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.json::<Value>().await.unwrap()["metadata"]["owner"], "fleet-7");

    // No raw identifier anywhere: database rows, logs, responses.
    let dump = tokio::process::Command::new("pg_dump").args(["--data-only", &db]).output().await.expect("pg_dump runs");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout).to_lowercase();
    assert!(dump.contains("di_devices"), "the dump covers the device tables");
    for raw in ["sn-raw-serial-0001", "aa:bb:cc:00:11:22", "app-1", "web-1"] {
        assert!(!dump.contains(raw), "raw identifier {raw} stored");
        assert!(!node.stdout().to_lowercase().contains(raw), "raw identifier {raw} logged");
        assert!(!d.to_string().to_lowercase().contains(raw), "raw identifier {raw} returned");
    }

    // Rotating the key rotates ids; deleting a device erases it.
    let rotated =
        http().post(node.url(DEV, "/admin/keys/default/rotate")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(rotated["period"], 2);
    let after = register(&node, pixel("app-1")).await;
    assert_ne!(after["device_id"], a["device_id"]);
    assert_eq!(after["key_period"], 2);
    let del = http().delete(node.url(DEV, &format!("/devices/{id}"))).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(get(&node, &format!("/devices/{id}")).await.0, 404);

    // Bad input: clear 4xx.
    let cases: &[(&str, Value, u16)] = &[
        ("/devices", json!({}), 400),
        ("/devices", json!({"platform": "x".repeat(600)}), 400),
        ("/devices", json!({"platform": "android", "color": "red"}), 422),
        ("/link", json!({"device_ids": ["a"], "confidence_score": 0.9}), 400),
        ("/link", json!({"device_ids": [a["device_id"], b["device_id"]], "confidence_score": 1.5}), 400),
        (
            "/link",
            json!({"device_ids": ["00000000-0000-0000-0000-000000000000", b["device_id"]], "confidence_score": 0.9}),
            422,
        ),
        ("/link", json!({"device_ids": [b["device_id"], b["device_id"]], "confidence_score": 0.9}), 400),
        (
            "/link",
            json!({"device_ids": [b["device_id"], "0191e0c1-0000-7000-8000-000000000000"], "confidence_score": 0.9}),
            404,
        ),
    ];
    for (path, body, want) in cases {
        let (status, v) = post(&node, path, body.clone()).await;
        assert_eq!(status, *want, "{path} {body}: {v}");
    }
    assert_eq!(get(&node, "/ids/not-a-uuid").await.0, 400);
}

#[tokio::test]
async fn links_form_transitive_groups_that_split_on_unlink_and_refuse_over_merges() {
    let node = LoomNode::start_ready("links", NodeOptions::default()).await;
    let mut ids = Vec::new();
    for i in 0..52 {
        let v = register(&node, json!({"platform": "ios", "serial": format!("serial-{i}"), "model": "iPhone"})).await;
        ids.push(v["device_id"].as_str().unwrap().to_owned());
    }
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let (s, g) = post(
        &node,
        "/link",
        json!({"device_ids": [a, b], "confidence_score": 0.95, "evidence": {"login": "same account"}}),
    )
    .await;
    assert_eq!(s, 200, "{g}");
    post(&node, "/link", json!({"device_ids": [b, c], "confidence_score": 0.9})).await;
    post(&node, "/link", json!({"device_ids": [c, d], "confidence_score": 0.3})).await;
    assert_eq!(members(&node, a).await, [a, b, c].into_iter().cloned().collect());
    let (_, g) = get(&node, &format!("/devices/{a}/group")).await;
    assert!(g["edges"].as_array().unwrap().iter().any(|e| e["evidence"]["login"] == "same account"), "{g}");
    assert_eq!(members(&node, d).await, [d.clone()].into_iter().collect(), "a weak link does not join");

    let unlink = http().delete(node.url(DEV, &format!("/links/{c}/{b}"))).send().await.unwrap();
    assert_eq!(unlink.status(), 204);
    assert_eq!(members(&node, a).await, [a, b].into_iter().cloned().collect());
    assert_eq!(members(&node, c).await, [c.clone()].into_iter().collect());

    // Guardrail: a chain may grow to 50 devices, not 51.
    for w in ids[4..50].windows(2) {
        let (s, v) = post(&node, "/link", json!({"device_ids": [w[0], w[1]], "confidence_score": 0.9})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, _) = post(&node, "/link", json!({"device_ids": [ids[49], a], "confidence_score": 0.9})).await;
    assert_eq!(s, 200, "46 + 2 = 48 devices");
    let (s, _) = post(&node, "/link", json!({"device_ids": [ids[50], a], "confidence_score": 0.9})).await;
    assert_eq!(s, 200, "49 devices");
    let (s, _) = post(&node, "/link", json!({"device_ids": [ids[51], c], "confidence_score": 0.9})).await;
    assert_eq!(s, 200);
    let (s, v) = post(&node, "/link", json!({"device_ids": [ids[51], a], "confidence_score": 0.9})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("group_too_large")), "{v}");
}

#[tokio::test]
async fn concurrent_links_on_three_nodes_converge_to_the_same_groups() {
    let db = infra::fresh_postgres_database("devices_cluster").await;
    let cookie = format!("devices-cluster-{}", std::process::id());
    let options = |seeds: &[&LoomNode]| member_options(&cookie, seeds).env("LOOM_DATABASE_URL", &db);
    let n1 = start_member("d1", options(&[])).await;
    let n2 = start_member("d2", options(&[&n1])).await;
    let n3 = start_member("d3", options(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["d1", "d2", "d3"], Duration::from_secs(10)).await;
    let nodes = [&n1, &n2, &n3];

    // The same device registered on every node at once: one id.
    let regs = futures::future::join_all(nodes.iter().map(|n| register(n, pixel("same")))).await;
    assert!(regs.iter().all(|r| r["device_id"] == regs[0]["device_id"]), "{regs:?}");

    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            register(nodes[i % 3], json!({"platform": "android", "serial": format!("c-{i}")})).await["device_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Two chains of six linked concurrently through all nodes.
    let links = (0..12).filter(|i| i % 6 != 5).map(|i| {
        let node = nodes[i % 3];
        let body = json!({"device_ids": [ids[i], ids[i + 1]], "confidence_score": 0.9});
        async move { post(node, "/link", body).await }
    });
    for (s, v) in futures::future::join_all(links).await {
        assert_eq!(s, 200, "{v}");
    }
    let first: BTreeSet<String> = ids[..6].iter().cloned().collect();
    let second: BTreeSet<String> = ids[6..].iter().cloned().collect();
    for node in nodes {
        for id in &ids[..6] {
            assert_eq!(members(node, id).await, first, "{} sees {id}", node.name);
        }
        assert_eq!(members(node, &ids[7]).await, second);
    }
}
