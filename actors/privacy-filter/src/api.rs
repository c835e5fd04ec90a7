//! The routes on 8011: the seed's `POST /filter` (structured JSON, by rule names or a named
//! policy), Presidio's `POST /analyze` (request and response shapes), `GET /entities`, `/policies` CRUD, `GET /audit`, `/gdpr/erasure` jobs and
//! `/admin/keys`. Scanning is CPU work: it runs on the blocking pool, off the HTTP workers.
//! Every anonymization is audited (path, entity, operator, policy and key versions, counts —
//! never a value) before the answer is sent. Presidio's anonymizer routes, which speak its error
//! contract, are in `anonymizer.rs`.

mod anonymizer;

use axum::http::Method;
use loom_http::writes_under;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use loom_http::{ApiError, ApiJson, ApiRouter, routes};
use loom_protocol::RequestId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::analyzer::{self, ALL_ENTITIES, Finding, Recognizer, Settings};
use crate::erasure::{self, Erasures};
use crate::error::FilterError;
use crate::keys::{GLOBAL, Key, KeyRing, KeyedCtx, PseudonymCache, subject_scope};
use crate::operators::Operator;
use crate::policies::{PolicyBook, PolicySpec, StoredPolicy};
use crate::store::{AuditQuery, Store, audit, now_ms};
use crate::structured::{Decisions, Scan};

/// Custom recognizers per request, and their patterns' length.
const MAX_AD_HOC: usize = 32;
const MAX_PATTERN: usize = 1024;
/// Entries of an allow or deny list.
const MAX_LIST: usize = 1000;

/// Audit rows listed per `GET /audit` page at most.
const MAX_AUDIT_PAGE: u64 = 1_000;

#[derive(Clone)]
pub struct Api {
    pub settings: Arc<Settings>,
    /// Recognizers from `privacy.recognizers`, beside the built-in ones in every scan.
    pub custom: Arc<Vec<Recognizer>>,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub pseudonyms: Arc<PseudonymCache>,
    pub policies: Arc<PolicyBook>,
    pub erasures: Erasures,
}

/// Cluster-wide writes: policies, erasure jobs and managed keys.
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    ["/policies", "/gdpr", "/admin/keys"].iter().any(|p| writes_under(method, path, p))
}

pub fn routes(api: Api) -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(filter))
        .routes(routes!(analyze))
        .routes(routes!(entities))
        .routes(routes!(supported_entities))
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(audit_log))
        .routes(routes!(create_erasure))
        .routes(routes!(get_erasure))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
        .merge(anonymizer::routes())
        .with_state(api)
}

/// Who asked, for the audit log.
pub(crate) struct AuditContext<'a> {
    pub request_id: &'a RequestId,
    pub source: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub policy: Option<&'a StoredPolicy>,
    pub key: Option<&'a Key>,
}

pub(crate) fn audit_rows(decisions: &Decisions, ctx: &AuditContext<'_>) -> Vec<audit::ActiveModel> {
    use sea_orm::Set;
    let now = now_ms();
    decisions
        .iter()
        .map(|((path, entity, operator), count)| {
            let keyed = matches!(*operator, "hash" | "encrypt" | "pseudonymize");
            audit::ActiveModel {
                time_ms: Set(now),
                request_id: Set(ctx.request_id.as_str().to_owned()),
                source: Set(ctx.source.map(str::to_owned)),
                subject: Set(ctx.subject.map(str::to_owned)),
                // PostgreSQL text refuses NUL; JSON keys may carry one.
                path: Set(path.replace('\0', "\\u0000")),
                entity: Set(entity.replace('\0', "\\u0000")),
                policy: Set(ctx.policy.map(|p| p.spec.name.clone())),
                policy_version: Set(ctx.policy.map(|p| p.version)),
                operator: Set((*operator).to_owned()),
                key_id: Set(ctx.key.filter(|_| keyed).map(|k| k.id)),
                key_version: Set(ctx.key.filter(|_| keyed).map(|k| k.version)),
                count: Set(*count),
                ..Default::default()
            }
        })
        .collect()
}

impl Api {
    /// Entity types of the configured custom recognizers.
    pub(crate) fn custom_entities(&self) -> Vec<String> {
        let mut names: Vec<String> = self.custom.iter().map(|r| r.entity.clone()).collect();
        names.dedup();
        names
    }

