//! Table tests of the engine's tiers, and a property: expiry never changes a verdict (the
//! engine agrees with a model that forgets nothing) whatever the arrival order.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::PolicySpec;

fn policy(extra: Value) -> Arc<Policy> {
    let mut v = json!({"id": "t", "identity": {"fields": ["/device", "/seq"]}, "window": {"time": "10s"},
        "time": {"field": "/ts", "format": "epoch_ms"}});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    let spec: PolicySpec = serde_json::from_value(v).unwrap();
    Arc::new(Policy::compile(spec, 1).unwrap())
}

fn ev(device: &str, seq: i64, ts_s: i64) -> Value {
    json!({"device": device, "seq": seq, "ts": ts_s * 1000, "value": seq as f64})
}

fn run(e: &mut Engine, events: &[Value]) -> Vec<(Kind, Rule)> {
    events
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let input = e.policy.input(v, None, 0).unwrap();
            let o = e.check(&input, Origin::Id { id: format!("e{i}") }, None, true);
            let v = o.verdict.unwrap();
            (v.verdict, v.rule)
        })
        .collect()
}

use Kind::{Duplicate as D, Late as L, NearDuplicate as N, Unique as U};

#[test]
fn exact_tier_table() {
    let cases: Vec<(&str, Value, Vec<Value>, Vec<(Kind, Rule)>)> = vec![
        (
            "resend within the window",
            json!({}),
            vec![ev("a", 1, 0), ev("a", 1, 5)],
            vec![(U, Rule::Exact), (D, Rule::Exact)],
        ),
        (
            "resend after the window",
            json!({}),
            vec![ev("a", 1, 0), ev("a", 1, 11)],
            vec![(U, Rule::Exact), (U, Rule::Exact)],
        ),
        ("other key", json!({}), vec![ev("a", 1, 0), ev("b", 1, 0), ev("a", 2, 0)], vec![(U, Rule::Exact); 3]),
        (
            "out of order within lateness",
            json!({"window": {"time": "10s", "lateness": "30s"}}),
            vec![ev("a", 1, 20), ev("a", 2, 0), ev("a", 2, 3)],
            vec![(U, Rule::Exact), (U, Rule::Exact), (D, Rule::Exact)],
        ),
        (
            "late beyond lateness",
            json!({}),
            vec![ev("a", 1, 100), ev("a", 2, 50)],
            vec![(U, Rule::Exact), (L, Rule::Watermark)],
        ),
        (
            "missing identity",
            json!({}),
            vec![json!({"device": "a", "ts": 0}), json!({"device": "a", "ts": 0})],
            vec![(U, Rule::NoIdentity); 2],
        ),
        (
            "count window",
            json!({"window": {"count": 2}}),
            vec![ev("a", 1, 0), ev("b", 1, 0), ev("a", 1, 0), ev("c", 1, 0), ev("d", 1, 0), ev("a", 1, 0)],
            vec![
                (U, Rule::Exact),
                (U, Rule::Exact),
                (D, Rule::Exact),
                (U, Rule::Exact),
                (U, Rule::Exact),
                (U, Rule::Exact),
            ],
        ),
        (
            "ttl_reset extends a key's life",
            json!({"ttl_reset": true}),
            vec![ev("a", 1, 0), ev("a", 1, 8), ev("a", 1, 16), ev("a", 1, 40)],
            vec![(U, Rule::Exact), (D, Rule::Exact), (D, Rule::Exact), (U, Rule::Exact)],
        ),
        (
            "shed beyond max_keys",
            json!({"max_keys": 2, "overflow": "shed"}),
            vec![ev("a", 1, 0), ev("a", 2, 0), ev("a", 3, 0), ev("a", 1, 0)],
            vec![(U, Rule::Exact), (U, Rule::Exact), (U, Rule::Shed), (D, Rule::Exact)],
        ),
        (
            "bloom beyond max_keys",
            json!({"max_keys": 2}),
            vec![ev("a", 1, 0), ev("a", 2, 0), ev("a", 3, 0), ev("a", 3, 1), ev("a", 1, 1)],
            vec![(U, Rule::Exact), (U, Rule::Exact), (U, Rule::Bloom), (D, Rule::Bloom), (D, Rule::Exact)],
        ),
        (
            "bloom tier",
            json!({"tier": "bloom", "bloom": {"max_keys": 1000, "false_positive_rate": 0.001}}),
            vec![ev("a", 1, 0), ev("a", 1, 2), ev("a", 2, 2)],
            vec![(U, Rule::Bloom), (D, Rule::Bloom), (U, Rule::Bloom)],
        ),
        (
            "numeric tolerance",
            json!({"fuzzy": {"numeric": {"same": ["/device"], "time_field": "/ts", "within": "2s", "fields": {"/value": 0.5}}}}),
            vec![
                json!({"device": "a", "seq": 1, "ts": 0, "value": 10.0}),
                json!({"device": "a", "seq": 2, "ts": 1000, "value": 10.3}),
                json!({"device": "a", "seq": 3, "ts": 1000, "value": 11.0}),
                json!({"device": "b", "seq": 4, "ts": 1000, "value": 10.0}),
                json!({"device": "a", "seq": 5, "ts": 9000, "value": 10.0}),
            ],
            vec![(U, Rule::Exact), (N, Rule::Numeric), (U, Rule::Exact), (U, Rule::Exact), (U, Rule::Exact)],
        ),
        (
            "text near-duplicates",
            json!({"fuzzy": {"text": {"field": "/message", "threshold": 0.8}}}),
            vec![
                json!({"device": "a", "seq": 1, "ts": 0, "message": "Battery low on sensor 17 in the north wing, replace soon please"}),
                json!({"device": "a", "seq": 2, "ts": 0, "message": "battery low on sensor 17 in the north wing, replace soon please!"}),
                json!({"device": "a", "seq": 3, "ts": 0, "message": "Door opened in the south wing by an unknown badge holder"}),
            ],
            vec![(U, Rule::Exact), (N, Rule::Text), (U, Rule::Exact)],
        ),
        (
            "record matching within blocks",
            json!({"identity": {"fields": ["/id"]}, "fuzzy": {"record": {
                "fields": [{"field": "/name", "comparator": "jaro_winkler", "weight": 2},
                           {"field": "/dob", "comparator": "date", "scale": 30},
                           {"field": "/zip", "comparator": "exact"}],
                "threshold": 0.85, "blocking": [["/zip"], ["/name:3"]]}}}),
            vec![
                json!({"id": 1, "ts": 0, "name": "Jonathan Smith", "dob": "19800101", "zip": "2600"}),
                json!({"id": 2, "ts": 0, "name": "Jonathon Smith", "dob": "19800102", "zip": "2600"}),
                json!({"id": 3, "ts": 0, "name": "Maria Garcia", "dob": "19800101", "zip": "2600"}),
                json!({"id": 4, "ts": 0, "name": "Jonathan Smyth", "dob": "19800101", "zip": "9999"}),
                json!({"id": 5, "ts": 0, "name": "Xavier Smith", "dob": "19800101", "zip": "1111"}),
            ],
            // 4 is compared (same name block) but its zip differs: below the threshold; 5 shares no block
            vec![(U, Rule::Exact), (N, Rule::Record), (U, Rule::Exact), (U, Rule::Exact), (U, Rule::Exact)],
        ),
    ];
    for (name, extra, events, want) in cases {
        let mut e = Engine::new(policy(extra));
        assert_eq!(run(&mut e, &events), want, "{name}");
    }
}

