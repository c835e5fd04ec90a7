//! File Processing's routes: uploads (raw body or multipart, streamed), file records, content
//! with HTTP Range, deletion with derivations, jobs (submit, read, cancel, follow over a
//! WebSocket).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use loom_http::{ApiError, ApiJson, ApiRouter, Binary, Problem, routes, writes_under};
use serde_json::{Value, json};

use crate::error::FileError;
use crate::imaging::{self, Limits};
use crate::jobs::Jobs;
use crate::ops::Op;
use crate::store::FileStore;

#[derive(Clone)]
pub struct Api {
    pub store: FileStore,
    pub jobs: Jobs,
    pub max_upload: u64,
    pub limits: Limits,
    /// The S3 bucket `POST /files/import` reads from (`None` on the local store).
    pub bucket: Option<String>,
}

/// Every write: files, jobs, quarantine releases — all state lives in the object store.
pub fn cluster_wide(method: &Method, path: &str) -> bool {
    ["/files", "/jobs", "/admin/quarantine"].iter().any(|p| writes_under(method, path, p))
}

/// `json_limit` bounds every route but the upload (the port's limit is `files.max_upload`).
pub fn routes(api: Api, json_limit: usize) -> ApiRouter {
    let upload = ApiRouter::new().routes(routes!(upload)).with_state(api.clone());
    let rest = ApiRouter::new()
        .routes(routes!(import))
        .routes(routes!(read_file, delete_file))
        .routes(routes!(content))
        .routes(routes!(submit))
        .routes(routes!(read_job, cancel_job))
        .routes(routes!(ws_job))
        .routes(routes!(quarantine))
        .routes(routes!(release))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(api);
    upload.merge(rest)
}

pub fn summarize(limits: Limits) -> impl Fn(&str, &[u8]) -> Value {
    move |media_type, head| match media_type.starts_with("image/").then(|| imaging::dimensions(head, limits)).flatten()
    {
        Some((w, h)) => json!({"width": w, "height": h}),
        None => json!({}),
    }
}

/// The multipart form of an upload: one file part.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; `upload` streams the part through axum's `Multipart`
struct MultipartUpload {
    file: Binary,
}

/// Uploads a file, streamed to the object store: a raw body with its `content-type` (name in `?name=` or `content-disposition`), or `multipart/form-data` with one file part. The id is the SHA-256 of the bytes; the same bytes give the same id.
#[utoipa::path(post, path = "/files",
    request_body(content(
        (Binary = "application/octet-stream"),
        (MultipartUpload = "multipart/form-data"),
        (Binary = "*/*")),
        description = "the file's bytes (at most files.max_upload)"),
    responses((status = 201, description = "`{id, size, media_type, name?, declared_type?, metadata}`", body = Object)))]
async fn upload(State(api): State<Api>, req: Request) -> Result<Response, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(n) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && n > api.max_upload
    {
        return Err(FileError::TooLarge(api.max_upload).into());
    }
    let is_multipart =
        content_type.as_deref().is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    let record = if is_multipart {
        let mut form = Multipart::from_request(req, &()).await.map_err(|e| FileError::Invalid(e.body_text()))?;
        loop {
            let field = form.next_field().await.map_err(|e| FileError::Invalid(e.body_text()))?;
            let Some(field) = field else {
                return Err(FileError::Invalid("the form has no file field (a part with a filename)".into()).into());
            };
            if field.file_name().is_none() && field.name() != Some("file") {
                continue;
            }
            let name = field.file_name().map(|n| n.chars().take(255).collect::<String>());
            let declared = field.content_type().map(str::to_owned);
            break api
                .store
                .upload(Box::pin(field), declared.as_deref(), name, api.max_upload, summarize(api.limits))
                .await?;
        }
    } else {
        let name = req
            .headers()
            .get("x-file-name")
            .and_then(|v| v.to_str().ok())
            .map(|n| n.chars().take(255).collect::<String>());
        let body = req.into_body().into_data_stream();
        api.store.upload(body, content_type.as_deref(), name, api.max_upload, summarize(api.limits)).await?
    };
    metrics::counter!(crate::metrics::UPLOAD_BYTES).increment(record.size);
    metrics::counter!(crate::metrics::UPLOADS).increment(1);
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// `s3://<the configured bucket>/<key>` → the object key; other URLs are refused with why.
pub fn object_key(url: &str, bucket: Option<&str>) -> Result<String, FileError> {
    let Some(bucket) = bucket else {
        return Err(FileError::Invalid(
            "import reads the configured S3 store; this node stores objects locally".into(),
        ));
    };
    let rest = url.strip_prefix("s3://").ok_or_else(|| FileError::Invalid("the url must be s3://bucket/key".into()))?;
    let (b, key) = rest.split_once('/').ok_or_else(|| FileError::Invalid("the url must be s3://bucket/key".into()))?;
    if b != bucket {
        return Err(FileError::Invalid(format!("only objects in this node's bucket `{bucket}` can be imported")));
    }
    if key.is_empty() || key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(FileError::Invalid("the object key is empty or has empty, `.` or `..` segments".into()));
    }
    Ok(key.to_owned())
}

