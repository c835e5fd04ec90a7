//! The cluster layer: which nodes are members, which node owns a key, and how a typed call
//! reaches it.
//!
//! - **Membership** (`membership`, `gossip`, `seal`, `view`): SWIM via `foca` on UDP at the
//!   cluster port; every datagram is sealed with an HMAC of the cookie, timestamped and checked
//!   against replays, so nobody without the cookie can add a member or declare one down. Each
//!   node publishes its identity (name, address, version, services, a fresh generation) and its
//!   readiness.
//! - **Sessions** (`sessions`): a ractor_cluster `NodeServer` on the same port number over TCP
//!   (cookie-authenticated), with a session dialed to every member gossip reports alive and
//!   re-dialed after it drops.
//! - **Ownership** (`ring`): rendezvous hashing of a key over the `up` members hosting a service.
//! - **Calls** (`calls`, `wire`): `Keyed::call(key, request)` runs locally or on the owner —
//!   through the **data plane** (`dataplane`, `datawire`): one multiplexed, cookie-authenticated
//!   TCP connection per peer pair on `cluster.data_port`; the sessions carry the rest.
//! - **Topics** (`topics`): best-effort cluster-wide broadcasts (cache invalidation).
//!
//! A node without a cookie runs alone: the view holds only itself and every key is local.

mod calls;
pub mod counter;
mod dataplane;
pub mod datawire;
mod gossip;
mod identity;
mod membership;
pub mod ring;
pub mod seal;
mod sessions;
mod topics;
pub mod view;
pub mod wire;

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use loom_config::NodeConfig;
use loom_protocol::ServiceId;
use ractor::{Actor, ActorRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tracing::info;

pub use calls::{CallFailure, Keyed, Served};
pub use identity::NodeId;
pub use view::{Member, MemberChange, MemberState, View};
pub use wire::WireError;

use calls::{EndpointActor, Registry};
use membership::{ClusterMsg, MembershipActor, MembershipArgs};
use seal::{Opener, Sealer};

/// Datagrams remembered for replay protection (per node).
const REPLAY_CACHE: usize = 200_000;

/// The cluster as seen from this node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    view: watch::Receiver<Arc<View>>,
    events: broadcast::Sender<MemberChange>,
    membership: Option<ActorRef<ClusterMsg>>,
    registry: Registry,
    call_timeout: Duration,
    data: Option<Arc<dataplane::DataPlane>>,
    /// Becomes true if the membership actor stops (it is not restarted: the node must exit).
    stopped: watch::Receiver<bool>,
}

/// Turns the membership actor's join handle into a watchable flag.
fn watch_stop(done: tokio::task::JoinHandle<()>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = done.await;
        let _ = tx.send(true);
    });
    rx
}

