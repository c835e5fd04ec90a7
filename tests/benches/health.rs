//! Bench binary (`cargo bench -p loom-tests --bench health`; build the node first with
//! `cargo build --release -p loom-node` and pass `LOOM_BIN`): the live health stream's fan-out.
//! 1,000 WebSocket subscribers on one real `loom` node receive every delta; deltas are made one
//! every [`PACE`] by operator requests (`POST /admin/remediations`, each one audit delta). Side
//! by side, in the same run, the baseline: a bare tokio-tungstenite server broadcasting
//! same-sized messages through a `tokio::sync::broadcast` channel to 1,000 clients.
//!
//! Reported per system: delivery latency p50/p99/max from the delta's creation stamp (`time_ms`,
//! millisecond resolution: up to +1 ms of quantization, the baseline stamps the same way) to the
//! client's receipt, the same from the triggering instant (µs clock; for Loom this includes the
//! HTTP request that makes the delta), and whether every subscriber got every delta in order.
//! The baseline runs as a separate process too (this binary re-run with `--baseline-server`),
//! triggered over a TCP line per message and acknowledging it, so both sides have the same
//! shape: a server process, a trigger round trip, 1,000 clients in this process.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use loom_testkit::{LoomNode, NodeOptions};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 1000;
const DELTAS: usize = 300;
const PACE: Duration = Duration::from_millis(10);

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// What one subscriber saw: per delta, (its index, µs since creation stamp, receipt instant).
struct Seen {
    got: Vec<(usize, u64, Instant)>,
    in_order: bool,
}

type IndexOf = fn(&serde_json::Value) -> Option<usize>;

/// Connects one subscriber, waits for its opening message, then records `DELTAS` deltas (the
/// delta's index and `time_ms` read from each).
async fn subscribe(url: String, ready: Arc<tokio::sync::Barrier>, index_of: IndexOf) -> Seen {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("subscriber connects");
    // The opening (snapshot) first.
    while !matches!(ws.next().await.expect("open").expect("ok"), Message::Text(_)) {}
    ready.wait().await;
    let mut got = Vec::with_capacity(DELTAS);
    let mut in_order = true;
    while got.len() < DELTAS {
        let Some(Ok(msg)) = ws.next().await else { break };
        let Message::Text(t) = msg else { continue };
        let at = Instant::now();
        let now_us = unix_us();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let Some(i) = index_of(&v) else { continue };
        in_order &= got.last().is_none_or(|(last, _, _)| i == last + 1);
        let stamp_us = v["time_ms"].as_u64().unwrap_or(0) * 1000;
        got.push((i, now_us.saturating_sub(stamp_us), at));
    }
    let _ = ws.close(None).await;
    Seen { got, in_order }
}

struct Report {
    name: &'static str,
    complete: usize,
    in_order: bool,
    from_stamp: [f64; 3],
    from_trigger: [f64; 3],
    elapsed: Duration,
}

fn percentiles(mut us: Vec<u64>) -> [f64; 3] {
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)] as f64 / 1000.0;
    [at(0.50), at(0.99), *us.last().unwrap() as f64 / 1000.0]
}

fn report(name: &'static str, seen: Vec<Seen>, triggers: &[Instant], elapsed: Duration) -> Report {
    let complete = seen.iter().filter(|s| s.got.len() == DELTAS).count();
    let in_order = seen.iter().all(|s| s.in_order);
    let mut from_stamp = Vec::with_capacity(SUBSCRIBERS * DELTAS);
    let mut from_trigger = Vec::with_capacity(SUBSCRIBERS * DELTAS);
    for s in &seen {
        for (i, stamp_us, at) in &s.got {
            from_stamp.push(*stamp_us);
            from_trigger.push(at.saturating_duration_since(triggers[*i]).as_micros() as u64);
        }
    }
    Report {
        name,
        complete,
        in_order,
        from_stamp: percentiles(from_stamp),
        from_trigger: percentiles(from_trigger),
        elapsed,
    }
}

/// Connects every subscriber (50 at a time), then returns their tasks once all are listening.
async fn connect_all(url: &str, index_of: IndexOf) -> Vec<tokio::task::JoinHandle<Seen>> {
    let ready = Arc::new(tokio::sync::Barrier::new(SUBSCRIBERS + 1));
    let mut tasks = Vec::with_capacity(SUBSCRIBERS);
    for chunk in 0..SUBSCRIBERS / 50 {
        for _ in 0..50 {
            tasks.push(tokio::spawn(subscribe(url.to_owned(), ready.clone(), index_of)));
        }
        // Let the chunk's handshakes through before the next (the listener backlog is finite).
        tokio::time::sleep(Duration::from_millis(if chunk == 0 { 200 } else { 50 })).await;
    }
    ready.wait().await;
    tasks
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Seen>>) -> Vec<Seen> {
    let mut seen = Vec::with_capacity(tasks.len());
    for t in tasks {
        let s = tokio::time::timeout(Duration::from_secs(60), t).await.expect("subscriber finished").unwrap();
        seen.push(s);
    }
    seen
}

/// Loom's deltas: the audit record of the request for component `bench-<k>` is delta k.
fn loom_index(v: &serde_json::Value) -> Option<usize> {
    v["detail"]["component"].as_str()?.strip_prefix("bench-")?.parse().ok()
}

