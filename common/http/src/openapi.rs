//! The OpenAPI 3.1 document of a port, generated from the code: every route is registered through
//! `routes!(handler, …)` on an [`ApiRouter`], which reads the handler's `#[utoipa::path]`, so the
//! router and the document come from one declaration and cannot drift. [`finish`] then adds what
//! is the same on every port and follows from one rule elsewhere: the bearer-token scheme with
//! the scope [`Auth::required_scope`] enforces on each operation, the problem+json error
//! responses, the `409 cluster_store_required` of cluster-wide writes, path parameters a handler
//! did not spell out, unique operation ids and tags. [`docs_page`] renders the document as HTML
//! on the node itself (no script, nothing from a CDN).

use axum::http::Method;
use serde_json::{Map, Value, json};
use utoipa::PartialSchema;

use crate::{Auth, ClusterWide, Problem};

/// A port's router that collects the OpenAPI operations of the handlers registered on it.
pub type ApiRouter<S = ()> = utoipa_axum::router::OpenApiRouter<S>;

/// What [`finish`] needs to know about the port.
/// A body of raw bytes (an upload, a stored file), documented as `{"type": "string",
/// "format": "binary"}` rather than utoipa's reading of `Vec<u8>` as an array of integers.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// Gives every operation of `router` without a `default` response this one: for services whose
/// handlers answer in an ecosystem's error shape (the Schema Registry's Confluent bodies) rather
/// than problem+json. `finish` keeps a `default` an operation already has.
pub fn default_response<S: Clone + Send + Sync + 'static>(
    router: &mut ApiRouter<S>,
    response: utoipa::openapi::Response,
) {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            op.responses.responses.entry("default".into()).or_insert_with(|| response.clone().into());
        }
    }
}

pub struct SpecInfo<'a> {
    pub title: String,
    pub description: &'a str,
    pub version: &'a str,
    /// The service's cluster-wide writes (documented with their 409 on node-local stores).
    pub cluster_wide: ClusterWide,
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Completes a generated document; see the module docs for what is added.
pub fn finish(spec: utoipa::openapi::OpenApi, info: &SpecInfo<'_>) -> Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": info.title,
        "description": info.description,
        "version": info.version,
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    });
    if !doc.is_object() {
        doc = json!({});
    }
    let root = doc.as_object_mut().expect("an object");
    let components = object(root, "components");
    object(components, "securitySchemes").insert(
        "bearer".into(),
        json!({
            "type": "http",
            "scheme": "bearer",
            "description": "A token from LOOM_AUTH_TOKENS (`name:token:scope`). Scopes are ordered \
                            read < write < admin; a higher scope grants the lower ones. Without \
                            configured tokens every route is open.",
        }),
    );
    object(components, "schemas").insert("Problem".into(), problem_schema());
    let responses = object(components, "responses");
    for (name, description) in [
        ("Problem", "An error: RFC 9457 problem details with a stable `code`"),
        ("Unauthorized", "No or an unknown bearer token (`unauthorized`)"),
        ("Forbidden", "The token's scope is below the one this operation needs (`forbidden`)"),
        (
            "ClusterStoreRequired",
            "A cluster-wide write on a clustered node whose state store is node-local (`cluster_store_required`)",
        ),
    ] {
        responses.insert(name.into(), problem_response(description));
    }

    let mut ids = std::collections::HashSet::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for method in METHODS {
                let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
                complete_operation(op, method, path, info, &mut ids);
            }
        }
    }
    doc
}

