//! The Schema Registry over real sockets: the Confluent REST API (ids, versions, soft and
//! permanent deletes, deletes refused while referenced (42206), lookup, references, config,
//! mode, compatibility, error codes), `/validate`, the official JSON-Schema-Test-Suite, the real
//! `confluent-kafka` Python client, and concurrent registration across a three-node cluster
//! sharing PostgreSQL.

// Tests print the suite's pass rate per draft.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use futures::StreamExt;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::{Value, json};

const REG: u16 = 8010;
const CT: &str = "application/vnd.schemaregistry.v1+json";

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(node: &LoomNode) -> Client {
        Client { base: node.url(REG, ""), http: http() }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.parse().unwrap(), url).header("content-type", CT);
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.expect("registry answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }

    async fn register(&self, subject: &str, schema: Value) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), json!({"schemaType": "JSON", "schema": schema.to_string()}))
            .await
    }
}

fn gps() -> Value {
    json!({"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number"}}, "required": ["lat", "lon"]})
}

#[tokio::test]
async fn the_confluent_api_behaves_like_confluent() {
    let node = LoomNode::start_ready("registry", NodeOptions::default()).await;
    let c = Client::new(&node);

    // Ids: stable, shared across subjects, identical for reformatted schemas.
    let (s, v) = c.register("gps-value", gps()).await;
    assert_eq!((s, v["id"].as_i64().is_some()), (200, true), "{v}");
    let id = v["id"].clone();
    let reformatted = serde_json::to_string_pretty(&gps()).unwrap();
    let (_, again) = c.post("/subjects/gps-value/versions", json!({"schemaType": "JSON", "schema": reformatted})).await;
    assert_eq!(again["id"], id, "re-registering is idempotent");
    assert_eq!(c.register("other", gps()).await.1["id"], id, "same schema, same global id");
    assert_eq!(c.get("/subjects/gps-value/versions").await.1, json!([1]));

    let mut v2 = gps();
    v2["properties"]["alt"] = json!({"type": "number"});
    v2["additionalProperties"] = json!(true);
    c.send("PUT", "/config/gps-value", Some(json!({"compatibility": "NONE"}))).await;
    let (_, r2) = c.register("gps-value", v2.clone()).await;
    assert_ne!(r2["id"], id);
    let (_, latest) = c.get("/subjects/gps-value/versions/latest").await;
    assert_eq!(
        (latest["version"].clone(), latest["schemaType"].clone(), latest["subject"].clone()),
        (json!(2), json!("JSON"), json!("gps-value"))
    );
    assert_eq!(c.get("/subjects/gps-value/versions/1/schema").await.1, gps());
    assert_eq!(c.get(&format!("/schemas/ids/{id}/subjects")).await.1, json!(["gps-value", "other"]));
    assert_eq!(
        c.get(&format!("/schemas/ids/{id}/versions")).await.1,
        json!([{"subject": "gps-value", "version": 1}, {"subject": "other", "version": 1}])
    );
    let (_, by_id) = c.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(serde_json::from_str::<Value>(by_id["schema"].as_str().unwrap()).unwrap(), gps());

    // Lookup.
    let (s, found) = c.post("/subjects/gps-value", json!({"schemaType": "JSON", "schema": gps().to_string()})).await;
    assert_eq!((s, found["version"].clone()), (200, json!(1)));
    let (s, e) = c.post("/subjects/gps-value", json!({"schemaType": "JSON", "schema": "{\"type\": \"string\"}"})).await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40403)));

    // Soft delete; numbering continues; permanent delete needs a soft delete first.
    let (s, e) = c.send("DELETE", "/subjects/gps-value/versions/2?permanent=true", None).await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40407)));
    assert_eq!(c.send("DELETE", "/subjects/gps-value/versions/2", None).await.1, json!(2));
    assert_eq!(c.get("/subjects/gps-value/versions").await.1, json!([1]));
    assert_eq!(c.get("/subjects/gps-value/versions?deleted=true").await.1, json!([1, 2]));
    let mut v3 = v2.clone();
    v3["properties"]["speed"] = json!({"type": "number"});
    c.register("gps-value", v3).await;
    assert_eq!(c.get("/subjects/gps-value/versions").await.1, json!([1, 3]));
    assert_eq!(c.send("DELETE", "/subjects/gps-value/versions/2?permanent=true", None).await.1, json!(2));

    // Subject deletes.
    let (s, e) = c.send("DELETE", "/subjects/other?permanent=true", None).await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40405)));
    assert_eq!(c.send("DELETE", "/subjects/other", None).await.1, json!([1]));
    assert_eq!(c.get("/subjects/other/versions").await.1["error_code"], 40401);
    assert_eq!(c.get("/subjects").await.1, json!(["gps-value"]));
    assert_eq!(c.get("/subjects?deleted=true").await.1, json!(["gps-value", "other"]));
    assert_eq!(c.send("DELETE", "/subjects/other?permanent=true", None).await.1, json!([1]));
    assert_eq!(c.get("/subjects?deleted=true").await.1, json!(["gps-value"]));

    // Config and mode.
    assert_eq!(c.get("/config").await.1, json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(c.get("/config/nothing-set").await.1["error_code"], 40408);
    assert_eq!(c.get("/config/nothing-set?defaultToGlobal=true").await.1, json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(
        c.send("PUT", "/config/gps-value", Some(json!({"compatibility": "full"}))).await.1,
        json!({"compatibility": "FULL"})
    );
    let (s, e) = c.send("PUT", "/config/gps-value", Some(json!({"compatibility": "SIDEWAYS"}))).await;
    assert_eq!((s, e["error_code"].clone()), (422, json!(42203)));
    assert_eq!(c.send("DELETE", "/config/gps-value", None).await.1, json!({"compatibilityLevel": "FULL"}));
    // A subject with only a policy set has a config to delete as well.
    c.send("PUT", "/config/policy-only", Some(json!({"compatibilityPolicy": "lenient"}))).await;
    let (s, v) = c.send("DELETE", "/config/policy-only", None).await;
    assert_eq!((s, v["compatibilityPolicy"].as_str()), (200, Some("LENIENT")), "{v}");
    assert_eq!(c.get("/config/policy-only").await.1["error_code"], 40408, "deleted");
    assert_eq!(
        c.send("PUT", "/mode/gps-value", Some(json!({"mode": "READONLY"}))).await.1,
        json!({"mode": "READONLY"})
    );
    let (s, e) = c.register("gps-value", json!({"type": "object"})).await;
    assert_eq!((s, e["error_code"].clone()), (422, json!(42205)));
    let (s, e) = c.send("PUT", "/mode/gps-value", Some(json!({"mode": "SOMETIMES"}))).await;
    assert_eq!((s, e["error_code"].clone()), (422, json!(42204)));
    c.send("PUT", "/mode/gps-value", Some(json!({"mode": "READWRITE"}))).await;
    assert_eq!(c.get("/mode").await.1, json!({"mode": "READWRITE"}));

    // Compatibility, explained.
    let narrowed = json!({"type": "object", "properties": {"lat": {"type": "integer"}}, "required": ["lat"]});
    let (s, v) = c
        .post(
            "/compatibility/subjects/gps-value/versions/1?verbose=true",
            json!({"schemaType": "JSON", "schema": narrowed.to_string()}),
        )
        .await;
    assert_eq!((s, v["is_compatible"].clone()), (200, json!(false)), "{v}");
    let first = &v["incompatibilities"][0];
    assert_eq!((first["path"].as_str(), first["rule"].as_str()), (Some("#/properties/lat"), Some("TYPE_NARROWED")));
    assert!(v["messages"][0].as_str().unwrap().contains("jsonPath='#/properties/lat'"));
    let (s, e) = c.register("gps-value", narrowed).await;
    assert_eq!((s, e["error_code"].clone()), (409, json!(409)));
    assert!(e["message"].as_str().unwrap().contains("TYPE_NARROWED"), "{e}");

    // References.
    let point = json!({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]});
    c.register("point", point).await;
    let track = json!({"type": "array", "items": {"$ref": "point.json"}});
    let (s, t) = c
        .post("/subjects/track/versions", json!({"schemaType": "JSON", "schema": track.to_string(), "references": [{"name": "point.json", "subject": "point", "version": 1}]}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(c.get("/subjects/point/versions/1/referencedby").await.1, json!([t["id"]]));
    let (_, bad) = c.post("/validate", json!({"schema_name": "track", "data": [{"x": 1}, {"y": 2}]})).await;
    assert_eq!((bad["valid"].clone(), bad["errors"][0]["path"].clone()), (json!(false), json!("/1")));
    let (s, e) = c.post("/subjects/t2/versions", json!({"schemaType": "JSON", "schema": track.to_string(), "references": [{"name": "point.json", "subject": "point", "version": 9}]})).await;
    assert_eq!((s, e["error_code"].clone()), (422, json!(42201)));
    // Too many references are refused, never cut silently.
    let many: Vec<Value> =
        (0..257).map(|i| json!({"name": format!("r{i}.json"), "subject": "point", "version": 1})).collect();
    let (s, e) = c
        .post("/subjects/t3/versions", json!({"schemaType": "JSON", "schema": track.to_string(), "references": many}))
        .await;
    assert_eq!((s, e["error_code"].as_i64()), (422, Some(42201)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("at most 256"), "{e}");

    // Bad input: Confluent codes, never a 500.
    let cases: &[(&str, &str, Option<&str>, u16, i64)] = &[
        ("POST", "/subjects/x/versions", Some("{not json"), 400, 400),
        ("POST", "/subjects/x/versions", Some(r#"{"schemaType":"JSON","schema":"{\"type\": 12}"}"#), 422, 42201),
        ("POST", "/subjects/x/versions", Some(r#"{"schemaType":"JSON","schema":"not json"}"#), 422, 42201),
        (
            "POST",
            "/subjects/x/versions",
            Some(r#"{"schema":"{\"type\":\"record\",\"name\":\"a\",\"fields\":[]}"}"#),
            422,
            42201,
        ),
        ("GET", "/subjects/nope/versions", None, 404, 40401),
        ("GET", "/subjects/gps-value/versions/0", None, 422, 42202),
        ("GET", "/subjects/gps-value/versions/abc", None, 422, 42202),
        ("GET", "/subjects/gps-value/versions/99", None, 404, 40402),
        ("GET", "/schemas/ids/999999", None, 404, 40403),
        ("GET", "/schemas/ids/x", None, 404, 40403),
        ("POST", "/validate", Some(r#"{"schema_name":"nope","data":1}"#), 404, 40401),
        ("POST", "/validate", Some(r#"{"data":1}"#), 400, 400),
    ];
    for (method, path, body, status, code) in cases {
        let url = format!("{}{path}", c.base);
        let mut req = c.http.request(method.parse().unwrap(), url).header("content-type", CT);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let got_status = resp.status().as_u16();
        let got: Value = resp.json().await.unwrap();
        assert_eq!((got_status, got["error_code"].as_i64()), (*status, Some(*code)), "{method} {path}: {got}");
    }
    assert_eq!(c.get("/schemas/types").await.1, json!(["JSON"]));
}

#[tokio::test]
async fn deleting_a_referenced_version_is_refused_with_42206() {
    let node = LoomNode::start_ready("registry-refs", NodeOptions::default()).await;
    let c = Client::new(&node);
    let delete = |path: String| {
        let c = &c;
        async move { c.send("DELETE", &path, None).await }
    };
    let refused = |subject: &str, version: i32| json!({"error_code": 42206, "message": format!("One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={subject},version={version}}}.")});
    let address = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    assert_eq!(c.register("address", address).await.0, 200);
    let person = json!({"type": "object", "properties": {"home": {"$ref": "address.json"}}});
    let (s, b) = c
        .post("/subjects/person/versions", json!({"schemaType": "JSON", "schema": person.to_string(), "references": [{"name": "address.json", "subject": "address", "version": 1}]}))
        .await;
    assert_eq!(s, 200, "{b}");
    let b_id = b["id"].clone();

    // A live referrer blocks every kind of delete; `permanent` on the live version answers
    // 42206 before 40407, as Confluent checks references first.
    for path in ["/subjects/address/versions/1", "/subjects/address/versions/1?permanent=true", "/subjects/address"] {
        assert_eq!(delete(path.into()).await, (422, refused("address", 1)), "{path}");
    }
    assert_eq!(c.get("/subjects/address/versions/1/referencedby").await.1, json!([b_id]));

    // The referrer soft-deleted: A can be soft-deleted, not hard-deleted (a soft-deleted
    // referrer still counts for `permanent`).
    assert_eq!(delete("/subjects/person/versions/1".into()).await, (200, json!(1)));
    assert_eq!(c.get("/subjects/address/versions/1/referencedby").await.1, json!([]));
    assert_eq!(c.get("/subjects/address/versions/1/referencedby?deleted=true").await.1, json!([b_id]));
    assert_eq!(delete("/subjects/address/versions/1".into()).await, (200, json!(1)));
    let (s, e) = delete("/subjects/address/versions/1".into()).await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40406)), "already soft-deleted: {e}");
    assert_eq!(delete("/subjects/address/versions/1?permanent=true".into()).await, (422, refused("address", 1)));
    assert_eq!(delete("/subjects/address?permanent=true".into()).await, (422, refused("address", 1)));
    // The referenced version is found even soft-deleted.
    assert_eq!(c.get("/subjects/address/versions/1/referencedby?deleted=true").await.1, json!([b_id]));

    // The referrer hard-deleted: nothing references A any more.
    assert_eq!(delete("/subjects/person/versions/1?permanent=true".into()).await, (200, json!(1)));
    assert_eq!(c.get("/subjects/address/versions/1/referencedby?deleted=true").await.1, json!([]));
    assert_eq!(delete("/subjects/address/versions/1?permanent=true".into()).await, (200, json!(1)));
    assert_eq!(c.get("/subjects/address/versions?deleted=true").await.1["error_code"], 40401);

    // References within one subject do not block deleting the whole subject.
    let base = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    c.register("selfref", base).await;
    c.send("PUT", "/config/selfref", Some(json!({"compatibility": "NONE"}))).await;
    let (s, v) = c
        .post("/subjects/selfref/versions", json!({"schemaType": "JSON", "schema": json!({"$ref": "base.json"}).to_string(), "references": [{"name": "base.json", "subject": "selfref", "version": 1}]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(delete("/subjects/selfref/versions/1".into()).await, (422, refused("selfref", 1)));
    assert_eq!(delete("/subjects/selfref".into()).await, (200, json!([1, 2])));
    assert_eq!(delete("/subjects/selfref?permanent=true".into()).await, (200, json!([1, 2])));
}

#[tokio::test]
async fn validate_single_and_batch() {
    let node = LoomNode::start_ready("validate", NodeOptions::default()).await;
    let c = Client::new(&node);
    c.register("device.sensor.gps.v1", gps()).await;
    let (s, v) =
        c.post("/validate", json!({"schema_name": "device.sensor.gps.v1", "data": {"lat": 45.5, "lon": 9.1}})).await;
    assert_eq!((s, v["valid"].clone(), v["errors"].clone()), (200, json!(true), json!([])));
    let (_, v) =
        c.post("/validate", json!({"schema_name": "device.sensor.gps.v1", "data": {"lat": 123, "lon": "east"}})).await;
    let mut errors: Vec<(String, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().into(), e["keyword"].as_str().unwrap().into()))
        .collect();
    errors.sort();
    assert_eq!(errors, [("/lat".to_owned(), "maximum".to_owned()), ("/lon".to_owned(), "type".to_owned())]);
    let (_, b) = c
        .post(
            "/validate/batch",
            json!({"schema_name": "device.sensor.gps.v1", "items": [{"lat": 1, "lon": 2}, {"lat": 1}, "x"]}),
        )
        .await;
    assert_eq!((b["valid_count"].clone(), b["invalid_count"].clone()), (json!(1), json!(2)));
    let too_many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let (s, e) = c.post("/validate/batch", json!({"schema_name": "device.sensor.gps.v1", "items": too_many})).await;
    assert_eq!((s, e["error_code"].clone()), (400, json!(400)));
    let (s, e) = c.post("/validate", json!({"schema_name": "device.sensor.gps.v1", "version": 7, "data": {}})).await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40402)));
}

/// Every required test of the official suite, draft 4 to 2020-12, through `/validate`.
#[tokio::test]
async fn the_json_schema_test_suite_passes_through_validate() {
    let suite = infra::json_schema_test_suite();
    let node = LoomNode::start_ready("jsts", NodeOptions::default()).await;
    let c = std::sync::Arc::new(Client::new(&node));
    let drafts = [
        ("draft4", "http://json-schema.org/draft-04/schema#"),
        ("draft6", "http://json-schema.org/draft-06/schema#"),
        ("draft7", "http://json-schema.org/draft-07/schema#"),
        ("draft2019-09", "https://json-schema.org/draft/2019-09/schema"),
        ("draft2020-12", "https://json-schema.org/draft/2020-12/schema"),
    ];
    let mut report = Vec::new();
    for (draft, meta) in drafts {
        let dir = suite.join("tests").join(draft);
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut groups = Vec::new();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            // Remote references need the suite's HTTP server; not counted.
            if !name.ends_with(".json") || name.starts_with("refRemote") {
                continue;
            }
            let content: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            for (i, group) in content.as_array().unwrap().iter().enumerate() {
                groups.push((format!("jsts.{draft}.{}.{i}", name.trim_end_matches(".json")), group.clone()));
            }
        }
        let results: Vec<(usize, usize)> = futures::stream::iter(groups)
            .map(|(subject, group)| {
                let c = c.clone();
                async move {
                    let mut schema = group["schema"].clone();
                    if let Some(obj) = schema.as_object_mut() {
                        obj.entry("$schema").or_insert(json!(meta));
                    }
                    c.send("PUT", &format!("/config/{subject}"), Some(json!({"compatibility": "NONE"}))).await;
                    let (status, _) = c.register(&subject, schema).await;
                    let tests = group["tests"].as_array().unwrap();
                    let mut passed = 0;
                    if status == 200 {
                        for t in tests {
                            let (s, v) = c.post("/validate", json!({"schema_name": subject, "data": t["data"]})).await;
                            if s == 200 && v["valid"] == t["valid"] {
                                passed += 1;
                            }
                        }
                    }
                    (passed, tests.len())
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let (passed, total) = results.iter().fold((0, 0), |(p, t), (a, b)| (p + a, t + b));
        report.push((draft, passed, total));
    }
    let lines: Vec<String> =
        report.iter().map(|(d, p, t)| format!("{d}: {p}/{t} ({:.1}%)", 100.0 * *p as f64 / *t as f64)).collect();
    eprintln!("JSON-Schema-Test-Suite via /validate: {}", lines.join(", "));
    for (draft, passed, total) in report {
        assert!(passed as f64 >= 0.95 * total as f64, "{draft}: {passed}/{total}");
    }
}

const PY_CLIENT: &str = r#"
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
from confluent_kafka.schema_registry.json_schema import JSONSerializer, JSONDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField

url = sys.argv[1]
c = SchemaRegistryClient({"url": url})
gps = json.dumps({"type": "object", "title": "gps", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]})
out = {}
sid = c.register_schema("gps-value", Schema(gps, "JSON"))
out["id"] = sid
out["again"] = c.register_schema("gps-value", Schema(gps, "JSON"))
out["by_id"] = json.loads(c.get_schema(sid).schema_str)
latest = c.get_latest_version("gps-value")
out["latest"] = [latest.schema_id, latest.version, latest.subject]
found = c.lookup_schema("gps-value", Schema(gps, "JSON"))
out["lookup"] = [found.schema_id, found.version]
narrowed = json.dumps({"type": "object", "properties": {"lat": {"type": "integer"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]})
out["compatible_narrowed"] = c.test_compatibility("gps-value", Schema(narrowed, "JSON"))
widened = json.dumps({"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat"]})
out["compatible_widened"] = c.test_compatibility("gps-value", Schema(widened, "JSON"))
c.set_compatibility("gps-value", "FULL")
out["compat"] = c.get_compatibility("gps-value")
try:
    c.get_latest_version("missing")
except Exception as e:
    out["missing"] = [e.http_status_code, e.error_code]
ser = JSONSerializer(gps, c, conf={"auto.register.schemas": False, "use.latest.version": True})
ctx = SerializationContext("gps", MessageField.VALUE)
payload = ser({"lat": 1.5, "lon": 2.5}, ctx)
out["wire"] = [payload[0], int.from_bytes(payload[1:5], "big")]
de = JSONDeserializer(gps, schema_registry_client=c)
out["roundtrip"] = de(payload, ctx)
c.set_compatibility("gps-value", "NONE")
out["v2"] = c.register_schema("gps-value", Schema(widened, "JSON"))
out["subjects"] = c.get_subjects()
out["versions"] = c.get_versions("gps-value")
out["deleted_version"] = c.delete_version("gps-value", 1)
out["deleted_subject"] = c.delete_subject("gps-value")
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_confluent_python_client_drives_the_registry() {
    let node = LoomNode::start_ready("pyclient", NodeOptions::default()).await;
    let script = node.dir.path().join("client.py");
    std::fs::write(&script, PY_CLIENT).unwrap();
    let out = tokio::process::Command::new(infra::python())
        .arg(&script)
        .arg(node.url(REG, ""))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id = r["id"].clone();
    assert_eq!(r["again"], id);
    assert_eq!(r["by_id"]["title"], "gps");
    assert_eq!(r["latest"], json!([id, 1, "gps-value"]));
    assert_eq!(r["lookup"], json!([id, 1]));
    assert_eq!(r["compatible_narrowed"], false);
    assert_eq!(r["compatible_widened"], true);
    assert_eq!(r["compat"], "FULL");
    assert_eq!(r["subjects"], json!(["gps-value"]));
    assert_eq!(r["versions"], json!([1, 2]));
    assert_ne!(r["v2"], id);
    assert_eq!(r["missing"], json!([404, 40401]));
    assert_eq!(r["wire"], json!([0, id]), "magic byte 0 + 4-byte big-endian id");
    assert_eq!(r["roundtrip"], json!({"lat": 1.5, "lon": 2.5}));
    assert_eq!(r["deleted_version"], 1);
    assert_eq!(r["deleted_subject"], json!([2]));
}

/// Three nodes sharing PostgreSQL: the same schema registered concurrently through all of them
/// gets one id and one version; what a node acknowledged survives its kill -9.
#[tokio::test]
async fn concurrent_registration_across_a_cluster_yields_one_id() {
    let db = infra::fresh_postgres_database("registry_cluster").await;
    let cookie = format!("registry-cluster-{}", std::process::id());
    let options = |seeds: &[&LoomNode]| member_options(&cookie, seeds).env("LOOM_DATABASE_URL", &db);
    let n1 = start_member("r1", options(&[])).await;
    let n2 = start_member("r2", options(&[&n1])).await;
    let n3 = start_member("r3", options(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["r1", "r2", "r3"], Duration::from_secs(10)).await;
    let clients = [Client::new(&n1), Client::new(&n2), Client::new(&n3)];

    let calls = (0..30).map(|i| clients[i % 3].register("shared", gps()));
    let ids: Vec<Value> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(s, v)| {
            assert_eq!(s, 200, "{v}");
            v["id"].clone()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id: {ids:?}");
    for c in &clients {
        assert_eq!(c.get("/subjects/shared/versions").await.1, json!([1]));
    }
    // Distinct schemas on distinct subjects concurrently: distinct ids, no lost writes.
    let subjects: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    let calls = subjects.iter().enumerate().map(|(i, subject)| {
        let mut s = gps();
        s["title"] = json!(format!("variant {i}"));
        clients[i % 3].register(subject, s)
    });
    let ids: std::collections::BTreeSet<String> =
        futures::future::join_all(calls).await.into_iter().map(|(_, v)| v["id"].to_string()).collect();
    assert_eq!(ids.len(), 30);

    // A write on n1 reaches n2's cache through the cluster's invalidation broadcast, well
    // before the cache TTL (5 s) would.
    assert_eq!(clients[1].get("/subjects/shared/versions/latest").await.1["version"], 1);
    clients[0].send("PUT", "/config/shared", Some(json!({"compatibility": "NONE"}))).await;
    let mut v2 = gps();
    v2["title"] = json!("second");
    let (_, r2) = clients[0].register("shared", v2).await;
    let started = std::time::Instant::now();
    loom_testkit::eventually("n2 to see version 2", Duration::from_secs(2), || async {
        (clients[1].get("/subjects/shared/versions/latest").await.1["id"] == r2["id"]).then_some(())
    })
    .await;
    eprintln!("n2 saw n1's registration after {:?}", started.elapsed());

    // Acknowledged on n3, then n3 dies: every registration is there on n1.
    let mut acked = Vec::new();
    for i in 0..10 {
        let mut s = gps();
        s["title"] = json!(format!("before kill {i}"));
        let (status, v) = clients[2].register(&format!("k{i}"), s).await;
        assert_eq!(status, 200);
        acked.push((format!("k{i}"), v["id"].clone()));
    }
    n3.signal("KILL");
    for (subject, id) in acked {
        let (_, v) = clients[0].get(&format!("/subjects/{subject}/versions/latest")).await;
        assert_eq!(v["id"], id, "{subject}");
    }
}

#[tokio::test]
async fn history_and_generated_docs() {
    let node = LoomNode::start_ready("docs", NodeOptions::default()).await;
    let c = Client::new(&node);
    c.send("PUT", "/config/gps", Some(json!({"compatibility": "NONE"}))).await;
    let mut v1 = gps();
    v1["title"] = json!("GPS fix");
    v1["properties"]["lat"]["description"] = json!("latitude in degrees <north>");
    c.register("gps", v1.clone()).await;
    let mut v2 = v1.clone();
    v2["properties"]["alt"] = json!({"type": "number", "examples": [120.5]});
    c.register("gps", v2.clone()).await;
    let mut v3 = v2.clone();
    v3["properties"]["lat"]["type"] = json!("integer");
    c.register("gps", v3).await;

    let (s, h) = c.get("/subjects/gps/history").await;
    assert_eq!(s, 200, "{h}");
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[0].get("changes").is_none());
    assert_eq!(versions[1]["changes"], json!([{"kind": "added", "path": "/alt", "detail": "number, optional"}]));
    assert_eq!(versions[2]["breaking"], true);
    assert_eq!(versions[2]["changes"][0]["kind"], "changed");
    assert_eq!(versions[2]["incompatibilities"][0]["rule"], "TYPE_NARROWED");

    let resp = http().get(node.url(REG, "/docs/gps")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    for needle in
        ["<h1>gps</h1>", "<code>/lat</code>", "latitude in degrees &lt;north&gt;", "120.5", "breaking", "version 3"]
    {
        assert!(html.contains(needle), "{needle} missing from\n{html}");
    }
    let md = http()
        .get(node.url(REG, "/docs/gps/1"))
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(md.starts_with("# gps\n\nversion 1"), "{md}");
    assert!(md.contains("| `/lat` | number | yes | minimum: -90; maximum: 90 |"), "{md}");
    assert!(!md.contains("/alt"), "version 1 has no alt: {md}");
    let (s, e) = c.get("/docs/nope").await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40401)));
    let (s, e) = c.get("/docs/gps/9").await;
    assert_eq!((s, e["error_code"].clone()), (404, json!(40402)));
}
