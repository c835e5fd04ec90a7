//! presidio-anonymizer's routes on 8011 — `POST /anonymize`, `POST /deanonymize`,
//! `GET /anonymizers`, `GET /deanonymizers` — speaking its contract: its request checks and
//! conflict resolution (`crate::presidio`), its answers and `{"error": "..."}` bodies with its
//! statuses. Loom's additions, all documented on the operations: managed keys where Presidio
//! needs the caller's (`encrypt`/`decrypt` without `key`, `hash` without `salt`), Loom's
//! `generalize` and `pseudonymize` operators, tokens decrypted without spans, the audit log.
//! The edge still answers auth, limits and timeouts in problem+json.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use loom_http::{ApiRouter, routes};
use loom_protocol::RequestId;
use serde::Serialize;
use serde_json::Value;

use super::{Api, AuditContext, audit_rows, blocking};
use crate::crypto::{TOKEN_PATTERN, caller, parse_token};
use crate::error::FilterError;
use crate::keys::Lookup;
use crate::presidio::engine::{self, Anonymizer, Deanonymizer, Item, Order, Outcome, config_for};
use crate::presidio::{self, PresidioError, Span, conflicts};
use crate::structured::Decisions;

/// Texts up to this size with no keyed operator are anonymized on the HTTP worker.
const INLINE_BYTES: usize = 8 * 1024;

pub(super) fn routes() -> ApiRouter<Api> {
    let mut router = ApiRouter::new()
        .routes(routes!(anonymize))
        .routes(routes!(deanonymize))
        .routes(routes!(anonymizers))
        .routes(routes!(deanonymizers));
    loom_http::openapi::default_response(&mut router, default_error());
    router
}

/// What these routes may answer besides their documented statuses.
fn default_error() -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description("an error: Presidio's `{error}` from the route, problem+json from the port's edge")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("PresidioError"))).build())
        .content(
            loom_http::problem::PROBLEM_JSON,
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build()
}

impl IntoResponse for PresidioError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// Loom's own failures in Presidio's shape.
fn presidio_error(e: FilterError) -> PresidioError {
    match e {
        FilterError::Invalid(m) => PresidioError::invalid(m),
        FilterError::Unavailable(_) => PresidioError::new(503, e.to_string()),
        _ => PresidioError::new(500, "Internal server error"),
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

fn answer<T: Serialize>(result: Result<T, PresidioError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The operator name as the audit log keeps it.
fn static_name(name: &str) -> &'static str {
    engine::ANONYMIZERS.iter().chain(engine::DEANONYMIZERS).find(|n| **n == name).copied().unwrap_or("other")
}

/// Presidio anonymizer: applies operators to the analyzer results' spans after Presidio's conflict resolution; audited.
#[utoipa::path(post, path = "/anonymize",
    request_body(content = Object, description = "Presidio's anonymize request: `{\"text\"?: \"\", \"analyzer_results\": [{start, end, entity_type, score}], \"anonymizers\"?: {ENTITY | \"DEFAULT\": {\"type\", ...params}}}`. Operators as Presidio's: `replace` (`new_value`), `redact`, `keep`, `mask` (`masking_char`, `chars_to_mask`, `from_end`), `hash` (`hash_type` sha256|sha512, `salt` ≥ 16 bytes), `encrypt` (`key`: 16/24/32 bytes, AES-CBC). Loom's additions: `hash` without `salt` is an HMAC under Loom's managed key (deterministic, where Presidio draws a random salt); `encrypt` without `key` is a managed AES-SIV token `<ENC:…>` that `/deanonymize` opens without a key; `generalize` (`precision`, `level`) and `pseudonymize`."),
    responses(
        (status = 200, description = "Presidio's result: `{text, items: [{start, end, entity_type, text, operator, score}]}`, items from the last entity to the first, offsets into the new text", body = Object),
        (status = 400, description = "Presidio's `Invalid request json` (an empty or non-object body), a body that is not JSON, or a `custom` operator", body = PresidioError),
        (status = 415, description = "the content type is not JSON", body = PresidioError),
        (status = 422, description = "Presidio's parameter errors: a missing `analyzer_results`, a result without start/end/entity_type/score or outside the text, an unknown operator class, an invalid operator parameter", body = PresidioError),
        (status = 503, description = "Loom's key store did not answer (keyed operators)", body = PresidioError),
    ))]
async fn anonymize(
    State(api): State<Api>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_anonymize(&api, &request_id, content_type(&headers), &body).await)
}

