//! Keeping cluster-wide configuration current on every node: reload on each broadcast of a
//! cluster topic (the fast path) and on a fixed poll (so a missed broadcast costs at most one
//! interval). Used by every service whose stored, versioned configuration every node serves
//! (router rules, aggregation jobs).

use std::future::Future;
use std::time::Duration;

/// Runs `reload` after every message on `topic` and every `every`, forever. Without a cluster
/// (one node), only the poll runs.
pub async fn reload_on<F, Fut>(cluster: Option<loom_cluster::Cluster>, topic: &str, every: Duration, mut reload: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut rx = match &cluster {
        Some(c) => c.subscribe(topic).await.ok(),
        None => None,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        match &mut rx {
            Some(r) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    m = r.recv() => if m.is_none() { rx = None; },
                }
            }
            None => {
                tick.tick().await;
            }
        }
        reload().await;
    }
}