impl Api {
    /// An import by URL, for the REST route and the Kafka bridge.
    pub async fn import_url(&self, url: &str) -> Result<crate::store::FileRecord, FileError> {
        let key = object_key(url, self.bucket.as_deref())?;
        self.store.import(&key, self.max_upload, summarize(self.limits)).await
    }
}

/// Imports an object already in the configured bucket (`s3://bucket/key`) as a file.
#[utoipa::path(post, path = "/files/import", request_body(content = Object, description = "`{\"url\": \"s3://bucket/key\"}`"),
    responses((status = 201, description = "the file record", body = Object)))]
async fn import(State(api): State<Api>, ApiJson(body): ApiJson<Value>) -> Result<Response, ApiError> {
    let url = body.get("url").and_then(Value::as_str).ok_or_else(|| FileError::Invalid("`url` is required".into()))?;
    let record = api.import_url(url).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// A file's record: size, sniffed media type, name, summary metadata.
#[utoipa::path(get, path = "/files/{id}", params(("id" = String, Path, description = "the file's SHA-256 (64 hex digits)")), responses((status = 200, description = "the file record", body = Object)))]
async fn read_file(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let record = api.store.record(&id).await?.ok_or_else(|| FileError::NotFound(format!("file {id}")))?;
    Ok(Json(serde_json::to_value(record).unwrap_or(Value::Null)))
}

/// Deletes a file and every derivation made from it.
#[utoipa::path(delete, path = "/files/{id}", params(("id" = String, Path, description = "the file's SHA-256 (64 hex digits)")), responses((status = 204, description = "deleted")))]
async fn delete_file(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if api.store.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(FileError::NotFound(format!("file {id}")).into())
    }
}

/// A single `bytes=` range against a file of `size` bytes: `Ok(None)` serves the whole file
/// (no header, or a form this server does not split, such as several ranges), `Err(())` is
/// unsatisfiable (416).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Err(()),
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            size.saturating_sub(n)..size
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() { size } else { b.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(size) };
            if start >= size || end <= start {
                return Err(());
            }
            start..end
        }
    };
    Ok(Some(range))
}

/// A file's bytes with its media type; a single `Range: bytes=…` gives 206 (416 when unsatisfiable).
#[utoipa::path(get, path = "/files/{id}/content", params(("id" = String, Path, description = "the file's SHA-256 (64 hex digits)")),
    responses(
        (status = 200, description = "the whole file, with its media type", content_type = "*/*", body = Binary),
        (status = 206, description = "the requested range", content_type = "*/*", body = Binary)))]
async fn content(State(api): State<Api>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let record = api.store.record(&id).await?.ok_or_else(|| FileError::NotFound(format!("file {id}")))?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match parse_range(range_header, record.size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {} bytes", record.size),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", record.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let stream = api.store.content(&id, range.clone()).await?;
    let body = Body::from_stream(stream.map(|c| c.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&record.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    let len = match &range {
        Some(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end - 1, record.size)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.end - r.start
        }
        None => record.size,
    };
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

/// Submits an operation on a file (`thumbnail`, `metadata`, `audio`, `text`, `frames`; README, File Processing): 202 with a queued job, or 200 with the stored result of the same derivation. A full queue answers 429 with `Retry-After`.
#[utoipa::path(post, path = "/files/{id}/jobs", params(("id" = String, Path, description = "the file's SHA-256 (64 hex digits)")),
    request_body(content = Object, description = "`{\"op\": \"thumbnail\", \"sizes\": [128, 512], \"fit\": \"cover\", \"format\": \"webp\"}` and the other operations"),
    responses(
        (status = 202, description = "the queued job `{id, file, op, state, progress}`", body = Object),
        (status = 200, description = "a succeeded job from the stored derivation (`cached: true`)", body = Object)))]
async fn submit(
    State(api): State<Api>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let op = Op::parse(&body)?;
    let file = api.store.record(&id).await?.ok_or_else(|| FileError::NotFound(format!("file {id}")))?;
    match api.jobs.submit(&file, op).await {
        Ok(job) => {
            let status = if job.cached { StatusCode::OK } else { StatusCode::ACCEPTED };
            let mut r = (status, Json(job.clone())).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/jobs/{}", job.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Err(e @ FileError::QueueFull(_)) => {
            let mut r = ApiError::from(e).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// A job: state, progress, result or error.
#[utoipa::path(get, path = "/jobs/{id}", params(("id" = String, Path, description = "job id (UUID)")), responses((status = 200, description = "the job", body = Object)))]
async fn read_job(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = api.store.job(&id).await?.ok_or_else(|| FileError::NotFound(format!("job {id}")))?;
    Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null)))
}

/// Cancels a queued or running job (its child process is killed); 409 `job_ended` once it ended.
#[utoipa::path(delete, path = "/jobs/{id}", params(("id" = String, Path, description = "job id (UUID)")), responses((status = 200, description = "the cancelled job", body = Object)))]
async fn cancel_job(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = api.jobs.cancel(&id).await?;
    Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null)))
}

