//! The dependency and incident routes on 8030: `GET /dependencies` (the declared graph with each
//! component's status per node and the current root causes), `GET /incidents` (this node's
//! incident records, newest update first; `?state=open|resolved`, `?since=` and `?before=` unix
//! milliseconds on the last update, `?limit=` up to [`MAX_PAGE`]) and `GET /incidents/{id}`.
//! While the database is unreachable — it may be the incident — the open incidents and the
//! records not yet written are served from memory with `"partial": true`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use loom_http::{ApiRouter, Problem, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::Aggregator;
use crate::incidents::Incident;
use crate::recorder::SharedLive;
use crate::store::{ListQuery, Store};

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;

#[derive(Clone)]
pub struct ApiState {
    pub aggregator: Aggregator,
    pub store: Store,
    pub live: SharedLive,
}

pub fn routes(state: ApiState) -> ApiRouter {
    ApiRouter::new().routes(routes!(dependencies)).routes(routes!(list)).routes(routes!(one)).with_state(state)
}

/// The declared dependency graph with each component's status per node and the current root causes.
#[utoipa::path(get, path = "/dependencies", responses((status = 200, description = "the graph (components, edges), statuses per node and root causes", body = Object)))]
async fn dependencies(State(s): State<ApiState>) -> Json<Value> {
    Json(s.aggregator.dependencies())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    since: Option<i64>,
    before: Option<i64>,
    limit: Option<u64>,
}

fn invalid(code: &'static str, message: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn parse(p: ListParams) -> Result<ListQuery, Problem> {
    if let Some(state) = &p.state
        && !matches!(state.as_str(), "open" | "resolved")
    {
        return Err(invalid("invalid_state", format!("state `{state}` is not one of open, resolved")));
    }
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid("invalid_limit", format!("limit {limit} is outside 1..={MAX_PAGE}")));
    }
    Ok(ListQuery { state: p.state, since_ms: p.since, before_ms: p.before, limit })
}

fn matches(q: &ListQuery, i: &Incident) -> bool {
    q.state.as_ref().is_none_or(|s| *s == i.state)
        && q.since_ms.is_none_or(|t| i.updated_ms >= t)
        && q.before_ms.is_none_or(|t| i.updated_ms < t)
}

/// Stored records overlaid with newer in-memory states (writes still pending), newest first.
fn merge(q: &ListQuery, stored: Vec<Incident>, live: &SharedLive) -> Vec<Incident> {
    let l = live.lock().unwrap_or_else(|e| e.into_inner());
    let mut all: std::collections::BTreeMap<String, Incident> = stored.into_iter().map(|i| (i.id.clone(), i)).collect();
    for i in l.unsaved.values().filter(|i| matches(q, i)) {
        all.insert(i.id.clone(), i.clone());
    }
    let mut out: Vec<Incident> = all.into_values().filter(|i| matches(q, i)).collect();
    out.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then_with(|| b.id.cmp(&a.id)));
    out.truncate(q.limit as usize);
    out
}

/// This node's incident records, newest update first; served from memory with `partial: true` while the database is unreachable.
#[utoipa::path(get, path = "/incidents", params(
        ("state" = Option<String>, Query, description = "`open` or `resolved`"),
        ("since" = Option<i64>, Query, description = "only incidents last updated at or after this time (unix milliseconds)"),
        ("before" = Option<i64>, Query, description = "only incidents last updated before this time (unix milliseconds); the previous page's `next_before`"),
        ("limit" = Option<u64>, Query, description = "page size, 1..=200 (default 50)")),
    responses((status = 200, description = "`{incidents: [...], partial, limit, next_before}`", body = Object)))]
async fn list(
    State(s): State<ApiState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(params) = params.map_err(|e| invalid("invalid_query", e.body_text().to_lowercase()))?;
    let q = parse(params)?;
    let (incidents, partial) = match s.store.list(&q).await {
        Ok(stored) => (merge(&q, stored, &s.live), false),
        Err(e) => {
            tracing::warn!(error = %e, code = "store_unavailable", "incident list served from memory");
            let open = s.live.lock().unwrap_or_else(|e| e.into_inner()).open.clone();
            (merge(&q, open, &s.live), true)
        }
    };
    let next_before = (incidents.len() as u64 == q.limit).then(|| incidents.last().map(|i| i.updated_ms)).flatten();
    Ok(Json(json!({ "incidents": incidents, "partial": partial, "limit": q.limit, "next_before": next_before })))
}

/// One incident (the newest of the stored record and the in-memory state).
#[utoipa::path(get, path = "/incidents/{id}", params(("id" = String, Path, description = "incident id")),
    responses((status = 200, description = "the incident", body = Object)))]
async fn one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let pending = {
        let l = s.live.lock().unwrap_or_else(|e| e.into_inner());
        l.unsaved.get(&id).or_else(|| l.open.iter().find(|i| i.id == id)).cloned()
    };
    let stored = match s.store.get(&id).await {
        Ok(found) => found,
        Err(e) if pending.is_some() => {
            tracing::warn!(error = %e, code = "store_unavailable", "incident served from memory");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, code = "store_unavailable", "incident lookup failed");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the incident store does not answer",
            ));
        }
    };
    let newest = match (stored, pending) {
        (Some(a), Some(b)) => Some(if b.updated_ms >= a.updated_ms { b } else { a }),
        (a, b) => a.or(b),
    };
    newest.map(|i| Json(json!(i))).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "incident_not_found", format!("no incident `{id}` on this node"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_checked_and_bounded() {
        // (state, limit, expected error code or the limit used)
        let cases: [(Option<&str>, Option<u64>, Result<u64, &str>); 6] = [
            (None, None, Ok(DEFAULT_PAGE)),
            (Some("open"), Some(10), Ok(10)),
            (Some("resolved"), Some(MAX_PAGE), Ok(MAX_PAGE)),
            (Some("closed"), None, Err("invalid_state")),
            (None, Some(0), Err("invalid_limit")),
            (None, Some(MAX_PAGE + 1), Err("invalid_limit")),
        ];
        for (state, limit, want) in cases {
            let got = parse(ListParams { state: state.map(str::to_owned), limit, ..ListParams::default() })
                .map(|q| q.limit)
                .map_err(|p| p.code);
            assert_eq!(got, want.map_err(str::to_owned), "{state:?} {limit:?}");
        }
    }
}
