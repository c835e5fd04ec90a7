//! Incident correlation — pure logic, no I/O. Fed the root causes of each evaluation
//! (`graph::evaluate`), it opens one incident per new root cause, folds a root cause that
//! appears within `window` of an open incident's opening into that incident (failures that
//! start together are one event), appends newly affected (node, component) pairs, and resolves an
//! incident once none of its root causes is failing. Dependents never open incidents of their
//! own: they appear only as `affected` of their root cause's incident (inhibition).
//!
//! Bounded: at most [`MAX_OPEN`] open incidents (past that, new root causes join the newest),
//! [`MAX_ROOTS`] root causes and [`MAX_AFFECTED`] affected pairs per incident.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::Impact;

pub const MAX_OPEN: usize = 64;
pub const MAX_ROOTS: usize = 32;
pub const MAX_AFFECTED: usize = 256;

/// One (node, component) an incident touches, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Affected {
    pub node: String,
    pub component: String,
    /// `failing` (a root cause itself) or `impacted`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// `open` or `resolved`.
    pub state: String,
    pub title: String,
    pub roots: Vec<String>,
    pub affected: Vec<Affected>,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub resolved_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened(Incident),
    Updated(Incident),
    Resolved(Incident),
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Opened(_) => "opened",
            Event::Updated(_) => "updated",
            Event::Resolved(_) => "resolved",
        }
    }

    pub fn incident(&self) -> &Incident {
        match self {
            Event::Opened(i) | Event::Updated(i) | Event::Resolved(i) => i,
        }
    }
}

fn title(roots: &[String]) -> String {
    let first = roots.first().map(String::as_str).unwrap_or("unknown");
    let what = match first.split_once(':') {
        Some(("node", n)) => format!("member {n} unreachable"),
        Some(("dep", d)) => format!("dependency {d} failing"),
        Some(("check", c)) => format!("check {c} failing"),
        _ => format!("service {first} failing"),
    };
    match roots.len() {
        0 | 1 => what,
        n => format!("{what} (+{} correlated)", n - 1),
    }
}

/// Open incidents and the rules for grouping.
#[derive(Debug)]
pub struct Correlator {
    window_ms: i64,
    open: Vec<Incident>,
}

impl Correlator {
    pub fn new(window_ms: i64) -> Correlator {
        Correlator { window_ms, open: Vec::new() }
    }

    pub fn open(&self) -> &[Incident] {
        &self.open
    }

