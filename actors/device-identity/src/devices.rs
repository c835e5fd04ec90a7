//! Device operations other than registration (`register.rs`): reads, metadata and subject
//! updates, deletion, links and groups (with the shared identifier limits), tenant keys sealed
//! under the master key. Raw identifiers never reach this module: registration and the API turn
//! them into keyed hashes first. Writes run on the owner of their key (`routing.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::crypto::MasterKey;
use crate::error::DeviceError;
use crate::groups::{self, Edge, Refusal};
use crate::ids;
use crate::limits::{self, Limits};
use crate::oui::Oui;
use crate::store::Store;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A fingerprint at least this similar to an existing device is that device.
    pub match_threshold: f64,
    /// Links at least this confident join groups.
    pub link_threshold: f64,
    /// Largest group a link may produce.
    pub max_group: usize,
    /// Fingerprint candidates compared per registration.
    pub candidates: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { match_threshold: 0.85, link_threshold: 0.8, max_group: 50, candidates: 500 }
    }
}

/// Most shared identifiers one registration or link may carry.
const MAX_SHARED: usize = 16;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn platform(p: Option<&str>) -> Option<String> {
    let p = p?.trim().to_ascii_lowercase();
    Some(match p.as_str() {
        "android" | "androidos" => "android".into(),
        "ios" | "iphone" | "ipados" => "ios".into(),
        "web" | "browser" => "web".into(),
        "macos" | "mac" | "osx" => "macos".into(),
        "windows" | "win" => "windows".into(),
        "linux" => "linux".into(),
        "" => return None,
        other => other.to_owned(),
    })
}

/// Metadata a device may carry in all, after merging registrations and patches.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

pub fn check_metadata(m: &Map<String, Value>) -> Result<(), DeviceError> {
    let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(DeviceError::Invalid(format!(
            "the device's metadata would be {size} bytes, more than {MAX_METADATA_BYTES}; remove keys (PATCH with null) first"
        )));
    }
    Ok(())
}

/// The device ids of a link, normalized and checked (2 to 16 distinct UUIDs).
pub fn link_ids(ids_in: &[String]) -> Result<Vec<String>, DeviceError> {
    if ids_in.len() < 2 || ids_in.len() > 16 {
        return Err(DeviceError::Invalid("`device_ids` must list 2 to 16 devices".into()));
    }
    let ids: Vec<String> = ids_in.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
    for id in &ids {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(DeviceError::Invalid(format!("`{id}` is not a device id")));
        }
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(DeviceError::Invalid("a device cannot be linked to itself".into()));
    }
    Ok(ids)
}

/// What a PATCH does to a device's subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectChange {
    Keep,
    Clear,
    /// The keyed subject hash.
    Set(String),
}

#[derive(Clone)]
pub struct Devices {
    pub store: Store,
    pub settings: Settings,
    pub oui: Arc<Oui>,
    /// The master key, or why there is none (the service then refuses key operations).
    pub master: Result<Arc<MasterKey>, Arc<str>>,
    pub limits: Arc<Limits>,
}

impl Devices {
    pub fn master(&self) -> Result<&MasterKey, DeviceError> {
        self.master.as_deref().map_err(|why| DeviceError::MasterKeyRequired(why.to_string()))
    }

    /// The current key of `tenant` (created on first use), opened with the master key.
    pub async fn key(&self, tenant: &str) -> Result<(i32, Vec<u8>), DeviceError> {
        let master = self.master()?;
        let row = match self.store.current_key(tenant).await? {
            Some(k) => k,
            None => {
                let secret: [u8; 32] = rand::random();
                self.store.add_key(tenant, 1, master.seal_key(tenant, 1, &secret)).await?
            }
        };
        let key = master.open_key(tenant, row.period, &row.secret).map_err(|_| {
            tracing::error!(tenant, period = row.period, "a tenant key cannot be opened with the master key in use");
            DeviceError::KeyUnreadable
        })?;
        Ok((row.period, key))
    }

