//! External dependency probes: every [`INTERVAL`] each store this node has (database, cache,
//! object store — loom-storage's timed store checks) and, when brokers are configured, the
//! Kafka broker (a Kafka `ApiVersions` request over TCP, so a broker that accepts connections
//! but no longer answers counts as down) is checked. A dependency turns `fail` after
//! [`FAILURE_THRESHOLD`] consecutive failures and back to `pass` after [`SUCCESS_THRESHOLD`]
//! consecutive successes, like Kubernetes probes. Each dependency is probed by its own task, so
//! a hanging one never delays the others. Results are observed as `dep:<name>` of this node.
//! Probe outputs name the store and the failure, never its URL or credentials.

use std::time::{Duration, Instant};

use loom_service::{Dependency, ServiceContext};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::aggregate::Aggregator;

pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long the Kafka probe may take (the store checks have loom-storage's `CHECK_TIMEOUT`).
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(1);
pub const FAILURE_THRESHOLD: u32 = 2;
pub const SUCCESS_THRESHOLD: u32 = 2;

/// Consecutive-result thresholds — pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Threshold {
    passing: Option<bool>,
    streak: u32,
}

impl Threshold {
    /// Records one probe result; returns the reported state (`None` until the first result).
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        match self.passing {
            None => self.passing = Some(ok),
            Some(p) if p == ok => self.streak = 0,
            Some(_) => {
                self.streak += 1;
                let needed = if ok { SUCCESS_THRESHOLD } else { FAILURE_THRESHOLD };
                if self.streak >= needed {
                    self.passing = Some(ok);
                    self.streak = 0;
                }
            }
        }
        self.passing
    }
}

/// Starts one probe task per configured dependency.
pub fn start(ctx: &ServiceContext, aggregator: Aggregator) {
    let me = ctx.cluster.node_name().to_owned();
    for dep in [Dependency::Database, Dependency::Cache, Dependency::ObjectStore] {
        let (stores, aggregator, me) = (ctx.stores.clone(), aggregator.clone(), me.clone());
        tokio::spawn(async move {
            let backend = match dep {
                Dependency::Database => stores.database.backend(),
                Dependency::Cache => stores.cache.backend(),
                Dependency::ObjectStore => stores.objects.backend(),
            };
            run(aggregator, me, format!("dep:{}", dep.name()), backend.to_string(), move || {
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
        tokio::spawn(run(aggregator, me, "dep:kafka".into(), "kafka".into(), move || {
            let brokers = brokers.clone();
            async move { kafka_api_versions(&brokers).await }
        }));
    }
}

async fn run<F, Fut>(aggregator: Aggregator, me: String, component: String, backend: String, probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut threshold = Threshold::default();
    let mut failures: u64 = 0;
    loop {
        let started = Instant::now();
        let outcome = probe().await;
        let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
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
        tokio::time::sleep(INTERVAL.saturating_sub(started.elapsed())).await;
    }
}

/// A Kafka `ApiVersions` v0 round trip to any bootstrap broker.
async fn kafka_api_versions(brokers: &[String]) -> Result<(), String> {
    let mut last = String::from("no brokers configured");
    for broker in brokers {
        match tokio::time::timeout(KAFKA_TIMEOUT, api_versions(broker)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no ApiVersions answer within {} ms", KAFKA_TIMEOUT.as_millis()),
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
            let mut t = Threshold::default();
            let got: Vec<Option<bool>> = results.iter().map(|r| t.record(*r)).collect();
            assert_eq!(&got, want, "case {i}");
        }
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
        let err = kafka_api_versions(std::slice::from_ref(&addr)).await.unwrap_err();
        assert!(err.contains("no ApiVersions answer"), "{err}");
        hold.abort();
        // Nothing listening: refused at once.
        let err = kafka_api_versions(&["127.0.0.1:1".into()]).await.unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
        // The real broker answering is covered by the multi-node test against Tansu.
    }
}