async fn run_anonymize(
    api: &Api,
    request_id: &RequestId,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Outcome, PresidioError> {
    let body = presidio::body(content_type, bytes)?;
    let configs = presidio::operators(body.get("anonymizers"), "anonymizers")?;
    if configs.values().any(|c| c.name == "custom") {
        return Err(PresidioError::new(400, "Custom type anonymizer is not supported"));
    }
    let results = presidio::analyzer_results(body.get("analyzer_results"))?;
    let text = presidio::text(&body)?;
    let entities = conflicts::resolve(&text.chars().collect::<Vec<_>>(), &results);
    // Operators are checked as each entity is reached; which need a managed key is known now.
    let op_for = move |entity: &str| match config_for(&configs, entity) {
        Some(c) => engine::anonymizer(c).map(|a| (a, c.name.clone())),
        None => Ok((Anonymizer::Replace(None), "replace".to_owned())),
    };
    let keyed_needed = entities.iter().any(|e| op_for(&e.entity_type).is_ok_and(|(a, _)| a.is_keyed()));
    let key = if keyed_needed { Some(api.key_for(None).await.map_err(presidio_error)?) } else { None };
    let keyed = api.keyed_ctx(key.clone());
    let inline = !keyed_needed && text.len() <= INLINE_BYTES;
    let run = move || {
        let out = engine::operate(&text, &entities, Order::StartEnd, |e, value| {
            let (op, name) = op_for(&e.entity_type)?;
            Ok((op.apply(value, &e.entity_type, &keyed), name))
        });
        (out, keyed)
    };
    let (out, keyed) = if inline { run() } else { blocking(run).await.map_err(presidio_error)? };
    let out = out?;
    if let Some(e) = keyed.take_error() {
        return Err(presidio_error(e));
    }
    let mut decisions = Decisions::new();
    for i in &out.items {
        *decisions.entry((String::new(), i.entity_type.clone(), static_name(&i.operator))).or_default() += 1;
    }
    let ctx = AuditContext { request_id, source: None, subject: None, policy: None, key: key.as_deref() };
    api.store.audit(audit_rows(&decisions, &ctx)).await.map_err(|e| presidio_error(e.into()))?;
    Ok(out)
}

static TOKENS: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(TOKEN_PATTERN).expect("token pattern compiles"));

/// Presidio's deanonymize answer, plus the Loom tokens that could not be opened.
#[derive(Serialize)]
struct Deanonymized {
    text: String,
    items: Vec<Item>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unrecoverable: Vec<Value>,
}

/// Loom tokens in a text without spans, as the spans Presidio would have been given.
fn token_spans(text: &str, configs: &std::collections::BTreeMap<String, presidio::OpConfig>) -> Vec<Span> {
    TOKENS
        .find_iter(text)
        .filter_map(|m| {
            let token = parse_token(m.as_str())?;
            let managed = engine::deanonymizer(config_for(configs, &token.entity))
                .is_ok_and(|d| d == Deanonymizer::Decrypt { key: None });
            let start = text[..m.start()].chars().count();
            managed.then(|| Span {
                start,
                end: start + m.as_str().chars().count(),
                entity_type: token.entity,
                score: Value::Null,
            })
        })
        .collect()
}

/// Presidio deanonymizer: reverses `encrypt` on the given spans (`decrypt`, `deanonymize_keep`); admin scope; audited.
#[utoipa::path(post, path = "/deanonymize",
    request_body(content = Object, description = "Presidio's deanonymize request: `{\"text\"?: \"\", \"anonymizer_results\"?: [{start, end, entity_type, score?}], \"deanonymizers\"?: {ENTITY | \"DEFAULT\": {\"type\": \"decrypt\", \"key\"} | {\"type\": \"deanonymize_keep\"}}}` (decrypt with a `key`: Presidio's AES-CBC). Loom's additions: `decrypt` without `key` (or no deanonymizer for the entity) opens a Loom token `<ENC:…>` with its managed key; without `anonymizer_results`, every Loom token in the text is opened."),
    responses(
        (status = 200, description = "`{text, items: [{start, end, entity_type, text, operator, score}]}` (Presidio's), and `unrecoverable: [{start, end, entity_type, code, reason}]` when a Loom token's key was destroyed (erased subject) or the token was altered", body = Object),
        (status = 400, description = "Presidio's `Invalid request json`, or a body that is not JSON", body = PresidioError),
        (status = 415, description = "the content type is not JSON", body = PresidioError),
        (status = 422, description = "Presidio's parameter errors (a result outside the text, an unknown operator class, a key that is not 128/192/256 bits), and a span that the key does not decrypt or that is not a Loom token (Presidio: 500)", body = PresidioError),
        (status = 503, description = "Loom's key store did not answer", body = PresidioError),
    ))]
async fn deanonymize(
    State(api): State<Api>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(run_deanonymize(&api, &request_id, content_type(&headers), &body).await)
}

