//! The aggregation core against a plain `HashMap` fold over the same events, in one run:
//! 1,000,000 events, 1,000 keys, 1-minute tumbling windows, count/sum/avg/max, arrival with up
//! to 20 s of disorder and a 30 s lateness. Both take the same keyed events (key text, time,
//! value). The fold computes per-(key, window) count, sum and max with no watermark, lateness,
//! late detection, budget, checkpointable state or emission — the floor of what any windowed
//! aggregation costs. Prints events/s for both and the ratio (median of 5 runs).
//!
//!     cargo bench -p loom-streams --bench engine
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use loom_streams::aggregate::AggFn;
use loom_streams::{Emit, Engine, EngineSpec, Event, Input, WindowKind, WindowSpec};

const EVENTS: usize = 1_000_000;
const KEYS: u64 = 1_000;

fn events() -> Vec<(u64, i64, f64)> {
    let mut x: u64 = 42;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let mut v: Vec<(i64, (u64, i64, f64))> = (0..EVENTS)
        .map(|i| {
            let ts = (i as i64) * 3 + (next() % 1000) as i64; // ~50 min of data
            let jitter = (next() % 20_000) as i64;
            (ts + jitter, (next() % KEYS, ts, (next() % 1000) as f64 / 8.0))
        })
        .collect();
    v.sort_by_key(|e| e.0);
    v.into_iter().map(|(_, e)| e).collect()
}

fn spec() -> EngineSpec {
    EngineSpec {
        window: WindowSpec::new(WindowKind::Tumbling { size_ms: 60_000 }, 0, None).expect("valid"),
        aggregates: vec![(AggFn::Count, 0.0), (AggFn::Sum, 0.0), (AggFn::Avg, 0.0), (AggFn::Max, 0.0)],
        allowed_lateness_ms: 30_000,
        emit: Emit::Final,
        per_key_watermark: false,
        idle_timeout_ms: 60_000,
        max_open_windows: 1_000_000,
    }
}

fn engine_run(prepared: &[Event]) -> (f64, usize) {
    let started = Instant::now();
    let mut e = Engine::new(spec());
    let mut finals = 0;
    for (i, ev) in prepared.iter().enumerate() {
        let _ = e.ingest(ev, 0);
        if i % 2000 == 1999 {
            finals += e.advance(0).len();
        }
    }
    e.set_floor(i64::MAX / 4);
    finals += e.advance(0).len();
    (prepared.len() as f64 / started.elapsed().as_secs_f64(), black_box(finals))
}

fn fold_run(prepared: &[Event]) -> (f64, usize) {
    let started = Instant::now();
    // The same keyed events; looked up by &str so a hit allocates nothing (the fastest plain fold).
    let mut m: HashMap<String, HashMap<i64, (u64, f64, f64)>> = HashMap::new();
    for ev in prepared {
        let Input::Number(v) = ev.inputs[1] else { continue };
        let w = ev.ts - ev.ts.rem_euclid(60_000);
        if !m.contains_key(ev.key.as_str()) {
            m.insert(ev.key.clone(), HashMap::new());
        }
        let e = m.get_mut(ev.key.as_str()).expect("present").entry(w).or_insert((0, 0.0, f64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.max(v);
    }
    (prepared.len() as f64 / started.elapsed().as_secs_f64(), black_box(m.values().map(HashMap::len).sum()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let raw = events();
    // The engine takes events already keyed and extracted (as the service hands them over).
    let prepared: Vec<Event> = raw
        .iter()
        .map(|(k, ts, v)| Event {
            key: format!("[\"k{k}\"]"),
            ts: *ts,
            inputs: vec![Input::None, Input::Number(*v), Input::Number(*v), Input::Number(*v)],
        })
        .collect();
    let (mut engine, mut fold) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (eps, windows_e) = engine_run(&prepared);
        let (fps, windows_f) = fold_run(&prepared);
        assert_eq!(windows_e, windows_f, "both see every (key, window)");
        engine.push(eps);
        fold.push(fps);
    }
    let (e, f) = (median(engine.clone()), median(fold.clone()));
    println!("events: {EVENTS}, keys: {KEYS}, windows: 1m tumbling, 4 aggregates");
    println!("engine      {:>12.0} events/s  (runs: {:?})", e, engine.iter().map(|x| *x as u64).collect::<Vec<_>>());
    println!("HashMap fold {:>11.0} events/s  (runs: {:?})", f, fold.iter().map(|x| *x as u64).collect::<Vec<_>>());
    println!("ratio engine / fold: {:.2}", e / f);
}
