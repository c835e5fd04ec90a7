//! Clusters of real `loom` processes on their own loopback addresses, with the documented ports
//! and the default cluster port: convergence, failure detection (kill -9 and SIGSTOP), rejoin,
//! key re-homing and scale-out, a wrong cookie, garbage on the cluster port, and forged or
//! replayed gossip.

// Tests print what they measured (convergence and detection times, the moved fraction).
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loom_testkit::cluster::{CLUSTER_HTTP, member_options, members, start_member, start_member_on, state_of, wait_up};
use loom_testkit::{LoomNode, eventually, http};
use serde_json::{Value, json};

/// The detection bound the issue asks for with default settings, and the convergence bound.
const BOUND: Duration = Duration::from_secs(5);
/// Generous bound for "eventually" steps that are not the subject of a test.
const SETTLE: Duration = Duration::from_secs(20);

fn cookie(test: &str) -> String {
    format!("cookie-{test}-{}", std::process::id())
}

async fn owners(node: &LoomNode, keys: &[String]) -> Vec<(String, String)> {
    let resp = http()
        .post(node.url(CLUSTER_HTTP, "/cluster/owners"))
        .json(&json!({ "service": "health-aggregator", "keys": keys }))
        .send()
        .await
        .expect("owners answers");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["owners"]
        .as_array()
        .expect("owners")
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
        .collect()
}

async fn counter(node: &LoomNode, key: &str, add: Option<u64>) -> Value {
    let url = node.url(CLUSTER_HTTP, &format!("/cluster/debug/counter/{key}"));
    let req = match add {
        Some(by) => http().post(url).json(&json!({ "by": by })),
        None => http().get(url),
    };
    let resp = req.send().await.expect("counter answers");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i}")).collect()
}

#[tokio::test]
async fn three_nodes_converge_detect_kill_and_stop_and_rehome_keys() {
    let c = cookie("three");
    let n1 = start_member("n1", member_options(&c, &[])).await;
    let n2 = start_member("n2", member_options(&c, &[&n1])).await;
    let n3 = start_member("n3", member_options(&c, &[&n1])).await;
    let started = Instant::now();
    wait_up(&[&n1, &n2, &n3], &["n1", "n2", "n3"], BOUND).await;
    let converged = started.elapsed();

    // Every node agrees on every key's owner, and the owners are spread over all three.
    let keys = keys(300);
    let from_n1 = owners(&n1, &keys).await;
    assert_eq!(from_n1, owners(&n2, &keys).await);
    assert_eq!(from_n1, owners(&n3, &keys).await);
    for name in ["n1", "n2", "n3"] {
        let owned = from_n1.iter().filter(|(_, o)| o == name).count();
        assert!((50..=150).contains(&owned), "{name} owns {owned} of 300");
    }

    // kill -9: not up within the bound, down soon after; its keys move to the survivors.
    n3.signal("KILL");
    let killed = Instant::now();
    wait_up(&[&n1, &n2], &["n1", "n2"], BOUND).await;
    let detected = killed.elapsed();
    eventually("n3 declared down on n1", SETTLE, || async { (state_of(&n1, "n3").await? == "down").then_some(()) })
        .await;
    let after = owners(&n1, &keys).await;
    for ((key, before), (_, now)) in from_n1.iter().zip(&after) {
        assert_ne!(now, "n3", "{key} still owned by the dead node");
        if before != "n3" {
            assert_eq!(before, now, "{key} moved although its owner lives");
        }
    }

    // SIGSTOP: a hung peer is detected too, and comes back after SIGCONT.
    n2.signal("STOP");
    let stopped = Instant::now();
    eventually("n1 to stop counting n2 up", BOUND, || async { (state_of(&n1, "n2").await? != "up").then_some(()) })
        .await;
    let hung = stopped.elapsed();
    n2.signal("CONT");
    wait_up(&[&n1, &n2], &["n1", "n2"], SETTLE).await;
    eprintln!("converged in {converged:?}; kill -9 seen in {detected:?}; SIGSTOP seen in {hung:?}");
}

#[tokio::test]
async fn a_restarted_node_rejoins_with_a_new_generation() {
    let c = cookie("restart");
    let n1 = start_member("n1", member_options(&c, &[])).await;
    let n2 = start_member("n2", member_options(&c, &[&n1])).await;
    wait_up(&[&n1, &n2], &["n1", "n2"], BOUND).await;
    let generation = |ms: Vec<Value>| ms.iter().find(|m| m["name"] == "n2").map(|m| m["generation"].as_u64().unwrap());
    let first = generation(members(&n1).await.unwrap()).unwrap();

    let address = n2.kill_into_address().await;
    wait_up(&[&n1], &["n1"], BOUND).await;
    let n2 = start_member_on("n2", address, member_options(&c, &[&n1])).await;
    wait_up(&[&n1, &n2], &["n1", "n2"], BOUND).await;
    let second = generation(members(&n1).await.unwrap()).unwrap();
    assert!(second > first, "a restart has a fresh generation: {first} then {second}");
}

