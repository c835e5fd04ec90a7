//! The cache: short-lived shared state with per-entry TTL. In-process (moka, bounded by entry
//! count) on one node; Redis when configured, so every node sees the same entries.

use std::time::{Duration, Instant};

use moka::Expiry;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::StoreError;

#[derive(Clone)]
pub enum Cache {
    Local(moka::future::Cache<String, Entry>),
    Redis(ConnectionManager),
}

/// A cached value with its own time to live.
#[derive(Clone)]
pub struct Entry {
    value: Vec<u8>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Redis wants whole milliseconds of at least 1.
fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl Cache {
    pub fn local(max_entries: u64) -> Cache {
        Cache::Local(moka::future::Cache::builder().max_capacity(max_entries).expire_after(PerEntryTtl).build())
    }

    pub async fn redis(url: &str) -> Result<Cache, StoreError> {
        let fail = |reason: String| StoreError { store: "cache", target: loom_config::redact_url(url), reason };
        let client = redis::Client::open(url).map_err(|e| fail(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let manager = ConnectionManager::new_with_config(client, config).await.map_err(|e| fail(e.to_string()))?;
        Ok(Cache::Redis(manager))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Cache::Local(_) => "in-process",
            Cache::Redis(_) => "redis",
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Cache::Local(c) => Ok(c.get(key).await.map(|e| e.value)),
            Cache::Redis(m) => m.clone().get(key).await.map_err(|e| e.to_string()),
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        match self {
            Cache::Local(c) => {
                c.insert(key.to_owned(), Entry { value: value.to_vec(), ttl }).await;
                Ok(())
            }
            Cache::Redis(m) => m.clone().pset_ex::<_, _, ()>(key, value, ttl_ms(ttl)).await.map_err(|e| e.to_string()),
        }
    }

    /// Stores the value only if the key is absent; true when this call stored it.
    pub async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, String> {
        match self {
            Cache::Local(c) => {
                let entry =
                    c.entry(key.to_owned()).or_insert_with(async { Entry { value: value.to_vec(), ttl } }).await;
                Ok(entry.is_fresh())
            }
            Cache::Redis(m) => {
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::PX(ttl_ms(ttl)));
                let stored: Option<String> =
                    m.clone().set_options(key, value, opts).await.map_err(|e| e.to_string())?;
                Ok(stored.is_some())
            }
        }
    }

    /// `SET NX PX … GET` for many keys in one round trip: per key, `None` when this call stored
    /// it, or the value that was already there (which stays, with its own TTL).
    pub async fn set_if_absent_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        match self {
            Cache::Local(c) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let entry =
                        c.entry(key.clone()).or_insert_with(async { Entry { value: value.clone(), ttl } }).await;
                    out.push((!entry.is_fresh()).then(|| entry.into_value().value));
                }
                Ok(out)
            }
            Cache::Redis(m) => {
                let mut pipe = redis::pipe();
                for (key, value) in entries {
                    pipe.cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms(ttl)).arg("GET");
                }
                pipe.query_async(&mut m.clone()).await.map_err(|e| e.to_string())
            }
        }
    }

    /// The values of many keys in one round trip (`MGET`).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        match self {
            Cache::Local(c) => {
                let mut out = Vec::with_capacity(keys.len());
                for k in keys {
                    out.push(c.get(k).await.map(|e| e.value));
                }
                Ok(out)
            }
            Cache::Redis(_) if keys.is_empty() => Ok(Vec::new()),
            Cache::Redis(m) => {
                redis::cmd("MGET").arg(keys).query_async(&mut m.clone()).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Removes every key starting with `prefix` (Redis: `SCAN` + `UNLINK`); how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, String> {
        match self {
            Cache::Local(c) => {
                let keys: Vec<String> =
                    c.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, _)| (*k).clone()).collect();
                for k in &keys {
                    c.remove(k).await;
                }
                Ok(keys.len() as u64)
            }
            Cache::Redis(m) => {
                let mut conn = m.clone();
                let pattern = format!("{}*", prefix.replace(['*', '?', '[', ']', '\\'], "?"));
                let mut cursor: u64 = 0;
                let mut gone = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    let keys: Vec<String> = keys.into_iter().filter(|k| k.starts_with(prefix)).collect();
                    if !keys.is_empty() {
                        let n: u64 =
                            redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.map_err(|e| e.to_string())?;
                        gone += n;
                    }
                    if next == 0 {
                        return Ok(gone);
                    }
                    cursor = next;
                }
            }
        }
    }

    /// Removes the key; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, String> {
        match self {
            Cache::Local(c) => Ok(c.remove(key).await.is_some()),
            Cache::Redis(m) => {
                let n: u64 = m.clone().del(key).await.map_err(|e| e.to_string())?;
                Ok(n > 0)
            }
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self {
            Cache::Local(_) => Ok(()),
            Cache::Redis(m) => {
                let pong: String = redis::cmd("PING").query_async(&mut m.clone()).await.map_err(|e| e.to_string())?;
                (pong == "PONG").then_some(()).ok_or_else(|| format!("unexpected reply `{pong}`"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batched_set_if_absent_returns_what_was_there() {
        let c = Cache::local(100);
        let ttl = Duration::from_secs(60);
        let first = c.set_if_absent_many(&[("p:a".into(), b"1".to_vec()), ("p:b".into(), b"2".to_vec())], ttl).await;
        assert_eq!(first.unwrap(), vec![None, None]);
        let again = c.set_if_absent_many(&[("p:a".into(), b"9".to_vec()), ("q:c".into(), b"3".to_vec())], ttl).await;
        assert_eq!(again.unwrap(), vec![Some(b"1".to_vec()), None], "the first value stays");
        let got = c.get_many(&["p:a".into(), "p:x".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"1".to_vec()), None]);
        assert_eq!(c.delete_prefix("p:").await.unwrap(), 2);
        assert_eq!(c.get("q:c").await.unwrap(), Some(b"3".to_vec()));
    }
}
