//! Files, derivations and jobs on the object store — the one store every node sharing it sees,
//! so an upload, a job or a derivation made on one node is served by the others:
//!
//! ```text
//! files/<sha256>            the bytes (content-addressed: the same bytes, the same id)
//! files/<sha256>.json       the file's record (size, sniffed and declared type, name, summary)
//! derived/<source>/<key>    a derivation's result (key: ops::Op::derivation_key)
//! jobs/<uuid>.json          a job's record, rewritten on every state change
//! staging/<uuid>            an upload in flight, moved to files/<sha256> once hashed
//! quarantine/<sha256>.json  parser crashes and timeouts of a file (quarantined at N)
//! ```
//!
//! Uploads stream: chunks are hashed and written as a multipart upload as they arrive, so a
//! large file never sits in memory; past the limit the upload is aborted and answers 413.

use std::ops::Range;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use loom_storage::Objects;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::FileError;
use crate::ops::hex;
use crate::sniff::{self, HEAD};

/// A stored file as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub size: u64,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The type the uploader declared, when it contradicts the bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    pub created_ms: i64,
    /// What is known without running a job (image dimensions from the header).
    pub metadata: Value,
    /// Set on outputs of a derivation: the source file's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
}

/// A file's record of crashing parsers.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Strikes {
    pub id: String,
    pub strikes: u32,
    pub quarantined: bool,
    /// The last few failures (code and operation), newest last.
    pub failures: Vec<Value>,
    pub updated_ms: i64,
}

/// What a finished derivation produced (stored once, returned to every later asker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Derivation {
    pub op: String,
    pub params: Value,
    pub pipeline: u32,
    pub result: Value,
}

#[derive(Clone)]
pub struct FileStore {
    objects: Objects,
}

fn file_key(id: &str) -> Path {
    Path::from(format!("files/{id}"))
}

fn record_key(id: &str) -> Path {
    Path::from(format!("files/{id}.json"))
}

fn store_err(e: impl std::fmt::Display) -> FileError {
    FileError::Store(e.to_string())
}

