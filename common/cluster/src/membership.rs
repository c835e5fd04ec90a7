//! The membership actor: owns the foca instance (SWIM: probes, indirect probes, suspicion,
//! dissemination), the membership [`Tracker`], and the ractor_cluster node server. Every input —
//! a datagram, a timer, a session event, a tick — is one message; after each, it flushes what
//! foca wants sent (sealed) and scheduled, folds foca's membership and the sessions into the
//! view, publishes the view when it changed, and dials members that have no session.
//!
//! ```text
//! udp receive task ──Datagram──▶ ┌──────────────────┐ ──sealed datagrams──▶ udp socket
//! scheduler task ────Timer─────▶ │ MembershipActor  │ ──watch<View>───────▶ Cluster handles
//! NodeServer events ─Session───▶ │  foca + Tracker  │ ──client_connect────▶ NodeServer
//! tick (250 ms) ─────Tick──────▶ └──────────────────┘ ──MemberChange──────▶ event subscribers
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec};
use loom_telemetry::names;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::NodeServerMessage;
use ractor_cluster_derive::RactorMessage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::gossip::{Status, Statuses};
use crate::identity::NodeId;
use crate::seal::{self, Sealer};
use crate::sessions;
use crate::view::{Gossip, MemberChange, MemberState, Tracker, View};

/// How often the actor re-checks sessions, seeds and readiness.
const TICK: Duration = Duration::from_millis(250);
/// Redial a member without a session at most this often.
const DIAL_EVERY: Duration = Duration::from_secs(1);
/// The lexically larger name waits this long for the smaller one to dial before dialing itself.
const DIAL_GRACE: Duration = Duration::from_secs(2);
/// Re-announce to the seeds this often while alone.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Re-publish our status this often so members that joined later learn it.
const STATUS_EVERY: Duration = Duration::from_secs(3);
/// Forget members that have been down this long.
const FORGET_DOWN_AFTER_MS: u64 = 10 * 60 * 1000;

#[derive(RactorMessage)]
pub enum ClusterMsg {
    Datagram {
        sender: String,
        payload: Vec<u8>,
    },
    Timer(foca::Timer<NodeId>),
    /// A session actor of `peer` became ready (`true`) or ended (`false`).
    Session {
        peer: String,
        session: ractor::ActorId,
        ready: bool,
    },
    AnnounceTo(SocketAddr),
    SetReady(bool),
    Tick,
    Members(RpcReplyPort<View>),
    Leave(RpcReplyPort<()>),
}

pub struct MembershipArgs {
    pub me: NodeId,
    pub socket: Arc<UdpSocket>,
    pub sealer: Sealer,
    pub server: ActorRef<NodeServerMessage>,
    pub seeds: Vec<String>,
    pub foca_config: foca::Config,
    pub view: watch::Sender<Arc<View>>,
    pub events: broadcast::Sender<MemberChange>,
}

pub struct MembershipActor;

pub struct MembershipState {
    me: NodeId,
    foca: Foca<NodeId, PostcardCodec, StdRng, Statuses>,
    runtime: AccumulatingRuntime<NodeId>,
    statuses: Statuses,
    tracker: Tracker,
    socket: Arc<UdpSocket>,
    sealer: Sealer,
    server: ActorRef<NodeServerMessage>,
    seeds: Vec<String>,
    scheduler: mpsc::UnboundedSender<(Instant, foca::Timer<NodeId>)>,
    view: watch::Sender<Arc<View>>,
    events: broadcast::Sender<MemberChange>,
    sessions: HashMap<String, HashSet<ractor::ActorId>>,
    dialed: HashMap<String, Instant>,
    alive_since: HashMap<String, Instant>,
    last_announce: Option<Instant>,
    last_status: Instant,
    status: Status,
    nonce: u64,
    left: bool,
}