impl Cluster {
    /// Starts the cluster layer for `config`: alone when no cookie is set, otherwise the gossip
    /// socket, the session server, the membership actor and this node's call endpoint.
    pub async fn start(config: &NodeConfig, version: &str, services: Vec<ServiceId>) -> Result<Cluster, String> {
        let c = &config.cluster;
        let bind = SocketAddr::new(config.node.bind_addr, c.port);
        let addr = match (&c.advertise_addr, c.cookie.is_some()) {
            (Some(host), true) => advertised(host, c.port).await?,
            _ => bind,
        };
        let mut me = NodeId {
            name: config.node.name.clone(),
            addr,
            data_port: 0,
            generation: identity::fresh_generation(),
            version: version.to_owned(),
            services,
        };
        let now = seal::now_ms();
        let (view_tx, view_rx) = watch::channel(Arc::new(view::Tracker::new(me.clone(), now).view()));
        let (events, _) = broadcast::channel(1024);
        let registry = Registry::default();
        let Some(cookie) = c.cookie.as_ref().map(|s| s.expose().to_owned()) else {
            info!("no cluster cookie: running as a single node without cluster listeners");
            let stopped = watch::channel(false).1;
            let inner = Inner {
                me,
                view: view_rx,
                events,
                membership: None,
                registry,
                call_timeout: c.call_timeout.get(),
                data: None,
                stopped,
            };
            return Ok(Cluster { inner: Arc::new(inner) });
        };

        let socket = std::net::UdpSocket::bind(bind).map_err(|e| {
            let why =
                if e.kind() == std::io::ErrorKind::AddrInUse { "address already in use".into() } else { e.to_string() };
            format!("cannot listen for cluster gossip on {bind} (udp): {why}")
        })?;
        socket.set_nonblocking(true).map_err(|e| format!("cluster gossip socket: {e}"))?;
        let socket = Arc::new(UdpSocket::from_std(socket).map_err(|e| format!("cluster gossip socket: {e}"))?);
        let server = sessions::start_server(config.node.bind_addr, c.port, cookie.clone(), me.name.clone()).await?;
        let data = if c.data_plane {
            let bind = SocketAddr::new(config.node.bind_addr, c.data_port);
            let plane = dataplane::DataPlane::start(bind, &cookie, &me.name, registry.clone()).await?;
            me.data_port = plane.addr().port();
            Some(plane)
        } else {
            None
        };

        let (endpoint, _) = Actor::spawn(None, EndpointActor, registry.clone())
            .await
            .map_err(|e| format!("cannot start the cluster endpoint: {e}"))?;
        ractor::pg::join(calls::endpoint_group(&me.name), vec![endpoint.get_cell()]);

        let args = MembershipArgs {
            me: me.clone(),
            socket: socket.clone(),
            sealer: Sealer::new(&cookie, &me.name),
            server,
            seeds: c.seeds.clone(),
            foca_config: foca_config(config),
            view: view_tx,
            events: events.clone(),
        };
        let (membership, membership_done) = Actor::spawn(None, MembershipActor, args)
            .await
            .map_err(|e| format!("cannot start cluster membership: {e}"))?;
        let stopped = self::watch_stop(membership_done);
        let opener = Opener::new(&cookie, c.max_clock_skew.get().as_millis() as u64, REPLAY_CACHE);
        tokio::spawn(gossip::receive(socket, opener, membership.clone()));
        info!(%addr, %bind, data_port = me.data_port, seeds = c.seeds.len(), generation = me.generation,
            "cluster listening (gossip udp, sessions tcp, data plane tcp)");
        let inner = Inner {
            me,
            view: view_rx,
            events,
            membership: Some(membership),
            registry,
            call_timeout: c.call_timeout.get(),
            data,
            stopped,
        };
        Ok(Cluster { inner: Arc::new(inner) })
    }

