//! The alert evaluator: one [`AlertActor`] per node, ticking every [`TICK`]. For each monitor
//! with an `alerts` section that this node owns (rendezvous hash of its id over the `up`
//! members; every node when unclustered), it re-reads the monitor's newest windows when they
//! changed (or every [`REFRESH`], for windows closing by the wall clock), finds its conditions
//! (`alerts.rs`), and advances the stored alert state under a compare-and-set — so a condition
//! opens once per cluster even while ownership moves. Then:
//!
//! - `alerts.health` (default on): the check `check:data-quality/<id>` on the node's board,
//!   `fail` while a condition is open — the Health Aggregator shows it and opens an incident;
//! - `alerts.topic`: each transition as JSON (key: the monitor id), delivered in order from the
//!   state's `pending` queue, removed only once the broker acknowledged it.
//!
//! A monitor this node no longer owns, or that lost its `alerts` section, has its check
//! withdrawn here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loom_cluster::Cluster;
use loom_kafka::Producer;
use loom_kafka::producer::Outgoing;
use loom_protocol::ServiceId;
use loom_service::{Checks, Mailbox};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster_derive::RactorMessage;

use crate::alerts::{self, AlertState};
use crate::monitor::Monitor;
use crate::report;
use crate::rest::Book;
use crate::store::Store;

pub const TICK: Duration = Duration::from_secs(2);
/// Re-evaluation without new writes at most this far apart.
pub const REFRESH: Duration = Duration::from_secs(15);
const SERVICE: ServiceId = ServiceId::DataQuality;

#[derive(RactorMessage)]
pub enum AlertMsg {
    Tick,
}

pub struct AlertActor {
    pub mailbox: Arc<Mailbox>,
}

#[derive(Clone)]
pub struct AlertDeps {
    pub book: Book,
    pub store: Store,
    pub checks: Checks,
    pub cluster: Cluster,
    pub producer: Option<Producer>,
}

/// What was last evaluated for a monitor here.
struct Seen {
    version: i32,
    last_write: Option<i64>,
    at: Instant,
}

pub struct AlertActorState {
    deps: AlertDeps,
    seen: HashMap<String, Seen>,
    ticker: tokio::task::JoinHandle<()>,
}

#[ractor::async_trait]
impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = AlertActorState;
    type Arguments = AlertDeps;

    async fn pre_start(&self, me: ActorRef<AlertMsg>, deps: AlertDeps) -> Result<AlertActorState, ActorProcessingErr> {
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                if me.cast(AlertMsg::Tick).is_err() {
                    return;
                }
            }
        });
        Ok(AlertActorState { deps, seen: HashMap::new(), ticker })
    }

    async fn post_stop(&self, _: ActorRef<AlertMsg>, state: &mut AlertActorState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<AlertMsg>,
        msg: AlertMsg,
        state: &mut AlertActorState,
    ) -> Result<(), ActorProcessingErr> {
        let AlertMsg::Tick = msg;
        self.mailbox.handled();
        tick(state).await;
        Ok(())
    }
}

fn owned_here(cluster: &Cluster, id: &str) -> bool {
    !cluster.is_clustered() || cluster.owner(SERVICE, id).as_deref() == Some(cluster.node_name())
}

async fn tick(state: &mut AlertActorState) {
    let deps = state.deps.clone();
    let mut watched = Vec::new();
    for entry in deps.book.all() {
        let m = &entry.compiled;
        let id = m.spec.id.as_str();
        let Some(spec) = &m.spec.alerts else { continue };
        if !owned_here(&deps.cluster, id) {
            state.seen.remove(id);
            continue;
        }
        if spec.health {
            watched.push(id.to_owned());
        }
        if let Err(e) = evaluate(&deps, &mut state.seen, m).await {
            tracing::warn!(monitor = id, error = %e, code = "alert_evaluation_failed", "alert evaluation failed");
        }
    }
    for name in deps.checks.names(SERVICE) {
        if !watched.contains(&name) {
            deps.checks.clear(SERVICE, &name);
        }
    }
    state.seen.retain(|id, _| deps.book.get(id).is_some());
}

