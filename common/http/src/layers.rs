//! The middleware every service port runs, as one edge function so its order is visible:
//! request id → span → concurrency limit → auth → cluster-store guard → body limit → timeout →
//! handler → problem normalization → metrics and one log line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use loom_protocol::request::REQUEST_ID_HEADER;
use loom_protocol::{RequestId, ServiceId};
use loom_telemetry::names;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, info_span};

use crate::openapi::{self, ApiRouter, SpecInfo};
use crate::ops::{self, OpsProvider};
use crate::{Auth, Problem};

/// Per-port HTTP settings, from the node config.
#[derive(Clone)]
pub struct HttpSettings {
    pub service: ServiceId,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub auth: Auth,
    pub fault_injection: bool,
    /// The service's predicate for cluster-wide writes (rules, policies, schemas, …).
    pub cluster_wide: ClusterWide,
    /// Set when the node is clustered on a node-local store: cluster-wide writes then answer
    /// 409 `cluster_store_required` instead of diverging silently from the other nodes.
    pub refuse_cluster_wide: bool,
    /// The port's description in its OpenAPI document.
    pub description: &'static str,
}

/// Whether a request writes cluster-wide state (a service's rules, policies, schemas, jobs,
/// monitors, device data): pure, from the method and the path.
pub type ClusterWide = fn(&Method, &str) -> bool;

/// The common shape of a [`ClusterWide`] predicate: a mutating method on `prefix` itself or
/// anything below it.
pub fn writes_under(method: &Method, path: &str, prefix: &str) -> bool {
    is_write(method) && path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// POST, PUT, PATCH and DELETE.
pub fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// The 409 a cluster-wide write gets on a node clustered without a shared store.
pub fn cluster_store_required() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "cluster_store_required",
        "this node is clustered on a node-local store, so a cluster-wide write here would not reach the other \
         nodes; point every node at one shared store (LOOM_DATABASE_URL=postgres://… for configuration, \
         LOOM_OBJECT_STORE=s3 for files) to write",
    )
}

struct Edge {
    settings: HttpSettings,
    permits: Arc<Semaphore>,
}

/// Builds a service port's full router: the ops routes, the service's own routes, the port's
/// OpenAPI document (`/openapi.json`) and docs page (`/docs`) generated from both, a JSON 404
/// fallback and the edge middleware.
pub fn service_router(settings: HttpSettings, routes: ApiRouter, ops: Arc<dyn OpsProvider>) -> Router {
    let cell = ops::SpecCell::default();
    let (router, doc) =
        ops::routes(ops, settings.fault_injection, cell.clone(), settings.auth.clone()).merge(routes).split_for_parts();
    let info = SpecInfo {
        title: format!("Loom {} (port {})", settings.service.name(), settings.service.default_port()),
        description: settings.description,
        version: env!("CARGO_PKG_VERSION"),
        cluster_wide: settings.cluster_wide,
    };
    let doc = openapi::finish(doc, &info);
    let _ = cell.set(ops::Spec {
        json: serde_json::to_vec(&doc).unwrap_or_default().into(),
        html: openapi::docs_page(&doc).into(),
    });
    let edge = Arc::new(Edge { permits: Arc::new(Semaphore::new(settings.max_concurrent_requests)), settings });
    router
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(edge.settings.body_limit_bytes))
        .layer(middleware::from_fn_with_state(edge, edge_fn))
}

fn quiet_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

async fn edge_fn(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(request_id.clone());
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let service = edge.settings.service.name();
    let span = info_span!("http", service, request_id = %request_id, method = %method, route = %route);

    async move {
        let in_flight = metrics::gauge!(names::HTTP_IN_FLIGHT, "service" => service);
        in_flight.increment(1.0);
        let response = handle(&edge, req, next).await;
        in_flight.decrement(1.0);
        let mut response = normalize(response, &request_id);
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        metrics::counter!(names::HTTP_REQUESTS, "service" => service, "route" => route.clone(),
            "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
        metrics::histogram!(names::HTTP_DURATION, "service" => service, "route" => route.clone(),
            "method" => method.to_string())
        .record(elapsed.as_secs_f64());
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if quiet_path(&route) && status < 400 {
            debug!(status, duration_ms, "request");
        } else {
            info!(status, duration_ms, "request");
        }
        response
    }
    .instrument(span)
    .await
}

async fn handle(edge: &Edge, req: Request, next: Next) -> Response {
    let service = edge.settings.service.name();
    let reject = |reason: &'static str, problem: Problem| {
        metrics::counter!(names::HTTP_REJECTED, "service" => service, "reason" => reason).increment(1);
        problem.into_response()
    };
    let Ok(_permit) = edge.permits.clone().try_acquire_owned() else {
        let mut response = reject(
            "overloaded",
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many concurrent requests, retry shortly"),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    if let Err(problem) = edge.settings.auth.authorize(req.headers(), req.method(), req.uri().path()) {
        // A browser asking for a page without credentials goes to the sign-in form.
        let wants_html =
            req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
        // (Also when a session cookie went stale; never for a request with a bearer header.)
        let bearer = req.headers().contains_key(header::AUTHORIZATION);
        if problem.status == 401 && !bearer && req.method() == Method::GET && wants_html {
            let at = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&crate::login::login_location(at)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            metrics::counter!(names::HTTP_REJECTED, "service" => service, "reason" => "unauthorized").increment(1);
            return r;
        }
        return reject("unauthorized", problem);
    }
    if edge.settings.refuse_cluster_wide && (edge.settings.cluster_wide)(req.method(), req.uri().path()) {
        return reject("cluster_store_required", cluster_store_required());
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > edge.settings.body_limit_bytes as u64) {
        return reject(
            "body_limit",
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds the limit of {} bytes", edge.settings.body_limit_bytes),
            ),
        );
    }
    match tokio::time::timeout(edge.settings.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => reject(
            "timeout",
            Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                format!("the request did not finish within {} ms", edge.settings.request_timeout.as_millis()),
            ),
        ),
    }
}

/// Any error response that is not JSON (axum's plain-text rejections, empty 404/405 bodies)
/// becomes problem+json, so clients see one error shape.
fn normalize(response: Response, request_id: &RequestId) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // JSON errors are the handlers' own; so are HTML ones (the sign-in form's refusal). What is
    // rewritten is what axum and tower say in plain text or an empty body.
    let deliberate = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"));
    if deliberate {
        return response;
    }
    let mut problem = Problem::for_status(status);
    problem.request_id = Some(request_id.to_string());
    let (parts, _) = response.into_parts();
    let mut fresh = problem.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            fresh.headers_mut().insert(name, v.clone());
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_under_matches_mutations_on_the_prefix_and_below() {
        let cases = [
            (Method::POST, "/rules", true),
            (Method::PUT, "/rules/r1", true),
            (Method::DELETE, "/rules/r1", true),
            (Method::PATCH, "/rules/r1/x", true),
            (Method::GET, "/rules", false),
            (Method::HEAD, "/rules/r1", false),
            (Method::POST, "/rulesx", false),
            (Method::POST, "/route", false),
            (Method::POST, "/", false),
        ];
        for (method, path, want) in cases {
            assert_eq!(writes_under(&method, path, "/rules"), want, "{method} {path}");
        }
    }
}
