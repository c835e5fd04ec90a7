//! The Event Router against the real broker (Tansu, started by the test command): events
//! produced with a real Kafka client are routed by CEL rules with transforms; schema-invalid,
//! unparseable, failing and unroutable events land in the DLQ with their error headers; a DLQ
//! replay after fixing the rule delivers them; bad rules are refused naming rule and position;
//! three nodes split the partitions and lose nothing when one is killed mid-stream; and a replay
//! whose node is killed resumes from its saved progress after the restart.
//! Measurements (duplicates after the kill) are printed for the closing notes.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use loom_kafka::Record;
use loom_kafka::admin::ensure_topics;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};

#[path = "support/kafka.rs"]
mod kafka;

use kafka::{
    OwnBroker, client_producer, header, kafka_section, prefix, produce, producer_for, read_all, read_all_from,
    router_env, section,
};

const ROUTER: u16 = 8013;

async fn call(method: reqwest::Method, node: &LoomNode, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(ROUTER, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn events_are_routed_transformed_dead_lettered_and_replayed() {
    let p = prefix("route");
    ensure_topics(&kafka_section(), &[&format!("{p}.in")], 3).await.unwrap();
    let node = LoomNode::start_ready("router", router_env(NodeOptions::default(), &p)).await;

    // A schema the validate action checks against (this node's own registry).
    let schema = json!({"type": "object", "required": ["device", "temp"], "properties": {"temp": {"type": "number"}}});
    let resp = http()
        .post(node.url(8010, "/subjects/readings-value/versions"))
        .json(&json!({"schemaType": "JSON", "schema": schema.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());

    // Bad rules are refused, naming the rule and where.
    let (s, e) = call(
        reqwest::Method::POST,
        &node,
        "/rules",
        Some(json!({"id": "bad", "match": "event.temp >", "actions": [{"drop": {}}]})),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (422, Some("invalid_rule")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("rule 'bad': match"), "{e}");
    let (s, e) = call(
        reqwest::Method::POST,
        &node,
        "/rules",
        Some(json!({"id": "bad2", "match": "true", "actions": [{"route": {"topics": ["ok", "no spaces allowed"]}}]})),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("actions[0].route.topics[1]"), "{e}");
    // A literal validate subject must exist in the registry when the rule is written.
    let (s, e) = call(
        reqwest::Method::POST,
        &node,
        "/rules",
        Some(json!({"id": "bad3", "match": "true", "actions": [{"validate": {"subject": "no-such-subject"}}]})),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (422, Some("invalid_rule")), "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(detail.contains("rule 'bad3': actions[0].validate.subject") && detail.contains("no-such-subject"), "{e}");

    let readings = json!({"id": "readings", "priority": 10, "match": "event.type == 'reading'", "actions": [
        {"validate": {"subject": "readings-value"}},
        {"set": {"path": "/celsius", "value": "event.temp"}},
        {"remove": {"path": "/debug"}},
        {"header": {"name": "x-routed-by", "value": "'readings'"}},
        {"key": {"value": "event.device"}},
        {"route": {"topics": [format!("{p}.readings.{{event.site}}")]}}
    ]});
    for rule in [
        readings.clone(),
        json!({"id": "noise", "priority": 5, "match": "event.type == 'noise'", "actions": [{"drop": {}}]}),
        json!({"id": "boom", "priority": 5, "match": "event.type == 'boom'", "actions": [{"set": {"path": "/x", "value": "event.missing.field"}}, {"route": {"topics": [format!("{p}.never")]}}]}),
    ] {
        let (s, v) = call(reqwest::Method::POST, &node, "/rules", Some(rule)).await;
        assert_eq!(s, 201, "{v}");
    }

    // /rules/test shows decisions without producing.
    let (s, t) = call(
        reqwest::Method::POST,
        &node,
        "/rules/test",
        Some(json!({"events": [
            {"value": {"type": "reading", "device": "d1", "site": "a", "temp": 21.5}},
            {"value": {"type": "noise"}}
        ]})),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["results"][0]["decision"], "route", "{t}");
    assert_eq!(t["results"][0]["outputs"][0]["topic"], format!("{p}.readings.a"));
    assert_eq!(t["results"][1]["decision"], "drop");

    let producer = client_producer();
    let input = format!("{p}.in");
    for i in 0..20 {
        let site = if i % 2 == 0 { "a" } else { "b" };
        let v =
            json!({"type": "reading", "device": format!("d{i}"), "site": site, "temp": 20 + i, "debug": "x", "n": i});
        produce(&producer, &input, &format!("k{i}"), v.to_string().as_bytes()).await;
    }
    for i in 0..3 {
        let v = json!({"type": "reading", "device": format!("bad{i}"), "site": "a", "temp": format!("{}", 30 + i), "n": 100 + i});
        produce(&producer, &input, "bad", v.to_string().as_bytes()).await;
    }
    produce(&producer, &input, "u1", b"not json {").await;
    produce(&producer, &input, "u2", &[0xff, 0xfe, 0x00]).await;
    produce(&producer, &input, "n1", json!({"type": "noise"}).to_string().as_bytes()).await;
    produce(&producer, &input, "b1", json!({"type": "boom"}).to_string().as_bytes()).await;
    produce(&producer, &input, "o1", json!({"type": "other"}).to_string().as_bytes()).await;

    // Routed with the transforms.
    let routed = eventually("20 routed readings", Duration::from_secs(60), || async {
        let mut all = read_all(&format!("{p}.readings.a")).await;
        all.extend(read_all(&format!("{p}.readings.b")).await);
        (all.len() >= 20).then_some(all)
    })
    .await;
    assert_eq!(routed.len(), 20);
    for r in &routed {
        let v: Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
        assert_eq!(v["celsius"], v["temp"], "{v}");
        assert!(v.get("debug").is_none(), "{v}");
        assert_eq!(header(r, "x-routed-by").as_deref(), Some("readings"));
        assert_eq!(header(r, "origin").as_deref(), Some("test"), "original headers kept");
        assert_eq!(r.key.as_deref(), Some(v["device"].as_str().unwrap().as_bytes()));
        assert!(r.topic.ends_with(v["site"].as_str().unwrap()));
    }

    // Dead letters, with their headers.
    let dlq = eventually("7 dead letters", Duration::from_secs(30), || async {
        let all = read_all(&format!("{p}.dlq")).await;
        (all.len() >= 7).then_some(all)
    })
    .await;
    let by_class: BTreeMap<String, usize> = dlq.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(header(r, "loom.error.class").unwrap()).or_default() += 1;
        m
    });
    assert_eq!(
        by_class,
        BTreeMap::from([
            ("no_route".into(), 1),
            ("rule_error".into(), 1),
            ("schema_invalid".into(), 3),
            ("unparseable".into(), 2)
        ])
    );
    let invalid = dlq.iter().find(|r| header(r, "loom.error.class").as_deref() == Some("schema_invalid")).unwrap();
    assert_eq!(header(invalid, "loom.rule.id").as_deref(), Some("readings"));
    assert_eq!(header(invalid, "loom.rule.version").as_deref(), Some("1"));
    assert_eq!(header(invalid, "loom.source.topic").as_deref(), Some(input.as_str()));
    assert!(header(invalid, "loom.source.partition").unwrap().parse::<i32>().is_ok());
    assert!(header(invalid, "loom.source.offset").unwrap().parse::<i64>().is_ok());
    assert_eq!(header(invalid, "loom.attempts").as_deref(), Some("1"));
    assert!(header(invalid, "loom.first_failure_ms").unwrap().parse::<i64>().unwrap() > 0);
    assert!(header(invalid, "loom.error.message").unwrap().contains("readings-value"));
    assert_eq!(header(invalid, "origin").as_deref(), Some("test"));
    assert_eq!(invalid.key.as_deref(), Some(&b"bad"[..]));
    let unparseable: Vec<&Record> =
        dlq.iter().filter(|r| header(r, "loom.error.class").as_deref() == Some("unparseable")).collect();
    assert!(unparseable.iter().any(|r| r.payload.as_deref() == Some(&[0xff, 0xfe, 0x00][..])), "original bytes kept");

    // Browsing the DLQ by cause and rule.
    let (s, page) = call(reqwest::Method::GET, &node, "/dlq?cause=schema_invalid", None).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["entries"].as_array().unwrap().len(), 3, "{page}");
    assert_eq!(page["entries"][0]["rule"], "readings");
    assert_eq!(page["entries"][0]["source"]["topic"], input);
    let (_, page) = call(reqwest::Method::GET, &node, "/dlq?rule=boom", None).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1, "{page}");
    let (s, _) = call(reqwest::Method::GET, &node, "/dlq?limit=0", None).await;
    assert_eq!(s, 400);

    // Fix the rule (temperatures may arrive as strings), then replay the schema failures.
    let mut fixed = readings.clone();
    fixed["actions"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"set": {"path": "/temp", "value": "double(event.temp)"}}));
    let (s, v) = call(reqwest::Method::PUT, &node, "/rules/readings", Some(fixed)).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    let (s, dry) = call(
        reqwest::Method::POST,
        &node,
        "/replays",
        Some(json!({"source": "dlq", "filter": "headers['loom.error.class'] == 'schema_invalid'", "dry_run": true})),
    )
    .await;
    assert_eq!(s, 202, "{dry}");
    let dry_id = dry["id"].as_str().unwrap().to_owned();
    let done = eventually("dry run done", Duration::from_secs(30), || async {
        let (_, v) = call(reqwest::Method::GET, &node, &format!("/replays/{dry_id}"), None).await;
        (v["state"] != "running").then_some(v)
    })
    .await;
    assert_eq!(
        (done["state"].as_str(), done["progress"]["matched"].as_u64(), done["progress"]["delivered"].as_u64()),
        (Some("completed"), Some(3), Some(0)),
        "{done}"
    );

    let (s, job) = call(reqwest::Method::POST, &node, "/replays",
        Some(json!({"source": "dlq", "filter": "headers['loom.error.class'] == 'schema_invalid'", "target": "router", "rate_per_sec": 50}))).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}:{ROUTER}/ws/replays/{id}", node.address.ip)).await.unwrap();
    let mut last = Value::Null;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            last = serde_json::from_str(&t).unwrap();
        }
    }
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(last["progress"]["delivered"], 3, "{last}");
    let all = eventually("23 routed readings", Duration::from_secs(30), || async {
        let mut all = read_all(&format!("{p}.readings.a")).await;
        all.extend(read_all(&format!("{p}.readings.b")).await);
        (all.len() >= 23).then_some(all)
    })
    .await;
    let fixed_ones: Vec<Value> = all
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r.payload.as_ref().unwrap()).unwrap())
        .filter(|v| v["n"].as_i64().unwrap() >= 100)
        .collect();
    assert_eq!(fixed_ones.len(), 3);
    assert!(fixed_ones.iter().all(|v| v["temp"].is_f64()), "{fixed_ones:?}");

    // /route: the ingestion path without a Kafka client.
    let (s, r) = call(
        reqwest::Method::POST,
        &node,
        "/route",
        Some(json!({"events": [
            {"value": {"type": "reading", "device": "http1", "site": "a", "temp": 1}, "topic": input}
        ]})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["results"][0]["decision"], "route", "{r}");
    assert_eq!(r["results"][0]["delivered"][0][0], format!("{p}.readings.a"));
    let (s, _) = call(reqwest::Method::POST, &node, "/route", Some(json!({"events": []}))).await;
    assert_eq!(s, 400);

    let (_, stats) = call(reqwest::Method::GET, &node, "/stats", None).await;
    assert!(stats["consumer"]["assigned"].as_array().unwrap().len() == 3, "{stats}");
    assert!(stats["dead_lettered"].as_u64().unwrap() >= 7, "{stats}");
    let (_, topics) = call(reqwest::Method::GET, &node, "/topics", None).await;
    assert!(topics["rules"].as_array().unwrap().iter().any(|r| r["rule"] == "readings"), "{topics}");

    let metrics = http().get(node.url(ROUTER, "/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        "loom_kafka_consumed_total",
        "loom_kafka_produced_total",
        "loom_router_rule_events_total",
        "loom_kafka_in_flight",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
    let (ok, out) = loom_testkit::promtool(&metrics);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn three_nodes_split_partitions_and_a_killed_node_loses_nothing() {
    let p = prefix("split");
    ensure_topics(&kafka_section(), &[&format!("{p}.in")], 6).await.unwrap();
    let db = infra::fresh_postgres_database("router").await;
    let cookie = format!("router-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| router_env(member_options(&cookie, seeds), &p).env("LOOM_DATABASE_URL", &db);
    let n1 = start_member("r1", opts(&[])).await;
    let n2 = start_member("r2", opts(&[&n1])).await;
    let n3 = start_member("r3", opts(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["r1", "r2", "r3"], Duration::from_secs(15)).await;
    let rule = json!({"id": "all", "match": "true", "actions": [{"route": {"topics": [format!("{p}.out")]}}]});
    let (s, v) = call(reqwest::Method::POST, &n1, "/rules", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    // Every node has the rule (broadcast or the 2 s poll) and a share of the partitions.
    let nodes = [&n1, &n2, &n3];
    eventually("partitions spread over three nodes", Duration::from_secs(60), || async {
        let mut total = 0;
        for n in nodes {
            let (_, st) = call(reqwest::Method::GET, n, "/stats", None).await;
            let assigned = st["consumer"]["assigned"].as_array()?.len();
            if assigned == 0 || st["ruleset_version"].as_i64()? < 1 {
                return None;
            }
            total += assigned;
        }
        (total == 6).then_some(())
    })
    .await;

    let producer = client_producer();
    let input = format!("{p}.in");
    let total = 3000;
    for i in 0..total {
        produce(&producer, &input, &format!("k{i}"), json!({"i": i}).to_string().as_bytes()).await;
        if i == total / 3 {
            n3.signal("KILL");
        }
    }
    let seen = eventually("every event delivered at least once", Duration::from_secs(90), || async {
        let out = read_all(&format!("{p}.out")).await;
        let ids: BTreeSet<i64> = out
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(r.payload.as_ref()?).ok()?["i"].as_i64())
            .collect();
        (ids.len() == total).then_some((ids, out.len()))
    })
    .await;
    assert_eq!(seen.0.len(), total);
    assert_eq!(*seen.0.iter().next().unwrap(), 0);
    assert_eq!(*seen.0.iter().last().unwrap(), total as i64 - 1);
    // The survivors took over the killed node's partitions.
    let (_, st1) = call(reqwest::Method::GET, &n1, "/stats", None).await;
    let (_, st2) = call(reqwest::Method::GET, &n2, "/stats", None).await;
    let survivors =
        st1["consumer"]["assigned"].as_array().unwrap().len() + st2["consumer"]["assigned"].as_array().unwrap().len();
    assert_eq!(survivors, 6, "{st1} {st2}");
    eprintln!("delivered {} records for {total} events ({} duplicates after kill -9)", seen.1, seen.1 - total);
}

#[tokio::test]
async fn a_broker_outage_makes_the_router_unready_and_loses_nothing() {
    let broker = OwnBroker::start();
    let p = prefix("outage");
    let input = format!("{p}.in");
    eventually("own broker up", Duration::from_secs(15), || async {
        ensure_topics(&section(&broker.brokers), &[&input], 3).await.ok()
    })
    .await;
    let options = router_env(NodeOptions::default(), &p).env("LOOM_KAFKA_BROKERS", &broker.brokers);
    let node = LoomNode::start_ready("outage", options).await;
    let rule = json!({"id": "all", "match": "true", "actions": [{"route": {"topics": [format!("{p}.out")]}}]});
    assert_eq!(call(reqwest::Method::POST, &node, "/rules", Some(rule)).await.0, 201);
    let producer = producer_for(&broker.brokers);
    for i in 0..50 {
        produce(&producer, &input, &format!("k{i}"), json!({"i": i}).to_string().as_bytes()).await;
    }
    let out = format!("{p}.out");
    eventually("the first 50 routed", Duration::from_secs(60), || async {
        (read_all_from(&broker.brokers, &out).await.len() >= 50).then_some(())
    })
    .await;

    // The broker stops answering: the router says it is not ready, and why.
    broker.signal("STOP");
    let ready = |node: &LoomNode| {
        let url = node.url(ROUTER, "/ready");
        async move { http().get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    eventually("not ready while the broker is away", Duration::from_secs(30), || async {
        (ready(&node).await == 503).then_some(())
    })
    .await;
    let health: Value = http().get(node.url(ROUTER, "/health")).send().await.unwrap().json().await.unwrap();
    assert!(health.to_string().contains("kafka:reachable"), "{health}");
    // Events produced meanwhile wait in the client; nothing is lost once the broker is back.
    let sends = tokio::spawn({
        let (producer, input) = (producer.clone(), input.clone());
        async move {
            for i in 50..100 {
                produce(&producer, &input, &format!("k{i}"), json!({"i": i}).to_string().as_bytes()).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.signal("CONT");
    sends.await.unwrap();
    eventually("ready again", Duration::from_secs(30), || async { (ready(&node).await == 200).then_some(()) }).await;
    let ids = eventually("all 100 routed", Duration::from_secs(90), || async {
        let ids: BTreeSet<i64> = read_all_from(&broker.brokers, &out)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(r.payload.as_ref()?).ok()?["i"].as_i64())
            .collect();
        (ids.len() == 100).then_some(ids)
    })
    .await;
    assert_eq!(ids, (0..100).collect());
}

#[tokio::test]
async fn a_replay_resumes_after_its_node_is_killed() {
    let p = prefix("resume");
    let (source, target) = (format!("{p}.src"), format!("{p}.copy"));
    ensure_topics(&kafka_section(), &[&source, &format!("{p}.in")], 3).await.unwrap();
    let producer = client_producer();
    let total = 300;
    for i in 0..total {
        produce(&producer, &source, &format!("k{i}"), json!({"i": i}).to_string().as_bytes()).await;
    }
    // The job lives in PostgreSQL, so the restarted node (same name) finds it and resumes.
    let db = infra::fresh_postgres_database("replay_resume").await;
    let options = || router_env(NodeOptions::default(), &p).env("LOOM_DATABASE_URL", &db);
    let node = LoomNode::start_ready("resumer", options()).await;
    let spec = json!({"source": source, "target": target, "rate_per_sec": 60});
    let (s, job) = call(reqwest::Method::POST, &node, "/replays", Some(spec)).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let path = format!("/replays/{id}");
    // Kill it mid-way: some progress saved, far from done (300 records at 60/s take 5 s).
    let before = eventually("the replay under way", Duration::from_secs(30), || async {
        let (_, v) = call(reqwest::Method::GET, &node, &path, None).await;
        let delivered = v["progress"]["delivered"].as_u64()?;
        (delivered >= 60).then_some(delivered)
    })
    .await;
    assert!(before < total as u64, "the replay finished before the kill ({before})");
    let address = node.kill_into_address().await;
    let node = LoomNode::start_on("resumer", address, options());
    let mut node = node;
    node.wait_ready(&[ROUTER], Duration::from_secs(60)).await;
    let done = eventually("the replay completed after the restart", Duration::from_secs(90), || async {
        let (_, v) = call(reqwest::Method::GET, &node, &path, None).await;
        (v["state"] == "completed").then_some(v)
    })
    .await;
    let ids: BTreeSet<i64> = read_all(&target)
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(r.payload.as_ref()?).ok()?["i"].as_i64())
        .collect();
    assert_eq!(ids, (0..total as i64).collect(), "every source record copied at least once");
    let delivered = done["progress"]["delivered"].as_u64().unwrap();
    assert!(delivered >= total as u64, "{done}");
    // Resumed from the saved offsets, not started over (which would deliver `before` + 300).
    assert!(delivered < total as u64 + before, "the replay started over: {done}");
    eprintln!(
        "replay across a kill -9: {before} delivered before the kill, {delivered} in all ({} again after the restart)",
        delivered - total as u64
    );
}