#[tokio::test]
async fn a_fourth_node_takes_about_a_quarter_of_keys_and_state_follows_by_hand_off() {
    let c = cookie("scale");
    let n1 = start_member("n1", member_options(&c, &[])).await;
    let n2 = start_member("n2", member_options(&c, &[&n1])).await;
    let n3 = start_member("n3", member_options(&c, &[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["n1", "n2", "n3"], BOUND).await;
    let nodes = [&n1, &n2, &n3];

    // Counts through every node: each request is served by the key's owner.
    let counted = keys(60);
    for (i, key) in counted.iter().enumerate() {
        let via = nodes[i % 3];
        let reply = counter(via, key, Some(i as u64 + 1)).await;
        let owner = &owners(via, std::slice::from_ref(key)).await[0].1;
        assert_eq!(reply["served_by"], owner.as_str(), "{reply}");
        assert_eq!(reply["value"], i as u64 + 1);
    }
    let probe = keys(2000);
    let before = owners(&n1, &probe).await;

    let n4 = start_member("n4", member_options(&c, &[&n2])).await;
    wait_up(&[&n1, &n2, &n3, &n4], &["n1", "n2", "n3", "n4"], BOUND).await;
    let after = owners(&n1, &probe).await;
    assert_eq!(after, owners(&n4, &probe).await, "n1 and n4 agree on owners");
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b.1 != a.1).collect();
    for (b, a) in &moved {
        assert_eq!(a.1, "n4", "{} moved from {} to {} instead of to the new node", b.0, b.1, a.1);
    }
    let fraction = moved.len() as f64 / probe.len() as f64;
    assert!((0.18..=0.32).contains(&fraction), "adding a 4th node moved {fraction} of the keys, want ~0.25");

    // After hand-off every count is intact, read through any node, served by the new owner.
    let all = [&n1, &n2, &n3, &n4];
    for (i, key) in counted.iter().enumerate() {
        let via = all[i % 4];
        let want = i as u64 + 1;
        let reply = eventually(&format!("{key} = {want} via {}", via.name), SETTLE, || async move {
            let reply = counter(via, key, None).await;
            (reply["value"] == want).then_some(reply)
        })
        .await;
        let owner = &owners(via, std::slice::from_ref(key)).await[0].1;
        assert_eq!(reply["served_by"], owner.as_str());
    }
    eprintln!("a fourth node moved {:.3} of {} keys", fraction, probe.len());
}

#[tokio::test]
async fn a_wrong_cookie_stays_out_and_both_sides_say_why() {
    let n1 = start_member("n1", member_options(&cookie("right"), &[])).await;
    let n2 = start_member("n2", member_options(&cookie("wrong"), &[&n1])).await;
    eventually("n1 logs the rejected gossip", SETTLE, || async {
        n1.stdout().contains("authentication failed (a node with a different LOOM_COOKIE?)").then_some(())
    })
    .await;
    eventually("n2 logs that it was rejected", SETTLE, || async {
        n2.stdout().contains("rejected our gossip: authentication failed").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in [&n1, &n2] {
        let names: Vec<Value> = members(node).await.unwrap().iter().map(|m| m["name"].clone()).collect();
        assert_eq!(names, [json!(node.name)], "{} sees only itself", node.name);
    }
}

#[tokio::test]
async fn a_multi_node_config_without_a_cookie_does_not_start() {
    let mut node =
        LoomNode::start("nocookie", loom_testkit::NodeOptions::default().env("LOOM_SEEDS", "127.0.0.1:4697"));
    let status = node.wait_exit(SETTLE).await.expect("exits");
    assert_eq!(status.code(), Some(2), "{}", node.logs());
    assert!(node.stderr().contains("`cluster.cookie`: required when cluster.seeds is set"), "{}", node.stderr());
}

async fn metric(node: &LoomNode, outcome: &str) -> f64 {
    let text = http().get(node.url(CLUSTER_HTTP, "/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("loom_cluster_gossip_datagrams_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0.0)
}

#[tokio::test]
async fn garbage_on_the_cluster_port_crashes_nothing() {
    use rand::RngExt;
    use tokio::io::AsyncWriteExt;

    let c = cookie("garbage");
    let n1 = start_member("n1", member_options(&c, &[])).await;
    let n2 = start_member("n2", member_options(&c, &[&n1])).await;
    wait_up(&[&n1, &n2], &["n1", "n2"], BOUND).await;
    let target: SocketAddr = format!("{}:4697", n1.address.ip).parse().unwrap();

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = rand::rng();
    for i in 0..5000 {
        let len = rng.random_range(0..1500usize);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 2 == 0 && len > 4 {
            bytes[..4].copy_from_slice(b"LMG\x01"); // looks like a sealed datagram
        }
        let _ = udp.send_to(&bytes, target).await;
    }
    for i in 0..30 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(target).await {
            let bytes: Vec<u8> = if i % 3 == 0 {
                // a frame header announcing an enormous frame
                vec![0xff; 16]
            } else {
                (0..rng.random_range(1..65_536usize)).map(|_| rng.random()).collect()
            };
            let _ = tcp.write_all(&bytes).await;
            let _ = tcp.shutdown().await;
        }
    }
    assert!(metric(&n1, "malformed").await + metric(&n1, "bad_tag").await >= 4000.0);
    wait_up(&[&n1, &n2], &["n1", "n2"], SETTLE).await;
    let reply = counter(&n2, "after-garbage", Some(1)).await;
    assert_eq!(reply["value"], 1);
    for node in [&n1, &n2] {
        let ready = http().get(node.url(8010, "/ready")).send().await.unwrap().status();
        assert_eq!(ready, 200, "{} still serves", node.name);
    }
}

/// Gossip a node without the cookie might send: real foca messages (an announce of a new member
/// carrying the update "n2 is down"), sealed with the wrong key, unsealed, or replayed.
#[tokio::test]
async fn forged_or_replayed_gossip_can_neither_add_nor_kill_a_member() {
    use foca::{AccumulatingRuntime, Foca, Member, PostcardCodec, State};
    use loom_cluster::NodeId;
    use loom_cluster::seal::{Sealer, now_ms};
    use rand::SeedableRng;

    let c = cookie("forge");
    let n1 = start_member("n1", member_options(&c, &[])).await;
    let n2 = start_member("n2", member_options(&c, &[&n1])).await;
    wait_up(&[&n1, &n2], &["n1", "n2"], BOUND).await;

    let view = members(&n1).await.unwrap();
    let as_id = |m: &Value| NodeId {
        name: m["name"].as_str().unwrap().into(),
        addr: m["addr"].as_str().unwrap().parse().unwrap(),
        generation: m["generation"].as_u64().unwrap(),
        version: m["version"].as_str().unwrap().into(),
        services: serde_json::from_value(m["services"].clone()).unwrap(),
    };
    let n1_id = as_id(view.iter().find(|m| m["name"] == "n1").unwrap());
    let n2_id = as_id(view.iter().find(|m| m["name"] == "n2").unwrap());

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let evil = NodeId {
        name: "evil".into(),
        addr: udp.local_addr().unwrap(),
        generation: 1,
        version: "0.1.0".into(),
        services: vec![],
    };
    let mut foca = Foca::new(
        evil,
        foca::Config::new_lan(1.try_into().unwrap()),
        rand::rngs::StdRng::seed_from_u64(7),
        PostcardCodec,
    );
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_many([Member::new(n2_id.clone(), 0, State::Down)].into_iter(), true, &mut runtime).unwrap();
    while runtime.to_send().is_some() {}
    foca.announce(n1_id.clone(), &mut runtime).unwrap();
    let (_, packet) = runtime.to_send().expect("an announce packet");

    let rejected_before = metric(&n1, "bad_tag").await + metric(&n1, "malformed").await;
    let wrong = Sealer::new("not-the-cookie", "evil");
    for nonce in 0..20u64 {
        udp.send_to(&wrong.seal(now_ms(), nonce, &packet), n1_id.addr).await.unwrap();
        udp.send_to(&packet, n1_id.addr).await.unwrap();
    }
    eventually("n1 counts the forged datagrams", SETTLE, || async {
        (metric(&n1, "bad_tag").await + metric(&n1, "malformed").await >= rejected_before + 40.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let names: Vec<Value> = members(&n1).await.unwrap().iter().map(|m| m["name"].clone()).collect();
    assert_eq!(names, [json!("n1"), json!("n2")], "no forged member");
    assert_eq!(state_of(&n1, "n2").await.unwrap(), "up");
    assert_eq!(state_of(&n2, "n2").await.unwrap(), "up");

    // Captured traffic is useless too: a stale copy is refused, and so is any second copy.
    let right = Sealer::new(&c, "evil");
    let stale = right.seal(now_ms() - 60_000, 1, &packet);
    udp.send_to(&stale, n1_id.addr).await.unwrap();
    eventually("a stale datagram is refused", SETTLE, || async { (metric(&n1, "stale").await >= 1.0).then_some(()) })
        .await;
    assert_eq!(state_of(&n1, "n2").await.unwrap(), "up");

    // Control: the same message sealed with the cookie does take effect once (so the forgery
    // above was a real attack), and its replay is refused.
    let genuine = right.seal(now_ms(), 2, &packet);
    udp.send_to(&genuine, n1_id.addr).await.unwrap();
    udp.send_to(&genuine, n1_id.addr).await.unwrap();
    eventually("the replay is refused", SETTLE, || async { (metric(&n1, "replayed").await >= 1.0).then_some(()) })
        .await;
    eventually("the authenticated announce is heard", SETTLE, || async {
        members(&n1).await?.iter().any(|m| m["name"] == "evil").then_some(())
    })
    .await;
}
