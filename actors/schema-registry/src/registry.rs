//! The registry's operations over the store: registration (idempotent, compatibility-checked,
//! one global id per distinct schema), lookups, deletes, configuration, compatibility checks
//! and validation. Reads run on the caller's task; writes arrive through the writer actor
//! (`writer.rs`) so one node applies them one at a time, while the database's unique constraints
//! make concurrent writers on different nodes agree.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;

use loom_cluster::Cluster;

use crate::cache::Caches;
use crate::compat::{self, Incompatibility, Policy};
use crate::error::RegistryError;
use crate::evolution::{self, Diff};
use crate::model::{Compatibility, Mode, Reference, SchemaRequest};
use crate::normalize;
use crate::store::{ConfigField, Store, schemas, versions};
use crate::validate::{self, ValidatorCache, Violation};

/// The defaults when nothing is configured (Confluent's).
pub const DEFAULT_COMPATIBILITY: Compatibility = Compatibility::Backward;
/// Bound on transitive checks and version listings.
const MAX_VERSION_RETRIES: usize = 8;

/// References one schema may declare; more are refused (422), never silently cut.
pub const MAX_REFERENCES: usize = 256;

/// A registered schema as the API returns it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
    pub references: Vec<Reference>,
}

/// The cluster-wide topic carrying the subjects whose versions changed.
pub const INVALIDATION_TOPIC: &str = "schema-registry.subjects";

#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    cache: ValidatorCache,
    reads: Caches,
    cluster: Option<Cluster>,
}

/// Which version a path names.
#[derive(Debug, Clone, Copy)]
pub enum VersionSel {
    Latest,
    Number(i32),
}

impl VersionSel {
    pub fn parse(s: &str) -> Result<VersionSel, RegistryError> {
        match s {
            "latest" | "-1" => Ok(VersionSel::Latest),
            n => match n.parse::<i32>() {
                Ok(v) if v >= 1 => Ok(VersionSel::Number(v)),
                _ => Err(RegistryError::InvalidVersion(s.to_owned())),
            },
        }
    }
}

/// As Confluent writes it in messages: `Version 3 not found.`, `Version latest not found.`
impl std::fmt::Display for VersionSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionSel::Latest => f.write_str("latest"),
            VersionSel::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A parsed, compiled candidate schema.
pub struct Candidate {
    pub value: Value,
    pub text: String,
    pub references: Vec<Reference>,
    pub fingerprint: String,
}

impl Registry {
    pub fn new(store: Store, cluster: Option<Cluster>) -> Registry {
        Registry { store, cache: ValidatorCache::default(), reads: Caches::default(), cluster }
    }

    /// Drops this node's cached view of `subject` (after a write here or elsewhere).
    pub fn invalidate(&self, subject: &str) {
        self.reads.invalidate(subject);
    }

    /// After a write: drop the local entry and tell every other node.
    fn changed(&self, subject: &str) {
        self.reads.invalidate(subject);
        if let Some(cluster) = &self.cluster {
            cluster.publish(INVALIDATION_TOPIC, subject.as_bytes());
        }
    }

    /// A schema row by id, from the cache when possible (rows never change).
    pub async fn schema_row(&self, id: i32) -> Result<Arc<schemas::Model>, RegistryError> {
        if let Some(row) = self.reads.schema(id) {
            return Ok(row);
        }
        let row = self.store.schema(id).await?.ok_or(RegistryError::SchemaNotFound)?;
        Ok(self.reads.put_schema(row))
    }

    async fn cached_versions(&self, subject: &str) -> Result<Arc<Vec<versions::Model>>, RegistryError> {
        if let Some(rows) = self.reads.subject(subject) {
            return Ok(rows);
        }
        let read_at = self.reads.generation();
        let rows = Arc::new(self.store.versions(subject).await?);
        self.reads.put_subject(subject, rows.clone(), read_at);
        Ok(rows)
    }

    /// Parses and compiles a request's schema (resolving its references) or says why not.
    pub async fn candidate(&self, req: &SchemaRequest) -> Result<Candidate, RegistryError> {
        let schema_type = req.schema_type.as_deref().unwrap_or("AVRO");
        if !schema_type.eq_ignore_ascii_case("JSON") {
            return Err(RegistryError::InvalidSchema(format!(
                "schemaType {schema_type} is not supported by this registry; only JSON (set \"schemaType\": \"JSON\")"
            )));
        }
        let value: Value = serde_json::from_str(&req.schema)
            .map_err(|e| RegistryError::InvalidSchema(format!("the schema is not JSON: {e}")))?;
        if !(value.is_object() || value.is_boolean()) {
            return Err(RegistryError::InvalidSchema("a JSON Schema must be an object or a boolean".into()));
        }
        let refs = self.resolve_references(&req.references).await?;
        validate::compile(&value, refs).map_err(RegistryError::InvalidSchema)?;
        let fingerprint = normalize::fingerprint("JSON", &value, &req.references);
        Ok(Candidate { text: req.schema.clone(), value, references: req.references.clone(), fingerprint })
    }

