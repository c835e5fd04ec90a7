//! What a stream service needs to put the bridge under its supervisor and readiness: the
//! consumer-group member as a supervised child, and the `kafka:reachable` probe kept current by
//! a metadata request every 2 s ([`bridge`] puts both together for a service's subscription),
//! and the dead-letter headers every stream mode writes. Shared by the Event Router, the
//! Privacy Filter, File Processing and Context Enrichment.

use std::sync::Arc;

use futures::FutureExt;
use loom_protocol::{CheckResult, HealthStatus};
use loom_service::ServiceContext;
use loom_supervisors::ChildSpec;

use crate::consumer::{GroupMember, Processor, Subscription, SubscriptionStatus};
use crate::{Producer, Record};

/// The subscription's group member as a supervised child (`kafka-consumer`) of the service.
pub fn member_child(ctx: &ServiceContext, sub: Subscription, status: Arc<SubscriptionStatus>) -> ChildSpec {
    ChildSpec {
        service: ctx.id,
        actor: "kafka-consumer".into(),
        policy: ctx.restart_policy(),
        start: Arc::new(move |supervisor| {
            let member = GroupMember { subscription: sub.clone(), status: status.clone() };
            async move {
                let (actor, _) = ractor::Actor::spawn_linked(None, member, (), supervisor).await?;
                Ok(actor.get_cell())
            }
            .boxed()
        }),
    }
}

/// Keeps the producer's broker reachability current: a metadata request every 2 s, failing
/// after [`crate::CLIENT_TIMEOUT`].
pub async fn probe_loop(producer: Producer) {
    loop {
        let p = producer.clone();
        let _ = tokio::task::spawn_blocking(move || p.probe()).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// `kafka:reachable`: the service is not ready while the broker does not answer (records then
/// wait uncommitted in Kafka). Starts [`probe_loop`].
pub fn kafka_probe(producer: Producer, brokers: usize) -> loom_service::Probe {
    tokio::spawn(probe_loop(producer.clone()));
    Arc::new(move || {
        let up = producer.connected();
        CheckResult {
            name: "kafka:reachable".into(),
            status: if up { HealthStatus::Pass } else { HealthStatus::Fail },
            component_type: Some("datastore".into()),
            observed_value: Some(serde_json::Value::Bool(up)),
            observed_unit: Some(format!("{brokers} bootstrap broker(s)")),
            output: (!up).then(|| "the Kafka broker does not answer metadata requests".to_owned()),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    })
}

/// The producer of a service's bridge; `None` (logged: the bridge stays off) when it cannot be
/// created.
pub fn bridge_producer(kafka: &loom_config::KafkaSection, service: &'static str) -> Option<Producer> {
    match Producer::new(kafka, service) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(service, error = %e, "Kafka producer could not be created; the bridge is off");
            None
        }
    }
}

/// A service's bridge: a supervised consumer-group member on `topics` running `processor`
/// (not transactional), and the `kafka:reachable` readiness probe on `producer`.
pub fn bridge(
    ctx: &ServiceContext,
    group: String,
    topics: Vec<String>,
    processor: Arc<dyn Processor>,
    producer: Producer,
) -> (ChildSpec, loom_service::Probe) {
    let kafka = ctx.config.kafka.clone();
    let brokers = kafka.brokers.len();
    let subscription = Subscription { service: ctx.id.name(), group, topics, kafka, processor, transactional: false };
    let status = Arc::new(SubscriptionStatus::default());
    (member_child(ctx, subscription, status), kafka_probe(producer, brokers))
}

/// A dead letter's headers: the record's own (without `loom.*`), then `loom.error.class`,
/// `loom.error.message` and where it came from (`loom.source.topic`, `.partition`, `.offset`).
pub fn dead_letter_headers(r: &Record, class: &str, message: &str) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> =
        r.headers.iter().filter(|(k, _)| !k.starts_with("loom.")).cloned().collect();
    for (k, v) in [
        ("loom.error.class", class.to_owned()),
        ("loom.error.message", message.to_owned()),
        ("loom.source.topic", r.topic.clone()),
        ("loom.source.partition", r.partition.to_string()),
        ("loom.source.offset", r.offset.to_string()),
    ] {
        headers.push((k.to_owned(), v.into_bytes()));
    }
    headers
}