    /// The key keyed operators use for this request: the subject's own, or the global one.
    pub(crate) async fn key_for(&self, subject_index: Option<&str>) -> std::result::Result<Arc<Key>, FilterError> {
        match subject_index {
            Some(index) => self.keys.current(&subject_scope(index)).await,
            None => self.keys.current(GLOBAL).await,
        }
    }

    pub(crate) fn keyed_ctx(&self, key: Option<Arc<Key>>) -> KeyedCtx {
        KeyedCtx {
            key,
            store: self.store.clone(),
            cache: self.pseudonyms.clone(),
            runtime: tokio::runtime::Handle::current(),
            error: std::sync::Mutex::new(None),
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, FilterError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "a scan panicked");
        FilterError::Internal("the scan failed".into())
    })
}

/// Texts up to this size are scanned on the HTTP worker (tens of microseconds: cheaper than a
/// hop to the blocking pool); larger ones on the blocking pool.
const INLINE_SCAN_BYTES: usize = 8 * 1024;

fn settings(
    base: &Settings,
    threshold: Option<f32>,
    allow: Vec<String>,
    deny: Vec<String>,
) -> std::result::Result<Settings, FilterError> {
    if let Some(t) = threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(FilterError::Invalid("score_threshold must be between 0 and 1".into()));
    }
    // Bounded: every deny entry is searched in every scanned string.
    if allow.len() > MAX_LIST || deny.len() > MAX_LIST {
        return Err(FilterError::Invalid(format!("allow_list and deny_list hold at most {MAX_LIST} entries each")));
    }
    if allow.iter().chain(&deny).any(|e| e.is_empty() || e.len() > MAX_PATTERN) {
        return Err(FilterError::Invalid(format!("list entries are 1-{MAX_PATTERN} bytes")));
    }
    Ok(Settings { threshold: threshold.unwrap_or(base.threshold), allow, deny, ..base.clone() })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    data: Value,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    policy: Option<String>,
    /// Operator for every entity (default: replace with `<ENTITY_TYPE>`).
    #[serde(default)]
    operator: Option<Operator>,
    /// Per-entity operators, overriding `operator`.
    #[serde(default)]
    operators: BTreeMap<String, Operator>,
    #[serde(default)]
    skip: Vec<String>,
    #[serde(default)]
    always: BTreeMap<String, String>,
    #[serde(default)]
    score_threshold: Option<f32>,
    #[serde(default)]
    allow_list: Vec<String>,
    #[serde(default)]
    deny_list: Vec<String>,
    /// The data subject: keyed operators use the subject's own key (erasable with it).
    #[serde(default)]
    subject_id: Option<String>,
    /// Where the data comes from (a source or tenant name), for the audit log.
    #[serde(default)]
    source: Option<String>,
}

/// What a request asks for once its policy (if any) is resolved.
pub(crate) struct Plan {
    pub entities: Option<Vec<String>>,
    pub custom: Arc<Vec<Recognizer>>,
    pub default: Operator,
    pub operators: BTreeMap<String, Operator>,
    pub fields: BTreeMap<String, Operator>,
    pub skip: Vec<String>,
    pub always: BTreeMap<String, String>,
    pub settings: Settings,
}

impl Plan {
    /// A scan applying this plan.
    pub fn scan<'a>(&'a self, keyed: &'a KeyedCtx) -> Scan<'a> {
        let mut scan = Scan::new(&self.settings, &self.default, &self.operators, keyed);
        scan.entities = self.entities.as_deref();
        scan.custom = &self.custom;
        scan.skip = &self.skip;
        scan.always = &self.always;
        scan.fields = &self.fields;
        scan
    }

    pub fn keyed(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.operators.values())
            .chain(self.fields.values())
            .any(Operator::is_keyed)
    }
}

pub(crate) fn policy_plan(api: &Api, p: &PolicySpec) -> std::result::Result<Plan, FilterError> {
    let base = &api.settings;
    Ok(Plan {
        entities: p.entity_types(&api.custom_entities())?,
        custom: api.custom.clone(),
        default: p.default_operator.clone().unwrap_or(Operator::Replace { new_value: None }),
        operators: p.operators.clone(),
        fields: p.fields.clone(),
        skip: p.skip.clone(),
        always: p.always.clone(),
        settings: settings(base, p.score_threshold, p.allow_list.clone(), p.deny_list.clone())?,
    })
}

