//! Checks, defined by `[health]` (interval, timeout, failure and success thresholds, like
//! Kubernetes probes and Consul checks): every `interval` each store this node has (database,
//! cache, object store — loom-storage's timed store checks) and, when brokers are configured,
//! the Kafka broker (a Kafka `ApiVersions` request over TCP, so a broker that accepts
//! connections but no longer answers counts as down) is probed, and so is every local service's
//! core actor (a ping through its mailbox: a stuck actor tree fails it although its supervisor
//! sees nothing wrong). A check turns `fail` after `failure_threshold` consecutive failures and
//! back to `pass` after `success_threshold` consecutive successes; a probe slower than `timeout`
//! fails. Each check runs in its own task, so a hanging one never delays the others. Dependency
//! results are observed as `dep:<name>` of this node; liveness results are kept in [`Liveness`]
//! for the supervision collector (`stream.rs`). Outputs name the store and the failure, never
//! its URL or credentials.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loom_config::HealthSection;
use loom_protocol::ServiceId;
use loom_service::{Dependency, NodeControl, ServiceContext};
use loom_supervisors::StatusBoard;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::aggregate::Aggregator;

/// The check definition in force (from `[health]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl From<&HealthSection> for Settings {
    fn from(h: &HealthSection) -> Settings {
        Settings {
            interval: h.interval.get(),
            timeout: h.timeout.get(),
            failure_threshold: h.failure_threshold,
            success_threshold: h.success_threshold,
        }
    }
}

/// Consecutive-result thresholds — pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    failure: u32,
    success: u32,
    passing: Option<bool>,
    streak: u32,
}

impl Threshold {
    pub fn new(failure: u32, success: u32) -> Threshold {
        Threshold { failure: failure.max(1), success: success.max(1), passing: None, streak: 0 }
    }

    /// Records one probe result; returns the reported state (`None` until the first result).
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        match self.passing {
            None => self.passing = Some(ok),
            Some(p) if p == ok => self.streak = 0,
            Some(_) => {
                self.streak += 1;
                let needed = if ok { self.success } else { self.failure };
                if self.streak >= needed {
                    self.passing = Some(ok);
                    self.streak = 0;
                }
            }
        }
        self.passing
    }
}

/// The liveness of this node's services: `Err(output)` while a service's check fails.
pub type Liveness = Arc<Mutex<BTreeMap<ServiceId, Result<(), String>>>>;

/// Starts one check task per configured dependency and per local service; returns the
/// services' liveness.
pub fn start(ctx: &ServiceContext, aggregator: Aggregator) -> Liveness {
    let me = ctx.cluster.node_name().to_owned();
    let settings = Settings::from(&ctx.config.health);
    for dep in [Dependency::Database, Dependency::Cache, Dependency::ObjectStore] {
        let (stores, aggregator, me) = (ctx.stores.clone(), aggregator.clone(), me.clone());
        tokio::spawn(async move {
            let backend = match dep {
                Dependency::Database => stores.database.backend(),
                Dependency::Cache => stores.cache.backend(),
                Dependency::ObjectStore => stores.objects.backend(),
            };
            let component = format!("dep:{}", dep.name());
            run_dependency(aggregator, me, component, backend.to_string(), settings, move || {
                let stores = stores.clone();
                async move {
                    let check = stores.check(dep).await;
                    match check.status {
                        loom_protocol::HealthStatus::Fail => Err(check.output.unwrap_or_else(|| "failed".into())),
                        _ => Ok(()),
                    }
                }
            })
            .await
        });
    }
    if ctx.config.kafka.enabled() {
        let brokers = ctx.config.kafka.brokers.clone();
        let timeout = settings.timeout;
        tokio::spawn(run_dependency(aggregator, me, "dep:kafka".into(), "kafka".into(), settings, move || {
            let brokers = brokers.clone();
            async move { kafka_api_versions(&brokers, timeout).await }
        }));
    }
    let liveness: Liveness = Arc::default();
    for (service, _) in ctx.config.services.enabled() {
        tokio::spawn(run_liveness(ctx.control.clone(), ctx.board.clone(), service, settings, liveness.clone()));
    }
    liveness
}

/// One probe run within the timeout, with its duration in ms.
async fn probe_once<F, Fut>(probe: &F, timeout: Duration) -> (Result<(), String>, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    };
    (outcome, (started.elapsed().as_secs_f64() * 1e4).round() / 10.0)
}

async fn run_dependency<F, Fut>(
    aggregator: Aggregator,
    me: String,
    component: String,
    backend: String,
    settings: Settings,
    probe: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut threshold = Threshold::new(settings.failure_threshold, settings.success_threshold);
    let mut failures: u64 = 0;
    loop {
        let started = Instant::now();
        let (outcome, ms) = probe_once(&probe, settings.timeout).await;
        failures += u64::from(outcome.is_err());
        if let Some(passing) = threshold.record(outcome.is_ok()) {
            let status = if passing { "pass" } else { "fail" };
            // Latency is left out of the detail so that only state changes make deltas.
            let detail = json!({ "backend": backend, "output": outcome.err(), "failures_total": failures });
            if !passing {
                tracing::debug!(component = %component, elapsed_ms = ms, "dependency probe failing");
            }
            aggregator.observe(&me, &component, status, detail);
        }
        tokio::time::sleep(settings.interval.saturating_sub(started.elapsed())).await;
    }
}

