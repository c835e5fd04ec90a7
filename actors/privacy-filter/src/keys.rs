//! Managed keys for the keyed operators, and the operator context a scan uses.
//!
//! Scopes: `global` (requests without a subject), `subject:<index>` (one per data subject, so
//! erasing a subject destroys exactly its keys — crypto-shredding), and `index` (the key of
//! subject indexes themselves, never rotated). A scope's first key is created on first use; a
//! rotation adds the next version (new data uses it; tokens of older versions still decrypt);
//! a destroyed key's material is gone, so its tokens cannot be decrypted and its pseudonyms are
//! deleted. Global and index keys are cached for [`KEY_TTL`] and invalidated cluster-wide on
//! rotation through the topic [`KEYS_TOPIC`]; subject keys are read from the store every time,
//! so a destroyed one is unusable on every node at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::{KeyMaterial, new_material};
use crate::error::FilterError;
use crate::store::Store;

pub const KEYS_TOPIC: &str = "privacy.keys";
pub const KEY_TTL: Duration = Duration::from_secs(5);
const MAX_CACHED: usize = 10_000;

pub const GLOBAL: &str = "global";
const INDEX: &str = "index";

pub fn subject_scope(index: &str) -> String {
    format!("subject:{index}")
}

/// One usable key.
#[derive(Debug)]
pub struct Key {
    pub id: i64,
    pub scope: String,
    pub version: i32,
    pub material: KeyMaterial,
}

/// Looking a key up by id (decryption).
pub enum Lookup {
    Live(Arc<Key>),
    Destroyed,
    Unknown,
}

type Cached<T> = Mutex<HashMap<String, (Instant, T)>>;

pub struct KeyRing {
    pub store: Store,
    current: Cached<Arc<Key>>,
    by_id: Cached<Option<Arc<Key>>>,
}

fn cached<T: Clone>(cache: &Cached<T>, k: &str) -> Option<T> {
    let c = cache.lock().ok()?;
    c.get(k).filter(|(at, _)| at.elapsed() < KEY_TTL).map(|(_, v)| v.clone())
}

fn remember<T>(cache: &Cached<T>, k: &str, v: T) {
    if let Ok(mut c) = cache.lock() {
        if c.len() >= MAX_CACHED {
            c.clear();
        }
        c.insert(k.to_owned(), (Instant::now(), v));
    }
}

impl KeyRing {
    pub fn new(store: Store) -> KeyRing {
        KeyRing { store, current: Mutex::default(), by_id: Mutex::default() }
    }

    /// Forgets cached keys (another node rotated or destroyed one).
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.current.lock() {
            c.clear();
        }
        if let Ok(mut c) = self.by_id.lock() {
            c.clear();
        }
    }

    /// The key new data of `scope` uses, created on first use (and after a destruction: new
    /// data of an erased subject gets a new key, unlinkable to the old).
    pub async fn current(&self, scope: &str) -> Result<Arc<Key>, FilterError> {
        // Subject keys are never served from a cache: once an erasure destroyed one, no node may
        // use it again, broadcast or not.
        let cacheable = !scope.starts_with("subject:");
        if cacheable && let Some(k) = cached(&self.current, scope) {
            return Ok(k);
        }
        for _ in 0..4 {
            let row = self.store.current_key(scope).await?;
            match row {
                Some(row) if row.material.is_some() => {
                    let key = Arc::new(Key {
                        id: row.id,
                        scope: row.scope,
                        version: row.version,
                        material: KeyMaterial::derive(row.material.as_deref().unwrap_or_default()),
                    });
                    if cacheable {
                        remember(&self.current, scope, key.clone());
                    }
                    return Ok(key);
                }
                other => {
                    let next = other.map_or(1, |r| r.version + 1);
                    // A concurrent creator on another node wins the unique (scope, version):
                    // read again either way.
                    self.store.add_key(scope, next, new_material()).await?;
                }
            }
        }
        Err(FilterError::Unavailable("the key store kept racing".into()))
    }

    /// A key by id, for decryption.
    pub async fn by_id(&self, id: i64) -> Result<Lookup, FilterError> {
        let k = id.to_string();
        let entry = match cached(&self.by_id, &k) {
            Some(e) => Some(e),
            None => {
                let row = self.store.key(id).await?;
                let entry = row.map(|r| {
                    r.material.as_ref().map(|m| {
                        Arc::new(Key {
                            id: r.id,
                            scope: r.scope.clone(),
                            version: r.version,
                            material: KeyMaterial::derive(m),
                        })
                    })
                });
                if let Some(e) = &entry
                    && e.as_ref().is_none_or(|key| !key.scope.starts_with("subject:"))
                {
                    remember(&self.by_id, &k, e.clone());
                }
                entry
            }
        };
        Ok(match entry {
            None => Lookup::Unknown,
            Some(None) => Lookup::Destroyed,
            Some(Some(key)) => Lookup::Live(key),
        })
    }

    /// Adds the next version of `scope`'s key; new data uses it from now on.
    pub async fn rotate(&self, scope: &str) -> Result<Arc<Key>, FilterError> {
        let next = self.store.current_key(scope).await?.map_or(1, |r| r.version + 1);
        if !self.store.add_key(scope, next, new_material()).await? {
            return Err(FilterError::Conflict(format!("another rotation of '{scope}' won the race; retry")));
        }
        self.invalidate();
        self.current(scope).await
    }

    /// Destroys every key of `scope`; returns the destroyed key ids.
    pub async fn destroy(&self, scope: &str) -> Result<Vec<i64>, FilterError> {
        let ids = self.store.destroy_keys(scope).await?;
        self.invalidate();
        Ok(ids)
    }

    /// The keyed index of a subject id (never stored or logged raw).
    pub async fn subject_index(&self, subject_id: &str) -> Result<String, FilterError> {
        Ok(self.current(INDEX).await?.material.subject_index(subject_id))
    }
}

