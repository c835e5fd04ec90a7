//! A rolling restart under load (issue #20): three nodes on the shared stores (PostgreSQL,
//! Kafka), the Event Router routing a continuous stream and the Schema Registry taking
//! registrations through every node, while each node in turn is stopped with SIGTERM, started
//! again on its address and waited for. Counted: every produced event routed (at least once),
//! every acknowledged registration readable on every node afterwards, and the health stream of
//! the other nodes showing each node leave and come back.

#![allow(clippy::print_stderr)] // the run reports what it counted

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use loom_kafka::admin::ensure_topics;
use loom_testkit::cluster::{CLUSTER_HTTP, member_options, start_member, start_member_on, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/kafka.rs"]
mod kafka;

use kafka::{client_producer, kafka_section, prefix, produce, read_all, router_env};

const ROUTER: u16 = 8013;
const REGISTRY: u16 = 8010;
const SETTLE: Duration = Duration::from_secs(30);

/// Every `node` status streamed by one node's `/ws/health`, with arrival times.
fn record_nodes(ip: &str) -> (Arc<std::sync::Mutex<Vec<(Instant, String, String)>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<std::sync::Mutex<Vec<(Instant, String, String)>>> = Arc::default();
    let sink = seen.clone();
    let url = format!("ws://{ip}:{CLUSTER_HTTP}/ws/health?service=node");
    // Reconnects when its node restarts (the snapshot then says where things stand).
    let task = tokio::spawn(async move {
        loop {
            if let Ok((mut ws, _)) = connect_async(url.as_str()).await {
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(t) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                    let entries = match v["type"].as_str() {
                        Some("snapshot") => v["entries"].as_array().cloned().unwrap_or_default(),
                        _ => vec![v],
                    };
                    for e in entries {
                        if let (Some(n), Some(s)) = (e["node"].as_str(), e["status"].as_str()) {
                            sink.lock().unwrap().push((Instant::now(), n.to_owned(), s.to_owned()));
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (seen, task)
}

#[tokio::test]
async fn a_rolling_restart_under_load_loses_no_event_and_no_registration() {
    let p = prefix("rolling");
    ensure_topics(&kafka_section(), &[&format!("{p}.in")], 6).await.unwrap();
    let db = infra::fresh_postgres_database("rolling").await;
    let cookie = format!("rolling-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| -> NodeOptions {
        router_env(member_options(&cookie, seeds), &p).env("LOOM_DATABASE_URL", &db)
    };
    let names = ["g1", "g2", "g3"];
    let first = start_member(names[0], opts(&[])).await;
    let second = start_member(names[1], opts(&[&first])).await;
    let third = start_member(names[2], opts(&[&first])).await;
    let mut nodes: Vec<Option<LoomNode>> = vec![Some(first), Some(second), Some(third)];
    let ips: Vec<String> = nodes.iter().map(|n| n.as_ref().unwrap().address.ip.clone()).collect();
    {
        let refs: Vec<&LoomNode> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
        wait_up(&refs, &names, SETTLE).await;
    }
    let rule = json!({"id": "all", "match": "true", "actions": [{"route": {"topics": [format!("{p}.out")]}}]});
    let r = http().post(format!("http://{}:{ROUTER}/rules", ips[0])).json(&rule).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let router_stats = |ip: String| async move {
        let r = http().get(format!("http://{ip}:{ROUTER}/stats")).send().await.ok()?;
        r.json::<Value>().await.ok()
    };
    let spread = || async {
        let mut total = 0;
        for ip in &ips {
            let st = router_stats(ip.clone()).await?;
            if st["ruleset_version"].as_i64()? < 1 {
                return None;
            }
            total += st["consumer"]["assigned"].as_array()?.len();
        }
        (total == 6).then_some(())
    };
    eventually("the rule on every node and six partitions assigned", Duration::from_secs(60), spread).await;

    let recorders: Vec<_> = ips.iter().map(|ip| record_nodes(ip)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Load 1: a continuous stream of events, each acknowledged by the broker.
    let producing = {
        let (stop, input) = (stop.clone(), format!("{p}.in"));
        tokio::spawn(async move {
            let producer = client_producer();
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                produce(&producer, &input, &format!("k{i}"), json!({"i": i}).to_string().as_bytes()).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            i
        })
    };
    // Load 2: registrations through every node in turn; a node that is down is skipped.
    let registering = {
        let (stop, ips) = (stop.clone(), ips.clone());
        tokio::spawn(async move {
            let mut acked: Vec<(String, i64)> = Vec::new();
            let (mut k, mut refused) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let subject = format!("roll-{k}");
                let schema = json!({"type": "object", "properties": {format!("f{k}"): {"type": "integer"}}});
                let body = json!({"schemaType": "JSON", "schema": schema.to_string()});
                let url = format!("http://{}:{REGISTRY}/subjects/{subject}/versions", ips[k % ips.len()]);
                match http().post(url).json(&body).timeout(Duration::from_secs(10)).send().await {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        acked.push((subject, v["id"].as_i64().expect("an acknowledged registration has an id")));
                        k += 1;
                    }
                    _ => {
                        refused += 1;
                        k += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acked, refused)
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut restarts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = nodes[i].take().unwrap();
        let began = Instant::now();
        let (exit, address) = node.terminate_into_address(Duration::from_secs(45)).await;
        let exit = exit.unwrap_or_else(|| panic!("{name} did not exit within 45 s of SIGTERM"));
        assert!(exit.success(), "{name} exited with {exit} on SIGTERM");
        let stopped = began.elapsed();
        let seeds: Vec<String> = ips.iter().filter(|ip| **ip != address.ip).map(|ip| format!("{ip}:4697")).collect();
        let restarted = start_member_on(name, address, opts(&[]).env("LOOM_SEEDS", seeds.join(","))).await;
        nodes[i] = Some(restarted);
        let refs: Vec<&LoomNode> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
        wait_up(&refs, &names, SETTLE).await;
        eventually("six partitions assigned again", Duration::from_secs(60), spread).await;
        restarts.push((name, stopped, began.elapsed()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producing.await.unwrap();
    let (acked, refused) = registering.await.unwrap();
    assert!(produced > 200, "the stream ran: {produced} events");
    assert!(acked.len() > 20, "registrations ran: {} acknowledged", acked.len());

    // 0 routed events lost.
    let seen = eventually("every produced event routed", Duration::from_secs(120), || async {
        let out = read_all(&format!("{p}.out")).await;
        let ids: BTreeSet<i64> = out
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(r.payload.as_ref()?).ok()?["i"].as_i64())
            .collect();
        (ids.len() as i64 == produced).then_some((ids, out.len()))
    })
    .await;
    assert_eq!((*seen.0.first().unwrap(), *seen.0.last().unwrap()), (0, produced - 1));

    // 0 acknowledged registrations lost: each one readable by id and subject on every node.
    for ip in &ips {
        for (subject, id) in &acked {
            let r = http().get(format!("http://{ip}:{REGISTRY}/schemas/ids/{id}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "schema {id} ({subject}) on {ip}");
            let v: Value = http()
                .get(format!("http://{ip}:{REGISTRY}/subjects/{subject}/versions"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v, json!([1]), "{subject} on {ip}");
        }
    }

    // The health stream of the other nodes shows each node leave and come back.
    for (i, name) in names.iter().enumerate() {
        let watched = recorders.iter().enumerate().filter(|(j, _)| *j != i).any(|(_, (seen, _))| {
            let seen = seen.lock().unwrap();
            let left = seen.iter().position(|(_, n, s)| n == name && s != "up");
            left.is_some_and(|at| seen[at..].iter().any(|(_, n, s)| n == name && s == "up"))
        });
        assert!(watched, "no other node's health stream showed {name} leave and return");
    }
    for (_, task) in &recorders {
        task.abort();
    }
    eprintln!(
        "rolling restart: {produced} events produced, all routed ({} records, {} duplicates); {} registrations \
         acknowledged, all readable on every node ({refused} refused while a node was down); restarts (stop, total): {:?}",
        seen.1,
        seen.1 - produced as usize,
        acked.len(),
        restarts
    );
}
