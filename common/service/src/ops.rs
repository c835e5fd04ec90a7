//! `ServiceOps`: what `/health`, `/ready`, `/metrics` and `/version` report for one service —
//! its supervised children from the status board, a ping through its core actor's mailbox, and
//! the stores it declared — and the fault injection entry point.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use loom_http::ops::FaultRequest;
use loom_http::{HealthReport, OpsProvider, Problem, VersionInfo};
use loom_protocol::{CheckResult, HealthStatus, RequestId};
use loom_storage::Dependency;
use loom_supervisors::ChildState;
use loom_telemetry::{MetricsRegistry, names};

use crate::ServiceContext;
use crate::core::CoreHandle;

/// How long the readiness and health pings may wait for the core actor.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

pub struct ServiceOps {
    ctx: ServiceContext,
    version: &'static str,
    dependencies: &'static [Dependency],
    observes: &'static [Dependency],
    core: CoreHandle,
    probes: Vec<crate::Probe>,
    /// This port also renders the node-wide series (exactly one port per node does).
    node_metrics: bool,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ServiceOps {
    pub fn new(
        def: &crate::ServiceDef,
        ctx: ServiceContext,
        parts: &crate::ServiceParts,
        node_metrics: bool,
    ) -> Arc<ServiceOps> {
        Arc::new(ServiceOps {
            ctx,
            version: def.version,
            dependencies: def.dependencies,
            observes: def.observes,
            core: parts.core.clone(),
            probes: parts.probes.clone(),
            node_metrics,
        })
    }

    fn actor_checks(&self) -> Vec<CheckResult> {
        self.ctx
            .board
            .service(self.ctx.id)
            .into_iter()
            .map(|(actor, status)| {
                let health = match status.state {
                    ChildState::Running => HealthStatus::Pass,
                    ChildState::Starting | ChildState::Restarting => HealthStatus::Warn,
                    ChildState::Failed | ChildState::Stopped => HealthStatus::Fail,
                };
                let mut output = status.state.as_str().to_owned();
                if let Some(failure) = &status.last_failure {
                    output.push_str("; last failure: ");
                    output.push_str(failure);
                }
                CheckResult {
                    name: format!("{actor}:restarts"),
                    status: health,
                    component_type: Some("actor".into()),
                    observed_value: Some(status.restarts.into()),
                    observed_unit: Some("restarts".into()),
                    output: Some(output),
                    time: now_rfc3339(),
                }
            })
            .collect()
    }

    async fn core_checks(&self) -> Vec<CheckResult> {
        let started = Instant::now();
        let ping = self.core.ping(RequestId::generate(), PING_TIMEOUT).await;
        let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let mailbox = self.core.mailbox();
        let depth = mailbox.depth();
        let depth_status = if depth * 10 >= mailbox.capacity() * 8 { HealthStatus::Warn } else { HealthStatus::Pass };
        vec![
            CheckResult {
                name: "core:responseTime".into(),
                status: if ping.is_ok() { HealthStatus::Pass } else { HealthStatus::Fail },
                component_type: Some("actor".into()),
                observed_value: Some(ms.into()),
                observed_unit: Some("ms".into()),
                output: ping.err().map(|e| e.to_string()),
                time: now_rfc3339(),
            },
            CheckResult {
                name: "core:mailboxDepth".into(),
                status: depth_status,
                component_type: Some("actor".into()),
                observed_value: Some(depth.into()),
                observed_unit: Some(format!("messages (capacity {})", mailbox.capacity())),
                output: None,
                time: now_rfc3339(),
            },
        ]
    }

    async fn readiness(&self) -> Result<(), String> {
        if self.ctx.draining.load(Ordering::Acquire) {
            return Err("the node is shutting down".into());
        }
        if let Some(reason) = self.ctx.control.not_ready_reason() {
            return Err(format!("held not ready: {reason}"));
        }
        let not_running: Vec<String> = self
            .ctx
            .board
            .service(self.ctx.id)
            .into_iter()
            .filter(|(_, s)| s.state != ChildState::Running)
            .map(|(actor, s)| format!("{actor} is {}", s.state.as_str()))
            .collect();
        if !not_running.is_empty() {
            return Err(not_running.join(", "));
        }
        if !self.ctx.board.all_running(self.ctx.id) {
            return Err("actors not started yet".into());
        }
        self.core.ping(RequestId::generate(), PING_TIMEOUT).await.map_err(|e| e.to_string())?;
        for dep in self.dependencies {
            let check = self.ctx.stores.check(*dep).await;
            if check.status == HealthStatus::Fail {
                return Err(format!("{} unavailable: {}", dep.name(), check.output.unwrap_or_default()));
            }
        }
        for probe in &self.probes {
            let check = probe();
            if check.status == HealthStatus::Fail {
                return Err(format!("{} unavailable: {}", check.name, check.output.unwrap_or_default()));
            }
        }
        Ok(())
    }
}

impl OpsProvider for ServiceOps {
    fn health(&self) -> BoxFuture<'_, HealthReport> {
        async move {
            let mut checks = self.actor_checks();
            checks.extend(self.core_checks().await);
            for dep in self.dependencies {
                checks.push(self.ctx.stores.check(*dep).await);
            }
            checks.extend(self.probes.iter().map(|p| p()));
            for dep in self.observes {
                // A watched store being down is news, not a failure of this service.
                let mut check = self.ctx.stores.check(*dep).await;
                check.status = check.status.min(HealthStatus::Warn);
                checks.push(check);
            }
            let mut notes = Vec::new();
            if self.ctx.draining.load(Ordering::Acquire) {
                notes.push("the node is shutting down".to_owned());
            }
            if let Some(reason) = self.ctx.control.not_ready_reason() {
                notes.push(format!("held not ready: {reason}"));
            }
            let status = HealthStatus::worst(checks.iter().map(|c| c.status));
            HealthReport { status, checks, notes }
        }
        .boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let result = self.readiness().await;
            let up = if result.is_ok() { 1.0 } else { 0.0 };
            metrics::gauge!(names::SERVICE_READY, "service" => self.ctx.id.name()).set(up);
            result
        }
        .boxed()
    }

    fn metrics(&self) -> String {
        let registry = MetricsRegistry::global();
        let mut text = registry.render_service(self.ctx.id);
        if self.node_metrics {
            text.push_str(&registry.render_node());
        }
        text
    }

    fn version(&self) -> VersionInfo {
        VersionInfo {
            service: self.ctx.id.name().to_owned(),
            version: self.version.to_owned(),
            commit: self.ctx.node.commit.clone(),
            profile: self.ctx.node.profile.to_owned(),
            node: self.ctx.node.name.clone(),
        }
    }

    fn inject_fault(&self, request_id: RequestId, request: FaultRequest) -> BoxFuture<'_, Result<(), Problem>> {
        async move {
            if request.actor != "core" {
                return Err(Problem::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "unknown_actor",
                    format!("{} has no actor `{}` that accepts faults (try `core`)", self.ctx.id, request.actor),
                ));
            }
            self.core.inject(request_id, request.fault).await.map_err(|e| Problem::from_error(&e))
        }
        .boxed()
    }
}
