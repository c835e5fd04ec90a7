//! The writer actor: every registry write on this node (register, delete, config) goes through
//! its mailbox, one at a time, so a node never races itself; other nodes are kept consistent by
//! the database's unique constraints (see `store.rs`). Reads do not pass through it.

use std::sync::Arc;
use std::time::Duration;

use loom_service::{CallError, Handle, Mailbox};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::error::RegistryError;
use crate::model::SchemaRequest;
use crate::registry::{Registry, VersionSel};
use crate::store::ConfigField;

/// Bound on one write, queueing included.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

type Reply<T> = RpcReplyPort<Result<T, RegistryError>>;

#[derive(RactorMessage)]
pub enum WriteMsg {
    Register { subject: String, req: SchemaRequest, reply: Reply<i32> },
    DeleteSubject { subject: String, permanent: bool, reply: Reply<Vec<i32>> },
    DeleteVersion { subject: String, sel: VersionSel, permanent: bool, reply: Reply<i32> },
    SetConfig { subject: String, field: ConfigField, value: Option<String>, reply: Reply<()> },
}

pub struct WriterActor {
    pub mailbox: Arc<Mailbox>,
}

#[ractor::async_trait]
impl Actor for WriterActor {
    type Msg = WriteMsg;
    type State = Registry;
    type Arguments = Registry;

    async fn pre_start(&self, _: ActorRef<WriteMsg>, registry: Registry) -> Result<Registry, ActorProcessingErr> {
        Ok(registry)
    }

    async fn handle(
        &self,
        _: ActorRef<WriteMsg>,
        msg: WriteMsg,
        registry: &mut Registry,
    ) -> Result<(), ActorProcessingErr> {
        self.mailbox.handled();
        match msg {
            WriteMsg::Register { subject, req, reply } => {
                let _ = reply.send(registry.register(&subject, &req).await);
            }
            WriteMsg::DeleteSubject { subject, permanent, reply } => {
                let _ = reply.send(registry.delete_subject(&subject, permanent).await);
            }
            WriteMsg::DeleteVersion { subject, sel, permanent, reply } => {
                let _ = reply.send(registry.delete_version(&subject, sel, permanent).await);
            }
            WriteMsg::SetConfig { subject, field, value, reply } => {
                let _ = reply.send(registry.set_config(&subject, field, value).await);
            }
        }
        Ok(())
    }
}

/// Typed handle of the writer.
#[derive(Clone)]
pub struct Writer {
    pub handle: Handle<WriteMsg>,
}

fn unavailable(e: CallError) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl Writer {
    pub async fn register(&self, subject: String, req: SchemaRequest) -> Result<i32, RegistryError> {
        self.handle
            .call(|reply| WriteMsg::Register { subject, req, reply }, WRITE_TIMEOUT)
            .await
            .map_err(unavailable)?
    }

    pub async fn delete_subject(&self, subject: String, permanent: bool) -> Result<Vec<i32>, RegistryError> {
        self.handle
            .call(|reply| WriteMsg::DeleteSubject { subject, permanent, reply }, WRITE_TIMEOUT)
            .await
            .map_err(unavailable)?
    }

    pub async fn delete_version(
        &self,
        subject: String,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        self.handle
            .call(|reply| WriteMsg::DeleteVersion { subject, sel, permanent, reply }, WRITE_TIMEOUT)
            .await
            .map_err(unavailable)?
    }

    pub async fn set_config(
        &self,
        subject: String,
        field: ConfigField,
        value: Option<String>,
    ) -> Result<(), RegistryError> {
        self.handle
            .call(|reply| WriteMsg::SetConfig { subject, field, value, reply }, WRITE_TIMEOUT)
            .await
            .map_err(unavailable)?
    }
}
