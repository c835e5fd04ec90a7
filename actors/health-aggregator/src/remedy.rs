//! The remediation executor: carries out the engine's decisions (`remediation.rs`) and
//! operators' requests, and records every one in the audit trail (`audit.rs`) and on the stream
//! (a `remediation:<id>` delta of this node whose status is the outcome; it leaves no entry in
//! the snapshot). Restarts go through the node's root supervisor (`NodeControl::restart`: the
//! service's whole tree, by its restart policy); `not_ready` holds every service of this node not
//! ready until the triggering component passes again and at least the cool-down has passed;
//! circuits are opened by the engine and closed here when their cool-down ends. Audit rows are
//! streamed at once and written in batches by the executor's loop (a burst of operator requests
//! costs one insert per batch, not per row); rows that cannot be written yet (the database may
//! be what failed) wait in a bounded queue — the oldest dropped past [`MAX_UNSAVED`] — and
//! `GET /remediations` serves them from there meanwhile.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loom_config::RemediationAction;
use loom_protocol::ServiceId;
use loom_service::NodeControl;
use serde_json::json;
use tokio::sync::mpsc;

use crate::aggregate::Aggregator;
use crate::audit::{Action, AuditStore};
use crate::remediation::{Decision, Verdict};

pub const TICK: Duration = Duration::from_secs(1);
/// Most audit rows waiting to be written.
pub const MAX_UNSAVED: usize = 4096;
/// Most rows per insert.
pub const BATCH: usize = 256;
/// The trail is pruned once per this many rows written.
pub const PRUNE_EVERY: u64 = 64;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A readiness hold in place: by a rule (released when its component recovers) or by hand.
#[derive(Debug, Clone)]
struct Hold {
    component: Option<String>,
    since_ms: u64,
    rule: String,
}

pub struct Remedy {
    pub me: String,
    pub control: NodeControl,
    pub aggregator: Aggregator,
    pub store: AuditStore,
    pub cool_down_ms: u64,
    held: Mutex<Option<Hold>>,
    unsaved: Mutex<std::collections::VecDeque<Action>>,
    /// Wakes the executor's loop to write queued rows.
    wake: tokio::sync::Notify,
    /// Rows written since the start; the trail is pruned every [`PRUNE_EVERY`].
    written: std::sync::atomic::AtomicU64,
}

