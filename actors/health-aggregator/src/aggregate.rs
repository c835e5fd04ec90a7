//! The aggregator: the raw status of every (node, component) the collectors observe — members,
//! services, dependency probes, this node's and its peers' — evaluated through the dependency
//! graph (`graph.rs`) into what the hub streams: dependents of a failing dependency and
//! everything on a lost member become `impacted` with a `root_cause` in their detail. The root
//! causes of the latest evaluation are published on a watch channel for the incident recorder.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::graph::{self, Evaluation, Graph, Impact};
use crate::hub::Hub;

/// Most (node, component) pairs kept; observations of new pairs past it are dropped.
pub const MAX_ENTRIES: usize = 4096;

struct Inner {
    graph: Graph,
    raw: BTreeMap<(String, String), (String, Value)>,
    latest: Evaluation,
}

#[derive(Clone)]
pub struct Aggregator {
    inner: Arc<Mutex<Inner>>,
    hub: Hub,
    roots: watch::Sender<BTreeMap<String, Impact>>,
}

impl Aggregator {
    pub fn new(hub: Hub, graph: Graph) -> Aggregator {
        let (roots, _) = watch::channel(BTreeMap::new());
        let inner = Inner { graph, raw: BTreeMap::new(), latest: Evaluation::default() };
        Aggregator { inner: Arc::new(Mutex::new(inner)), hub, roots }
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
        inner.raw.insert(key, (status.to_owned(), detail));
        self.publish(&mut inner);
    }

    fn publish(&self, inner: &mut Inner) {
        let statuses: BTreeMap<(String, String), String> =
            inner.raw.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect();
        let evaluation = graph::evaluate(&inner.graph, &statuses);
        for ((node, component), (status, detail)) in &inner.raw {
            let e = evaluation.effective.get(&(node.clone(), component.clone()));
            let reported = e.map(|e| e.status.as_str()).unwrap_or(status);
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
}