    async fn resolve_references(&self, refs: &[Reference]) -> Result<HashMap<String, Value>, RegistryError> {
        if refs.len() > MAX_REFERENCES {
            return Err(RegistryError::InvalidSchema(format!(
                "{} references given; a schema may reference at most {MAX_REFERENCES}",
                refs.len()
            )));
        }
        let mut out = HashMap::new();
        for r in refs {
            let found = self.version(&r.subject, VersionSel::Number(r.version), true).await.map_err(|_| {
                RegistryError::InvalidSchema(format!(
                    "reference {} → {} v{} does not exist",
                    r.name, r.subject, r.version
                ))
            })?;
            let value: Value = serde_json::from_str(&found.schema).map_err(|e| RegistryError::Store(e.to_string()))?;
            out.insert(r.name.clone(), value);
        }
        Ok(out)
    }

    /// Live (not soft-deleted) versions of `subject`; `SubjectNotFound` when none.
    pub async fn live_versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<versions::Model>, RegistryError> {
        let rows: Vec<versions::Model> =
            self.cached_versions(subject).await?.iter().filter(|r| include_deleted || !r.deleted).cloned().collect();
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(rows)
    }

    pub async fn version(
        &self,
        subject: &str,
        sel: VersionSel,
        include_deleted: bool,
    ) -> Result<Registered, RegistryError> {
        let rows = self.live_versions(subject, include_deleted).await?;
        let row = match sel {
            VersionSel::Latest => rows.iter().rev().find(|r| !r.deleted).or(rows.last()),
            VersionSel::Number(v) => rows.iter().find(|r| r.version == v),
        }
        .ok_or_else(|| RegistryError::VersionNotFound(sel.to_string()))?;
        self.registered(subject, row.version, row.schema_id).await
    }

    async fn registered(&self, subject: &str, version: i32, id: i32) -> Result<Registered, RegistryError> {
        let schema = self.schema_row(id).await?;
        Ok(Registered {
            subject: subject.to_owned(),
            version,
            id,
            references: serde_json::from_str(&schema.refs).unwrap_or_default(),
            schema: schema.schema.clone(),
        })
    }

    /// The effective compatibility and policy of `subject` (subject config, else global, else
    /// the default).
    pub async fn compatibility_of(&self, subject: &str) -> Result<(Compatibility, Policy), RegistryError> {
        let own = self.store.config(subject).await?;
        let global = self.store.config("").await?;
        let level = own
            .as_ref()
            .and_then(|c| c.compatibility.clone())
            .or_else(|| global.as_ref().and_then(|c| c.compatibility.clone()))
            .and_then(|s| Compatibility::parse(&s))
            .unwrap_or(DEFAULT_COMPATIBILITY);
        let policy = own
            .and_then(|c| c.policy)
            .or_else(|| global.and_then(|c| c.policy))
            .map(|p| if p.eq_ignore_ascii_case("LENIENT") { Policy::Lenient } else { Policy::Strict })
            .unwrap_or(Policy::Strict);
        Ok((level, policy))
    }

    pub async fn mode_of(&self, subject: &str) -> Result<Mode, RegistryError> {
        let own = self.store.config(subject).await?.and_then(|c| c.mode);
        let global = self.store.config("").await?.and_then(|c| c.mode);
        Ok(own.or(global).and_then(|m| Mode::parse(&m)).unwrap_or(Mode::ReadWrite))
    }

