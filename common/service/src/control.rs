//! `NodeControl`: what the node lets the health service do to the node's services — restart one
//! service's actor tree through the root supervisor, ping a service's core actor (liveness), and
//! hold every service of the node not ready. Late-bound: the node attaches each core handle after
//! building the service and the root supervisor once it runs; until then requests answer
//! [`ControlError::NotAttached`]. Cheap to clone.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use loom_protocol::{RequestId, ServiceId};
use loom_supervisors::SupervisorMsg;
use ractor::ActorRef;

use crate::core::CoreHandle;

/// How long the root supervisor may take to accept a restart request.
const RESTART_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The node has not attached its root supervisor (or the service's core) yet.
    NotAttached,
    /// No running actor tree of that service on this node.
    UnknownService(ServiceId),
    /// The root supervisor did not take the request.
    Unreachable(String),
}

impl ControlError {
    /// Stable code for problem+json and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NotAttached => "control_not_attached",
            ControlError::UnknownService(_) => "service_not_running",
            ControlError::Unreachable(_) => "supervisor_unreachable",
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotAttached => write!(f, "the node's supervision tree is not running yet"),
            ControlError::UnknownService(s) => write!(f, "no running actor tree of {s} on this node"),
            ControlError::Unreachable(why) => write!(f, "the root supervisor did not answer: {why}"),
        }
    }
}

#[derive(Default)]
struct Inner {
    root: OnceLock<ActorRef<SupervisorMsg>>,
    cores: RwLock<BTreeMap<ServiceId, CoreHandle>>,
    /// Why the node's services are held not ready (`None`: not held).
    held: RwLock<Option<String>>,
}

#[derive(Clone, Default)]
pub struct NodeControl {
    inner: Arc<Inner>,
}

impl NodeControl {
    /// Node start-up: the root supervisor, once spawned.
    pub fn attach_root(&self, root: ActorRef<SupervisorMsg>) {
        let _ = self.inner.root.set(root);
    }

    /// Node start-up: a built service's core handle (it survives restarts of the actor).
    pub fn attach_core(&self, service: ServiceId, core: CoreHandle) {
        self.inner.cores.write().unwrap_or_else(|e| e.into_inner()).insert(service, core);
    }

    /// The services whose core is attached, in id order.
    pub fn services(&self) -> Vec<ServiceId> {
        self.inner.cores.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Restarts `service`'s whole actor tree: the root supervisor stops its service supervisor,
    /// which restarts by policy (backoff, budget) with fresh actors.
    pub async fn restart(&self, service: ServiceId) -> Result<(), ControlError> {
        let root = self.inner.root.get().ok_or(ControlError::NotAttached)?;
        let call = root.call(|reply| SupervisorMsg::RestartService(service, reply), Some(RESTART_CALL_TIMEOUT)).await;
        match call {
            Ok(ractor::rpc::CallResult::Success(true)) => Ok(()),
            Ok(ractor::rpc::CallResult::Success(false)) => Err(ControlError::UnknownService(service)),
            Ok(ractor::rpc::CallResult::Timeout) => Err(ControlError::Unreachable("timed out".into())),
            Ok(ractor::rpc::CallResult::SenderError) => Err(ControlError::Unreachable("no reply".into())),
            Err(e) => Err(ControlError::Unreachable(e.to_string())),
        }
    }

    /// A round trip through `service`'s core mailbox within `timeout` (its liveness).
    pub async fn ping(&self, service: ServiceId, timeout: Duration) -> Result<(), String> {
        let core = self.inner.cores.read().unwrap_or_else(|e| e.into_inner()).get(&service).cloned();
        let core = core.ok_or_else(|| ControlError::NotAttached.to_string())?;
        core.ping(RequestId::generate(), timeout).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Holds every service of this node not ready, with the reason `/ready` reports.
    pub fn hold_not_ready(&self, reason: String) {
        *self.inner.held.write().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Ends a hold; true when one was in place.
    pub fn release_not_ready(&self) -> bool {
        self.inner.held.write().unwrap_or_else(|e| e.into_inner()).take().is_some()
    }

    /// Why the node's services are held not ready, if they are.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.inner.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_before_attachment_are_refused_and_holds_toggle() {
        let control = NodeControl::default();
        assert_eq!(control.restart(ServiceId::Dedup).await, Err(ControlError::NotAttached));
        assert!(control.ping(ServiceId::Dedup, Duration::from_millis(10)).await.is_err());
        assert!(control.services().is_empty());
        // (action, expected reason afterwards, expected release result)
        assert_eq!(control.not_ready_reason(), None);
        control.hold_not_ready("remediation rule r".into());
        assert_eq!(control.clone().not_ready_reason().as_deref(), Some("remediation rule r"));
        assert!(control.release_not_ready());
        assert!(!control.release_not_ready());
        assert_eq!(control.not_ready_reason(), None);
    }
}
