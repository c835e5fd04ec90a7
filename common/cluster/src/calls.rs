//! Location-transparent keyed calls. A service registers a typed handler with
//! [`Cluster::serve_keyed`](crate::Cluster::serve_keyed) and gets a [`Keyed`] client:
//! `call(key, request)` runs the handler in-process when this node owns the key, and otherwise
//! sends the encoded request to the owner over the data plane (`dataplane.rs`; or, for a peer
//! announcing none, to its endpoint actor in the process group `loom.endpoint.<node>` that
//! ractor_cluster syncs to every peer with a session), with a timeout, retrying once if ownership moved and the call certainly did not run (never a timed-out or
//! lost call, which may have been applied).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use loom_protocol::ServiceId;
use loom_telemetry::names;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::Cluster;
use crate::wire::{self, WireError};

/// Remote calls handled at once by one node's endpoint; beyond it callers get `overloaded`.
const MAX_INBOUND_CALLS: usize = 1024;

/// The only message type that crosses nodes: an encoded [`wire`] envelope and its reply.
#[derive(RactorClusterMessage)]
pub enum EndpointMsg {
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

pub fn endpoint_group(node: &str) -> String {
    format!("loom.endpoint.{node}")
}

type Erased =
    Arc<dyn Fn(String, serde_json::Value) -> BoxFuture<'static, Result<serde_json::Value, WireError>> + Send + Sync>;

/// Handlers this node serves, by service and endpoint name ("" is a service's main endpoint).
#[derive(Clone, Default)]
pub struct Registry {
    handlers: Arc<RwLock<HashMap<(ServiceId, String), Erased>>>,
}

impl Registry {
    fn insert(&self, service: ServiceId, endpoint: &str, handler: Erased) {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).insert((service, endpoint.to_owned()), handler);
    }

    fn get(&self, service: ServiceId, endpoint: &str) -> Option<Erased> {
        self.handlers.read().unwrap_or_else(|e| e.into_inner()).get(&(service, endpoint.to_owned())).cloned()
    }

    /// Serves one encoded call.
    pub(crate) async fn serve(&self, bytes: &[u8]) -> Vec<u8> {
        let outcome = async {
            let incoming = wire::decode_call(bytes)?;
            let handler = self.get(incoming.service, &incoming.endpoint).ok_or_else(|| {
                WireError::new(
                    "service_unavailable",
                    format!("{} does not serve keyed calls to `{}` here", incoming.service, incoming.endpoint),
                )
            })?;
            handler(incoming.key, incoming.body).await
        }
        .await;
        wire::encode_reply(outcome)
    }
}

pub struct EndpointActor;

pub struct EndpointState {
    registry: Registry,
    permits: Arc<Semaphore>,
}

#[ractor::async_trait]
impl Actor for EndpointActor {
    type Msg = EndpointMsg;
    type State = EndpointState;
    type Arguments = Registry;

    async fn pre_start(
        &self,
        _: ActorRef<EndpointMsg>,
        registry: Registry,
    ) -> Result<EndpointState, ActorProcessingErr> {
        Ok(EndpointState { registry, permits: Arc::new(Semaphore::new(MAX_INBOUND_CALLS)) })
    }

    async fn handle(
        &self,
        _: ActorRef<EndpointMsg>,
        msg: EndpointMsg,
        state: &mut EndpointState,
    ) -> Result<(), ActorProcessingErr> {
        let EndpointMsg::Call(bytes, reply) = msg;
        // Each call runs on its own task so a slow handler never blocks the endpoint.
        let Ok(permit) = state.permits.clone().try_acquire_owned() else {
            let _ =
                reply.send(wire::encode_reply(Err(WireError::new("overloaded", "too many cluster calls in flight"))));
            return Ok(());
        };
        let registry = state.registry.clone();
        tokio::spawn(async move {
            let out = registry.serve(&bytes).await;
            let _ = reply.send(out);
            drop(permit);
        });
        Ok(())
    }
}

