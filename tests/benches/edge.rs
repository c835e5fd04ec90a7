//! Bench binary (`cargo bench -p loom-tests --bench edge`): what Loom's shared layers cost,
//! each measured side by side with a baseline in the same process.
//!
//! 1. HTTP: the same tiny JSON handler served bare by axum and behind Loom's full edge stack
//!    (request id, span, concurrency permit, auth check, body limit, timeout, problem
//!    normalization, metrics, one log line filtered out), driven over real loopback sockets by
//!    keep-alive clients. Reports requests/s, p50/p99 latency and the ratio.
//! 2. Actors: a request/reply through a Loom `Handle` to a supervised-style core actor (ractor,
//!    counted bounded mailbox) versus a plain tokio task answering over mpsc + oneshot.

#[path = "support/load.rs"]
mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use futures::future::BoxFuture;
use loom_http::ops::FaultRequest;
use loom_http::{Auth, HealthReport, HttpSettings, OpsProvider, Problem, VersionInfo, service_router};
use loom_protocol::{HealthStatus, OpsMsg, RequestId, ServiceId};
use loom_service::{Handle, Mailbox};
use ractor::{Actor, ActorProcessingErr, ActorRef};

const CONCURRENCY: usize = 16;
const HTTP_DURATION: Duration = Duration::from_secs(5);
const ACTOR_CALLS: usize = 200_000;

async fn hello() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"hello": "world"}))
}

struct NoOps;

impl OpsProvider for NoOps {
    fn health(&self) -> BoxFuture<'_, HealthReport> {
        Box::pin(async { HealthReport { status: HealthStatus::Pass, checks: vec![], notes: vec![] } })
    }
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn metrics(&self) -> String {
        String::new()
    }
    fn version(&self) -> VersionInfo {
        VersionInfo {
            service: "bench".into(),
            version: "0".into(),
            commit: "0".into(),
            profile: "bench".into(),
            node: "bench".into(),
        }
    }
    fn inject_fault(&self, _: RequestId, _: FaultRequest) -> BoxFuture<'_, Result<(), Problem>> {
        Box::pin(async { Ok(()) })
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/hello")
}

struct Core {
    mailbox: Arc<Mailbox>,
}

#[ractor::async_trait]
impl Actor for Core {
    type Msg = OpsMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<OpsMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(&self, _: ActorRef<OpsMsg>, msg: OpsMsg, n: &mut u64) -> Result<(), ActorProcessingErr> {
        self.mailbox.handled();
        *n += 1;
        if let OpsMsg::Ping(_, reply) = msg {
            let _ = reply.send(*n);
        }
        Ok(())
    }
}

async fn actor_calls() -> (f64, f64) {
    let mailbox = Mailbox::new(ServiceId::Dedup, "bench", 1 << 20);
    let handle: Handle<OpsMsg> = Handle::new(mailbox.clone());
    let (actor, _) = Actor::spawn(None, Core { mailbox }, ()).await.unwrap();
    handle.attach(actor.clone());
    let id = RequestId::generate();
    let t = Instant::now();
    for _ in 0..ACTOR_CALLS {
        handle.call(|r| OpsMsg::Ping(id.clone(), r), Duration::from_secs(1)).await.unwrap();
    }
    let loom = ACTOR_CALLS as f64 / t.elapsed().as_secs_f64();
    actor.stop(None);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>(1024);
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(reply) = rx.recv().await {
            n += 1;
            let _ = reply.send(n);
        }
    });
    let t = Instant::now();
    for _ in 0..ACTOR_CALLS {
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(reply).await.unwrap();
        answer.await.unwrap();
    }
    let plain = ACTOR_CALLS as f64 / t.elapsed().as_secs_f64();
    (loom, plain)
}

#[tokio::main]
async fn main() {
    loom_telemetry::MetricsRegistry::global();
    let bare = serve(Router::new().route("/hello", get(hello))).await;
    let settings = HttpSettings {
        service: ServiceId::Dedup,
        body_limit_bytes: 2 << 20,
        request_timeout: Duration::from_secs(30),
        max_concurrent_requests: 1024,
        auth: Auth::default(),
        fault_injection: false,
        cluster_wide: |_, _| false,
        refuse_cluster_wide: false,
        description: "bench",
    };
    let edge = serve(service_router(settings, Router::new().route("/hello", get(hello)).into(), Arc::new(NoOps))).await;

    let b = load::drive(&bare, None, CONCURRENCY, HTTP_DURATION).await;
    let e = load::drive(&edge, None, CONCURRENCY, HTTP_DURATION).await;
    let mut out = String::new();
    out.push_str(&format!("HTTP, {CONCURRENCY} keep-alive clients, {}s each, same process\n", HTTP_DURATION.as_secs()));
    out.push_str(&b.line("bare axum handler"));
    out.push_str(&e.line("loom edge stack"));
    out.push_str(&format!("ratio loom/bare throughput: {:.2}\n\n", e.rps / b.rps));
    let (loom, plain) = actor_calls().await;
    out.push_str(&format!("request/reply, {ACTOR_CALLS} sequential calls\n"));
    out.push_str(&format!("{:<22} {loom:>10.0} calls/s\n", "loom Handle -> ractor"));
    out.push_str(&format!("{:<22} {plain:>10.0} calls/s\n", "tokio mpsc+oneshot"));
    out.push_str(&format!("ratio loom/plain: {:.2}\n", loom / plain));
    // The bench's output is its product.
    #[allow(clippy::print_stdout)]
    {
        print!("{out}");
    }
}
