//! Registration in two halves. `prepare` runs on the node that took the request: it validates,
//! enriches, and turns every raw identifier, subject id and shared identifier value into a keyed
//! hash — so nothing raw leaves that node, not even towards the owner. `commit` runs on the owner
//! of the registration's key (`Prepared::route_key`), one registration of a key at a time: it
//! matches an existing device by identifier hash, keyed id or fingerprint similarity, enforces the
//! shared identifier limits, and writes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::devices::{Devices, check_metadata, now_ms, platform};
use crate::error::DeviceError;
use crate::fingerprint::Features;
use crate::ids;
use crate::oui::Oui;
use crate::store::devices;

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
    /// The data subject (person) the device belongs to, for GDPR erasure; stored only as a keyed
    /// hash.
    #[serde(default)]
    pub subject_id: Option<String>,
    /// Identifier values devices share (`ip`, `wifi`, `account`, `household`, …): each may link a
    /// limited number of devices; stored only as keyed hashes.
    #[serde(default)]
    pub shared_identifiers: Option<BTreeMap<String, String>>,
}

/// A registration ready for its owner: hashes, never raw identifiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub tenant: String,
    pub period: i32,
    /// The keyed v8 id of the strongest identifiers, if there are any.
    pub keyed: Option<String>,
    /// (identifier name, keyed hash), strongest first.
    pub hashes: Vec<(String, String)>,
    pub has_hardware: bool,
    pub platform: Option<String>,
    pub features: Features,
    pub enrichment: Value,
    pub metadata: Option<Map<String, Value>>,
    pub subject: Option<String>,
    /// (identifier type, keyed hash of the normalized value).
    pub shared: Vec<(String, String)>,
}

