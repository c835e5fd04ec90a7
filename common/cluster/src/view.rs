//! The membership view: every member this node knows, in one of four states, derived from two
//! sources — gossip (foca: alive, suspect, down) and the ractor_cluster session to it (never
//! opened, ready, lost). Pure logic with table-driven tests; the membership actor feeds it.
//!
//! | gossip  | session      | state         |
//! |---------|--------------|---------------|
//! | alive   | ready        | `up`          |
//! | alive   | never opened | `joining`     |
//! | alive   | lost         | `unreachable` |
//! | suspect | any          | `unreachable` |
//! | down    | any          | `down`        |
//!
//! This node itself is always `up`. Only `up` members own keys.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use loom_protocol::ServiceId;
use serde::Serialize;

use crate::identity::NodeId;
use crate::ring;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Joining,
    Up,
    Unreachable,
    Down,
}

impl MemberState {
    pub const ALL: [MemberState; 4] =
        [MemberState::Joining, MemberState::Up, MemberState::Unreachable, MemberState::Down];

    pub fn name(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Unreachable => "unreachable",
            MemberState::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gossip {
    Alive,
    Suspect,
    Down,
}

impl From<foca::State> for Gossip {
    fn from(s: foca::State) -> Gossip {
        match s {
            foca::State::Alive => Gossip::Alive,
            foca::State::Suspect => Gossip::Suspect,
            foca::State::Down => Gossip::Down,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Never,
    Ready,
    Lost,
}

/// One member as reported by `GET /cluster/members`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub name: String,
    pub state: MemberState,
    /// Gossip (UDP) and session (TCP) address.
    pub addr: SocketAddr,
    /// Where keyed calls to it go (the data plane), when it runs one.
    pub data_addr: Option<SocketAddr>,
    pub generation: u64,
    pub version: String,
    pub services: Vec<ServiceId>,
    /// What the member last published about its readiness (`None`: not heard yet).
    pub ready: Option<bool>,
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Unix milliseconds of the last authenticated datagram from it.
    pub last_heard_unix_ms: Option<u64>,
    /// Unix milliseconds since the member is in its current state.
    pub state_since_unix_ms: u64,
}

/// A snapshot of the membership, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct View {
    pub members: Vec<Member>,
}

impl View {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The `up` members hosting `service`, the candidates for its keys.
    pub fn owners_of(&self, service: ServiceId) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.state == MemberState::Up && m.services.contains(&service))
    }

    /// The member owning `key` of `service`, by rendezvous hashing over [`View::owners_of`].
    pub fn owner(&self, service: ServiceId, key: &str) -> Option<&Member> {
        let name = ring::owner(self.owners_of(service).map(|m| m.name.as_str()), key.as_bytes())?;
        self.member(name)
    }

    pub fn count(&self, state: MemberState) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }
}

/// A member changing state, for logs, metrics and the health stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberChange {
    pub name: String,
    pub from: Option<MemberState>,
    pub to: MemberState,
    pub generation: u64,
}

struct Entry {
    id: NodeId,
    gossip: Gossip,
    session: Session,
    ready: Option<bool>,
    state: MemberState,
    since_ms: u64,
    last_heard_ms: Option<u64>,
}

impl Entry {
    fn derive(&self, is_self: bool) -> MemberState {
        if is_self {
            return MemberState::Up;
        }
        match (self.gossip, self.session) {
            (Gossip::Down, _) => MemberState::Down,
            (Gossip::Suspect, _) | (Gossip::Alive, Session::Lost) => MemberState::Unreachable,
            (Gossip::Alive, Session::Never) => MemberState::Joining,
            (Gossip::Alive, Session::Ready) => MemberState::Up,
        }
    }
}

/// Tracks members and derives their states.
pub struct Tracker {
    me: String,
    entries: BTreeMap<String, Entry>,
    /// Ready sessions to peers gossip has not told us about yet.
    early_sessions: BTreeSet<String>,
}

impl Tracker {
    pub fn new(me: NodeId, now_ms: u64) -> Tracker {
        let name = me.name.clone();
        let entry = Entry {
            id: me,
            gossip: Gossip::Alive,
            session: Session::Ready,
            ready: Some(false),
            state: MemberState::Up,
            since_ms: now_ms,
            last_heard_ms: None,
        };
        Tracker { me: name.clone(), entries: BTreeMap::from([(name, entry)]), early_sessions: BTreeSet::new() }
    }

