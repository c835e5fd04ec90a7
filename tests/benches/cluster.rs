//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=target/release/loom cargo bench
//! -p loom-tests --bench cluster`): the cost of a cross-node typed call, side by side with
//! baselines measured in the same run.
//!
//! The bench process joins a cluster as a member ("bench", on its own loopback address) with two
//! real `loom` nodes — "peer", and "sessions" started with `LOOM_CLUSTER_DATA_PLANE=false` — all
//! serving the keyed debug counter. It then measures round trips of:
//! 1. `Keyed::call` for keys "peer" owns — encode, the data plane's connection, the peer's
//!    connection task and handler, reply, decode (the cross-node path); and the same for keys
//!    "sessions" owns, which go the way every call went before the data plane (ractor_cluster
//!    session, the endpoint actor, a task per call);
//! 2. `Keyed::call` for keys the bench owns (the same API, served in-process);
//! 3. a local ractor actor request/reply carrying the same bytes;
//! 4. a raw TCP echo of the same number of bytes over loopback (the network floor), served in
//!    this process and, again, by a child process (the floor of a round trip that crosses
//!    processes, as a cross-node call does).
//!
//! Sequential round trips give p50/p99 latency; 32 concurrent callers give throughput.

use std::time::{Duration, Instant};

use loom_cluster::Cluster;
use loom_cluster::counter::{self, CounterClient, CounterRequest};
use loom_config::{NodeConfig, Secret};
use loom_protocol::ServiceId;
use loom_testkit::cluster::{member_options, start_member};
use loom_testkit::node::claim_address;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEQUENTIAL: usize = 5_000;
const CONCURRENT: usize = 32;
const CONCURRENT_CALLS: usize = 40_000;

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, total: Duration) -> Stats {
    samples.sort();
    Stats {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
        per_sec: samples.len() as f64 / total.as_secs_f64(),
    }
}

async fn sequential<F, Fut>(n: usize, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..200 {
        op(i).await;
    }
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        op(i).await;
        samples.push(t.elapsed());
    }
    stats(samples, started.elapsed())
}

