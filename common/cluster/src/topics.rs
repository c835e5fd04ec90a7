//! Cluster-wide broadcast topics: fire-and-forget notifications every node that subscribed to a
//! topic receives (cache invalidations, rule-set reloads). Each subscription is an actor in the
//! process group `loom.topic.<name>`, which ractor_cluster syncs to every peer with a session;
//! publishing casts the bytes to every member, local and remote. Delivery is best effort (a
//! peer without a session misses it), so subscribers must also tolerate staleness (a TTL).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster_derive::RactorClusterMessage;
use tokio::sync::mpsc;

/// Notifications queued per subscriber before new ones are dropped (and counted in the log).
const SUBSCRIBER_QUEUE: usize = 1024;

#[derive(RactorClusterMessage)]
pub enum TopicMsg {
    Publish(Vec<u8>),
}

pub fn group(topic: &str) -> String {
    format!("loom.topic.{topic}")
}

pub struct TopicActor;

#[ractor::async_trait]
impl Actor for TopicActor {
    type Msg = TopicMsg;
    type State = mpsc::Sender<Vec<u8>>;
    type Arguments = mpsc::Sender<Vec<u8>>;

    async fn pre_start(
        &self,
        _: ActorRef<TopicMsg>,
        tx: mpsc::Sender<Vec<u8>>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        me: ActorRef<TopicMsg>,
        msg: TopicMsg,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let TopicMsg::Publish(bytes) = msg;
        if tx.try_send(bytes).is_err() {
            if tx.is_closed() {
                me.stop(None);
            } else {
                tracing::warn!("topic subscriber is {SUBSCRIBER_QUEUE} notifications behind; dropping one");
            }
        }
        Ok(())
    }
}

/// Subscribes this node to `topic`.
pub async fn subscribe(topic: &str) -> Result<mpsc::Receiver<Vec<u8>>, String> {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
    let (actor, _) =
        Actor::spawn(None, TopicActor, tx).await.map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
    ractor::pg::join(group(topic), vec![actor.get_cell()]);
    Ok(rx)
}

/// Sends `bytes` to every subscriber of `topic` in the cluster (this node's included).
pub fn publish(topic: &str, bytes: &[u8]) -> usize {
    let members = ractor::pg::get_members(&group(topic));
    let n = members.len();
    for cell in members {
        let actor: ActorRef<TopicMsg> = cell.into();
        let _ = actor.cast(TopicMsg::Publish(bytes.to_vec()));
    }
    n
}
