//! The HTTP routes on 8010: the Confluent Schema Registry REST API for JSON Schema (subjects,
//! versions, schemas by id, config, mode, compatibility) with its content type and error
//! bodies, plus Loom's `/validate` and `/validate/batch`. Handlers parse, call the registry (reads)
//! or the writer (writes), and shape the answer; the logic lives in `registry.rs`.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loom_http::{ApiRouter, routes, writes_under};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::compat::Incompatibility;
use crate::error::{CONTENT_TYPE, ConfluentError, RegistryError};
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

/// Query flags. Clients spell booleans `true`, `True` (Python's client), `1` or `yes` (and
/// `false`, `0`, `no`); any other value is a 400 in Confluent's error shape, as is a flag given
/// twice. Unknown parameters (`normalize`, `format`, …) are ignored.
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
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(serde::de::Error::custom(format!("`{text}` is not a boolean (true or false)"))),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Flags> {
        confluent_query(parts)
    }
}

/// The query string read into `T`; a malformed one is a 400 in Confluent's error shape.
fn confluent_query<T: DeserializeOwned>(parts: &Parts) -> Result<T> {
    Query::<T>::try_from_uri(&parts.uri).map(|Query(q)| q).map_err(|e| RegistryError::BadQuery(e.body_text()))
}

/// Paging of a list answer (`referencedby`): `offset` (default 0) and `limit` (default -1, no
/// limit), as Confluent. A value that is not an integer is a 400 in Confluent's error shape.
#[derive(Deserialize, Default)]
struct Page {
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<i64>,
}

impl Page {
    fn apply<T>(&self, items: Vec<T>) -> Vec<T> {
        let limit = self.limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(usize::MAX);
        items.into_iter().skip(self.offset.unwrap_or(0)).take(limit).collect()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Page> {
        confluent_query(parts)
    }
}

/// Cluster-wide writes: registering and deleting schemas, compatibility and mode settings
/// (`POST /subjects/{s}` is a lookup and `/compatibility` a check: both read).
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    let registers = *method == Method::POST && path.starts_with("/subjects/") && path.ends_with("/versions");
    let other =
        *method != Method::POST && (writes_under(method, path, "/subjects") || writes_under(method, path, "/config"));
    registers || other || writes_under(method, path, "/mode")
}

pub fn routes(api: Api) -> ApiRouter {
    let mut router = router().with_state(api);
    loom_http::openapi::default_response(&mut router, default_error());
    router
}

/// What any registry route may answer besides its documented statuses: Confluent's error body
/// from the registry itself, problem+json from the port's edge (auth, limits, timeouts).
fn default_error() -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    ResponseBuilder::new()
        .description("an error: `{error_code, message}` from the registry, problem+json from the port's edge")
        .content(
            CONTENT_TYPE,
            ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ConfluentError"))).build(),
        )
        .content(
            loom_http::problem::PROBLEM_JSON,
            ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("Problem"))).build(),
        )
        .build()
}

/// Every route with its OpenAPI operation, before the state is given.
fn router() -> ApiRouter<Api> {
    ApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(subjects))
        .routes(routes!(lookup, delete_subject))
        .routes(routes!(versions, register))
        .routes(routes!(version, delete_version))
        .routes(routes!(version_schema))
        .routes(routes!(referenced_by))
        .routes(routes!(schema_types))
        .routes(routes!(schema_by_id))
        .routes(routes!(raw_schema_by_id))
        .routes(routes!(subjects_of_id))
        .routes(routes!(versions_of_id))
        .routes(routes!(get_global_config, put_global_config))
        .routes(routes!(get_config, put_config, delete_config))
        .routes(routes!(get_global_mode, put_global_mode))
        .routes(routes!(get_mode, put_mode, delete_mode))
        .routes(routes!(compat_all))
        .routes(routes!(compat_one))
        .routes(routes!(history))
        .routes(routes!(docs_latest))
        .routes(routes!(docs_version))
        .routes(routes!(validate))
        .routes(routes!(validate_batch))
}

