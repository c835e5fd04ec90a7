//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=$PWD/target/release/loom cargo
//! bench -p loom-tests --bench privacy`): the Privacy Filter's detection throughput and recall on
//! a mixed corpus (half structured events as JSON text, half free text; planted emails, phones,
//! cards, IBANs, SSNs, IPs and URLs with their spans), side by side with Presidio's pattern
//! recognizers (PyPI `presidio-analyzer`, no NLP model) on the same corpus in the same run.
//! Loom is measured twice: its engine in-process on one thread (as Presidio runs), and through
//! its real HTTP `/analyze` (`BENCH_CLIENTS` concurrent requests, default 16; request overhead
//! and the client's own work on the same 2 cores included). Needs `presidio-analyzer` in the test Python
//! (`$LOOM_TEST_PYTHON -m pip install presidio-analyzer==2.2.366`). `BENCH_DOCS` sets the size.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use loom_testkit::{LoomNode, NodeOptions, infra};
use serde_json::{Value, json};

const TYPES: [&str; 7] = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "URL"];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/privacy_presidio.py")
}

#[derive(Default)]
struct Score {
    planted: usize,
    found: usize,
    false_positives: usize,
}

/// Recall and false positives per type: a planted value counts as found when a finding of its
/// type overlaps its span; a finding of a benchmarked type that overlaps no planted value of
/// that type is a false positive.
fn score(docs: &[Value], findings: &[Vec<(String, u64, u64)>]) -> BTreeMap<&'static str, Score> {
    let mut out: BTreeMap<&'static str, Score> = TYPES.iter().map(|t| (*t, Score::default())).collect();
    for (doc, found) in docs.iter().zip(findings) {
        let labels: Vec<(String, u64, u64)> = doc["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["entity_type"].as_str().unwrap().to_owned(),
                    l["start"].as_u64().unwrap(),
                    l["end"].as_u64().unwrap(),
                )
            })
            .collect();
        let overlaps = |a: &(String, u64, u64), b: &(String, u64, u64)| a.0 == b.0 && a.1 < b.2 && b.1 < a.2;
        for l in &labels {
            let s = out.get_mut(l.0.as_str()).unwrap();
            s.planted += 1;
            if found.iter().any(|f| overlaps(f, l)) {
                s.found += 1;
            }
        }
        for f in found {
            if let Some(s) = out.get_mut(f.0.as_str())
                && !labels.iter().any(|l| overlaps(f, l))
            {
                s.false_positives += 1;
            }
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let clients: usize = std::env::var("BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let python = infra::python();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let generated =
        std::process::Command::new(&python).arg(script()).args(["gen", &n.to_string()]).arg(&corpus).status().unwrap();
    assert!(generated.success(), "corpus generation failed");
    let docs: Vec<Value> =
        std::fs::read_to_string(&corpus).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bytes: usize = docs.iter().map(|d| d["text"].as_str().unwrap().len()).sum();

    // Loom, over HTTP.
    let node = LoomNode::start_ready("bench-privacy", NodeOptions::default()).await;
    let url = node.url(8011, "/analyze");
    let client = reqwest::Client::new();
    let ask = |text: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = json!({"text": text, "language": "en", "entities": TYPES});
            let found: Value = client.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
            found
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["entity_type"].as_str().unwrap().to_owned(),
                        f["start"].as_u64().unwrap(),
                        f["end"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    for d in docs.iter().take(50) {
        ask(d["text"].as_str().unwrap().to_owned()).await; // warm up
    }
    let started = Instant::now();
    let loom: Vec<Vec<(String, u64, u64)>> =
        futures::stream::iter(docs.iter().map(|d| ask(d["text"].as_str().unwrap().to_owned())))
            .buffered(clients)
            .collect()
            .await;
    let loom_secs = started.elapsed().as_secs_f64();

    // Loom's engine in-process, one thread (as Presidio runs).
    let entities: Vec<String> = TYPES.iter().map(|t| (*t).to_owned()).collect();
    let texts: Vec<&str> = docs.iter().map(|d| d["text"].as_str().unwrap()).collect();
    let _ = loom_privacy_filter::detect(texts[0], &entities); // warm up (phone metadata)
    let started = Instant::now();
    let engine: Vec<Vec<(String, u64, u64)>> = texts
        .iter()
        .map(|t| {
            loom_privacy_filter::detect(t, &entities).into_iter().map(|(e, s, x)| (e, s as u64, x as u64)).collect()
        })
        .collect();
    let engine_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        score(&docs, &engine).values().map(|s| s.found).sum::<usize>(),
        score(&docs, &loom).values().map(|s| s.found).sum::<usize>()
    );

    // Presidio, in-process Python, same corpus.
    let out = std::process::Command::new(&python).arg(script()).arg("run").arg(&corpus).output().unwrap();
    assert!(
        out.status.success(),
        "Presidio run failed (is presidio-analyzer installed in {python}?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let presidio: Value = serde_json::from_slice(&out.stdout).unwrap();
    let presidio_secs = presidio["seconds"].as_f64().unwrap();
    let presidio_found: Vec<Vec<(String, u64, u64)>> = presidio["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fs| {
            fs.as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["entity_type"].as_str().unwrap().to_owned(),
                        f["start"].as_u64().unwrap(),
                        f["end"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .collect();

    let mb = bytes as f64 / 1e6;
    println!("corpus: {n} documents, {:.2} MB (half JSON events, half free text), 7 entity types", mb);
    let rate = |secs: f64| format!("{:>9.0} docs/s {:>7.2} MB/s", n as f64 / secs, mb / secs);
    println!("Loom engine in-process (1 thread):        {}", rate(engine_secs));
    println!("Loom /analyze over HTTP ({clients:>2} clients):     {}", rate(loom_secs));
    println!("Presidio recognizers (in-process, 1 thr): {}", rate(presidio_secs));
    println!("ratio, engine vs engine (in-process, 1 thread): {:.1}x", presidio_secs / engine_secs);
    println!("ratio, Loom over HTTP vs Presidio in-process:   {:.1}x", presidio_secs / loom_secs);
    let (ls, ps) = (score(&docs, &loom), score(&docs, &presidio_found));
    println!(
        "{:<14} {:>8} {:>12} {:>12} {:>10} {:>10}",
        "type", "planted", "recall Loom", "recall Pres.", "FP Loom", "FP Pres."
    );
    for t in TYPES {
        let (l, p) = (&ls[t], &ps[t]);
        let r = |s: &Score| s.found as f64 / s.planted.max(1) as f64;
        println!(
            "{t:<14} {:>8} {:>12.3} {:>12.3} {:>10} {:>10}",
            l.planted,
            r(l),
            r(p),
            l.false_positives,
            p.false_positives
        );
    }
}
