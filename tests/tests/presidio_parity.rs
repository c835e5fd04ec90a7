//! The Privacy Filter's Presidio anonymizer routes side by side with presidio-anonymizer 2.2.366
//! from PyPI (served by `support/presidio_anonymizer_server.py`, app.py's contract over the
//! wheel): the same requests — operators, conflict cases, error cases, deanonymize, the operator
//! lists — go to both, and status, content type and JSON body must be equal. Random outputs are
//! compared by what they must satisfy instead: AES-CBC ciphertexts are decrypted by the other
//! side; unsalted hashes (a random salt in Presidio, Loom's keyed HMAC) by their shape. Where
//! Loom answers differently on purpose (a 4xx where Presidio fails with a 500, its own operator
//! list) the test says so and checks both sides' answers.

// The test prints how many requests it compared.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const PF: u16 = 8011;
const KEY: &str = "WmZq4t7w!z%C&F)J";

/// The reference server on a free loopback port; killed when dropped.
struct Reference {
    base: String,
    _child: tokio::process::Child,
}

async fn reference() -> Reference {
    let python = infra::presidio_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/presidio_anonymizer_server.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg("0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("the reference server starts within 60 s")
        .expect("reads its first line");
    let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {line:?}"));
    Reference { base: format!("http://127.0.0.1:{port}"), _child: child }
}

/// One request: the raw body and its content type (`None`: no header).
#[derive(Clone)]
struct Req {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Option<String>,
}

fn post(path: &'static str, body: Value) -> Req {
    Req { method: "POST", path, content_type: Some("application/json"), body: Some(body.to_string()) }
}

fn raw(path: &'static str, content_type: Option<&'static str>, body: &str) -> Req {
    Req { method: "POST", path, content_type, body: Some(body.to_owned()) }
}

fn get(path: &'static str) -> Req {
    Req { method: "GET", path, content_type: None, body: None }
}

/// Status, the content type's media type, and the body as JSON.
async fn send(base: &str, req: &Req) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("a method");
    let mut r = http().request(method, format!("{base}{}", req.path));
    if let Some(ct) = req.content_type {
        r = r.header("content-type", ct);
    }
    if let Some(b) = &req.body {
        r = r.body(b.clone());
    }
    let resp = r.send().await.expect("answers");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_owned();
    let text = resp.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, mime, body)
}

fn result(entity_type: &str, start: usize, end: usize, score: f64) -> Value {
    json!({"start": start, "end": end, "score": score, "entity_type": entity_type})
}

fn anonymize(text: &str, results: Vec<Value>, anonymizers: Value) -> Req {
    post("/anonymize", json!({"text": text, "analyzer_results": results, "anonymizers": anonymizers}))
}

