//! `POST /monitors/{id}/records` on any node goes to the monitor's owner (rendezvous hash of
//! the monitor id over the `up` members), where one [`IngestActor`] absorbs a batch at a time
//! into this node's REST part (`rest@<node>`): the touched windows and the part's freshness
//! state are written in one transaction before the answer, so an answered batch is durable and
//! counted once. A part has one writer even when ownership moves or unclustered nodes share a
//! database: every node writes its own part, and reports merge all of them.

use std::sync::Arc;
use std::time::Duration;

use loom_cluster::{Cluster, Keyed};
use loom_protocol::ServiceId;
use loom_service::{Handle, Mailbox};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use serde_json::{Value, json};

use crate::error::QualityError;
use crate::ingest::{self, Batch, Freshness};
use crate::profile::WindowProfile;
use crate::store::Store;

/// Records per request.
pub const MAX_RECORDS: usize = 10_000;

pub type Book = loom_service::book::Book<crate::monitor::MonitorSpec>;

#[derive(RactorMessage)]
pub enum IngestMsg {
    Records { monitor: String, records: Vec<Value>, reply: RpcReplyPort<Result<Value, QualityError>> },
}

pub struct IngestActor {
    pub mailbox: Arc<Mailbox>,
}

#[derive(Clone)]
pub struct Deps {
    pub book: Book,
    pub store: Store,
    /// This node's REST part, `rest@<node name>`.
    pub part: String,
    pub schemas: Arc<loom_schemas::SchemaCache>,
}

#[ractor::async_trait]
impl Actor for IngestActor {
    type Msg = IngestMsg;
    type State = Deps;
    type Arguments = Deps;

    async fn pre_start(&self, _: ActorRef<IngestMsg>, deps: Deps) -> Result<Deps, ActorProcessingErr> {
        Ok(deps)
    }

    async fn handle(&self, _: ActorRef<IngestMsg>, msg: IngestMsg, deps: &mut Deps) -> Result<(), ActorProcessingErr> {
        let IngestMsg::Records { monitor, records, reply } = msg;
        self.mailbox.handled();
        let _ = reply.send(absorb(deps, &monitor, records).await);
        Ok(())
    }
}

/// Merges a stored profile (if any) with a batch's, as stored bytes.
pub fn merge_bytes(old: Option<&[u8]>, batch: &[u8]) -> Vec<u8> {
    let batch = WindowProfile::from_bytes(batch).unwrap_or_default();
    match old.map(WindowProfile::from_bytes) {
        Some(Ok(mut p)) => {
            p.merge(&batch);
            p.to_bytes()
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "a stored quality window is unreadable; starting it again");
            batch.to_bytes()
        }
        None => batch.to_bytes(),
    }
}

async fn absorb(deps: &Deps, id: &str, records: Vec<Value>) -> Result<Value, QualityError> {
    let entry = deps.book.get_fresh(id).await?.ok_or_else(|| QualityError::NotFound(format!("monitor '{id}'")))?;
    let monitor = &entry.compiled;
    let mut fresh = match deps.store.part(id, &deps.part).await? {
        Some((_, state)) => Freshness::from_bytes(&state),
        None => Freshness::default(),
    };
    let now = loom_storage::documents::now_ms();
    let mut batch = Batch::default();
    let records: Vec<(Value, Option<i64>)> = records.into_iter().map(|v| (v, None)).collect();
    let (schema, schema_problem) = crate::schema_of(&deps.schemas, monitor).await;
    ingest::absorb(monitor, schema.as_deref(), &records, now, &mut fresh, &mut batch);
    let windows: Vec<(String, i64, Vec<u8>)> =
        batch.windows.iter().map(|((g, s), p)| (g.clone(), *s, p.to_bytes())).collect();
    deps.store.apply(id, &deps.part, windows, merge_bytes, -1, fresh.to_bytes()).await?;
    crate::metrics::absorbed(id, &batch);
    let mut answer = batch.answer();
    answer["monitor"] = json!(id);
    answer["version"] = json!(entry.version);
    if let Some(p) = schema_problem {
        answer["schema"] = json!({"unavailable": p});
    }
    Ok(answer)
}

/// The typed client of REST ingest: every call runs on the monitor's owner.
#[derive(Clone)]
pub struct Ingest {
    client: Keyed<Vec<Value>, Value>,
}

pub fn serve(cluster: &Cluster, actor: Handle<IngestMsg>, timeout: Duration) -> Ingest {
    let client = cluster.serve_keyed(ServiceId::DataQuality, move |monitor: String, records: Vec<Value>| {
        let actor = actor.clone();
        async move {
            let out = actor
                .call(|reply| IngestMsg::Records { monitor, records, reply }, timeout)
                .await
                .map_err(|e| QualityError::from(e).to_wire())?;
            out.map_err(|e| e.to_wire())
        }
    });
    Ingest { client }
}

impl Ingest {
    pub async fn call(&self, monitor: &str, records: Vec<Value>) -> Result<Value, QualityError> {
        self.client.call(monitor, records).await.map(|s| s.value).map_err(QualityError::from_call)
    }
}
