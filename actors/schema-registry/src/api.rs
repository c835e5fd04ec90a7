//! The HTTP routes on 8010: the Confluent Schema Registry REST API for JSON Schema (subjects,
//! versions, schemas by id, config, mode, compatibility) with its content type and error
//! bodies, plus Loom's `/validate` and `/validate/batch`. Handlers parse, call the registry (reads)
//! or the writer (writes), and shape the answer; the logic lives in `registry.rs`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use loom_http::writes_under;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::compat::Incompatibility;
use crate::error::{CONTENT_TYPE, RegistryError};
use crate::model::{Compatibility, Mode, SchemaRequest};
use crate::registry::{Registered, Registry, VersionSel};
use crate::store::ConfigField;
use crate::writer::Writer;

/// Most instances one `/validate/batch` call may carry.
pub const MAX_BATCH: usize = 1000;

#[derive(Clone)]
pub struct Api {
    pub registry: Registry,
    pub writer: Writer,
}

type Result<T> = std::result::Result<T, RegistryError>;

fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn ok(body: Value) -> Response {
    reply(StatusCode::OK, body)
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))
}

/// Query flags. Clients spell booleans `true`, `True` (Python's client) or `1`; anything else
/// is false. Unknown parameters (`normalize`, `format`, …) are ignored.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Flags {
    #[serde(default, deserialize_with = "lenient_bool")]
    deleted: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    permanent: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    verbose: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    default_to_global: bool,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    Ok(matches!(text.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Cluster-wide writes: registering and deleting schemas, compatibility and mode settings
/// (`POST /subjects/{s}` is a lookup and `/compatibility` a check: both read).
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    let registers = *method == Method::POST && path.starts_with("/subjects/") && path.ends_with("/versions");
    let other =
        *method != Method::POST && (writes_under(method, path, "/subjects") || writes_under(method, path, "/config"));
    registers || other || writes_under(method, path, "/mode")
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(version_schema))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(referenced_by))
        .route("/schemas/types", get(|| async { ok(json!(["JSON"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_config).put(put_config).delete(delete_config))
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route("/mode/{subject}", get(get_mode).put(put_mode).delete(delete_mode))
        .route("/compatibility/subjects/{subject}/versions", post(compat_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compat_one))
        .route("/subjects/{subject}/history", get(history))
        .route("/docs/{subject}", get(docs_latest))
        .route("/docs/{subject}/{version}", get(docs_version))
        .route("/validate", post(validate))
        .route("/validate/batch", post(validate_batch))
        .with_state(api)
}

fn registered_json(r: &Registered) -> Value {
    let mut v = json!({
        "subject": r.subject, "version": r.version, "id": r.id, "schemaType": "JSON", "schema": r.schema,
    });
    if !r.references.is_empty() {
        v["references"] = json!(r.references);
    }
    v
}

async fn subjects(State(api): State<Api>, Query(f): Query<Flags>) -> Result<Response> {
    Ok(ok(json!(api.registry.store.subjects(f.deleted).await?)))
}

async fn versions(State(api): State<Api>, Path(subject): Path<String>, Query(f): Query<Flags>) -> Result<Response> {
    let rows = api.registry.live_versions(&subject, f.deleted).await?;
    Ok(ok(json!(rows.iter().map(|r| r.version).collect::<Vec<_>>())))
}

async fn register(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    let req: SchemaRequest = parse(&body)?;
    let id = api.writer.register(subject, req).await?;
    Ok(ok(json!({ "id": id })))
}

async fn lookup(
    State(api): State<Api>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    let req: SchemaRequest = parse(&body)?;
    Ok(ok(registered_json(&api.registry.lookup(&subject, &req, f.deleted).await?)))
}

async fn version(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Result<Response> {
    Ok(ok(registered_json(&api.registry.version(&subject, VersionSel::parse(&v)?, f.deleted).await?)))
}

async fn version_schema(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Result<Response> {
    let found = api.registry.version(&subject, VersionSel::parse(&v)?, f.deleted).await?;
    Ok(ok(serde_json::from_str(&found.schema).map_err(|e| RegistryError::Store(e.to_string()))?))
}

async fn referenced_by(State(api): State<Api>, Path((subject, v)): Path<(String, String)>) -> Result<Response> {
    let found = api.registry.version(&subject, VersionSel::parse(&v)?, false).await?;
    Ok(ok(json!(api.registry.store.referenced_by(&subject, found.version).await?)))
}

async fn delete_subject(
    State(api): State<Api>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
) -> Result<Response> {
    Ok(ok(json!(api.writer.delete_subject(subject, f.permanent).await?)))
}

async fn delete_version(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    Query(f): Query<Flags>,
) -> Result<Response> {
    Ok(ok(json!(api.writer.delete_version(subject, VersionSel::parse(&v)?, f.permanent).await?)))
}

fn parse_id(id: &str) -> Result<i32> {
    id.parse::<i32>().ok().filter(|i| *i > 0).ok_or(RegistryError::SchemaNotFound)
}

async fn schema_by_id(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    let schema = api.registry.schema_row(parse_id(&id)?).await?;
    let mut v = json!({ "schemaType": "JSON", "schema": schema.schema });
    let refs: Value = serde_json::from_str(&schema.refs).unwrap_or(json!([]));
    if refs.as_array().is_some_and(|a| !a.is_empty()) {
        v["references"] = refs;
    }
    Ok(ok(v))
}

async fn raw_schema_by_id(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    let schema = api.registry.schema_row(parse_id(&id)?).await?;
    Ok(ok(serde_json::from_str(&schema.schema).map_err(|e| RegistryError::Store(e.to_string()))?))
}

async fn uses(api: &Api, id: &str, include_deleted: bool) -> Result<Vec<(String, i32)>> {
    let id = parse_id(id)?;
    api.registry.schema_row(id).await?;
    Ok(api
        .registry
        .store
        .uses_of(id)
        .await?
        .into_iter()
        .filter(|r| include_deleted || !r.deleted)
        .map(|r| (r.subject, r.version))
        .collect())
}

async fn subjects_of_id(State(api): State<Api>, Path(id): Path<String>, Query(f): Query<Flags>) -> Result<Response> {
    let mut subjects: Vec<String> = uses(&api, &id, f.deleted).await?.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn versions_of_id(State(api): State<Api>, Path(id): Path<String>, Query(f): Query<Flags>) -> Result<Response> {
    let pairs: Vec<Value> =
        uses(&api, &id, f.deleted).await?.into_iter().map(|(s, v)| json!({"subject": s, "version": v})).collect();
    Ok(ok(json!(pairs)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigBody {
    compatibility: Option<String>,
    /// Loom: STRICT (default) or LENIENT (optional properties may be added to open models).
    compatibility_policy: Option<String>,
}

async fn config_json(api: &Api, subject: &str, fallback: bool) -> Result<Value> {
    let own = api.registry.store.config(subject).await?;
    let level = match own.as_ref().and_then(|c| c.compatibility.clone()) {
        Some(level) => level,
        None if fallback || subject.is_empty() => api.registry.compatibility_of(subject).await?.0.name().to_owned(),
        None => return Err(RegistryError::SubjectCompatibilityNotConfigured(subject.to_owned())),
    };
    let mut v = json!({ "compatibilityLevel": level });
    if let Some(policy) = own.and_then(|c| c.policy) {
        v["compatibilityPolicy"] = json!(policy);
    }
    Ok(v)
}

async fn set_config(api: &Api, subject: String, body: &Bytes) -> Result<Response> {
    let req: ConfigBody = parse(body)?;
    // Validate everything before writing anything: a bad policy must not leave a new level.
    let level = match req.compatibility {
        Some(level) => {
            Some(Compatibility::parse(&level).ok_or_else(|| RegistryError::InvalidCompatibility(level.clone()))?)
        }
        None => None,
    };
    let policy = match req.compatibility_policy {
        Some(policy) => {
            let upper = policy.to_ascii_uppercase();
            if upper != "LENIENT" && upper != "STRICT" {
                return Err(RegistryError::InvalidCompatibility(policy));
            }
            Some(upper)
        }
        None => None,
    };
    let mut out = json!({});
    if let Some(parsed) = level {
        api.writer.set_config(subject.clone(), ConfigField::Compatibility, Some(parsed.name().to_owned())).await?;
        out["compatibility"] = json!(parsed.name());
    }
    if let Some(upper) = policy {
        api.writer.set_config(subject, ConfigField::Policy, Some(upper.clone())).await?;
        out["compatibilityPolicy"] = json!(upper);
    }
    if out.as_object().is_some_and(|o| o.is_empty()) {
        return Err(RegistryError::InvalidCompatibility(String::new()));
    }
    Ok(ok(out))
}

async fn get_global_config(State(api): State<Api>) -> Result<Response> {
    Ok(ok(config_json(&api, "", true).await?))
}

async fn put_global_config(State(api): State<Api>, body: Bytes) -> Result<Response> {
    set_config(&api, String::new(), &body).await
}

async fn get_config(State(api): State<Api>, Path(subject): Path<String>, Query(f): Query<Flags>) -> Result<Response> {
    Ok(ok(config_json(&api, &subject, f.default_to_global).await?))
}

async fn put_config(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    set_config(&api, subject, &body).await
}

async fn delete_config(State(api): State<Api>, Path(subject): Path<String>) -> Result<Response> {
    // A subject with only a policy set has a config to delete too (its level then falls back).
    let has_policy = api.registry.store.config(&subject).await?.is_some_and(|c| c.policy.is_some());
    let previous = config_json(&api, &subject, has_policy).await?;
    api.writer.set_config(subject.clone(), ConfigField::Compatibility, None).await?;
    api.writer.set_config(subject, ConfigField::Policy, None).await?;
    Ok(ok(previous))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

async fn mode_json(api: &Api, subject: &str, fallback: bool) -> Result<Value> {
    let own = api.registry.store.config(subject).await?.and_then(|c| c.mode);
    match own {
        Some(mode) => Ok(json!({ "mode": mode })),
        None if fallback || subject.is_empty() => Ok(json!({ "mode": api.registry.mode_of(subject).await?.name() })),
        None => Err(RegistryError::SubjectModeNotConfigured(subject.to_owned())),
    }
}

async fn set_mode(api: &Api, subject: String, body: &Bytes) -> Result<Response> {
    let req: ModeBody = parse(body)?;
    let mode = Mode::parse(&req.mode).ok_or_else(|| RegistryError::InvalidMode(req.mode.clone()))?;
    api.writer.set_config(subject, ConfigField::Mode, Some(mode.name().to_owned())).await?;
    Ok(ok(json!({ "mode": mode.name() })))
}

async fn get_global_mode(State(api): State<Api>) -> Result<Response> {
    Ok(ok(mode_json(&api, "", true).await?))
}

async fn put_global_mode(State(api): State<Api>, body: Bytes) -> Result<Response> {
    set_mode(&api, String::new(), &body).await
}

async fn get_mode(State(api): State<Api>, Path(subject): Path<String>, Query(f): Query<Flags>) -> Result<Response> {
    Ok(ok(mode_json(&api, &subject, f.default_to_global).await?))
}

async fn put_mode(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    set_mode(&api, subject, &body).await
}

async fn delete_mode(State(api): State<Api>, Path(subject): Path<String>) -> Result<Response> {
    let previous = mode_json(&api, &subject, false).await?;
    api.writer.set_config(subject, ConfigField::Mode, None).await?;
    Ok(ok(previous))
}

async fn compat(api: &Api, subject: &str, only: Option<VersionSel>, verbose: bool, body: &Bytes) -> Result<Response> {
    let req: SchemaRequest = parse(body)?;
    let candidate = api.registry.candidate(&req).await?;
    let (level, policy) = api.registry.compatibility_of(subject).await?;
    // Against one named version, Confluent checks with the subject's level, never NONE.
    let level = if only.is_some() && level == Compatibility::None { Compatibility::None } else { level };
    let found: Vec<Incompatibility> = api.registry.check_against(subject, &candidate, level, policy, only).await?;
    let mut v = json!({ "is_compatible": found.is_empty() });
    if verbose {
        v["messages"] = json!(found.iter().map(Incompatibility::confluent_message).collect::<Vec<_>>());
        v["incompatibilities"] = json!(found);
    }
    Ok(ok(v))
}

async fn compat_all(
    State(api): State<Api>,
    Path(subject): Path<String>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    compat(&api, &subject, None, f.verbose, &body).await
}

async fn compat_one(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    Query(f): Query<Flags>,
    body: Bytes,
) -> Result<Response> {
    let sel = VersionSel::parse(&v)?;
    // The subject must exist for a version-targeted check.
    api.registry.live_versions(&subject, false).await?;
    compat(&api, &subject, Some(sel), f.verbose, &body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    #[serde(alias = "subject")]
    schema_name: String,
    data: Value,
    #[serde(default)]
    version: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[serde(alias = "subject")]
    schema_name: String,
    items: Vec<Value>,
    #[serde(default)]
    version: Option<i32>,
}

async fn validate(State(api): State<Api>, body: Bytes) -> Result<Response> {
    let req: ValidateBody = parse(&body)?;
    let (found, mut results) =
        api.registry.validate(&req.schema_name, req.version, std::slice::from_ref(&req.data)).await?;
    let errors = results.pop().unwrap_or_default();
    Ok(ok(json!({
        "valid": errors.is_empty(), "errors": errors,
        "subject": found.subject, "version": found.version, "schema_id": found.id,
    })))
}

async fn validate_batch(State(api): State<Api>, body: Bytes) -> Result<Response> {
    let req: BatchBody = parse(&body)?;
    if req.items.len() > MAX_BATCH {
        return Err(RegistryError::BadRequest(format!("{} items; at most {MAX_BATCH} per batch", req.items.len())));
    }
    let (found, results) = api.registry.validate(&req.schema_name, req.version, &req.items).await?;
    let valid = results.iter().filter(|r| r.is_empty()).count();
    let results: Vec<Value> =
        results.into_iter().map(|errors| json!({ "valid": errors.is_empty(), "errors": errors })).collect();
    Ok(ok(json!({
        "subject": found.subject, "version": found.version, "schema_id": found.id,
        "valid_count": valid, "invalid_count": results.len() - valid, "results": results,
    })))
}

async fn history(State(api): State<Api>, Path(subject): Path<String>) -> Result<Response> {
    let steps = api.registry.history(&subject).await?;
    let versions: Vec<Value> = steps
        .iter()
        .map(|s| {
            let mut v = json!({ "version": s.version, "id": s.id });
            if let Some(d) = &s.diff {
                v["changes"] = json!(d.changes);
                v["breaking"] = json!(!d.breaking.is_empty());
                v["incompatibilities"] = json!(d.breaking);
            }
            v
        })
        .collect();
    Ok(ok(json!({ "subject": subject, "versions": versions })))
}

async fn docs(api: &Api, subject: &str, sel: VersionSel, headers: &HeaderMap) -> Result<Response> {
    let steps = api.registry.history(subject).await?;
    let index = match sel {
        VersionSel::Latest => steps.len().checked_sub(1),
        VersionSel::Number(v) => steps.iter().position(|s| s.version == v),
    }
    .ok_or_else(|| RegistryError::VersionNotFound(format!("{sel:?}")))?;
    let step = &steps[index];
    let fields = crate::evolution::fields(&step.schema);
    let title = step.schema.get("title").or(step.schema.get("description")).and_then(Value::as_str);
    let changelog: Vec<crate::docs::Step<'_>> = steps[..=index]
        .iter()
        .map(|s| crate::docs::Step { version: s.version, id: s.id, diff: s.diff.as_ref() })
        .collect();
    let wants_markdown =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/markdown"));
    let (body, content_type) = if wants_markdown {
        (
            crate::docs::markdown(subject, step.version, step.id, title, &fields, &changelog),
            "text/markdown; charset=utf-8",
        )
    } else {
        (crate::docs::html(subject, step.version, step.id, title, &fields, &changelog), "text/html; charset=utf-8")
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(r)
}

async fn docs_latest(State(api): State<Api>, Path(subject): Path<String>, headers: HeaderMap) -> Result<Response> {
    docs(&api, &subject, VersionSel::Latest, &headers).await
}

async fn docs_version(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    docs(&api, &subject, VersionSel::parse(&v)?, &headers).await
}
