//! Operational messages every service actor understands: a liveness ping through the mailbox and
//! fault injection for chaos tests (only reachable when the node enables it).

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::RequestId;

/// A fault to inject into an actor, to prove supervision and shutdown behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// Panic inside the message handler.
    Panic,
    /// Return an error from the message handler.
    Error,
    /// Hold the actor busy for `ms` milliseconds before replying (a slow actor).
    Delay { ms: u64 },
}

#[derive(RactorMessage)]
pub enum OpsMsg {
    /// Round trip through the mailbox; replies with the number of messages handled so far.
    Ping(RequestId, RpcReplyPort<u64>),
    /// Inject a fault; the reply comes only for faults that leave the actor running.
    Inject(RequestId, Fault, RpcReplyPort<()>),
}