/// Stable pseudonym numbers already seen, per (key id, entity, digest).
#[derive(Default)]
pub struct PseudonymCache {
    map: Mutex<HashMap<(i64, String, String), i64>>,
}

impl PseudonymCache {
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

/// What the keyed operators need during one (blocking) scan: the scope's current key, and the
/// store for pseudonym numbers (reached with `block_on` from the blocking pool).
pub struct KeyedCtx {
    pub key: Option<Arc<Key>>,
    pub store: Store,
    pub cache: Arc<PseudonymCache>,
    pub runtime: tokio::runtime::Handle,
    /// The first failure, which fails the request (never a silently weaker replacement).
    pub error: Mutex<Option<FilterError>>,
}

impl KeyedCtx {
    fn fail(&self, e: FilterError, entity: &str) -> String {
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
        format!("<{entity}>")
    }

    fn key(&self) -> Result<&Key, FilterError> {
        self.key.as_deref().ok_or_else(|| FilterError::Unavailable("no key was loaded for a keyed operator".into()))
    }

    pub fn take_error(&self) -> Option<FilterError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

impl crate::operators::Keyed for KeyedCtx {
    fn hash(&self, entity: &str, value: &str) -> String {
        match self.key() {
            Ok(k) => k.material.hash(value),
            Err(e) => self.fail(e, entity),
        }
    }

    fn hash512(&self, entity: &str, value: &str) -> String {
        match self.key() {
            Ok(k) => k.material.hash512(value),
            Err(e) => self.fail(e, entity),
        }
    }

    fn encrypt(&self, entity: &str, value: &str) -> String {
        match self.key() {
            Ok(k) => match k.material.encrypt(k.id, entity, value) {
                Ok(token) => token,
                Err(m) => self.fail(FilterError::Invalid(format!("{entity}: {m}")), entity),
            },
            Err(e) => self.fail(e, entity),
        }
    }

    fn pseudonym(&self, entity: &str, value: &str) -> String {
        let key = match self.key() {
            Ok(k) => k,
            Err(e) => return self.fail(e, entity),
        };
        let digest = key.material.pseudonym_digest(entity, value);
        let slot = (key.id, entity.to_owned(), digest);
        if let Some(n) = self.cache.map.lock().ok().and_then(|m| m.get(&slot).copied()) {
            return format!("<{entity}_{n}>");
        }
        match self.runtime.block_on(self.store.pseudonym(slot.0, &slot.1, &slot.2)) {
            Ok(n) => {
                if let Ok(mut m) = self.cache.map.lock() {
                    if m.len() >= 100_000 {
                        m.clear();
                    }
                    m.insert(slot, n);
                }
                format!("<{entity}_{n}>")
            }
            Err(e) => self.fail(e.into(), entity),
        }
    }
}