/// Scans a JSON document field by field and anonymizes what it finds (by rule names and operators, or a named policy).
#[utoipa::path(post, path = "/filter",
    request_body(content = Object, description = "`{\"data\": <any JSON>, \"rules\"?: [rule], \"operator\"?, \"operators\"?: {ENTITY: operator}, \"skip\"?: [pointer], \"always\"?: {pointer: ENTITY}, \"score_threshold\"?, \"allow_list\"?, \"deny_list\"?, \"subject_id\"?, \"source\"?}`, or `{\"data\", \"policy\": name, \"subject_id\"?, \"source\"?}`"),
    responses((status = 200, description = "`{data: filtered, findings: [{path, entity_type, start, end, score, operator}], counts, policy?: {name, version}}` (findings say where, never what)", body = Object)))]
async fn filter(
    State(api): State<Api>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(body): ApiJson<FilterBody>,
) -> Result<Json<Value>> {
    if let Some(s) = &body.source
        && (s.is_empty() || s.len() > 128)
    {
        return Err(FilterError::Invalid("source must be 1-128 characters".into()).into());
    }
    let (plan, policy) = match &body.policy {
        Some(name) => {
            let asks_more = body.rules.is_some()
                || body.operator.is_some()
                || !body.operators.is_empty()
                || !body.skip.is_empty()
                || !body.always.is_empty()
                || body.score_threshold.is_some()
                || !body.allow_list.is_empty()
                || !body.deny_list.is_empty();
            if asks_more {
                return Err(FilterError::Invalid(format!(
                    "policy '{name}' decides rules, operators, paths and threshold; give either `policy` or those"
                ))
                .into());
            }
            let policy = api.policies.get(name).await?;
            (policy_plan(&api, &policy.spec)?, Some(policy))
        }
        None => (request_plan(&api, &body)?, None),
    };
    let subject = match &body.subject_id {
        Some(id) if id.is_empty() || id.len() > crate::erasure::MAX_SUBJECT_ID => {
            return Err(
                FilterError::Invalid(format!("subject_id must be 1-{} bytes", crate::erasure::MAX_SUBJECT_ID)).into()
            );
        }
        Some(id) => Some(api.keys.subject_index(id).await?),
        None => None,
    };
    let key = if plan.keyed() { Some(api.key_for(subject.as_deref()).await?) } else { None };
    let keyed = api.keyed_ctx(key.clone());
    let data = body.data;
    let (out, decisions, keyed, too_deep) = blocking(move || {
        let mut data = data;
        let mut scan = plan.scan(&keyed);
        scan.filter(&mut data, "", "", 0);
        let too_deep = scan.too_deep;
        let out = json!({ "data": data, "findings": scan.findings, "counts": scan.counts });
        let decisions = std::mem::take(&mut scan.decisions);
        drop(scan);
        (out, decisions, keyed, too_deep)
    })
    .await?;
    if too_deep {
        return Err(FilterError::TooDeep(crate::structured::MAX_DEPTH).into());
    }
    if let Some(e) = keyed.take_error() {
        return Err(e.into());
    }
    let ctx = AuditContext {
        request_id: &request_id,
        source: body.source.as_deref(),
        subject: subject.as_deref(),
        policy: policy.as_deref(),
        key: key.as_deref(),
    };
    api.store.audit(audit_rows(&decisions, &ctx)).await.map_err(FilterError::from)?;
    let mut out = out;
    if let Some(p) = &policy {
        out["policy"] = json!({"name": p.spec.name, "version": p.version});
    }
    Ok(Json(out))
}

fn request_plan(api: &Api, body: &FilterBody) -> std::result::Result<Plan, FilterError> {
    let entities: Option<Vec<String>> = match &body.rules {
        None => None,
        Some(rules) => {
            let mut out = Vec::new();
            let custom = api.custom_entities();
            for r in rules {
                if custom.contains(r) {
                    out.push(r.clone());
                    continue;
                }
                let e = analyzer::entities_for_rule(r).ok_or_else(|| FilterError::UnknownRule(r.clone()))?;
                out.extend(e.iter().map(|s| (*s).to_owned()));
            }
            Some(out)
        }
    };
    let default = body.operator.clone().unwrap_or(Operator::Replace { new_value: None });
    for op in std::iter::once(&default).chain(body.operators.values()) {
        op.check()?;
    }
    for p in body.skip.iter().chain(body.always.keys()) {
        if !p.starts_with('/') {
            return Err(FilterError::Invalid(format!("'{p}' is not a JSON pointer (like /user/email)")));
        }
    }
    Ok(Plan {
        entities,
        custom: api.custom.clone(),
        default,
        operators: body.operators.clone(),
        fields: BTreeMap::new(),
        skip: body.skip.clone(),
        always: body.always.clone(),
        settings: settings(&api.settings, body.score_threshold, body.allow_list.clone(), body.deny_list.clone())?,
    })
}

