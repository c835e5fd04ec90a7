//! Read caches of one node, so the hot paths (`/validate`, `GET /schemas/ids/{id}`) do not touch
//! the database. Schema rows never change once written (an id keeps its meaning forever), so
//! they are cached without expiry. A subject's version list changes on writes: this node drops
//! its entry on its own writes and on the cluster-wide invalidation other nodes broadcast, and a
//! short TTL bounds staleness if a broadcast is missed. Both caches are bounded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{schemas, versions};

/// How long a subject's version list may be served without re-reading it.
pub const SUBJECT_TTL: Duration = Duration::from_secs(5);
const CAPACITY: usize = 10_000;

#[derive(Clone, Default)]
pub struct Caches {
    subjects: Arc<RwLock<HashMap<String, (Instant, Arc<Vec<versions::Model>>)>>>,
    schemas: Arc<RwLock<HashMap<i32, Arc<schemas::Model>>>>,
}

impl Caches {
    pub fn subject(&self, subject: &str) -> Option<Arc<Vec<versions::Model>>> {
        let map = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        map.get(subject).filter(|(at, _)| at.elapsed() < SUBJECT_TTL).map(|(_, rows)| rows.clone())
    }

    pub fn put_subject(&self, subject: &str, rows: Arc<Vec<versions::Model>>) {
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, (at, _)| at.elapsed() < SUBJECT_TTL);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(subject.to_owned(), (Instant::now(), rows));
    }

    pub fn invalidate(&self, subject: &str) {
        self.subjects.write().unwrap_or_else(|e| e.into_inner()).remove(subject);
    }

    pub fn schema(&self, id: i32) -> Option<Arc<schemas::Model>> {
        self.schemas.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    pub fn put_schema(&self, row: schemas::Model) -> Arc<schemas::Model> {
        let row = Arc::new(row);
        let mut map = self.schemas.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(row.id, row.clone());
        row
    }
}
