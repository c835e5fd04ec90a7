//! A keyed counter that proves ownership, forwarding and hand-off in multi-process tests. It is
//! test machinery, not a feature: the node mounts it (under `/cluster/debug/counter`) only when
//! fault injection is enabled. Counts live in memory on the key's owner; when the view changes
//! (and once a second, to catch calls that raced a change), every count this node holds for a
//! key it no longer owns is handed to the new owner with an `Absorb` call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loom_protocol::ServiceId;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::{Cluster, Keyed, WireError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterRequest {
    Add {
        by: u64,
    },
    Get,
    /// A hand-off: add a count moved from the previous owner.
    Absorb {
        value: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CounterReply {
    pub value: u64,
}

pub type CounterClient = Keyed<CounterRequest, CounterReply>;

/// Serves the counter under the health aggregator's service id and starts its hand-off loop.
pub fn start(cluster: &Cluster) -> CounterClient {
    let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let held = counts.clone();
    let client = cluster.serve_keyed(ServiceId::HealthAggregator, move |key: String, req: CounterRequest| {
        let counts = held.clone();
        async move {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let value = counts.entry(key).or_insert(0);
            match req {
                CounterRequest::Add { by } | CounterRequest::Absorb { value: by } => {
                    *value = value.checked_add(by).ok_or_else(|| WireError::new("overflow", "counter overflow"))?;
                }
                CounterRequest::Get => {}
            }
            Ok::<_, WireError>(CounterReply { value: *value })
        }
    });
    tokio::spawn(hand_off(cluster.clone(), client.clone(), counts));
    client
}

async fn hand_off(cluster: Cluster, client: CounterClient, counts: Arc<Mutex<HashMap<String, u64>>>) {
    let mut changes = cluster.watch();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let moving: Vec<(String, u64)> = {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<String> = counts
                .keys()
                .filter(|k| cluster.owner(ServiceId::HealthAggregator, k).is_some_and(|o| o != cluster.node_name()))
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| counts.remove(&k).map(|v| (k, v))).collect()
        };
        for (key, value) in moving {
            if let Err(e) = client.call(&key, CounterRequest::Absorb { value }).await {
                // Keep it: put it back and try again on the next round.
                debug!(%key, error = %e, "hand-off failed");
                *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(0) += value;
            }
        }
    }
}
