//! Device Identity over real sockets: keyed v8 ids, determinism and unlinkability, fingerprint
//! matching on re-install and update, enrichment, linking (transitive groups, unlink splits,
//! guardrails, per-identifier-type limits), no raw identifier, subject or key in the database or
//! logs, tenant keys sealed under the master key (plaintext rows resealed, a wrong key refused),
//! GDPR erasure, key rotation, and three nodes sharing PostgreSQL routing writes to each key's
//! owner and converging to the same groups.

use std::collections::BTreeSet;
use std::time::Duration;

use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};

const DEV: u16 = 8012;
const MASTER_KEY: &str = "8d4f0c2a9b1e7d3c5a6f8e0b2d4c6a8e1f3b5d7c9e0a2c4e6b8d0f1a3c5e7b9d";

async fn psql(db: &str, sql: &str) -> String {
    let out = tokio::process::Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-At", db, "-c", sql])
        .output()
        .await
        .expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn pg_dump(db: &str) -> String {
    let dump = tokio::process::Command::new("pg_dump").args(["--data-only", db]).output().await.expect("pg_dump runs");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    String::from_utf8_lossy(&dump.stdout).to_lowercase()
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

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
    let options = || NodeOptions::default().env("LOOM_DATABASE_URL", &db).env("LOOM_DEVICE_MASTER_KEY", MASTER_KEY);
    let node = LoomNode::start_ready("devices", options()).await;

    let mut first = pixel("app-1");
    first["subject_id"] = json!("subject-raw-alice");
    let a = register(&node, first).await;
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

    // No raw identifier or subject anywhere: database rows, logs, responses.
    let dump = pg_dump(&db).await;
    assert!(dump.contains("di_devices") && dump.contains("di_subjects"), "the dump covers the device tables");
    assert_eq!(d["subject"], true, "{d}");
    for raw in ["sn-raw-serial-0001", "aa:bb:cc:00:11:22", "app-1", "web-1", "subject-raw-alice"] {
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
    drop(node);
    tenant_keys_are_sealed_at_rest(&db, options).await;
}

/// Every tenant key row is sealed; a plaintext row from before encryption stays usable and is
/// resealed at start without changing ids; the raw key bytes are in no dump; a node with another
/// master key, or none on a shared database, refuses clearly.
async fn tenant_keys_are_sealed_at_rest(db: &str, options: impl Fn() -> NodeOptions) {
    let secrets = psql(db, "SELECT secret FROM di_keys ORDER BY id").await;
    assert!(!secrets.is_empty());
    for secret in secrets.lines() {
        assert!(secret.starts_with("aesgcm1:"), "sealed: {secret}");
    }
    // A plaintext key as rows were stored before encryption.
    let raw_key = "5eed5eed00112233445566778899aabbccddeeff0123456789abcdef5eed5eed";
    psql(
        db,
        &format!("INSERT INTO di_keys (tenant, period, secret, retired) VALUES ('legacy', 1, '{raw_key}', false)"),
    )
    .await;
    let legacy = json!({"tenant": "legacy", "platform": "android", "serial": "legacy-serial"});
    let node = LoomNode::start_ready("devices-sealed", options()).await;
    let created = register(&node, legacy.clone()).await;
    assert_eq!(created["key_period"], 1, "{created}");
    eventually("the plaintext key resealed at start", Duration::from_secs(10), || async {
        psql(db, "SELECT secret FROM di_keys WHERE tenant = 'legacy'").await.starts_with("aesgcm1:").then_some(())
    })
    .await;
    let again = register(&node, legacy.clone()).await;
    assert_eq!((again["device_id"].clone(), again["status"].clone()), (created["device_id"].clone(), json!("matched")));
    let dump = pg_dump(db).await;
    assert!(dump.contains("di_keys"), "the dump covers the key table");
    assert!(!dump.contains(raw_key), "raw key bytes (hex) in the dump");
    for secret in psql(db, "SELECT secret FROM di_keys").await.lines() {
        assert!(secret.starts_with("aesgcm1:") && secret.len() > 64, "{secret}");
    }
    assert!(!node.stdout().contains(raw_key) && !node.stdout().contains(MASTER_KEY), "no key in the logs");
    drop(node);

    let wrong = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let node = LoomNode::start_ready("devices-wrong-key", options().env("LOOM_DEVICE_MASTER_KEY", wrong)).await;
    let (s, v) = post(&node, "/devices", legacy.clone()).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("device_key_unreadable")), "{v}");
    drop(node);
    let node = LoomNode::start_ready("devices-no-key", NodeOptions::default().env("LOOM_DATABASE_URL", db)).await;
    let (s, v) = post(&node, "/devices", legacy).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("master_key_required")), "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("LOOM_DEVICE_MASTER_KEY"), "{v}");
    let (s, _) = get(&node, &format!("/devices/{}", created["device_id"].as_str().unwrap())).await;
    assert_eq!(s, 200, "reads need no key");
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
async fn shared_identifiers_link_a_limited_number_of_devices() {
    let node = LoomNode::start_ready(
        "limits",
        NodeOptions::default().env("LOOM_DEVICE_IDENTIFIER_LIMITS", "wifi=3,household=2"),
    )
    .await;
    let phone = |i: usize| json!({"platform": "android", "serial": format!("lim-{i}"), "shared_identifiers": {"wifi": "Office-Net-Raw", "ip": "198.51.100.7"}});
    let mut ids = Vec::new();
    for i in 0..3 {
        let v = register(&node, phone(i)).await;
        ids.push(v["device_id"].as_str().unwrap().to_owned());
    }
    // A fourth device on the office wifi is refused, naming the type and limit, not the value.
    let (s, v) = post(&node, "/devices", phone(3)).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("identifier_limit")), "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("`wifi`") && detail.contains("at most 3 devices"), "{detail}");
    for raw in ["office-net-raw", "198.51.100.7"] {
        assert!(!v.to_string().to_lowercase().contains(raw), "{v}");
        assert!(!node.stdout().to_lowercase().contains(raw), "raw shared identifier {raw} logged");
    }
    // The refusal wrote nothing: without the wifi the same device is new.
    let (s, v) = post(&node, "/devices", json!({"platform": "android", "serial": "lim-3"})).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("created")), "{v}");
    let fourth = v["device_id"].as_str().unwrap().to_owned();
    // Devices already linked by the value are not refused again; the type shows by name only.
    let (s, v) = post(&node, "/devices", phone(0)).await;
    assert_eq!((s, v["device_id"].as_str()), (200, Some(ids[0].as_str())), "{v}");
    let (_, d) = get(&node, &format!("/devices/{}", ids[0])).await;
    assert_eq!(d["shared_identifiers"], json!(["ip", "wifi"]), "{d}");

    // Links resting on a household: at most two devices per household value.
    let household =
        |a: &str, b: &str| json!({"device_ids": [a, b], "confidence_score": 0.9, "identifiers": {"household": "H-17"}});
    let (s, v) = post(&node, "/link", household(&ids[0], &ids[1])).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(&node, "/link", household(&ids[2], &fourth)).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("identifier_limit")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("`household` identifier may link at most 2"), "{v}");
    assert_eq!(members(&node, &ids[2]).await, [ids[2].clone()].into_iter().collect(), "a refused link is not written");
    let cases: &[(Value, u16)] = &[
        (json!({"device_ids": [ids[2], fourth], "confidence_score": 0.9, "identifiers": {"mac": "x"}}), 400),
        (json!({"device_ids": [ids[2], fourth], "confidence_score": 0.9, "identifiers": {"ip": "not-an-ip"}}), 400),
        (json!({"device_ids": [ids[2], fourth], "confidence_score": 0.9, "identifiers": {"household": "H-18"}}), 200),
    ];
    for (body, want) in cases {
        let (s, v) = post(&node, "/link", body.clone()).await;
        assert_eq!(s, *want, "{body}: {v}");
    }
}

