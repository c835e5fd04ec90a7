//! What a stream service needs to put the bridge under its supervisor and readiness: the
//! consumer-group member as a supervised child, and the `kafka:reachable` probe kept current by
//! a metadata request every 2 s. Shared by the Event Router and the Privacy Filter's stream mode.

use std::sync::Arc;

use futures::FutureExt;
use loom_protocol::{CheckResult, HealthStatus};
use loom_service::ServiceContext;
use loom_supervisors::ChildSpec;

use crate::Producer;
use crate::consumer::{GroupMember, Subscription, SubscriptionStatus};

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
