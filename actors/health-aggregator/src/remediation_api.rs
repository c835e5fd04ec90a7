//! The remediation routes on 8030: `GET /remediations` (this node's audit trail, newest first;
//! filters `?node=`, `?service=`, `?action=`, `?outcome=`, `?rule=`, `?since=` / `?before=` unix
//! milliseconds, `?limit=` up to [`MAX_PAGE`], `next_before` is the next page's cursor),
//! `GET /circuits` (the open circuits) and `POST /admin/remediations`
//! `{"node", "service", "action"}` — an operator's action, under the rate limit and audited
//! like the automated ones (admin scope, as every `/admin/` route).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use loom_http::{ApiJson, ApiRouter, Problem, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::ListQuery;
use crate::remedy::{Refusal, Remedy};

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;

pub fn routes(remedy: Arc<Remedy>) -> ApiRouter {
    ApiRouter::new().routes(routes!(list)).routes(routes!(circuits)).routes(routes!(trigger)).with_state(remedy)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    node: Option<String>,
    service: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    rule: Option<String>,
    since: Option<i64>,
    before: Option<i64>,
    limit: Option<u64>,
}

fn invalid(code: &'static str, message: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

const ACTIONS: [&str; 4] = ["restart", "open_circuit", "not_ready", "ready"];
const OUTCOMES: [&str; 5] = ["applied", "rate_limited", "failed", "closed", "released"];

fn parse(p: ListParams) -> Result<ListQuery, Problem> {
    if let Some(a) = &p.action
        && !ACTIONS.contains(&a.as_str())
    {
        return Err(invalid("invalid_action", format!("action `{a}` is not one of {}", ACTIONS.join(", "))));
    }
    if let Some(o) = &p.outcome
        && !OUTCOMES.contains(&o.as_str())
    {
        return Err(invalid("invalid_outcome", format!("outcome `{o}` is not one of {}", OUTCOMES.join(", "))));
    }
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid("invalid_limit", format!("limit {limit} is outside 1..={MAX_PAGE}")));
    }
    Ok(ListQuery {
        node: p.node,
        component: p.service,
        action: p.action,
        outcome: p.outcome,
        rule: p.rule,
        since_ms: p.since,
        before_ms: p.before,
        limit,
    })
}

/// This node's remediation audit trail, newest first (`partial: true` when the database does not answer).
#[utoipa::path(get, path = "/remediations", params(
        ("node" = Option<String>, Query, description = "only actions on this node"),
        ("service" = Option<String>, Query, description = "only actions on this service (component)"),
        ("action" = Option<String>, Query, description = "`restart`, `open_circuit`, `not_ready` or `ready`"),
        ("outcome" = Option<String>, Query, description = "`applied`, `rate_limited`, `failed`, `closed` or `released`"),
        ("rule" = Option<String>, Query, description = "only actions decided by this rule"),
        ("since" = Option<i64>, Query, description = "only actions at or after this time (unix milliseconds)"),
        ("before" = Option<i64>, Query, description = "only actions before this time (unix milliseconds); the previous page's `next_before`"),
        ("limit" = Option<u64>, Query, description = "page size, 1..=200 (default 50)")),
    responses((status = 200, description = "`{remediations: [...], partial, limit, next_before}`", body = Object)))]
async fn list(
    State(r): State<Arc<Remedy>>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(params) = params.map_err(|e| invalid("invalid_query", e.body_text().to_lowercase()))?;
    let q = parse(params)?;
    let (mut actions, partial) = match r.store.list(&q).await {
        Ok(stored) => (stored, false),
        Err(e) => {
            tracing::warn!(error = %e, code = "store_unavailable", "remediation list served from memory");
            (Vec::new(), true)
        }
    };
    actions.extend(r.unsaved(&q));
    actions.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then_with(|| b.id.cmp(&a.id)));
    actions.dedup_by(|a, b| a.id == b.id);
    actions.truncate(q.limit as usize);
    let next_before = (actions.len() as u64 == q.limit).then(|| actions.last().map(|a| a.time_ms)).flatten();
    Ok(Json(json!({ "remediations": actions, "partial": partial, "limit": q.limit, "next_before": next_before })))
}

/// The open circuits and the cool-down before one closes.
#[utoipa::path(get, path = "/circuits", responses((status = 200, description = "`{circuits: [...], cool_down_ms}`", body = Object)))]
async fn circuits(State(r): State<Arc<Remedy>>) -> Json<Value> {
    Json(json!({ "circuits": r.aggregator.circuits(), "cool_down_ms": r.cool_down_ms }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    node: String,
    service: Option<String>,
    action: String,
}

fn status_of(r: &Refusal) -> StatusCode {
    match r.code {
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "other_node" => StatusCode::CONFLICT,
        "control_not_attached" | "supervisor_unreachable" => StatusCode::SERVICE_UNAVAILABLE,
        "service_not_running" => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// An operator's remediation action, under the rate limit and audited like the automated ones.
#[utoipa::path(post, path = "/admin/remediations",
    request_body(content = Object, description = "`{\"node\": name, \"service\": optional name, \"action\": \"restart\" | \"open_circuit\" | \"not_ready\" | \"ready\"}`"),
    responses((status = 202, description = "the recorded action", body = Object)))]
async fn trigger(
    State(r): State<Arc<Remedy>>,
    ApiJson(body): ApiJson<TriggerBody>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    match r.manual(&body.node, body.service.as_deref(), &body.action).await {
        Ok(action) => Ok((StatusCode::ACCEPTED, Json(json!(action)))),
        Err(refusal) => Err(Problem::new(status_of(&refusal), refusal.code, refusal.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_checked_and_bounded() {
        // (action, outcome, limit, expected error code or the limit used)
        let cases: [(Option<&str>, Option<&str>, Option<u64>, Result<u64, &str>); 6] = [
            (None, None, None, Ok(DEFAULT_PAGE)),
            (Some("restart"), Some("rate_limited"), Some(MAX_PAGE), Ok(MAX_PAGE)),
            (Some("reboot"), None, None, Err("invalid_action")),
            (None, Some("done"), None, Err("invalid_outcome")),
            (None, None, Some(0), Err("invalid_limit")),
            (None, None, Some(MAX_PAGE + 1), Err("invalid_limit")),
        ];
        for (action, outcome, limit, want) in cases {
            let p = ListParams {
                action: action.map(str::to_owned),
                outcome: outcome.map(str::to_owned),
                limit,
                ..ListParams::default()
            };
            assert_eq!(
                parse(p).map(|q| q.limit).map_err(|p| p.code),
                want.map_err(str::to_owned),
                "{action:?} {outcome:?} {limit:?}"
            );
        }
    }

    #[test]
    fn refusals_map_to_one_status_each() {
        let cases = [
            ("rate_limited", 429),
            ("other_node", 409),
            ("control_not_attached", 503),
            ("service_not_running", 404),
            ("invalid_action", 422),
            ("unknown_service", 422),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(&Refusal { code, message: String::new() }).as_u16(), status, "{code}");
        }
    }
}
