//! The aggregator: the raw status of every (node, component) the collectors observe — members,
//! services, dependency probes, this node's and its peers' — evaluated through the dependency
//! graph (`graph.rs`) into what the hub streams: dependents of a failing dependency and
//! everything on a lost member become `impacted` with a `root_cause` in their detail. The root
//! causes of the latest evaluation are published on a watch channel for the incident recorder.
//! Every raw status change also goes through the remediation engine (`remediation.rs`): its
//! decisions are handed to the executor (`remedy.rs`) over a bounded channel, and a component
//! whose circuit is open is evaluated and streamed as `fail` with `"circuit": "open"` until its
//! cool-down ends, whatever it reports meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::graph::{self, Evaluation, Graph, Impact};
use crate::hub::Hub;
use crate::remediation::{Decision, Engine, Verdict};

/// Decisions waiting for the executor; more are dropped (and logged).
pub const MAX_PENDING_DECISIONS: usize = 256;

/// The status of a last delta for an entry that is gone.
pub const REMOVED: &str = "removed";

/// Most (node, component) pairs kept; observations of new pairs past it are dropped.
pub const MAX_ENTRIES: usize = 4096;

struct Inner {
    graph: Graph,
    raw: BTreeMap<(String, String), (String, Value)>,
    latest: Evaluation,
    engine: Engine,
}