/// Confluent's root: an empty object, for clients probing the registry.
#[utoipa::path(get, path = "/",
    responses(
        (status = 200, description = "`{}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn root() -> Response {
    ok(json!({}))
}

/// The schema types this registry accepts: only JSON.
#[utoipa::path(get, path = "/schemas/types",
    responses(
        (status = 200, description = "`[\"JSON\"]`", body = Vec<String>, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn schema_types() -> Response {
    ok(json!(["JSON"]))
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

/// The subjects with at least one live version (with `deleted`, soft-deleted ones too).
#[utoipa::path(get, path = "/subjects",
    params(
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "subject names", body = Vec<String>, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn subjects(State(api): State<Api>, f: Flags) -> Result<Response> {
    Ok(ok(json!(api.registry.store.subjects(f.deleted).await?)))
}

/// The version numbers of a subject.
#[utoipa::path(get, path = "/subjects/{subject}/versions",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "version numbers, ascending", body = Vec<i32>, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn versions(State(api): State<Api>, Path(subject): Path<String>, f: Flags) -> Result<Response> {
    let rows = api.registry.live_versions(&subject, f.deleted).await?;
    Ok(ok(json!(rows.iter().map(|r| r.version).collect::<Vec<_>>())))
}

/// Registers a schema under a subject (idempotent: an already registered schema answers its id).
#[utoipa::path(post, path = "/subjects/{subject}/versions",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    request_body(description = "`{schema, schemaType: \"JSON\", references?}` (the Content-Type header is not checked)", content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "`{id}`: the global id of the schema", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 409, description = "error_code 409: incompatible with earlier versions under the subject's compatibility level (or `cluster_store_required`, problem+json: a clustered node with a node-local store)", content((ConfluentError = "application/vnd.schemaregistry.v1+json"), (loom_http::Problem = "application/problem+json"))),
        (status = 422, description = "error_code 42201: invalid schema (not JSON, not JSON Schema, schemaType not JSON, a missing reference); 42205: the subject is read-only", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn register(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    let req: SchemaRequest = parse(&body)?;
    let id = api.writer.register(subject, req).await?;
    Ok(ok(json!({ "id": id })))
}

/// Finds the version of a subject holding a schema.
#[utoipa::path(post, path = "/subjects/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    request_body(description = "`{schema, schemaType: \"JSON\", references?}`", content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "`{subject, version, id, schemaType: \"JSON\", schema, references?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40403: the schema is not registered under the subject", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42201: invalid schema", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn lookup(State(api): State<Api>, Path(subject): Path<String>, f: Flags, body: Bytes) -> Result<Response> {
    let req: SchemaRequest = parse(&body)?;
    Ok(ok(registered_json(&api.registry.lookup(&subject, &req, f.deleted).await?)))
}

/// One version of a subject.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "`{subject, version, id, schemaType: \"JSON\", schema, references?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42202: invalid version", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn version(State(api): State<Api>, Path((subject, v)): Path<(String, String)>, f: Flags) -> Result<Response> {
    Ok(ok(registered_json(&api.registry.version(&subject, VersionSel::parse(&v)?, f.deleted).await?)))
}

/// The schema of one version of a subject, unwrapped.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}/schema",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "the JSON Schema itself", body = Value, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42202: invalid version", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn version_schema(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    f: Flags,
) -> Result<Response> {
    let found = api.registry.version(&subject, VersionSel::parse(&v)?, f.deleted).await?;
    Ok(ok(serde_json::from_str(&found.schema).map_err(|e| RegistryError::Store(e.to_string()))?))
}

/// The ids of the schemas referencing one version of a subject. The version may be
/// soft-deleted; referrers count while they have a live version (with `deleted`, a
/// soft-deleted one too), as Confluent.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}/referencedby",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
        ("deleted" = Option<bool>, Query, description = "count referrers whose versions are all soft-deleted too (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
        ("offset" = Option<u32>, Query, description = "ids to skip (default 0)"),
        ("limit" = Option<i64>, Query, description = "most ids to return (default -1: all)"),
    ),
    responses(
        (status = 200, description = "schema ids, ascending", body = Vec<i32>, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42202: invalid version", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn referenced_by(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    f: Flags,
    page: Page,
) -> Result<Response> {
    let found = api.registry.version(&subject, VersionSel::parse(&v)?, true).await?;
    let ids: Vec<i32> =
        api.registry.referrers(&subject, found.version, f.deleted).await?.into_iter().map(|(id, _)| id).collect();
    Ok(ok(json!(page.apply(ids))))
}

/// Soft-deletes a subject, or with `permanent` hard-deletes a soft-deleted one.
#[utoipa::path(delete, path = "/subjects/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("permanent" = Option<bool>, Query, description = "hard-delete what was soft-deleted before (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "the version numbers deleted", body = Vec<i32>, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40404: already soft-deleted (use `permanent`); 40405: `permanent` on a subject not soft-deleted first", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42205: the subject is read-only; 42206: a schema of another subject references one of its versions (`One or more references exist to the schema {magic=1,keytype=SCHEMA,subject=…,version=…}.`, naming the lowest such version; for `permanent`, referrers that are only soft-deleted count too)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn delete_subject(State(api): State<Api>, Path(subject): Path<String>, f: Flags) -> Result<Response> {
    Ok(ok(json!(api.writer.delete_subject(subject, f.permanent).await?)))
}

/// Soft-deletes one version, or with `permanent` hard-deletes a soft-deleted one.
#[utoipa::path(delete, path = "/subjects/{subject}/versions/{version}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
        ("permanent" = Option<bool>, Query, description = "hard-delete what was soft-deleted before (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "the version number deleted", body = i32, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found; 40406: already soft-deleted (use `permanent`); 40407: `permanent` on a version not soft-deleted first (checked after references)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42202: invalid version; 42205: the subject is read-only; 42206: another schema references this version (`One or more references exist to the schema {magic=1,keytype=SCHEMA,subject=…,version=…}.`; a soft delete is blocked by referrers with a live version, `permanent` by any referrer not hard-deleted)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn delete_version(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    f: Flags,
) -> Result<Response> {
    Ok(ok(json!(api.writer.delete_version(subject, VersionSel::parse(&v)?, f.permanent).await?)))
}

fn parse_id(id: &str) -> Result<i32> {
    id.parse::<i32>().ok().filter(|i| *i > 0).ok_or(RegistryError::SchemaNotFound)
}

/// A schema by its global id.
#[utoipa::path(get, path = "/schemas/ids/{id}",
    params(
        ("id" = i32, Path, description = "global schema id"),
    ),
    responses(
        (status = 200, description = "`{schemaType: \"JSON\", schema, references?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40403: schema not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn schema_by_id(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    let schema = api.registry.schema_row(parse_id(&id)?).await?;
    let mut v = json!({ "schemaType": "JSON", "schema": schema.schema });
    let refs: Value = serde_json::from_str(&schema.refs).unwrap_or(json!([]));
    if refs.as_array().is_some_and(|a| !a.is_empty()) {
        v["references"] = refs;
    }
    Ok(ok(v))
}

/// A schema by its global id, unwrapped.
#[utoipa::path(get, path = "/schemas/ids/{id}/schema",
    params(
        ("id" = i32, Path, description = "global schema id"),
    ),
    responses(
        (status = 200, description = "the JSON Schema itself", body = Value, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40403: schema not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
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

/// The subjects using a schema.
#[utoipa::path(get, path = "/schemas/ids/{id}/subjects",
    params(
        ("id" = i32, Path, description = "global schema id"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "subject names", body = Vec<String>, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40403: schema not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn subjects_of_id(State(api): State<Api>, Path(id): Path<String>, f: Flags) -> Result<Response> {
    let mut subjects: Vec<String> = uses(&api, &id, f.deleted).await?.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

/// The (subject, version) pairs using a schema.
#[utoipa::path(get, path = "/schemas/ids/{id}/versions",
    params(
        ("id" = i32, Path, description = "global schema id"),
        ("deleted" = Option<bool>, Query, description = "include soft-deleted versions (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "`[{subject, version}]`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40403: schema not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn versions_of_id(State(api): State<Api>, Path(id): Path<String>, f: Flags) -> Result<Response> {
    let pairs: Vec<Value> =
        uses(&api, &id, f.deleted).await?.into_iter().map(|(s, v)| json!({"subject": s, "version": v})).collect();
    Ok(ok(json!(pairs)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConfigBody {
    /// NONE, BACKWARD, FORWARD, FULL or their `_TRANSITIVE` forms (any case).
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

/// The global compatibility level (and Loom's compatibility policy when set).
#[utoipa::path(get, path = "/config",
    responses(
        (status = 200, description = "`{compatibilityLevel, compatibilityPolicy?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn get_global_config(State(api): State<Api>) -> Result<Response> {
    Ok(ok(config_json(&api, "", true).await?))
}

/// Sets the global compatibility level and/or policy.
#[utoipa::path(put, path = "/config",
    request_body(description = "`{compatibility?, compatibilityPolicy?}`: at least one", content((ConfigBody = "application/vnd.schemaregistry.v1+json"), (ConfigBody = "application/json"))),
    responses(
        (status = 200, description = "`{compatibility?, compatibilityPolicy?}`: what was set", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42203: invalid compatibility level or policy, or neither given", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn put_global_config(State(api): State<Api>, body: Bytes) -> Result<Response> {
    set_config(&api, String::new(), &body).await
}

/// A subject's compatibility level (and policy when set).
#[utoipa::path(get, path = "/config/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("defaultToGlobal" = Option<bool>, Query, description = "fall back to the global setting when the subject has none (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "`{compatibilityLevel, compatibilityPolicy?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40408: the subject has no compatibility level of its own (see `defaultToGlobal`)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn get_config(State(api): State<Api>, Path(subject): Path<String>, f: Flags) -> Result<Response> {
    Ok(ok(config_json(&api, &subject, f.default_to_global).await?))
}

/// Sets a subject's compatibility level and/or policy.
#[utoipa::path(put, path = "/config/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    request_body(description = "`{compatibility?, compatibilityPolicy?}`: at least one", content((ConfigBody = "application/vnd.schemaregistry.v1+json"), (ConfigBody = "application/json"))),
    responses(
        (status = 200, description = "`{compatibility?, compatibilityPolicy?}`: what was set", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42203: invalid compatibility level or policy, or neither given", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn put_config(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    set_config(&api, subject, &body).await
}

/// Removes a subject's compatibility level and policy (the global ones apply again).
#[utoipa::path(delete, path = "/config/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    responses(
        (status = 200, description = "the previous `{compatibilityLevel, compatibilityPolicy?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40408: the subject has no configuration of its own", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn delete_config(State(api): State<Api>, Path(subject): Path<String>) -> Result<Response> {
    // A subject with only a policy set has a config to delete too (its level then falls back).
    let has_policy = api.registry.store.config(&subject).await?.is_some_and(|c| c.policy.is_some());
    let previous = config_json(&api, &subject, has_policy).await?;
    api.writer.set_config(subject.clone(), ConfigField::Compatibility, None).await?;
    api.writer.set_config(subject, ConfigField::Policy, None).await?;
    Ok(ok(previous))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ModeBody {
    /// READWRITE, READONLY or READONLY_OVERRIDE (any case).
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

/// The global mode.
#[utoipa::path(get, path = "/mode",
    responses(
        (status = 200, description = "`{mode}`: READWRITE, READONLY or READONLY_OVERRIDE", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn get_global_mode(State(api): State<Api>) -> Result<Response> {
    Ok(ok(mode_json(&api, "", true).await?))
}

/// Sets the global mode.
#[utoipa::path(put, path = "/mode",
    request_body(description = "`{mode}`: READWRITE, READONLY or READONLY_OVERRIDE", content((ModeBody = "application/vnd.schemaregistry.v1+json"), (ModeBody = "application/json"))),
    responses(
        (status = 200, description = "`{mode}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42204: invalid mode", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn put_global_mode(State(api): State<Api>, body: Bytes) -> Result<Response> {
    set_mode(&api, String::new(), &body).await
}

/// A subject's mode.
#[utoipa::path(get, path = "/mode/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("defaultToGlobal" = Option<bool>, Query, description = "fall back to the global setting when the subject has none (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    responses(
        (status = 200, description = "`{mode}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40409: the subject has no mode of its own (see `defaultToGlobal`)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn get_mode(State(api): State<Api>, Path(subject): Path<String>, f: Flags) -> Result<Response> {
    Ok(ok(mode_json(&api, &subject, f.default_to_global).await?))
}

/// Sets a subject's mode.
#[utoipa::path(put, path = "/mode/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    request_body(description = "`{mode}`: READWRITE, READONLY or READONLY_OVERRIDE", content((ModeBody = "application/vnd.schemaregistry.v1+json"), (ModeBody = "application/json"))),
    responses(
        (status = 200, description = "`{mode}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42204: invalid mode", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn put_mode(State(api): State<Api>, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    set_mode(&api, subject, &body).await
}

/// Removes a subject's mode (the global one applies again).
#[utoipa::path(delete, path = "/mode/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    responses(
        (status = 200, description = "the previous `{mode}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40409: the subject has no mode of its own", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 503, description = "error_code 50002: the registry is busy or restarting; retry", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
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

/// Checks a schema against the versions the subject's compatibility level compares with.
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("verbose" = Option<bool>, Query, description = "add `messages` and Loom's structured `incompatibilities` (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    request_body(description = "`{schema, schemaType: \"JSON\", references?}`", content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "`{is_compatible, messages?, incompatibilities?}` (compatible when the subject does not exist)", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42201: invalid schema", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn compat_all(State(api): State<Api>, Path(subject): Path<String>, f: Flags, body: Bytes) -> Result<Response> {
    compat(&api, &subject, None, f.verbose, &body).await
}

/// Checks a schema against one version of a subject.
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions/{version}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
        ("verbose" = Option<bool>, Query, description = "add `messages` and Loom's structured `incompatibilities` (`true`/`false`, `True`/`False`, `1`/`0`, `yes`/`no`)"),
    ),
    request_body(description = "`{schema, schemaType: \"JSON\", references?}`", content((SchemaRequest = "application/vnd.schemaregistry.v1+json"), (SchemaRequest = "application/json"))),
    responses(
        (status = 200, description = "`{is_compatible, messages?, incompatibilities?}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42201: invalid schema; 42202: invalid version", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn compat_one(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    f: Flags,
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

/// Validates one JSON instance against a subject's latest (or given) version.
#[utoipa::path(post, path = "/validate",
    request_body(description = "`{\"schema_name\" (or \"subject\"), \"data\": <any JSON>, \"version\"?}`; unknown fields are refused", content((Object = "application/vnd.schemaregistry.v1+json"), (Object = "application/json"))),
    responses(
        (status = 200, description = "`{valid, errors: [violation], subject, version, schema_id}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42201: the stored schema cannot be compiled (a missing reference)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
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

/// Validates up to 1,000 JSON instances against a subject's latest (or given) version.
#[utoipa::path(post, path = "/validate/batch",
    request_body(description = "`{\"schema_name\" (or \"subject\"), \"items\": [<any JSON>], \"version\"?}` (at most 1,000 items); unknown fields are refused", content((Object = "application/vnd.schemaregistry.v1+json"), (Object = "application/json"))),
    responses(
        (status = 200, description = "`{subject, version, schema_id, valid_count, invalid_count, results: [{valid, errors}]}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 400, description = "error_code 400: the body is not the expected JSON, or more than 1,000 items", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42201: the stored schema cannot be compiled (a missing reference)", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
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

/// A subject's live versions, each with its semantic diff from the previous one.
#[utoipa::path(get, path = "/subjects/{subject}/history",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    responses(
        (status = 200, description = "`{subject, versions: [{version, id, changes?, breaking?, incompatibilities?}]}`", body = Object, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 404, description = "error_code 40401: subject not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
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
    .ok_or_else(|| RegistryError::VersionNotFound(sel.to_string()))?;
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

/// Documentation of a subject's latest version: fields and changelog, HTML or (with `Accept: text/markdown`) Markdown.
#[utoipa::path(get, path = "/docs/{subject}",
    params(
        ("subject" = String, Path, description = "subject name"),
    ),
    responses(
        (status = 200, description = "the documentation page (Markdown when `Accept` names `text/markdown`)", content((String = "text/html"), (String = "text/markdown"))),
        (status = 404, description = "error_code 40401: subject not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn docs_latest(State(api): State<Api>, Path(subject): Path<String>, headers: HeaderMap) -> Result<Response> {
    docs(&api, &subject, VersionSel::Latest, &headers).await
}

/// Documentation of one version of a subject, HTML or (with `Accept: text/markdown`) Markdown.
#[utoipa::path(get, path = "/docs/{subject}/{version}",
    params(
        ("subject" = String, Path, description = "subject name"),
        ("version" = String, Path, description = "version number (1 to 2^31-1), or `latest` (or `-1`)"),
    ),
    responses(
        (status = 200, description = "the documentation page (Markdown when `Accept` names `text/markdown`)", content((String = "text/html"), (String = "text/markdown"))),
        (status = 404, description = "error_code 40401: subject not found; 40402: version not found", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
        (status = 422, description = "error_code 42202: invalid version", body = ConfluentError, content_type = "application/vnd.schemaregistry.v1+json"),
    )
)]
async fn docs_version(
    State(api): State<Api>,
    Path((subject, v)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    docs(&api, &subject, VersionSel::parse(&v)?, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use loom_http::openapi::{SpecInfo, finish, operations};

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_with_confluent_content_types_and_errors() {
        let (_, spec) = router().split_for_parts();
        let info = SpecInfo { title: "schema registry".into(), description: "", version: "0", cluster_wide };
        let doc = finish(spec, &info);
        assert_eq!(operations(&doc).len(), 32);
        for name in ["ConfluentError", "SchemaRequest", "Reference", "ConfigBody", "ModeBody"] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name} is a component");
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for r in found {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} resolves");
        }
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_ascii_lowercase()];
            for (status, response) in op["responses"].as_object().unwrap() {
                if response.get("$ref").is_some() || path.starts_with("/docs/") && status == "200" {
                    continue;
                }
                assert!(response["content"][CONTENT_TYPE].is_object(), "{method} {path} {status} is {CONTENT_TYPE}");
            }
        }
        let docs = &doc["paths"]["/docs/{subject}"]["get"]["responses"]["200"]["content"];
        assert!(docs["text/html"].is_object() && docs["text/markdown"].is_object());
        let register = &doc["paths"]["/subjects/{subject}/versions"]["post"];
        assert!(register["requestBody"]["content"][CONTENT_TYPE]["schema"]["$ref"].is_string());
        assert!(register["responses"]["409"]["content"]["application/problem+json"].is_object());
    }
}
