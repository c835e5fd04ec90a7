//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=target/release/loom cargo bench
//! -p loom-tests --bench registry`): Schema Registry throughput against a baseline in the same
//! run.
//!
//! 1. `POST /validate` of a small GPS event against a registered GPS schema on a real `loom`
//!    node, next to a bare axum handler in this process that parses the same body and answers
//!    `{"valid": true}` — the floor for "HTTP + JSON in, JSON out" on this machine.
//! 2. `GET /schemas/ids/{id}` on the node, next to the same bare handler serving a GET.

#[path = "support/load.rs"]
mod load;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use loom_testkit::{LoomNode, NodeOptions};
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;
const DURATION: Duration = Duration::from_secs(5);

async fn bare_validate(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(json!({"valid": body.get("data").is_some(), "errors": []}))
}

async fn bare_get() -> axum::Json<Value> {
    axum::Json(json!({"schemaType": "JSON", "schema": "{\"type\":\"object\"}"}))
}

#[tokio::main]
async fn main() {
    let node = LoomNode::start_ready("bench-registry", NodeOptions::default()).await;
    let client = reqwest::Client::new();
    let gps = json!({"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}, "alt": {"type": "number"}, "ts": {"type": "integer"}}, "required": ["lat", "lon", "ts"]});
    let reg: Value = client
        .post(node.url(8010, "/subjects/device.sensor.gps.v1/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({"schemaType": "JSON", "schema": gps.to_string()}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = reg["id"].as_i64().expect("registered");
    let body = json!({"schema_name": "device.sensor.gps.v1", "data": {"lat": 45.46, "lon": 9.19, "alt": 120.5, "ts": 1_764_000_000}}).to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/validate", post(bare_validate)).route("/get", get(bare_get));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let bare_v = load::drive(&format!("http://{addr}/validate"), Some(body.clone()), CONCURRENCY, DURATION).await;
    let loom_v = load::drive(&node.url(8010, "/validate"), Some(body), CONCURRENCY, DURATION).await;
    let bare_g = load::drive(&format!("http://{addr}/get"), None, CONCURRENCY, DURATION).await;
    let loom_g = load::drive(&node.url(8010, &format!("/schemas/ids/{id}")), None, CONCURRENCY, DURATION).await;

    let mut out = format!("{CONCURRENCY} keep-alive clients, {}s each, loopback\n", DURATION.as_secs());
    out += &bare_v.line("bare axum POST (parse+reply)");
    out += &loom_v.line("loom POST /validate");
    out += &format!("ratio /validate / bare: {:.2}\n", loom_v.rps / bare_v.rps);
    out += &bare_g.line("bare axum GET");
    out += &loom_g.line("loom GET /schemas/ids/{id}");
    out += &format!("ratio /schemas/ids / bare: {:.2}\n", loom_g.rps / bare_g.rps);
    // The bench's output is its product.
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
}
