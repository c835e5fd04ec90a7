//! The status board: every supervised child's state and restart count, shared by the
//! supervisors that write it and the `/health` and `/ready` handlers that read it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use loom_protocol::ServiceId;
use loom_telemetry::names;

/// Lifecycle of a supervised child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    Starting,
    Running,
    /// Failed and waiting for its backoff before the next start.
    Restarting,
    /// Its supervisor gave up (budget spent) and escalated.
    Failed,
    /// Stopped on purpose (shutdown).
    Stopped,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Restarting => "restarting",
            ChildState::Failed => "failed",
            ChildState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChildStatus {
    pub state: ChildState,
    pub restarts: u64,
    /// Short description of the last failure (panic message or error), if any.
    pub last_failure: Option<String>,
    pub since: SystemTime,
}

/// Shared, cheap to clone. Keyed by (service, actor name within the service).
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<BTreeMap<(ServiceId, String), ChildStatus>>>,
}

/// Longest failure text kept; panic messages can be long and must not flood `/health`.
const MAX_FAILURE_LEN: usize = 200;

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set_state(&self, service: ServiceId, actor: &str, state: ChildState) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry((service, actor.to_owned())).or_insert_with(|| ChildStatus {
            state,
            restarts: 0,
            last_failure: None,
            since: SystemTime::now(),
        });
        if entry.state != state {
            entry.state = state;
            entry.since = SystemTime::now();
        }
        let up = if state == ChildState::Running { 1.0 } else { 0.0 };
        metrics::gauge!(names::ACTOR_UP, "service" => service.name(), "actor" => actor.to_owned()).set(up);
    }

    pub(crate) fn record_failure(&self, service: ServiceId, actor: &str, reason: &str) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&(service, actor.to_owned())) {
            let mut text: String = reason.chars().take(MAX_FAILURE_LEN).collect();
            if reason.chars().count() > MAX_FAILURE_LEN {
                text.push('…');
            }
            entry.last_failure = Some(text);
        }
    }

    pub(crate) fn record_restart(&self, service: ServiceId, actor: &str) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&(service, actor.to_owned())) {
            entry.restarts += 1;
        }
        metrics::counter!(names::ACTOR_RESTARTS, "service" => service.name(), "actor" => actor.to_owned()).increment(1);
    }

    /// The children of one service, by actor name.
    pub fn service(&self, service: ServiceId) -> Vec<(String, ChildStatus)> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|((s, _), _)| *s == service)
            .map(|((_, actor), status)| (actor.clone(), status.clone()))
            .collect()
    }

    /// True when the service has children and all of them run.
    pub fn all_running(&self, service: ServiceId) -> bool {
        let children = self.service(service);
        !children.is_empty() && children.iter().all(|(_, s)| s.state == ChildState::Running)
    }
}