#[ractor::async_trait]
impl Actor for MembershipActor {
    type Msg = ClusterMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: MembershipArgs,
    ) -> Result<MembershipState, ActorProcessingErr> {
        let statuses = Statuses::default();
        let rng = StdRng::from_rng(&mut rand::rng());
        let foca = Foca::with_custom_broadcast(args.me.clone(), args.foca_config, rng, PostcardCodec, statuses.clone());
        let scheduler = crate::gossip::spawn_scheduler(myself.clone());
        args.server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "loom-membership".into(),
                subscription: Box::new(sessions::Subscription { actor: myself.clone() }),
            })
            .map_err(|e| format!("cannot subscribe to session events: {e}"))?;
        myself.send_interval(TICK, || ClusterMsg::Tick);
        let status = Status { name: args.me.name.clone(), generation: args.me.generation, seq: 0, ready: false };
        let mut state = MembershipState {
            tracker: Tracker::new(args.me.clone(), seal::now_ms()),
            me: args.me,
            foca,
            runtime: AccumulatingRuntime::new(),
            statuses,
            socket: args.socket,
            sealer: args.sealer,
            server: args.server,
            seeds: args.seeds,
            scheduler,
            view: args.view,
            events: args.events,
            sessions: HashMap::new(),
            dialed: HashMap::new(),
            alive_since: HashMap::new(),
            last_announce: None,
            last_status: Instant::now(),
            status,
            nonce: rand::random(),
            left: false,
        };
        state.publish_status();
        state.flush();
        state.record_gauges(&state.tracker.view());
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        s: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Datagram { sender, payload } => {
                s.tracker.heard(&sender, seal::now_ms());
                if let Err(e) = s.foca.handle_data(&payload, &mut s.runtime) {
                    debug!(peer = %sender, error = %e, "foca refused a datagram");
                }
            }
            ClusterMsg::Timer(timer) => {
                if let Err(e) = s.foca.handle_timer(timer, &mut s.runtime) {
                    debug!(error = %e, "foca timer error");
                }
            }
            ClusterMsg::Session { peer, session, ready } => {
                // Simultaneous dials create duplicate sessions that ractor_cluster closes; a peer
                // counts as connected while any of its sessions is ready.
                let open = s.sessions.entry(peer.clone()).or_default();
                if ready {
                    open.insert(session);
                } else {
                    open.remove(&session);
                }
                let any = !open.is_empty();
                if !any {
                    s.sessions.remove(&peer);
                }
                let changes = s.tracker.session(&peer, any, seal::now_ms());
                s.report(changes);
            }
            ClusterMsg::AnnounceTo(addr) => {
                if addr != s.me.addr && s.foca.announce(NodeId::seed(addr), &mut s.runtime).is_err() {
                    debug!(%addr, "announce failed");
                }
            }
            ClusterMsg::SetReady(ready) => {
                if s.status.ready != ready {
                    s.status.ready = ready;
                    s.status.seq += 1;
                    s.publish_status();
                }
            }
            ClusterMsg::Tick => s.tick(&myself),
            ClusterMsg::Members(reply) => {
                let _ = reply.send(s.tracker.view());
            }
            ClusterMsg::Leave(reply) => {
                if !s.left {
                    s.left = true;
                    if let Err(e) = s.foca.leave_cluster(&mut s.runtime) {
                        debug!(error = %e, "leave failed");
                    }
                }
                s.flush();
                let _ = reply.send(());
                return Ok(());
            }
        }
        s.flush();
        Ok(())
    }
}

impl MembershipState {
    fn publish_status(&mut self) {
        self.last_status = Instant::now();
        self.tracker.readiness(&self.me.name.clone(), self.me.generation, self.status.ready);
        if let Err(e) = self.foca.add_broadcast(&self.status.encode()) {
            debug!(error = %e, "status broadcast refused");
        }
    }

