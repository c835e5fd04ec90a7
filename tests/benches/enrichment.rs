//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=<target>/release/loom cargo
//! bench -p loom-tests --bench enrichment`): Context Enrichment side by side with a baseline in
//! the same run, on the same 100,000 seeded events (uniform over inhabited-ish latitudes, one
//! instant each in 2026):
//!
//! 1. Per-lookup cost in this process: the nearest place (k-d tree on the unit sphere + haversine)
//!    and the time zone (tzf-rs), ns per lookup.
//! 2. Place + time context of 1,000-event batches: `POST /enrich` to a node (HTTP, JSON both ways,
//!    a blocking task per batch) against the same `enrich::context` calls in a plain in-process
//!    loop here, events/s.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use loom_context_enrichment::enrich::{self, Include, Pointers, Sources};
use loom_context_enrichment::holidays::Holidays;
use loom_context_enrichment::place::Places;
use loom_context_enrichment::time::Zones;
use loom_testkit::{LoomNode, NodeOptions};
use serde_json::{Value, json};

const EVENTS: usize = 100_000;
const BATCH: usize = 1_000;

fn events() -> Vec<Value> {
    let mut seed = 99u64;
    let mut unit = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..EVENTS)
        .map(|i| {
            let lat = 120.0 * unit() - 55.0;
            let lon = 360.0 * unit() - 180.0;
            json!({"device": format!("d{}", i % 500), "lat": lat, "lon": lon, "ts": 1_767_225_600_000_i64 + (i as i64) * 300_000})
        })
        .collect()
}

fn best_of<F: FnMut() -> f64>(rounds: usize, mut f: F) -> f64 {
    (0..rounds).map(|_| f()).fold(0.0, f64::max)
}

#[tokio::main]
async fn main() {
    let evs = events();
    let places = Places::load();
    let zones = Zones::load();
    let holidays = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".cache/loom/context/holidays.json"))
        .and_then(|p| Holidays::load(&p).ok());
    let coords: Vec<(f64, f64)> =
        evs.iter().map(|e| (e["lat"].as_f64().unwrap(), e["lon"].as_f64().unwrap())).collect();

    let t = Instant::now();
    let mut km = 0.0;
    for (a, o) in &coords {
        km += places.nearest(*a, *o).distance_km;
    }
    let place_ns = t.elapsed().as_nanos() as f64 / coords.len() as f64;
    let t = Instant::now();
    let mut n = 0;
    for (a, o) in &coords {
        n += zones.zone(*a, *o).len();
    }
    let tz_ns = t.elapsed().as_nanos() as f64 / coords.len() as f64;
    assert!(km > 0.0 && n > 0);

    let s = Sources {
        places: Some(&places),
        zones: Some(&zones),
        holidays: holidays.as_ref(),
        day_parts: [6, 12, 18, 22],
        holidays_missing: None,
        fences: &[],
        calendars: None,
        calendar_margin: chrono::Duration::zero(),
    };
    let (p, inc) = (Pointers::default(), Include { place: true, time: true, ..Include::NONE });
    let local = best_of(3, || {
        let t = Instant::now();
        for chunk in evs.chunks(BATCH) {
            let out: Vec<Value> = chunk.iter().map(|e| enrich::context(&s, e, &p, inc)).collect();
            assert_eq!(out.len(), chunk.len());
        }
        EVENTS as f64 / t.elapsed().as_secs_f64()
    });

    let node = LoomNode::start_ready("bench-enrich", NodeOptions::default()).await;
    let client = reqwest::Client::new();
    let bodies: Vec<String> =
        evs.chunks(BATCH).map(|c| json!({"events": c, "include": ["place", "time"]}).to_string()).collect();
    // warm-up: the node loads its data at first use
    let r = client
        .post(node.url(8023, "/enrich"))
        .header("content-type", "application/json")
        .body(bodies[0].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut http = 0f64;
    for _ in 0..2 {
        let t = Instant::now();
        for b in &bodies {
            let r = client
                .post(node.url(8023, "/enrich"))
                .header("content-type", "application/json")
                .body(b.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["count"].as_u64(), Some(BATCH as u64));
        }
        http = http.max(EVENTS as f64 / t.elapsed().as_secs_f64());
    }
    println!("1. per lookup, {EVENTS} points, one thread: place {place_ns:.0} ns, time zone {tz_ns:.0} ns");
    println!(
        "2. place + time context, batches of {BATCH}: POST /enrich {http:.0} events/s vs in-process loop {local:.0} events/s — ratio {:.2}",
        http / local
    );
}
