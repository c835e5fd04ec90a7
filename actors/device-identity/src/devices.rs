//! Device operations: registration (keyed v8 id from stable identifiers, or a match of an
//! existing device by identifier hash or by fingerprint similarity, or a random v7 id), reads,
//! metadata updates, erasure, links and groups, key rotation. Raw identifiers never leave this
//! module: they become keyed hashes before anything is stored, logged or returned.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::error::DeviceError;
use crate::fingerprint::Features;
use crate::groups::{self, Edge, Refusal};
use crate::ids;
use crate::oui::Oui;
use crate::store::{Store, devices};

/// A registration: raw attributes as devices report them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[serde(default)]
    pub tenant: Option<String>,
    pub platform: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub app_instance_id: Option<String>,
    pub user_agent: Option<String>,
    pub mac: Option<String>,
    pub serial: Option<String>,
    pub advertising_id: Option<String>,
    pub android_id: Option<String>,
    pub screen: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

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

#[derive(Debug, Serialize)]
pub struct Registered {
    pub device_id: String,
    /// `created` or `matched`.
    pub status: &'static str,
    /// `identifier` or `fingerprint` when matched.
    pub matched_by: Option<&'static str>,
    pub confidence: f64,
    pub key_period: Option<i32>,
    pub fingerprint: String,
    pub enrichment: Value,
}

const MAX_VALUE_LEN: usize = 512;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn platform(p: Option<&str>) -> Option<String> {
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

/// User-agent, MAC vendor and platform enrichment (woothee: OS, browser, category; OUI list).
pub fn enrich(r: &Registration, oui: &Oui) -> Value {
    let mut out = json!({ "platform": platform(r.platform.as_deref()) });
    if let Some(mac) = r.mac.as_deref() {
        out["mac_vendor"] = if oui.len() == 0 {
            json!({ "error": "the OUI list (Debian package ieee-data) is not installed" })
        } else {
            json!(oui.lookup(mac))
        };
    }
    if let Some(ua) = r.user_agent.as_deref().and_then(|ua| woothee::parser::Parser::new().parse(ua)) {
        out["user_agent"] = json!({
            "browser": ua.name, "browser_version": ua.version, "os": ua.os, "os_version": ua.os_version,
            "category": ua.category, "vendor": ua.vendor,
        });
    }
    out
}

impl Registration {
    fn validate(&self) -> Result<(), DeviceError> {
        let fields = [
            ("platform", &self.platform),
            ("model", &self.model),
            ("manufacturer", &self.manufacturer),
            ("os", &self.os),
            ("os_version", &self.os_version),
            ("app_instance_id", &self.app_instance_id),
            ("user_agent", &self.user_agent),
            ("mac", &self.mac),
            ("serial", &self.serial),
            ("advertising_id", &self.advertising_id),
            ("android_id", &self.android_id),
            ("screen", &self.screen),
            ("locale", &self.locale),
            ("timezone", &self.timezone),
        ];
        for (name, value) in fields {
            if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
                return Err(DeviceError::Invalid(format!("`{name}` is longer than {MAX_VALUE_LEN} characters")));
            }
        }
        if fields.iter().all(|(_, v)| v.is_none()) {
            return Err(DeviceError::Invalid("a registration needs at least one attribute".into()));
        }
        Ok(())
    }

    /// Stable identifiers, normalized, strongest first: hardware, then app instance.
    fn identifiers(&self) -> Vec<(&'static str, String)> {
        let norm = |v: &Option<String>| {
            v.as_deref()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty() && s != "unknown" && s != "anonymous")
        };
        let mut out = Vec::new();
        if let Some(mac) = norm(&self.mac)
            .map(|m| m.replace(['-', '.'], ":"))
            .filter(|m| m != "00:00:00:00:00:00" && m != "02:00:00:00:00:00")
        {
            out.push(("mac", mac));
        }
        for (name, v) in [
            ("serial", &self.serial),
            ("android_id", &self.android_id),
            ("advertising_id", &self.advertising_id),
            ("app_instance_id", &self.app_instance_id),
        ] {
            if let Some(v) = norm(v).filter(|v| v != "00000000-0000-0000-0000-000000000000") {
                out.push((name, v));
            }
        }
        out
    }

    fn features(&self, enrichment: &Value) -> Features {
        let mut f = Features::default();
        f.insert("platform", platform(self.platform.as_deref()).as_deref());
        f.insert("model", self.model.as_deref());
        f.insert("manufacturer", self.manufacturer.as_deref().or(enrichment["mac_vendor"].as_str()));
        f.insert(
            "os_family",
            self.os
                .as_deref()
                .map(|o| o.split_whitespace().next().unwrap_or(o))
                .or(enrichment["user_agent"]["os"].as_str()),
        );
        f.insert("os_version", self.os_version.as_deref().or(enrichment["user_agent"]["os_version"].as_str()));
        f.insert("screen", self.screen.as_deref());
        f.insert("locale", self.locale.as_deref());
        f.insert("timezone", self.timezone.as_deref());
        f.insert("browser_family", enrichment["user_agent"]["browser"].as_str());
        f.insert("device_class", enrichment["user_agent"]["category"].as_str());
        f
    }
}