async fn evaluate(deps: &AlertDeps, seen: &mut HashMap<String, Seen>, m: &Monitor) -> Result<(), String> {
    let id = m.spec.id.as_str();
    let last_write = deps.store.last_write(id).await.map_err(|e| e.to_string())?;
    let stale =
        seen.get(id).is_none_or(|s| s.version != m.version || s.last_write != last_write || s.at.elapsed() >= REFRESH);
    let loaded = deps.store.alerts(id).await.map_err(|e| e.to_string())?;
    let (revision, mut state) = match &loaded {
        Some((rev, bytes)) => (Some(*rev), AlertState::from_bytes(bytes)),
        None => (None, AlertState::default()),
    };
    let mut revision = revision;
    if stale {
        let found = conditions(deps, m).await?;
        let before = state.clone();
        let events = state.step(m, found, loom_storage::documents::now_ms());
        if state != before {
            if !deps.store.save_alerts(id, revision, state.to_bytes()).await.map_err(|e| e.to_string())? {
                // Another node evaluated meanwhile: its state stands; look again next tick.
                seen.remove(id);
                return Ok(());
            }
            revision = Some(revision.map_or(1, |r| r + 1));
            for e in &events {
                crate::metrics::alert_event(id, &e.state);
            }
        }
        seen.insert(id.to_owned(), Seen { version: m.version, last_write, at: Instant::now() });
    }
    deliver(deps, m, &mut state, revision).await?;
    crate::metrics::alerts_open(id, state.open.len());
    if m.spec.alerts.as_ref().is_some_and(|a| a.health) {
        let (status, detail) = state.check(m);
        deps.checks.set(SERVICE, id, status, detail);
    }
    Ok(())
}

/// The conditions of the newest closed windows and the freshness state.
async fn conditions(deps: &AlertDeps, m: &Monitor) -> Result<Vec<alerts::Condition>, String> {
    let id = m.spec.id.as_str();
    let mut found = Vec::new();
    if let Some(latest) = deps.store.latest(id).await.map_err(|e| e.to_string())? {
        let all = crate::api::load(&deps.store, m, latest - m.window_ms, latest + m.window_ms)
            .await
            .map_err(|e| e.to_string())?;
        let now = loom_storage::documents::now_ms();
        let recent = all.iter().filter(|w| w.start >= latest - m.window_ms);
        for w in alerts::closed(m, recent, now) {
            found.extend(alerts::of_window(&w.group, w.start, &report::window(m, w, &all)));
        }
    }
    let states = deps.store.part_states(id).await.map_err(|e| e.to_string())?;
    found.extend(alerts::of_freshness(&crate::api::silent_devices(m, &states)));
    Ok(found)
}

/// Sends the pending events in order; the delivered ones leave the stored queue.
async fn deliver(deps: &AlertDeps, m: &Monitor, state: &mut AlertState, revision: Option<i64>) -> Result<(), String> {
    let id = m.spec.id.as_str();
    let topic = m.spec.alerts.as_ref().and_then(|a| a.topic.as_deref());
    let (Some(topic), Some(producer)) = (topic, &deps.producer) else {
        if !state.pending.is_empty() {
            // No topic (or no broker): nothing waits for delivery.
            state.pending.clear();
            save_delivered(deps, id, state, revision).await?;
        }
        return Ok(());
    };
    let mut sent = 0;
    while let Some(e) = state.pending.front() {
        let payload = serde_json::to_vec(e).unwrap_or_default();
        let out = Outgoing { topic, key: Some(id.as_bytes()), payload: Some(&payload), ..Outgoing::default() };
        match producer.send(out).await {
            Ok(_) => {
                state.pending.pop_front();
                sent += 1;
            }
            Err(e) => {
                crate::metrics::alert_delivery_error(id);
                tracing::warn!(monitor = id, error = %e, code = "alert_delivery_failed", "alert event not delivered; retrying");
                break;
            }
        }
    }
    if sent > 0 {
        save_delivered(deps, id, state, revision).await?;
    }
    Ok(())
}

async fn save_delivered(deps: &AlertDeps, id: &str, state: &AlertState, revision: Option<i64>) -> Result<(), String> {
    // Lost to a concurrent writer: its state still holds these events as pending, and they
    // are sent again (consumers drop repeats by event id).
    deps.store.save_alerts(id, revision, state.to_bytes()).await.map_err(|e| e.to_string()).map(|_| ())
}