    /// Incompatibilities of `candidate` against the versions `level` compares with.
    pub async fn check_against(
        &self,
        subject: &str,
        candidate: &Candidate,
        level: Compatibility,
        policy: Policy,
        only: Option<VersionSel>,
    ) -> Result<Vec<Incompatibility>, RegistryError> {
        let (backward, forward) = level.directions();
        if !backward && !forward {
            return Ok(Vec::new());
        }
        let rows = match self.live_versions(subject, false).await {
            Ok(rows) => rows,
            Err(RegistryError::SubjectNotFound(_)) if only.is_none() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let targets: Vec<&versions::Model> = match only {
            Some(VersionSel::Number(v)) => {
                vec![
                    rows.iter()
                        .find(|r| r.version == v)
                        .ok_or_else(|| RegistryError::VersionNotFound(v.to_string()))?,
                ]
            }
            Some(VersionSel::Latest) => rows.last().into_iter().collect(),
            None if level.transitive() => rows.iter().collect(),
            None => rows.last().into_iter().collect(),
        };
        let mut found = Vec::new();
        for row in targets {
            let old = self.schema_row(row.schema_id).await?;
            let old: Value = serde_json::from_str(&old.schema).map_err(|e| RegistryError::Store(e.to_string()))?;
            if backward {
                found.extend(compat::check(&candidate.value, &old, policy));
            }
            if forward {
                found.extend(compat::check(&old, &candidate.value, policy));
            }
        }
        Ok(found)
    }

    /// Registers under `subject` (writer actor only). Returns the global id.
    pub async fn register(&self, subject: &str, req: &SchemaRequest) -> Result<i32, RegistryError> {
        // Decide on fresh data, and whatever happens, let every node re-read the subject.
        self.reads.invalidate(subject);
        let result = self.register_fresh(subject, req).await;
        self.changed(subject);
        result
    }

    async fn register_fresh(&self, subject: &str, req: &SchemaRequest) -> Result<i32, RegistryError> {
        let candidate = self.candidate(req).await?;
        let rows = self.store.versions(subject).await?;
        if let Some(existing) = self.store.schema_by_fingerprint(&candidate.fingerprint).await?
            && rows.iter().any(|r| !r.deleted && r.schema_id == existing.id)
        {
            return Ok(existing.id);
        }
        if !self.mode_of(subject).await?.writable() {
            return Err(RegistryError::ReadOnly(subject.to_owned()));
        }
        let (level, policy) = self.compatibility_of(subject).await?;
        let problems = self.check_against(subject, &candidate, level, policy, None).await?;
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                details: problems.iter().map(Incompatibility::confluent_message).collect(),
            });
        }
        let id =
            self.store.intern_schema(&candidate.fingerprint, "JSON", &candidate.text, &candidate.references).await?;
        // Read, then insert max + 1 under the unique (subject, version) constraint: if another
        // node registered this schema after our read, its row takes our number or a lower one
        // we have seen, so our insert fails and the re-read finds its row. No duplicates.
        // A lost race with a *different* schema means a new latest version: the compatibility
        // decision is taken again against it before the next attempt.
        for attempt in 0..MAX_VERSION_RETRIES {
            let rows = self.store.versions(subject).await?;
            if rows.iter().any(|r| !r.deleted && r.schema_id == id) {
                return Ok(id);
            }
            if attempt > 0 {
                let problems = self.check_against(subject, &candidate, level, policy, None).await?;
                if !problems.is_empty() {
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_owned(),
                        details: problems.iter().map(Incompatibility::confluent_message).collect(),
                    });
                }
            }
            let next = rows.iter().map(|r| r.version).max().unwrap_or(0) + 1;
            if self.store.insert_version(subject, next, id).await? {
                return Ok(id);
            }
        }
        Err(RegistryError::Store(format!(
            "could not allocate a version for {subject} after {MAX_VERSION_RETRIES} attempts"
        )))
    }

    /// `POST /subjects/{s}`: the version of `subject` holding this schema.
    pub async fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        include_deleted: bool,
    ) -> Result<Registered, RegistryError> {
        let rows = self.live_versions(subject, include_deleted).await?;
        let candidate = self.candidate(req).await?;
        let existing =
            self.store.schema_by_fingerprint(&candidate.fingerprint).await?.ok_or(RegistryError::SchemaNotFound)?;
        let row = rows.iter().rev().find(|r| r.schema_id == existing.id).ok_or(RegistryError::SchemaNotFound)?;
        self.registered(subject, row.version, row.schema_id).await
    }

    /// The schemas referencing `subject` at `version`, ascending by id, each with the version
    /// rows using it: live rows only, or with `include_deleted` soft-deleted ones too. A
    /// referrer left without such a row does not count, as in Confluent's `getReferencedBy`
    /// (its index forgets a referrer once hard-deleted, and a soft delete looks at live ones).
    pub async fn referrers(
        &self,
        subject: &str,
        version: i32,
        include_deleted: bool,
    ) -> Result<Vec<(i32, Vec<versions::Model>)>, RegistryError> {
        let found = self.store.referrers(subject, version).await?;
        Ok(found
            .into_iter()
            .filter_map(|(id, rows)| {
                let rows: Vec<versions::Model> = rows.into_iter().filter(|r| include_deleted || !r.deleted).collect();
                (!rows.is_empty()).then_some((id, rows))
            })
            .collect())
    }

    /// Soft or permanent delete of a subject; returns the versions deleted. Checked in
    /// Confluent's order: the subject exists, it is not already soft-deleted (without
    /// `permanent`), it is writable, then version by version ascending: no other subject
    /// references it (42206; references within the subject do not block), and for `permanent`
    /// it was soft-deleted first (40405).
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i32>, RegistryError> {
        let rows = self.store.versions(subject).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let targets: Vec<&versions::Model> = rows.iter().filter(|r| permanent || !r.deleted).collect();
        if targets.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
        }
        if !self.mode_of(subject).await?.writable() {
            return Err(RegistryError::ReadOnly(subject.to_owned()));
        }
        for row in &targets {
            let referrers = self.referrers(subject, row.version, permanent).await?;
            if referrers.iter().flat_map(|(_, uses)| uses).any(|u| u.subject != subject) {
                return Err(RegistryError::ReferenceExists { subject: subject.to_owned(), version: row.version });
            }
            if permanent && !row.deleted {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
        }
        if permanent {
            self.store.purge(subject, None).await?;
        } else {
            self.store.mark_deleted(subject, None).await?;
        }
        self.changed(subject);
        Ok(targets.iter().map(|r| r.version).collect())
    }

    /// Soft or permanent delete of one version. Checked in Confluent's order: the version
    /// exists, it is not already soft-deleted (without `permanent`, 40406), the subject is
    /// writable, no schema references it (42206: for a soft delete only referrers with a live
    /// version count, for `permanent` soft-deleted ones too), and for `permanent` it was
    /// soft-deleted first (40407) — so a live referenced version answers 42206, not 40407.
    pub async fn delete_version(&self, subject: &str, sel: VersionSel, permanent: bool) -> Result<i32, RegistryError> {
        let rows = self.store.versions(subject).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let row = match sel {
            VersionSel::Latest => rows.iter().rev().find(|r| !r.deleted),
            VersionSel::Number(v) => rows.iter().find(|r| r.version == v),
        }
        .ok_or_else(|| RegistryError::VersionNotFound(sel.to_string()))?;
        if row.deleted && !permanent {
            return Err(RegistryError::VersionSoftDeleted(subject.to_owned(), row.version));
        }
        if !self.mode_of(subject).await?.writable() {
            return Err(RegistryError::ReadOnly(subject.to_owned()));
        }
        if !self.referrers(subject, row.version, permanent).await?.is_empty() {
            return Err(RegistryError::ReferenceExists { subject: subject.to_owned(), version: row.version });
        }
        if permanent {
            if !row.deleted {
                return Err(RegistryError::VersionNotSoftDeleted(subject.to_owned(), row.version));
            }
            self.store.purge(subject, Some(row.version)).await?;
        } else {
            self.store.mark_deleted(subject, Some(row.version)).await?;
        }
        self.changed(subject);
        Ok(row.version)
    }

    pub async fn set_config(
        &self,
        subject: &str,
        field: ConfigField,
        value: Option<String>,
    ) -> Result<(), RegistryError> {
        Ok(self.store.set_config(subject, field, value).await?)
    }

    /// The compiled validator of schema `id` (cached).
    pub async fn validator(&self, id: i32) -> Result<Arc<Validator>, RegistryError> {
        if let Some(v) = self.cache.get(id) {
            return Ok(v);
        }
        let schema = self.schema_row(id).await?;
        let value: Value = serde_json::from_str(&schema.schema).map_err(|e| RegistryError::Store(e.to_string()))?;
        let refs: Vec<Reference> = serde_json::from_str(&schema.refs).unwrap_or_default();
        let resolved = self.resolve_references(&refs).await?;
        let compiled = validate::compile(&value, resolved).map_err(RegistryError::InvalidSchema)?;
        Ok(self.cache.insert(id, compiled))
    }

    pub async fn validate(
        &self,
        subject: &str,
        version: Option<i32>,
        data: &[Value],
    ) -> Result<(Registered, Vec<Vec<Violation>>), RegistryError> {
        let sel = version.map(VersionSel::Number).unwrap_or(VersionSel::Latest);
        let found = self.version(subject, sel, false).await?;
        let validator = self.validator(found.id).await?;
        let results = data.iter().map(|d| validate::violations(&validator, d)).collect();
        Ok((found, results))
    }
}

/// One live version of a subject with its diff from the previous live version.
pub struct HistoryStep {
    pub version: i32,
    pub id: i32,
    pub schema: Value,
    pub diff: Option<Diff>,
}

impl Registry {
    /// The live versions of `subject`, oldest first, each diffed against the one before.
    pub async fn history(&self, subject: &str) -> Result<Vec<HistoryStep>, RegistryError> {
        let rows = self.live_versions(subject, false).await?;
        let mut steps: Vec<HistoryStep> = Vec::with_capacity(rows.len());
        for row in rows.iter() {
            let schema: Value = serde_json::from_str(&self.schema_row(row.schema_id).await?.schema)
                .map_err(|e| RegistryError::Store(e.to_string()))?;
            let diff = steps.last().map(|prev| evolution::diff(&prev.schema, &schema));
            steps.push(HistoryStep { version: row.version, id: row.schema_id, schema, diff });
        }
        Ok(steps)
    }
}