/// A file id is a lowercase hex SHA-256; anything else is not a file here.
pub fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileStore {
    pub fn new(objects: Objects) -> FileStore {
        FileStore { objects }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.objects.store().as_ref()
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &Path) -> Result<Option<T>, FileError> {
        match self.store().get(key).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(store_err)?;
                serde_json::from_slice(&bytes).map(Some).map_err(|e| FileError::Store(format!("{key}: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn put_json<T: Serialize>(&self, key: &Path, value: &T) -> Result<(), FileError> {
        let body = serde_json::to_vec(value).map_err(store_err)?;
        self.store().put(key, Bytes::from(body).into()).await.map(|_| ()).map_err(store_err)
    }

    /// Streams an upload into the store; returns the record (the existing one for known bytes).
    pub async fn upload<S, E>(
        &self,
        mut body: S,
        declared: Option<&str>,
        name: Option<String>,
        max: u64,
        summarize: impl Fn(&str, &[u8]) -> Value,
    ) -> Result<FileRecord, FileError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staging = Path::from(format!("staging/{}", uuid::Uuid::now_v7()));
        let upload = self.store().put_multipart(&staging).await.map_err(store_err)?;
        let mut writer = WriteMultipart::new(upload);
        let mut hash = Sha256::new();
        let mut head = Vec::with_capacity(HEAD);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(FileError::Invalid(format!("the upload broke off: {e}")));
                }
            };
            size += chunk.len() as u64;
            if size > max {
                let _ = writer.abort().await;
                return Err(FileError::TooLarge(max));
            }
            if head.len() < HEAD {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
            }
            hash.update(&chunk);
            writer.wait_for_capacity(4).await.map_err(store_err)?;
            writer.write(&chunk);
        }
        if size == 0 {
            let _ = writer.abort().await;
            return Err(FileError::Empty);
        }
        writer.finish().await.map_err(store_err)?;
        let id = hex(&hash.finalize());
        let result = self.settle(&staging, &id, size, &head, declared, name, &summarize).await;
        let _ = self.store().delete(&staging).await;
        result
    }

    /// Brings an object already in the store (`key`) in as a file: streamed and hashed like an
    /// upload; the object itself is left where it is.
    pub async fn import(
        &self,
        key: &str,
        max: u64,
        summarize: impl Fn(&str, &[u8]) -> Value,
    ) -> Result<FileRecord, FileError> {
        let path = Path::parse(key).map_err(|e| FileError::Invalid(format!("object key: {e}")))?;
        let meta = match self.store().head(&path).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Err(FileError::NotFound(format!("object {key}"))),
            Err(e) => return Err(store_err(e)),
        };
        if meta.size > max {
            return Err(FileError::TooLarge(max));
        }
        let stream = self.store().get(&path).await.map_err(store_err)?.into_stream();
        let name = path.filename().map(str::to_owned);
        self.upload(stream, None, name, max, summarize).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        staging: &Path,
        id: &str,
        size: u64,
        head: &[u8],
        declared: Option<&str>,
        name: Option<String>,
        summarize: &impl Fn(&str, &[u8]) -> Value,
    ) -> Result<FileRecord, FileError> {
        if let Some(existing) = self.record(id).await? {
            return Ok(existing);
        }
        self.store().copy(staging, &file_key(id)).await.map_err(store_err)?;
        let sniffed = sniff::sniff(head, declared);
        let record = FileRecord {
            id: id.to_owned(),
            size,
            metadata: summarize(&sniffed.media_type, head),
            media_type: sniffed.media_type,
            name,
            declared_type: sniffed.mismatch.then_some(sniffed.declared).flatten(),
            created_ms: loom_storage::documents::now_ms(),
            derived_from: None,
        };
        self.put_json(&record_key(id), &record).await?;
        Ok(record)
    }

    /// Stores bytes a job produced as a file of their own.
    pub async fn put_output(
        &self,
        bytes: Vec<u8>,
        media_type: &str,
        source: &str,
        metadata: Value,
    ) -> Result<FileRecord, FileError> {
        let id = hex(&Sha256::digest(&bytes));
        if let Some(existing) = self.record(&id).await? {
            return Ok(existing);
        }
        let size = bytes.len() as u64;
        self.store().put(&file_key(&id), Bytes::from(bytes).into()).await.map_err(store_err)?;
        let record = FileRecord {
            id: id.clone(),
            size,
            media_type: media_type.to_owned(),
            name: None,
            declared_type: None,
            created_ms: loom_storage::documents::now_ms(),
            metadata,
            derived_from: Some(source.to_owned()),
        };
        self.put_json(&record_key(&id), &record).await?;
        Ok(record)
    }

    pub async fn record(&self, id: &str) -> Result<Option<FileRecord>, FileError> {
        if !valid_id(id) {
            return Ok(None);
        }
        self.get_json(&record_key(id)).await
    }

    /// The whole file, for jobs (bounded by `files.max_upload`).
    pub async fn bytes(&self, id: &str) -> Result<Bytes, FileError> {
        match self.store().get(&file_key(id)).await {
            Ok(r) => r.bytes().await.map_err(store_err),
            Err(object_store::Error::NotFound { .. }) => Err(FileError::NotFound(format!("file {id}"))),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The file's own path when the store is the local file system (tools read it in place).
    pub fn local_path(&self, id: &str) -> Option<std::path::PathBuf> {
        if !valid_id(id) {
            return None;
        }
        self.objects.local_path(file_key(id).as_ref())
    }

    /// Copies the file to a local path, streaming (for the tools, which read files).
    pub async fn to_file(&self, id: &str, path: &std::path::Path) -> Result<(), FileError> {
        use tokio::io::AsyncWriteExt;
        let mut stream = self.content(id, None).await?;
        let mut out = tokio::fs::File::create(path).await.map_err(store_err)?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(store_err)?).await.map_err(store_err)?;
        }
        out.flush().await.map_err(store_err)
    }

    /// A byte range of the file (`None`: all of it) as a stream.
    pub async fn content(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<impl Stream<Item = Result<Bytes, object_store::Error>> + use<>, FileError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        match self.store().get_opts(&file_key(id), options).await {
            Ok(r) => Ok(r.into_stream()),
            Err(object_store::Error::NotFound { .. }) => Err(FileError::NotFound(format!("file {id}"))),
            Err(e) => Err(store_err(e)),
        }
    }

    pub async fn derivation(&self, source: &str, key: &str) -> Result<Option<Derivation>, FileError> {
        self.get_json(&Path::from(format!("derived/{source}/{key}"))).await
    }

    pub async fn put_derivation(&self, source: &str, key: &str, d: &Derivation) -> Result<(), FileError> {
        self.put_json(&Path::from(format!("derived/{source}/{key}")), d).await
    }

    /// Deletes a file, its derivations and the outputs they list.
    pub async fn delete(&self, id: &str) -> Result<bool, FileError> {
        let Some(_) = self.record(id).await? else { return Ok(false) };
        let prefix = Path::from(format!("derived/{id}"));
        let mut derived = Vec::new();
        let mut list = self.store().list(Some(&prefix));
        while let Some(meta) = list.next().await {
            derived.push(meta.map_err(store_err)?.location);
        }
        drop(list);
        for key in derived {
            if let Some(d) = self.get_json::<Derivation>(&key).await? {
                for out in d.result["outputs"].as_array().into_iter().flatten() {
                    if let Some(out) = out["id"].as_str().filter(|o| valid_id(o)) {
                        let _ = self.store().delete(&file_key(out)).await;
                        let _ = self.store().delete(&record_key(out)).await;
                    }
                }
            }
            let _ = self.store().delete(&key).await;
        }
        let _ = self.store().delete(&Self::strikes_key(id)).await;
        self.store().delete(&record_key(id)).await.map_err(store_err)?;
        match self.store().delete(&file_key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(store_err(e)),
        }
    }

    fn strikes_key(id: &str) -> Path {
        Path::from(format!("quarantine/{id}.json"))
    }

    pub async fn strikes(&self, id: &str) -> Result<Option<Strikes>, FileError> {
        if !valid_id(id) {
            return Ok(None);
        }
        self.get_json(&Self::strikes_key(id)).await
    }

    /// Counts one more crash or timeout of `id`; quarantined at `after`.
    pub async fn strike(&self, id: &str, code: &str, op: &str, after: u32) -> Result<Strikes, FileError> {
        let mut s = self.strikes(id).await?.unwrap_or_else(|| Strikes { id: id.to_owned(), ..Strikes::default() });
        s.strikes += 1;
        s.quarantined = s.strikes >= after;
        s.failures.push(serde_json::json!({"code": code, "op": op}));
        let excess = s.failures.len().saturating_sub(10);
        s.failures.drain(..excess);
        s.updated_ms = loom_storage::documents::now_ms();
        self.put_json(&Self::strikes_key(id), &s).await?;
        Ok(s)
    }

    /// The quarantined files (at most `max`).
    pub async fn quarantined(&self, max: usize) -> Result<Vec<Strikes>, FileError> {
        let mut keys = Vec::new();
        let mut list = self.store().list(Some(&Path::from("quarantine")));
        while let Some(meta) = list.next().await {
            keys.push(meta.map_err(store_err)?.location);
        }
        drop(list);
        let mut out = Vec::new();
        for key in keys {
            if let Some(s) = self.get_json::<Strikes>(&key).await?.filter(|s| s.quarantined) {
                out.push(s);
                if out.len() >= max {
                    break;
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Releases a file from quarantine (its strikes are forgotten).
    pub async fn release(&self, id: &str) -> Result<bool, FileError> {
        if self.strikes(id).await?.is_none() {
            return Ok(false);
        }
        self.store().delete(&Self::strikes_key(id)).await.map_err(store_err)?;
        Ok(true)
    }

    pub async fn job(&self, id: &str) -> Result<Option<crate::jobs::Job>, FileError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        self.get_json(&Path::from(format!("jobs/{id}.json"))).await
    }

    pub async fn put_job(&self, job: &crate::jobs::Job) -> Result<(), FileError> {
        self.put_json(&Path::from(format!("jobs/{}.json", job.id)), job).await
    }
}