/// Why a keyed call failed. `code()` is stable and maps to HTTP in one place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallFailure {
    #[error("no up member hosts {0}")]
    NoOwner(ServiceId),
    #[error("owner {owner} of the key is not reachable: {why}")]
    Unreachable { owner: String, why: String },
    #[error("owner {owner} did not answer within {timeout:?}")]
    Timeout { owner: String, timeout: Duration },
    /// The request was delivered but its session closed before the reply: it may have run.
    #[error("owner {owner} received the call but its session closed before the reply")]
    Lost { owner: String },
    #[error("{0}")]
    Remote(WireError),
}

impl CallFailure {
    pub fn code(&self) -> &str {
        match self {
            CallFailure::NoOwner(_) => "no_owner",
            CallFailure::Unreachable { .. } => "owner_unreachable",
            CallFailure::Timeout { .. } => "owner_timeout",
            CallFailure::Lost { .. } => "owner_lost",
            CallFailure::Remote(e) => &e.code,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            CallFailure::NoOwner(_) | CallFailure::Unreachable { .. } => 503,
            CallFailure::Timeout { .. } | CallFailure::Lost { .. } => 504,
            CallFailure::Remote(e) => match e.code.as_str() {
                "undecodable_request" | "unknown_service" | "unsupported_version" => 502,
                "overloaded" | "service_unavailable" => 503,
                _ => 500,
            },
        }
    }

    /// Worth one retry when ownership has moved meanwhile: only failures where the request
    /// certainly did not run (never sent, or refused before running). A timeout or a lost
    /// reply may have been applied, so retrying could apply it twice.
    fn transient(&self) -> bool {
        matches!(self, CallFailure::Unreachable { .. })
            || matches!(self, CallFailure::Remote(e) if e.code == "service_unavailable" || e.code == "overloaded")
    }
}

/// A reply and the node that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    pub value: T,
    pub node: String,
}

