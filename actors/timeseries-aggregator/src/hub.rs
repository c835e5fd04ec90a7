//! The live results feed behind `/ws/jobs/{id}`: every emission of every job, numbered in the
//! order this node saw it, in a bounded ring (for resuming with `?since=`) and a bounded
//! broadcast (a subscriber that falls behind is told and resynchronised, never blocks the
//! pipeline). Emissions made on other nodes arrive through the cluster topic
//! `timeseries.results`, so a socket on any node sees the whole job.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

pub const RESULTS_TOPIC: &str = "timeseries.results";
/// Updates kept for resuming.
pub const RING: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Update {
    pub seq: u64,
    pub job: String,
    /// The canonical key text (filtering).
    pub key: String,
    pub is_final: bool,
    pub result: Value,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    seq: AtomicU64,
    ring: Mutex<VecDeque<Arc<Update>>>,
    tx: broadcast::Sender<Arc<Update>>,
    cluster: Option<loom_cluster::Cluster>,
}

impl Hub {
    pub fn new(node: String, cluster: Option<loom_cluster::Cluster>) -> Hub {
        let (tx, _) = broadcast::channel(4096);
        Hub { inner: Arc::new(Inner { node, seq: AtomicU64::new(0), ring: Mutex::new(VecDeque::new()), tx, cluster }) }
    }

    /// Publishes results made on this node (here and to the other nodes).
    pub fn publish(&self, job: &str, results: Vec<(String, bool, Value)>) {
        if results.is_empty() {
            return;
        }
        if let Some(c) = &self.inner.cluster {
            let items: Vec<Value> = results.iter().map(|(k, f, r)| json!([k, f, r])).collect();
            let msg = json!({"origin": self.inner.node, "job": job, "items": items});
            c.publish(RESULTS_TOPIC, msg.to_string().as_bytes());
        }
        for (key, is_final, result) in results {
            self.push(job, key, is_final, result);
        }
    }

    fn push(&self, job: &str, key: String, is_final: bool, result: Value) {
        // Numbered, stored and sent under one lock, so sequence numbers leave in order.
        let Ok(mut ring) = self.inner.ring.lock() else { return };
        let seq = self.inner.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let u = Arc::new(Update { seq, job: job.to_owned(), key, is_final, result });
        if ring.len() >= RING {
            ring.pop_front();
        }
        ring.push_back(u.clone());
        let _ = self.inner.tx.send(u);
    }

    /// Relays results made on other nodes into this node's feed.
    pub async fn follow(self) {
        let Some(c) = self.inner.cluster.clone() else { return };
        let Ok(mut rx) = c.subscribe(RESULTS_TOPIC).await else { return };
        while let Some(bytes) = rx.recv().await {
            let Ok(msg) = serde_json::from_slice::<Value>(&bytes) else { continue };
            if msg["origin"].as_str() == Some(self.inner.node.as_str()) {
                continue;
            }
            let job = msg["job"].as_str().unwrap_or_default().to_owned();
            for item in msg["items"].as_array().into_iter().flatten() {
                if let (Some(k), Some(f)) = (item[0].as_str(), item[1].as_bool()) {
                    self.push(&job, k.to_owned(), f, item[2].clone());
                }
            }
        }
    }

    pub fn seq(&self) -> u64 {
        self.inner.seq.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.inner.tx.subscribe()
    }

    /// Updates after `since` still in the ring, or `None` when some were already dropped or
    /// `since` is not this node's (ahead of its numbering: another node, or before a restart).
    pub fn since(&self, since: u64) -> Option<Vec<Arc<Update>>> {
        let ring = self.inner.ring.lock().ok()?;
        if since > self.seq() || (since < self.seq() && ring.front().is_none_or(|f| f.seq > since + 1)) {
            return None;
        }
        Some(ring.iter().filter(|u| u.seq > since).cloned().collect())
    }
}
