//! `loom run`: the start-up sequence and the graceful shutdown of one node.
//!
//! Start: load config → logging → bind every service port (fail fast, naming the port) → open
//! stores and migrate → build each service and spawn the root supervisor with one service
//! supervisor per service → serve. Stop (SIGTERM/SIGINT): report not-ready, stop accepting,
//! drain in-flight requests, stop the actor trees bottom-up, close stores — all within
//! `node.shutdown_timeout` — and exit 0. A root supervisor that gives up exits 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use loom_cluster::Cluster;
use loom_config::NodeConfig;
use loom_http::{Auth, HttpSettings, OpsProvider, service_router};
use loom_protocol::ServiceId;
use loom_service::{NodeControl, NodeInfo, ServiceContext, ServiceOps};
use loom_storage::Stores;
use loom_supervisors::{ChildSpec, StatusBoard, Supervisor, SupervisorArgs};
use loom_telemetry::{MetricsRegistry, names};
use ractor::Actor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{self, ConfigArgs};
use crate::migrations::Migrator;
use crate::{EXIT_CONFIG, EXIT_FAILURE, fatal_line, services, shutdown};

pub fn main(args: ConfigArgs) -> ExitCode {
    let started = Instant::now();
    let (config, path) = match cli::load(&args) {
        Ok(loaded) => loaded,
        Err(message) => {
            fatal_line(&message);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(message) = loom_telemetry::init_logging(&config.log.filter, config.log.format, &config.node.name) {
        fatal_line(&message);
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            fatal_line(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let source = path.map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
    match runtime.block_on(run(config, source, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!(error = %message, "node failed");
            fatal_line(&message);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Binds a service port, naming the service and address when it cannot.
fn bind(id: ServiceId, addr: SocketAddr) -> Result<TcpListener, String> {
    let fail = |e: std::io::Error| {
        let why =
            if e.kind() == std::io::ErrorKind::AddrInUse { "address already in use".to_owned() } else { e.to_string() };
        format!("cannot listen for {id} on {addr}: {why}")
    };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    TcpListener::from_std(listener).map_err(fail)
}

struct Port {
    id: ServiceId,
    listener: TcpListener,
    router: axum::Router,
    ops: Arc<ServiceOps>,
}

async fn run(config: NodeConfig, source: String, started: Instant) -> Result<(), String> {
    // Two rustls crypto providers are linked (aws-lc and ring); pick one for the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = Arc::new(config);
    let node = Arc::new(NodeInfo {
        name: config.node.name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("LOOM_GIT_COMMIT").to_owned(),
        profile: env!("LOOM_BUILD_PROFILE"),
    });
    MetricsRegistry::global();
    metrics::gauge!(names::NODE_INFO, "node" => node.name.clone(), "version" => node.version).set(1.0);
    let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!(names::NODE_START_TIME).set(unix_now.as_secs_f64());
    info!(config = %source, bind_addr = %config.node.bind_addr, "node starting");

    if config.kafka.enabled() {
        info!(brokers = config.kafka.brokers.len(), "kafka bridge enabled");
    }
    let enabled = config.services.enabled();
    let mut listeners = Vec::new();
    for (id, port) in &enabled {
        listeners.push((*id, bind(*id, SocketAddr::new(config.node.bind_addr, *port))?));
    }
    let cluster = Cluster::start(&config, node.version, enabled.iter().map(|(id, _)| *id).collect()).await?;

    let stores = Stores::open(&config).await.map_err(|e| format!("cannot open stores: {e}"))?;
    stores.database.migrate::<Migrator>().await.map_err(|e| format!("cannot migrate the database: {e}"))?;
    info!(
        database = stores.database.backend(),
        cache = stores.cache.backend(),
        objects = stores.objects.backend(),
        "stores open"
    );

    let board = StatusBoard::new();
    let draining = Arc::new(AtomicBool::new(false));
    let node_metrics_host = if enabled.iter().any(|(id, _)| *id == ServiceId::HealthAggregator) {
        ServiceId::HealthAggregator
    } else {
        enabled[0].0
    };
    // Clustered on a node-local database, cluster-wide writes would reach only this node: they
    // are refused (409) and the rest of the node works. A shared PostgreSQL lifts it.
    let node_local = |d: loom_service::Dependency| match d {
        loom_service::Dependency::Database => stores.database.backend() == "sqlite",
        loom_service::Dependency::ObjectStore => stores.objects.backend() == "local",
        loom_service::Dependency::Cache => stores.cache.backend() != "redis",
    };
    if config.cluster.is_clustered() && node_local(loom_service::Dependency::Database) {
        warn!(
            "clustered on a node-local database: cluster-wide writes (rules, policies, schemas, jobs, monitors, \
             devices) answer 409 cluster_store_required; set LOOM_DATABASE_URL=postgres://… on every node"
        );
    }
    if config.cluster.is_clustered() && node_local(loom_service::Dependency::ObjectStore) {
        warn!(
            "clustered on a node-local object store: file uploads, jobs and deletions answer 409 \
             cluster_store_required; set LOOM_OBJECT_STORE=s3 (one bucket for every node)"
        );
    }
    let settings = |id, def: &loom_service::ServiceDef| HttpSettings {
        service: id,
        body_limit_bytes: (def.max_body)(&config).unwrap_or(config.http.body_limit_bytes),
        request_timeout: config.http.request_timeout.get(),
        max_concurrent_requests: config.http.max_concurrent_requests,
        auth: Auth::from_config(&config.auth),
        fault_injection: config.node.fault_injection,
        cluster_wide: def.cluster_wide,
        refuse_cluster_wide: config.cluster.is_clustered() && node_local(def.state_in),
        description: def.description,
    };
    let stop_timeout = config.node.shutdown_timeout.get();
    let mut defs = services::all();
    let mut ports = Vec::new();
    let mut service_specs = Vec::new();
    let control = NodeControl::default();
    let checks = loom_service::Checks::default();
    for (id, listener) in listeners {
        let Some(def) = defs.iter().position(|d| d.id == id).map(|i| defs.swap_remove(i)) else {
            return Err(format!("no service crate provides {id}"));
        };
        let ctx = ServiceContext {
            id,
            node: node.clone(),
            config: config.clone(),
            stores: stores.clone(),
            board: board.clone(),
            draining: draining.clone(),
            cluster: cluster.clone(),
            control: control.clone(),
            checks: checks.clone(),
        };
        let parts = (def.build)(&ctx);
        control.attach_core(id, parts.core.clone());
        let ops = ServiceOps::new(&def, ctx.clone(), &parts, id == node_metrics_host);
        let router = service_router(settings(id, &def), parts.routes, ops.clone());
        service_specs.push(service_supervisor(&ctx, parts.children, board.clone(), stop_timeout));
        ports.push(Port { id, listener, router, ops });
    }

    let root_args =
        SupervisorArgs { label: "node".into(), children: service_specs, board: board.clone(), stop_timeout };
    let (root, mut root_done) =
        Actor::spawn(None, Supervisor, root_args).await.map_err(|e| format!("cannot start the service trees: {e}"))?;
    control.attach_root(root.clone());

    let stop_serving = CancellationToken::new();
    let mut servers = JoinSet::new();
    let mut all_ops = Vec::new();
    for port in ports {
        let token = stop_serving.clone();
        let id = port.id;
        all_ops.push(port.ops.clone());
        servers.spawn(async move {
            let result = loom_http::serve(port.listener, port.router, async move { token.cancelled().await }).await;
            (id, result)
        });
    }
    tokio::spawn(report_ready(all_ops, started, cluster.clone()));

    let outcome = tokio::select! {
        signal = shutdown::signal_received() => {
            info!(signal, "shutdown requested");
            Ok(())
        }
        _ = &mut root_done => Err("a service tree failed beyond its restart budget; see the log above".to_owned()),
        _ = cluster.failed() => Err("cluster membership stopped unexpectedly; see the log above".to_owned()),
        Some(joined) = servers.join_next() => Err(match joined {
            Ok((id, Err(e))) => format!("{id} server failed: {e}"),
            Ok((id, Ok(()))) => format!("{id} server stopped unexpectedly"),
            Err(e) => format!("a server task failed: {e}"),
        }),
    };

    let deadline = Instant::now() + config.node.shutdown_timeout.get();
    draining.store(true, Ordering::Release);
    cluster.set_ready(false);
    cluster.leave().await;
    stop_serving.cancel();
    let drained = tokio::time::timeout_at(deadline.into(), async {
        while let Some(joined) = servers.join_next().await {
            if let Ok((id, Err(e))) = joined {
                warn!(service = %id, error = %e, "server ended with an error while draining");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("in-flight requests did not finish before the shutdown timeout; closing them");
        servers.abort_all();
    }
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    if root.stop_and_wait(Some("shutdown".into()), Some(remaining)).await.is_err() {
        warn!("actor trees did not stop before the shutdown timeout");
    }
    stores.database.close().await;
    info!(
        shutdown_ms = (Instant::now() + config.node.shutdown_timeout.get() - deadline).as_millis() as u64,
        "node stopped"
    );
    outcome
}

/// The child spec that (re)starts one service's supervisor under the root.
fn service_supervisor(
    ctx: &ServiceContext,
    children: Vec<ChildSpec>,
    board: StatusBoard,
    stop_timeout: Duration,
) -> ChildSpec {
    let id = ctx.id;
    ChildSpec {
        service: id,
        actor: "supervisor".into(),
        policy: ctx.restart_policy(),
        start: Arc::new(move |root| {
            let args = SupervisorArgs {
                label: id.name().into(),
                children: children.clone(),
                board: board.clone(),
                stop_timeout,
            };
            async move {
                let (supervisor, _) = Actor::spawn_linked(None, Supervisor, args, root).await?;
                Ok(supervisor.get_cell())
            }
            .boxed()
        }),
    }
}

/// Logs (and records) the time from process start until every service answers ready.
async fn report_ready(ops: Vec<Arc<ServiceOps>>, started: Instant, cluster: Cluster) {
    loop {
        let mut all = true;
        for o in &ops {
            if o.ready().await.is_err() {
                all = false;
                break;
            }
        }
        if all {
            let secs = started.elapsed().as_secs_f64();
            metrics::gauge!(names::NODE_STARTUP_DURATION).set(secs);
            info!(services = ops.len(), startup_ms = (secs * 1000.0).round() as u64, "node ready");
            cluster.set_ready(true);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
