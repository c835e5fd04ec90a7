//! The API contract of the ten ports, from outside: each serves an OpenAPI 3.1 document that
//! `openapi-spec-validator` (PyPI) accepts and a docs page listing every operation; every
//! operation in the document is routed (no 405, not the 404 fallback) and survives a request
//! without a body without a 500; and with tokens configured, every operation's declared scope is
//! the one the edge enforces (401 without a token, 403 below the scope, open routes open).
//! That no route escapes the document is checked in the source by `tidy.rs`.

use loom_testkit::node::PORTS;
use loom_testkit::{LoomNode, NodeOptions, http, infra};
use reqwest::Method;
use serde_json::Value;

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const FALLBACK: &str = "no route matches this path";

/// The document's operations as (method, path template, declared scope).
fn operations(doc: &Value) -> Vec<(Method, String, Option<String>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else { continue };
            if !op.is_object() || method == "parameters" {
                continue;
            }
            let scope = op["security"][0]["bearer"][0].as_str().map(str::to_owned);
            out.push((m, path.clone(), scope));
        }
    }
    out
}

/// A concrete path for a template: every `{param}` becomes `probe`.
fn concrete(template: &str) -> String {
    template.split('/').map(|s| if s.starts_with('{') { "probe" } else { s }).collect::<Vec<_>>().join("/")
}

fn validate(doc: &Value, port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{port}.json"));
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    let script = "import json,sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator\nvalidate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\nprint('valid')";
    let out = std::process::Command::new(infra::python()).args(["-c", script]).arg(&file).output().expect("python");
    assert!(
        out.status.success(),
        "port {port}: the document is not valid OpenAPI 3.1:\n{}",
        String::from_utf8_lossy(&out.stderr).lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test]
async fn every_port_documents_its_routes_and_enforces_the_declared_scopes() {
    let tokens = format!("reader:read:{READ},writer:write:{WRITE},ops:admin:{ADMIN}");
    let node = LoomNode::start_ready("openapi-1", NodeOptions::default().env("LOOM_AUTH_TOKENS", tokens)).await;
    let client = http();
    let mut walked = 0;
    let mut failures = Vec::new();
    for port in PORTS {
        // The description is open: clients fetch it to generate code.
        let r = client.get(node.url(port, "/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), 200, "port {port}");
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "port {port}");
        validate(&doc, port);
        let ops = operations(&doc);
        for p in ["/health", "/ready", "/metrics", "/version", "/openapi.json", "/docs"] {
            assert!(ops.iter().any(|(_, path, _)| path == p), "port {port} documents {p}");
        }
        assert!(ops.len() > 6, "port {port} documents its own routes, not only the ops routes: {}", ops.len());

        let page = client.get(node.url(port, "/docs")).send().await.unwrap();
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let page = page.text().await.unwrap();
        assert!(!page.contains("<script"), "port {port}: the docs page loads no script");
        for (_, path, _) in &ops {
            let shown = path.replace('&', "&amp;").replace('<', "&lt;");
            assert!(page.contains(&format!("<code>{shown}</code>")), "port {port}: /docs shows {path}");
        }

        for (method, template, scope) in &ops {
            let url = node.url(port, &concrete(template));
            walked += 1;
            // Routed: answered by a handler, not the fallback nor a 405, and without a 500.
            let r = client.request(method.clone(), &url).bearer_auth(ADMIN).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if status == 405 || (status == 404 && body.contains(FALLBACK)) || status == 500 {
                failures.push(format!(
                    "{port} {method} {template}: {status} {}",
                    body.chars().take(160).collect::<String>()
                ));
            }
            // The declared scope is the enforced one.
            let r = client.request(method.clone(), &url).send().await.unwrap();
            let anonymous = r.status().as_u16();
            let refusal = r.text().await.unwrap_or_default();
            match scope.as_deref() {
                None => {
                    // (POST /login answers 401 itself to a wrong token: not the edge's refusal.)
                    if anonymous == 401 && refusal.contains("\"unauthenticated\"") {
                        failures.push(format!("{port} {method} {template}: open in the document, 401 without a token"));
                    }
                }
                Some(scope) => {
                    if anonymous != 401 {
                        failures
                            .push(format!("{port} {method} {template}: needs {scope}, {anonymous} without a token"));
                    }
                    let below = match scope {
                        "read" => None,
                        "write" => Some(READ),
                        _ => Some(WRITE),
                    };
                    if let Some(token) = below {
                        let s = client.request(method.clone(), &url).bearer_auth(token).send().await.unwrap().status();
                        if s != 403 {
                            failures.push(format!("{port} {method} {template}: needs {scope}, {s} with a lower token"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {walked} operations:\n{}", failures.len(), failures.join("\n"));
    assert!(walked > 100, "walked {walked} operations");
}
