//! The four ops routes every port answers — `/health` (application/health+json), `/ready`,
//! `/metrics` (Prometheus text), `/version` — plus `POST /admin/faults` when the node enables
//! fault injection. What they report comes from an [`OpsProvider`] the service layer implements.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::future::BoxFuture;
use loom_protocol::{CheckResult, Fault, HealthStatus, RequestId};
use serde::{Deserialize, Serialize};

use crate::{ApiJson, Problem};

pub const HEALTH_JSON: &str = "application/health+json";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/version` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

pub fn routes(ops: Ops, fault_injection: bool) -> axum::Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/version", get(version));
    let router = if fault_injection {
        router.route("/admin/faults", post(inject))
    } else {
        router.route("/admin/faults", post(fault_injection_off))
    };
    router.with_state(ops)
}

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

async fn ready(State(ops): State<Ops>) -> Response {
    match ops.ready().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not_ready", "reason": reason})))
                .into_response()
        }
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let mut response = ops.metrics().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    response
}

async fn version(State(ops): State<Ops>) -> Json<VersionInfo> {
    Json(ops.version())
}

async fn inject(
    State(ops): State<Ops>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(request): ApiJson<FaultRequest>,
) -> Result<StatusCode, Problem> {
    ops.inject_fault(request_id, request).await.map(|()| StatusCode::ACCEPTED)
}

async fn fault_injection_off() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "fault_injection_disabled",
        "fault injection is off on this node (node.fault_injection / LOOM_FAULT_INJECTION)",
    )
}