#[test]
fn verdicts_name_the_first_occurrence() {
    let mut e = Engine::new(policy(json!({})));
    let a = e.policy.input(&ev("a", 1, 3), None, 0).unwrap();
    e.check(&a, Origin::Offset { topic: "t".into(), partition: 2, offset: 40 }, None, true);
    let v = e.check(&a, Origin::Offset { topic: "t".into(), partition: 2, offset: 41 }, None, true).verdict.unwrap();
    assert_eq!(v.of, Some(Origin::Offset { topic: "t".into(), partition: 2, offset: 40 }));
    assert_eq!(v.first_seen_ms, Some(3000));
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        json!({"verdict": "duplicate", "rule": "exact",
        "of": {"topic": "t", "partition": 2, "offset": 40}, "first_seen_ms": 3000})
    );
}

#[test]
fn dry_runs_change_nothing_and_snapshots_restore() {
    let p = policy(json!({"fuzzy": {"text": {"field": "/m", "threshold": 0.8}}, "max_keys": 3}));
    let mut e = Engine::new(p.clone());
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"device": "a", "seq": i % 4, "ts": i * 1000, "m": format!("hello world number {}", i % 3)}))
        .collect();
    let inputs: Vec<_> = events.iter().map(|v| p.input(v, None, 0).expect("usable")).collect();
    for i in &inputs[..3] {
        e.check(i, Origin::Id { id: "x".into() }, None, true);
    }
    let before = e.snapshot();
    for i in &inputs {
        e.check(i, Origin::Id { id: "dry".into() }, None, false);
    }
    assert_eq!(e.snapshot(), before, "a dry run leaves the state as it was");
    let mut back = Engine::restore(p.clone(), &before).unwrap();
    let a: Vec<_> = inputs[3..].iter().map(|i| e.check(i, Origin::Id { id: "y".into() }, None, true).verdict).collect();
    let b: Vec<_> =
        inputs[3..].iter().map(|i| back.check(i, Origin::Id { id: "y".into() }, None, true).verdict).collect();
    assert_eq!(a, b, "a restored engine decides the same");
    assert!(Engine::restore(p, b"garbage").is_err());
}

