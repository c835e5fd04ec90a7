//! The health hub: the latest status of every (node, component) pair — a component is `node`
//! for a member itself or a service name — with a sequence number per change, a bounded history
//! of deltas for resuming subscribers, and a bounded broadcast to live subscribers (one that
//! falls behind the buffer is dropped, never buffered without limit). Each delta is serialized
//! once, when it is made: every live subscriber sends the same shared text.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Deltas kept for resuming subscribers.
pub const HISTORY: usize = 4096;
/// Deltas a live subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub seq: u64,
    pub node: String,
    /// `node` for the member itself, else the service name.
    pub service: String,
    pub status: String,
    pub detail: serde_json::Value,
    pub time_ms: u64,
}

/// What a subscriber wants to see (empty lists: everything; an entry ending in `*` matches by
/// prefix, e.g. `incident:*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub services: Vec<String>,
    pub nodes: Vec<String>,
    pub statuses: Vec<String>,
}

impl Filter {
    pub fn matches(&self, d: &Delta) -> bool {
        let ok = |list: &Vec<String>, v: &str| {
            list.is_empty()
                || list.iter().any(|x| match x.strip_suffix('*') {
                    Some(prefix) => v.starts_with(prefix),
                    None => x == v,
                })
        };
        ok(&self.services, &d.service) && ok(&self.nodes, &d.node) && ok(&self.statuses, &d.status)
    }
}

/// The first thing a subscriber gets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Opening {
    /// Everything current (filtered), as of `seq`.
    Snapshot { seq: u64, entries: Vec<Delta> },
    /// The deltas missed since the subscriber's `since`.
    Resume { from: u64, deltas: Vec<Delta> },
}

/// A delta as broadcast to live subscribers: the delta and its wire text (`"type": "delta"`),
/// shared by every subscriber's frame without copying.
#[derive(Debug)]
pub struct Live {
    pub delta: Arc<Delta>,
    pub text: Utf8Bytes,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    delta: &'a Delta,
}

struct Inner {
    seq: u64,
    current: BTreeMap<(String, String), Delta>,
    history: VecDeque<Arc<Delta>>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Arc<Live>>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Hub { inner: Arc::new(Mutex::new(Inner { seq: 0, current: BTreeMap::new(), history: VecDeque::new() })), tx }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Hub {
    /// Records a status; emits a delta only when status or detail changed.
    pub fn update(&self, node: &str, service: &str, status: &str, detail: serde_json::Value) -> Option<u64> {
        self.record(node, service, status, detail, false)
    }

    /// Emits a last delta for an entry and drops it from the current state (a resolved
    /// incident): snapshots no longer carry it, resuming subscribers still see the delta.
    pub fn retire(&self, node: &str, service: &str, status: &str, detail: serde_json::Value) -> Option<u64> {
        self.record(node, service, status, detail, true)
    }

    fn record(&self, node: &str, service: &str, status: &str, detail: serde_json::Value, retire: bool) -> Option<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (node.to_owned(), service.to_owned());
        if !retire && inner.current.get(&key).is_some_and(|d| d.status == status && d.detail == detail) {
            return None;
        }
        inner.seq += 1;
        let delta = Delta {
            seq: inner.seq,
            node: node.into(),
            service: service.into(),
            status: status.into(),
            detail,
            time_ms: now_ms(),
        };
        if retire {
            inner.current.remove(&key);
        } else {
            inner.current.insert(key, delta.clone());
        }
        let delta = Arc::new(delta);
        inner.history.push_back(delta.clone());
        while inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        if self.tx.receiver_count() > 0 {
            let text = serde_json::to_string(&Wire { kind: "delta", delta: &delta }).unwrap_or_default();
            let _ = self.tx.send(Arc::new(Live { delta, text: text.into() }));
        }
        Some(inner.seq)
    }

