//! One policy's engine for one part — `rest` (the `/check` state) or a source partition
//! (`topic/partition`) — with where its checkpoint stands. [`Part::load`] restores the saved
//! state when the policy's state fingerprint is unchanged (a new version that only changes
//! outputs keeps every key; a new identity or window starts empty, counted);
//! [`Part::save`] writes it back conditionally on the sequence it was loaded at.

use std::collections::BTreeMap;
use std::sync::Arc;

use loom_service::book::Entry;

use crate::engine::Engine;
use crate::error::DedupError;
use crate::policy::{Policy, PolicySpec};
use crate::store::{Checkpoint, Store};

pub type PolicyEntry = Arc<Entry<PolicySpec>>;

pub struct Part {
    pub entry: PolicyEntry,
    pub name: String,
    pub engine: Engine,
    pub seq: i64,
    /// The next source offset to absorb (stream mode; -1 for `rest`).
    pub next_offset: i64,
    /// Stream mode: output `topic/partition` → next offset at the last save.
    pub positions: BTreeMap<String, i64>,
    /// Set when a run failed after changing the engine: reload before any further use.
    pub poisoned: bool,
    /// The saved state belonged to an incompatible earlier version and was dropped.
    pub reset: bool,
}

impl Part {
    pub fn policy(&self) -> &Arc<Policy> {
        &self.engine.policy
    }

    pub async fn load(store: &Store, entry: PolicyEntry, name: &str) -> Result<Part, DedupError> {
        let policy = Arc::new(entry.compiled.clone());
        let fingerprint = policy.state_fingerprint();
        let saved = store.load(entry.spec.id.as_str(), name).await?;
        let mut part = Part {
            entry,
            name: name.to_owned(),
            engine: Engine::new(policy.clone()),
            seq: 0,
            next_offset: -1,
            positions: BTreeMap::new(),
            poisoned: false,
            reset: false,
        };
        let Some(cp) = saved else { return Ok(part) };
        part.seq = cp.seq;
        part.next_offset = cp.next_offset;
        part.positions = serde_json::from_str(&cp.positions).unwrap_or_default();
        match cp.state.split_first_chunk::<8>() {
            Some((fp, state)) if u64::from_le_bytes(*fp) == fingerprint => {
                part.engine = Engine::restore(policy, state).map_err(DedupError::Store)?;
            }
            _ => {
                tracing::info!(
                    policy = part.entry.spec.id.as_str(),
                    part = name,
                    "saved state is from an incompatible policy version; starting empty"
                );
                part.reset = true;
            }
        }
        Ok(part)
    }

    /// Writes the state; `Conflict` if another node moved the part meanwhile (the caller drops
    /// this copy and reloads).
    pub async fn save(&mut self, store: &Store) -> Result<(), DedupError> {
        let mut state = self.policy().state_fingerprint().to_le_bytes().to_vec();
        state.extend(self.engine.snapshot());
        let cp = Checkpoint {
            seq: self.seq + 1,
            policy_version: self.entry.version,
            next_offset: self.next_offset,
            state,
            positions: serde_json::to_string(&self.positions).unwrap_or_else(|_| "{}".into()),
        };
        match store.save(self.entry.spec.id.as_str(), &self.name, &cp).await {
            Ok(true) => {
                self.seq = cp.seq;
                Ok(())
            }
            Ok(false) => {
                self.poisoned = true;
                Err(DedupError::Conflict(format!(
                    "the state of policy '{}' ({}) was written by another node meanwhile; retry",
                    self.entry.spec.id.as_str(),
                    self.name
                )))
            }
            Err(e) => {
                self.poisoned = true;
                Err(e.into())
            }
        }
    }
}