#[test]
fn keep_last_releases_the_latest_when_the_window_closes() {
    let mut e = Engine::new(policy(json!({"keep": "last"})));
    let p = e.policy.clone();
    let check = |e: &mut Engine, v: &Value, id: &str| {
        let input = p.input(v, None, 0).unwrap();
        e.check(&input, Origin::Id { id: id.into() }, Some(id.as_bytes().to_vec()), true)
    };
    assert!(check(&mut e, &ev("a", 1, 0), "first").superseded.is_none());
    let o = check(&mut e, &ev("a", 1, 2), "second");
    assert_eq!(o.superseded, Some((Origin::Id { id: "first".into() }, b"first".to_vec())));
    assert!(o.released.is_empty());
    let o = check(&mut e, &ev("b", 1, 30), "other");
    assert_eq!(o.released, vec![(Origin::Id { id: "second".into() }, b"second".to_vec())]);
    assert_eq!(e.drain_pending(), vec![(Origin::Id { id: "other".into() }, b"other".to_vec())]);
}

#[test]
fn a_megabyte_of_text_is_bounded() {
    let mut e = Engine::new(policy(json!({"fuzzy": {"text": {"field": "/m", "threshold": 0.9}}})));
    let big = json!({"device": "a", "seq": 1, "ts": 0, "m": "x".repeat(1 << 20)});
    let input = e.policy.input(&big, None, 0).unwrap();
    assert_eq!(input.text.as_ref().map(Vec::len), Some(crate::features::SIGNATURE));
    e.check(&input, Origin::Id { id: "big".into() }, None, true);
    assert!(e.stats().bytes < 10_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn expiry_never_changes_a_verdict(
        raw in proptest::collection::vec((0u8..6, 0u8..8, 0i64..120, 0i64..25), 1..300),
        lateness in 0i64..30,
    ) {
        let p = policy(json!({"window": {"time": "10s", "lateness": format!("{lateness}s")}}));
        let mut e = Engine::new(p.clone());
        // the model forgets nothing: key -> reference time; watermark = newest time seen
        let mut refs: HashMap<(u8, u8), i64> = HashMap::new();
        let mut wm = i64::MIN;
        for (i, (d, s, base, jitter)) in raw.iter().enumerate() {
            let ts = (1000 + base - jitter) * 1000;
            let v = json!({"device": d, "seq": s, "ts": ts});
            let want = if wm != i64::MIN && ts < wm - lateness * 1000 {
                Kind::Late
            } else {
                wm = wm.max(ts);
                match refs.get(&(*d, *s)) {
                    Some(r) if (ts - r).abs() <= 10_000 => Kind::Duplicate,
                    _ => {
                        refs.insert((*d, *s), ts);
                        Kind::Unique
                    }
                }
            };
            let input = p.input(&v, None, 0).unwrap();
            let got = e.check(&input, Origin::Id { id: i.to_string() }, None, true).verdict.unwrap().verdict;
            prop_assert_eq!(got, want, "event {} {:?}", i, v);
        }
        prop_assert!(e.stats().keys <= refs.len());
    }
}
