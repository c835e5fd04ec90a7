//! Engine tests: firing, lateness, versions, sessions, budgets, watermarks, checkpoints — and the
//! property that any disorder within the allowed lateness gives the in-order final results.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::window::WindowKind;

const S: i64 = 1_000;
const M: i64 = 60 * S;

fn spec(kind: WindowKind, lateness: i64, emit: Emit) -> EngineSpec {
    EngineSpec {
        window: WindowSpec::new(kind, 0, None).expect("valid"),
        aggregates: vec![(AggFn::Count, 0.0), (AggFn::Sum, 0.0), (AggFn::Max, 0.0)],
        allowed_lateness_ms: lateness,
        emit,
        per_key_watermark: false,
        idle_timeout_ms: 60 * S,
        max_open_windows: 1000,
    }
}

fn ev(key: &str, ts: i64, v: f64) -> Event {
    Event { key: key.into(), ts, inputs: vec![Input::None, Input::Number(v), Input::Number(v)] }
}

fn tumbling(lateness: i64) -> Engine {
    Engine::new(spec(WindowKind::Tumbling { size_ms: M }, lateness, Emit::Final))
}

/// (key, start, count, version, final)
fn brief(out: &[Emission]) -> Vec<(String, i64, u64, u32, bool)> {
    out.iter().map(|e| (e.key.clone(), e.window.start, e.count, e.version, e.is_final)).collect()
}

#[test]
fn a_window_fires_once_at_watermark_plus_lateness() {
    let mut e = tumbling(30 * S);
    for (ts, v) in [(S, 1.0), (20 * S, 2.0), (59 * S, 3.0)] {
        assert_eq!(e.ingest(&ev("a", ts, v), 0), Ok(None));
    }
    assert!(e.advance(0).is_empty());
    e.ingest(&ev("a", M + 29 * S, 1.0), 0).expect("counted");
    assert!(e.advance(0).is_empty(), "watermark 1m29s < end 1m + 30s");
    e.ingest(&ev("a", M + 30 * S, 1.0), 0).expect("counted");
    let out = e.advance(0);
    assert_eq!(brief(&out), vec![("a".into(), 0, 3, 1, true)]);
    assert_eq!(out[0].values, vec![json!(3), json!(6.0), json!(3.0)]);
    assert!(e.advance(0).is_empty(), "never twice");
}

#[test]
fn late_records_are_reported_with_window_and_watermark() {
    let mut e = tumbling(10 * S);
    e.ingest(&ev("a", 5 * S, 1.0), 0).expect("counted");
    e.ingest(&ev("a", M + 5 * S, 1.0), 0).expect("counted");
    // within lateness: the first window is still open
    assert_eq!(e.ingest(&ev("a", 50 * S, 1.0), 0), Ok(None));
    e.ingest(&ev("a", M + 20 * S, 1.0), 0).expect("counted");
    let fired = e.advance(0);
    assert_eq!(brief(&fired), vec![("a".into(), 0, 2, 1, true)]);
    let late = e.ingest(&ev("a", 30 * S, 1.0), 0).expect("not refused");
    assert_eq!(late, Some(Late { window: Window { start: 0, end: M }, watermark: M + 20 * S, partial: false }));
    assert_eq!(e.stats().late, 1);
    assert_eq!(e.stats().events, 5);
}

#[test]
fn updates_mode_versions_then_final() {
    let mut e = Engine::new(spec(WindowKind::Tumbling { size_ms: M }, 0, Emit::Updates));
    e.ingest(&ev("a", S, 1.0), 0).expect("counted");
    assert_eq!(brief(&e.advance(0)), vec![("a".into(), 0, 1, 1, false)]);
    assert!(e.advance(0).is_empty(), "nothing changed");
    e.ingest(&ev("a", 2 * S, 1.0), 0).expect("counted");
    assert_eq!(brief(&e.advance(0)), vec![("a".into(), 0, 2, 2, false)]);
    e.ingest(&ev("a", M, 1.0), 0).expect("counted");
    let out = e.advance(0);
    assert_eq!(brief(&out), vec![("a".into(), 0, 2, 3, true), ("a".into(), M, 1, 1, false)]);
}

