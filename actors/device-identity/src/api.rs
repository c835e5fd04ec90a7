//! The routes on 8012: device registration and reads, metadata and subject, deletion, links and
//! groups, UUID parsing, and under `/admin` (admin scope when auth is on) key rotation/deletion
//! and GDPR erasure. Writes go to their key's owner (`routing.rs`); their answers say which node
//! served them (`served_by` in bodies, `x-served-by` on every routed answer). Reads answer here.

use axum::http::Method;
use loom_http::writes_under;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use loom_http::{ApiError, ApiJson, ApiRouter, routes};
use loom_protocol::ErrorKind;
use loom_protocol::erasure::ErasureRequest;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::devices::{Devices, SubjectChange, link_ids};
use crate::erasure::ErasureClient;
use crate::error::DeviceError;
use crate::ids;
use crate::register::{Registration, check_subject};
use crate::routing::{Reply, Request, Writes, link_key};

#[derive(Clone)]
pub struct App {
    pub devices: Devices,
    pub writes: Writes,
    pub erasure: ErasureClient,
}

/// Cluster-wide writes: the device registry, links, keys and erasure.
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    ["/devices", "/link", "/links", "/admin"].iter().any(|p| writes_under(method, path, p))
}

pub fn routes(app: App) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(get_device, patch_device, delete_device))
        .routes(routes!(group))
        .routes(routes!(link))
        .routes(routes!(unlink))
        .routes(routes!(parse_id))
        .routes(routes!(rotate))
        .routes(routes!(delete_key))
        .routes(routes!(erase))
        .with_state(app)
}

type Result<T> = std::result::Result<T, ApiError>;

fn unexpected() -> DeviceError {
    DeviceError::Routed {
        code: "unexpected_reply",
        kind: ErrorKind::Internal,
        message: "the owner answered another operation".into(),
    }
}

/// A routed answer: `body` with `served_by` added (when it is an object) and the header.
fn served(status: StatusCode, node: &str, body: Option<Value>) -> Response {
    let mut response = match body {
        Some(mut body) => {
            if let Some(map) = body.as_object_mut() {
                map.insert("served_by".into(), Value::String(node.to_owned()));
            }
            (status, Json(body)).into_response()
        }
        None => status.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(node) {
        response.headers_mut().insert("x-served-by", value);
    }
    response
}

/// Registers a device from its raw attributes: matched to an existing device (identifier or fingerprint) or created with a keyed UUIDv8 id.
#[utoipa::path(post, path = "/devices",
    request_body(content = Object, description = "Raw attributes (at least one): `tenant`?, `platform`, `model`, `manufacturer`, `os`, `os_version`, `app_instance_id`, `user_agent`, `mac`, `serial`, `advertising_id`, `android_id`, `screen`, `locale`, `timezone`, `metadata`?, `subject_id`?, `shared_identifiers`?: {type: value}", example = json!({"platform": "android", "model": "Pixel 8", "manufacturer": "Google",
        "os": "Android", "os_version": "14", "app_instance_id": "3f1c2a9e-0b7d-4e55-9a51-6f2d8c7b1e40", "locale": "de-DE"})),
    responses(
        (status = 201, description = "a new device: `{device_id, status: \"created\", matched_by, confidence, key_period, fingerprint, enrichment, served_by}`", body = Object, headers(("x-served-by" = String, description = "the node that served the write (the key's owner)"))),
        (status = 200, description = "an existing device matched: `{device_id, status: \"matched\", matched_by: identifier | fingerprint, confidence, ...}`", body = Object, headers(("x-served-by" = String, description = "the node that served the write (the key's owner)"))),
    ))]
async fn register(State(app): State<App>, ApiJson(r): ApiJson<Registration>) -> Result<Response> {
    let prepared = app.devices.prepare(r).await?;
    let key = prepared.route_key();
    let out = app.writes.call(&key, Request::Register(prepared)).await?;
    let Reply::Registered(registered) = out.value else { return Err(unexpected().into()) };
    let status = if registered.status == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok(served(status, &out.node, serde_json::to_value(registered).ok()))
}