#[tokio::test]
async fn erasure_removes_every_device_of_a_subject_and_nothing_else() {
    let node = LoomNode::start_ready("erasure", NodeOptions::default()).await;
    let device = |serial: &str, subject: &str| json!({"platform": "ios", "serial": serial, "subject_id": subject, "metadata": {"k": "v"}, "shared_identifiers": {"account": "acct-1"}});
    let a1 = register(&node, device("e-a1", "alice")).await["device_id"].as_str().unwrap().to_owned();
    let a2 = register(&node, device("e-a2", "alice")).await["device_id"].as_str().unwrap().to_owned();
    let b1 = register(&node, device("e-b1", "bob")).await["device_id"].as_str().unwrap().to_owned();
    // A device without a subject at registration joins alice through PATCH, another leaves.
    let a3 = register(&node, json!({"platform": "web", "app_instance_id": "e-a3"})).await["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |id: &str, body: Value| http().patch(node.url(DEV, &format!("/devices/{id}"))).json(&body);
    let (s, v) = send(patch(&a3, json!({"subject_id": "alice"}))).await;
    assert_eq!((s, v["subject"].clone()), (200, json!(true)), "{v}");
    let b2 = register(&node, device("e-b2", "alice")).await["device_id"].as_str().unwrap().to_owned();
    let (s, v) = send(patch(&b2, json!({"subject_id": null}))).await;
    assert_eq!((s, v["subject"].clone()), (200, json!(false)), "{v}");
    assert_eq!(send(patch(&b2, json!({"subject_id": 7}))).await.0, 400);
    for pair in [[&a1, &a2], [&a2, &b1], [&b1, &b2]] {
        let (s, v) = post(&node, "/link", json!({"device_ids": pair, "confidence_score": 0.9})).await;
        assert_eq!(s, 200, "{v}");
    }

    let erase = || post(&node, "/admin/erasure", json!({"job_id": "job-1", "subject_id": "alice"}));
    let (s, report) = erase().await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["service"], "device-identity");
    assert_eq!(report["served_by"], "erasure");
    let counts: Value = report["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["kind"].as_str().unwrap().to_owned(), i["count"].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(
        counts,
        json!({"devices": 3, "links": 2, "identifier_hashes": 3, "shared_identifiers": 2, "fingerprints": 3, "metadata": 2}),
        "{report}"
    );
    for gone in [&a1, &a2, &a3] {
        assert_eq!(get(&node, &format!("/devices/{gone}")).await.0, 404, "{gone} erased");
    }
    for kept in [&b1, &b2] {
        assert_eq!(get(&node, &format!("/devices/{kept}")).await.0, 200, "{kept} kept");
    }
    assert_eq!(members(&node, &b1).await, [b1.clone(), b2.clone()].into_iter().collect(), "alice's links are gone");
    // Idempotent: a second run erases nothing.
    let (s, again) = erase().await;
    assert_eq!(s, 200);
    assert!(again["erased"].as_array().unwrap().iter().all(|i| i["count"] == 0), "{again}");
    assert_eq!(again["erased"].as_array().unwrap().len(), 6);
    // Bob is still there to erase; a subject in another tenant is not touched by a tenant-scoped job.
    let (_, bob) =
        post(&node, "/admin/erasure", json!({"job_id": "job-2", "subject_id": "bob", "tenant": "globex"})).await;
    assert!(bob["erased"].as_array().unwrap().iter().all(|i| i["count"] == 0), "{bob}");
    let (_, bob) =
        post(&node, "/admin/erasure", json!({"job_id": "job-3", "subject_id": "bob", "tenant": "default"})).await;
    assert_eq!(bob["erased"][0], json!({"kind": "devices", "count": 1}), "{bob}");
    assert_eq!(post(&node, "/admin/erasure", json!({"job_id": "job-4", "subject_id": ""})).await.0, 400);
    assert!(!node.stdout().contains("alice"), "the subject id is never logged");
}

