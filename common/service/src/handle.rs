//! Typed actor handles with bounded, measured mailboxes. A [`Handle`] follows its actor across
//! restarts (the supervisor's start function fills its slot), counts messages in flight (ractor
//! exposes no queue length), refuses new ones past the capacity, and turns every failure into a
//! [`CallError`] that maps to a problem response.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use loom_protocol::{ErrorKind, ServiceError, ServiceId};
use loom_telemetry::names;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

/// Counts messages sent to an actor and not yet handled, with a capacity.
pub struct Mailbox {
    depth: AtomicI64,
    capacity: usize,
    service: ServiceId,
    actor: String,
}

impl Mailbox {
    pub fn new(service: ServiceId, actor: &str, capacity: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox { depth: AtomicI64::new(0), capacity, service, actor: actor.to_owned() })
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed).max(0) as usize
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn publish(&self, depth: i64) {
        metrics::gauge!(names::ACTOR_MAILBOX_DEPTH, "service" => self.service.name(), "actor" => self.actor.clone())
            .set(depth.max(0) as f64);
    }

    /// Reserves a place for one message, or refuses when full.
    fn enter(&self) -> Result<(), CallError> {
        let depth = self.depth.fetch_add(1, Ordering::AcqRel) + 1;
        if depth as usize > self.capacity {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(names::ACTOR_MAILBOX_SHED, "service" => self.service.name(), "actor" => self.actor.clone())
                .increment(1);
            return Err(CallError::Overloaded { actor: self.actor.clone(), capacity: self.capacity });
        }
        self.publish(depth);
        Ok(())
    }

    /// Called by the actor when it takes a message (and by the handle when a send failed).
    pub fn handled(&self) {
        let depth = self.depth.fetch_sub(1, Ordering::AcqRel) - 1;
        if depth < 0 {
            self.depth.store(0, Ordering::Release);
        }
        self.publish(depth);
        metrics::counter!(names::ACTOR_MESSAGES, "service" => self.service.name(), "actor" => self.actor.clone())
            .increment(1);
    }

    /// A restarted actor starts with an empty queue.
    pub fn reset(&self) {
        self.depth.store(0, Ordering::Release);
        self.publish(0);
    }
}

/// Why a message did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("actor `{actor}` is restarting, retry shortly")]
    Unavailable { actor: String },
    #[error("actor `{actor}` has {capacity} messages queued, retry shortly")]
    Overloaded { actor: String, capacity: usize },
    #[error("actor `{actor}` did not answer within {ms} ms")]
    Timeout { actor: String, ms: u64 },
    #[error("actor `{actor}` stopped before answering")]
    Stopped { actor: String },
}

impl ServiceError for CallError {
    fn kind(&self) -> ErrorKind {
        match self {
            CallError::Unavailable { .. } | CallError::Overloaded { .. } | CallError::Stopped { .. } => {
                ErrorKind::Unavailable
            }
            CallError::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CallError::Unavailable { .. } => "actor_unavailable",
            CallError::Overloaded { .. } => "overloaded",
            CallError::Timeout { .. } => "actor_timeout",
            CallError::Stopped { .. } => "actor_stopped",
        }
    }
}

/// The typed handle of one supervised actor.
pub struct Handle<M: Message> {
    actor: String,
    slot: Arc<RwLock<Option<ActorRef<M>>>>,
    mailbox: Arc<Mailbox>,
}

impl<M: Message> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle { actor: self.actor.clone(), slot: self.slot.clone(), mailbox: self.mailbox.clone() }
    }
}

impl<M: Message> Handle<M> {
    pub fn new(mailbox: Arc<Mailbox>) -> Self {
        Handle { actor: mailbox.actor.clone(), slot: Arc::new(RwLock::new(None)), mailbox }
    }

    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// Points the handle at a freshly started actor (called by the child's start function).
    pub fn attach(&self, actor: ActorRef<M>) {
        self.mailbox.reset();
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(actor);
    }

    fn current(&self) -> Result<ActorRef<M>, CallError> {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            // Starting actors queue messages and handle them once started; only a stopping or
            // stopped actor is unavailable.
            Some(actor)
                if !matches!(
                    actor.get_status(),
                    ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped | ractor::ActorStatus::Draining
                ) =>
            {
                Ok(actor.clone())
            }
            _ => Err(CallError::Unavailable { actor: self.actor.clone() }),
        }
    }

    /// Sends a request and waits for its reply.
    pub async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let actor = self.current()?;
        self.mailbox.enter()?;
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => {
                Err(CallError::Timeout { actor: self.actor.clone(), ms: timeout.as_millis() as u64 })
            }
            Ok(CallResult::SenderError) => Err(CallError::Stopped { actor: self.actor.clone() }),
            Err(_) => {
                self.mailbox.handled();
                Err(CallError::Unavailable { actor: self.actor.clone() })
            }
        }
    }

    /// Sends without waiting for a reply.
    pub fn cast(&self, msg: M) -> Result<(), CallError> {
        let actor = self.current()?;
        self.mailbox.enter()?;
        actor.cast(msg).map_err(|_| {
            self.mailbox.handled();
            CallError::Unavailable { actor: self.actor.clone() }
        })
    }
}