/// Files quarantined after crashing or hanging a parser `files.quarantine_after` times.
#[utoipa::path(get, path = "/quarantine", responses((status = 200, description = "`{files: [...]}`", body = Object)))]
async fn quarantine(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let files = api.store.quarantined(1000).await?;
    Ok(Json(json!({"files": files})))
}

/// Releases a quarantined file so jobs may run on it again.
#[utoipa::path(delete, path = "/admin/quarantine/{id}", params(("id" = String, Path, description = "the file's SHA-256 (64 hex digits)")), responses((status = 204, description = "released")))]
async fn release(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if api.store.release(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(FileError::NotFound(format!("quarantine entry {id}")).into())
    }
}

/// Follows a job over a WebSocket: the job as JSON each time it changes, then the final state, then close.
#[utoipa::path(get, path = "/ws/jobs/{id}", params(("id" = String, Path, description = "job id (UUID)")), responses((status = 101, description = "WebSocket upgrade: text frames carrying the job")))]
async fn ws_job(State(api): State<Api>, Path(id): Path<String>, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    api.store.job(&id).await?.ok_or_else(|| FileError::NotFound(format!("job {id}")))?;
    Ok(ws.on_upgrade(move |socket| follow(socket, Arc::new(api), id)))
}

/// Sends the job each time it changes (live on the node running it, else polled from the
/// store every 500 ms), and closes after the final state.
async fn follow(mut socket: WebSocket, api: Arc<Api>, id: String) {
    let mut live = api.jobs.shared.follow(&id);
    let mut last: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let job = match api.store.job(&id).await {
            Ok(Some(j)) => j,
            _ => break,
        };
        let ended = job.state.ended();
        let v = serde_json::to_value(&job).unwrap_or(Value::Null);
        if last.as_ref() != Some(&v) {
            if socket.send(Message::Text(v.to_string().into())).await.is_err() {
                return;
            }
            last = Some(v);
        }
        if ended || tokio::time::Instant::now() > deadline {
            break;
        }
        match live.as_mut() {
            Some(rx) => {
                if tokio::time::timeout(Duration::from_millis(500), rx.changed()).await.is_ok_and(|r| r.is_err()) {
                    live = None;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_urls_name_an_object_of_this_bucket() {
        let cases = [
            ("s3://b/cams/1.jpg", Some("b"), Ok("cams/1.jpg")),
            ("s3://other/x", Some("b"), Err("invalid_request")),
            ("s3://b/", Some("b"), Err("invalid_request")),
            ("s3://b/a/../etc", Some("b"), Err("invalid_request")),
            ("s3://b//x", Some("b"), Err("invalid_request")),
            ("https://b/x", Some("b"), Err("invalid_request")),
            ("s3://b/x", None, Err("invalid_request")),
        ];
        for (url, bucket, want) in cases {
            let got = object_key(url, bucket);
            match want {
                Ok(k) => assert_eq!(got.unwrap(), k, "{url}"),
                Err(code) => assert_eq!(loom_protocol::ServiceError::code(&got.unwrap_err()), code, "{url}"),
            }
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases: [(Option<&str>, Result<Option<Range<u64>>, ()>); 11] = [
            (None, Ok(None)),
            (Some("bytes=0-99"), Ok(Some(0..100))),
            (Some("bytes=100-"), Ok(Some(100..1000))),
            (Some("bytes=-100"), Ok(Some(900..1000))),
            (Some("bytes=-5000"), Ok(Some(0..1000))),
            (Some("bytes=990-5000"), Ok(Some(990..1000))),
            (Some("bytes=0-0,5-9"), Ok(None)),
            (Some("bytes=1000-"), Err(())),
            (Some("bytes=9-3"), Err(())),
            (Some("bytes=x-3"), Err(())),
            (Some("bytes=-0"), Err(())),
        ];
        for (h, want) in cases {
            assert_eq!(parse_range(h, 1000), want, "{h:?}");
        }
        assert_eq!(parse_range(Some("items=0-1"), 1000), Ok(None));
    }
}