/// Presidio's pattern recognizer shape (`ad_hoc_recognizers`).
#[derive(Debug, Deserialize)]
struct AdHoc {
    name: Option<String>,
    supported_entity: String,
    #[serde(default)]
    patterns: Vec<AdHocPattern>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    deny_list: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AdHocPattern {
    regex: String,
    #[serde(default = "half")]
    score: f32,
}

fn half() -> f32 {
    0.5
}

#[derive(Debug, Deserialize)]
struct AnalyzeBody {
    text: String,
    #[serde(default = "english")]
    language: String,
    #[serde(default)]
    entities: Option<Vec<String>>,
    #[serde(default)]
    score_threshold: Option<f32>,
    #[serde(default)]
    ad_hoc_recognizers: Vec<AdHoc>,
    #[serde(default)]
    allow_list: Vec<String>,
    #[serde(default)]
    return_decision_process: bool,
    #[serde(default)]
    correlation_id: Option<String>,
    /// Presidio's context words: they count as near every match (boost, phone regions).
    #[serde(default)]
    context: Vec<String>,
    /// Loom: regions tried first for phone numbers without a country code (`["ES"]`).
    #[serde(default)]
    phone_regions: Vec<String>,
}

fn english() -> String {
    "en".into()
}

fn ad_hoc(list: Vec<AdHoc>, deny: &mut Vec<String>) -> std::result::Result<Vec<Recognizer>, FilterError> {
    if list.len() > MAX_AD_HOC {
        return Err(FilterError::Invalid(format!("at most {MAX_AD_HOC} ad_hoc_recognizers")));
    }
    let mut out = Vec::new();
    for (i, r) in list.into_iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("ad_hoc_{i}"));
        deny.extend(r.deny_list);
        for p in r.patterns {
            if p.regex.len() > MAX_PATTERN {
                return Err(FilterError::Invalid(format!("{name}: pattern longer than {MAX_PATTERN} bytes")));
            }
            // Rust's regex engine is linear-time: no catastrophic backtracking from client patterns.
            let regex = regex::RegexBuilder::new(&p.regex)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| FilterError::Invalid(format!("{name}: bad regex: {e}")))?;
            out.push(Recognizer {
                name: name.clone(),
                entity: r.supported_entity.clone(),
                regex,
                score: p.score.clamp(0.0, 1.0),
                validate: None,
                context: r.context.iter().map(|c| c.to_ascii_lowercase()).collect(),
            });
        }
    }
    Ok(out)
}

/// Presidio analyzer: the PII entities found in a text, with character offsets and scores.
#[utoipa::path(post, path = "/analyze",
    request_body(content = Object, description = "Presidio's analyze request: `{\"text\", \"language\"?: \"en\", \"entities\"?, \"score_threshold\"?, \"ad_hoc_recognizers\"?, \"allow_list\"?, \"return_decision_process\"?, \"correlation_id\"?, \"context\"?: [word]}`; Loom's `\"phone_regions\"?: [\"ES\", ...]` adds regions whose national phone formats are recognized (beside countries named near a number and `privacy.phone_regions`)"),
    responses((status = 200, description = "Presidio's recognizer results: `[{entity_type, start, end, score, analysis_explanation, recognition_metadata}]`", body = Object)))]