    /// Sends, schedules and folds everything foca produced.
    fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.nonce = self.nonce.wrapping_add(1);
            let sealed = self.sealer.seal(seal::now_ms(), self.nonce, &data);
            // UDP: a full socket buffer drops the datagram, as the network might.
            let _ = self.socket.try_send_to(&sealed, to.addr);
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let _ = self.scheduler.send((now + after, timer));
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::Rename(old, new) => debug!(old = ?old, new = ?new, "member renamed"),
                OwnedNotification::Rejoin(id) => {
                    info!(generation = id.generation, "rejoined the cluster after being declared down")
                }
                OwnedNotification::Defunct => warn!("declared down by the cluster; rejoining"),
                _ => {}
            }
        }
        if self.foca.identity().generation != self.me.generation {
            self.me = self.foca.identity().clone();
            self.status.generation = self.me.generation;
            self.tracker.renew_self(self.me.clone());
            // Peers drop readiness of the old generation: say it again under the new one.
            self.publish_status();
        }
        let members: Vec<(NodeId, Gossip)> =
            self.foca.iter_membership_state().map(|m| (m.id().clone(), Gossip::from(m.state()))).collect();
        let changes = self.tracker.sync_gossip(members.iter().map(|(id, g)| (id, *g)), seal::now_ms());
        let statuses: Vec<Status> =
            self.statuses.latest.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut ready_changed = false;
        for st in statuses {
            ready_changed |= self.tracker.readiness(&st.name, st.generation, st.ready);
        }
        if ready_changed && changes.is_empty() {
            self.view.send_replace(Arc::new(self.tracker.view()));
        }
        self.report(changes);
    }

    fn report(&mut self, changes: Vec<MemberChange>) {
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let from = c.from.map(MemberState::name).unwrap_or("new");
            match c.to {
                MemberState::Up => info!(member = %c.name, from, generation = c.generation, "cluster member up"),
                MemberState::Joining => {
                    info!(member = %c.name, from, generation = c.generation, "cluster member joining")
                }
                _ => {
                    warn!(member = %c.name, from, to = c.to.name(), generation = c.generation, "cluster member {}", c.to.name())
                }
            }
            metrics::counter!(names::CLUSTER_MEMBER_CHANGES, "to" => c.to.name()).increment(1);
            let _ = self.events.send(c.clone());
        }
        let view = self.tracker.view();
        self.record_gauges(&view);
        self.view.send_replace(Arc::new(view));
    }

    fn record_gauges(&self, view: &View) {
        for state in MemberState::ALL {
            metrics::gauge!(names::CLUSTER_MEMBERS, "state" => state.name()).set(view.count(state) as f64);
        }
        metrics::gauge!(names::CLUSTER_SESSIONS).set(self.sessions.len() as f64);
    }

    fn tick(&mut self, myself: &ActorRef<ClusterMsg>) {
        if self.left {
            return;
        }
        let now = Instant::now();
        // Seeds: announce while we know nobody alive.
        if self.foca.num_members() == 0
            && !self.seeds.is_empty()
            && self.last_announce.is_none_or(|at| now.duration_since(at) >= ANNOUNCE_EVERY)
        {
            self.last_announce = Some(now);
            let seeds = self.seeds.clone();
            let actor = myself.clone();
            tokio::spawn(async move {
                for seed in seeds {
                    match tokio::net::lookup_host(&seed).await {
                        Ok(addrs) => {
                            for addr in addrs {
                                let _ = actor.cast(ClusterMsg::AnnounceTo(addr));
                            }
                        }
                        Err(e) => debug!(%seed, error = %e, "cannot resolve seed"),
                    }
                }
            });
        }
        if now.duration_since(self.last_status) >= STATUS_EVERY {
            self.publish_status();
        }
        // Sessions: the smaller name dials; the larger one dials too once the grace is over.
        let alive: Vec<NodeId> = self.tracker.to_dial().cloned().collect();
        self.alive_since.retain(|name, _| alive.iter().any(|id| &id.name == name));
        for id in alive {
            let since = *self.alive_since.entry(id.name.clone()).or_insert(now);
            let my_turn = self.me.name < id.name || now.duration_since(since) >= DIAL_GRACE;
            let recently = self.dialed.get(&id.name).is_some_and(|at| now.duration_since(*at) < DIAL_EVERY);
            if my_turn && !recently {
                self.dialed.insert(id.name.clone(), now);
                sessions::dial(self.server.clone(), id.addr);
            }
        }
        self.tracker.prune_down(seal::now_ms(), FORGET_DOWN_AFTER_MS);
    }
}