    /// Subscribes: what to send first, and the live receiver (taken under the same lock, so no
    /// delta falls between the two).
    pub fn subscribe(&self, since: Option<u64>, filter: &Filter) -> (Opening, broadcast::Receiver<Arc<Live>>) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let oldest = inner.history.front().map(|d| d.seq).unwrap_or(inner.seq + 1);
        let opening = match since {
            Some(s) if s <= inner.seq && s + 1 >= oldest => Opening::Resume {
                from: s,
                deltas: inner
                    .history
                    .iter()
                    .filter(|d| d.seq > s && filter.matches(d))
                    .map(|d| (**d).clone())
                    .collect(),
            },
            Some(s) if s == inner.seq => Opening::Resume { from: s, deltas: Vec::new() },
            _ => Opening::Snapshot {
                seq: inner.seq,
                entries: inner.current.values().filter(|d| filter.matches(d)).cloned().collect(),
            },
        };
        (opening, rx)
    }

    /// The current entries.
    pub fn current(&self) -> Vec<Delta> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).current.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_changes_make_deltas_and_resume_replays_what_was_missed() {
        let hub = Hub::default();
        assert_eq!(hub.update("n1", "node", "up", json!(null)), Some(1));
        assert_eq!(hub.update("n1", "node", "up", json!(null)), None);
        assert_eq!(hub.update("n1", "dedup", "pass", json!(null)), Some(2));
        assert_eq!(hub.update("n2", "node", "up", json!(null)), Some(3));
        // (since, filter, expected opening kind, expected seqs)
        let only_n2 = Filter { nodes: vec!["n2".into()], ..Filter::default() };
        let cases: Vec<(Option<u64>, Filter, &str, Vec<u64>)> = vec![
            (None, Filter::default(), "snapshot", vec![2, 1, 3]),
            (Some(1), Filter::default(), "resume", vec![2, 3]),
            (Some(3), Filter::default(), "resume", vec![]),
            (Some(1), only_n2.clone(), "resume", vec![3]),
            (None, only_n2, "snapshot", vec![3]),
            (Some(99), Filter::default(), "snapshot", vec![2, 1, 3]),
            (None, Filter { services: vec!["ded*".into()], ..Filter::default() }, "snapshot", vec![2]),
        ];
        for (i, (since, filter, kind, seqs)) in cases.into_iter().enumerate() {
            let (opening, _) = hub.subscribe(since, &filter);
            let (got_kind, got): (&str, Vec<u64>) = match opening {
                Opening::Snapshot { entries, .. } => ("snapshot", entries.iter().map(|d| d.seq).collect()),
                Opening::Resume { deltas, .. } => ("resume", deltas.iter().map(|d| d.seq).collect()),
            };
            assert_eq!((got_kind, got), (kind, seqs), "case {i}");
        }
    }

    #[test]
    fn retired_entries_leave_the_snapshot_but_not_the_history() {
        let hub = Hub::default();
        hub.update("n1", "incident:a", "open", json!(null));
        assert_eq!(hub.retire("n1", "incident:a", "resolved", json!(null)), Some(2));
        assert!(hub.current().is_empty());
        let (opening, _) = hub.subscribe(Some(0), &Filter { services: vec!["incident:*".into()], ..Filter::default() });
        let Opening::Resume { deltas, .. } = opening else { panic!("resume expected") };
        assert_eq!(deltas.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(), ["open", "resolved"]);
    }

    #[test]
    fn live_subscribers_get_deltas_and_too_old_resumes_get_a_snapshot() {
        let hub = Hub::default();
        let (_, mut rx) = hub.subscribe(None, &Filter::default());
        hub.update("n1", "node", "down", json!({"reason": "killed"}));
        let live = rx.try_recv().unwrap();
        assert_eq!(live.delta.status, "down");
        let wire: serde_json::Value = serde_json::from_str(live.text.as_str()).unwrap();
        assert_eq!(
            (wire["type"].as_str(), wire["seq"].as_u64(), wire["status"].as_str()),
            (Some("delta"), Some(1), Some("down"))
        );
        for i in 0..(HISTORY + 10) {
            hub.update("n1", "dedup", if i % 2 == 0 { "pass" } else { "fail" }, json!(null));
        }
        let (opening, _) = hub.subscribe(Some(1), &Filter::default());
        assert!(matches!(opening, Opening::Snapshot { .. }), "history no longer reaches seq 1");
        // The live receiver fell behind its buffer: it must be dropped, not grow.
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }
}