    /// Applies foca's full membership (alive, suspect and down members). Members foca has
    /// forgotten keep their last state. Stale generations are ignored.
    pub fn sync_gossip<'a>(
        &mut self,
        members: impl IntoIterator<Item = (&'a NodeId, Gossip)>,
        now_ms: u64,
    ) -> Vec<MemberChange> {
        let mut newest: BTreeMap<&str, (&NodeId, Gossip)> = BTreeMap::new();
        for (id, gossip) in members {
            if id.name.is_empty() || id.name == self.me {
                continue;
            }
            match newest.get(id.name.as_str()) {
                Some((seen, _)) if seen.generation >= id.generation => {}
                _ => {
                    newest.insert(&id.name, (id, gossip));
                }
            }
        }
        for (name, (id, gossip)) in newest {
            match self.entries.get_mut(name) {
                Some(e) if e.id.generation > id.generation => {}
                Some(e) => {
                    if e.id.generation < id.generation {
                        e.id = id.clone();
                        e.ready = None;
                    }
                    e.gossip = gossip;
                }
                None => {
                    let session = if self.early_sessions.remove(name) { Session::Ready } else { Session::Never };
                    self.entries.insert(
                        name.to_owned(),
                        Entry {
                            id: id.clone(),
                            gossip,
                            session,
                            ready: None,
                            state: MemberState::Joining,
                            since_ms: now_ms,
                            last_heard_ms: None,
                        },
                    );
                }
            }
        }
        self.rederive(now_ms)
    }

    /// This node's identity changed (foca renewed it after the cluster declared it down): the
    /// self entry takes the new generation, so this node's own readiness is accepted again.
    pub fn renew_self(&mut self, id: NodeId) {
        if let Some(e) = self.entries.get_mut(&self.me) {
            e.id = id;
        }
    }

    /// Whether at least one ractor_cluster session to `name` is ready (`true`) or none is
    /// (`false`); the caller counts sessions, since duplicates come and go.
    pub fn session(&mut self, name: &str, ready: bool, now_ms: u64) -> Vec<MemberChange> {
        if name == self.me {
            return Vec::new();
        }
        match self.entries.get_mut(name) {
            Some(e) => {
                e.session = match (ready, e.session) {
                    (true, _) => Session::Ready,
                    (false, Session::Never) => Session::Never,
                    (false, _) => Session::Lost,
                };
            }
            None if ready => {
                self.early_sessions.insert(name.to_owned());
            }
            None => {
                self.early_sessions.remove(name);
            }
        }
        self.rederive(now_ms)
    }

    pub fn heard(&mut self, name: &str, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(name) {
            e.last_heard_ms = Some(now_ms);
        }
    }

    /// A member published its readiness; ignored unless for its current generation.
    pub fn readiness(&mut self, name: &str, generation: u64, ready: bool) -> bool {
        match self.entries.get_mut(name) {
            Some(e) if e.id.generation == generation && e.ready != Some(ready) => {
                e.ready = Some(ready);
                true
            }
            _ => false,
        }
    }

    /// Members that gossip says are alive but have no ready session: the ones to dial.
    pub fn to_dial(&self) -> impl Iterator<Item = &NodeId> {
        self.entries
            .values()
            .filter(|e| e.id.name != self.me && e.gossip == Gossip::Alive && e.session != Session::Ready)
            .map(|e| &e.id)
    }

    /// Forgets members down for longer than `after_ms`.
    pub fn prune_down(&mut self, now_ms: u64, after_ms: u64) {
        self.entries.retain(|_, e| !(e.state == MemberState::Down && now_ms.saturating_sub(e.since_ms) > after_ms));
    }

    fn rederive(&mut self, now_ms: u64) -> Vec<MemberChange> {
        let mut changes = Vec::new();
        for (name, e) in self.entries.iter_mut() {
            let state = e.derive(*name == self.me);
            if state != e.state {
                changes.push(MemberChange {
                    name: name.clone(),
                    from: Some(e.state),
                    to: state,
                    generation: e.id.generation,
                });
                e.state = state;
                e.since_ms = now_ms;
            }
        }
        changes
    }

