//! The Privacy Filter over real HTTP: the seed's `/filter` form removes every listed value and
//! says where (never what); operators; Presidio-shaped `/analyze` and `/anonymize`; bad input
//! answered with stable 4xx codes; features not built answer 501; no raw value in the logs.

use loom_testkit::{LoomNode, NodeOptions, http};
use serde_json::{Value, json};

const PF: u16 = 8011;

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
    assert_eq!(
        anon["items"][0],
        json!({"start": 24, "end": 34, "entity_type": "NAME", "text": "ANONYMIZED", "operator": "replace"})
    );

    // Bad input: stable codes, never a 500.
    let cases = [
        ("/filter", json!({"data": 1, "rules": ["shoe_size"]}), 400, "unknown_rule"),
        ("/filter", json!({"data": 1, "policy": "gdpr"}), 501, "not_built"),
        ("/filter", json!({"data": 1, "operator": {"type": "hash"}}), 501, "not_built"),
        ("/filter", json!({"data": 1, "operator": {"type": "mask", "masking_char": "ab"}}), 400, "invalid_request"),
        ("/filter", json!({"data": 1, "skip": ["nopointer"]}), 400, "invalid_request"),
        ("/analyze", json!({"text": "x", "language": "xx"}), 400, "invalid_request"),
        (
            "/analyze",
            json!({"text": "x", "ad_hoc_recognizers": [{"supported_entity": "X", "patterns": [{"regex": "("}]}]}),
            400,
            "invalid_request",
        ),
        (
            "/anonymize",
            json!({"text": "abc", "analyzer_results": [{"start": 2, "end": 9, "entity_type": "X"}]}),
            400,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, e) = post(&node, path, body.clone()).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{path} {body}: {e}");
    }

    // Nothing scanned reaches the logs.
    let logs = node.logs();
    for v in raw {
        assert!(!logs.contains(v), "{v} in the logs");
    }
}
