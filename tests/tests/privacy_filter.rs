//! The Privacy Filter over real HTTP: the seed's `/filter` form removes every listed value and
//! says where (never what); operators, including the keyed ones (HMAC hash, stable pseudonyms,
//! AES-SIV encryption reversed by `/deanonymize` under the admin scope, per-subject keys);
//! named versioned policies; the audit log (never a value); Presidio-shaped `/analyze`,
//! `/anonymize` and `/deanonymize`; bad input answered with stable 4xx codes; no raw value in
//! the logs, the metrics or the database dump.

use loom_testkit::{LoomNode, NodeOptions, http};
use serde_json::{Value, json};

const PF: u16 = 8011;

/// `{"a": {"a": … 1}}` nested `levels` deep.
fn deep(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

async fn post(node: &LoomNode, path: &str, body: Value) -> (u16, Value) {
    let resp = http().post(node.url(PF, path)).json(&body).send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn filter_analyze_and_anonymize() {
    let node = LoomNode::start_ready("privacy", NodeOptions::default()).await;
    let raw = ["jane.doe@example.org", "415-555-0132", "536-22-1234", "7946 0958", "4111 1111 1111 1111"];

    // The seed's form.
    let (s, out) = post(
        &node,
        "/filter",
        json!({
        "data": {"user": {"email": "jane.doe@example.org", "phone": "+1 415-555-0132", "ssn": "536-22-1234"},
                 "note": "call me at +44 20 7946 0958 or mail jane.doe@example.org", "count": 3},
        "rules": ["email", "phone", "ssn"]}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let text = out["data"].to_string();
    for v in raw {
        assert!(!text.contains(v), "{v} leaked: {text}");
    }
    assert_eq!(out["data"]["user"]["email"], "<EMAIL_ADDRESS>");
    assert_eq!(out["data"]["note"], "call me at <PHONE_NUMBER> or mail <EMAIL_ADDRESS>");
    assert_eq!(out["data"]["count"], 3);
    assert_eq!(out["counts"], json!({"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 2, "US_SSN": 1}));
    assert!(
        out["findings"].as_array().unwrap().iter().any(|f| f["path"] == "/user/ssn" && f["entity_type"] == "US_SSN")
    );
    assert!(!out["findings"].to_string().contains("jane"), "findings never carry values");

    // Only the listed rules apply; operators per entity; skip and always paths; GPS fields.
    let (s, out) = post(&node, "/filter", json!({
        "data": {"card": "4111 1111 1111 1111", "mail": "a@b.io", "lat": 45.464211, "lon": 9.190031, "debug": {"ip": "10.1.2.3"},
                 "name": "Jane Doe"},
        "rules": ["credit_card", "gps", "ip"],
        "operators": {"CREDIT_CARD": {"type": "mask", "masking_char": "#", "chars_to_mask": 15, "from_end": false},
                      "GPS_COORDINATES": {"type": "generalize", "precision": 2}},
        "skip": ["/debug"], "always": {"/name": "PERSON"}})).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["data"]["card"], "###############1111");
    assert_eq!(out["data"]["mail"], "a@b.io", "email was not asked for");
    assert_eq!((out["data"]["lat"].as_f64(), out["data"]["lon"].as_f64()), (Some(45.46), Some(9.19)));
    assert_eq!(out["data"]["debug"]["ip"], "10.1.2.3", "skipped path");
    assert_eq!(out["data"]["name"], "<PERSON>");

    // Presidio's /analyze shape.
    let (s, found) = post(
        &node,
        "/analyze",
        json!({"text": "My card is 4111 1111 1111 1111 and my email jane.doe@example.org", "language": "en"}),
    )
    .await;
    assert_eq!(s, 200, "{found}");
    let types: Vec<&str> = found.as_array().unwrap().iter().map(|f| f["entity_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["CREDIT_CARD", "EMAIL_ADDRESS"]);
    assert_eq!(
        (found[0]["start"].as_u64(), found[0]["end"].as_u64(), found[0]["score"].as_f64()),
        (Some(11), Some(30), Some(1.0))
    );
    assert!(found[0]["recognition_metadata"]["recognizer_name"].is_string());
    // Phone numbers in a national format (a default region's, or one the request or a nearby
    // word names) and spaced international ones.
    for (body, want) in [
        (json!({"text": "Büro: 030 12345678", "language": "en"}), Some("030 12345678")),
        (json!({"text": "reach me at +33 1 23 45 67 89", "language": "en"}), Some("+33 1 23 45 67 89")),
        (json!({"text": "reach me at 912 345 678", "language": "en"}), None),
        (json!({"text": "reach me at 912 345 678", "language": "en", "phone_regions": ["ES"]}), Some("912 345 678")),
        (json!({"text": "our Madrid desk: 912 345 678", "language": "en"}), Some("912 345 678")),
    ] {
        let (s, found) = post(&node, "/analyze", body.clone()).await;
        assert_eq!(s, 200, "{found}");
        let text: Vec<char> = body["text"].as_str().unwrap().chars().collect();
        let spans: Vec<String> = found
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["entity_type"] == "PHONE_NUMBER")
            .map(|f| text[f["start"].as_u64().unwrap() as usize..f["end"].as_u64().unwrap() as usize].iter().collect())
            .collect();
        assert_eq!(spans, want.into_iter().map(str::to_owned).collect::<Vec<_>>(), "{body}");
    }
    let (s, e) = post(&node, "/analyze", json!({"text": "x", "phone_regions": ["XX"]})).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")), "{e}");

    // ad hoc recognizers, Presidio's shape.
    let (_, found) = post(
        &node,
        "/analyze",
        json!({"text": "ticket ZZ-1234 opened", "language": "en",
        "ad_hoc_recognizers": [{"name": "tickets", "supported_language": "en", "supported_entity": "TICKET",
                                "patterns": [{"name": "t", "regex": "ZZ-\\d{4}", "score": 0.9}]}]}),
    )
    .await;
    assert_eq!(found[0]["entity_type"], "TICKET", "{found}");

    // Presidio's /anonymize shape.
    let (s, anon) = post(
        &node,
        "/anonymize",
        json!({
        "text": "hello world, my name is Jane Doe. My number is: 034453334",
        "anonymizers": {"DEFAULT": {"type": "replace", "new_value": "ANONYMIZED"},
                        "PHONE_NUMBER": {"type": "mask", "masking_char": "*", "chars_to_mask": 4, "from_end": true}},
        "analyzer_results": [{"start": 24, "end": 32, "score": 0.8, "entity_type": "NAME"},
                             {"start": 48, "end": 57, "score": 0.95, "entity_type": "PHONE_NUMBER"}]}),
    )
    .await;
    assert_eq!(s, 200, "{anon}");
    assert_eq!(anon["text"], "hello world, my name is ANONYMIZED. My number is: 03445****");
    // Presidio's items: from the last entity to the first, with the score given.
    assert_eq!(
        anon["items"][1],
        json!({"start": 24, "end": 34, "entity_type": "NAME", "text": "ANONYMIZED", "operator": "replace", "score": 0.8})
    );
    assert_eq!(anon["items"][0]["entity_type"], "PHONE_NUMBER");

    // Presidio's error contract on its anonymizer routes: `{"error"}` with its status.
    let presidio_errors = [
        (
            "/anonymize",
            json!({"text": "abc", "analyzer_results": [{"start": 2, "end": 9, "entity_type": "X"}]}),
            422,
            "Invalid input, analyzer result must contain score",
        ),
        (
            "/anonymize",
            json!({"text": "abc", "analyzer_results": [{"start": 2, "end": 9, "entity_type": "X", "score": 1}]}),
            422,
            "Invalid analyzer result, start: 2 and end: 9, while text length is only 3.",
        ),
        ("/anonymize", json!({"text": "abc"}), 422, "Invalid input, request must contain analyzer results"),
        (
            "/deanonymize",
            json!({"text": "abc", "anonymizer_results": [{"start": 0, "end": 1, "entity_type": "X"}],
                   "deanonymizers": {"DEFAULT": {"type": "decrypt", "key": "k"}}}),
            422,
            "Invalid input, key must be of length 128, 192 or 256 bits",
        ),
    ];
    for (path, body, status, message) in presidio_errors {
        let (s, e) = post(&node, path, body.clone()).await;
        assert_eq!((s, &e), (status, &json!({ "error": message })), "{path} {body}");
    }

    // Bad input: stable codes, never a 500.
    let cases = [
        ("/filter", json!({"data": 1, "rules": ["shoe_size"]}), 400, "unknown_rule"),
        ("/filter", json!({"data": 1, "policy": "gdpr"}), 404, "not_found"),
        ("/filter", json!({"data": 1, "policy": "gdpr", "rules": ["email"]}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "operator": {"type": "hash", "hash_type": "md5"}}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "operator": {"type": "encrypt", "key": "k"}}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "subject_id": ""}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "policy": "p", "deny_list": ["x"]}), 400, "invalid_request"),
        ("/filter", json!({"data": deep(70)}), 422, "too_deep"),
        ("/filter", json!({"data": 1, "deny_list": [""]}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "deny_list": vec!["x"; 1001]}), 400, "invalid_request"),
        ("/policies", json!({"name": "bad name"}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "operator": {"type": "mask", "masking_char": "ab"}}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "skip": ["nopointer"]}), 400, "invalid_request"),
        ("/analyze", json!({"text": "x", "language": "xx"}), 400, "invalid_request"),
        (
            "/analyze",
            json!({"text": "x", "ad_hoc_recognizers": [{"supported_entity": "X", "patterns": [{"regex": "("}]}]}),
            400,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, e) = post(&node, path, body.clone()).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{path} {body}: {e}");
    }

    // Object keys and bare numbers are scanned too; findings never carry the raw key.
    let (s, out) = post(
        &node,
        "/filter",
        json!({"data": {"by_email": {"jane.doe@example.org": {"visits": 3}},
        "contact": 14155550132_i64, "count": 42}}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["data"]["by_email"], json!({"<EMAIL_ADDRESS>": {"visits": 3}}), "{out}");
    assert_eq!(out["data"]["contact"], "<PHONE_NUMBER>", "{out}");
    assert_eq!(out["data"]["count"], 42);
    assert!(!out.to_string().contains("jane.doe"), "{out}");

    // Nothing scanned reaches the logs.
    let logs = node.logs();
    for v in raw {
        assert!(!logs.contains(v), "{v} in the logs");
    }
}

fn authed(token: &str, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

async fn send(node: &LoomNode, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = authed(token, http().request(method, node.url(PF, path)));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keyed_operators_policies_audit_and_deanonymize() {
    let db = loom_testkit::infra::fresh_postgres_database("privacy").await;
    let options = NodeOptions::default().env("LOOM_DATABASE_URL", &db).env(
        "LOOM_AUTH_TOKENS",
        "reader:read:tok-reader-0123456789,writer:write:tok-writer-0123456789,boss:admin:tok-admin-01234567890",
    );
    let node = LoomNode::start_ready("privacy-keys", options).await;
    use reqwest::Method;
    let raw = ["jane.doe@example.org", "john.roe@example.org", "+1 415-555-0132", "536-22-1234"];

    // A named policy: hash emails, pseudonymize phones, encrypt SSNs, and a field rule.
    let policy = json!({"name": "support-tickets", "description": "tickets from the support desk",
        "entities": ["email", "phone", "ssn"],
        "operators": {"EMAIL_ADDRESS": {"type": "hash"}, "PHONE_NUMBER": {"type": "pseudonymize"},
                      "US_SSN": {"type": "encrypt"}},
        "fields": {"/internal": {"type": "redact"}}});
    let (s, _) = send(&node, "tok-writer-0123456789", Method::POST, "/policies", Some(policy.clone())).await;
    assert_eq!(s, 403, "policies decide what is anonymized: admin scope");
    let (s, v) = send(&node, "tok-admin-01234567890", Method::POST, "/policies", Some(policy.clone())).await;
    assert_eq!((s, v["version"].as_i64()), (201, Some(1)), "{v}");
    let (s, _) = send(&node, "tok-admin-01234567890", Method::POST, "/policies", Some(policy.clone())).await;
    assert_eq!(s, 409, "a second create is a conflict");
    let (s, v) = send(&node, "tok-admin-01234567890", Method::GET, "/policies/support-tickets", None).await;
    assert_eq!((s, v["operators"]["US_SSN"]["type"].as_str()), (200, Some("encrypt")), "{v}");

    let event = |email: &str| {
        json!({"data": {"from": email, "phone": "+1 415-555-0132", "ssn": "536-22-1234",
                        "internal": {"note": "mail jane.doe@example.org"}},
               "policy": "support-tickets", "source": "helpdesk"})
    };
    let (s, a) =
        send(&node, "tok-writer-0123456789", Method::POST, "/filter", Some(event("jane.doe@example.org"))).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["policy"], json!({"name": "support-tickets", "version": 1}));
    let hashed = a["data"]["from"].as_str().unwrap().to_owned();
    assert_eq!(hashed.len(), 64, "HMAC-SHA-256 hex: {hashed}");
    assert!(hashed.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a["data"]["phone"], "<PHONE_NUMBER_1>");
    assert_eq!(a["data"]["internal"]["note"], "mail ", "the field rule redacts under /internal");
    let token = a["data"]["ssn"].as_str().unwrap().to_owned();
    assert!(token.starts_with("<ENC:US_SSN:k"), "{token}");
    // Same key, same outputs; another value, another hash and the next pseudonym number.
    let (_, b) =
        send(&node, "tok-writer-0123456789", Method::POST, "/filter", Some(event("jane.doe@example.org"))).await;
    assert_eq!((b["data"]["from"].as_str(), b["data"]["ssn"].as_str()), (Some(hashed.as_str()), Some(token.as_str())));
    let (_, c) = send(
        &node,
        "tok-writer-0123456789",
        Method::POST,
        "/filter",
        Some(json!({
        "data": {"from": "john.roe@example.org", "phone": "+1 212-555-0199"}, "policy": "support-tickets"})),
    )
    .await;
    assert_ne!(c["data"]["from"].as_str(), Some(hashed.as_str()));
    assert_eq!(c["data"]["phone"], "<PHONE_NUMBER_2>");
    // A data subject gets keys of its own: unlinkable to the global ones.
    let (_, d) = send(
        &node,
        "tok-writer-0123456789",
        Method::POST,
        "/filter",
        Some(json!({
        "data": {"from": "jane.doe@example.org", "phone": "+1 415-555-0132"}, "policy": "support-tickets",
        "subject_id": "customer-42"})),
    )
    .await;
    assert_ne!(d["data"]["from"].as_str(), Some(hashed.as_str()), "{d}");
    assert_eq!(d["data"]["phone"], "<PHONE_NUMBER_1>", "numbering per key");

    // Reversal needs the admin scope; Presidio's deanonymize shape, tokens found without spans.
    let text = format!("ssn on file: {token}.");
    let (s, _) = send(&node, "tok-writer-0123456789", Method::POST, "/deanonymize", Some(json!({"text": text}))).await;
    assert_eq!(s, 403, "write scope cannot deanonymize");
    let (s, back) =
        send(&node, "tok-admin-01234567890", Method::POST, "/deanonymize", Some(json!({"text": text}))).await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["text"], "ssn on file: 536-22-1234.");
    assert_eq!(back["items"][0]["operator"], "decrypt");
    let forged = token.replace("<ENC:US_SSN:", "<ENC:EMAIL_ADDRESS:");
    let (_, bad) =
        send(&node, "tok-admin-01234567890", Method::POST, "/deanonymize", Some(json!({"text": forged}))).await;
    assert_eq!(bad["unrecoverable"][0]["code"], "invalid_token", "{bad}");

    // Key rotation: new outputs, old tokens still decrypt.
    let (s, k) = send(&node, "tok-admin-01234567890", Method::POST, "/admin/keys/rotate", None).await;
    assert_eq!((s, k["version"].as_i64()), (200, Some(2)), "{k}");
    let (_, e) =
        send(&node, "tok-writer-0123456789", Method::POST, "/filter", Some(event("jane.doe@example.org"))).await;
    assert_ne!(e["data"]["from"].as_str(), Some(hashed.as_str()), "rotated");
    let (_, back) =
        send(&node, "tok-admin-01234567890", Method::POST, "/deanonymize", Some(json!({"text": token}))).await;
    assert_eq!(back["text"], "536-22-1234");

    // Presidio's /anonymize with keyed operators.
    let (s, anon) = send(
        &node,
        "tok-writer-0123456789",
        Method::POST,
        "/anonymize",
        Some(json!({
        "text": "mail jane.doe@example.org now",
        "anonymizers": {"EMAIL_ADDRESS": {"type": "encrypt"}},
        "analyzer_results": [{"start": 5, "end": 25, "score": 1.0, "entity_type": "EMAIL_ADDRESS"}]})),
    )
    .await;
    assert_eq!(s, 200, "{anon}");
    let (_, back) =
        send(&node, "tok-admin-01234567890", Method::POST, "/deanonymize", Some(json!({"text": anon["text"]}))).await;
    assert_eq!(back["text"], "mail jane.doe@example.org now");

    // A policy change is in force at once, with its version in the answer and the audit.
    let mut v2 = policy.clone();
    v2["operators"]["EMAIL_ADDRESS"] = json!({"type": "mask", "masking_char": "#", "chars_to_mask": 4});
    let (s, v) = send(&node, "tok-admin-01234567890", Method::PUT, "/policies/support-tickets", Some(v2)).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    let (_, f) =
        send(&node, "tok-writer-0123456789", Method::POST, "/filter", Some(event("jane.doe@example.org"))).await;
    assert_eq!(f["data"]["from"], "####.doe@example.org");
    assert_eq!(f["policy"]["version"], 2);

    // The audit log: admin scope; every decision with policy, version, operator and key version.
    let (s, _) = send(&node, "tok-reader-0123456789", Method::GET, "/audit", None).await;
    assert_eq!(s, 403, "reading the audit log needs admin");
    let (s, log) =
        send(&node, "tok-admin-01234567890", Method::GET, "/audit?policy=support-tickets&limit=1000", None).await;
    assert_eq!(s, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let ssn = entries.iter().find(|e| e["entity"] == "US_SSN" && e["policy_version"] == 1).expect("ssn decision");
    assert_eq!(
        (ssn["operator"].as_str(), ssn["path"].as_str(), ssn["source"].as_str()),
        (Some("encrypt"), Some("/ssn"), Some("helpdesk"))
    );
    assert!(ssn["key_version"].is_i64() && ssn["request_id"].is_string(), "{ssn}");
    assert!(entries.iter().any(|e| e["policy_version"] == 2 && e["operator"] == "mask"));
    let (_, page) = send(&node, "tok-admin-01234567890", Method::GET, "/audit?limit=2", None).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert!(page["next_before_id"].is_i64(), "{page}");
    let (s, e) = send(&node, "tok-admin-01234567890", Method::GET, "/audit?limit=5000", None).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));

    // Policies can be deleted; then the name is unknown.
    let (s, _) = send(&node, "tok-admin-01234567890", Method::DELETE, "/policies/support-tickets", None).await;
    assert_eq!(s, 204);
    let (s, _) = send(&node, "tok-writer-0123456789", Method::POST, "/filter", Some(event("x@y.example"))).await;
    assert_eq!(s, 404);

    // No raw value in the audit log, the logs, the metrics or the database.
    let metrics = http()
        .get(node.url(PF, "/metrics"))
        .bearer_auth("tok-reader-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dump = std::process::Command::new("pg_dump").arg(&db).output().expect("pg_dump runs");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("pf_audit"), "the dump has the audit table");
    for v in raw.iter().chain(["customer-42"].iter()) {
        assert!(!log.to_string().contains(v), "{v} in the audit log");
        assert!(!node.logs().contains(v), "{v} in the logs");
        assert!(!metrics.contains(v), "{v} in the metrics");
        assert!(!dump.contains(v), "{v} in the database");
    }
}

/// Starts a clustered member hosting only `services` and waits for their ports.
async fn member(
    name: &str,
    address: Option<loom_testkit::node::Address>,
    options: NodeOptions,
    ports: &[u16],
) -> LoomNode {
    let address = address.unwrap_or_else(loom_testkit::node::claim_address);
    let mut node = LoomNode::start_on(name, address, options);
    node.wait_ready(ports, std::time::Duration::from_secs(60)).await;
    node
}

#[tokio::test]
async fn gdpr_erasure_fans_out_across_the_cluster_and_survives_a_restart() {
    use std::time::Duration;

    use loom_testkit::cluster::{member_options, wait_up};
    use loom_testkit::eventually;
    use reqwest::Method;
    const DEVICES: u16 = 8012;
    let db = loom_testkit::infra::fresh_postgres_database("erasure").await;
    let cookie = format!("erasure-{}", std::process::id());
    let with = |o: NodeOptions, services: &str| {
        o.env("LOOM_DATABASE_URL", &db).env("LOOM_SERVICES", services).env("LOOM_DEVICE_MASTER_KEY", "11".repeat(32))
    };
    // n1 runs the erasure jobs; n2 is the only host of Device Identity.
    let n1 =
        member("e1", None, with(member_options(&cookie, &[]), "privacy-filter,health-aggregator"), &[PF, 8030]).await;
    let n2 = member("e2", None, with(member_options(&cookie, &[&n1]), "device-identity"), &[DEVICES]).await;
    wait_up(&[&n1], &["e1", "e2"], Duration::from_secs(20)).await;
    let call = |node: &LoomNode, port: u16, method: Method, path: &str, body: Option<Value>| {
        let mut req = http().request(method, node.url(port, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.expect("answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // The subject's data: a device on n2, and an encrypted value and a pseudonym on n1.
    let device = |serial: &str, subject: &str| json!({"platform": "android", "model": "Pixel 8", "serial": serial, "subject_id": subject});
    let (s, mine) = call(&n2, DEVICES, Method::POST, "/devices", Some(device("erase-me-1", "customer-7"))).await;
    assert_eq!(s, 201, "{mine}");
    let (s, other) = call(&n2, DEVICES, Method::POST, "/devices", Some(device("keep-me-1", "customer-8"))).await;
    assert_eq!(s, 201, "{other}");
    let (s, filtered) = call(&n1, PF, Method::POST, "/filter", Some(json!({
        "data": {"ssn": "536-22-1234", "phone": "+1 415-555-0132"}, "rules": ["ssn", "phone"], "subject_id": "customer-7",
        "operators": {"US_SSN": {"type": "encrypt"}, "PHONE_NUMBER": {"type": "pseudonymize"}}}))).await;
    assert_eq!(s, 200, "{filtered}");
    let token = filtered["data"]["ssn"].as_str().unwrap().to_owned();
    let (_, back) = call(&n1, PF, Method::POST, "/deanonymize", Some(json!({"text": token}))).await;
    assert_eq!(back["text"], "536-22-1234", "decrypts before the erasure");

    // Device Identity's only host dies; the job starts and waits for it.
    let n2_address = n2.kill_into_address().await;
    let (s, job) = call(&n1, PF, Method::POST, "/gdpr/erasure", Some(json!({"subject_id": "customer-7"}))).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let path = format!("/gdpr/erasure/{id}");
    let (s, again) = call(&n1, PF, Method::POST, "/gdpr/erasure", Some(json!({"subject_id": "customer-7"}))).await;
    assert_eq!((s, again["id"].as_str()), (200, Some(id.as_str())), "one open job per subject: {again}");
    let waiting = eventually("the job waits for device-identity", Duration::from_secs(30), || async {
        let (_, v) = call(&n1, PF, Method::GET, &path, None).await;
        let ps = v["participants"].as_array()?;
        let pf = ps.iter().find(|p| p["service"] == "privacy-filter")?;
        let di = ps.iter().find(|p| p["service"] == "device-identity")?;
        (pf["state"] == "done" && di["state"] == "waiting").then_some(v)
    })
    .await;
    assert_eq!(waiting["state"], "running");

    // n1 restarts mid-job; then n2 comes back: the job resumes and completes.
    let n1_address = n1.kill_into_address().await;
    let n1 = member(
        "e1",
        Some(n1_address),
        with(member_options(&cookie, &[]), "privacy-filter,health-aggregator"),
        &[PF, 8030],
    )
    .await;
    let seeds = member_options(&cookie, &[&n1]);
    let n2 = member("e2", Some(n2_address), with(seeds, "device-identity"), &[DEVICES]).await;
    let done = eventually("the job completed after the restart", Duration::from_secs(90), || async {
        let (_, v) = call(&n1, PF, Method::GET, &path, None).await;
        (v["state"] == "completed").then_some(v)
    })
    .await;
    let receipt = &done["receipt"];
    let erased =
        |service: &str, kind: &str| {
            receipt["erased"].as_array().unwrap().iter().find(|e| e["service"] == service).and_then(|e| {
                e["items"].as_array()?.iter().find(|i| i["kind"] == kind).and_then(|i| i["count"].as_u64())
            })
        };
    assert_eq!(erased("device-identity", "devices"), Some(1), "{receipt}");
    assert_eq!(erased("privacy-filter", "keys"), Some(1), "{receipt}");
    assert_eq!(erased("privacy-filter", "pseudonyms"), Some(1), "{receipt}");
    assert!(receipt["completed_ms"].is_i64() && !receipt.to_string().contains("customer-7"), "{receipt}");

    // The subject's data is gone everywhere; other subjects' data stays.
    let (s, _) =
        call(&n2, DEVICES, Method::GET, &format!("/devices/{}", mine["device_id"].as_str().unwrap()), None).await;
    assert_eq!(s, 404, "the subject's device is erased");
    let (s, _) =
        call(&n2, DEVICES, Method::GET, &format!("/devices/{}", other["device_id"].as_str().unwrap()), None).await;
    assert_eq!(s, 200, "another subject's device stays");
    let (_, back) = call(&n1, PF, Method::POST, "/deanonymize", Some(json!({"text": token}))).await;
    assert_eq!(back["unrecoverable"][0]["code"], "key_erased", "crypto-shredded: {back}");
    // Idempotent: erasing again finds nothing.
    let (s, second) = call(&n1, PF, Method::POST, "/gdpr/erasure", Some(json!({"subject_id": "customer-7"}))).await;
    assert_eq!(s, 202, "{second}");
    let second_path = format!("/gdpr/erasure/{}", second["id"].as_str().unwrap());
    let done = eventually("the second job completed", Duration::from_secs(30), || async {
        let (_, v) = call(&n1, PF, Method::GET, &second_path, None).await;
        (v["state"] == "completed").then_some(v)
    })
    .await;
    let counts: Vec<u64> = done["receipt"]["erased"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["items"].as_array().unwrap().iter().map(|i| i["count"].as_u64().unwrap()))
        .collect();
    assert!(counts.iter().all(|c| *c == 0), "{done}");
    // Concurrent requests for one subject get one job (Device Identity's host is away, so the
    // job stays open while they arrive).
    assert!(!n2.logs().contains("customer-7"), "e2 logged the subject id");
    let _n2_address = n2.kill_into_address().await;
    let posts = (0..6).map(|_| call(&n1, PF, Method::POST, "/gdpr/erasure", Some(json!({"subject_id": "customer-9"}))));
    let ids: std::collections::BTreeSet<String> =
        futures::future::join_all(posts).await.iter().map(|(_, v)| v["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(!n1.logs().contains("customer-7"), "e1 logged the subject id");
}

#[path = "support/kafka.rs"]
mod kafka;

#[tokio::test]
async fn stream_mode_filters_a_topic_with_a_policy() {
    use std::time::Duration;

    use loom_testkit::{eventually, infra};
    let p = kafka::prefix("pii");
    let (raw, clean, dlq) = (format!("{p}.raw"), format!("{p}.clean"), format!("{p}.dlq"));
    loom_kafka::admin::ensure_topics(&kafka::kafka_section(), &[&raw], 2).await.unwrap();
    let options = NodeOptions::default()
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
        .env("LOOM_PRIVACY_STREAMS", format!("{raw}:{clean}:pii"))
        .env("LOOM_PRIVACY_GROUP", format!("{p}.group"))
        .env("LOOM_PRIVACY_DLQ_TOPIC", &dlq);
    let node = LoomNode::start_ready("privacy-stream", options).await;

    // Records arrive before the policy exists: they wait (nothing passes unfiltered).
    let producer = kafka::client_producer();
    for i in 0..20 {
        let event =
            json!({"device": format!("d{i}"), "owner": {"email": format!("user{i}@example.org")}, "temp": 20 + i});
        kafka::produce(&producer, &raw, &format!("k{i}"), event.to_string().as_bytes()).await;
    }
    kafka::produce(&producer, &raw, "text", b"free text from jane.doe@example.org at 10.1.2.3").await;
    kafka::produce(&producer, &raw, "binary", &[0xff, 0xfe, 0x00, 0x9c]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(kafka::read_all(&clean).await.is_empty(), "nothing is filtered before the policy exists");

    let policy = json!({"name": "pii", "entities": ["email", "ip"],
        "operators": {"EMAIL_ADDRESS": {"type": "pseudonymize"}, "IP_ADDRESS": {"type": "redact"}}});
    assert_eq!(post(&node, "/policies", policy).await.0, 201);
    let out = eventually("21 records filtered", Duration::from_secs(60), || async {
        let out = kafka::read_all(&clean).await;
        (out.len() >= 21).then_some(out)
    })
    .await;
    let texts: Vec<String> =
        out.iter().map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned()).collect();
    for t in &texts {
        assert!(!t.contains("@example.org") && !t.contains("10.1.2.3"), "raw value passed: {t}");
    }
    let d3 = out.iter().find(|r| r.key.as_deref() == Some(b"k3".as_slice())).expect("k3 filtered");
    let v: Value = serde_json::from_slice(d3.payload.as_deref().unwrap()).unwrap();
    assert!(v["owner"]["email"].as_str().unwrap().starts_with("<EMAIL_ADDRESS_"), "{v}");
    assert_eq!((v["device"].as_str(), v["temp"].as_i64()), (Some("d3"), Some(23)), "other fields kept");
    assert_eq!(kafka::header(d3, "origin").as_deref(), Some("test"), "headers kept");
    let text = out.iter().find(|r| r.key.as_deref() == Some(b"text".as_slice())).expect("text filtered");
    let text = String::from_utf8_lossy(text.payload.as_deref().unwrap()).into_owned();
    assert!(text.starts_with("free text from <EMAIL_ADDRESS_") && text.ends_with(" at "), "{text}");

    // What cannot be filtered is dead-lettered with the reason, not dropped.
    let dead = eventually("the binary record dead-lettered", Duration::from_secs(30), || async {
        let d = kafka::read_all(&dlq).await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(kafka::header(&dead[0], "loom.error.class").as_deref(), Some("not_text"));
    assert_eq!(kafka::header(&dead[0], "loom.source.topic").as_deref(), Some(raw.as_str()));
    assert_eq!(dead[0].payload.as_deref(), Some([0xff, 0xfe, 0x00, 0x9c].as_slice()));

    // Audited with the source topic; the stream counts as ready only with the broker reachable.
    let (_, log) = (
        200,
        http().get(node.url(PF, "/audit?policy=pii&limit=1000")).send().await.unwrap().json::<Value>().await.unwrap(),
    );
    let entries = log["entries"].as_array().unwrap();
    let emails: i64 =
        entries.iter().filter(|e| e["entity"] == "EMAIL_ADDRESS").map(|e| e["count"].as_i64().unwrap()).sum();
    assert_eq!(emails, 21, "{log}");
    assert!(entries.iter().all(|e| e["source"] == raw.as_str()), "{log}");
    let health: Value = http().get(node.url(PF, "/health")).send().await.unwrap().json().await.unwrap();
    assert!(health.to_string().contains("kafka:reachable"), "{health}");
    assert!(!node.logs().contains("@example.org"), "no raw value in the logs");
}

#[tokio::test]
async fn custom_recognizers_from_config_join_every_scan() {
    let config = r#"
[[privacy.recognizers]]
name = "employee ids"
entity = "EMPLOYEE_ID"
pattern = "\\bEMP-[0-9]{6}\\b"
score = 0.6
context = ["employee", "staff"]
"#;
    let node = LoomNode::start_ready("privacy-custom", NodeOptions::default().config(config)).await;
    let (s, found) = post(&node, "/analyze", json!({"text": "staff member EMP-123456 badge", "language": "en"})).await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found[0]["entity_type"], "EMPLOYEE_ID", "{found}");
    assert!(found[0]["score"].as_f64().unwrap() > 0.6, "context raised the score: {found}");
    let (s, out) =
        post(&node, "/filter", json!({"data": {"who": "EMP-654321", "mail": "a@b.example"}, "rules": ["EMPLOYEE_ID"]}))
            .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["data"], json!({"who": "<EMPLOYEE_ID>", "mail": "a@b.example"}));
    let (_, entities) =
        (200, http().get(node.url(PF, "/supportedentities")).send().await.unwrap().json::<Value>().await.unwrap());
    assert!(entities.as_array().unwrap().iter().any(|e| e == "EMPLOYEE_ID"), "{entities}");
    let policy = json!({"name": "staff", "entities": ["EMPLOYEE_ID", "email"]});
    assert_eq!(post(&node, "/policies", policy).await.0, 201, "a policy may name the custom entity");
}