#[derive(Clone)]
pub struct Aggregator {
    inner: Arc<Mutex<Inner>>,
    hub: Hub,
    roots: watch::Sender<BTreeMap<String, Impact>>,
    decisions: Option<mpsc::Sender<Decision>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Aggregator {
    /// An aggregator without remediation rules.
    #[cfg(test)]
    pub fn new(hub: Hub, graph: Graph) -> Aggregator {
        let config = loom_config::RemediationSection { rules: Vec::new(), ..Default::default() };
        Self::build(hub, graph, Engine::new("", config), None)
    }

    /// An aggregator that hands `engine`'s decisions to the returned receiver.
    pub fn remediating(hub: Hub, graph: Graph, engine: Engine) -> (Aggregator, mpsc::Receiver<Decision>) {
        let (tx, rx) = mpsc::channel(MAX_PENDING_DECISIONS);
        (Self::build(hub, graph, engine, Some(tx)), rx)
    }

    fn build(hub: Hub, graph: Graph, engine: Engine, decisions: Option<mpsc::Sender<Decision>>) -> Aggregator {
        let (roots, _) = watch::channel(BTreeMap::new());
        let inner = Inner { graph, raw: BTreeMap::new(), latest: Evaluation::default(), engine };
        Aggregator { inner: Arc::new(Mutex::new(inner)), hub, roots, decisions }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a raw status; re-evaluates and streams what changed.
    pub fn observe(&self, node: &str, component: &str, status: &str, detail: Value) {
        let mut inner = self.lock();
        let key = (node.to_owned(), component.to_owned());
        if inner.raw.get(&key).is_some_and(|(s, d)| s == status && *d == detail) {
            return;
        }
        if !inner.raw.contains_key(&key) && inner.raw.len() >= MAX_ENTRIES {
            return;
        }
        inner.graph.add_check(component);
        let from = inner.raw.insert(key, (status.to_owned(), detail)).map(|(s, _)| s);
        if from.as_deref() != Some(status) {
            let decisions = inner.engine.on_change(now_ms(), node, component, from.as_deref(), status);
            self.hand_over(decisions);
        }
        self.publish(&mut inner);
    }

    /// Drops a (node, component) its reporter withdrew (a check whose subject is gone): a last
    /// `removed` delta, then it is out of snapshots and evaluation.
    pub fn forget(&self, node: &str, component: &str) {
        let mut inner = self.lock();
        if inner.raw.remove(&(node.to_owned(), component.to_owned())).is_none() {
            return;
        }
        if !inner.raw.keys().any(|(_, c)| c == component) {
            inner.graph.remove_check(component);
        }
        self.hub.retire(node, component, REMOVED, json!({}));
        self.publish(&mut inner);
    }

    /// This node's or a peer's checks currently known: components starting `check:`.
    pub fn checks_of(&self, node: &str) -> Vec<String> {
        self.lock().raw.keys().filter(|(n, c)| n == node && graph::kind(c) == "check").map(|(_, c)| c.clone()).collect()
    }

    fn hand_over(&self, decisions: Vec<Decision>) {
        let Some(tx) = &self.decisions else { return };
        for d in decisions {
            if let Err(e) = tx.try_send(d) {
                let d = match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                tracing::warn!(
                    rule = d.rule,
                    node = d.node,
                    component = d.component,
                    code = "remediation_backlog",
                    "remediation decision dropped"
                );
            }
        }
    }

    fn publish(&self, inner: &mut Inner) {
        let held = |k: &(String, String)| inner.engine.circuit(&k.0, &k.1);
        let statuses: BTreeMap<(String, String), String> = inner
            .raw
            .iter()
            .map(|(k, (s, _))| (k.clone(), if held(k).is_some() { "fail".to_owned() } else { s.clone() }))
            .collect();
        let evaluation = graph::evaluate(&inner.graph, &statuses);
        for ((node, component), (status, detail)) in &inner.raw {
            let e = evaluation.effective.get(&(node.clone(), component.clone()));
            let reported = e.map(|e| e.status.as_str()).unwrap_or(status);
            if let Some(until) = held(&(node.clone(), component.clone())) {
                // Held open: one steady entry until the cool-down ends, whatever it reports.
                let detail = json!({ "circuit": "open", "circuit_until_ms": until, "root_cause": component });
                self.hub.update(node, component, reported, detail);
                continue;
            }
            let mut detail = detail.clone();
            if let (Some(e), Value::Object(map)) = (e, &mut detail) {
                if let Some(root) = &e.root {
                    map.insert("root_cause".into(), json!(root));
                }
                if e.status != *status {
                    map.insert("raw_status".into(), json!(status));
                }
            }
            self.hub.update(node, component, reported, detail);
        }
        let roots = evaluation.roots.clone();
        self.roots.send_if_modified(|current| {
            let changed = *current != roots;
            if changed {
                *current = roots;
            }
            changed
        });
        inner.latest = evaluation;
    }

    /// Closes the circuits whose cool-down ended (re-evaluating if any); returns them.
    pub fn tick(&self, now: u64) -> Vec<(String, String)> {
        let mut inner = self.lock();
        let closed = inner.engine.expire(now);
        if !closed.is_empty() {
            self.publish(&mut inner);
        }
        closed
    }

    /// Opens a circuit by hand for the configured cool-down; returns until when.
    pub fn open_circuit(&self, node: &str, component: &str, now: u64) -> u64 {
        let mut inner = self.lock();
        let until = now + inner.engine.cool_down_ms();
        inner.engine.open_circuit(node, component, until);
        self.publish(&mut inner);
        until
    }

    /// An operator's action against the global rate limit.
    pub fn manual(&self, now: u64) -> Verdict {
        self.lock().engine.manual(now)
    }

    /// The open circuits: node, component, until (unix ms).
    pub fn circuits(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.engine.circuits().map(|((n, c), until)| json!({ "node": n, "component": c, "until_ms": until })).collect()
    }

    /// The latest raw status of a (node, component).
    pub fn raw_status(&self, node: &str, component: &str) -> Option<String> {
        self.lock().raw.get(&(node.to_owned(), component.to_owned())).map(|(s, _)| s.clone())
    }

    /// Follows the root causes of the latest evaluation.
    pub fn roots(&self) -> watch::Receiver<BTreeMap<String, Impact>> {
        self.roots.subscribe()
    }

    /// This node's own raw observations (services and dependencies), for its peers.
    pub fn local(&self, me: &str) -> Vec<(String, String, Value)> {
        self.lock()
            .raw
            .iter()
            .filter(|((node, c), _)| node == me && c != graph::NODE)
            .map(|((_, c), (s, d))| (c.clone(), s.clone(), d.clone()))
            .collect()
    }

    /// The graph with every component's status per node, for `GET /dependencies`.
    pub fn dependencies(&self) -> Value {
        let inner = self.lock();
        let mut per: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
        for ((node, component), e) in &inner.latest.effective {
            per.entry(component.as_str()).or_default().insert(
                node.clone(),
                json!({ "status": e.status, "root_cause": e.root, "raw_status": inner.raw.get(&(node.clone(), component.clone())).map(|(s, _)| s) }),
            );
        }
        let nodes: Vec<Value> = inner
            .graph
            .components()
            .map(|c| {
                let on = per.remove(c).unwrap_or_default();
                let worst = on
                    .values()
                    .filter_map(|v| v["status"].as_str())
                    .max_by_key(|s| rank(s))
                    .unwrap_or("unknown")
                    .to_owned();
                json!({ "id": c, "kind": graph::kind(c), "status": if on.is_empty() { "unknown".to_owned() } else { worst }, "nodes": on })
            })
            .collect();
        let edges: Vec<Value> =
            inner.graph.edges().into_iter().map(|(from, to)| json!({ "from": from, "to": to })).collect();
        let roots: Vec<&String> = inner.latest.roots.keys().collect();
        json!({ "nodes": nodes, "edges": edges, "root_causes": roots })
    }
}

/// Worse statuses rank higher.
pub fn rank(status: &str) -> u8 {
    match status {
        "pass" | "up" => 0,
        "joining" | "warn" => 1,
        "impacted" => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impacted_dependents_stream_with_their_root_cause_and_roots_are_published() {
        let hub = Hub::default();
        let agg = Aggregator::new(hub.clone(), Graph::declared());
        let mut roots = agg.roots();
        agg.observe("n1", "node", "up", json!({}));
        agg.observe("n1", "schema-registry", "pass", json!({ "restarts": 0 }));
        agg.observe("n1", "dep:database", "pass", json!({}));
        assert!(roots.borrow_and_update().is_empty());
        agg.observe("n1", "dep:database", "fail", json!({}));
        let entry = |c: &str| hub.current().into_iter().find(|d| d.node == "n1" && d.service == c).unwrap();
        // (component, reported status, root cause)
        let cases = [
            ("schema-registry", "impacted", Some("dep:database")),
            ("dep:database", "fail", Some("dep:database")),
            ("node", "up", None),
        ];
        for (c, status, root) in cases {
            let d = entry(c);
            assert_eq!((d.status.as_str(), d.detail["root_cause"].as_str()), (status, root), "{c}");
        }
        assert_eq!(entry("schema-registry").detail["raw_status"], "pass");
        assert!(roots.has_changed().unwrap());
        assert_eq!(roots.borrow_and_update().keys().collect::<Vec<_>>(), ["dep:database"]);
        agg.observe("n1", "dep:database", "pass", json!({}));
        assert_eq!(entry("schema-registry").status, "pass");
        assert!(roots.borrow_and_update().is_empty());
        let deps = agg.dependencies();
        let sr = deps["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "schema-registry").unwrap();
        assert_eq!((sr["status"].as_str(), sr["kind"].as_str()), (Some("pass"), Some("service")));
        assert_eq!(agg.local("n1").len(), 2, "services and dependencies, not the member itself");
    }

    #[test]
    fn an_open_circuit_holds_the_component_failing_and_its_dependents_impacted_until_it_closes() {
        use loom_config::{HumanDuration, RemediationAction, RemediationRule, RemediationSection, RemediationTrigger};
        let rule = RemediationRule {
            name: "hold".into(),
            component: "dep:*".into(),
            on: RemediationTrigger::Flapping,
            action: RemediationAction::OpenCircuit,
            max_actions: 3,
            window: HumanDuration::from_secs(60),
        };
        let config = RemediationSection { flap_threshold: 2, rules: vec![rule], ..Default::default() };
        let hub = Hub::default();
        let (agg, mut rx) = Aggregator::remediating(hub.clone(), Graph::declared(), Engine::new("n1", config));
        agg.observe("n1", "schema-registry", "pass", json!({}));
        let entry = |c: &str| hub.current().into_iter().find(|d| d.node == "n1" && d.service == c).unwrap();
        // (reported by the probe, expected streamed status of the dependency, of its dependent)
        let cases = [
            ("pass", "pass", "pass"),
            ("fail", "fail", "impacted"),
            ("pass", "pass", "pass"),
            ("fail", "fail", "impacted"), // third flip: flapping, the circuit opens
            ("pass", "fail", "impacted"), // held open
            ("fail", "fail", "impacted"),
        ];
        for (i, (raw, dep, dependent)) in cases.into_iter().enumerate() {
            agg.observe("n1", "dep:database", raw, json!({ "n": i }));
            assert_eq!(
                (entry("dep:database").status.as_str(), entry("schema-registry").status.as_str()),
                (dep, dependent),
                "case {i}"
            );
        }
        assert_eq!(entry("dep:database").detail["circuit"], "open");
        let d = rx.try_recv().expect("the opening is handed to the executor");
        assert_eq!((d.rule.as_str(), d.verdict), ("hold", Verdict::Act));
        assert!(rx.try_recv().is_err(), "one decision while open");
        assert_eq!(agg.circuits().len(), 1);
        let until = agg.circuits()[0]["until_ms"].as_u64().unwrap();
        assert!(agg.tick(until - 1).is_empty());
        agg.observe("n1", "dep:database", "pass", json!({ "n": 9 }));
        assert_eq!(agg.tick(until), [("n1".to_owned(), "dep:database".to_owned())]);
        assert_eq!((entry("dep:database").status.as_str(), entry("schema-registry").status.as_str()), ("pass", "pass"));
        assert!(agg.circuits().is_empty());
    }
}
