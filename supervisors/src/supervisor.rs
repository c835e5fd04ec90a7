//! The supervisor actor: starts its children in order, restarts them by policy, escalates when a
//! budget is spent, and stops them in reverse order on shutdown. The same actor supervises a
//! service's actors and, as the root, the service supervisors themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use loom_protocol::ServiceId;
use loom_telemetry::names;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use tracing::{error, info, warn};

use crate::{ChildState, Decision, RestartBudget, RestartPolicy, StatusBoard};

/// Starts one child linked to the given supervisor and returns its cell. Called again for every
/// restart, so it must build fresh state each time.
pub type StartFn = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// One supervised child.
#[derive(Clone)]
pub struct ChildSpec {
    /// The service the child belongs to (metrics and status are kept per service).
    pub service: ServiceId,
    /// The child's name within its service (`core`, `supervisor`, …).
    pub actor: String,
    pub policy: RestartPolicy,
    pub start: StartFn,
}

pub struct SupervisorArgs {
    /// For logs: `node` for the root, the service name for a service supervisor.
    pub label: String,
    pub children: Vec<ChildSpec>,
    pub board: StatusBoard,
    /// How long each child gets to stop during shutdown or escalation.
    pub stop_timeout: Duration,
}

#[derive(RactorMessage)]
pub enum SupervisorMsg {
    /// Internal: the backoff of child `index` has elapsed.
    StartChild { index: usize, generation: u64 },
    /// Restart a child now (remediation); replies false when no child has that name.
    RestartChild(String, ractor::RpcReplyPort<bool>),
    /// Restart the running children of one service now (sent to the root: that service's whole
    /// actor tree); replies false when no running child belongs to it. The restart goes through
    /// the child's policy like any other stop: it counts against its budget and waits its backoff.
    RestartService(ServiceId, ractor::RpcReplyPort<bool>),
}

pub struct Supervisor;

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    budget: RestartBudget,
    /// Bumped on every failure so a stale scheduled start is ignored.
    generation: u64,
}

pub struct State {
    label: String,
    children: Vec<Child>,
    board: StatusBoard,
    stop_timeout: Duration,
    stopping: bool,
}

#[ractor::async_trait]
impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = State;
    type Arguments = SupervisorArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: SupervisorArgs) -> Result<State, ActorProcessingErr> {
        let mut state = State {
            label: args.label,
            children: args
                .children
                .into_iter()
                .map(|spec| Child { budget: RestartBudget::new(spec.policy), spec, cell: None, generation: 0 })
                .collect(),
            board: args.board,
            stop_timeout: args.stop_timeout,
            stopping: false,
        };
        for index in 0..state.children.len() {
            let spec = state.children[index].spec.clone();
            state.board.set_state(spec.service, &spec.actor, ChildState::Starting);
            match (spec.start)(myself.get_cell()).await {
                Ok(cell) => {
                    state.children[index].cell = Some(cell);
                    state.board.set_state(spec.service, &spec.actor, ChildState::Running);
                }
                Err(e) => {
                    state.board.set_state(spec.service, &spec.actor, ChildState::Failed);
                    stop_children(&mut state).await;
                    return Err(format!("{} {} failed to start: {e}", spec.service, spec.actor).into());
                }
            }
        }
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        stop_children(state).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild { index, generation } => start_child(&myself, state, index, generation).await,
            SupervisorMsg::RestartChild(actor, reply) => {
                let found = state.children.iter().position(|c| c.spec.actor == actor);
                if let Some(index) = found
                    && let Some(cell) = state.children[index].cell.clone()
                {
                    info!(supervisor = %state.label, actor, "restart requested");
                    // Stopping it produces a termination event, which restarts it by policy.
                    cell.stop(Some("restart requested".into()));
                }
                let _ = reply.send(found.is_some());
                Ok(())
            }
            SupervisorMsg::RestartService(service, reply) => {
                let mut found = false;
                for child in state.children.iter().filter(|c| c.spec.service == service) {
                    if let Some(cell) = &child.cell {
                        info!(supervisor = %state.label, %service, actor = child.spec.actor, "restart requested");
                        cell.stop(Some("restart requested".into()));
                        found = true;
                    }
                }
                let _ = reply.send(found);
                Ok(())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped without a reason".into()))
            }
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(index) =
            state.children.iter().position(|c| c.cell.as_ref().map(ActorCell::get_id) == Some(cell.get_id()))
        else {
            return Ok(());
        };
        on_child_down(&myself, state, index, &reason).await
    }
}

/// A child went down: record it and restart it after its backoff, or escalate.
async fn on_child_down(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut State,
    index: usize,
    reason: &str,
) -> Result<(), ActorProcessingErr> {
    let child = &mut state.children[index];
    child.cell = None;
    child.generation += 1;
    let (service, actor) = (child.spec.service, child.spec.actor.clone());
    state.board.record_failure(service, &actor, reason);
    match child.budget.on_failure(Instant::now()) {
        Decision::Restart { delay } => {
            warn!(supervisor = %state.label, %service, actor, reason, delay_ms = delay.as_millis() as u64, "child down, restarting");
            state.board.set_state(service, &actor, ChildState::Restarting);
            let generation = child.generation;
            myself.send_after(delay, move || SupervisorMsg::StartChild { index, generation });
            Ok(())
        }
        Decision::Escalate { restarts_in_window } => {
            error!(supervisor = %state.label, %service, actor, reason, restarts_in_window, "restart budget spent, escalating");
            state.board.set_state(service, &actor, ChildState::Failed);
            metrics::counter!(names::SUPERVISOR_ESCALATIONS, "service" => service.name(), "actor" => actor.clone())
                .increment(1);
            stop_children(state).await;
            Err(format!("{service} {actor} failed {} times within its window (last: {reason})", restarts_in_window + 1)
                .into())
        }
    }
}

async fn start_child(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut State,
    index: usize,
    generation: u64,
) -> Result<(), ActorProcessingErr> {
    let Some(child) = state.children.get(index) else { return Ok(()) };
    if state.stopping || child.generation != generation || child.cell.is_some() {
        return Ok(());
    }
    let spec = child.spec.clone();
    state.board.set_state(spec.service, &spec.actor, ChildState::Starting);
    match (spec.start)(myself.get_cell()).await {
        Ok(cell) => {
            state.children[index].cell = Some(cell);
            state.board.record_restart(spec.service, &spec.actor);
            state.board.set_state(spec.service, &spec.actor, ChildState::Running);
            info!(supervisor = %state.label, service = %spec.service, actor = spec.actor, "child restarted");
            Ok(())
        }
        Err(e) => on_child_down(myself, state, index, &format!("restart failed: {e}")).await,
    }
}

/// Stops every running child in reverse start order, waiting for each (bounded).
async fn stop_children(state: &mut State) {
    state.stopping = true;
    for child in state.children.iter_mut().rev() {
        if let Some(cell) = child.cell.take() {
            if cell.stop_and_wait(Some("shutdown".into()), Some(state.stop_timeout)).await.is_err() {
                warn!(supervisor = %state.label, actor = child.spec.actor, "child did not stop in time, killing it");
                cell.kill();
            }
            if state
                .board
                .service(child.spec.service)
                .iter()
                .any(|(a, s)| *a == child.spec.actor && s.state != ChildState::Failed)
            {
                state.board.set_state(child.spec.service, &child.spec.actor, ChildState::Stopped);
            }
        }
    }
}