async fn run_deanonymize(
    api: &Api,
    request_id: &RequestId,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Deanonymized, PresidioError> {
    let body = presidio::body(content_type, bytes)?;
    let text = presidio::text(&body)?;
    let entities = presidio::anonymizer_results(body.get("anonymizer_results"))?;
    let configs = presidio::operators(body.get("deanonymizers"), "deanonymizers")?;
    let entities = if entities.is_empty() { token_spans(&text, &configs) } else { entities };
    // The managed keys of the Loom tokens among the spans, looked up before the (sync) run.
    let chars: Vec<char> = text.chars().collect();
    let mut keys: HashMap<i64, Lookup> = HashMap::new();
    for e in &entities {
        let managed = engine::deanonymizer(config_for(&configs, &e.entity_type))
            .is_ok_and(|d| d == Deanonymizer::Decrypt { key: None });
        let Some(value) = chars.get(e.start..e.end).filter(|_| managed) else { continue };
        if let Some(token) = parse_token(&value.iter().collect::<String>())
            && !keys.contains_key(&token.key_id)
        {
            keys.insert(token.key_id, api.keys.by_id(token.key_id).await.map_err(presidio_error)?);
        }
    }
    let mut unrecoverable: Vec<(usize, &'static str, String)> = Vec::new();
    let mut index = 0;
    let out = engine::operate(&text, &entities, Order::Start, |e, value| {
        let at = index;
        index += 1;
        let decrypted = |v: String| Ok((v, "decrypt".to_owned()));
        match engine::deanonymizer(config_for(&configs, &e.entity_type))? {
            Deanonymizer::Keep => Ok((value.to_owned(), "deanonymize_keep".to_owned())),
            Deanonymizer::Decrypt { key: Some(key) } => match caller::decrypt(&key, value) {
                Some(v) => decrypted(v),
                None => Err(PresidioError::invalid(format!(
                    "Invalid input, the text at {}..{} does not decrypt under the given key",
                    e.start, e.end
                ))),
            },
            Deanonymizer::Decrypt { key: None } => {
                let Some(token) = parse_token(value) else {
                    return Err(PresidioError::invalid(format!(
                        "Invalid input, the text at {}..{} is not a Loom encryption token; decrypt a Presidio ciphertext with its `key`",
                        e.start, e.end
                    )));
                };
                let opened = match keys.get(&token.key_id) {
                    Some(Lookup::Live(key)) => key.material.decrypt(&token).map_err(|m| ("invalid_token", m)),
                    Some(Lookup::Destroyed) => Err(("key_erased", "its key was destroyed (erased subject)".to_owned())),
                    _ => Err(("unknown_key", "no such key".to_owned())),
                };
                match opened {
                    Ok(v) => decrypted(v),
                    Err((code, why)) => {
                        unrecoverable.push((at, code, why));
                        Ok((value.to_owned(), "decrypt".to_owned()))
                    }
                }
            }
        }
    })?;
    let mut items = Vec::new();
    let mut lost = Vec::new();
    for (i, item) in out.items.into_iter().enumerate() {
        match unrecoverable.iter().find(|(at, ..)| *at == i) {
            Some((_, code, why)) => lost.push(serde_json::json!({"start": item.start, "end": item.end,
                "entity_type": item.entity_type, "code": code, "reason": why})),
            None => items.push(item),
        }
    }
    let mut decisions = Decisions::new();
    for i in &items {
        *decisions.entry((String::new(), i.entity_type.clone(), static_name(&i.operator))).or_default() += 1;
    }
    let ctx = AuditContext { request_id, source: None, subject: None, policy: None, key: None };
    api.store.audit(audit_rows(&decisions, &ctx)).await.map_err(|e| presidio_error(e.into()))?;
    Ok(Deanonymized { text: out.text, items, unrecoverable: lost })
}

/// Presidio's `GET /anonymizers`: the anonymizers `/anonymize` runs (Presidio's, without `custom`, which its HTTP API refuses, and the Azure `surrogate_ahds`; then Loom's `generalize` and `pseudonymize`).
#[utoipa::path(get, path = "/anonymizers",
    responses((status = 200, description = "operator names: `[\"encrypt\", \"hash\", \"keep\", \"mask\", \"redact\", \"replace\", \"generalize\", \"pseudonymize\"]`", body = Vec<String>)))]
async fn anonymizers() -> Json<&'static [&'static str]> {
    Json(engine::ANONYMIZERS)
}

/// Presidio's `GET /deanonymizers`: the deanonymizers `/deanonymize` runs.
#[utoipa::path(get, path = "/deanonymizers",
    responses((status = 200, description = "`[\"decrypt\", \"deanonymize_keep\"]`", body = Vec<String>)))]
async fn deanonymizers() -> Json<&'static [&'static str]> {
    Json(engine::DEANONYMIZERS)
}
