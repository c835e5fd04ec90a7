//! Who a node is on the gossip layer: the foca [`Identity`](foca::Identity) every member carries.
//! It holds what never changes during a process's life — name, cluster address (UDP gossip and
//! TCP sessions share the port number), the data plane's port, version, the services it hosts — and a generation that
//! is fresh on every start (and bumped when foca renews a member declared down), so a restarted
//! node replaces its old incarnation at once instead of waiting for it to time out.

use std::fmt;
use std::net::SocketAddr;

use loom_protocol::ServiceId;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    /// The data plane's TCP port on `addr`'s IP (0: none, calls go through the sessions).
    pub data_port: u16,
    pub generation: u64,
    pub version: String,
    pub services: Vec<ServiceId>,
}

impl NodeId {
    /// A placeholder for a seed whose identity we do not know yet: foca only uses its address.
    pub fn seed(addr: SocketAddr) -> NodeId {
        NodeId { name: String::new(), addr, data_port: 0, generation: 0, version: String::new(), services: Vec::new() }
    }

    pub fn hosts(&self, service: ServiceId) -> bool {
        self.services.contains(&service)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    /// When peers declare this node down (it was stopped, partitioned or too slow), foca renews
    /// the identity and rejoins with it.
    fn renew(&self) -> Option<Self> {
        Some(NodeId { generation: self.generation.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Two identities on one address: the newer process (higher generation) wins.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// A generation for a process starting now: microseconds since the Unix epoch, so it grows
/// across restarts and leaves room for renewals in between.
pub fn fresh_generation() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(1)
}
