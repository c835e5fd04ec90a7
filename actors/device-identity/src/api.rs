//! The routes on 8012: device registration and reads, metadata, erasure, links and groups, UUID
//! parsing, and key rotation/deletion (under `/admin`, admin scope when auth is on).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use loom_http::{ApiError, ApiJson};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::devices::{Devices, Registration};
use crate::error::DeviceError;
use crate::ids;

pub fn routes(devices: Devices) -> Router {
    Router::new()
        .route("/devices", post(register))
        .route("/devices/{id}", get(get_device).patch(patch_device).delete(delete_device))
        .route("/devices/{id}/group", get(group))
        .route("/link", post(link))
        .route("/links/{a}/{b}", delete(unlink))
        .route("/ids/{uuid}", get(parse_id))
        .route("/admin/keys/{tenant}/rotate", post(rotate))
        .route("/admin/keys/{tenant}/{period}", delete(delete_key))
        .with_state(devices)
}

type Result<T> = std::result::Result<T, ApiError>;

async fn register(State(d): State<Devices>, ApiJson(r): ApiJson<Registration>) -> Result<Response> {
    let out = d.register(r).await?;
    let status = if out.status == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(out)).into_response())
}

async fn get_device(State(d): State<Devices>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(d.get(&id.to_ascii_lowercase()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    metadata: Map<String, Value>,
}

async fn patch_device(
    State(d): State<Devices>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<Patch>,
) -> Result<Json<Value>> {
    Ok(Json(d.update_metadata(&id.to_ascii_lowercase(), p.metadata).await?))
}

async fn delete_device(State(d): State<Devices>, Path(id): Path<String>) -> Result<StatusCode> {
    d.delete(&id.to_ascii_lowercase()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group(State(d): State<Devices>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(d.group(&id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    device_ids: Vec<String>,
    confidence_score: f64,
    #[serde(default)]
    evidence: Option<Value>,
}

async fn link(State(d): State<Devices>, ApiJson(l): ApiJson<Link>) -> Result<Json<Value>> {
    Ok(Json(d.link(&l.device_ids, l.confidence_score, &l.evidence.unwrap_or(Value::Null)).await?))
}

async fn unlink(State(d): State<Devices>, Path((a, b)): Path<(String, String)>) -> Result<StatusCode> {
    d.unlink(&a, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn parse_id(Path(text): Path<String>) -> Result<Json<ids::Parsed>> {
    Ok(Json(ids::parse(&text).map_err(DeviceError::Invalid)?))
}

async fn rotate(State(d): State<Devices>, Path(tenant): Path<String>) -> Result<Json<Value>> {
    Ok(Json(d.rotate_key(&tenant).await?))
}

async fn delete_key(State(d): State<Devices>, Path((tenant, period)): Path<(String, i32)>) -> Result<StatusCode> {
    d.delete_key(&tenant, period).await?;
    Ok(StatusCode::NO_CONTENT)
}
