//! Per-key async locks on the owner node: keyed calls route every writer of a key to one node,
//! and this makes them take turns there (two registrations of one device, two links of one
//! device). A lock lives only while someone holds or waits for it; idle keys cost nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Clone, Default)]
pub struct KeyLocks {
    locks: Arc<Mutex<HashMap<String, Weak<AsyncMutex<()>>>>>,
}

impl KeyLocks {
    /// Waits for `key`'s turn; the turn ends when the guard drops.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
                lock
            } else {
                // Forget keys nobody holds any more before adding one.
                if locks.len() >= 1024 {
                    locks.retain(|_, lock| lock.strong_count() > 0);
                }
                let lock = Arc::new(AsyncMutex::new(()));
                locks.insert(key.to_owned(), Arc::downgrade(&lock));
                lock
            }
        };
        lock.lock_owned().await
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.locks.lock().unwrap().values().filter(|l| l.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn writers_of_one_key_take_turns_and_other_keys_do_not_wait() {
        let locks = KeyLocks::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _turn = locks.lock("device-a").await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        // Another key is not blocked by the busy one.
        let other = tokio::time::timeout(Duration::from_secs(1), locks.lock("device-b")).await;
        assert!(other.is_ok());
        drop(other);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one writer of a key at a time");
        assert_eq!(locks.held(), 0, "idle keys hold nothing");
    }
}
