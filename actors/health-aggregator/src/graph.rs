//! The dependency graph and impact analysis — pure logic, no I/O. Components are the services
//! (by name), the external dependencies (`dep:database`, `dep:cache`, `dep:objectStore`,
//! `dep:kafka`) and each member itself (`node`). Edges mirror what the services declare: the
//! stores in their `ServiceDef::dependencies`, the Kafka broker behind the router's
//! `kafka:reachable` probe, and the services they call (the router validates against the Schema
//! Registry). A test over a running node checks this table against each service's `/health`.
//!
//! [`evaluate`] turns raw observations into what is reported: a component with a failing
//! (transitive) dependency on the same node is `impacted` and names its root cause; every
//! component of an `unreachable` or `down` member is `impacted` by `node:<name>`; only root
//! causes count as failures of their own, so one root cause makes one incident (inhibition).

use std::collections::{BTreeMap, BTreeSet};

use loom_protocol::ServiceId;

/// The member itself.
pub const NODE: &str = "node";
/// The status reported for a component whose dependency (or member) is failing.
pub const IMPACTED: &str = "impacted";
/// External dependencies the aggregator probes when configured.
pub const STORES: [&str; 4] = ["dep:database", "dep:cache", "dep:objectStore", "dep:kafka"];

/// service → what it depends on. Keep in step with the services' `ServiceDef::dependencies`.
const DECLARED: &[(ServiceId, &[&str])] = &[
    (ServiceId::SchemaRegistry, &["dep:database"]),
    (ServiceId::PrivacyFilter, &["dep:database"]),
    (ServiceId::DeviceIdentity, &["dep:database"]),
    (ServiceId::EventRouter, &["dep:database", "dep:kafka", "schema-registry"]),
    (ServiceId::TimeseriesAggregator, &["dep:database", "dep:kafka"]),
    (ServiceId::Dedup, &["dep:database"]),
    (ServiceId::DataQuality, &["dep:database"]),
];

/// Components the graph knows: services, stores, and the edges between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    deps: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// The platform's declared graph: every service (with or without dependencies) and store.
    pub fn declared() -> Graph {
        let mut deps: BTreeMap<String, Vec<String>> =
            ServiceId::ALL.iter().map(|s| (s.name().to_owned(), Vec::new())).collect();
        for store in STORES {
            deps.insert(store.to_owned(), Vec::new());
        }
        for (service, on) in DECLARED {
            deps.insert(service.name().to_owned(), on.iter().map(|d| (*d).to_owned()).collect());
        }
        Graph { deps }
    }

    #[cfg(test)]
    fn from_edges(edges: &[(&str, &[&str])]) -> Graph {
        let mut deps = BTreeMap::new();
        for (c, on) in edges {
            deps.insert((*c).to_owned(), on.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>());
            for d in *on {
                deps.entry((*d).to_owned()).or_insert_with(Vec::new);
            }
        }
        Graph { deps }
    }

    /// Adds a check a service reports (`check:<service>/<name>`), depending on its service: a
    /// failing service makes its checks `impacted`, not failing of their own.
    pub fn add_check(&mut self, component: &str) {
        if let Some(service) = loom_service::checks::service_of(component)
            && !self.deps.contains_key(component)
        {
            let on = if self.deps.contains_key(service) { vec![service.to_owned()] } else { Vec::new() };
            self.deps.insert(component.to_owned(), on);
        }
    }

    /// Drops a check no member reports any more.
    pub fn remove_check(&mut self, component: &str) {
        if kind(component) == "check" {
            self.deps.remove(component);
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(String::as_str)
    }

    /// (dependent, dependency) pairs.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        self.deps.iter().flat_map(|(c, on)| on.iter().map(move |d| (c.as_str(), d.as_str()))).collect()
    }

    fn dependencies(&self, component: &str) -> &[String] {
        self.deps.get(component).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The kind of a component, for the dashboard and `/dependencies`.
pub fn kind(component: &str) -> &'static str {
    if component == NODE {
        "node"
    } else if component.starts_with("check:") {
        "check"
    } else if component.starts_with("dep:") {
        "dependency"
    } else {
        "service"
    }
}

/// Whether a raw status is a failure of its own.
pub fn is_failing(component: &str, status: &str) -> bool {
    if component == NODE { matches!(status, "unreachable" | "down") } else { status == "fail" }
}

/// Components the graph reasons about (SLA entries and incidents are reported beside it).
pub fn in_graph(component: &str) -> bool {
    !component.starts_with("sla:") && !component.starts_with("incident:")
}

