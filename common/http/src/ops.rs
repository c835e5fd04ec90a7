//! The four ops routes every port answers — `/health` (application/health+json), `/ready`,
//! `/metrics` (Prometheus text), `/version` — plus `POST /admin/faults` when the node enables
//! fault injection, and the port's OpenAPI document (`/openapi.json`) and docs page (`/docs`).
//! What they report comes from an [`OpsProvider`] the service layer implements.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use loom_protocol::{CheckResult, Fault, HealthStatus, RequestId};
use serde::{Deserialize, Serialize};

use crate::{ApiJson, ApiRouter, Problem, routes};

pub const HEALTH_JSON: &str = "application/health+json";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/version` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub service: String,
    pub version: String,
    pub commit: String,
    pub profile: String,
    pub node: String,
}

/// A service's health: overall status plus every check, for `application/health+json`.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub checks: Vec<CheckResult>,
    pub notes: Vec<String>,
}

/// A fault injection request (`POST /admin/faults`).
#[derive(Debug, Clone, Deserialize)]
pub struct FaultRequest {
    /// Actor name within the service, e.g. `core`.
    pub actor: String,
    #[serde(flatten)]
    pub fault: Fault,
}

/// What the ops routes need from a service.
pub trait OpsProvider: Send + Sync + 'static {
    fn health(&self) -> BoxFuture<'_, HealthReport>;
    /// `Err(reason)` while the service is not ready.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
    fn metrics(&self) -> String;
    fn version(&self) -> VersionInfo;
    fn inject_fault(&self, request_id: RequestId, request: FaultRequest) -> BoxFuture<'_, Result<(), Problem>>;
}

type Ops = Arc<dyn OpsProvider>;

/// The port's finished OpenAPI document, rendered once when the router is assembled: the JSON
/// and the `/docs` page, served as they are.
pub struct Spec {
    pub json: bytes::Bytes,
    pub html: bytes::Bytes,
}

pub type SpecCell = Arc<OnceLock<Spec>>;

pub fn routes(ops: Ops, fault_injection: bool, spec: SpecCell, auth: crate::Auth) -> ApiRouter {
    let router = ApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(version));
    let router =
        if fault_injection { router.routes(routes!(inject)) } else { router.routes(routes!(fault_injection_off)) };
    router
        .with_state(ops)
        .merge(ApiRouter::new().routes(routes!(openapi_json)).routes(routes!(docs)).with_state(spec))
        .merge(crate::login::routes(auth))
}

/// The port's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI 3.1 document of this port", content_type = "application/json", body = Object)))]
async fn openapi_json(State(spec): State<SpecCell>) -> Response {
    rendered(&spec, |s| (&s.json, "application/json"))
}

/// A human page rendering this port's OpenAPI document.
#[utoipa::path(get, path = "/docs", responses((status = 200, description = "HTML rendering of /openapi.json", content_type = "text/html", body = String)))]
async fn docs(State(spec): State<SpecCell>) -> Response {
    rendered(&spec, |s| (&s.html, "text/html; charset=utf-8"))
}

/// One of the rendered forms (the cell is filled before the port serves, so `None` is only
/// possible for a router used before `service_router` finished).
fn rendered(spec: &SpecCell, pick: impl Fn(&Spec) -> (&bytes::Bytes, &'static str)) -> Response {
    match spec.get() {
        Some(s) => {
            let (body, content_type) = pick(s);
            ([(header::CONTENT_TYPE, content_type)], body.clone()).into_response()
        }
        None => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "starting", "the document is being built").into_response()
        }
    }
}

/// Liveness and the service's checks (RFC draft `application/health+json`); open without a token.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "pass or warn", content_type = "application/health+json", body = Object),
    (status = 503, description = "fail", content_type = "application/health+json", body = Object)))]
async fn health(State(ops): State<Ops>) -> Response {
    let report = ops.health().await;
    let version = ops.version();
    let mut checks = serde_json::Map::new();
    for check in report.checks {
        let entry = checks.entry(check.name.clone()).or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let (serde_json::Value::Array(list), Ok(value)) = (entry, serde_json::to_value(&check)) {
            list.push(value);
        }
    }
    let body = serde_json::json!({
        "status": report.status,
        "version": version.version,
        "releaseId": version.commit,
        "serviceId": version.service,
        "description": format!("{} on node {}", version.service, version.node),
        "notes": report.notes,
        "checks": checks,
    });
    let status = if report.status == HealthStatus::Fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    response
}

/// Readiness for traffic: 200 `{"status":"ready"}`, else 503 with the reason; open without a token.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "ready", body = Object),
    (status = 503, description = "not ready, with the reason", body = Object)))]
async fn ready(State(ops): State<Ops>) -> Response {
    match ops.ready().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not_ready", "reason": reason})))
                .into_response()
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
async fn metrics(State(ops): State<Ops>) -> Response {
    let mut response = ops.metrics().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    response
}

/// The build and node serving this port.
#[utoipa::path(get, path = "/version", responses((status = 200, description = "build and node", body = VersionInfo)))]
async fn version(State(ops): State<Ops>) -> Json<VersionInfo> {
    Json(ops.version())
}

/// Injects a fault into one of the service's actors (`node.fault_injection` on).
#[utoipa::path(post, path = "/admin/faults", request_body = Object, responses((status = 202, description = "the fault was delivered")))]
async fn inject(
    State(ops): State<Ops>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(request): ApiJson<FaultRequest>,
) -> Result<StatusCode, Problem> {
    ops.inject_fault(request_id, request).await.map(|()| StatusCode::ACCEPTED)
}

/// Fault injection is off on this node: 404 `fault_injection_disabled`.
#[utoipa::path(post, path = "/admin/faults", responses((status = 404, description = "fault injection is off", content_type = "application/problem+json", body = Problem)))]
async fn fault_injection_off() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "fault_injection_disabled",
        "fault injection is off on this node (node.fault_injection / LOOM_FAULT_INJECTION)",
    )
}