/// Pings one service's core actor every interval while its supervisor reports every actor
/// running (a tree that is starting or restarting is the supervision status's business).
async fn run_liveness(
    control: NodeControl,
    board: StatusBoard,
    service: ServiceId,
    settings: Settings,
    liveness: Liveness,
) {
    let mut threshold = Threshold::new(settings.failure_threshold, settings.success_threshold);
    loop {
        let started = Instant::now();
        if control.services().contains(&service) && board.all_running(service) {
            let (outcome, ms) = probe_once(&|| control.ping(service, settings.timeout), settings.timeout).await;
            let output = outcome.as_ref().err().cloned();
            if let Some(passing) = threshold.record(outcome.is_ok()) {
                let state = if passing { Ok(()) } else { Err(output.unwrap_or_else(|| "not answering".into())) };
                if !passing {
                    tracing::debug!(%service, elapsed_ms = ms, "liveness check failing");
                }
                liveness.lock().unwrap_or_else(|e| e.into_inner()).insert(service, state);
            }
        }
        tokio::time::sleep(settings.interval.saturating_sub(started.elapsed())).await;
    }
}

/// A Kafka `ApiVersions` v0 round trip to any bootstrap broker.
async fn kafka_api_versions(brokers: &[String], timeout: Duration) -> Result<(), String> {
    let mut last = String::from("no brokers configured");
    for broker in brokers {
        match tokio::time::timeout(timeout, api_versions(broker)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no ApiVersions answer within {} ms", timeout.as_millis()),
        }
    }
    Err(last)
}

async fn api_versions(broker: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(broker).await.map_err(|e| format!("connect: {}", e.kind()))?;
    let client = b"loom-health";
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&18i16.to_be_bytes()); // api key: ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // version 0
    body.extend_from_slice(&0x10ad_i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.map_err(|e| format!("write: {}", e.kind()))?;
    let mut head = [0u8; 10];
    stream.read_exact(&mut head).await.map_err(|e| format!("read: {}", e.kind()))?;
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let error = i16::from_be_bytes([head[8], head[9]]);
    match (correlation, error) {
        (0x10ad, 0) => Ok(()),
        (0x10ad, code) => Err(format!("ApiVersions error code {code}")),
        _ => Err("unexpected ApiVersions answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_consecutive_results_to_flip() {
        // (results, expected reported states)
        let cases: [(&[bool], &[Option<bool>]); 4] = [
            (&[true, false, true, false, false], &[Some(true), Some(true), Some(true), Some(true), Some(false)]),
            (&[false, true, true], &[Some(false), Some(false), Some(true)]),
            (
                &[true, false, false, false, true, false, true, true],
                &[Some(true), Some(true), Some(false), Some(false), Some(false), Some(false), Some(false), Some(true)],
            ),
            (&[], &[]),
        ];
        for (i, (results, want)) in cases.iter().enumerate() {
            let mut t = Threshold::new(2, 2);
            let got: Vec<Option<bool>> = results.iter().map(|r| t.record(*r)).collect();
            assert_eq!(&got, want, "case {i}");
        }
    }

    #[tokio::test]
    async fn a_probe_slower_than_the_timeout_fails_and_thresholds_come_from_the_definition() {
        let timeout = Duration::from_millis(50);
        // (probe delay, expected outcome)
        let cases = [(0u64, Ok(())), (500, Err("no answer within 50 ms".to_owned()))];
        for (delay, want) in cases {
            let probe = || async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Ok::<(), String>(())
            };
            assert_eq!(probe_once(&probe, timeout).await.0, want, "delay {delay}");
        }
        let section = HealthSection { failure_threshold: 1, success_threshold: 3, ..HealthSection::default() };
        let s = Settings::from(&section);
        let mut t = Threshold::new(s.failure_threshold, s.success_threshold);
        let got: Vec<Option<bool>> = [true, false, true, true, true].iter().map(|r| t.record(*r)).collect();
        assert_eq!(got, [Some(true), Some(false), Some(false), Some(false), Some(true)]);
    }

    #[tokio::test]
    async fn kafka_probe_reports_a_silent_broker_and_a_closed_port() {
        // A listener that accepts but never answers: the probe times out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let err = kafka_api_versions(std::slice::from_ref(&addr), Duration::from_millis(300)).await.unwrap_err();
        assert!(err.contains("no ApiVersions answer"), "{err}");
        hold.abort();
        // Nothing listening: refused at once.
        let err = kafka_api_versions(&["127.0.0.1:1".into()], Duration::from_millis(300)).await.unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
        // The real broker answering is covered by the multi-node test against Tansu.
    }
}