    /// Resolves if the membership actor stopped (a panic in it): the node cannot stay a member
    /// and should exit so its process supervisor restarts it. Never resolves for a lone node.
    pub async fn failed(&self) {
        let mut rx = self.inner.stopped.clone();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn node_name(&self) -> &str {
        &self.inner.me.name
    }

    pub fn is_clustered(&self) -> bool {
        self.inner.membership.is_some()
    }

    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// The data plane and the owner's data address, when both exist.
    pub(crate) fn data_route(&self, owner: &str) -> Option<(&dataplane::DataPlane, SocketAddr)> {
        let plane = self.inner.data.as_deref()?;
        let addr = self.inner.view.borrow().member(owner)?.data_addr?;
        Some((plane, addr))
    }

    /// The latest published view (states only; see [`Cluster::members`] for last-heard times).
    pub fn view(&self) -> Arc<View> {
        self.inner.view.borrow().clone()
    }

    /// A receiver that wakes on every membership change: the hand-off hook for stateful services.
    pub fn watch(&self) -> watch::Receiver<Arc<View>> {
        self.inner.view.clone()
    }

    /// Membership changes as events (for the health stream).
    pub fn events(&self) -> broadcast::Receiver<MemberChange> {
        self.inner.events.subscribe()
    }

    /// A fresh view including last-heard times.
    pub async fn members(&self) -> View {
        match &self.inner.membership {
            Some(actor) => match ractor::call_t!(actor, ClusterMsg::Members, 2000) {
                Ok(view) => view,
                Err(_) => (*self.view()).clone(),
            },
            None => (*self.view()).clone(),
        }
    }

    /// The node owning `key` of `service`, if any `up` member hosts it.
    pub fn owner(&self, service: ServiceId, key: &str) -> Option<String> {
        self.inner.view.borrow().owner(service, key).map(|m| m.name.clone())
    }

    /// Publishes this node's readiness to the cluster.
    pub fn set_ready(&self, ready: bool) {
        if let Some(actor) = &self.inner.membership {
            let _ = actor.cast(ClusterMsg::SetReady(ready));
        }
    }

    /// Tells the cluster this node is leaving (peers mark it down at once instead of timing out).
    pub async fn leave(&self) {
        if let Some(actor) = &self.inner.membership {
            let _ = ractor::call_t!(actor, ClusterMsg::Leave, 1000);
            // Give the leave notice a moment on the wire.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Subscribes this node to a cluster-wide broadcast topic.
    pub async fn subscribe(&self, topic: &str) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, String> {
        topics::subscribe(topic).await
    }

    /// Best-effort broadcast to every subscriber of `topic` (this node's included); returns how
    /// many subscribers it was sent to.
    pub fn publish(&self, topic: &str, bytes: &[u8]) -> usize {
        topics::publish(topic, bytes)
    }

    /// Serves keyed calls of `service` on this node with `handler`, and returns the typed client
    /// that routes each call to the key's owner.
    pub fn serve_keyed<Req, Resp, F, Fut>(&self, service: ServiceId, handler: F) -> Keyed<Req, Resp>
    where
        Req: Serialize + DeserializeOwned + Send + 'static,
        Resp: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(String, Req) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Resp, WireError>> + Send + 'static,
    {
        calls::serve_keyed(self, &self.inner.registry, service, "", handler)
    }

    /// Like [`Cluster::serve_keyed`] for a named endpoint of `service` beside its main one (a
    /// contract other services call, such as GDPR erasure). Keys are owned as for the service.
    pub fn serve_endpoint<Req, Resp, F, Fut>(
        &self,
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
        calls::serve_keyed(self, &self.inner.registry, service, endpoint, handler)
    }

    /// The typed client of another service's endpoint ("" for its main one): the caller needs
    /// only the request and reply types (from `loom-protocol`), never the serving crate.
    pub fn client<Req, Resp>(&self, service: ServiceId, endpoint: &'static str) -> Keyed<Req, Resp>
    where
        Req: Serialize + DeserializeOwned + Send + 'static,
        Resp: Serialize + DeserializeOwned + Send + 'static,
    {
        calls::client(self, &self.inner.registry, service, endpoint)
    }
}

/// The address peers reach this node at: `host` (a name or an IP) resolved once, on `port`.
async fn advertised(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cluster.advertise_addr `{host}` does not resolve: {e}"))?;
    found.next().ok_or_else(|| format!("cluster.advertise_addr `{host}` resolves to no address"))
}

/// foca's settings from `[cluster]`: LAN defaults, with the probe and suspicion timing made
/// configurable so detection is bounded (≈ probe_period + probe_timeout + suspect_timeout).
fn foca_config(config: &NodeConfig) -> foca::Config {
    let c = &config.cluster;
    let mut f = foca::Config::new_lan(NonZeroU32::new(16).expect("non-zero"));
    f.probe_period = c.probe_period.get();
    f.probe_rtt = c.probe_timeout.get();
    f.suspect_to_down_after = c.suspect_timeout.get();
    f.remove_down_after = Some(Duration::from_secs(60));
    f.periodic_announce =
        Some(foca::PeriodicParams { frequency: Duration::from_secs(10), num_members: NonZeroUsize::MIN });
    f.periodic_announce_to_down_members =
        Some(foca::PeriodicParams { frequency: Duration::from_secs(3), num_members: NonZeroUsize::new(2).expect("2") });
    f
}