    /// Advances to `roots` (the current root causes) at `now_ms`; `new_id` names new incidents.
    pub fn step(
        &mut self,
        now_ms: i64,
        roots: &BTreeMap<String, Impact>,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        // Resolve incidents none of whose root causes still fails.
        let (still, done): (Vec<Incident>, Vec<Incident>) =
            std::mem::take(&mut self.open).into_iter().partition(|i| i.roots.iter().any(|r| roots.contains_key(r)));
        self.open = still;
        for mut incident in done {
            incident.state = "resolved".into();
            incident.updated_ms = now_ms;
            incident.resolved_ms = Some(now_ms);
            events.push(Event::Resolved(incident));
        }
        let mut touched: Vec<bool> = vec![false; self.open.len()];
        let mut opened: Vec<usize> = Vec::new();
        for root in roots.keys() {
            if self.open.iter().any(|i| i.roots.contains(root)) {
                continue;
            }
            let joinable = self
                .open
                .iter()
                .rposition(|i| now_ms - i.opened_ms <= self.window_ms && i.roots.len() < MAX_ROOTS)
                .or_else(|| (self.open.len() >= MAX_OPEN).then(|| self.open.len() - 1));
            match joinable {
                Some(at) => {
                    if self.open[at].roots.len() < MAX_ROOTS {
                        self.open[at].roots.push(root.clone());
                    }
                    if at < touched.len() {
                        touched[at] = true;
                    }
                }
                None => {
                    self.open.push(Incident {
                        id: new_id(),
                        state: "open".into(),
                        title: String::new(),
                        roots: vec![root.clone()],
                        affected: Vec::new(),
                        opened_ms: now_ms,
                        updated_ms: now_ms,
                        resolved_ms: None,
                    });
                    opened.push(self.open.len() - 1);
                }
            }
        }
        for (at, incident) in self.open.iter_mut().enumerate() {
            let mut changed = at < touched.len() && touched[at];
            for root in &incident.roots {
                let Some(impact) = roots.get(root) else { continue };
                let pairs = impact
                    .failing
                    .iter()
                    .map(|p| (p, "failing"))
                    .chain(impact.impacted.iter().map(|p| (p, "impacted")));
                for ((node, component), role) in pairs {
                    let a = Affected { node: node.clone(), component: component.clone(), role: role.into() };
                    let known = incident.affected.iter().any(|x| x.node == a.node && x.component == a.component);
                    if !known && incident.affected.len() < MAX_AFFECTED {
                        incident.affected.push(a);
                        changed = true;
                    }
                }
            }
            let new_title = title(&incident.roots);
            changed |= new_title != incident.title && !incident.title.is_empty();
            incident.title = new_title;
            if opened.contains(&at) {
                events.push(Event::Opened(incident.clone()));
            } else if changed {
                incident.updated_ms = now_ms;
                events.push(Event::Updated(incident.clone()));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn impact(failing: &[(&str, &str)], impacted: &[(&str, &str)]) -> Impact {
        let set =
            |v: &[(&str, &str)]| v.iter().map(|(n, c)| ((*n).to_owned(), (*c).to_owned())).collect::<BTreeSet<_>>();
        Impact { failing: set(failing), impacted: set(impacted) }
    }

    #[test]
    fn one_root_cause_is_one_incident_from_open_to_resolved() {
        let db = || impact(&[("n1", "dep:database")], &[("n1", "schema-registry")]);
        let db_wider = || {
            impact(
                &[("n1", "dep:database"), ("n2", "dep:database")],
                &[("n1", "schema-registry"), ("n2", "event-router")],
            )
        };
        let node = || impact(&[("n2", "node")], &[("n2", "dedup")]);
        // (time ms, current roots, expected events as (kind, roots, affected count))
        type Step = (i64, Vec<(&'static str, Impact)>, Vec<(&'static str, Vec<&'static str>, usize)>);
        let steps: Vec<Step> = vec![
            (0, vec![], vec![]),
            (1_000, vec![("dep:database", db())], vec![("opened", vec!["dep:database"], 2)]),
            (2_000, vec![("dep:database", db())], vec![]),
            (3_000, vec![("dep:database", db_wider())], vec![("updated", vec!["dep:database"], 4)]),
            // A second root cause within the window joins the open incident.
            (
                4_000,
                vec![("dep:database", db_wider()), ("node:n2", node())],
                vec![("updated", vec!["dep:database", "node:n2"], 6)],
            ),
            // One root recovering keeps the incident open.
            (5_000, vec![("node:n2", node())], vec![]),
            (6_000, vec![], vec![("resolved", vec!["dep:database", "node:n2"], 6)]),
            // Later, outside any window, a new failure opens a new incident.
            (100_000, vec![("node:n2", node())], vec![("opened", vec!["node:n2"], 2)]),
            (200_000, vec![("node:n2", node()), ("dep:database", db())], vec![("opened", vec!["dep:database"], 2)]),
        ];
        let mut c = Correlator::new(30_000);
        let mut n = 0;
        let mut ids = BTreeSet::new();
        for (at, current, want) in steps {
            let roots: BTreeMap<String, Impact> = current.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let events = c.step(at, &roots, &mut || {
                n += 1;
                format!("i{n}")
            });
            let got: Vec<(&str, Vec<&str>, usize)> = events
                .iter()
                .map(|e| {
                    (e.name(), e.incident().roots.iter().map(String::as_str).collect(), e.incident().affected.len())
                })
                .collect();
            assert_eq!(got, want, "at {at}");
            for e in &events {
                ids.insert(e.incident().id.clone());
                if let Event::Resolved(i) = e {
                    assert_eq!((i.state.as_str(), i.resolved_ms), ("resolved", Some(at)));
                }
            }
        }
        assert_eq!(ids.len(), 3, "three incidents in all");
        assert_eq!(c.open().len(), 2);
        assert_eq!(c.open()[0].title, "member n2 unreachable");
    }

    #[test]
    fn open_incidents_and_their_lists_are_bounded() {
        let mut c = Correlator::new(0);
        let mut n = 0;
        let mut roots = BTreeMap::new();
        for i in 0..(MAX_OPEN + 10) {
            let count = if i == 0 { MAX_AFFECTED + 5 } else { 1 };
            let affected: Vec<(String, String)> = (0..count).map(|k| (format!("n{k}"), "dedup".to_owned())).collect();
            let refs: Vec<(&str, &str)> = affected.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            roots.insert(format!("svc{i:03}"), impact(&[], &refs));
            c.step(i as i64 * 1000, &roots, &mut || {
                n += 1;
                format!("i{n}")
            });
        }
        assert_eq!(c.open().len(), MAX_OPEN);
        assert!(c.open().iter().all(|i| i.affected.len() <= MAX_AFFECTED && i.roots.len() <= MAX_ROOTS));
        assert_eq!(c.open().last().unwrap().roots.len(), 11, "overflow joins the newest incident");
    }
}
