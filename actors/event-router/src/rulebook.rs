//! The cluster-wide rule set: writes go to the database (validated and compiled first), then a
//! broadcast on the cluster topic `router.rules` makes every node reload at once; every node also
//! polls the store's revision every 2 s, so a missed broadcast costs at most that.

use std::sync::Arc;
use std::time::Duration;

use crate::error::RouterError;
use crate::router::Router;
use crate::rules::{CompiledRule, RuleSet, RuleSpec, compile_rule};
use crate::store::Store;

pub const RULES_TOPIC: &str = "router.rules";

#[derive(Clone)]
pub struct RuleBook {
    pub store: Store,
    pub router: Arc<Router>,
    pub cluster: Option<loom_cluster::Cluster>,
}

/// A stored rule as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredRule {
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub version: i32,
    pub revision: i64,
    pub updated_ms: i64,
}

impl RuleBook {
    pub async fn stored(&self) -> Result<Vec<StoredRule>, RouterError> {
        let rows = self.store.all_rules().await?;
        Ok(rows
            .into_iter()
            .filter(|r| !r.deleted)
            .filter_map(|r| {
                let spec: RuleSpec = serde_json::from_str(&r.body).ok()?;
                Some(StoredRule { spec, version: r.version, revision: r.revision, updated_ms: r.updated_ms })
            })
            .collect())
    }

    /// Loads and compiles the stored rules and installs them if the revision moved.
    pub async fn reload(&self) -> Result<i64, RouterError> {
        let revision = self.store.revision().await?;
        if revision == self.router.rules().version && revision != 0 {
            return Ok(revision);
        }
        let mut compiled: Vec<Arc<CompiledRule>> = Vec::new();
        for rule in self.stored().await? {
            match compile_rule(rule.spec, rule.version) {
                Ok(c) => compiled.push(Arc::new(c)),
                // Rules are checked before they are stored; a stored rule that no longer compiles
                // (an older Loom wrote it) is skipped loudly rather than stopping all routing.
                Err(e) => tracing::error!(error = %e, "stored rule does not compile; skipped"),
            }
        }
        let n = compiled.len();
        self.router.install(RuleSet::new(revision, compiled));
        tracing::info!(revision, rules = n, "rule set installed");
        Ok(revision)
    }

    pub async fn put(&self, spec: RuleSpec) -> Result<StoredRule, RouterError> {
        let existing = self.stored().await?;
        if existing.len() >= crate::rules::MAX_RULES && !existing.iter().any(|r| r.spec.id == spec.id) {
            return Err(RouterError::Conflict(format!("at most {} rules", crate::rules::MAX_RULES)));
        }
        compile_rule(spec.clone(), 0).map_err(RouterError::BadRule)?;
        let body = serde_json::to_string(&spec).map_err(|e| RouterError::Invalid(e.to_string()))?;
        let (version, revision) = self.store.put_rule(&spec.id, Some(&body)).await?;
        self.changed().await;
        Ok(StoredRule { spec, version, revision, updated_ms: crate::store::now_ms() })
    }

    pub async fn delete(&self, id: &str) -> Result<(), RouterError> {
        match self.store.rule(id).await? {
            Some(r) if !r.deleted => {}
            _ => return Err(RouterError::NotFound(format!("rule '{id}'"))),
        }
        self.store.put_rule(id, None).await?;
        self.changed().await;
        Ok(())
    }

    async fn changed(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "rule reload after a write failed; the poll will retry");
        }
        if let Some(c) = &self.cluster {
            c.publish(RULES_TOPIC, b"changed");
        }
    }

    /// Keeps this node's rule set current: broadcasts, plus a 2 s poll of the revision.
    pub async fn follow(self) {
        let cluster = self.cluster.clone();
        loom_service::follow::reload_on(cluster, RULES_TOPIC, Duration::from_secs(2), || async {
            if let Err(e) = self.reload().await {
                tracing::debug!(error = %e, "rule reload failed; retrying");
            }
        })
        .await
    }
}