/// What one (node, component) is reported as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub status: String,
    /// For a failing root cause, its own key; for an impacted component, its root cause.
    pub root: Option<String>,
}

/// One root cause: the (node, component) pairs failing for it and those it impacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    pub failing: BTreeSet<(String, String)>,
    pub impacted: BTreeSet<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub effective: BTreeMap<(String, String), Effective>,
    /// Root cause key (`node:<name>`, `dep:<store>` or a service name) → its impact. A store or
    /// service failing on several nodes is one root cause.
    pub roots: BTreeMap<String, Impact>,
}

/// The deepest failing dependency reached from `component` on one node — the root cause — if
/// any. Healthy dependencies are walked through (their own dependencies impact them too).
fn failing_root<'a>(
    graph: &'a Graph,
    raw: &BTreeMap<&str, &str>,
    component: &str,
    seen: &mut BTreeSet<&'a str>,
) -> Option<String> {
    for dep in graph.dependencies(component) {
        if !seen.insert(dep.as_str()) {
            continue;
        }
        if let Some(deeper) = failing_root(graph, raw, dep, seen) {
            return Some(deeper);
        }
        if raw.get(dep.as_str()).is_some_and(|s| is_failing(dep, s)) {
            return Some(dep.clone());
        }
    }
    None
}