async fn analyze(State(api): State<Api>, ApiJson(body): ApiJson<AnalyzeBody>) -> Result<Json<Value>> {
    if body.language != "en" {
        return Err(FilterError::Invalid(format!("language '{}' is not supported (en)", body.language)).into());
    }
    let mut deny = Vec::new();
    let mut custom = ad_hoc(body.ad_hoc_recognizers, &mut deny)?;
    let ad_hoc_given = !custom.is_empty();
    custom.extend(api.custom.iter().cloned());
    let mut settings = settings(&api.settings, body.score_threshold, body.allow_list, deny)?;
    if body.phone_regions.len() > 32 || body.context.len() > MAX_LIST {
        return Err(FilterError::Invalid(format!("at most 32 phone_regions and {MAX_LIST} context words")).into());
    }
    let asked = crate::phone::regions(&body.phone_regions)
        .map_err(|r| FilterError::Invalid(format!("phone_regions: '{r}' is not a region code (ISO 3166 alpha-2)")))?;
    settings.phone_regions = asked.iter().chain(&settings.phone_regions).fold(Vec::new(), |mut all, r| {
        if !all.contains(r) {
            all.push(*r);
        }
        all
    });
    let context = body.context.join(" ");
    let (text, entities, explain) = (body.text, body.entities, body.return_decision_process);
    let _ = body.correlation_id;
    let found: Vec<Finding> = if text.len() <= INLINE_SCAN_BYTES && !ad_hoc_given {
        analyzer::analyze(&text, entities.as_deref(), &context, &custom, &settings)
    } else {
        blocking(move || analyzer::analyze(&text, entities.as_deref(), &context, &custom, &settings)).await?
    };
    let out: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({
                "entity_type": f.entity_type, "start": f.start, "end": f.end, "score": f.score,
                "analysis_explanation": if explain { json!({"recognizer": f.recognizer, "original_score": f.score}) } else { Value::Null },
                "recognition_metadata": {"recognizer_name": f.recognizer, "recognizer_identifier": f.recognizer},
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

// --- policies ---

/// The named anonymization policies.
#[utoipa::path(get, path = "/policies", responses((status = 200, description = "`{policies: [{name, ..., version, updated_ms}]}`", body = Object)))]
async fn list_policies(State(api): State<Api>) -> Result<Json<Value>> {
    Ok(Json(json!({ "policies": api.policies.list().await? })))
}

/// Creates a policy (409 `conflict` when the name exists; PUT replaces).
#[utoipa::path(post, path = "/policies",
    request_body(content = Object, description = "A policy: `{\"name\", \"entities\"?, \"default_operator\"?, \"operators\"?: {ENTITY: op}, \"fields\"?: {pointer: op}, \"skip\"?, \"always\"?, \"score_threshold\"?, \"allow_list\"?, \"deny_list\"?}`"),
    responses((status = 201, description = "the stored policy with its version", body = Object)))]
async fn create_policy(State(api): State<Api>, ApiJson(spec): ApiJson<PolicySpec>) -> Result<Response> {
    if api.policies.get(&spec.name).await.is_ok() {
        return Err(FilterError::Conflict(format!(
            "policy '{}' exists; PUT /policies/{} replaces it",
            spec.name, spec.name
        ))
        .into());
    }
    let stored = api.policies.put(spec, &api.custom_entities()).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// One policy.
#[utoipa::path(get, path = "/policies/{name}", params(("name" = String, Path, description = "policy name")),
    responses((status = 200, description = "the stored policy with its version", body = Object)))]
async fn get_policy(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<Value>> {
    let p = api.policies.get(&name).await?;
    Ok(Json(serde_json::to_value(&*p).unwrap_or_default()))
}

/// Creates or replaces a policy (a new version); the body's `name` must be the path's.
#[utoipa::path(put, path = "/policies/{name}", params(("name" = String, Path, description = "policy name")),
    request_body(content = Object, description = "A policy (see `POST /policies`)"),
    responses((status = 200, description = "the stored policy with its new version", body = Object)))]
async fn put_policy(
    State(api): State<Api>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> Result<Json<Value>> {
    if spec.name != name {
        return Err(FilterError::Invalid(format!("the body's name '{}' is not the path's '{name}'", spec.name)).into());
    }
    Ok(Json(serde_json::to_value(api.policies.put(spec, &api.custom_entities()).await?).unwrap_or_default()))
}

/// Deletes a policy.
#[utoipa::path(delete, path = "/policies/{name}", params(("name" = String, Path, description = "policy name")),
    responses((status = 204, description = "deleted")))]
async fn delete_policy(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode> {
    api.policies.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- audit ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    entity: Option<String>,
    policy: Option<String>,
    request_id: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    before_id: Option<i64>,
    limit: Option<u64>,
}

/// The audit log of anonymization decisions (never a value), newest first, paged by `before_id`.
#[utoipa::path(get, path = "/audit",
    params(
        ("entity" = Option<String>, Query, description = "only this entity type"),
        ("policy" = Option<String>, Query, description = "only decisions of this policy"),
        ("request_id" = Option<String>, Query, description = "only this request's decisions"),
        ("since_ms" = Option<i64>, Query, description = "from this time (ms since the epoch)"),
        ("until_ms" = Option<i64>, Query, description = "up to this time (ms since the epoch)"),
        ("before_id" = Option<i64>, Query, description = "entries older than this id (the previous page's `next_before_id`)"),
        ("limit" = Option<u64>, Query, description = "entries per page, 1..=1000 (default 100)"),
    ),
    responses((status = 200, description = "`{entries: [...], next_before_id}` (`null` on the last page)", body = Object)))]