#[test]
fn hopping_events_can_be_late_for_old_windows_only() {
    let mut e = Engine::new(spec(WindowKind::Hopping { size_ms: 2 * M, slide_ms: M }, 0, Emit::Final));
    e.ingest(&ev("a", 30 * S, 1.0), 0).expect("counted"); // windows [-1m,1m) [0,2m)
    e.ingest(&ev("a", M + 10 * S, 1.0), 0).expect("counted"); // watermark passes 1m
    let fired = e.advance(0);
    assert_eq!(brief(&fired), vec![("a".into(), -M, 1, 1, true)]);
    let late = e.ingest(&ev("a", 40 * S, 1.0), 0).expect("not refused").expect("late");
    assert_eq!(late.window, Window { start: -M, end: M });
    assert!(late.partial, "it still counts in [0, 2m)");
    e.ingest(&ev("a", 2 * M, 1.0), 0).expect("counted");
    let fired = e.advance(0);
    assert_eq!(brief(&fired), vec![("a".into(), 0, 3, 1, true)]);
}

#[test]
fn sessions_merge_and_close_after_the_gap() {
    let mut e = Engine::new(spec(WindowKind::Session { gap_ms: 10 * S }, 20 * S, Emit::Final));
    // 0 and 5s make [0, 15s); 30s opens [30s, 40s); 12s (within lateness) extends the first to [0, 22s)
    for ts in [0, 5 * S, 30 * S, 12 * S] {
        assert_eq!(e.ingest(&ev("a", ts, 1.0), 0), Ok(None));
    }
    assert!(e.advance(0).is_empty());
    assert_eq!(e.open_windows(), 2);
    // 21s bridges both sessions: [0, 40s) with all five events
    e.ingest(&ev("a", 21 * S, 1.0), 0).expect("counted");
    assert_eq!(e.open_windows(), 1);
    e.ingest(&ev("a", 60 * S, 1.0), 0).expect("counted");
    let out = e.advance(0);
    assert_eq!(brief(&out), vec![("a".into(), 0, 5, 1, true)]);
    assert_eq!(out[0].window, Window { start: 0, end: 40 * S });
    // an event that would extend a closed session is late
    let late = e.ingest(&ev("a", 15 * S, 1.0), 0).expect("not refused");
    assert!(late.is_some());
    assert_eq!(e.ingest(&ev("b", 50 * S, 1.0), 0), Ok(None), "other keys have their own sessions");
}

#[test]
fn the_window_budget_refuses_new_windows_but_not_existing_ones() {
    let mut s = spec(WindowKind::Tumbling { size_ms: M }, M, Emit::Final);
    s.max_open_windows = 2;
    let mut e = Engine::new(s);
    e.ingest(&ev("a", 0, 1.0), 0).expect("counted");
    e.ingest(&ev("b", 0, 1.0), 0).expect("counted");
    assert_eq!(e.ingest(&ev("c", 0, 1.0), 0), Err(Rejected::WindowBudget(2)));
    assert_eq!(e.ingest(&ev("a", S, 1.0), 0), Ok(None));
    assert_eq!(e.stats().rejected, 1);
    assert_eq!(e.open_windows(), 2);
}

#[test]
fn per_key_watermarks_do_not_let_a_slow_key_be_late() {
    let mut s = spec(WindowKind::Tumbling { size_ms: M }, 0, Emit::Final);
    s.per_key_watermark = true;
    s.idle_timeout_ms = 10 * S;
    let mut e = Engine::new(s);
    e.ingest(&ev("fast", 10 * M, 1.0), 0).expect("counted");
    // the slow device is minutes behind: with one partition watermark it would be late
    assert_eq!(e.ingest(&ev("slow", M, 1.0), 0), Ok(None));
    assert_eq!(e.ingest(&ev("slow", 2 * M, 1.0), 1), Ok(None));
    let out = e.advance(1);
    assert_eq!(brief(&out), vec![("slow".into(), M, 1, 1, true)]);
    // once the slow key is idle, the partition watermark closes its windows
    let out = e.advance(20 * S);
    assert_eq!(brief(&out), vec![("slow".into(), 2 * M, 1, 1, true)]);
}