/// Evaluates raw statuses, keyed (node, component), into reported statuses and root causes.
pub fn evaluate(graph: &Graph, raw: &BTreeMap<(String, String), String>) -> Evaluation {
    let mut by_node: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for ((node, component), status) in raw {
        if in_graph(component) {
            by_node.entry(node).or_default().insert(component, status);
        }
    }
    let mut out = Evaluation::default();
    for (node, components) in by_node {
        let key = |c: &str| (node.to_owned(), c.to_owned());
        let member_failing = components.get(NODE).is_some_and(|s| is_failing(NODE, s));
        for (component, status) in &components {
            let (reported, root) = if member_failing {
                let root = format!("node:{node}");
                let impact = out.roots.entry(root.clone()).or_default();
                if *component == NODE {
                    impact.failing.insert(key(component));
                    (status.to_string(), Some(root))
                } else {
                    impact.impacted.insert(key(component));
                    (IMPACTED.to_owned(), Some(root))
                }
            } else if let Some(root) = failing_root(graph, &components, component, &mut BTreeSet::new()) {
                out.roots.entry(root.clone()).or_default().impacted.insert(key(component));
                (IMPACTED.to_owned(), Some(root))
            } else if is_failing(component, status) {
                let root = if *component == NODE { format!("node:{node}") } else { component.to_string() };
                out.roots.entry(root.clone()).or_default().failing.insert(key(component));
                (status.to_string(), Some(root))
            } else {
                (status.to_string(), None)
            };
            out.effective.insert(key(component), Effective { status: reported, root });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(entries: &[(&str, &str, &str)]) -> BTreeMap<(String, String), String> {
        entries.iter().map(|(n, c, s)| (((*n).to_owned(), (*c).to_owned()), (*s).to_owned())).collect()
    }

    #[test]
    fn impact_follows_the_graph_and_names_one_root_cause() {
        let mut graph = Graph::from_edges(&[
            ("schema-registry", &["dep:database"]),
            ("event-router", &["dep:database", "dep:kafka", "schema-registry"]),
            ("dedup", &[]),
        ]);
        graph.add_check("check:dedup/x");
        graph.add_check("check:dedup/y");
        assert!(graph.edges().contains(&("check:dedup/y", "dedup")));
        // (case, raw observations, expected reported (node, component, status, root), expected roots)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, &'a str, &'a str)>,
            Vec<(&'a str, &'a str, &'a str, Option<&'a str>)>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "all healthy",
                vec![("n1", "node", "up"), ("n1", "dep:database", "pass"), ("n1", "event-router", "pass")],
                vec![
                    ("n1", "node", "up", None),
                    ("n1", "dep:database", "pass", None),
                    ("n1", "event-router", "pass", None),
                ],
                vec![],
            ),
            (
                "a store down impacts its dependents, transitively, and is the only root",
                vec![
                    ("n1", "node", "up"),
                    ("n1", "dep:database", "fail"),
                    ("n1", "schema-registry", "fail"),
                    ("n1", "event-router", "pass"),
                    ("n1", "dedup", "pass"),
                ],
                vec![
                    ("n1", "dep:database", "fail", Some("dep:database")),
                    ("n1", "schema-registry", "impacted", Some("dep:database")),
                    ("n1", "event-router", "impacted", Some("dep:database")),
                    ("n1", "dedup", "pass", None),
                ],
                vec!["dep:database"],
            ),
            (
                "a failing service impacts the services calling it",
                vec![("n1", "dep:database", "pass"), ("n1", "schema-registry", "fail"), ("n1", "event-router", "warn")],
                vec![
                    ("n1", "schema-registry", "fail", Some("schema-registry")),
                    ("n1", "event-router", "impacted", Some("schema-registry")),
                ],
                vec!["schema-registry"],
            ),
            (
                "the deepest failing dependency is the root",
                vec![("n1", "dep:database", "fail"), ("n1", "schema-registry", "fail"), ("n1", "event-router", "fail")],
                vec![("n1", "event-router", "impacted", Some("dep:database"))],
                vec!["dep:database"],
            ),
            (
                "a member that is gone impacts everything it hosts",
                vec![
                    ("n1", "node", "up"),
                    ("n2", "node", "unreachable"),
                    ("n2", "dedup", "pass"),
                    ("n2", "dep:kafka", "fail"),
                ],
                vec![
                    ("n2", "node", "unreachable", Some("node:n2")),
                    ("n2", "dedup", "impacted", Some("node:n2")),
                    ("n2", "dep:kafka", "impacted", Some("node:n2")),
                    ("n1", "node", "up", None),
                ],
                vec!["node:n2"],
            ),
            (
                "one store failing on two nodes is one root cause",
                vec![
                    ("n1", "dep:kafka", "fail"),
                    ("n2", "dep:kafka", "fail"),
                    ("n1", "event-router", "pass"),
                    ("n2", "event-router", "pass"),
                ],
                vec![
                    ("n1", "event-router", "impacted", Some("dep:kafka")),
                    ("n2", "event-router", "impacted", Some("dep:kafka")),
                ],
                vec!["dep:kafka"],
            ),
            (
                "a dependency failing on another node does not impact this one",
                vec![("n1", "dep:kafka", "pass"), ("n2", "dep:kafka", "fail"), ("n1", "event-router", "pass")],
                vec![("n1", "event-router", "pass", None)],
                vec!["dep:kafka"],
            ),
            (
                "a failing check is a root cause of its own; its service failing impacts it",
                vec![("n1", "check:dedup/x", "fail"), ("n2", "dedup", "fail"), ("n2", "check:dedup/y", "fail")],
                vec![
                    ("n1", "check:dedup/x", "fail", Some("check:dedup/x")),
                    ("n2", "check:dedup/y", "impacted", Some("dedup")),
                ],
                vec!["check:dedup/x", "dedup"],
            ),
            (
                "joining is not a failure; sla and incident entries stay outside the graph",
                vec![("n3", "node", "joining"), ("n3", "sla:dedup", "fail"), ("n3", "incident:x", "open")],
                vec![("n3", "node", "joining", None)],
                vec![],
            ),
        ];
        for (name, observed, want, want_roots) in cases {
            let got = evaluate(&graph, &raw(&observed));
            for (node, component, status, root) in want {
                let e = got
                    .effective
                    .get(&(node.to_owned(), component.to_owned()))
                    .unwrap_or_else(|| panic!("{name}: {node}/{component} missing"));
                assert_eq!((e.status.as_str(), e.root.as_deref()), (status, root), "{name}: {node}/{component}");
            }
            assert_eq!(got.roots.keys().map(String::as_str).collect::<Vec<_>>(), want_roots, "{name}");
            assert!(got.effective.keys().all(|(_, c)| in_graph(c)), "{name}");
        }
    }

    #[test]
    fn the_declared_graph_has_every_service_and_store_and_no_dangling_edges() {
        let g = Graph::declared();
        let components: BTreeSet<&str> = g.components().collect();
        for s in ServiceId::ALL {
            assert!(components.contains(s.name()), "{s}");
        }
        for (from, to) in g.edges() {
            assert!(components.contains(from) && components.contains(to), "{from} -> {to}");
        }
        assert!(g.edges().contains(&("event-router", "schema-registry")));
        assert!(g.edges().contains(&("event-router", "dep:kafka")));
        let cases =
            [("node", "node"), ("dep:kafka", "dependency"), ("dedup", "service"), ("check:data-quality/gps", "check")];
        for (c, k) in cases {
            assert_eq!(kind(c), k);
        }
    }
}