    pub fn view(&self) -> View {
        View {
            members: self
                .entries
                .iter()
                .map(|(name, e)| Member {
                    name: name.clone(),
                    state: e.state,
                    addr: e.id.addr,
                    data_addr: (e.id.data_port != 0).then(|| SocketAddr::new(e.id.addr.ip(), e.id.data_port)),
                    generation: e.id.generation,
                    version: e.id.version.clone(),
                    services: e.id.services.clone(),
                    ready: e.ready,
                    is_self: *name == self.me,
                    last_heard_unix_ms: e.last_heard_ms,
                    state_since_unix_ms: e.since_ms,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> NodeId {
        NodeId {
            name: name.into(),
            addr: "127.0.0.2:4697".parse().unwrap(),
            data_port: 4698,
            generation,
            version: "0.1.0".into(),
            services: vec![ServiceId::Dedup],
        }
    }

    fn state(t: &Tracker, name: &str) -> Option<MemberState> {
        t.view().member(name).map(|m| m.state)
    }

    #[test]
    fn states_follow_gossip_and_sessions() {
        use Gossip::*;
        // steps applied in order to member "b": (gossip, session event, expected state)
        let steps: &[(Option<Gossip>, Option<bool>, MemberState)] = &[
            (Some(Alive), None, MemberState::Joining),
            (None, Some(true), MemberState::Up),
            (Some(Suspect), None, MemberState::Unreachable),
            (Some(Alive), None, MemberState::Up),
            (None, Some(false), MemberState::Unreachable),
            (None, Some(true), MemberState::Up),
            (Some(Down), None, MemberState::Down),
            (None, Some(true), MemberState::Down),
        ];
        let mut t = Tracker::new(id("a", 1), 0);
        for (i, (gossip, session, want)) in steps.iter().enumerate() {
            if let Some(g) = gossip {
                t.sync_gossip([(&id("b", 5), *g)], i as u64);
            }
            if let Some(s) = session {
                t.session("b", *s, i as u64);
            }
            assert_eq!(state(&t, "b"), Some(*want), "step {i}");
        }
        assert_eq!(state(&t, "a"), Some(MemberState::Up));
    }

    #[test]
    fn a_newer_generation_replaces_the_old_and_stale_ones_are_ignored() {
        let mut t = Tracker::new(id("a", 1), 0);
        t.sync_gossip([(&id("b", 5), Gossip::Alive)], 0);
        t.session("b", true, 0);
        assert!(t.readiness("b", 5, true));
        // the old incarnation is down, the new one alive: the new one counts
        t.sync_gossip([(&id("b", 5), Gossip::Down), (&id("b", 9), Gossip::Alive)], 1);
        let b = t.view().member("b").cloned().unwrap();
        assert_eq!((b.generation, b.state, b.ready), (9, MemberState::Up, None));
        // a late report about generation 5 changes nothing
        t.sync_gossip([(&id("b", 5), Gossip::Down)], 2);
        assert_eq!(state(&t, "b"), Some(MemberState::Up));
        assert!(!t.readiness("b", 5, false));
    }

    #[test]
    fn a_session_ready_before_gossip_counts_once_the_member_is_known() {
        let mut t = Tracker::new(id("a", 1), 0);
        t.session("b", true, 0);
        assert!(t.view().member("b").is_none());
        t.sync_gossip([(&id("b", 5), Gossip::Alive)], 1);
        assert_eq!(state(&t, "b"), Some(MemberState::Up));
    }

    #[test]
    fn changes_are_reported_once() {
        let mut t = Tracker::new(id("a", 1), 0);
        let c = t.sync_gossip([(&id("b", 5), Gossip::Alive)], 0);
        assert!(c.is_empty(), "a new member starts joining: {c:?}");
        let c = t.session("b", true, 1);
        assert_eq!(
            c,
            vec![MemberChange {
                name: "b".into(),
                from: Some(MemberState::Joining),
                to: MemberState::Up,
                generation: 5
            }]
        );
        assert!(t.session("b", true, 2).is_empty());
    }

    #[test]
    fn only_up_members_hosting_the_service_own_keys() {
        let mut t = Tracker::new(id("a", 1), 0);
        t.sync_gossip([(&id("b", 5), Gossip::Alive), (&id("c", 5), Gossip::Alive)], 0);
        t.session("b", true, 0);
        let view = t.view();
        let owners: Vec<&str> = view.owners_of(ServiceId::Dedup).map(|m| m.name.as_str()).collect();
        assert_eq!(owners, ["a", "b"]);
        assert!(view.owners_of(ServiceId::SchemaRegistry).next().is_none());
        for key in ["k1", "k2", "k3"] {
            assert!(["a", "b"].contains(&view.owner(ServiceId::Dedup, key).unwrap().name.as_str()));
        }
    }

    #[test]
    fn down_members_are_pruned_after_a_while() {
        let mut t = Tracker::new(id("a", 1), 0);
        t.sync_gossip([(&id("b", 5), Gossip::Down)], 0);
        t.prune_down(10, 100);
        assert!(t.view().member("b").is_some());
        t.prune_down(1000, 100);
        assert!(t.view().member("b").is_none());
        assert!(t.view().member("a").is_some());
    }

    #[test]
    fn own_readiness_follows_a_renewed_identity() {
        let mut t = Tracker::new(id("me", 1), 0);
        assert!(t.readiness("me", 1, true));
        t.renew_self(id("me", 2));
        // The old generation's readiness no longer counts; the new one's does.
        assert!(!t.readiness("me", 1, false));
        assert!(t.readiness("me", 2, false));
        assert_eq!(t.view().member("me").map(|m| m.generation), Some(2));
    }
}
