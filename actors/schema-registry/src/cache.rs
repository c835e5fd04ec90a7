//! Read caches of one node, so the hot paths (`/validate`, `GET /schemas/ids/{id}`) do not touch
//! the database. Schema rows never change once written (an id keeps its meaning forever), so
//! they are cached without expiry. A subject's version list changes on writes: this node drops
//! its entry on its own writes and on the cluster-wide invalidation other nodes broadcast, and a
//! short TTL bounds staleness if a broadcast is missed. A read that began before an invalidation
//! never stores what it read (the invalidation generation moved), so a slow read cannot put the
//! old list back. Both caches are bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Bumped by every invalidation.
    generation: Arc<AtomicU64>,
}

impl Caches {
    /// Take before reading the store; give to [`Caches::put_subject`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn subject(&self, subject: &str) -> Option<Arc<Vec<versions::Model>>> {
        let map = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        map.get(subject).filter(|(at, _)| at.elapsed() < SUBJECT_TTL).map(|(_, rows)| rows.clone())
    }

    /// Caches `rows`, read after [`Caches::generation`] returned `read_at` — unless an
    /// invalidation happened since (then the rows may be stale and are not kept).
    pub fn put_subject(&self, subject: &str, rows: Arc<Vec<versions::Model>>, read_at: u64) {
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != read_at {
            return;
        }
        if map.len() >= CAPACITY {
            map.retain(|_, (at, _)| at.elapsed() < SUBJECT_TTL);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(subject.to_owned(), (Instant::now(), rows));
    }

    pub fn invalidate(&self, subject: &str) {
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(subject);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_older_than_an_invalidation_is_not_cached() {
        let c = Caches::default();
        let rows = Arc::new(Vec::new());
        // (invalidate between the read and the put?, cached afterwards?)
        for (invalidated, cached) in [(false, true), (true, false)] {
            c.invalidate("s");
            let read_at = c.generation();
            if invalidated {
                c.invalidate("s");
            }
            c.put_subject("s", rows.clone(), read_at);
            assert_eq!(c.subject("s").is_some(), cached, "invalidated in between: {invalidated}");
        }
    }
}
