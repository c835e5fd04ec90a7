//! The core actor every service runs: the anchor of its tree that `/ready` and `/health` probe
//! through the mailbox, and the target of fault injection. Services add their own actors beside
//! it as their features are built.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use loom_protocol::{Fault, OpsMsg, RequestId, ServiceId};
use loom_supervisors::ChildSpec;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{info, warn};

use crate::{CallError, Handle, Mailbox, ServiceContext};

/// Longest delay a `delay` fault may hold the actor.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

pub struct CoreActor {
    service: ServiceId,
    mailbox: Arc<Mailbox>,
}

pub struct CoreState {
    handled: u64,
}

#[ractor::async_trait]
impl Actor for CoreActor {
    type Msg = OpsMsg;
    type State = CoreState;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<OpsMsg>, _: ()) -> Result<CoreState, ActorProcessingErr> {
        Ok(CoreState { handled: 0 })
    }

    async fn handle(&self, _: ActorRef<OpsMsg>, msg: OpsMsg, state: &mut CoreState) -> Result<(), ActorProcessingErr> {
        self.mailbox.handled();
        state.handled += 1;
        match msg {
            OpsMsg::Ping(_, reply) => {
                let _ = reply.send(state.handled);
                Ok(())
            }
            OpsMsg::Inject(request_id, fault, reply) => self.inject(request_id, fault, reply).await,
        }
    }
}

impl CoreActor {
    async fn inject(
        &self,
        request_id: RequestId,
        fault: Fault,
        reply: ractor::RpcReplyPort<()>,
    ) -> Result<(), ActorProcessingErr> {
        warn!(service = %self.service, %request_id, ?fault, "fault injected");
        match fault {
            Fault::Panic => panic!("fault injected: panic (request {request_id})"),
            Fault::Error => Err(format!("fault injected: error (request {request_id})").into()),
            Fault::Delay { ms } => {
                tokio::time::sleep(Duration::from_millis(ms).min(MAX_FAULT_DELAY)).await;
                info!(service = %self.service, %request_id, ms, "delay fault done");
                let _ = reply.send(());
                Ok(())
            }
        }
    }
}

/// Typed handle of a service's core actor.
#[derive(Clone)]
pub struct CoreHandle {
    inner: Handle<OpsMsg>,
}

impl CoreHandle {
    /// Round trip through the mailbox; returns how many messages the actor has handled.
    pub async fn ping(&self, request_id: RequestId, timeout: Duration) -> Result<u64, CallError> {
        self.inner.call(|reply| OpsMsg::Ping(request_id, reply), timeout).await
    }

    /// Injects a fault. Panic and error faults end the actor: success means it was delivered.
    pub async fn inject(&self, request_id: RequestId, fault: Fault) -> Result<(), CallError> {
        match fault {
            Fault::Delay { ms } => {
                let timeout = Duration::from_millis(ms).min(MAX_FAULT_DELAY) + Duration::from_secs(5);
                self.inner.call(|reply| OpsMsg::Inject(request_id, fault, reply), timeout).await
            }
            Fault::Panic | Fault::Error => {
                let (reply, _ignored) = ractor::concurrency::oneshot();
                self.inner.cast(OpsMsg::Inject(request_id, fault, reply.into()))
            }
        }
    }

    pub fn mailbox(&self) -> &Arc<Mailbox> {
        self.inner.mailbox()
    }
}

/// The core actor's handle and the child spec that (re)starts it under the service supervisor.
pub fn core_child(ctx: &ServiceContext) -> (CoreHandle, ChildSpec) {
    let service = ctx.id;
    let mailbox = Mailbox::new(service, "core", ctx.config.supervision.mailbox_capacity);
    let handle = Handle::new(mailbox.clone());
    let attach = handle.clone();
    let spec = ChildSpec {
        service,
        actor: "core".into(),
        policy: ctx.restart_policy(),
        start: Arc::new(move |supervisor| {
            let (attach, mailbox) = (attach.clone(), mailbox.clone());
            async move {
                let (actor, _) = Actor::spawn_linked(None, CoreActor { service, mailbox }, (), supervisor).await?;
                attach.attach(actor.clone());
                Ok(actor.get_cell())
            }
            .boxed()
        }),
    };
    (CoreHandle { inner: handle }, spec)
}
