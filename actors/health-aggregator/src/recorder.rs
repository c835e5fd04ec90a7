//! The incident recorder: follows the aggregator's root causes, runs them through the
//! correlator (`incidents.rs`), persists every opened / updated / resolved incident
//! (`store.rs`) and streams it as an `incident:<id>` entry of this node (`open`, then a last
//! `resolved` delta that leaves the snapshot). When the database itself is the root cause the
//! records cannot be written: they wait in a bounded in-memory set, retried every
//! [`RETRY`], and `GET /incidents` serves them from memory meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::graph::Impact;
use crate::hub::Hub;
use crate::incidents::{Correlator, Event, Incident};
use crate::store::Store;

/// Root causes that start within this long of an open incident join it.
pub const WINDOW_MS: i64 = 30_000;
pub const RETRY: Duration = Duration::from_secs(2);
/// Most incident states waiting to be written.
pub const MAX_UNSAVED: usize = 256;

/// What the API reads beside the store: open incidents and writes still pending.
#[derive(Default)]
pub struct Live {
    pub open: Vec<Incident>,
    pub unsaved: BTreeMap<String, Incident>,
}

pub type SharedLive = Arc<Mutex<Live>>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub async fn run(
    me: String,
    store: Store,
    hub: Hub,
    mut roots: watch::Receiver<BTreeMap<String, Impact>>,
    live: SharedLive,
) {
    match store.close_stale(now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(closed = n, "incidents left open by a previous run resolved"),
        Err(e) => tracing::warn!(error = %e, code = "store_unavailable", "cannot close stale incidents"),
    }
    let mut correlator = Correlator::new(WINDOW_MS);
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            changed = roots.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = roots.borrow_and_update().clone();
                let events = correlator.step(now_ms(), &current, &mut || uuid::Uuid::now_v7().to_string());
                for event in &events {
                    announce(&me, &hub, event);
                    save(&store, &live, event.incident()).await;
                }
                let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
                l.open = correlator.open().to_vec();
            }
            _ = retry.tick() => flush(&store, &live).await,
        }
    }
}

fn announce(me: &str, hub: &Hub, event: &Event) {
    let i = event.incident();
    let impacted = i.affected.iter().filter(|a| a.role == "impacted").count();
    match event {
        Event::Opened(_) => {
            tracing::warn!(incident = %i.id, roots = ?i.roots, inhibited = impacted, "incident opened");
        }
        Event::Updated(_) => {
            tracing::info!(incident = %i.id, roots = ?i.roots, inhibited = impacted, "incident updated")
        }
        Event::Resolved(_) => tracing::info!(incident = %i.id, roots = ?i.roots, "incident resolved"),
    }
    let detail = json!({ "event": event.name(), "incident": i });
    let key = format!("incident:{}", i.id);
    match event {
        Event::Resolved(_) => hub.retire(me, &key, "resolved", detail),
        _ => hub.update(me, &key, "open", detail),
    };
}

async fn save(store: &Store, live: &SharedLive, incident: &Incident) {
    if let Err(e) = store.save(incident).await {
        tracing::warn!(incident = %incident.id, error = %e, code = "store_unavailable", "incident not persisted yet; will retry");
        let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
        if l.unsaved.len() < MAX_UNSAVED || l.unsaved.contains_key(&incident.id) {
            l.unsaved.insert(incident.id.clone(), incident.clone());
        }
        return;
    }
    live.lock().unwrap_or_else(|e| e.into_inner()).unsaved.remove(&incident.id);
    // Each new incident makes room for itself.
    if incident.state == "open"
        && incident.opened_ms == incident.updated_ms
        && let Err(e) = store.prune().await
    {
        tracing::warn!(error = %e, code = "store_unavailable", "incident pruning failed");
    }
}

async fn flush(store: &Store, live: &SharedLive) {
    let pending: Vec<Incident> = live.lock().unwrap_or_else(|e| e.into_inner()).unsaved.values().cloned().collect();
    for incident in pending {
        if store.save(&incident).await.is_err() {
            return;
        }
        let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
        // Only forget it if no newer state arrived meanwhile.
        if l.unsaved.get(&incident.id).is_some_and(|i| i.updated_ms == incident.updated_ms) {
            l.unsaved.remove(&incident.id);
        }
    }
}