impl Prepared {
    /// Whose turn it is: the tenant and the strongest identifier's hash, or the fingerprint when
    /// there is no identifier. Concurrent registrations of one device meet on one owner.
    pub fn route_key(&self) -> String {
        match self.hashes.first() {
            Some((name, hash)) => format!("register/{}/{name}/{hash}", self.tenant),
            None => format!("register/{}/fingerprint/{}", self.tenant, self.features.hash()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    pub device_id: String,
    /// `created` or `matched`.
    pub status: String,
    /// `identifier` or `fingerprint` when matched.
    pub matched_by: Option<String>,
    pub confidence: f64,
    pub key_period: Option<i32>,
    pub fingerprint: String,
    pub enrichment: Value,
}

const MAX_VALUE_LEN: usize = 512;
const MAX_SUBJECT_LEN: usize = 256;

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

/// A subject id's validity (it is hashed, so only its length matters).
pub fn check_subject(subject: &str) -> Result<(), DeviceError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(DeviceError::Invalid(format!("`subject_id` must be 1 to {MAX_SUBJECT_LEN} characters")));
    }
    Ok(())
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
        if let Some(subject) = &self.subject_id {
            check_subject(subject)?;
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

impl Devices {
    /// The entry node's half: everything raw becomes a keyed hash here.
    pub async fn prepare(&self, r: Registration) -> Result<Prepared, DeviceError> {
        r.validate()?;
        let tenant = r.tenant.clone().unwrap_or_else(|| "default".into());
        if tenant.is_empty() || tenant.len() > 128 {
            return Err(DeviceError::Invalid("`tenant` must be 1 to 128 characters".into()));
        }
        let shared = self.shared_hashes(&tenant, r.shared_identifiers.as_ref())?;
        let subject = match &r.subject_id {
            Some(s) => Some(self.master()?.subject_hash(&tenant, s)),
            None => None,
        };
        let (period, key) = self.key(&tenant).await?;
        let enrichment = enrich(&r, &self.oui);
        let features = r.features(&enrichment);
        let identifiers = r.identifiers();
        let hashes: Vec<(String, String)> =
            identifiers.iter().map(|(n, v)| ((*n).to_owned(), ids::identifier_hash(&key, n, v))).collect();
        let hardware: Vec<(&str, &str)> =
            identifiers.iter().filter(|(n, _)| *n != "app_instance_id").map(|(n, v)| (*n, v.as_str())).collect();
        let has_hardware = !hardware.is_empty();
        let basis: Vec<(&str, &str)> =
            if hardware.is_empty() { identifiers.iter().map(|(n, v)| (*n, v.as_str())).collect() } else { hardware };
        let keyed =
            (!basis.is_empty()).then(|| ids::keyed_id(&key, period as u16, &tenant, "device", &basis).to_string());
        Ok(Prepared {
            tenant,
            period,
            keyed,
            hashes,
            has_hardware,
            platform: platform(r.platform.as_deref()),
            features,
            enrichment,
            metadata: r.metadata,
            subject,
            shared,
        })
    }

    /// The owner's half, run with the route key's turn held.
    pub async fn commit(&self, p: Prepared) -> Result<Registered, DeviceError> {
        // 1. A known identifier: that device.
        let mut matched: Option<(String, &'static str, f64)> = None;
        for (name, hash) in &p.hashes {
            if let Some(device) = self.store.device_by_identifier(&p.tenant, name, hash).await? {
                matched = Some((device, "identifier", 1.0));
                break;
            }
        }
        // 2. The keyed id of the strongest identifiers.
        if matched.is_none()
            && let Some(id) = &p.keyed
            && self.store.device(id).await?.is_some()
        {
            matched = Some((id.clone(), "identifier", 1.0));
        }
        // 3. Without hardware identifiers, a fingerprint close enough to an existing device.
        if matched.is_none() && !p.has_hardware {
            let candidates = self.store.candidates(&p.tenant, p.platform.as_deref(), self.settings.candidates).await?;
            let best = candidates
                .iter()
                .filter_map(|d| {
                    serde_json::from_str::<Features>(&d.features).ok().map(|f| (p.features.similarity(&f), d))
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
            None => (p.keyed.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string()), "created", None, 1.0),
        };
        let existing = self.store.device(&device_id).await?;
        let mut metadata = existing
            .as_ref()
            .and_then(|d| serde_json::from_str::<Map<String, Value>>(&d.metadata).ok())
            .unwrap_or_default();
        metadata.extend(p.metadata.clone().unwrap_or_default());
        check_metadata(&metadata)?;
        // Shared identifiers are claimed before the device is written, so a refusal writes nothing.
        let device_set = BTreeSet::from([device_id.clone()]);
        let claimed = self.claim_shared(&p.tenant, &p.shared, &device_set).await?;
        let key_period = existing
            .as_ref()
            .map(|d| d.key_period)
            .unwrap_or(p.keyed.as_ref().filter(|k| **k == device_id).map(|_| p.period));
        let written = async {
            self.store
                .upsert_device(devices::Model {
                    id: device_id.clone(),
                    tenant: p.tenant.clone(),
                    key_period,
                    platform: p.platform.clone(),
                    features: serde_json::to_string(&p.features).unwrap_or_default(),
                    fingerprint: p.features.hash(),
                    enrichment: p.enrichment.to_string(),
                    metadata: Value::Object(metadata).to_string(),
                    created_ms: existing.as_ref().map(|d| d.created_ms).unwrap_or(now),
                    updated_ms: now,
                })
                .await?;
            for (name, hash) in &p.hashes {
                self.store.add_identifier(&p.tenant, name, hash, &device_id).await?;
            }
            if let Some(subject) = &p.subject {
                self.store.set_subject(&p.tenant, &device_id, Some(subject)).await?;
            }
            Ok::<(), DeviceError>(())
        }
        .await;
        if let Err(e) = written {
            self.release_shared(&p.tenant, &claimed).await;
            return Err(e);
        }
        Ok(Registered {
            device_id,
            status: status.to_owned(),
            matched_by: matched_by.map(str::to_owned),
            confidence,
            key_period,
            fingerprint: p.features.hash(),
            enrichment: p.enrichment,
        })
    }
}