async fn audit_log(State(api): State<Api>, Query(p): Query<AuditParams>) -> Result<Json<Value>> {
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(FilterError::Invalid(format!("limit must be 1..={MAX_AUDIT_PAGE}")).into());
    }
    let q = AuditQuery {
        entity: p.entity,
        policy: p.policy,
        request_id: p.request_id,
        since_ms: p.since_ms,
        until_ms: p.until_ms,
        before_id: p.before_id,
        limit,
    };
    let rows = api.store.audit_query(&q).await.map_err(FilterError::from)?;
    let next = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(json!({ "entries": rows, "next_before_id": next })))
}

// --- GDPR erasure ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    subject_id: String,
}

/// Starts the GDPR erasure of a data subject across the cluster (keys, pseudonyms, audit rows, other services).
#[utoipa::path(post, path = "/gdpr/erasure", request_body(content = Object, description = "`{\"subject_id\"}`"),
    responses(
        (status = 202, description = "a new erasure job", body = Object),
        (status = 200, description = "the subject's open job, already running", body = Object),
    ))]
async fn create_erasure(State(api): State<Api>, ApiJson(body): ApiJson<ErasureBody>) -> Result<Response> {
    let (row, created) = api.erasures.create(&body.subject_id).await?;
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(erasure::view(&row))).into_response())
}

/// An erasure job: its state, participants and, once finished, its receipt.
#[utoipa::path(get, path = "/gdpr/erasure/{id}", params(("id" = String, Path, description = "erasure job id")),
    responses((status = 200, description = "`{id, state, subject_index, node, created_ms, finished_ms, participants, receipt?}`", body = Object)))]
async fn get_erasure(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>> {
    let row = api.store.erasure(&id).await.map_err(FilterError::from)?;
    let row = row.ok_or_else(|| FilterError::NotFound(format!("erasure job '{id}'")))?;
    Ok(Json(erasure::view(&row)))
}

// --- keys ---

/// The versions of the global managed key (never the material).
#[utoipa::path(get, path = "/admin/keys", responses((status = 200, description = "`{keys: [{id, scope, version, created_ms, destroyed_ms}]}`", body = Object)))]
async fn list_keys(State(api): State<Api>) -> Result<Json<Value>> {
    let keys = api.store.keys_of_scope(GLOBAL).await.map_err(FilterError::from)?;
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"id": k.id, "scope": k.scope, "version": k.version, "created_ms": k.created_ms,
            "destroyed_ms": k.destroyed_ms})
        })
        .collect();
    Ok(Json(json!({ "keys": list })))
}

/// Adds the next version of the global key: new hashes, pseudonyms and tokens use it; older tokens still decrypt.
#[utoipa::path(post, path = "/admin/keys/rotate", responses((status = 200, description = "`{id, scope, version}` of the new key", body = Object)))]
async fn rotate_key(State(api): State<Api>) -> Result<Json<Value>> {
    let key = api.keys.rotate(GLOBAL).await?;
    api.erasures.cluster.publish(crate::keys::KEYS_TOPIC, b"rotated");
    Ok(Json(json!({"id": key.id, "scope": key.scope, "version": key.version})))
}

/// The entity types the analyzer detects (built-in and configured custom ones).
#[utoipa::path(get, path = "/entities", responses((status = 200, description = "entity type names, e.g. `[\"EMAIL_ADDRESS\", ...]`", body = Vec<String>)))]
async fn entities(State(api): State<Api>) -> Json<Value> {
    let mut all: Vec<String> = ALL_ENTITIES.iter().map(|e| (*e).to_owned()).collect();
    all.extend(api.custom_entities().into_iter().filter(|e| !ALL_ENTITIES.contains(&e.as_str())));
    Json(json!(all))
}

/// Presidio's name for `GET /entities`: the entity types the analyzer detects.
#[utoipa::path(get, path = "/supportedentities", responses((status = 200, description = "entity type names, e.g. `[\"EMAIL_ADDRESS\", ...]`", body = Vec<String>)))]
async fn supported_entities(state: State<Api>) -> Json<Value> {
    entities(state).await
}