#[test]
fn an_idle_partition_closes_by_the_job_floor() {
    let mut e = tumbling(0);
    e.ingest(&ev("a", S, 1.0), 0).expect("counted");
    assert!(e.advance(0).is_empty());
    e.set_floor(5 * M);
    assert_eq!(brief(&e.advance(0)), vec![("a".into(), 0, 1, 1, true)]);
    e.set_floor(M);
    assert_eq!(e.watermark(), 5 * M, "a floor never moves the watermark back");
}

#[test]
fn a_restored_snapshot_continues_exactly() {
    let events: Vec<Event> = (0..200).map(|i| ev(["a", "b", "c"][i % 3], (i as i64) * 997, i as f64)).collect();
    let mut whole = tumbling(5 * S);
    let mut out_whole = Vec::new();
    for e in &events {
        whole.ingest(e, 0).expect("counted");
        out_whole.extend(whole.advance(0));
    }
    let mut first = tumbling(5 * S);
    let mut out_split = Vec::new();
    for e in &events[..77] {
        first.ingest(e, 0).expect("counted");
        out_split.extend(first.advance(0));
    }
    let snap: Snapshot = serde_json::from_str(&serde_json::to_string(&first.snapshot()).expect("enc")).expect("dec");
    let mut second = Engine::restore(first.spec().clone(), snap, 0);
    for e in &events[77..] {
        second.ingest(e, 0).expect("counted");
        out_split.extend(second.advance(0));
    }
    assert_eq!(out_whole, out_split);
    assert_eq!(whole.stats(), second.stats());
}

#[test]
fn partial_states_merge_to_the_whole() {
    let s = spec(WindowKind::Tumbling { size_ms: M }, 0, Emit::Final);
    let events: Vec<Event> = (0..300).map(|i| ev(["a", "b"][i % 2], (i as i64) * 1_003, i as f64)).collect();
    let mut parts = Vec::new();
    for chunk in events.chunks(70) {
        let mut e = Engine::new(s.clone());
        e.spec.allowed_lateness_ms = i64::MAX / 4;
        for x in chunk {
            e.ingest(x, 0).expect("counted");
        }
        parts.extend(e.drain_partials());
    }
    let merged = merge_partials(&s, parts);
    let mut e = Engine::new(s.clone());
    for x in &events {
        e.ingest(x, 0).expect("counted");
    }
    for p in e.drain_partials() {
        let (count, states) = &merged[&(p.0.clone(), p.1)];
        assert_eq!(*count, p.2);
        assert_eq!(finish(&s, states, M), finish(&s, &p.3, M));
    }
}

/// Final emissions as comparable tuples, sorted by key and window.
fn finals(out: &[Emission]) -> Vec<(String, i64, i64, u64, Vec<Value>)> {
    let mut v: Vec<_> = out
        .iter()
        .filter(|e| e.is_final)
        .map(|e| (e.key.clone(), e.window.start, e.window.end, e.count, e.values.clone()))
        .collect();
    v.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    v
}

