//! The contract between the node and each service crate. A service crate exports one
//! [`ServiceDef`]: its id, version, the stores it depends on, and a `build` function that turns
//! a [`ServiceContext`] into its supervised children and its routes. Everything a service shares
//! with the others — typed actor handles with bounded mailboxes (`handle`), the core actor every
//! service runs (`core`), and the ops provider behind `/health`, `/ready`, `/metrics`, `/version`
//! (`ops`) — lives here, so service crates stay thin and never depend on each other.

pub mod book;
pub mod checks;
pub mod control;
pub mod core;
pub mod follow;
pub mod handle;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use loom_config::NodeConfig;
use loom_protocol::ServiceId;
use loom_storage::Stores;
use loom_supervisors::{ChildSpec, RestartPolicy, StatusBoard};

pub use checks::Checks;
pub use control::{ControlError, NodeControl};
pub use handle::{CallError, Handle, Mailbox};
pub use loom_storage::Dependency;
pub use ops::ServiceOps;

/// Facts about the running node every service may report.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub version: &'static str,
    pub commit: String,
    pub profile: &'static str,
}

/// What the node hands a service when building it. Cheap to clone.
#[derive(Clone)]
pub struct ServiceContext {
    pub id: ServiceId,
    pub node: Arc<NodeInfo>,
    pub config: Arc<NodeConfig>,
    pub stores: Stores,
    pub board: StatusBoard,
    /// True once the node starts shutting down: every service reports not-ready.
    pub draining: Arc<AtomicBool>,
    /// The cluster as seen from this node: membership, key ownership, keyed calls.
    pub cluster: loom_cluster::Cluster,
    /// Restart a service's tree, ping its core, hold the node not ready (used by remediation).
    pub control: NodeControl,
    /// Checks the services report about what they watch, read by the Health Aggregator.
    pub checks: Checks,
}

impl ServiceContext {
    /// The restart policy from `[supervision]`.
    pub fn restart_policy(&self) -> RestartPolicy {
        let s = &self.config.supervision;
        RestartPolicy {
            max_restarts: s.max_restarts,
            window: s.window.get(),
            backoff_initial: s.backoff_initial.get(),
            backoff_max: s.backoff_max.get(),
        }
    }
}

/// A supervised actor of a service: the typed handle in front of it (bounded, counted mailbox)
/// and the child spec that (re)starts it under the service supervisor. `make` builds the actor
/// and its arguments for each (re)start; the actor must call `Mailbox::handled` first thing in
/// `handle`.
pub fn actor_child<A, F>(ctx: &ServiceContext, name: &str, make: F) -> (Handle<A::Msg>, ChildSpec)
where
    A: ractor::Actor,
    F: Fn(Arc<Mailbox>) -> (A, A::Arguments) + Send + Sync + 'static,
{
    use futures::FutureExt;
    let mailbox = Mailbox::new(ctx.id, name, ctx.config.supervision.mailbox_capacity);
    let handle = Handle::new(mailbox.clone());
    let attach = handle.clone();
    let make = Arc::new(make);
    let spec = ChildSpec {
        service: ctx.id,
        actor: name.into(),
        policy: ctx.restart_policy(),
        start: Arc::new(move |supervisor| {
            let (attach, mailbox, make) = (attach.clone(), mailbox.clone(), make.clone());
            async move {
                let (actor, args) = make(mailbox);
                let (actor, _) = ractor::Actor::spawn_linked(None, actor, args, supervisor).await?;
                attach.attach(actor.clone());
                Ok(actor.get_cell())
            }
            .boxed()
        }),
    };
    (handle, spec)
}

/// What a service crate exports.
pub struct ServiceDef {
    pub id: ServiceId,
    /// The service crate's version (`env!("CARGO_PKG_VERSION")` of that crate).
    pub version: &'static str,
    /// One paragraph on what the service does (the crate's `CARGO_PKG_DESCRIPTION`): the
    /// introduction of its OpenAPI document.
    pub description: &'static str,
    /// Stores the service uses; `/health` and `/ready` check exactly these.
    pub dependencies: &'static [Dependency],
    /// Stores the service watches without needing them: in `/health`, not in `/ready`.
    pub observes: &'static [Dependency],
    /// Which requests write cluster-wide state; refused with 409 `cluster_store_required` on a
    /// node clustered without a shared database (see ARCHITECTURE.md, "one truth").
    pub cluster_wide: loom_http::ClusterWide,
    /// Where the service keeps its cluster-wide state (the database unless it says otherwise):
    /// the store whose being node-local makes `cluster_wide` writes answer 409.
    pub state_in: Dependency,
    /// The port's request-body limit when the service needs more than `http.body_limit_bytes`
    /// (uploads); the service then bounds its other routes itself.
    pub max_body: fn(&NodeConfig) -> Option<usize>,
    pub build: fn(&ServiceContext) -> ServiceParts,
}

impl ServiceDef {
    /// A service whose features are not built yet: its core actor under its supervisor and the
    /// ops routes, no stores. Pass the service crate's `env!("CARGO_PKG_VERSION")`.
    pub fn foundation_only(id: ServiceId, version: &'static str) -> ServiceDef {
        ServiceDef {
            id,
            version,
            description: "",
            dependencies: &[],
            observes: &[],
            cluster_wide: |_, _| false,
            state_in: Dependency::Database,
            max_body: |_| None,
            build: ServiceParts::foundation_only,
        }
    }
}

/// A readiness/health check a service adds beyond its stores (a Kafka broker, say). It must be
/// cheap and non-blocking: return the state a background task keeps current.
pub type Probe = Arc<dyn Fn() -> loom_protocol::CheckResult + Send + Sync>;

/// A built service: the children its supervisor starts (in order), its HTTP routes, the
/// handle of its core actor (probed by `/health` and `/ready`), and extra probes (a failing
/// probe makes the service not ready).
pub struct ServiceParts {
    pub children: Vec<ChildSpec>,
    /// The service's routes, each registered with its OpenAPI operation (`routes!`).
    pub routes: loom_http::ApiRouter,
    pub core: core::CoreHandle,
    pub probes: Vec<Probe>,
}

impl ServiceParts {
    /// A service whose features are not built yet: its core actor and no routes beyond the ops
    /// routes. Unknown paths answer 404 problem+json.
    pub fn foundation_only(ctx: &ServiceContext) -> ServiceParts {
        let (core, spec) = core::core_child(ctx);
        ServiceParts { children: vec![spec], routes: loom_http::ApiRouter::new(), core, probes: Vec::new() }
    }
}
