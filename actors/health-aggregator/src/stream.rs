//! The live health stream and its collectors. `GET /ws/health` sends a snapshot (or, with
//! `?since=SEQ`, the deltas missed since then when still in the history) followed by every delta,
//! filtered by `?service=`, `?node=`, `?status=` (comma lists); a subscriber that falls
//! `SUBSCRIBER_BUFFER` deltas behind is closed with code 1008 and a reason saying where to
//! resume. `GET /health/cluster` is the aggregate as `application/health+json`.
//!
//! Collectors feed the aggregator (`aggregate.rs`, which evaluates the dependency graph and feeds
//! the hub): this node's membership view and its changes (component `node`), the supervision
//! status of this node's services (polled), the checks its services report on the node's board
//! (`check:<service>/<name>`, e.g. a data quality monitor; withdrawn ones leave with a
//! `removed` delta), and the raw service, dependency and check statuses other nodes publish on
//! the cluster topic `health.services` (on change and every few seconds).
//! Statuses: members `up`/`joining`/`unreachable`/`down`; services and dependencies
//! `pass`/`warn`/`fail`, or `impacted` (with `root_cause`) when a dependency or their member
//! fails; `incident:<id>` entries `open`, then `resolved`.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use loom_cluster::Cluster;
use loom_http::{ApiRouter, routes};
use loom_protocol::ServiceId;
use loom_service::ServiceContext;
use loom_supervisors::{ChildState, StatusBoard};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use loom_telemetry::names;

use crate::aggregate::{Aggregator, rank};
use crate::graph;
use crate::hub::{Filter, Hub, Opening, SUBSCRIBER_BUFFER};
use crate::probes::Liveness;
use crate::sla;

const TOPIC: &str = "health.services";
/// How often SLA samples are taken.
const SLA_SAMPLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);
const REPUBLISH: Duration = Duration::from_secs(5);
/// Entries taken from one peer message at most (services, dependencies and checks).
const MAX_PEER_ENTRIES: usize = 512;

#[derive(Clone)]
struct StreamState {
    hub: Hub,
    sla: Arc<Mutex<BTreeMap<String, sla::Tracker>>>,
}

/// Starts the collectors feeding `aggregator` and returns the stream routes.
pub fn routes(ctx: &ServiceContext, aggregator: Aggregator, liveness: Liveness) -> ApiRouter {
    let hub = aggregator.hub().clone();
    tokio::spawn(follow_membership(ctx.cluster.clone(), aggregator.clone()));
    let services: Vec<ServiceId> = ctx.config.services.enabled().into_iter().map(|(id, _)| id).collect();
    let watched = Watched { board: ctx.board.clone(), checks: ctx.checks.clone(), services, liveness };
    tokio::spawn(follow_services(ctx.cluster.clone(), watched, aggregator.clone()));
    if ctx.cluster.is_clustered() {
        tokio::spawn(follow_peers(ctx.cluster.clone(), aggregator));
    }
    let state = StreamState { hub, sla: Arc::default() };
    tokio::spawn(sample_sla(ctx.cluster.node_name().to_owned(), state.clone()));
    ApiRouter::new()
        .routes(routes!(ws_health))
        .routes(routes!(cluster_health))
        .routes(routes!(sla_report))
        .with_state(state)
}