    /// Seals tenant keys still stored in plaintext (rows from before encryption). Idempotent;
    /// nodes racing on one row agree (compare-and-set on the old value).
    pub async fn seal_plaintext_keys(&self) -> Result<usize, DeviceError> {
        let master = self.master()?;
        let mut sealed = 0;
        for row in self.store.plaintext_keys().await? {
            let key = master.open_key(&row.tenant, row.period, &row.secret).map_err(|_| DeviceError::KeyUnreadable)?;
            if self.store.reseal_key(row.id, &row.secret, master.seal_key(&row.tenant, row.period, &key)).await? {
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    /// Keyed hashes of shared identifier values (normalized first); refusals name the type only.
    pub fn shared_hashes(
        &self,
        tenant: &str,
        values: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<Vec<(String, String)>, DeviceError> {
        let Some(values) = values.filter(|v| !v.is_empty()) else { return Ok(Vec::new()) };
        if values.len() > MAX_SHARED {
            return Err(DeviceError::Invalid(format!("at most {MAX_SHARED} shared identifiers")));
        }
        let master = self.master()?;
        values
            .iter()
            .map(|(kind, value)| {
                let value = limits::normalize(&self.limits, kind, value).map_err(DeviceError::Invalid)?;
                Ok((kind.clone(), master.shared_hash(tenant, kind, &value)))
            })
            .collect()
    }

    /// Associates `devices` with each shared identifier value, refusing (and undoing its own
    /// claims) when a value would link more devices than its type allows. The count is checked
    /// again after writing, since writers of other keys may claim the same value meanwhile: racing
    /// claims may both be refused, never both accepted over the limit.
    pub async fn claim_shared(
        &self,
        tenant: &str,
        shared: &[(String, String)],
        devices: &BTreeSet<String>,
    ) -> Result<Vec<(String, String, String)>, DeviceError> {
        let mut claimed: Vec<(String, String, String)> = Vec::new();
        for (kind, hash) in shared {
            let outcome = async {
                let limit = self
                    .limits
                    .get(kind)
                    .ok_or_else(|| DeviceError::Invalid(format!("`{kind}` is not an identifier type")))?;
                let linked = self.store.shared_devices(tenant, kind, hash).await?;
                limits::check(kind, limit, &linked, devices).map_err(refused)?;
                let mut added = false;
                for d in devices {
                    if self.store.add_shared(tenant, kind, hash, d).await? {
                        claimed.push((kind.clone(), hash.clone(), d.clone()));
                        added = true;
                    }
                }
                if added {
                    let now = self.store.shared_devices(tenant, kind, hash).await?;
                    limits::check(kind, limit, &BTreeSet::new(), &now).map_err(refused)?;
                }
                Ok::<(), DeviceError>(())
            }
            .await;
            if let Err(e) = outcome {
                self.release_shared(tenant, &claimed).await;
                return Err(e);
            }
        }
        Ok(claimed)
    }

    pub async fn release_shared(&self, tenant: &str, claimed: &[(String, String, String)]) {
        for (kind, hash, device) in claimed {
            if let Err(e) = self.store.remove_shared(tenant, kind, hash, device).await {
                tracing::warn!(kind, error = %e, "could not undo a shared identifier claim");
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Value, DeviceError> {
        let d = self.store.device(id).await?.ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
        Ok(json!({
            "device_id": d.id, "tenant": d.tenant, "platform": d.platform, "key_period": d.key_period,
            "fingerprint": d.fingerprint,
            "features": serde_json::from_str::<Value>(&d.features).unwrap_or(Value::Null),
            "enrichment": serde_json::from_str::<Value>(&d.enrichment).unwrap_or(Value::Null),
            "metadata": serde_json::from_str::<Value>(&d.metadata).unwrap_or(Value::Null),
            "identifiers": self.store.identifier_names(&d.id).await?,
            "shared_identifiers": self.store.shared_kinds(&d.id).await?,
            "subject": self.store.has_subject(&d.id).await?,
            "created_ms": d.created_ms, "updated_ms": d.updated_ms,
        }))
    }

    /// Applies a PATCH: metadata keys (null removes one) and the subject.
    pub async fn update(
        &self,
        id: &str,
        patch: Map<String, Value>,
        subject: SubjectChange,
    ) -> Result<Value, DeviceError> {
        let mut d = self.store.device(id).await?.ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
        match subject {
            SubjectChange::Keep => {}
            SubjectChange::Clear => self.store.set_subject(&d.tenant, id, None).await?,
            SubjectChange::Set(hash) => self.store.set_subject(&d.tenant, id, Some(&hash)).await?,
        }
        let mut metadata: Map<String, Value> = serde_json::from_str(&d.metadata).unwrap_or_default();
        for (k, v) in patch {
            if v.is_null() {
                metadata.remove(&k);
            } else {
                metadata.insert(k, v);
            }
        }
        check_metadata(&metadata)?;
        d.metadata = Value::Object(metadata).to_string();
        d.updated_ms = now_ms();
        self.store.upsert_device(d).await?;
        self.get(id).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), DeviceError> {
        if self.store.delete_device(id).await?.device.is_some() {
            Ok(())
        } else {
            Err(DeviceError::NotFound(id.to_owned()))
        }
    }

    async fn group_edges(&self, id: &str) -> Result<(BTreeSet<String>, Vec<crate::store::links::Model>), DeviceError> {
        let edges = self.store.edges_around(id, self.settings.link_threshold).await?.ok_or_else(|| {
            DeviceError::OverMerge(format!(
                "the group of {id} has more than {} confident links",
                crate::store::MAX_EDGES
            ))
        })?;
        let plain: Vec<Edge> =
            edges.iter().map(|e| Edge { a: e.a.clone(), b: e.b.clone(), confidence: e.confidence }).collect();
        let members = groups::component(id, &plain, self.settings.link_threshold);
        Ok((members, edges))
    }

    /// Links every pair of `ids` with `confidence` and `evidence`; `shared` are the keyed hashes
    /// of the identifier values the link rests on, each limited in how many devices it may link.
    pub async fn link(
        &self,
        ids_in: &[String],
        confidence: f64,
        evidence: &Value,
        shared: &[(String, String)],
    ) -> Result<Value, DeviceError> {
        let ids = link_ids(ids_in)?;
        if !(0.0..=1.0).contains(&confidence) || confidence.is_nan() {
            return Err(DeviceError::Invalid("`confidence_score` must be between 0 and 1".into()));
        }
        // The group every listed device would end up in, if the link joins groups.
        let mut merged = BTreeSet::new();
        for id in &ids {
            if !merged.contains(id) {
                merged.extend(self.group_edges(id).await?.0);
            }
        }
        let max = if confidence >= self.settings.link_threshold { self.settings.max_group } else { usize::MAX };
        groups::check_link(&ids[0], &ids[1], &merged, &ids.iter().cloned().collect(), max).map_err(|r| match r {
            Refusal::Blocked(id) => DeviceError::Blocked(format!("`{id}` is a blocked device id")),
            Refusal::SelfLink => DeviceError::Invalid("a device cannot be linked to itself".into()),
            Refusal::TooLarge { size, max } => {
                DeviceError::OverMerge(format!("the link would make a group of {size} devices; the limit is {max}"))
            }
        })?;
        for id in &ids[2..] {
            groups::check_link(&ids[0], id, &BTreeSet::new(), &BTreeSet::new(), usize::MAX)
                .map_err(|_| DeviceError::Blocked(format!("`{id}` is a blocked device id")))?;
        }
        let mut tenants = BTreeSet::new();
        for id in &ids {
            let d = self.store.device(id).await?.ok_or_else(|| DeviceError::NotFound(id.clone()))?;
            tenants.insert(d.tenant);
        }
        if tenants.len() > 1 {
            return Err(DeviceError::Invalid("devices of different tenants cannot be linked".into()));
        }
        let evidence = evidence.to_string();
        if evidence.len() > 16 * 1024 {
            return Err(DeviceError::Invalid("`evidence` is larger than 16 KiB".into()));
        }
        let tenant = tenants.into_iter().next().unwrap_or_default();
        let claimed = self.claim_shared(&tenant, shared, &ids.iter().cloned().collect()).await?;
        for w in ids.windows(2) {
            let (a, b) = if w[0] < w[1] { (&w[0], &w[1]) } else { (&w[1], &w[0]) };
            if let Err(e) = self.store.upsert_link(a, b, confidence, &evidence, now_ms()).await {
                self.release_shared(&tenant, &claimed).await;
                return Err(e.into());
            }
        }
        self.group(&ids[0]).await
    }

    pub async fn unlink(&self, a: &str, b: &str) -> Result<(), DeviceError> {
        let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        if self.store.delete_link(&a, &b).await? {
            Ok(())
        } else {
            Err(DeviceError::NotFound(format!("link {a} — {b}")))
        }
    }

    /// The group of `id`: members and the edges (with evidence) that join them.
    pub async fn group(&self, id: &str) -> Result<Value, DeviceError> {
        let id = id.to_ascii_lowercase();
        self.store.device(&id).await?.ok_or_else(|| DeviceError::NotFound(id.clone()))?;
        let (members, edges) = self.group_edges(&id).await?;
        let edges: Vec<Value> = edges
            .into_iter()
            .filter(|e| members.contains(&e.a) && members.contains(&e.b))
            .map(|e| json!({
                "a": e.a, "b": e.b, "confidence": e.confidence,
                "joins": e.confidence >= self.settings.link_threshold,
                "evidence": serde_json::from_str::<Value>(&e.evidence).unwrap_or(Value::Null), "created_ms": e.created_ms,
            }))
            .collect();
        Ok(json!({ "device_id": id, "members": members, "edges": edges, "threshold": self.settings.link_threshold }))
    }

    pub async fn rotate_key(&self, tenant: &str) -> Result<Value, DeviceError> {
        let next = self.store.current_key(tenant).await?.map(|k| k.period + 1).unwrap_or(1);
        if next > i32::from(ids::MAX_PERIOD) {
            return Err(DeviceError::Invalid("the key period space (12 bits) is exhausted".into()));
        }
        let secret: [u8; 32] = rand::random();
        self.store.add_key(tenant, next, self.master()?.seal_key(tenant, next, &secret)).await?;
        self.store.retire_keys_before(tenant, next).await?;
        Ok(json!({ "tenant": tenant, "period": next }))
    }

    /// Deletes a retired key (crypto-erasure of the ids it made). The current key cannot be
    /// deleted: new registrations would have no key, so rotate first.
    pub async fn delete_key(&self, tenant: &str, period: i32) -> Result<(), DeviceError> {
        if self.store.current_key(tenant).await?.is_some_and(|k| k.period == period) {
            return Err(DeviceError::KeyInUse(format!(
                "key {tenant}/{period} is the current key; rotate (POST /admin/keys/{tenant}/rotate) before deleting it"
            )));
        }
        if self.store.delete_key(tenant, period).await? > 0 {
            Ok(())
        } else {
            Err(DeviceError::NotFound(format!("key {tenant}/{period}")))
        }
    }
}

fn refused(e: limits::Exceeded) -> DeviceError {
    DeviceError::IdentifierLimit { kind: e.kind, limit: e.limit, devices: e.devices }
}
