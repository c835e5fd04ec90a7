//! One consumer-group member per configured source, started and stopped as the configuration
//! changes — the shape every service with user-defined Kafka sources shares (aggregation jobs,
//! dedup policies). A [`SourcesActor`] (supervised by the service) reconciles the members it
//! runs (linked to it) with what its [`Sources`] says is wanted, on every configuration change
//! and every 5 s; a member that fails is restarted at the next reconcile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use loom_service::Mailbox;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use tokio::sync::watch;

use crate::consumer::{GroupMember, MemberMsg, Subscription, SubscriptionStatus};

/// What a service wants consumed now.
pub trait Sources: Send + Sync + 'static {
    /// Per source id: a fingerprint (a changed one restarts the member: e.g. the topic) and the
    /// subscription.
    fn wanted(&self) -> Vec<(String, String, Subscription)>;
    /// Fires when the configuration changes.
    fn changes(&self) -> watch::Receiver<i64>;
}

#[derive(RactorMessage)]
pub enum SourcesMsg {
    Reconcile,
}

pub struct SourcesActor {
    pub mailbox: Arc<Mailbox>,
    pub service: &'static str,
}

pub struct SourcesState {
    sources: Arc<dyn Sources>,
    members: HashMap<String, (String, ActorRef<MemberMsg>)>,
    ticker: tokio::task::JoinHandle<()>,
}

#[ractor::async_trait]
impl Actor for SourcesActor {
    type Msg = SourcesMsg;
    type State = SourcesState;
    type Arguments = Arc<dyn Sources>;

    async fn pre_start(
        &self,
        me: ActorRef<SourcesMsg>,
        sources: Arc<dyn Sources>,
    ) -> Result<SourcesState, ActorProcessingErr> {
        let mut changes = sources.changes();
        let ticker = tokio::spawn(async move {
            loop {
                if me.cast(SourcesMsg::Reconcile).is_err() {
                    return;
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        });
        Ok(SourcesState { sources, members: HashMap::new(), ticker })
    }

    async fn post_stop(&self, _: ActorRef<SourcesMsg>, state: &mut SourcesState) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        for (_, (_, m)) in state.members.drain() {
            m.stop(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<SourcesMsg>,
        msg: SourcesMsg,
        state: &mut SourcesState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SourcesMsg::Reconcile => {
                self.mailbox.handled();
                self.reconcile(&me, state).await;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<SourcesMsg>,
        event: SupervisionEvent,
        state: &mut SourcesState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorFailed(cell, why) => {
                crate::count_error(self.service, "member_failed");
                tracing::error!(service = self.service, error = %why,
                    "a source's consumer-group member failed; it restarts at the next reconcile");
                cell.get_id()
            }
            SupervisionEvent::ActorTerminated(cell, ..) => cell.get_id(),
            _ => return Ok(()),
        };
        state.members.retain(|_, (_, m)| m.get_id() != cell);
        Ok(())
    }
}

impl SourcesActor {
    async fn reconcile(&self, me: &ActorRef<SourcesMsg>, state: &mut SourcesState) {
        let wanted: HashMap<String, (String, Subscription)> =
            state.sources.wanted().into_iter().map(|(id, fp, sub)| (id, (fp, sub))).collect();
        let gone: Vec<String> = state
            .members
            .iter()
            .filter(|(id, (fp, _))| wanted.get(*id).is_none_or(|(f, _)| f != fp))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some((_, m)) = state.members.remove(&id) {
                m.stop(Some("source removed or changed".into()));
            }
        }
        for (id, (fp, sub)) in wanted {
            if state.members.contains_key(&id) {
                continue;
            }
            let topics = sub.topics.clone();
            let member = GroupMember { subscription: sub, status: Arc::new(SubscriptionStatus::default()) };
            match Actor::spawn_linked(None, member, (), me.get_cell()).await {
                Ok((actor, _)) => {
                    tracing::info!(service = self.service, source = %id, ?topics, "source started");
                    state.members.insert(id, (fp, actor));
                }
                Err(e) => tracing::warn!(service = self.service, source = %id, error = %e,
                    "source did not start; retrying at the next reconcile"),
            }
        }
    }
}
