//! Helpers for multi-process cluster tests: start nodes that join through a seed with a shared
//! cookie, read `/cluster/members` of a node, and wait for views to agree.

use std::time::Duration;

use serde_json::Value;

use crate::node::{Address, LoomNode, NodeOptions, PORTS, claim_address};
use crate::{eventually, http};

/// The health aggregator's port, where `/cluster/*` lives.
pub const CLUSTER_HTTP: u16 = 8030;

/// Options for a cluster member: the cookie, seeds (`ip:4697` of other nodes), fault injection
/// (for the debug counter) and extra environment.
pub fn member_options(cookie: &str, seeds: &[&LoomNode]) -> NodeOptions {
    let seeds: Vec<String> = seeds.iter().map(|n| format!("{}:4697", n.address.ip)).collect();
    let mut options = NodeOptions::default().env("LOOM_COOKIE", cookie).env("LOOM_FAULT_INJECTION", "true");
    if !seeds.is_empty() {
        options = options.env("LOOM_SEEDS", seeds.join(","));
    }
    options
}

/// Starts a member on a fresh address and waits until its ports are ready.
pub async fn start_member(name: &str, options: NodeOptions) -> LoomNode {
    start_member_on(name, claim_address(), options).await
}

pub async fn start_member_on(name: &str, address: Address, options: NodeOptions) -> LoomNode {
    let mut node = LoomNode::start_on(name, address, options);
    node.wait_ready(&PORTS, Duration::from_secs(30)).await;
    node
}

/// `GET /cluster/members` of `node`, or `None` when it does not answer.
pub async fn members(node: &LoomNode) -> Option<Vec<Value>> {
    let url = node.url(CLUSTER_HTTP, "/cluster/members");
    let resp = http().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    let body: Value = resp.json().await.ok()?;
    body["members"].as_array().cloned()
}

/// The state `node` reports for `member`.
pub async fn state_of(node: &LoomNode, member: &str) -> Option<String> {
    members(node).await?.iter().find(|m| m["name"] == member).and_then(|m| m["state"].as_str().map(str::to_owned))
}

/// Names of the members `node` sees `up`, sorted.
pub async fn up_names(node: &LoomNode) -> Option<Vec<String>> {
    let mut names: Vec<String> = members(node)
        .await?
        .iter()
        .filter(|m| m["state"] == "up")
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// Waits until every node in `observers` sees exactly `expected` up.
pub async fn wait_up(observers: &[&LoomNode], expected: &[&str], timeout: Duration) {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    for node in observers {
        let what = format!("{} to see {want:?} up", node.name);
        let want = want.clone();
        eventually(&what, timeout, || {
            let want = want.clone();
            async move { (up_names(node).await? == want).then_some(()) }
        })
        .await;
    }
}
