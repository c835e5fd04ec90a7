//! The routes on 8011: the seed's `POST /filter` (structured JSON, by rule names), Presidio's
//! `POST /analyze` and `POST /anonymize` (request and response shapes), and `GET /entities`.
//! Scanning is CPU work: it runs on the blocking pool, off the HTTP workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use loom_http::{ApiError, ApiJson};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::analyzer::{self, ALL_ENTITIES, Finding, Recognizer, Settings};
use crate::error::FilterError;
use crate::operators::{self, Operator};
use crate::structured::Scan;

/// Custom recognizers per request, and their patterns' length.
const MAX_AD_HOC: usize = 32;
const MAX_PATTERN: usize = 1024;

#[derive(Clone)]
pub struct Api {
    pub settings: Arc<Settings>,
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/filter", post(filter))
        .route("/analyze", post(analyze))
        .route("/anonymize", post(anonymize))
        .route("/entities", get(entities))
        .route("/supportedentities", get(entities))
        .with_state(api)
}

type Result<T> = std::result::Result<T, ApiError>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, FilterError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| FilterError::Invalid(format!("scan failed: {e}")))
}

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
}

async fn filter(
    axum::extract::State(api): axum::extract::State<Api>,
    ApiJson(body): ApiJson<FilterBody>,
) -> Result<Json<Value>> {
    if let Some(p) = &body.policy {
        return Err(FilterError::NotBuilt(format!(
            "named policies (\"{p}\") are not built yet: give `rules` (entity names) and operators in the request"
        ))
        .into());
    }
    let entities: Option<Vec<String>> = match &body.rules {
        None => None,
        Some(rules) => {
            let mut out = Vec::new();
            for r in rules {
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
            return Err(FilterError::Invalid(format!("'{p}' is not a JSON pointer (like /user/email)")).into());
        }
    }
    let settings = settings(&api.settings, body.score_threshold, body.allow_list, body.deny_list)?;
    let out = blocking(move || {
        let mut data = body.data;
        let mut scan = Scan {
            entities: entities.as_deref(),
            custom: &[],
            settings: &settings,
            operators: &body.operators,
            default: &default,
            skip: &body.skip,
            always: &body.always,
            findings: Vec::new(),
            counts: BTreeMap::new(),
            too_deep: false,
        };
        scan.filter(&mut data, "", "", 0);
        json!({ "data": data, "findings": scan.findings, "counts": scan.counts, "truncated_depth": scan.too_deep })
    })
    .await?;
    Ok(Json(out))
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

async fn analyze(
    axum::extract::State(api): axum::extract::State<Api>,
    ApiJson(body): ApiJson<AnalyzeBody>,
) -> Result<Json<Value>> {
    if body.language != "en" {
        return Err(FilterError::Invalid(format!("language '{}' is not supported (en)", body.language)).into());
    }
    let mut deny = Vec::new();
    let custom = ad_hoc(body.ad_hoc_recognizers, &mut deny)?;
    let settings = settings(&api.settings, body.score_threshold, body.allow_list, deny)?;
    let (text, entities, explain) = (body.text, body.entities, body.return_decision_process);
    let _ = body.correlation_id;
    let found: Vec<Finding> =
        blocking(move || analyzer::analyze(&text, entities.as_deref(), "", &custom, &settings)).await?;
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

#[derive(Debug, Deserialize)]
struct AnalyzerResult {
    start: usize,
    end: usize,
    entity_type: String,
    #[serde(default)]
    score: f32,
}

#[derive(Debug, Deserialize)]
struct AnonymizeBody {
    text: String,
    #[serde(default)]
    anonymizers: BTreeMap<String, Operator>,
    #[serde(default)]
    analyzer_results: Vec<AnalyzerResult>,
}

async fn anonymize(ApiJson(body): ApiJson<AnonymizeBody>) -> Result<Json<Value>> {
    for op in body.anonymizers.values() {
        op.check()?;
    }
    // Presidio's offsets are characters; turn them into byte offsets, refusing bad spans.
    let bytes: Vec<usize> = body.text.char_indices().map(|(i, _)| i).chain(std::iter::once(body.text.len())).collect();
    let mut findings = Vec::new();
    for r in &body.analyzer_results {
        if r.start >= r.end || r.end > bytes.len() - 1 {
            return Err(
                FilterError::Invalid(format!("analyzer result {}..{} is outside the text", r.start, r.end)).into()
            );
        }
        findings.push(Finding {
            entity_type: r.entity_type.clone(),
            start: r.start,
            end: r.end,
            score: r.score,
            byte_start: bytes[r.start],
            byte_end: bytes[r.end],
            recognizer: "request".into(),
        });
    }
    // Overlaps: Presidio keeps the higher-scoring one; so do we.
    findings.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Finding> = Vec::new();
    for f in findings {
        if kept.iter().all(|k| f.byte_end <= k.byte_start || f.byte_start >= k.byte_end) {
            kept.push(f);
        }
    }
    let default = body.anonymizers.get("DEFAULT").cloned().unwrap_or(Operator::Replace { new_value: None });
    let (text, items) = operators::anonymize(&body.text, &kept, |e| body.anonymizers.get(e).unwrap_or(&default));
    Ok(Json(json!({ "text": text, "items": items })))
}

async fn entities() -> Json<Value> {
    Json(json!(ALL_ENTITIES))
}