/// Why an operator's request was refused: stable code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Remedy {
    pub fn new(
        me: String,
        control: NodeControl,
        aggregator: Aggregator,
        store: AuditStore,
        cool_down_ms: u64,
    ) -> Remedy {
        Remedy {
            me,
            control,
            aggregator,
            store,
            cool_down_ms,
            held: Mutex::default(),
            unsaved: Mutex::default(),
            wake: Default::default(),
            written: Default::default(),
        }
    }

    /// Executes decisions as they come and closes expired circuits and holds every [`TICK`].
    pub async fn run(self: Arc<Self>, mut decisions: mpsc::Receiver<Decision>) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                got = decisions.recv() => match got {
                    Some(d) => self.execute(d).await,
                    None => return,
                },
                _ = tick.tick() => self.tick().await,
                _ = self.wake.notified() => self.flush().await,
            }
        }
    }

    async fn execute(&self, d: Decision) {
        let mut detail = json!({ "flips": d.flips });
        let outcome = match d.verdict {
            Verdict::RuleLimited => {
                detail["limit"] = json!("rule");
                "rate_limited"
            }
            Verdict::GlobalLimited => {
                detail["limit"] = json!("global");
                "rate_limited"
            }
            Verdict::Act => match d.action {
                RemediationAction::Restart => match self.restart(&d.component).await {
                    Ok(()) => "applied",
                    Err(r) => {
                        detail["error"] = json!(r.code);
                        "failed"
                    }
                },
                RemediationAction::NotReady => {
                    let reason = format!("remediation rule {}: {} failing", d.rule, d.component);
                    self.hold(Some(d.component.clone()), &d.rule, reason);
                    "applied"
                }
                RemediationAction::OpenCircuit => {
                    if let Some(until) = self
                        .aggregator
                        .circuits()
                        .iter()
                        .find(|c| c["node"] == d.node.as_str() && c["component"] == d.component.as_str())
                    {
                        detail["until_ms"] = until["until_ms"].clone();
                    }
                    "applied"
                }
            },
        };
        self.record(&d.node, &d.component, d.action.name(), &d.rule, d.trigger, outcome, detail).await;
    }

    async fn restart(&self, component: &str) -> Result<(), Refusal> {
        let service = ServiceId::from_str(component)
            .map_err(|_| Refusal { code: "unknown_service", message: format!("`{component}` is not a service") })?;
        self.control.restart(service).await.map_err(|e| Refusal { code: e.code(), message: e.to_string() })
    }

    fn hold(&self, component: Option<String>, rule: &str, reason: String) {
        self.control.hold_not_ready(reason);
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Hold { component, since_ms: now_ms(), rule: rule.into() });
    }

    async fn tick(&self) {
        let now = now_ms();
        for (node, component) in self.aggregator.tick(now) {
            self.record(&node, &component, "open_circuit", "-", "cool_down", "closed", json!({})).await;
        }
        let release = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.as_ref().and_then(|h| {
                let component = h.component.as_deref()?;
                let recovered = self.aggregator.raw_status(&self.me, component).is_none_or(|s| s == "pass");
                (recovered && now >= h.since_ms + self.cool_down_ms).then(|| (component.to_owned(), h.rule.clone()))
            })
        };
        if let Some((component, rule)) = release {
            *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.control.release_not_ready();
            self.record(&self.me.clone(), &component, "not_ready", &rule, "recovered", "released", json!({})).await;
        }
        self.flush().await;
    }

    /// An operator's request (`POST /admin/remediations`): `restart` a service of this node,
    /// hold this node `not_ready` or release it (`ready`), `open_circuit` on any node's component.
    pub async fn manual(&self, node: &str, service: Option<&str>, action: &str) -> Result<Action, Refusal> {
        let local = node == self.me;
        let component = service.unwrap_or("*");
        let needs_service = matches!(action, "restart" | "open_circuit");
        match action {
            "restart" | "not_ready" | "ready" | "open_circuit" => {}
            other => {
                return Err(Refusal {
                    code: "invalid_action",
                    message: format!("action `{other}` is not one of restart, not_ready, ready, open_circuit"),
                });
            }
        }
        if needs_service && service.is_none() {
            return Err(Refusal { code: "service_required", message: format!("{action} needs a service") });
        }
        if action == "restart" && ServiceId::from_str(component).is_err() {
            return Err(Refusal { code: "unknown_service", message: format!("`{component}` is not a service") });
        }
        if !local && action != "open_circuit" {
            return Err(Refusal {
                code: "other_node",
                message: format!("{action} acts on the node that receives it; send it to {node}'s port 8030"),
            });
        }
        if self.aggregator.manual(now_ms()) != Verdict::Act {
            let detail = json!({ "limit": "global" });
            self.record(node, component, action, "manual", "manual", "rate_limited", detail).await;
            return Err(Refusal { code: "rate_limited", message: "the global remediation rate limit is spent".into() });
        }
        let (outcome, detail) = match action {
            "restart" => match self.restart(component).await {
                Ok(()) => ("applied", json!({})),
                Err(r) => {
                    self.record(node, component, action, "manual", "manual", "failed", json!({ "error": r.code }))
                        .await;
                    return Err(r);
                }
            },
            "not_ready" => {
                self.hold(None, "manual", "held by an operator".into());
                ("applied", json!({}))
            }
            "ready" => {
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let was = self.control.release_not_ready();
                (if was { "released" } else { "applied" }, json!({ "was_held": was }))
            }
            _ => {
                let until = self.aggregator.open_circuit(node, component, now_ms());
                ("applied", json!({ "until_ms": until }))
            }
        };
        Ok(self.record(node, component, action, "manual", "manual", outcome, detail).await)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        node: &str,
        component: &str,
        action: &str,
        rule: &str,
        trigger: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Action {
        let a = Action {
            id: uuid::Uuid::now_v7().to_string(),
            time_ms: now_ms() as i64,
            node: node.into(),
            component: component.into(),
            action: action.into(),
            rule: rule.into(),
            trigger: trigger.into(),
            outcome: outcome.into(),
            detail,
        };
        tracing::warn!(node, component, action, rule, trigger, outcome, "remediation");
        self.aggregator.hub().retire(&self.me, &format!("remediation:{}", a.id), outcome, json!(a));
        {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
            if unsaved.len() >= MAX_UNSAVED {
                unsaved.pop_front();
                tracing::warn!(code = "remediation_backlog", "oldest unwritten remediation audit row dropped");
            }
            unsaved.push_back(a.clone());
        }
        self.wake.notify_one();
        a
    }

    /// Writes the queued rows in batches; on a failure the rest waits for the next tick.
    async fn flush(&self) {
        loop {
            let batch: Vec<Action> = {
                let unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
                unsaved.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                return;
            }
            if let Err(e) = self.store.save_all(&batch).await {
                tracing::warn!(error = %e, code = "store_unavailable", rows = batch.len(), "remediation audit rows not written yet; will retry");
                return;
            }
            {
                let mut unsaved = self.unsaved.lock().unwrap_or_else(|e| e.into_inner());
                let written: std::collections::HashSet<&str> = batch.iter().map(|a| a.id.as_str()).collect();
                unsaved.retain(|a| !written.contains(a.id.as_str()));
            }
            let before = self.written.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if before / PRUNE_EVERY != (before + batch.len() as u64) / PRUNE_EVERY
                && let Err(e) = self.store.prune().await
            {
                tracing::warn!(error = %e, code = "store_unavailable", "remediation audit pruning failed");
            }
        }
    }

    /// Rows not written yet that match a query (served beside the stored ones).
    pub fn unsaved(&self, q: &crate::audit::ListQuery) -> Vec<Action> {
        self.unsaved.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|a| q.matches(a)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use loom_config::{HumanDuration, RemediationRule, RemediationSection, RemediationTrigger};
    use sea_orm_migration::{MigrationTrait, SchemaManager};

    use super::*;
    use crate::audit::ListQuery;
    use crate::graph::Graph;
    use crate::hub::Hub;
    use crate::remediation::Engine;

    async fn remedy(rules: Vec<RemediationRule>) -> (Arc<Remedy>, mpsc::Receiver<Decision>) {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        crate::audit::Migration.up(&SchemaManager::new(&db)).await.unwrap();
        let config = RemediationSection { cool_down: HumanDuration::from_millis(1), rules, ..Default::default() };
        let (agg, rx) = Aggregator::remediating(Hub::default(), Graph::declared(), Engine::new("n1", config));
        let store = AuditStore { db, observer: "n1".into() };
        (Arc::new(Remedy::new("n1".into(), NodeControl::default(), agg, store, 1)), rx)
    }

    fn trail(r: &Remedy) -> Vec<(String, String, String)> {
        let q = ListQuery { limit: 50, ..ListQuery::default() };
        let mut rows = r.unsaved(&q);
        rows.sort_by_key(|a| a.time_ms);
        rows.into_iter().map(|a| (a.action, a.outcome, a.trigger)).collect()
    }

    #[tokio::test]
    async fn a_not_ready_rule_holds_the_node_until_its_component_recovers_and_everything_is_audited() {
        let rule = RemediationRule {
            name: "drain".into(),
            component: "dep:database".into(),
            on: RemediationTrigger::Fail,
            action: RemediationAction::NotReady,
            max_actions: 1,
            window: HumanDuration::from_secs(60),
        };
        let (r, mut rx) = remedy(vec![rule]).await;
        r.aggregator.observe("n1", "dep:database", "pass", json!({}));
        r.aggregator.observe("n1", "dep:database", "fail", json!({}));
        r.execute(rx.try_recv().unwrap()).await;
        assert!(r.control.not_ready_reason().unwrap().contains("rule drain"));
        r.tick().await;
        assert!(r.control.not_ready_reason().is_some(), "held while the component fails");
        r.aggregator.observe("n1", "dep:database", "pass", json!({}));
        tokio::time::sleep(Duration::from_millis(5)).await;
        r.tick().await;
        assert_eq!(r.control.not_ready_reason(), None);
        // (action, outcome, trigger) — the rows, written by the tick's flush.
        let want = [("not_ready", "applied", "fail"), ("not_ready", "released", "recovered")];
        let stored: Vec<(String, String, String)> = {
            let mut rows = r.store.list(&ListQuery { limit: 50, ..ListQuery::default() }).await.unwrap();
            rows.reverse();
            rows.into_iter().map(|a| (a.action, a.outcome, a.trigger)).collect()
        };
        let want: Vec<(String, String, String)> =
            want.iter().map(|(a, o, t)| (a.to_string(), o.to_string(), t.to_string())).collect();
        assert_eq!(stored, want);
        assert!(trail(&r).is_empty(), "nothing left unwritten");
    }

    #[tokio::test]
    async fn operator_requests_are_checked_limited_and_audited() {
        let (r, _rx) = remedy(Vec::new()).await;
        // (node, service, action, expected outcome or refusal code)
        let cases: [(&str, Option<&str>, &str, Result<&str, &str>); 7] = [
            ("n1", Some("dedup"), "reboot", Err("invalid_action")),
            ("n1", None, "restart", Err("service_required")),
            ("n1", Some("nope"), "restart", Err("unknown_service")),
            ("n2", Some("dedup"), "restart", Err("other_node")),
            ("n1", Some("dedup"), "restart", Err("control_not_attached")),
            ("n1", None, "not_ready", Ok("applied")),
            ("n1", None, "ready", Ok("released")),
        ];
        for (node, service, action, want) in cases {
            let got = r.manual(node, service, action).await.map(|a| a.outcome).map_err(|e| e.code);
            assert_eq!(got.as_ref().map(String::as_str).map_err(|c| *c), want, "{node} {service:?} {action}");
        }
        let until = r.manual("n2", Some("dep:kafka"), "open_circuit").await.unwrap().detail["until_ms"].as_u64();
        assert!(until.is_some() && r.aggregator.circuits().len() == 1);
        // The global limit (10 by default) counts every accepted request: 4 so far.
        for _ in 0..6 {
            r.manual("n1", None, "ready").await.unwrap();
        }
        assert_eq!(r.manual("n1", None, "ready").await.unwrap_err().code, "rate_limited");
        let outcomes: Vec<String> = trail(&r).into_iter().map(|(_, o, _)| o).collect();
        assert_eq!(outcomes.iter().filter(|o| *o == "failed").count(), 1, "the unattached restart: {outcomes:?}");
        assert_eq!(outcomes.last().map(String::as_str), Some("rate_limited"));
    }
}