/// One device: platform, key period, fingerprint, features, enrichment, metadata, identifier names (never values).
#[utoipa::path(get, path = "/devices/{id}", params(("id" = String, Path, description = "device id (a UUID)")),
    responses((status = 200, description = "the device", body = Object)))]
async fn get_device(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(app.devices.get(&id.to_ascii_lowercase()).await?))
}

/// Present and `null` (clear) differ from absent (keep).
fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    /// A string sets the device's subject, `null` clears it.
    #[serde(default, deserialize_with = "present")]
    subject_id: Option<Value>,
}

/// Updates a device's metadata (a `null` value removes a key) and sets (string) or clears (`null`) its subject.
#[utoipa::path(patch, path = "/devices/{id}", params(("id" = String, Path, description = "device id (a UUID)")),
    request_body(content = Object, description = "`{\"metadata\"?: {key: value | null}, \"subject_id\"?: string | null}` (at least one)"),
    responses((status = 200, description = "the updated device, with `served_by`", body = Object, headers(("x-served-by" = String, description = "the node that served the write (the key's owner)")))))]
async fn patch_device(State(app): State<App>, Path(id): Path<String>, ApiJson(p): ApiJson<Patch>) -> Result<Response> {
    let id = id.to_ascii_lowercase();
    if p.metadata.is_none() && p.subject_id.is_none() {
        return Err(DeviceError::Invalid("a PATCH needs `metadata` or `subject_id`".into()).into());
    }
    let subject = match p.subject_id {
        None => SubjectChange::Keep,
        Some(Value::Null) => SubjectChange::Clear,
        Some(Value::String(subject)) => {
            check_subject(&subject)?;
            let device = app.devices.store.device(&id).await.map_err(DeviceError::from)?;
            let device = device.ok_or_else(|| DeviceError::NotFound(id.clone()))?;
            SubjectChange::Set(app.devices.master()?.subject_hash(&device.tenant, &subject))
        }
        Some(_) => return Err(DeviceError::Invalid("`subject_id` must be a string or null".into()).into()),
    };
    let req = Request::Update { id: id.clone(), metadata: p.metadata.unwrap_or_default(), subject };
    let out = app.writes.call(&id, req).await?;
    let Reply::Value(v) = out.value else { return Err(unexpected().into()) };
    Ok(served(StatusCode::OK, &out.node, Some(v)))
}

/// Deletes a device with its identifiers and links.
#[utoipa::path(delete, path = "/devices/{id}", params(("id" = String, Path, description = "device id (a UUID)")),
    responses((status = 204, description = "deleted", headers(("x-served-by" = String, description = "the node that served the write (the key's owner)")))))]
async fn delete_device(State(app): State<App>, Path(id): Path<String>) -> Result<Response> {
    let id = id.to_ascii_lowercase();
    let out = app.writes.call(&id, Request::Delete { id: id.clone() }).await?;
    Ok(served(StatusCode::NO_CONTENT, &out.node, None))
}

/// The device's group: the devices joined to it by links at or above the threshold, and those links.
#[utoipa::path(get, path = "/devices/{id}/group", params(("id" = String, Path, description = "device id (a UUID)")),
    responses((status = 200, description = "`{device_id, members: [id], edges: [{a, b, confidence, joins, evidence, created_ms}], threshold}`", body = Object)))]
async fn group(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(app.devices.group(&id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    device_ids: Vec<String>,
    confidence_score: f64,
    #[serde(default)]
    evidence: Option<Value>,
    /// Shared identifier values the link rests on (`{"wifi": "…"}`): each may link a limited
    /// number of devices; only keyed hashes are stored.
    #[serde(default)]
    identifiers: Option<BTreeMap<String, String>>,
}

/// Links devices (every consecutive pair) with a confidence and evidence; refused when the group would grow too large.
#[utoipa::path(post, path = "/link",
    request_body(content = Object, description = "`{\"device_ids\": [id, id, ...], \"confidence_score\": 0..1, \"evidence\"?, \"identifiers\"?: {type: value}}`"),
    responses((status = 200, description = "the first device's group after the link, with `served_by`", body = Object, headers(("x-served-by" = String, description = "the node that served the write (the key's owner)")))))]
