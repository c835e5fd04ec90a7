//! A cluster-wide book of versioned configuration (dedup policies, quality monitors, …): the
//! specs live in the node's database as [`loom_storage::documents`] of one kind, every node
//! keeps the compiled set in memory and reloads it when the kind's revision moves — on a
//! broadcast on the book's cluster topic after every write (the fast path), and on a poll (so a
//! missed broadcast costs at most one interval). With a shared database every node serves the
//! same versions: one truth per cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use loom_storage::documents::{Document, Documents};
use loom_storage::sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// A spec a book stores: its id, and how it compiles to what the service runs.
pub trait Spec: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    type Compiled: Send + Sync + 'static;
    /// Why a spec is refused (the service's own error type).
    type Error: From<BookError> + Send;
    fn id(&self) -> &str;
    fn compile(&self, version: i32) -> Result<Self::Compiled, Self::Error>;
}

/// What can go wrong in the book itself; services map it into their own error.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("at most {0} entries")]
    Full(usize),
    #[error("store: {0}")]
    Store(#[from] DbErr),
}

/// A stored spec as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Stored<S> {
    #[serde(flatten)]
    pub spec: S,
    pub version: i32,
    pub revision: i64,
    pub updated_ms: i64,
}

/// A compiled spec with the version it was stored under.
pub struct Entry<S: Spec> {
    pub spec: S,
    pub version: i32,
    pub compiled: S::Compiled,
}

type Current<S> = (i64, HashMap<String, Arc<Entry<S>>>);

pub struct Book<S: Spec> {
    docs: Documents,
    topic: &'static str,
    max: usize,
    cluster: Option<loom_cluster::Cluster>,
    current: Arc<RwLock<Current<S>>>,
    changed: watch::Sender<i64>,
    /// Whether a reload installed a set yet (revision 0 is also "nothing stored").
    loaded: Arc<AtomicBool>,
}

impl<S: Spec> Clone for Book<S> {
    fn clone(&self) -> Self {
        Book {
            docs: self.docs.clone(),
            topic: self.topic,
            max: self.max,
            cluster: self.cluster.clone(),
            current: self.current.clone(),
            changed: self.changed.clone(),
            loaded: self.loaded.clone(),
        }
    }
}

impl<S: Spec> Book<S> {
    /// A book of `kind` documents, announced on the cluster topic `topic`, of at most `max`.
    pub fn new(
        db: DatabaseConnection,
        kind: &'static str,
        topic: &'static str,
        max: usize,
        cluster: Option<loom_cluster::Cluster>,
    ) -> Book<S> {
        let (changed, _) = watch::channel(0);
        Book {
            docs: Documents::new(db, kind),
            topic,
            max,
            cluster,
            current: Arc::default(),
            changed,
            loaded: Arc::default(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry<S>>> {
        self.current.read().ok().and_then(|c| c.1.get(id).cloned())
    }

    /// [`Book::get`], and when the id is unknown here, a reload first: a spec another node
    /// stored a moment ago (its broadcast not yet here, or no cluster to carry it) is found,
    /// so a client that wrote through one node can use it at once through another.
    pub async fn get_fresh(&self, id: &str) -> Result<Option<Arc<Entry<S>>>, BookError> {
        if let Some(e) = self.get(id) {
            return Ok(Some(e));
        }
        self.reload().await?;
        Ok(self.get(id))
    }

    pub fn all(&self) -> Vec<Arc<Entry<S>>> {
        let mut all: Vec<_> = self.current.read().map(|c| c.1.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a: &Arc<Entry<S>>, b| a.spec.id().cmp(b.spec.id()));
        all
    }

    pub fn revision(&self) -> i64 {
        self.current.read().map(|c| c.0).unwrap_or(0)
    }

    /// Fires (with the revision) whenever the installed set changes.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }

    /// The stored specs (not tombstones) straight from the database.
    pub async fn stored(&self) -> Result<Vec<Stored<S>>, BookError> {
        Ok(self.docs.all().await?.into_iter().filter(|d| !d.deleted).filter_map(decode).collect())
    }

    /// Loads and compiles the stored specs and installs them if the revision moved.
    pub async fn reload(&self) -> Result<i64, BookError> {
        let revision = self.docs.revision().await?;
        if revision == self.revision() && (revision != 0 || self.loaded.load(Ordering::Relaxed)) {
            return Ok(revision);
        }
        let mut set = HashMap::new();
        for s in self.stored().await? {
            match s.spec.compile(s.version) {
                Ok(compiled) => {
                    set.insert(s.spec.id().to_owned(), Arc::new(Entry { spec: s.spec, version: s.version, compiled }));
                }
                // Specs are checked before they are stored; one an older Loom wrote that no
                // longer compiles is skipped loudly rather than stopping the others.
                Err(_) => {
                    tracing::error!(kind = self.docs.kind, id = s.spec.id(), "stored spec does not compile; skipped")
                }
            }
        }
        let n = set.len();
        if let Ok(mut c) = self.current.write() {
            *c = (revision, set);
        }
        self.changed.send_replace(revision);
        self.loaded.store(true, Ordering::Relaxed);
        tracing::info!(kind = self.docs.kind, revision, entries = n, "configuration installed");
        Ok(revision)
    }

    /// Validates (compiles) and stores a spec, then announces it.
    pub async fn put(&self, spec: S) -> Result<Stored<S>, S::Error> {
        let existing = self.stored().await?;
        if existing.len() >= self.max && !existing.iter().any(|s| s.spec.id() == spec.id()) {
            return Err(BookError::Full(self.max).into());
        }
        spec.compile(0)?;
        let body = serde_json::to_string(&spec).map_err(|e| BookError::Store(DbErr::Custom(e.to_string())))?;
        let (version, revision) = self.docs.put(spec.id(), Some(&body)).await.map_err(BookError::from)?;
        self.announce().await;
        Ok(Stored { spec, version, revision, updated_ms: loom_storage::documents::now_ms() })
    }

    /// Writes a tombstone; `NotFound` if there is no such spec.
    pub async fn delete(&self, id: &str) -> Result<(), BookError> {
        if !self.stored().await?.iter().any(|s| s.spec.id() == id) {
            return Err(BookError::NotFound(id.to_owned()));
        }
        self.docs.put(id, None).await?;
        self.announce().await;
        Ok(())
    }

    async fn announce(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(kind = self.docs.kind, error = %e, "reload after a write failed; the poll will retry");
        }
        if let Some(c) = &self.cluster {
            c.publish(self.topic, b"changed");
        }
    }

    /// Keeps this node's set current: broadcasts, plus a 2 s poll of the revision.
    pub async fn follow(self) {
        let cluster = self.cluster.clone();
        crate::follow::reload_on(cluster, self.topic, Duration::from_secs(2), || async {
            if let Err(e) = self.reload().await {
                tracing::debug!(kind = self.docs.kind, error = %e, "reload failed; retrying");
            }
        })
        .await
    }
}

fn decode<S: DeserializeOwned>(d: Document) -> Option<Stored<S>> {
    let spec = serde_json::from_str(&d.body).ok()?;
    Some(Stored { spec, version: d.version, revision: d.revision, updated_ms: d.updated_ms })
}
