//! Context Enrichment's calendar expansion against `recurring-ical-events` 3.8.2 (PyPI) on the
//! test calendars shipped in its own sdist (`scripts/infra.sh` fetches both).
//!
//! Every calendar is `PUT` to a real node over HTTP and its instances are read back through
//! `GET /calendars/{subject}/events` for each quarter of the first and last years its VEVENTs
//! start in; the oracle (`support/rics_oracle.py`) expands the same quarters. Instances are
//! compared as (UID, start) — a UTC instant, or a date for all-day instances — counting only
//! instances that start inside the quarter, so window-edge conventions never count. The counts
//! (files that agree fully, instances matched, missing, extra, calendars only one side refuses)
//! are printed; the test holds the agreement floors stated below, and every disagreement is
//! listed by file so a regression names its calendar.
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;

use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::Value;

const CE: u16 = 8023;

// Measured on recurring-ical-events 3.8.2's 95 calendars: 91 of 94 agree in every window and
// 2,937 instances match with 2 missing and 1 extra (99.90 %). The differences are deliberate or
// left: a CANCELLED event is not listed (not context), an RDATE given as a DATE in a DATE-TIME
// series stays a date, and a file with `END:VTOOD` is refused as malformed text.
/// Instances (UID, start) both sides must agree on, of all instances either side lists.
const INSTANCE_FLOOR: f64 = 0.995;
/// Calendars whose every compared window agrees, of the calendars the oracle reads.
const FILE_FLOOR: f64 = 0.95;

type Key = (String, String);

fn shift(date: &str, days: i64) -> String {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("oracle dates");
    format!("{}T00:00:00Z", d + chrono::Duration::days(days))
}

async fn loom_window(node: &LoomNode, subject: &str, from: &str, to: &str) -> Result<BTreeSet<Key>, String> {
    let url = node.url(CE, &format!("/calendars/{subject}/events"));
    let r = http().get(url).query(&[("from", shift(from, -2)), ("to", shift(to, 2))]).send().await.expect("answers");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!("{status} {}", v["error"]["code"]));
    }
    if v["limited"] == true {
        return Err("limited".into());
    }
    let mut out = BTreeSet::new();
    for e in v["events"].as_array().expect("events") {
        let uid = e["uid"].as_str().unwrap_or_default();
        // Loom names a VEVENT without UID by its index; the oracle leaves it empty.
        let uid = if uid.starts_with('#') { "" } else { uid };
        let start = e["start"].as_str().unwrap_or_default().to_owned();
        if start.get(..10).is_some_and(|d| d >= from && d < to) {
            out.insert((uid.to_owned(), start));
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Tally {
    files: usize,
    files_agree: usize,
    matched: usize,
    missing: usize,
    extra: usize,
    both_refuse: usize,
    loom_refuses: Vec<String>,
    oracle_refuses: Vec<String>,
    disagreements: Vec<String>,
}

#[tokio::test]
async fn calendar_expansion_agrees_with_recurring_ical_events() {
    let dir = infra::rics_dir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rics_oracle.py");
    let out = tokio::process::Command::new(infra::rics_python()).arg(script).arg(&dir).output().await.expect("oracle");
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let oracle: Vec<Value> = serde_json::from_slice(&out.stdout).expect("oracle JSON");
    assert!(oracle.len() >= 90, "the sdist ships ~95 calendars, found {}", oracle.len());

    let node = LoomNode::start_ready("ce-rics", NodeOptions::default().env("LOOM_ENRICH_WEATHER_URL", "")).await;
    let mut t = Tally::default();
    for (i, cal) in oracle.iter().enumerate() {
        let file = cal["file"].as_str().expect("file").to_owned();
        let subject = format!("rics-{i}");
        let bytes = std::fs::read(dir.join(&file)).expect("calendar file");
        let r = http()
            .put(node.url(CE, &format!("/calendars/{subject}")))
            .header("content-type", "text/calendar")
            .body(bytes)
            .send()
            .await
            .expect("answers");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status < 500, "{file}: PUT answered {status} {body}");
        let loom_ok = status == 200 || status == 201;
        match (cal.get("error"), loom_ok) {
            (Some(_), false) => {
                t.both_refuse += 1;
                continue;
            }
            (Some(e), true) => {
                t.oracle_refuses.push(format!("{file}: {e}"));
                continue;
            }
            (None, false) => {
                t.files += 1;
                t.loom_refuses.push(format!("{file}: {status} {}", body["detail"]));
                continue;
            }
            (None, true) => t.files += 1,
        }
        let mut agree = true;
        for w in cal["windows"].as_array().expect("windows") {
            let (from, to) = (w["from"].as_str().unwrap(), w["to"].as_str().unwrap());
            let want: BTreeSet<Key> = w["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
                .collect();
            let got = match loom_window(&node, &subject, from, to).await {
                Ok(g) => g,
                Err(e) => {
                    agree = false;
                    t.missing += want.len();
                    t.disagreements.push(format!("{file} {from}: {e}"));
                    continue;
                }
            };
            let missing: Vec<&Key> = want.difference(&got).collect();
            let extra: Vec<&Key> = got.difference(&want).collect();
            t.matched += want.intersection(&got).count();
            t.missing += missing.len();
            t.extra += extra.len();
            if !missing.is_empty() || !extra.is_empty() {
                agree = false;
                let few = |v: &[&Key]| v.iter().take(3).map(|(u, s)| format!("{u}@{s}")).collect::<Vec<_>>().join(", ");
                t.disagreements.push(format!(
                    "{file} {from}: {} missing [{}], {} extra [{}]",
                    missing.len(),
                    few(&missing),
                    extra.len(),
                    few(&extra)
                ));
            }
        }
        if agree {
            t.files_agree += 1;
        }
    }
    for d in t.loom_refuses.iter().chain(&t.oracle_refuses).chain(&t.disagreements) {
        eprintln!("calendar oracle: {d}");
    }
    let all = t.matched + t.missing + t.extra;
    let instance_rate = t.matched as f64 / all.max(1) as f64;
    let file_rate = t.files_agree as f64 / t.files.max(1) as f64;
    eprintln!(
        "calendar oracle: {} calendars read by the oracle, {} agree in every window ({:.1} %); instances: {} matched, \
         {} missing, {} extra ({:.2} % agreement); refused by both {}, by Loom only {}, by the oracle only {}",
        t.files,
        t.files_agree,
        100.0 * file_rate,
        t.matched,
        t.missing,
        t.extra,
        100.0 * instance_rate,
        t.both_refuse,
        t.loom_refuses.len(),
        t.oracle_refuses.len()
    );
    assert!(instance_rate >= INSTANCE_FLOOR, "instance agreement {instance_rate:.4} < {INSTANCE_FLOOR}");
    assert!(file_rate >= FILE_FLOOR, "calendar agreement {file_rate:.4} < {FILE_FLOOR}");
}
