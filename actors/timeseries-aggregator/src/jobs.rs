//! The cluster-wide job set: writes go to the database (validated first), a broadcast on the
//! cluster topic `timeseries.jobs` makes every node reload at once, and every node also polls
//! the store's revision every 2 s, so a missed broadcast costs at most that. Every node runs
//! the same job versions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::error::TsError;
use crate::spec::{Job, JobSpec};
use crate::store::Store;

pub const JOBS_TOPIC: &str = "timeseries.jobs";
/// Jobs a cluster holds at most.
pub const MAX_JOBS: usize = 1000;

/// A stored job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredJob {
    #[serde(flatten)]
    pub spec: JobSpec,
    pub version: i32,
    pub revision: i64,
    pub updated_ms: i64,
}

#[derive(Clone)]
pub struct JobBook {
    pub store: Store,
    pub cluster: Option<loom_cluster::Cluster>,
    current: Arc<RwLock<(i64, HashMap<String, Arc<Job>>)>>,
    changed: watch::Sender<i64>,
}

impl JobBook {
    pub fn new(store: Store, cluster: Option<loom_cluster::Cluster>) -> JobBook {
        let (changed, _) = watch::channel(0);
        JobBook { store, cluster, current: Arc::default(), changed }
    }

    /// The compiled job as this node runs it.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.current.read().ok().and_then(|c| c.1.get(id).cloned())
    }

    pub fn all(&self) -> Vec<Arc<Job>> {
        self.current.read().map(|c| c.1.values().cloned().collect()).unwrap_or_default()
    }

    pub fn revision(&self) -> i64 {
        self.current.read().map(|c| c.0).unwrap_or(0)
    }

    /// Fires (with the revision) whenever the installed job set changes.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }

    pub async fn stored(&self) -> Result<Vec<StoredJob>, TsError> {
        Ok(self
            .store
            .jobs()
            .await?
            .into_iter()
            .filter(|r| !r.deleted)
            .filter_map(|r| {
                let spec: JobSpec = serde_json::from_str(&r.body).ok()?;
                Some(StoredJob { spec, version: r.version, revision: r.revision, updated_ms: r.updated_ms })
            })
            .collect())
    }

    /// Loads and compiles the stored jobs and installs them if the revision moved.
    pub async fn reload(&self) -> Result<i64, TsError> {
        let revision = self.store.revision().await?;
        if revision == self.revision() && revision != 0 {
            return Ok(revision);
        }
        let mut jobs = HashMap::new();
        for s in self.stored().await? {
            match Job::compile(s.spec, s.version) {
                Ok(j) => {
                    jobs.insert(j.spec.id.clone(), Arc::new(j));
                }
                // Specs are checked before they are stored; one an older Loom wrote that no
                // longer compiles is skipped loudly rather than stopping every job.
                Err(e) => tracing::error!(error = %e, "stored job does not compile; skipped"),
            }
        }
        let n = jobs.len();
        if let Ok(mut c) = self.current.write() {
            *c = (revision, jobs);
        }
        self.changed.send_replace(revision);
        tracing::info!(revision, jobs = n, "job set installed");
        Ok(revision)
    }

    pub async fn put(&self, spec: JobSpec) -> Result<StoredJob, TsError> {
        let existing = self.stored().await?;
        if existing.len() >= MAX_JOBS && !existing.iter().any(|j| j.spec.id == spec.id) {
            return Err(TsError::Conflict(format!("at most {MAX_JOBS} jobs")));
        }
        Job::compile(spec.clone(), 0)?;
        let body = serde_json::to_string(&spec).map_err(|e| TsError::Invalid(e.to_string()))?;
        let (version, revision) = self.store.put_job(&spec.id, Some(&body)).await?;
        self.announce().await;
        Ok(StoredJob { spec, version, revision, updated_ms: crate::store::now_ms() })
    }

    pub async fn delete(&self, id: &str) -> Result<(), TsError> {
        if !self.stored().await?.iter().any(|j| j.spec.id == id) {
            return Err(TsError::NotFound(format!("job '{id}'")));
        }
        self.store.put_job(id, None).await?;
        self.store.purge(id).await?;
        self.announce().await;
        Ok(())
    }

    async fn announce(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "job reload after a write failed; the poll will retry");
        }
        if let Some(c) = &self.cluster {
            c.publish(JOBS_TOPIC, b"changed");
        }
    }

    /// Keeps this node's job set current: broadcasts, plus a 2 s poll of the revision.
    pub async fn follow(self) {
        let cluster = self.cluster.clone();
        loom_service::follow::reload_on(cluster, JOBS_TOPIC, Duration::from_secs(2), || async {
            if let Err(e) = self.reload().await {
                tracing::debug!(error = %e, "job reload failed; retrying");
            }
        })
        .await
    }
}