fn complete_operation(
    op: &mut Map<String, Value>,
    method: &str,
    path: &str,
    info: &SpecInfo<'_>,
    ids: &mut std::collections::HashSet<String>,
) {
    let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
    let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let tag = if matches!(segment, "health" | "ready" | "metrics" | "version" | "openapi.json" | "docs")
        || path == "/admin/faults"
    {
        "ops"
    } else if segment.is_empty() {
        "root"
    } else {
        segment
    };
    op.insert("tags".into(), json!([tag]));

    let base = op.get("operationId").and_then(Value::as_str).unwrap_or("op").to_owned();
    let id = if ids.contains(&base) { format!("{method}{}", camel(path)) } else { base };
    ids.insert(id.clone());
    op.insert("operationId".into(), json!(id));

    // Path parameters the handler did not declare: strings.
    let params = op.entry("parameters").or_insert_with(|| json!([]));
    if let Some(list) = params.as_array_mut() {
        for name in path_params(path) {
            let declared = list.iter().any(|p| p["name"] == name && p["in"] == "path");
            if !declared {
                list.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        if list.is_empty() {
            op.remove("parameters");
        }
    }

    let scope = Auth::required_scope(&m, path);
    let security = match scope {
        Some(scope) => {
            op.insert("x-loom-scope".into(), json!(scope.name()));
            json!([{ "bearer": [scope.name()] }])
        }
        None => json!([]),
    };
    op.insert("security".into(), security);
    let cluster_wide = (info.cluster_wide)(&m, path);
    if cluster_wide {
        op.insert("x-loom-cluster-wide".into(), json!(true));
    }
    let responses = op.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    if scope.is_some() {
        responses.entry("401").or_insert_with(|| reference("Unauthorized"));
        responses.entry("403").or_insert_with(|| reference("Forbidden"));
    }
    if cluster_wide {
        responses.entry("409").or_insert_with(|| reference("ClusterStoreRequired"));
    }
    responses.entry("default").or_insert_with(|| reference("Problem"));
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

fn problem_schema() -> Value {
    serde_json::to_value(Problem::schema()).unwrap_or_else(|_| json!({"type": "object"}))
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("an object")
}

/// The `{name}` segments of a path template.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.trim_start_matches('*'))
        .collect()
}

fn camel(path: &str) -> String {
    path.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Every (method, path) the document describes, sorted.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    escape(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// A human page for the document: operations grouped by tag with their scope, parameters,
/// bodies and responses. Static HTML with inline CSS; the raw document is at `/openapi.json`.
pub fn docs_page(doc: &Value) -> String {
    let title = doc["info"]["title"].as_str().unwrap_or("Loom API");
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let tag = op["tags"][0].as_str().unwrap_or("api").to_owned();
                groups.entry(tag).or_default().push(render_operation(method, path, op));
            }
        }
    }
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;color:#1b1f24}}\
         h2{{border-bottom:1px solid #d0d7de;margin-top:2.5rem}}details{{border:1px solid #d0d7de;border-radius:6px;margin:.4rem 0;padding:.3rem .8rem}}\
         summary{{cursor:pointer}}code,pre{{font:13px ui-monospace,monospace}}pre{{background:#f6f8fa;padding:.6rem;overflow:auto;max-height:24rem}}\
         .m{{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}}.get{{color:#0969da}}.post{{color:#1a7f37}}\
         .put{{color:#9a6700}}.delete{{color:#cf222e}}.scope{{float:right;color:#57606a}}table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:left}}\
         </style></head><body><h1>{t}</h1><p>{d}</p><p>OpenAPI {v} document: <a href=\"/openapi.json\">/openapi.json</a>. \
         Version {ver}.</p>",
        t = escape(title),
        d = escape(doc["info"]["description"].as_str().unwrap_or("")),
        v = escape(doc["openapi"].as_str().unwrap_or("")),
        ver = escape(doc["info"]["version"].as_str().unwrap_or("")),
    );
    for (tag, ops) in groups {
        html.push_str(&format!("<h2 id=\"{0}\">{0}</h2>", escape(&tag)));
        for op in ops {
            html.push_str(&op);
        }
    }
    html.push_str("</body></html>");
    html
}

fn render_operation(method: &str, path: &str, op: &Value) -> String {
    let scope = op["x-loom-scope"].as_str().map(|s| format!("scope: {s}")).unwrap_or_else(|| "open".into());
    let mut body = String::new();
    if let Some(d) = op["description"].as_str() {
        body.push_str(&format!("<p>{}</p>", escape(d)));
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        body.push_str("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>");
        for p in params {
            body.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(p["name"].as_str().unwrap_or("")),
                escape(p["in"].as_str().unwrap_or("")),
                p["required"].as_bool().unwrap_or(false),
                escape(p["description"].as_str().unwrap_or("")),
            ));
        }
        body.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, c) in content {
            body.push_str(&format!(
                "<p>Request body <code>{}</code></p><pre>{}</pre>",
                escape(media),
                pretty(&c["schema"])
            ));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        body.push_str("<table><tr><th>status</th><th>response</th></tr>");
        for (status, r) in responses {
            let text = r["description"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| r["$ref"].as_str().map(|s| s.rsplit('/').next().unwrap_or(s).to_owned()))
                .unwrap_or_default();
            body.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", escape(status), escape(&text)));
        }
        body.push_str("</table>");
    }
    format!(
        "<details><summary><span class=\"m {m}\">{m}</span> <code>{p}</code> {s}<span class=\"scope\">{scope}</span></summary>{body}</details>",
        m = escape(method),
        p = escape(path),
        s = escape(op["summary"].as_str().unwrap_or("")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
    use utoipa::openapi::{OpenApiBuilder, ResponseBuilder};

    fn never(_: &Method, _: &str) -> bool {
        false
    }

    fn rules(m: &Method, p: &str) -> bool {
        crate::writes_under(m, p, "/rules")
    }

    fn spec(ops: &[(HttpMethod, &str, &str)]) -> utoipa::openapi::OpenApi {
        let mut paths = PathsBuilder::new();
        for (method, path, id) in ops {
            let op = OperationBuilder::new()
                .operation_id(Some(*id))
                .response("200", ResponseBuilder::new().description("ok"))
                .build();
            paths = paths.path(*path, PathItem::new(method.clone(), op));
        }
        OpenApiBuilder::new().paths(paths.build()).build()
    }

    #[test]
    fn scopes_problems_and_parameters_follow_the_shared_rules() {
        let raw = spec(&[
            (HttpMethod::Get, "/health", "health"),
            (HttpMethod::Get, "/rules/{id}", "read"),
            (HttpMethod::Put, "/rules/{id}", "replace"),
            (HttpMethod::Post, "/admin/keys", "rotate"),
            (HttpMethod::Get, "/jobs/{id}", "read"),
        ]);
        let info = SpecInfo { title: "t".into(), description: "d", version: "1", cluster_wide: rules };
        let doc = finish(raw, &info);
        assert_eq!(doc["openapi"], "3.1.0");
        let cases = [
            ("/health", "get", None),
            ("/rules/{id}", "get", Some("read")),
            ("/rules/{id}", "put", Some("write")),
            ("/admin/keys", "post", Some("admin")),
        ];
        for (path, method, scope) in cases {
            let op = &doc["paths"][path][method];
            match scope {
                Some(s) => {
                    assert_eq!(op["security"][0]["bearer"][0], s, "{method} {path}");
                    assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object());
                }
                None => {
                    assert_eq!(op["security"], json!([]), "{method} {path} is open");
                    assert!(op["responses"]["401"].is_null());
                }
            }
            assert!(op["responses"]["default"].is_object(), "{method} {path} documents problems");
        }
        assert!(doc["paths"]["/rules/{id}"]["put"]["responses"]["409"].is_object());
        assert!(doc["paths"]["/rules/{id}"]["get"]["responses"]["409"].is_null());
        assert_eq!(doc["paths"]["/rules/{id}"]["get"]["parameters"][0]["name"], "id");
        // Two handlers named `read` get distinct operation ids.
        let a = doc["paths"]["/rules/{id}"]["get"]["operationId"].as_str().unwrap();
        let b = doc["paths"]["/jobs/{id}"]["get"]["operationId"].as_str().unwrap();
        assert_ne!(a, b);
        assert_eq!(doc["components"]["schemas"]["Problem"]["type"], "object");
        assert_eq!(operations(&doc).len(), 5);
    }

    #[test]
    fn the_docs_page_escapes_and_lists_every_operation() {
        let raw = spec(&[(HttpMethod::Get, "/a/{x}", "a"), (HttpMethod::Post, "/b", "b")]);
        let info = SpecInfo { title: "<Loom>".into(), description: "", version: "1", cluster_wide: never };
        let page = docs_page(&finish(raw, &info));
        assert!(page.contains("&lt;Loom&gt;") && !page.contains("<Loom>"));
        assert!(page.contains("<code>/a/{x}</code>") && page.contains("<code>/b</code>"));
        assert!(!page.contains("<script"), "no scripts");
    }

    #[test]
    fn path_parameters_are_read_from_templates() {
        let cases = [("/a", vec![]), ("/a/{id}", vec!["id"]), ("/s/{subject}/v/{version}", vec!["subject", "version"])];
        for (path, want) in cases {
            assert_eq!(path_params(path), want, "{path}");
        }
    }
}
