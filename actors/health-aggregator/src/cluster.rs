//! The cluster routes on 8030: `GET /cluster/members` (this node's membership view),
//! `GET /cluster/owner/{service}/{key}` and `POST /cluster/owners` (which node owns keys), and —
//! only with fault injection enabled, as test machinery — the keyed counter under
//! `/cluster/debug/counter/{key}` that proves forwarding and hand-off across processes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use loom_cluster::counter::{self, CounterClient, CounterRequest};
use loom_cluster::{CallFailure, Cluster};
use loom_http::{ApiJson, ApiRouter, Problem, routes};
use loom_protocol::ServiceId;
use loom_service::ServiceContext;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most keys one `POST /cluster/owners` may ask about.
const MAX_OWNER_KEYS: usize = 10_000;

#[derive(Clone)]
struct ClusterState {
    cluster: Cluster,
    counter: Option<CounterClient>,
}

pub fn routes(ctx: &ServiceContext) -> ApiRouter {
    let counter = ctx.config.node.fault_injection.then(|| counter::start(&ctx.cluster));
    let mut router = ApiRouter::new().routes(routes!(members)).routes(routes!(owner)).routes(routes!(owners));
    if counter.is_some() {
        router = router.routes(routes!(counter_get, counter_add));
    }
    router.with_state(ClusterState { cluster: ctx.cluster.clone(), counter })
}

/// This node's membership view: its name, whether it is clustered, and every member with its state.
#[utoipa::path(get, path = "/cluster/members", responses((status = 200, description = "`{node, clustered, members: [...]}`", body = Object)))]
async fn members(State(s): State<ClusterState>) -> Json<Value> {
    let view = s.cluster.members().await;
    Json(json!({
        "node": s.cluster.node_name(),
        "clustered": s.cluster.is_clustered(),
        "members": view.members,
    }))
}

fn service(name: &str) -> Result<ServiceId, Problem> {
    name.parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "unknown_service", format!("no service named `{name}`")))
}

fn owner_of(cluster: &Cluster, service: ServiceId, key: &str) -> Result<String, Problem> {
    cluster.owner(service, key).ok_or_else(|| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no_owner", format!("no up member hosts {service}"))
    })
}

/// Which node owns `key` for `service` (404 `unknown_service`, 503 `no_owner` when no up member hosts it).
#[utoipa::path(get, path = "/cluster/owner/{service}/{key}", params(
        ("service" = String, Path, description = "service name, e.g. `dedup`"),
        ("key" = String, Path, description = "the key")),
    responses((status = 200, description = "`{service, key, owner}`", body = Object)))]
async fn owner(
    State(s): State<ClusterState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let service = service(&name)?;
    let owner = owner_of(&s.cluster, service, &key)?;
    Ok(Json(json!({ "service": service, "key": key, "owner": owner })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersRequest {
    service: String,
    keys: Vec<String>,
}

#[derive(Serialize)]
struct OwnersReply {
    service: ServiceId,
    owners: Vec<(String, String)>,
}

/// Which node owns each of up to 10,000 keys for one service.
#[utoipa::path(post, path = "/cluster/owners", request_body(content = Object, description = "`{\"service\": name, \"keys\": [string, ...]}` (at most 10,000 keys)"),
    responses((status = 200, description = "`{service, owners: [[key, node], ...]}`", body = Object)))]
async fn owners(
    State(s): State<ClusterState>,
    ApiJson(req): ApiJson<OwnersRequest>,
) -> Result<Json<OwnersReply>, Problem> {
    let service = service(&req.service)?;
    if req.keys.len() > MAX_OWNER_KEYS {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_keys",
            format!("{} keys, at most {MAX_OWNER_KEYS} per request", req.keys.len()),
        ));
    }
    let view = s.cluster.view();
    let mut owners = Vec::with_capacity(req.keys.len());
    for key in req.keys {
        let owner = view.owner(service, &key).map(|m| m.name.clone()).ok_or_else(|| {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no_owner", format!("no up member hosts {service}"))
        })?;
        owners.push((key, owner));
    }
    Ok(Json(OwnersReply { service, owners }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    by: u64,
}

fn counter_off() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "the debug counter needs fault injection enabled")
}

fn call_problem(e: CallFailure) -> Problem {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    Problem::new(status, e.code(), e.to_string())
}

/// Test machinery (fault injection only): adds `by` to the keyed counter on the node owning `key`.
#[utoipa::path(post, path = "/cluster/debug/counter/{key}", params(("key" = String, Path, description = "counter key")),
    request_body(content = Object, description = "`{\"by\": u64}`"),
    responses((status = 200, description = "`{key, value, served_by, via}`", body = Object)))]
async fn counter_add(
    State(s): State<ClusterState>,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<Json<Value>, Problem> {
    let client = s.counter.ok_or_else(counter_off)?;
    let served = client.call(&key, CounterRequest::Add { by: req.by }).await.map_err(call_problem)?;
    Ok(Json(json!({ "key": key, "value": served.value.value, "served_by": served.node, "via": s.cluster.node_name() })))
}

/// Test machinery (fault injection only): the keyed counter's value, read on the node owning `key`.
#[utoipa::path(get, path = "/cluster/debug/counter/{key}", params(("key" = String, Path, description = "counter key")),
    responses((status = 200, description = "`{key, value, served_by, via}`", body = Object)))]
async fn counter_get(State(s): State<ClusterState>, Path(key): Path<String>) -> Result<Json<Value>, Problem> {
    let client = s.counter.ok_or_else(counter_off)?;
    let served = client.call(&key, CounterRequest::Get).await.map_err(call_problem)?;
    Ok(Json(json!({ "key": key, "value": served.value.value, "served_by": served.node, "via": s.cluster.node_name() })))
}