async fn run_loom() -> (Report, usize) {
    let node = LoomNode::start_ready("health-bench", NodeOptions::default()).await;
    let url = format!("ws://{}:8030/ws/health?service=remediation:*", node.address.ip);
    let tasks = connect_all(&url, loom_index).await;
    let client = reqwest::Client::new();
    let post = node.url(8030, "/admin/remediations");
    let mut triggers = Vec::with_capacity(DELTAS);
    let started = Instant::now();
    let mut tick = tokio::time::interval(PACE);
    let mut size = 0;
    for k in 0..DELTAS {
        tick.tick().await;
        triggers.push(Instant::now());
        // `open_circuit` on a made-up component of this node: each request is one audited,
        // streamed action (past the global limit, one refused and audited action).
        let body =
            serde_json::json!({"node": "health-bench", "service": format!("bench-{k}"), "action": "open_circuit"});
        let r = client.post(&post).json(&body).send().await.expect("trigger");
        assert!(matches!(r.status().as_u16(), 202 | 429), "{}", r.status());
        if k == 0 {
            size = r.bytes().await.map(|b| b.len()).unwrap_or(0);
        }
    }
    let seen = collect(tasks).await;
    (report("loom /ws/health", seen, &triggers, started.elapsed()), size)
}

/// The baseline server process: prints `<ws port> <trigger port>`, gives every accepted
/// WebSocket an opening then every broadcast message; each trigger line `k pad` makes message
/// `k` (stamped now, padded to `pad` bytes) and is acknowledged with a line.
async fn baseline_server() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (tx, _) = broadcast::channel::<Arc<String>>(1024);
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_port = ws.local_addr().unwrap().port();
    let fanout = tx.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = ws.accept().await {
            let mut rx = fanout.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                if ws.send(Message::Text(r#"{"type":"snapshot","seq":0,"entries":[]}"#.into())).await.is_err() {
                    return;
                }
                while let Ok(msg) = rx.recv().await {
                    if ws.send(Message::Text(msg.as_str().into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let line = format!("{ws_port} {}\n", control.local_addr().unwrap().port());
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes()).unwrap();
        stdout.flush().unwrap();
    }
    let (conn, _) = control.accept().await.unwrap();
    let (read, mut write) = conn.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        let (k, pad) = l.split_once(' ').unwrap();
        let (k, pad): (usize, usize) = (k.parse().unwrap(), pad.parse().unwrap());
        let head = serde_json::json!({"type": "delta", "k": k, "time_ms": unix_us() / 1000, "pad": ""}).to_string();
        let mut msg = head.clone();
        msg.insert_str(msg.len() - 2, &"x".repeat(pad.saturating_sub(head.len())));
        let _ = tx.send(Arc::new(msg));
        if write.write_all(b"ok\n").await.is_err() {
            return;
        }
    }
}

fn baseline_index(v: &serde_json::Value) -> Option<usize> {
    v["k"].as_u64().map(|k| k as usize)
}

async fn run_baseline(payload_len: usize) -> Report {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--baseline-server")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the baseline server starts");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ports = out.next_line().await.unwrap().expect("the baseline server's ports");
    let (ws, control) = ports.split_once(' ').unwrap();
    let tasks = connect_all(&format!("ws://127.0.0.1:{ws}/"), baseline_index).await;
    let conn = tokio::net::TcpStream::connect(format!("127.0.0.1:{control}")).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let (read, mut write) = conn.into_split();
    let mut acks = tokio::io::BufReader::new(read).lines();
    let mut triggers = Vec::with_capacity(DELTAS);
    let started = Instant::now();
    let mut tick = tokio::time::interval(PACE);
    for k in 0..DELTAS {
        tick.tick().await;
        triggers.push(Instant::now());
        write.write_all(format!("{k} {payload_len}\n").as_bytes()).await.unwrap();
        acks.next_line().await.unwrap().expect("acknowledged");
    }
    let seen = collect(tasks).await;
    drop(write);
    let _ = child.kill().await;
    report("bare tungstenite + broadcast", seen, &triggers, started.elapsed())
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--baseline-server") {
        return baseline_server().await;
    }
    let (loom, payload) = run_loom().await;
    // The audit record's JSON is about the size of its delta minus the delta envelope.
    let baseline = run_baseline(payload + 120).await;
    let mut out = format!(
        "health stream fan-out: {SUBSCRIBERS} WebSocket subscribers on one node, {DELTAS} deltas one every {} ms\n",
        PACE.as_millis()
    );
    for r in [&loom, &baseline] {
        out += &format!(
            "{:<30} complete {:>4}/{SUBSCRIBERS} in order {:<5}  creation→receipt p50 {:>6.2} ms p99 {:>6.2} ms max {:>6.2} ms   trigger→receipt p50 {:>6.2} ms p99 {:>6.2} ms max {:>6.2} ms  ({:.1} s)\n",
            r.name,
            r.complete,
            r.in_order,
            r.from_stamp[0],
            r.from_stamp[1],
            r.from_stamp[2],
            r.from_trigger[0],
            r.from_trigger[1],
            r.from_trigger[2],
            r.elapsed.as_secs_f64(),
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "n/a".into() };
    out += &format!(
        "ratio loom / baseline: creation→receipt p50 {} p99 {}; trigger→receipt p50 {} p99 {}\n",
        ratio(loom.from_stamp[0], baseline.from_stamp[0]),
        ratio(loom.from_stamp[1], baseline.from_stamp[1]),
        ratio(loom.from_trigger[0], baseline.from_trigger[0]),
        ratio(loom.from_trigger[1], baseline.from_trigger[1]),
    );
    out += "(creation stamps have millisecond resolution: both columns carry the same +0-1 ms quantization)\n";
    assert_eq!(loom.complete, SUBSCRIBERS, "every Loom subscriber got every delta");
    assert_eq!(baseline.complete, SUBSCRIBERS, "every baseline subscriber got every delta");
    // The bench's output is its product.
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
}