async fn concurrent_calls(client: &CounterClient, keys: &[String]) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENT {
        let (client, keys) = (client.clone(), keys.to_vec());
        tasks.push(tokio::spawn(async move {
            for i in 0..CONCURRENT_CALLS / CONCURRENT {
                client.call(&keys[(w + i) % keys.len()], CounterRequest::Add { by: 1 }).await.expect("call");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    CONCURRENT_CALLS as f64 / started.elapsed().as_secs_f64()
}

#[derive(RactorMessage)]
enum EchoMsg {
    Echo(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

struct EchoActor;

#[ractor::async_trait]
impl Actor for EchoActor {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: ActorRef<EchoMsg>, msg: EchoMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let EchoMsg::Echo(bytes, reply) = msg;
        let _ = reply.send(bytes);
        Ok(())
    }
}

async fn tcp_echo_server(ip: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            sock.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The same echo in a child process (this binary re-run with `LOOM_BENCH_ECHO_CHILD=ip:port`):
/// a round trip that crosses processes, as a cross-node call does, without any Loom code.
fn echo_child_main(addr: &str) -> ! {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr).expect("child echo binds");
    for sock in listener.incoming() {
        let Ok(mut sock) = sock else { continue };
        std::thread::spawn(move || {
            let _ = sock.set_nodelay(true);
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.read(&mut buf) {
                if n == 0 || sock.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    std::process::exit(0)
}

async fn echo_round_trips(addr: std::net::SocketAddr, bytes: &[u8]) -> Stats {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    let mut samples = Vec::with_capacity(SEQUENTIAL + 200);
    let mut back = vec![0u8; bytes.len()];
    let started = Instant::now();
    for _ in 0..SEQUENTIAL + 200 {
        let t = Instant::now();
        sock.write_all(bytes).await.unwrap();
        sock.read_exact(&mut back).await.unwrap();
        samples.push(t.elapsed());
    }
    stats(samples.split_off(200), started.elapsed())
}

#[tokio::main]
async fn main() {
    if let Ok(addr) = std::env::var("LOOM_BENCH_ECHO_CHILD") {
        echo_child_main(&addr);
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    loom_telemetry::MetricsRegistry::global();
    let cookie = format!("bench-cookie-{}", std::process::id());
    let node = start_member("peer", member_options(&cookie, &[])).await;
    // The path before the data plane, in the same run: a peer that announces none is called
    // through ractor_cluster's session and its endpoint actor.
    let old = start_member("sessions", member_options(&cookie, &[&node]).env("LOOM_CLUSTER_DATA_PLANE", "false")).await;

    let address = claim_address();
    let mut config = NodeConfig::default();
    config.node.name = "bench".into();
    config.node.bind_addr = address.ip.parse().unwrap();
    config.cluster.cookie = Some(Secret::new(&cookie));
    config.cluster.seeds = vec![format!("{}:4697", node.address.ip)];
    let cluster = Cluster::start(&config, "bench", vec![ServiceId::HealthAggregator]).await.expect("cluster");
    let client = counter::start(&cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.view().owners_of(ServiceId::HealthAggregator).count() < 3 {
        assert!(Instant::now() < deadline, "the bench never saw the peer up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let owned_by = |name: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| cluster.owner(ServiceId::HealthAggregator, k).as_deref() == Some(name))
            .cloned()
            .collect()
    };
    let (remote, local, via_sessions) = (owned_by("peer"), owned_by("bench"), owned_by("sessions"));
    let payload_len =
        loom_cluster::wire::encode_call(ServiceId::HealthAggregator, "", &remote[0], &CounterRequest::Add { by: 1 })
            .unwrap()
            .len();

    let cross = sequential(SEQUENTIAL, |i| {
        let (client, key) = (client.clone(), remote[i % remote.len()].clone());
        async move {
            let served = client.call(&key, CounterRequest::Add { by: 1 }).await.expect("remote call");
            assert_eq!(served.node, "peer");
        }
    })
    .await;
    let sessions = sequential(SEQUENTIAL, |i| {
        let (client, key) = (client.clone(), via_sessions[i % via_sessions.len()].clone());
        async move {
            let served = client.call(&key, CounterRequest::Add { by: 1 }).await.expect("call via sessions");
            assert_eq!(served.node, "sessions");
        }
    })
    .await;
    let in_process = sequential(SEQUENTIAL, |i| {
        let (client, key) = (client.clone(), local[i % local.len()].clone());
        async move {
            client.call(&key, CounterRequest::Add { by: 1 }).await.expect("local call");
        }
    })
    .await;
    let (echo, _) = Actor::spawn(None, EchoActor, ()).await.unwrap();
    let bytes = vec![7u8; payload_len];
    let actor = sequential(SEQUENTIAL, |_| {
        let (echo, bytes) = (echo.clone(), bytes.clone());
        async move {
            ractor::call!(echo, EchoMsg::Echo, bytes).unwrap();
        }
    })
    .await;
    let echo_addr = tcp_echo_server(&address.ip).await;
    let tcp = echo_round_trips(echo_addr, &bytes).await;
    let child_addr: std::net::SocketAddr = format!("{}:4699", node.address.ip).parse().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("LOOM_BENCH_ECHO_CHILD", child_addr.to_string())
        .spawn()
        .expect("echo child");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(child_addr).await.is_err() {
        assert!(Instant::now() < deadline, "the echo child never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tcp_child = echo_round_trips(child_addr, &bytes).await;
    let _ = child.kill();
    let _ = child.wait();

    let cross_tput = concurrent_calls(&client, &remote).await;
    let sessions_tput = concurrent_calls(&client, &via_sessions).await;
    let local_tput = concurrent_calls(&client, &local).await;

    let line = |name: &str, s: &Stats| {
        format!(
            "{name:<34} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>9.0} /s sequential\n",
            s.p50.as_secs_f64() * 1e6,
            s.p99.as_secs_f64() * 1e6,
            s.per_sec
        )
    };
    let mut out = format!("round trips, {SEQUENTIAL} sequential, {payload_len}-byte request envelope, loopback\n");
    out += &line("cross-node Keyed::call (remote)", &cross);
    out += &line("same call through the sessions", &sessions);
    out += &line("Keyed::call served in-process", &in_process);
    out += &line("local ractor actor call", &actor);
    out += &line("raw TCP echo", &tcp);
    out += &line("raw TCP echo, another process", &tcp_child);
    let ratio =
        |a: &Stats, b: &Stats| (a.p50.as_secs_f64() / b.p50.as_secs_f64(), a.p99.as_secs_f64() / b.p99.as_secs_f64());
    let (echo50, echo99) = ratio(&cross, &tcp);
    let (child50, child99) = ratio(&cross, &tcp_child);
    out += &format!(
        "ratio cross-node / raw TCP echo: p50 {echo50:.2}, p99 {echo99:.2}\n\
         ratio cross-node / raw TCP echo to another process: p50 {child50:.2}, p99 {child99:.2}\n\
         ratio cross-node / local actor call (p50): {:.2}\n",
        cross.p50.as_secs_f64() / actor.p50.as_secs_f64()
    );
    out += &format!(
        "throughput, {CONCURRENT} concurrent callers, {CONCURRENT_CALLS} calls: cross-node {cross_tput:.0}/s, \
         through the sessions {sessions_tput:.0}/s ({:.2}x), in-process {local_tput:.0}/s\n\
         ratio data plane / sessions (p50 latency): {:.2}\n",
        cross_tput / sessions_tput,
        cross.p50.as_secs_f64() / sessions.p50.as_secs_f64()
    );
    cluster.leave().await;
    drop(old);
    // The bench's output is its product.
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
}