/// Same windows and counts; values equal, floats to 1e-9 relative.
fn same_finals(a: &[Emission], b: &[Emission]) -> Result<(), String> {
    let (a, b) = (finals(a), finals(b));
    if a.len() != b.len() {
        return Err(format!("{} vs {} final windows", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(&b) {
        if (&x.0, x.1, x.2, x.3) != (&y.0, y.1, y.2, y.3) {
            return Err(format!("{x:?} vs {y:?}"));
        }
        for (u, v) in x.4.iter().zip(&y.4) {
            let ok = match (u.as_f64(), v.as_f64()) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                _ => u == v,
            };
            if !ok {
                return Err(format!("{u} vs {v} in {x:?}"));
            }
        }
    }
    Ok(())
}

fn run_all(spec: &EngineSpec, events: &[Event]) -> (Vec<Emission>, EngineStats) {
    let mut e = Engine::new(spec.clone());
    let mut out = Vec::new();
    for x in events {
        e.ingest(x, 0).expect("within budget");
        out.extend(e.advance(0));
    }
    e.set_floor(i64::MAX / 4);
    out.extend(e.advance(0));
    (out, e.stats())
}

fn kinds() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1..5i64).prop_map(|m| WindowKind::Tumbling { size_ms: m * 10 * S }),
        (1..4i64).prop_map(|m| WindowKind::Hopping { size_ms: m * 20 * S, slide_ms: 10 * S }),
        (1..4i64).prop_map(|m| WindowKind::Session { gap_ms: m * 3 * S }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any arrival order where no event comes after one more than `lateness` newer than it
    /// gives exactly the final results of in-order input, and nothing is late.
    #[test]
    fn disorder_within_lateness_gives_the_in_order_results(
        kind in kinds(),
        raw in proptest::collection::vec((0..4u8, 0..600_000i64, -1000..1000i32, 0..1_000_000i64), 1..300),
        lateness_s in 1..30i64,
    ) {
        let lateness = lateness_s * S;
        let mut s = spec(kind, lateness, Emit::Final);
        s.aggregates = vec![
            (AggFn::Count, 0.0), (AggFn::Sum, 0.0), (AggFn::Min, 0.0), (AggFn::Max, 0.0), (AggFn::Avg, 0.0),
            (AggFn::Stddev, 0.0), (AggFn::First, 0.0), (AggFn::Last, 0.0),
        ];
        let events: Vec<(Event, i64)> = raw.iter().map(|(k, ts, v, jitter)| {
            let x = f64::from(*v) / 8.0;
            let inputs = vec![Input::None, Input::Number(x), Input::Number(x), Input::Number(x), Input::Number(x),
                              Input::Number(x), Input::Json(json!(x)), Input::Json(json!(x))];
            (Event { key: format!("k{k}"), ts: *ts, inputs }, jitter % lateness)
        }).collect();
        let mut in_order: Vec<Event> = events.iter().map(|(e, _)| e.clone()).collect();
        in_order.sort_by_key(|e| e.ts);
        // arrival order: by ts + jitter, jitter < lateness
        let mut shuffled = events.clone();
        shuffled.sort_by_key(|(e, j)| e.ts + j);
        let shuffled: Vec<Event> = shuffled.into_iter().map(|(e, _)| e).collect();
        let (a, sa) = run_all(&s, &in_order);
        let (b, sb) = run_all(&s, &shuffled);
        prop_assert_eq!(sa.late, 0);
        prop_assert_eq!(sb.late, 0);
        prop_assert_eq!(same_finals(&a, &b), Ok(()));
        let counted: u64 = finals(&a).iter().map(|f| f.3).sum();
        let per_event = match kind { WindowKind::Hopping { size_ms, slide_ms } => (size_ms / slide_ms) as u64, _ => 1 };
        prop_assert_eq!(counted, raw.len() as u64 * per_event);
    }
}

#[test]
fn a_floor_and_key_marks_survive_a_checkpoint() {
    let mut e = tumbling(0);
    e.ingest(&ev("a", 30 * S, 1.0), 0).expect("counted");
    e.set_floor(2 * M);
    assert_eq!(e.advance(0).len(), 1, "the idle floor closed [0, 1m)");
    let snap: Snapshot = serde_json::from_str(&serde_json::to_string(&e.snapshot()).expect("enc")).expect("dec");
    assert_eq!(snap.watermark(), 2 * M);
    let mut back = Engine::restore(e.spec().clone(), snap, 0);
    assert!(back.ingest(&ev("a", 45 * S, 1.0), 0).expect("not refused").is_some(), "still late after a reload");

    let mut s = spec(WindowKind::Tumbling { size_ms: M }, 0, Emit::Final);
    s.per_key_watermark = true;
    let mut k = Engine::new(s.clone());
    k.ingest(&ev("d", 30 * S, 1.0), 0).expect("counted");
    k.ingest(&ev("d", 2 * M, 1.0), 0).expect("counted");
    assert_eq!(k.advance(0).len(), 1);
    k.ingest(&ev("d", 2 * M + 5 * S, 1.0), 0).expect("counted");
    let mut back = Engine::restore(s, k.snapshot(), 0);
    assert!(back.ingest(&ev("d", 40 * S, 1.0), 0).expect("not refused").is_some(), "the key's mark survived");
}
