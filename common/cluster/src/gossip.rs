//! The gossip plumbing around foca: the UDP receive task (opens sealed datagrams, counts and
//! logs rejections, answers a wrong-cookie sender with a notice), the timer scheduler (delivers
//! foca's timers to the membership actor in deadline order), and the custom broadcast that
//! carries each node's readiness.

use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loom_telemetry::names;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::identity::NodeId;
use crate::membership::ClusterMsg;
use crate::seal::{self, Opener, REJECT_NOTICE, Rejection};

/// Largest datagram read; foca packets are at most `max_packet_size` (1400) plus the seal.
const RECV_BUF: usize = 2048;
/// One log line (and one notice) per offending source per this interval.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Reads datagrams forever, forwarding accepted ones to the membership actor.
pub async fn receive(socket: Arc<UdpSocket>, mut opener: Opener, actor: ActorRef<ClusterMsg>) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut last_logged = RejectLog::default();
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP port-unreachable from a stopped peer surfaces here on Linux; keep going.
                tracing::debug!(error = %e, "gossip receive error");
                continue;
            }
        };
        let datagram = &buf[..len];
        if datagram == REJECT_NOTICE {
            if last_logged.should_log(from) {
                error!(
                    peer = %from,
                    "the cluster member at this address rejected our gossip: authentication failed; LOOM_COOKIE \
                     must be the same on every node, this node stays out until it is"
                );
            }
            continue;
        }
        match opener.open(seal::now_ms(), datagram) {
            Ok(opened) => {
                metrics::counter!(names::CLUSTER_DATAGRAMS, "outcome" => "accepted").increment(1);
                let msg = ClusterMsg::Datagram { sender: opened.sender.to_owned(), payload: opened.payload.to_vec() };
                if actor.cast(msg).is_err() {
                    return;
                }
            }
            Err(why) => {
                metrics::counter!(names::CLUSTER_DATAGRAMS, "outcome" => why.label()).increment(1);
                if last_logged.should_log(from) {
                    warn!(
                        peer = %from,
                        reason = why.label(),
                        "gossip datagram rejected{}",
                        match why {
                            Rejection::BadTag => ": authentication failed (a node with a different LOOM_COOKIE?)",
                            Rejection::Version => {
                                ": sent by a node of another Loom release whose gossip this one cannot read; \
                                 upgrade every node (stop all, then start all) — releases do not mix in one cluster"
                            }
                            _ => "",
                        }
                    );
                    if why == Rejection::BadTag {
                        let _ = socket.try_send_to(REJECT_NOTICE, from);
                    }
                }
            }
        }
    }
}

/// Rate limit of rejection logs and notices: one per source IP per [`REJECT_LOG_EVERY`], and
/// at most [`REJECT_LOG_BUDGET`] in all per interval, so a flood from many (spoofed) sources
/// costs neither log volume nor a growing map.
#[derive(Default)]
struct RejectLog {
    by_ip: HashMap<IpAddr, Instant>,
    window: Option<Instant>,
    in_window: usize,
}

const REJECT_LOG_BUDGET: usize = 50;
const REJECT_LOG_SOURCES: usize = 4096;

impl RejectLog {
    fn should_log(&mut self, from: SocketAddr) -> bool {
        if self.window.is_none_or(|w| w.elapsed() >= REJECT_LOG_EVERY) {
            self.window = Some(Instant::now());
            self.in_window = 0;
            self.by_ip.retain(|_, at| at.elapsed() < REJECT_LOG_EVERY);
        }
        if self.in_window >= REJECT_LOG_BUDGET
            || self.by_ip.get(&from.ip()).is_some_and(|at| at.elapsed() < REJECT_LOG_EVERY)
        {
            return false;
        }
        if self.by_ip.len() >= REJECT_LOG_SOURCES {
            self.by_ip.clear();
        }
        self.by_ip.insert(from.ip(), Instant::now());
        self.in_window += 1;
        true
    }
}

struct Due(Instant, u64, foca::Timer<NodeId>);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    // Reversed: the earliest deadline (then the earliest submitted) on top of the max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

/// Delivers foca timers at their deadlines, in order (foca relies on that ordering).
pub fn spawn_scheduler(actor: ActorRef<ClusterMsg>) -> mpsc::UnboundedSender<(Instant, foca::Timer<NodeId>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, foca::Timer<NodeId>)>();
    tokio::spawn(async move {
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next = queue.peek().map(|d: &Due| d.0);
            tokio::select! {
                got = rx.recv() => match got {
                    Some((at, timer)) => { seq += 1; queue.push(Due(at, seq, timer)); }
                    None => return,
                },
                _ = sleep_until(next) => {
                    let now = Instant::now();
                    while queue.peek().is_some_and(|d| d.0 <= now) {
                        let Due(_, _, timer) = queue.pop().expect("peeked");
                        if actor.cast(ClusterMsg::Timer(timer)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    tx
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A node's published status, spread as a foca custom broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub generation: u64,
    pub seq: u64,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusKey {
    name: String,
    generation: u64,
    seq: u64,
}

impl foca::Invalidates for StatusKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && (self.generation, self.seq) >= (other.generation, other.seq)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable status broadcast: {0}")]
pub struct StatusError(String);

/// Keeps the newest status per node; shared with the membership actor, which reads it after
/// each foca call.
#[derive(Clone, Default)]
pub struct Statuses {
    pub latest: Arc<Mutex<HashMap<String, Status>>>,
}

impl foca::BroadcastHandler<NodeId> for Statuses {
    type Key = StatusKey;
    type Error = StatusError;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&NodeId>) -> Result<Option<StatusKey>, StatusError> {
        let status: Status = postcard::from_bytes(data).map_err(|e| StatusError(e.to_string()))?;
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let newer = latest.get(&status.name).is_none_or(|s| (status.generation, status.seq) > (s.generation, s.seq));
        if !newer {
            return Ok(None);
        }
        let key = StatusKey { name: status.name.clone(), generation: status.generation, seq: status.seq };
        latest.insert(status.name.clone(), status);
        Ok(Some(key))
    }
}

impl Status {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_logs_are_bounded_per_ip_and_in_all() {
        let mut log = RejectLog::default();
        let at = |ip: u32, port: u16| SocketAddr::new(IpAddr::from(ip.to_be_bytes()), port);
        assert!(log.should_log(at(1, 1000)));
        // Another port of the same host is the same source.
        assert!(!log.should_log(at(1, 2000)));
        let logged = (2..200).filter(|ip| log.should_log(at(*ip, 1))).count();
        assert_eq!(logged, REJECT_LOG_BUDGET - 1);
        assert!(log.by_ip.len() <= REJECT_LOG_SOURCES);
    }
}