/// The typed client of a keyed service. Cheap to clone.
pub struct Keyed<Req, Resp> {
    pub(crate) service: ServiceId,
    pub(crate) endpoint: &'static str,
    pub(crate) cluster: Cluster,
    pub(crate) local: Arc<dyn Fn(String, Req) -> BoxFuture<'static, Result<Resp, WireError>> + Send + Sync>,
    pub(crate) _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for Keyed<Req, Resp> {
    fn clone(&self) -> Self {
        Keyed {
            service: self.service,
            endpoint: self.endpoint,
            cluster: self.cluster.clone(),
            local: self.local.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Keyed<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    /// Calls the owner of `key`: in-process when it is this node, else over the cluster.
    pub async fn call(&self, key: &str, request: Req) -> Result<Served<Resp>, CallFailure> {
        let started = Instant::now();
        let Some(owner) = self.cluster.owner(self.service, key) else {
            self.record("none", "no_owner", started);
            return Err(CallFailure::NoOwner(self.service));
        };
        if owner == self.cluster.node_name() {
            let out = self.local(key, request, owner).await;
            self.record("local", out.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code()), started);
            return out;
        }
        let bytes = wire::encode_call(self.service, self.endpoint, key, &request).map_err(CallFailure::Remote)?;
        let mut out = self.remote(&owner, bytes.clone()).await;
        if let Err(e) = &out {
            // Retry once when the failure coincides with an ownership change.
            match self.cluster.owner(self.service, key) {
                Some(now) if e.transient() && now != owner && now == self.cluster.node_name() => {
                    out = self.local(key, request, now).await;
                }
                Some(now) if e.transient() && now != owner => out = self.remote(&now, bytes).await,
                _ => {}
            }
        }
        self.record("remote", out.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code()), started);
        out
    }

    async fn local(&self, key: &str, request: Req, node: String) -> Result<Served<Resp>, CallFailure> {
        (self.local)(key.to_owned(), request).await.map(|value| Served { value, node }).map_err(CallFailure::Remote)
    }

    async fn remote(&self, owner: &str, bytes: Vec<u8>) -> Result<Served<Resp>, CallFailure> {
        let timeout = self.cluster.call_timeout();
        if let Some((plane, addr)) = self.cluster.data_route(owner) {
            let reply = plane.call(owner, addr, &bytes, timeout).await?;
            return wire::decode_reply::<Resp>(&reply)
                .map(|value| Served { value, node: owner.to_owned() })
                .map_err(CallFailure::Remote);
        }
        // A peer without a data plane: through its session's endpoint actor.
        let members = ractor::pg::get_members(&endpoint_group(owner));
        let Some(cell) = members.into_iter().next() else {
            return Err(CallFailure::Unreachable { owner: owner.to_owned(), why: "no session to it yet".into() });
        };
        let endpoint: ActorRef<EndpointMsg> = cell.into();
        let reply = endpoint
            .call(|port| EndpointMsg::Call(bytes, port), Some(timeout))
            .await
            .map_err(|e| CallFailure::Unreachable { owner: owner.to_owned(), why: e.to_string() })?;
        match reply {
            ractor::rpc::CallResult::Success(bytes) => wire::decode_reply::<Resp>(&bytes)
                .map(|value| Served { value, node: owner.to_owned() })
                .map_err(CallFailure::Remote),
            ractor::rpc::CallResult::Timeout => Err(CallFailure::Timeout { owner: owner.to_owned(), timeout }),
            ractor::rpc::CallResult::SenderError => Err(CallFailure::Lost { owner: owner.to_owned() }),
        }
    }

    fn record(&self, route: &'static str, outcome: &str, started: Instant) {
        let service = self.service.name();
        metrics::counter!(names::CLUSTER_CALLS, "service" => service, "route" => route, "outcome" => outcome.to_owned())
            .increment(1);
        metrics::histogram!(names::CLUSTER_CALL_DURATION, "service" => service, "route" => route)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Registers `handler` for `endpoint` of `service` and returns the typed client.
pub(crate) fn serve_keyed<Req, Resp, F, Fut>(
    cluster: &Cluster,
    registry: &Registry,
    service: ServiceId,
    endpoint: &'static str,
    handler: F,
) -> Keyed<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(String, Req) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, WireError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let local: Arc<dyn Fn(String, Req) -> BoxFuture<'static, Result<Resp, WireError>> + Send + Sync> = {
        let handler = handler.clone();
        Arc::new(move |key, req| Box::pin(handler(key, req)))
    };
    let erased: Erased = Arc::new(move |key, body| {
        let handler = handler.clone();
        Box::pin(async move {
            let req = wire::decode_body::<Req>(body)?;
            let resp = handler(key, req).await?;
            serde_json::to_value(resp).map_err(|e| WireError::new("unencodable_reply", e.to_string()))
        })
    });
    registry.insert(service, endpoint, erased);
    Keyed { service, endpoint, cluster: cluster.clone(), local, _types: PhantomData }
}

/// A client of `endpoint` of `service` for a caller that does not serve it (another service):
/// calls to a key this node owns go through the handler registered here, in its serde form.
pub(crate) fn client<Req, Resp>(
    cluster: &Cluster,
    registry: &Registry,
    service: ServiceId,
    endpoint: &'static str,
) -> Keyed<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    let registry = registry.clone();
    let local: Arc<dyn Fn(String, Req) -> BoxFuture<'static, Result<Resp, WireError>> + Send + Sync> =
        Arc::new(move |key, req| {
            let registry = registry.clone();
            Box::pin(async move {
                let handler = registry.get(service, endpoint).ok_or_else(|| {
                    WireError::new("service_unavailable", format!("{service} does not serve `{endpoint}` here"))
                })?;
                let body =
                    serde_json::to_value(req).map_err(|e| WireError::new("unencodable_request", e.to_string()))?;
                wire::decode_body::<Resp>(handler(key, body).await?)
            })
        });
    Keyed { service, endpoint, cluster: cluster.clone(), local, _types: PhantomData }
}