async fn link(State(app): State<App>, ApiJson(l): ApiJson<Link>) -> Result<Response> {
    let ids = link_ids(&l.device_ids)?;
    let shared = match l.identifiers.as_ref().filter(|m| !m.is_empty()) {
        None => Vec::new(),
        Some(values) => {
            // Hashed here, with the devices' tenant (the owner checks they share one).
            let first = app.devices.store.device(&ids[0]).await.map_err(DeviceError::from)?;
            let tenant = first.ok_or_else(|| DeviceError::NotFound(ids[0].clone()))?.tenant;
            app.devices.shared_hashes(&tenant, Some(values))?
        }
    };
    let req = Request::Link {
        ids: ids.clone(),
        confidence: l.confidence_score,
        evidence: l.evidence.unwrap_or(Value::Null),
        shared,
    };
    let out = app.writes.call(&link_key(&ids), req).await?;
    let Reply::Value(v) = out.value else { return Err(unexpected().into()) };
    Ok(served(StatusCode::OK, &out.node, Some(v)))
}

/// Removes the link between two devices.
#[utoipa::path(delete, path = "/links/{a}/{b}",
    params(("a" = String, Path, description = "one device id"), ("b" = String, Path, description = "the other device id")),
    responses((status = 204, description = "unlinked", headers(("x-served-by" = String, description = "the node that served the write (the key's owner)")))))]
async fn unlink(State(app): State<App>, Path((a, b)): Path<(String, String)>) -> Result<Response> {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let key = link_key(&[a.clone(), b.clone()]);
    let out = app.writes.call(&key, Request::Unlink { a, b }).await?;
    Ok(served(StatusCode::NO_CONTENT, &out.node, None))
}

/// Parses a UUID: its version, variant and, for Loom v8 ids, the key period.
#[utoipa::path(get, path = "/ids/{uuid}", params(("uuid" = String, Path, description = "any UUID")),
    responses((status = 200, description = "what the UUID is", body = ids::Parsed)))]
async fn parse_id(Path(text): Path<String>) -> Result<Json<ids::Parsed>> {
    Ok(Json(ids::parse(&text).map_err(DeviceError::Invalid)?))
}

/// Starts a tenant's next key period: new device ids are made with a new key; older keys are retired.
#[utoipa::path(post, path = "/admin/keys/{tenant}/rotate", params(("tenant" = String, Path, description = "tenant name")),
    responses((status = 200, description = "`{tenant, period}` of the new key", body = Object)))]
async fn rotate(State(app): State<App>, Path(tenant): Path<String>) -> Result<Json<Value>> {
    Ok(Json(app.devices.rotate_key(&tenant).await?))
}

/// Deletes a retired tenant key (crypto-erasure of the ids it made); the current key cannot be deleted.
#[utoipa::path(delete, path = "/admin/keys/{tenant}/{period}",
    params(("tenant" = String, Path, description = "tenant name"), ("period" = i32, Path, description = "the key period")),
    responses((status = 204, description = "deleted")))]
async fn delete_key(State(app): State<App>, Path((tenant, period)): Path<(String, i32)>) -> Result<StatusCode> {
    app.devices.delete_key(&tenant, period).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Erases a data subject's devices and links (the Privacy Filter's erasure call, run by the subject's owner node).
#[utoipa::path(post, path = "/admin/erasure",
    request_body(content = Object, description = "`{\"job_id\": 1-128 characters, \"subject_id\", \"tenant\"?}`"),
    responses((status = 200, description = "the erasure report: `{service, erased: [{kind, count}], finished_ms, served_by}`", body = Object, headers(("x-served-by" = String, description = "the node that served the write (the key's owner)")))))]
async fn erase(State(app): State<App>, ApiJson(req): ApiJson<ErasureRequest>) -> Result<Response> {
    check_subject(&req.subject_id)?;
    if req.job_id.is_empty() || req.job_id.len() > 128 {
        return Err(DeviceError::Invalid("`job_id` must be 1 to 128 characters".into()).into());
    }
    let subject = req.subject_id.clone();
    let out = app.erasure.call(&subject, req).await.map_err(DeviceError::from_call)?;
    Ok(served(StatusCode::OK, &out.node, serde_json::to_value(out.value).ok()))
}
