//! The engine's open windows: per key, its windows by start. Looked up by `&str` (no allocation
//! per event), ranged per key for session merging, counted for the budget.

use std::collections::{BTreeMap, HashMap};

use super::Slot;

#[derive(Debug, Default)]
pub(super) struct Slots {
    by_key: HashMap<String, BTreeMap<i64, Slot>>,
    len: usize,
}

impl Slots {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, key: &str, start: i64) -> bool {
        self.by_key.get(key).is_some_and(|w| w.contains_key(&start))
    }

    /// The slot, created by `make` if absent; true when it was created.
    pub fn get_or_insert_with(&mut self, key: &str, start: i64, make: impl FnOnce() -> Slot) -> (&mut Slot, bool) {
        if !self.by_key.contains_key(key) {
            self.by_key.insert(key.to_owned(), BTreeMap::new());
        }
        let windows = self.by_key.get_mut(key).expect("just inserted");
        let mut created = false;
        let slot = windows.entry(start).or_insert_with(|| {
            created = true;
            make()
        });
        if created {
            self.len += 1;
        }
        (slot, created)
    }

    pub fn get_mut(&mut self, key: &str, start: i64) -> Option<&mut Slot> {
        self.by_key.get_mut(key)?.get_mut(&start)
    }

    pub fn insert(&mut self, key: &str, start: i64, slot: Slot) {
        let windows = self.by_key.entry(key.to_owned()).or_default();
        if windows.insert(start, slot).is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, key: &str, start: i64) -> Option<Slot> {
        let windows = self.by_key.get_mut(key)?;
        let slot = windows.remove(&start)?;
        self.len -= 1;
        if windows.is_empty() {
            self.by_key.remove(key);
        }
        Some(slot)
    }

    /// The key's windows starting before `end`, latest first.
    pub fn before(&self, key: &str, end: i64) -> impl Iterator<Item = (i64, &Slot)> {
        self.by_key.get(key).into_iter().flat_map(move |w| w.range(..end).rev().map(|(s, slot)| (*s, slot)))
    }

    /// Every window, ordered by key then start (deterministic output order).
    pub fn sorted(&self) -> Vec<(&String, i64, &Slot)> {
        let mut keys: Vec<&String> = self.by_key.keys().collect();
        keys.sort();
        keys.into_iter().flat_map(|k| self.by_key[k].iter().map(move |(s, slot)| (k, *s, slot))).collect()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_key.keys()
    }

    pub fn take(&mut self) -> Vec<(String, i64, Slot)> {
        self.len = 0;
        std::mem::take(&mut self.by_key)
            .into_iter()
            .flat_map(|(k, w)| w.into_iter().map(move |(s, slot)| (k.clone(), s, slot)))
            .collect()
    }
}