#[derive(Clone)]
pub struct Devices {
    pub store: Store,
    pub settings: Settings,
    pub oui: std::sync::Arc<Oui>,
}

fn random_secret() -> String {
    let bytes: [u8; 32] = sha2::Sha256::digest(
        uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect::<Vec<u8>>(),
    )
    .into();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Metadata a device may carry in all, after merging registrations and patches.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

fn check_metadata(m: &Map<String, Value>) -> Result<(), DeviceError> {
    let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(DeviceError::Invalid(format!(
            "the device's metadata would be {size} bytes, more than {MAX_METADATA_BYTES}; remove keys (PATCH with null) first"
        )));
    }
    Ok(())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

impl Devices {
    async fn key(&self, tenant: &str) -> Result<(i32, Vec<u8>), DeviceError> {
        let key = match self.store.current_key(tenant).await? {
            Some(k) => k,
            None => self.store.add_key(tenant, 1, random_secret()).await?,
        };
        Ok((key.period, hex(&key.secret)))
    }

    pub async fn register(&self, r: Registration) -> Result<Registered, DeviceError> {
        r.validate()?;
        let tenant = r.tenant.clone().unwrap_or_else(|| "default".into());
        if tenant.is_empty() || tenant.len() > 128 {
            return Err(DeviceError::Invalid("`tenant` must be 1 to 128 characters".into()));
        }
        let (period, key) = self.key(&tenant).await?;
        let enrichment = enrich(&r, &self.oui);
        let features = r.features(&enrichment);
        let identifiers = r.identifiers();
        let hashes: Vec<(&str, String)> =
            identifiers.iter().map(|(n, v)| (*n, ids::identifier_hash(&key, n, v))).collect();

        // 1. A known identifier: that device.
        let mut matched: Option<(String, &'static str, f64)> = None;
        for (name, hash) in &hashes {
            if let Some(device) = self.store.device_by_identifier(&tenant, name, hash).await? {
                matched = Some((device, "identifier", 1.0));
                break;
            }
        }
        // 2. The keyed id of the strongest identifiers.
        let hardware: Vec<(&str, &str)> =
            identifiers.iter().filter(|(n, _)| *n != "app_instance_id").map(|(n, v)| (*n, v.as_str())).collect();
        let basis: Vec<(&str, &str)> =
            if hardware.is_empty() { identifiers.iter().map(|(n, v)| (*n, v.as_str())).collect() } else { hardware };
        let keyed =
            (!basis.is_empty()).then(|| ids::keyed_id(&key, period as u16, &tenant, "device", &basis).to_string());
        if matched.is_none()
            && let Some(id) = &keyed
            && self.store.device(id).await?.is_some()
        {
            matched = Some((id.clone(), "identifier", 1.0));
        }
        // 3. Without hardware identifiers, a fingerprint close enough to an existing device.
        let has_hardware = identifiers.iter().any(|(n, _)| *n != "app_instance_id");
        if matched.is_none() && !has_hardware {
            let candidates = self
                .store
                .candidates(&tenant, platform(r.platform.as_deref()).as_deref(), self.settings.candidates)
                .await?;
            let best = candidates
                .iter()
                .filter_map(|d| {
                    serde_json::from_str::<Features>(&d.features).ok().map(|f| (features.similarity(&f), d))
                })
                .filter(|(score, _)| *score >= self.settings.match_threshold)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((score, d)) = best {
                matched = Some((d.id.clone(), "fingerprint", (score * 1000.0).round() / 1000.0));
            }
        }
        let now = now_ms();
        let (device_id, status, matched_by, confidence) = match matched {
            Some((id, by, c)) => (id, "matched", Some(by), c),
            None => (keyed.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string()), "created", None, 1.0),
        };
        let existing = self.store.device(&device_id).await?;
        let mut metadata = existing
            .as_ref()
            .and_then(|d| serde_json::from_str::<Map<String, Value>>(&d.metadata).ok())
            .unwrap_or_default();
        metadata.extend(r.metadata.clone().unwrap_or_default());
        check_metadata(&metadata)?;
        let key_period = existing
            .as_ref()
            .map(|d| d.key_period)
            .unwrap_or(keyed.as_ref().filter(|k| **k == device_id).map(|_| period));
        self.store
            .upsert_device(devices::Model {
                id: device_id.clone(),
                tenant: tenant.clone(),
                key_period,
                platform: platform(r.platform.as_deref()),
                features: serde_json::to_string(&features).unwrap_or_default(),
                fingerprint: features.hash(),
                enrichment: enrichment.to_string(),
                metadata: Value::Object(metadata).to_string(),
                created_ms: existing.as_ref().map(|d| d.created_ms).unwrap_or(now),
                updated_ms: now,
            })
            .await?;
        for (name, hash) in &hashes {
            self.store.add_identifier(&tenant, name, hash, &device_id).await?;
        }
        Ok(Registered {
            device_id,
            status,
            matched_by,
            confidence,
            key_period,
            fingerprint: features.hash(),
            enrichment,
        })
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
            "created_ms": d.created_ms, "updated_ms": d.updated_ms,
        }))
    }

    pub async fn update_metadata(&self, id: &str, patch: Map<String, Value>) -> Result<Value, DeviceError> {
        let mut d = self.store.device(id).await?.ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
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
        if self.store.delete_device(id).await? { Ok(()) } else { Err(DeviceError::NotFound(id.to_owned())) }
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

    /// Links every pair of `ids` with `confidence` and `evidence`.
    pub async fn link(&self, ids_in: &[String], confidence: f64, evidence: &Value) -> Result<Value, DeviceError> {
        if ids_in.len() < 2 || ids_in.len() > 16 {
            return Err(DeviceError::Invalid("`device_ids` must list 2 to 16 devices".into()));
        }
        if !(0.0..=1.0).contains(&confidence) || confidence.is_nan() {
            return Err(DeviceError::Invalid("`confidence_score` must be between 0 and 1".into()));
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
        for id in &ids {
            if self.store.device(id).await?.is_none() {
                return Err(DeviceError::NotFound(id.clone()));
            }
        }
        let evidence = evidence.to_string();
        if evidence.len() > 16 * 1024 {
            return Err(DeviceError::Invalid("`evidence` is larger than 16 KiB".into()));
        }
        for w in ids.windows(2) {
            let (a, b) = if w[0] < w[1] { (&w[0], &w[1]) } else { (&w[1], &w[0]) };
            self.store.upsert_link(a, b, confidence, &evidence, now_ms()).await?;
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
        self.store.add_key(tenant, next, random_secret()).await?;
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
