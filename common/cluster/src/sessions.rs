//! ractor_cluster sessions: the `NodeServer` on the cluster port (TCP, cookie-authenticated,
//! isolated mode — we decide whom to connect to from the gossip view, because ractor_cluster
//! neither detects hung peers nor reconnects), the subscription that turns its session events
//! into membership messages, and dialing.

use std::net::{IpAddr, SocketAddr};

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tracing::{debug, info, warn};

use crate::membership::ClusterMsg;
use crate::wire::MAX_FRAME_BYTES;

/// Starts the node server listening on `bind:port`.
pub async fn start_server(
    bind: IpAddr,
    port: u16,
    cookie: String,
    name: String,
) -> Result<ActorRef<NodeServerMessage>, String> {
    // ractor_cluster binds inside its listener actor; check first so a taken port is a clear
    // start-up error naming the address.
    let addr = SocketAddr::new(bind, port);
    std::net::TcpListener::bind(addr).map_err(|e| {
        let why =
            if e.kind() == std::io::ErrorKind::AddrInUse { "address already in use".into() } else { e.to_string() };
        format!("cannot listen for cluster sessions on {addr} (tcp): {why}")
    })?;
    let server = NodeServer::new(port, cookie, name, bind.to_string(), None, Some(NodeConnectionMode::Isolated))
        .with_listen_addr(bind)
        .with_max_inbound_frame_size(MAX_FRAME_BYTES as u64 + 64 * 1024);
    let (server, _) =
        Actor::spawn(None, server, ()).await.map_err(|e| format!("cannot start the cluster session server: {e}"))?;
    Ok(server)
}

/// Forwards session events of the node server to the membership actor.
pub struct Subscription {
    pub actor: ActorRef<ClusterMsg>,
}

/// The member name of a session's peer: ractor_cluster names nodes `name@hostname`.
fn peer(ses: &NodeServerSessionInformation) -> Option<String> {
    let full = &ses.peer_name.as_ref()?.name;
    Some(full.rsplit_once('@').map_or(full.as_str(), |(name, _)| name).to_owned())
}

impl NodeEventSubscription for Subscription {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        debug!(peer_addr = %ses.peer_addr, inbound = ses.is_server, "cluster session opened");
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        match peer(&ses) {
            Some(name) => {
                let _ = self.actor.cast(ClusterMsg::Session { peer: name, session: ses.actor.get_id(), ready: false });
            }
            None => warn!(
                peer_addr = %ses.peer_addr,
                inbound = ses.is_server,
                "cluster session closed before authenticating (wrong LOOM_COOKIE on one side, or not a Loom node)"
            ),
        }
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        debug!(peer = ?peer(&ses), peer_addr = %ses.peer_addr, "cluster session authenticated");
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(name) = peer(&ses) {
            info!(peer = %name, peer_addr = %ses.peer_addr, inbound = ses.is_server, "cluster session ready");
            let _ = self.actor.cast(ClusterMsg::Session { peer: name, session: ses.actor.get_id(), ready: true });
        }
    }
}

/// Opens a session to `addr` in the background; the outcome arrives as session events.
pub fn dial(server: ActorRef<NodeServerMessage>, addr: SocketAddr) {
    tokio::spawn(async move {
        let connect = ractor_cluster::client_connect(&server, addr);
        match tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(%addr, error = ?e, "cluster dial failed"),
            Err(_) => debug!(%addr, "cluster dial timed out"),
        }
    });
}