async fn follow_membership(cluster: Cluster, agg: Aggregator) {
    let mut events = cluster.events();
    for m in cluster.view().members.iter() {
        agg.observe(&m.name, "node", m.state.name(), json!({ "addr": m.addr, "generation": m.generation }));
    }
    loop {
        match events.recv().await {
            Ok(change) => {
                agg.observe(&change.name, "node", change.to.name(), json!({ "generation": change.generation }));
            }
            Err(RecvError::Lagged(_)) => {
                for m in cluster.view().members.iter() {
                    agg.observe(&m.name, "node", m.state.name(), json!({ "addr": m.addr, "generation": m.generation }));
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ServiceStatus {
    node: String,
    /// A service name or a dependency (`dep:<store>`) as this node probes it.
    service: String,
    status: String,
    restarts: u64,
    #[serde(default)]
    detail: serde_json::Value,
}

/// pass: every supervised actor runs; warn: some are (re)starting; fail: one gave up.
fn status_of(board: &StatusBoard, service: ServiceId) -> (String, u64) {
    let children = board.service(service);
    let restarts = children.iter().map(|(_, s)| s.restarts).sum();
    let status = if children.iter().any(|(_, s)| s.state == ChildState::Failed) {
        "fail"
    } else if children.iter().all(|(_, s)| s.state == ChildState::Running) && !children.is_empty() {
        "pass"
    } else {
        "warn"
    };
    (status.to_owned(), restarts)
}

/// The supervision status, made `fail` by a failing liveness check (a stuck tree).
fn with_liveness(status: String, restarts: u64, liveness: Option<&Result<(), String>>) -> (String, serde_json::Value) {
    match liveness {
        Some(Err(output)) if status != "fail" => {
            ("fail".to_owned(), json!({ "restarts": restarts, "check": "liveness", "output": output }))
        }
        _ => (status, json!({ "restarts": restarts })),
    }
}

/// What this node's services report: supervision, liveness and the checks on the board.
struct Watched {
    board: StatusBoard,
    checks: loom_service::Checks,
    services: Vec<ServiceId>,
    liveness: Liveness,
}

async fn follow_services(cluster: Cluster, w: Watched, agg: Aggregator) {
    let me = cluster.node_name().to_owned();
    let mut last_publish = std::time::Instant::now() - REPUBLISH;
    let mut published: Vec<ServiceStatus> = Vec::new();
    loop {
        for service in &w.services {
            let (status, restarts) = status_of(&w.board, *service);
            let live = w.liveness.lock().unwrap_or_else(|e| e.into_inner()).get(service).cloned();
            let (status, detail) = with_liveness(status, restarts, live.as_ref());
            agg.observe(&me, service.name(), &status, detail);
        }
        let reported = w.checks.snapshot();
        for gone in agg.checks_of(&me) {
            if !reported.iter().any(|(c, _)| *c == gone) {
                agg.forget(&me, &gone);
            }
        }
        for (component, check) in reported {
            agg.observe(&me, &component, check.status, check.detail);
        }
        // This node's services and dependency probes, raw: every observer evaluates them.
        let all: Vec<ServiceStatus> = agg
            .local(&me)
            .into_iter()
            .filter(|(c, _, _)| graph::in_graph(c))
            .map(|(service, status, detail)| ServiceStatus {
                node: me.clone(),
                restarts: detail["restarts"].as_u64().unwrap_or(0),
                service,
                status,
                detail,
            })
            .collect();
        if cluster.is_clustered() && (all != published || last_publish.elapsed() >= REPUBLISH) {
            last_publish = std::time::Instant::now();
            if let Ok(bytes) = serde_json::to_vec(&all) {
                cluster.publish(TOPIC, &bytes);
            }
            published = all;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn follow_peers(cluster: Cluster, agg: Aggregator) {
    let Ok(mut rx) = cluster.subscribe(TOPIC).await else { return };
    let me = cluster.node_name().to_owned();
    while let Some(bytes) = rx.recv().await {
        let Ok(statuses) = serde_json::from_slice::<Vec<ServiceStatus>>(&bytes) else { continue };
        // A peer's list is the whole of its checks: those it no longer names are withdrawn.
        if let Some(peer) = statuses.first().map(|s| s.node.clone()).filter(|p| *p != me) {
            for gone in agg.checks_of(&peer) {
                if !statuses.iter().any(|s| s.node == peer && s.service == gone) {
                    agg.forget(&peer, &gone);
                }
            }
        }
        for s in statuses.into_iter().filter(|s| s.node != me && graph::in_graph(&s.service)).take(MAX_PEER_ENTRIES) {
            let detail = if s.detail.is_object() { s.detail } else { json!({ "restarts": s.restarts }) };
            agg.observe(&s.node, &s.service, &s.status, detail);
        }
    }
}

#[derive(Deserialize, Default)]
struct StreamQuery {
    since: Option<u64>,
    service: Option<String>,
    node: Option<String>,
    status: Option<String>,
}

fn list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The live health stream: a snapshot (or the deltas missed since `since`), then every matching delta.
#[utoipa::path(get, path = "/ws/health", params(
        ("since" = Option<u64>, Query, description = "resume after this sequence number (deltas when still in the history, else a snapshot)"),
        ("service" = Option<String>, Query, description = "comma list of components to follow"),
        ("node" = Option<String>, Query, description = "comma list of nodes to follow"),
        ("status" = Option<String>, Query, description = "comma list of statuses to follow")),
    responses((status = 101, description = "WebSocket upgrade: a JSON snapshot or resume frame, then one JSON delta per text frame; a slow consumer is closed with 1008")))]
async fn ws_health(State(s): State<StreamState>, Query(q): Query<StreamQuery>, ws: WebSocketUpgrade) -> Response {
    let filter = Filter { services: list(&q.service), nodes: list(&q.node), statuses: list(&q.status) };
    ws.on_upgrade(move |socket| serve(socket, s.hub, filter, q.since))
}

async fn serve(socket: WebSocket, hub: Hub, filter: Filter, since: Option<u64>) {
    let (mut sender, mut receiver) = socket.split();
    // The client's side is read by a task of its own, woken only when the client sends
    // something: polling the read half beside the broadcast would prepare its read buffer on
    // every delta (1,000 subscribers × every delta).
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = receiver.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        let _ = gone_tx.send(());
    });
    pump(&mut sender, hub, filter, since, gone).await;
    reader.abort();
}

/// Sends the opening, then every matching delta until the client goes, falls too far behind
/// (closed with 1008 and where to resume) or the hub closes.
async fn pump(
    sender: &mut futures::stream::SplitSink<WebSocket, Message>,
    hub: Hub,
    filter: Filter,
    since: Option<u64>,
    mut gone: tokio::sync::oneshot::Receiver<()>,
) {
    let (opening, mut rx) = hub.subscribe(since, &filter);
    let mut last = match &opening {
        Opening::Snapshot { seq, .. } => *seq,
        Opening::Resume { from, deltas } => deltas.last().map(|d| d.seq).unwrap_or(*from),
    };
    let Ok(text) = serde_json::to_string(&opening) else { return };
    if sender.send(Message::Text(text.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(live) => {
                    if live.delta.seq <= last {
                        continue;
                    }
                    last = live.delta.seq;
                    if !filter.matches(&live.delta) {
                        continue;
                    }
                    if sender.send(Message::Text(live.text.clone())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let reason = format!("slow consumer: {n} deltas behind (buffer {SUBSCRIBER_BUFFER}); resume with ?since={last}");
                    let _ = sender.send(Message::Close(Some(CloseFrame { code: 1008, reason: reason.into() }))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            _ = &mut gone => return,
        }
    }
}

/// Cluster-wide health as seen by this node (`application/health+json`; checks and impacted components count as warn).
#[utoipa::path(get, path = "/health/cluster", responses(
    (status = 200, description = "pass or warn", content_type = "application/health+json", body = Object),
    (status = 503, description = "fail", content_type = "application/health+json", body = Object)))]
async fn cluster_health(State(s): State<StreamState>) -> Response {
    let (incidents, entries): (Vec<_>, Vec<_>) =
        s.hub.current().into_iter().partition(|d| d.service.starts_with("incident:"));
    // impacted counts as warn: its root cause is the failure. A failing check (a condition in
    // the data a service watches, e.g. a quality alert) counts as warn too: the platform
    // itself still serves, and this answer must not take nodes out of a load balancer.
    let level_of = |d: &crate::hub::Delta| {
        let r = rank(&d.status).min(3);
        if graph::kind(&d.service) == "check" { r.min(1) } else { r }
    };
    let worst = entries.iter().map(level_of).max().unwrap_or(0);
    let level = match worst {
        0 => 0,
        1 | 2 => 1,
        _ => 2,
    };
    let status = ["pass", "warn", "fail"][level];
    let mut checks = serde_json::Map::new();
    for d in entries {
        let entry = checks.entry(format!("{}:{}", d.service, d.node)).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({ "componentId": d.node, "status": d.status, "observedValue": d.detail, "time_ms": d.time_ms, "seq": d.seq }));
        }
    }
    let open: Vec<&serde_json::Value> = incidents.iter().map(|d| &d.detail["incident"]).collect();
    let body = json!({
        "status": status,
        "description": "cluster-wide health as seen by this node",
        "checks": checks,
        "notes": [format!("{} open incident(s)", open.len())],
        "output": open.iter().filter_map(|i| i["title"].as_str()).collect::<Vec<_>>().join("; "),
    });
    let code = if level == 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut r = (code, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/health+json"));
    r
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Samples every service's availability (any node passing) and publishes the SLA windows as
/// metrics and, when a window's rounded figures change, as `sla:<service>` deltas.
async fn sample_sla(me: String, state: StreamState) {
    loop {
        tokio::time::sleep(SLA_SAMPLE).await;
        let mut available: BTreeMap<String, bool> = BTreeMap::new();
        for d in state.hub.current() {
            if graph::kind(&d.service) != "service" || !graph::in_graph(&d.service) {
                continue;
            }
            *available.entry(d.service.clone()).or_insert(false) |= d.status == "pass";
        }
        let now = unix_secs();
        let reports: Vec<(String, Vec<sla::WindowReport>)> = {
            let mut trackers = state.sla.lock().unwrap_or_else(|e| e.into_inner());
            available
                .into_iter()
                .map(|(service, up)| {
                    let t = trackers.entry(service.clone()).or_default();
                    t.record(now, up);
                    (service, t.report(now, sla::DEFAULT_OBJECTIVE))
                })
                .collect()
        };
        for (service, windows) in reports {
            for w in &windows {
                if let (Some(a), Some(b)) = (w.availability, w.burn_rate) {
                    metrics::gauge!(names::SLA_AVAILABILITY, "slo_service" => service.clone(), "window" => w.window)
                        .set(a);
                    metrics::gauge!(names::SLA_BURN_RATE, "slo_service" => service.clone(), "window" => w.window)
                        .set(b);
                }
            }
            let fast_burn = windows[0].burn_rate.unwrap_or(0.0);
            let status = if fast_burn > 10.0 {
                "fail"
            } else if fast_burn > 1.0 {
                "warn"
            } else {
                "pass"
            };
            let detail: Vec<serde_json::Value> = windows
                .iter()
                .map(|w| json!({ "window": w.window, "availability": w.availability.map(|a| (a * 10_000.0).round() / 10_000.0), "burn_rate": w.burn_rate }))
                .collect();
            state.hub.update(&me, &format!("sla:{service}"), status, json!(detail));
        }
    }
}

/// Every service's SLA windows: availability and burn rate against the objective.
#[utoipa::path(get, path = "/sla", responses((status = 200, description = "`{objective, sample_interval_secs, definition, services: {name: [window, ...]}}`", body = Object)))]
async fn sla_report(State(s): State<StreamState>) -> axum::Json<serde_json::Value> {
    let now = unix_secs();
    let trackers = s.sla.lock().unwrap_or_else(|e| e.into_inner());
    let services: serde_json::Map<String, serde_json::Value> =
        trackers.iter().map(|(name, t)| (name.clone(), json!(t.report(now, sla::DEFAULT_OBJECTIVE)))).collect();
    axum::Json(json!({
        "objective": sla::DEFAULT_OBJECTIVE,
        "sample_interval_secs": SLA_SAMPLE.as_secs(),
        "definition": "a service is available at a sample when at least one node reports it passing",
        "services": services,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_liveness_check_fails_a_service_its_supervisor_thinks_runs() {
        let stuck: Result<(), String> = Err("timed out".into());
        // (supervision status, liveness, expected status, expected check in the detail)
        let cases = [
            ("pass", None, "pass", None),
            ("pass", Some(Ok(())), "pass", None),
            ("pass", Some(stuck.clone()), "fail", Some("liveness")),
            ("warn", Some(stuck.clone()), "fail", Some("liveness")),
            ("fail", Some(stuck), "fail", None),
        ];
        for (i, (status, live, want, check)) in cases.into_iter().enumerate() {
            let (got, detail) = with_liveness(status.to_owned(), 2, live.as_ref());
            assert_eq!(
                (got.as_str(), detail["check"].as_str(), detail["restarts"].as_u64()),
                (want, check, Some(2)),
                "case {i}"
            );
        }
    }
}