#[tokio::test]
async fn concurrent_links_on_three_nodes_converge_to_the_same_groups() {
    let db = infra::fresh_postgres_database("devices_cluster").await;
    let cookie = format!("devices-cluster-{}", std::process::id());
    let options = |seeds: &[&LoomNode]| {
        member_options(&cookie, seeds).env("LOOM_DATABASE_URL", &db).env("LOOM_DEVICE_MASTER_KEY", MASTER_KEY)
    };
    let n1 = start_member("d1", options(&[])).await;
    let n2 = start_member("d2", options(&[&n1])).await;
    let n3 = start_member("d3", options(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["d1", "d2", "d3"], Duration::from_secs(10)).await;
    let nodes = [&n1, &n2, &n3];

    // The same device registered on every node at once: one id, all served by one owner.
    let regs = futures::future::join_all(nodes.iter().map(|n| register(n, pixel("same")))).await;
    assert!(regs.iter().all(|r| r["device_id"] == regs[0]["device_id"]), "{regs:?}");
    assert!(regs.iter().all(|r| r["served_by"] == regs[0]["served_by"]), "one owner serves a device: {regs:?}");
    assert_eq!(regs.iter().filter(|r| r["status"] == "created").count(), 1, "{regs:?}");

    let mut ids = Vec::new();
    let mut servers = BTreeSet::new();
    for i in 0..12 {
        let body = json!({"platform": "android", "serial": format!("c-{i}")});
        let first = register(nodes[i % 3], body.clone()).await;
        // Through another node: the same owner.
        let again = register(nodes[(i + 1) % 3], body).await;
        assert_eq!(first["served_by"], again["served_by"], "{first} {again}");
        servers.insert(first["served_by"].as_str().unwrap().to_owned());
        ids.push(first["device_id"].as_str().unwrap().to_owned());
    }
    assert!(servers.len() >= 2, "keys spread over the owners: {servers:?}");
    // Two chains of six linked concurrently through all nodes.
    let links = (0..12).filter(|i| i % 6 != 5).map(|i| {
        let node = nodes[i % 3];
        let body = json!({"device_ids": [ids[i], ids[i + 1]], "confidence_score": 0.9});
        async move { post(node, "/link", body).await }
    });
    for (s, v) in futures::future::join_all(links).await {
        assert_eq!(s, 200, "{v}");
    }
    // A link is served by the owner of its smallest device id, whichever node takes it.
    for i in (0..12).filter(|i| i % 6 != 5) {
        let key = ids[i].clone().min(ids[i + 1].clone());
        let owner = http()
            .get(nodes[0].url(8030, &format!("/cluster/owner/device-identity/{key}")))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["owner"]
            .clone();
        let via = nodes[(i + 2) % 3];
        let (s, v) = post(via, "/link", json!({"device_ids": [ids[i + 1], ids[i]], "confidence_score": 0.9})).await;
        assert_eq!((s, &v["served_by"]), (200, &owner), "link {i} through {}: {v}", via.name);
    }
    // Erasure through any node runs on the subject's owner.
    let subject = "cluster-subject";
    let mut owned = pixel("subject-device");
    owned["subject_id"] = json!(subject);
    owned["serial"] = json!("cluster-subject-serial");
    owned["mac"] = json!("AA:BB:CC:00:99:99");
    let owned = register(&n2, owned).await["device_id"].as_str().unwrap().to_owned();
    let owner: Value = http()
        .get(n1.url(8030, &format!("/cluster/owner/device-identity/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, report) = post(&n3, "/admin/erasure", json!({"job_id": "cluster-job", "subject_id": subject})).await;
    assert_eq!((s, &report["served_by"]), (200, &owner["owner"]), "{report}");
    assert_eq!(report["erased"][0], json!({"kind": "devices", "count": 1}), "{report}");
    assert_eq!(get(&n1, &format!("/devices/{owned}")).await.0, 404);
    let first: BTreeSet<String> = ids[..6].iter().cloned().collect();
    let second: BTreeSet<String> = ids[6..].iter().cloned().collect();
    for node in nodes {
        for id in &ids[..6] {
            assert_eq!(members(node, id).await, first, "{} sees {id}", node.name);
        }
        assert_eq!(members(node, &ids[7]).await, second);
    }
}