/// Requests whose answers must be equal on both sides.
fn exact_cases() -> Vec<(&'static str, Req)> {
    let text = "My name is John Smith, call 212-555-1234";
    let both = || vec![result("PERSON", 11, 21, 0.85), result("PHONE_NUMBER", 28, 40, 0.75)];
    let person = |op: Value| anonymize(text, vec![result("PERSON", 11, 21, 0.85)], json!({ "PERSON": op }));
    let mask = |params: Value| {
        let mut op = params.as_object().cloned().unwrap_or_default();
        op.insert("type".into(), json!("mask"));
        person(Value::Object(op))
    };
    let r = |t: &str, s, e, sc| result(t, s, e, sc);
    let replace = json!({});
    let keep = json!({"DEFAULT": {"type": "keep"}});
    let mut cases: Vec<(&'static str, Req)> = vec![
        // Operators.
        ("default replace", anonymize(text, both(), json!({}))),
        ("no anonymizers key", post("/anonymize", json!({"text": text, "analyzer_results": both()}))),
        (
            "redact and mask",
            anonymize(
                text,
                both(),
                json!({"DEFAULT": {"type": "redact"}, "PHONE_NUMBER": {"type": "mask", "masking_char": "*", "chars_to_mask": 4, "from_end": true}}),
            ),
        ),
        ("replace new_value", person(json!({"type": "replace", "new_value": "ANON"}))),
        ("replace empty new_value", person(json!({"type": "replace", "new_value": ""}))),
        ("replace extra param", person(json!({"type": "replace", "new_value": "X", "extra": 1}))),
        ("keep", person(json!({"type": "keep"}))),
        ("mask from start", mask(json!({"masking_char": "#", "chars_to_mask": 3, "from_end": false}))),
        ("mask everything", mask(json!({"masking_char": "*", "chars_to_mask": 100, "from_end": false}))),
        ("mask negative", mask(json!({"masking_char": "*", "chars_to_mask": -2, "from_end": true}))),
        ("mask empty char", mask(json!({"masking_char": "", "chars_to_mask": 4, "from_end": true}))),
        ("mask bool count", mask(json!({"masking_char": "*", "chars_to_mask": true, "from_end": true}))),
        ("hash salt sha256", person(json!({"type": "hash", "salt": "0123456789abcdef"}))),
        ("hash salt sha512", person(json!({"type": "hash", "hash_type": "sha512", "salt": "0123456789abcdef"}))),
        (
            "hash unicode salt",
            anonymize(
                "Zoë here",
                vec![r("PERSON", 0, 3, 0.5)],
                json!({"DEFAULT": {"type": "hash", "salt": "ünïcødé-salt-1234"}}),
            ),
        ),
        ("unicode text", anonymize("ü Zoë und Ä", vec![r("PERSON", 2, 5, 0.5), r("X", 10, 11, 1.0)], json!({}))),
        (
            "int score echoed",
            anonymize("abc def", vec![json!({"start": 0, "end": 3, "score": 1, "entity_type": "X"})], json!({})),
        ),
        (
            "string score echoed",
            anonymize("abc def", vec![json!({"start": 0, "end": 3, "score": "high", "entity_type": "X"})], json!({})),
        ),
        (
            "bool start",
            anonymize("abc def", vec![json!({"start": true, "end": 3, "score": 1, "entity_type": "X"})], json!({})),
        ),
        (
            "ignored result fields",
            anonymize(
                "abc def",
                vec![json!({"start": 0, "end": 3, "score": 1, "entity_type": "X", "recognition_metadata": {"a": 1}})],
                json!({}),
            ),
        ),
        ("operator for an absent entity", anonymize("abc", vec![], json!({"X": {"type": "foo"}}))),
        (
            "operator of an unused type is not checked",
            anonymize("abc def", vec![r("A", 0, 3, 0.5)], json!({"B": {"type": "mask"}})),
        ),
        ("missing text, no results", post("/anonymize", json!({"analyzer_results": []}))),
        (
            "charset content type",
            Req {
                content_type: Some("application/json; charset=utf-8"),
                ..post("/anonymize", json!({"text": "abc", "analyzer_results": []}))
            },
        ),
        (
            "+json content type",
            Req {
                content_type: Some("application/merge-patch+json"),
                ..post("/anonymize", json!({"text": "abc", "analyzer_results": []}))
            },
        ),
        // Conflict resolution (the research's cases 1-18 and two edges).
        (
            "conflict 1 same type overlap",
            anonymize("0123456789ABCDEFGHIJ", vec![r("PERSON", 0, 10, 0.6), r("PERSON", 5, 15, 0.8)], replace.clone()),
        ),
        (
            "conflict 2 touching",
            anonymize("JohnSmith is here", vec![r("PERSON", 0, 4, 0.6), r("PERSON", 4, 9, 0.8)], replace.clone()),
        ),
        (
            "conflict 3 contained, higher score",
            anonymize(
                "My name is John Smith",
                vec![r("PERSON", 11, 21, 0.3), r("LOCATION", 16, 21, 0.99)],
                replace.clone(),
            ),
        ),
        (
            "conflict 4 equal span",
            anonymize(
                "Call 555-1234 now",
                vec![r("PHONE_NUMBER", 5, 13, 0.4), r("US_BANK", 5, 13, 0.7)],
                replace.clone(),
            ),
        ),
        (
            "conflict 5 equal span tie",
            anonymize(
                "Call 555-1234 now",
                vec![r("PHONE_NUMBER", 5, 13, 0.5), r("US_BANK", 5, 13, 0.5)],
                replace.clone(),
            ),
        ),
        (
            "conflict 5b tie reversed",
            anonymize(
                "Call 555-1234 now",
                vec![r("US_BANK", 5, 13, 0.5), r("PHONE_NUMBER", 5, 13, 0.5)],
                replace.clone(),
            ),
        ),
        (
            "conflict 6 partial overlap",
            anonymize("abcdefghij", vec![r("A", 0, 6, 0.9), r("B", 4, 10, 0.5)], replace.clone()),
        ),
        ("conflict 6 keep", anonymize("abcdefghij", vec![r("A", 0, 6, 0.9), r("B", 4, 10, 0.5)], keep.clone())),
        (
            "conflict 7 space",
            anonymize("John Smith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5)], replace.clone()),
        ),
        (
            "conflict 8 two spaces",
            anonymize("John  Smith", vec![r("PERSON", 0, 4, 0.5), r("PERSON", 6, 11, 0.9)], replace.clone()),
        ),
        (
            "conflict 9 tab",
            anonymize("John\tSmith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5)], replace.clone()),
        ),
        (
            "conflict 10 newline",
            anonymize("John\nSmith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5)], replace.clone()),
        ),
        (
            "conflict 10 nbsp",
            anonymize("John\u{a0}Smith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5)], replace.clone()),
        ),
        (
            "conflict 11 comma",
            anonymize("John, Smith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 6, 11, 0.5)], replace.clone()),
        ),
        (
            "conflict 12 types",
            anonymize("John Berlin", vec![r("PERSON", 0, 4, 0.9), r("LOCATION", 5, 11, 0.5)], replace.clone()),
        ),
        (
            "conflict 13 chain",
            anonymize(
                "abcdefghijklmno",
                vec![r("X", 0, 5, 0.1), r("X", 3, 8, 0.2), r("X", 7, 12, 0.3)],
                replace.clone(),
            ),
        ),
        (
            "conflict 14 contained same type",
            anonymize("abcdefghij", vec![r("X", 0, 10, 0.2), r("X", 2, 5, 0.9)], replace.clone()),
        ),
        (
            "conflict 15 three names",
            anonymize(
                "Anna Maria Lopez x",
                vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5), r("PERSON", 11, 16, 0.7)],
                replace.clone(),
            ),
        ),
        (
            "conflict 16 contained other type",
            anonymize(
                "John Smith Jr",
                vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.5), r("NRP", 5, 13, 0.95)],
                replace.clone(),
            ),
        ),
        ("conflict 17 empty span", anonymize("abc", vec![r("X", 1, 1, 0.5)], replace.clone())),
        (
            "conflict 18 unsorted",
            anonymize("John Smith and Bob", vec![r("PERSON", 15, 18, 0.9), r("PERSON", 0, 10, 0.5)], replace.clone()),
        ),
        (
            "conflict space then newline",
            anonymize("John \nSmith", vec![r("PERSON", 0, 4, 0.9), r("PERSON", 6, 11, 0.5)], replace.clone()),
        ),
        (
            "conflict zero width at an end",
            anonymize("abcdef", vec![r("X", 0, 3, 0.5), r("Y", 3, 3, 0.9)], replace.clone()),
        ),
        (
            "conflict mixed operators",
            anonymize(
                "John Smith at Acme",
                vec![r("PERSON", 0, 4, 0.9), r("PERSON", 5, 10, 0.8), r("ORG", 14, 18, 0.7)],
                json!({"PERSON": {"type": "mask", "masking_char": "*", "chars_to_mask": 2, "from_end": false}, "ORG": {"type": "redact"}}),
            ),
        ),
        // The error contract.
        ("body {}", post("/anonymize", json!({}))),
        ("body []", post("/anonymize", json!([]))),
        ("body null", post("/anonymize", json!(null))),
        ("malformed json", raw("/anonymize", Some("application/json"), "{\"text\": ")),
        ("empty body", raw("/anonymize", Some("application/json"), "")),
        ("text/plain", raw("/anonymize", Some("text/plain"), "{\"text\": \"a\", \"analyzer_results\": []}")),
        ("no content type", raw("/anonymize", None, "{\"text\": \"a\", \"analyzer_results\": []}")),
        ("missing analyzer_results", post("/anonymize", json!({"text": text}))),
        ("null analyzer_results", post("/anonymize", json!({"text": text, "analyzer_results": null}))),
        ("missing text with results", post("/anonymize", json!({"analyzer_results": both()}))),
        ("result without start", anonymize(text, vec![json!({"end": 2, "score": 1, "entity_type": "X"})], json!({}))),
        ("result without end", anonymize(text, vec![json!({"start": 2, "score": 1, "entity_type": "X"})], json!({}))),
        ("result without entity_type", anonymize(text, vec![json!({"start": 2, "end": 4, "score": 1})], json!({}))),
        (
            "result with empty entity_type",
            anonymize(text, vec![json!({"start": 2, "end": 4, "score": 1, "entity_type": ""})], json!({})),
        ),
        ("result without score", anonymize(text, vec![json!({"start": 2, "end": 4, "entity_type": "X"})], json!({}))),
        (
            "result with null score",
            anonymize(text, vec![json!({"start": 2, "end": 4, "entity_type": "X", "score": null})], json!({})),
        ),
        (
            "string start",
            anonymize(text, vec![json!({"start": "11", "end": 21, "score": 1, "entity_type": "X"})], json!({})),
        ),
        (
            "float start",
            anonymize(text, vec![json!({"start": 11.0, "end": 21, "score": 1, "entity_type": "X"})], json!({})),
        ),
        ("start after end", anonymize(text, vec![r("X", 21, 11, 1.0)], json!({}))),
        (
            "negative start",
            anonymize(text, vec![json!({"start": -1, "end": 3, "score": 1, "entity_type": "X"})], json!({})),
        ),
        ("end past the text", anonymize(text, vec![r("X", 11, 100, 1.0)], json!({}))),
        ("rightmost range error first", anonymize("abc", vec![r("X", 5, 6, 1.0), r("Y", 9, 12, 1.0)], json!({}))),
        ("operator without type", anonymize(text, both(), json!({"PERSON": {"new_value": "x"}}))),
        ("unknown operator", anonymize(text, both(), json!({"PERSON": {"type": "foo"}}))),
        ("custom operator", anonymize(text, both(), json!({"PERSON": {"type": "custom", "lambda": "x"}}))),
        (
            "custom before results are read",
            post("/anonymize", json!({"text": "a", "anonymizers": {"A": {"type": "custom"}}})),
        ),
        ("hash md5", person(json!({"type": "hash", "hash_type": "md5"}))),
        ("hash type 5", person(json!({"type": "hash", "hash_type": 5}))),
        ("hash type null", person(json!({"type": "hash", "hash_type": null}))),
        ("hash empty salt", person(json!({"type": "hash", "salt": ""}))),
        ("hash short salt", person(json!({"type": "hash", "salt": "short"}))),
        ("hash short unicode salt", person(json!({"type": "hash", "salt": "ünïcødé"}))),
        ("encrypt short key", person(json!({"type": "encrypt", "key": "short"}))),
        ("encrypt numeric key", person(json!({"type": "encrypt", "key": 1234}))),
        ("mask without masking_char", mask(json!({"chars_to_mask": 4, "from_end": true}))),
        ("mask two chars", mask(json!({"masking_char": "**", "chars_to_mask": 4, "from_end": true}))),
        ("mask without chars_to_mask", mask(json!({"masking_char": "*", "from_end": true}))),
        ("mask string chars_to_mask", mask(json!({"masking_char": "*", "chars_to_mask": "4", "from_end": true}))),
        ("mask without from_end", mask(json!({"masking_char": "*", "chars_to_mask": 4}))),
        ("mask string from_end", mask(json!({"masking_char": "*", "chars_to_mask": 4, "from_end": "yes"}))),
        ("replace numeric new_value", person(json!({"type": "replace", "new_value": 5}))),
        // Deanonymize.
        (
            "deanonymize, no results",
            post(
                "/deanonymize",
                json!({"text": "hello", "deanonymizers": {"DEFAULT": {"type": "decrypt", "key": KEY}}}),
            ),
        ),
        ("deanonymize, empty results", post("/deanonymize", json!({"text": "hello", "anonymizer_results": []}))),
        ("deanonymize, no text", post("/deanonymize", json!({"anonymizer_results": []}))),
        (
            "decrypt Presidio's vector",
            post(
                "/deanonymize",
                json!({"text": "name: AAECAwQFBgcICQoLDA0OD0IdhY0l594Ohh0EdSP4CSo= ok",
                "anonymizer_results": [{"start": 6, "end": 50, "entity_type": "PERSON", "text": "x", "operator": "encrypt", "score": 1}],
                "deanonymizers": {"PERSON": {"type": "decrypt", "key": KEY}}}),
            ),
        ),
        (
            "decrypt via DEFAULT, no score",
            post(
                "/deanonymize",
                json!({"text": "AAECAwQFBgcICQoLDA0OD0IdhY0l594Ohh0EdSP4CSo=",
                "anonymizer_results": [{"start": 0, "end": 44, "entity_type": "PERSON"}],
                "deanonymizers": {"DEFAULT": {"type": "decrypt", "key": KEY}}}),
            ),
        ),
        (
            "deanonymize_keep",
            post(
                "/deanonymize",
                json!({"text": "abc def", "anonymizer_results": [{"start": 4, "end": 7, "entity_type": "X", "score": 0.5}],
                "deanonymizers": {"X": {"type": "deanonymize_keep"}}}),
            ),
        ),
        (
            "deanonymize, replace is no deanonymizer",
            post(
                "/deanonymize",
                json!({"text": "abc", "anonymizer_results": [{"start": 0, "end": 1, "entity_type": "X"}],
                "deanonymizers": {"X": {"type": "replace"}}}),
            ),
        ),
        (
            "decrypt short key",
            post(
                "/deanonymize",
                json!({"text": "abc", "anonymizer_results": [{"start": 0, "end": 1, "entity_type": "X"}],
                "deanonymizers": {"DEFAULT": {"type": "decrypt", "key": "short"}}}),
            ),
        ),
        (
            "deanonymize range error",
            post(
                "/deanonymize",
                json!({"text": "abc", "anonymizer_results": [{"start": 0, "end": 9, "entity_type": "X"}],
                "deanonymizers": {"DEFAULT": {"type": "deanonymize_keep"}}}),
            ),
        ),
        (
            "deanonymize result without start",
            post("/deanonymize", json!({"text": "abc", "anonymizer_results": [{"end": 1, "entity_type": "X"}]})),
        ),
        ("deanonymize body {}", post("/deanonymize", json!({}))),
        ("deanonymize text/plain", raw("/deanonymize", Some("text/plain"), "{}")),
        ("deanonymizers list", get("/deanonymizers")),
    ];
    // Every operator on the same input, in one request per operator, then all at once.
    let ops = [
        json!({"type": "replace", "new_value": "<X>"}),
        json!({"type": "redact"}),
        json!({"type": "keep"}),
        json!({"type": "mask", "masking_char": "x", "chars_to_mask": 2, "from_end": true}),
        json!({"type": "hash", "salt": "a sixteen byte salt"}),
    ];
    for (i, op) in ops.iter().enumerate() {
        let names = ["all ops: replace", "all ops: redact", "all ops: keep", "all ops: mask", "all ops: hash"];
        cases.push((
            names[i],
            anonymize(
                "a@b.io and 212-555-1234",
                vec![r("EMAIL", 0, 6, 0.9), r("PHONE", 11, 23, 0.4)],
                json!({"DEFAULT": op}),
            ),
        ));
    }
    cases
}

/// Requests Presidio answers with a 500 (its code fails on the input) and Loom with a 4xx in
/// Presidio's style: `(name, request, Loom's status, Loom's message)`.
fn loom_answers_instead_of_a_500() -> Vec<(&'static str, Req, u16, &'static str)> {
    vec![
        ("array body", post("/anonymize", json!([1])), 400, "Invalid request json"),
        (
            "anonymizers a list",
            post("/anonymize", json!({"text": "a", "analyzer_results": [], "anonymizers": []})),
            422,
            "Invalid parameter value for 'anonymizers'.",
        ),
        (
            "analyzer_results an object",
            post("/anonymize", json!({"text": "a", "analyzer_results": {"a": 1}})),
            422,
            "Invalid parameter value for 'analyzer_results'.",
        ),
        (
            "numeric salt",
            anonymize("abc", vec![result("X", 0, 1, 1.0)], json!({"DEFAULT": {"type": "hash", "salt": 12345}})),
            422,
            "Invalid parameter value for salt. Expecting 'string', but got 'number'.",
        ),
        (
            "numeric text",
            post("/anonymize", json!({"text": 5, "analyzer_results": [result("X", 0, 1, 1.0)]})),
            422,
            "Invalid parameter value for text. Expecting 'string', but got 'number'.",
        ),
        (
            "decrypt with the wrong key",
            post(
                "/deanonymize",
                json!({"text": "AAECAwQFBgcICQoLDA0OD0IdhY0l594Ohh0EdSP4CSo=",
                "anonymizer_results": [{"start": 0, "end": 44, "entity_type": "P"}],
                "deanonymizers": {"DEFAULT": {"type": "decrypt", "key": "0123456789abcdef"}}}),
            ),
            422,
            "Invalid input, the text at 0..44 does not decrypt under the given key",
        ),
    ]
}

#[tokio::test]
async fn loom_answers_presidios_anonymizer_requests_as_presidio_does() {
    let presidio = reference().await;
    let node = LoomNode::start_ready("presidio-parity", NodeOptions::default()).await;
    let loom = node.url(PF, "");
    let mut compared = 0;
    let mut failures = Vec::new();

    for (name, req) in exact_cases() {
        let (want, got) = (send(&presidio.base, &req).await, send(&loom, &req).await);
        compared += 1;
        if want != got {
            failures.push(format!("{name}:\n  presidio {want:?}\n  loom     {got:?}"));
        }
    }

    // GET /anonymizers: Presidio's list without `custom` (its HTTP API refuses it) and the Azure
    // `surrogate_ahds`, then Loom's own two.
    let (_, _, want) = send(&presidio.base, &get("/anonymizers")).await;
    let (status, mime, got) = send(&loom, &get("/anonymizers")).await;
    compared += 1;
    let mut expected: Vec<Value> =
        want.as_array().expect("a list").iter().filter(|n| *n != "custom" && *n != "surrogate_ahds").cloned().collect();
    expected.extend([json!("generalize"), json!("pseudonymize")]);
    assert_eq!((status, mime.as_str(), got), (200, "application/json", Value::Array(expected)));

    // encrypt with the caller's key: each side's ciphertext opens on the other side.
    for (size, key) in [(128, KEY), (192, "0123456789abcdef01234567"), (256, "ÄÄÄÄÄÄÄÄ0123456789abcdef")] {
        let req = anonymize(
            "My name is John Smith.",
            vec![result("PERSON", 11, 21, 0.85)],
            json!({"PERSON": {"type": "encrypt", "key": key}}),
        );
        let (ws, _, want) = send(&presidio.base, &req).await;
        let (gs, _, got) = send(&loom, &req).await;
        compared += 1;
        assert_eq!((gs, ws), (200, 200), "{size}: {got} / {want}");
        let token_len = |v: &Value| v["items"][0]["text"].as_str().map(str::len);
        assert_eq!(token_len(&got), token_len(&want), "{size}: same ciphertext length");
        let mut shape = got.clone();
        shape["items"][0]["text"] = want["items"][0]["text"].clone();
        shape["text"] = want["text"].clone();
        assert_eq!(shape, want, "{size}: same items but for the ciphertext");
        for (from, to, anon) in [("loom", &presidio.base, &got), ("presidio", &loom, &want)] {
            let back = post(
                "/deanonymize",
                json!({"text": anon["text"], "anonymizer_results": anon["items"],
                "deanonymizers": {"PERSON": {"type": "decrypt", "key": key}}}),
            );
            let (s, _, out) = send(to, &back).await;
            compared += 1;
            assert_eq!(
                (s, out["text"].as_str()),
                (200, Some("My name is John Smith.")),
                "{size}: {from}'s ciphertext: {out}"
            );
            assert_eq!(out["items"][0]["score"], json!(0.85));
        }
    }

    // hash without salt: Presidio draws a random salt, Loom uses its keyed HMAC; same shape.
    for (hash_type, len) in [("sha256", 64), ("sha512", 128)] {
        let req = anonymize(
            "John Smith",
            vec![result("PERSON", 0, 10, 0.5)],
            json!({"DEFAULT": {"type": "hash", "hash_type": hash_type}}),
        );
        let (ws, _, want) = send(&presidio.base, &req).await;
        let (gs, _, got) = send(&loom, &req).await;
        compared += 1;
        for (who, v) in [("presidio", &want), ("loom", &got)] {
            let digest = v["text"].as_str().unwrap_or_default();
            assert!(digest.len() == len && digest.chars().all(|c| c.is_ascii_hexdigit()), "{who} {hash_type}: {v}");
            assert_eq!(v["items"][0]["text"], v["text"]);
            assert_eq!((v["items"][0]["start"].as_u64(), v["items"][0]["end"].as_u64()), (Some(0), Some(len as u64)));
        }
        assert_eq!((gs, ws), (200, 200));
    }

    for (name, req, status, message) in loom_answers_instead_of_a_500() {
        let (ws, _, want) = send(&presidio.base, &req).await;
        let (gs, mime, got) = send(&loom, &req).await;
        compared += 1;
        assert_eq!((ws, &want), (500, &json!({"error": "Internal server error"})), "{name}: Presidio fails on it");
        assert_eq!((gs, mime.as_str(), got), (status, "application/json", json!({ "error": message })), "{name}");
    }

    eprintln!("presidio parity: {compared} requests compared, {} differ", failures.len());
    assert!(failures.is_empty(), "{} of {compared} differ:\n{}", failures.len(), failures.join("\n"));
}
