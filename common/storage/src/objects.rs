//! The object store (files, media, exports) behind the `object_store` crate: the local
//! filesystem by default, any S3-compatible store (MinIO, AWS, s3s-fs) when configured.

use std::sync::Arc;

use bytes::Bytes;
use loom_config::{ObjectBackend, ObjectStoreSection};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::{StoreError, secret_str};

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    backend: &'static str,
    /// The local backend, for readers that can open its files in place.
    local: Option<Arc<LocalFileSystem>>,
}

impl Objects {
    pub fn open(config: &ObjectStoreSection) -> Result<Objects, StoreError> {
        match config.backend {
            ObjectBackend::Local => {
                let root = config.path.clone().unwrap_or_else(|| "data/objects".into());
                let fail =
                    |reason: String| StoreError { store: "objectStore", target: root.display().to_string(), reason };
                std::fs::create_dir_all(&root).map_err(|e| fail(e.to_string()))?;
                let fs = Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(|e| fail(e.to_string()))?);
                Ok(Objects { store: fs.clone(), backend: "local", local: Some(fs) })
            }
            ObjectBackend::S3 => {
                let bucket = config.bucket.clone().unwrap_or_default();
                let endpoint = config.endpoint.clone();
                let fail = |reason: String| StoreError {
                    store: "objectStore",
                    target: format!("s3://{bucket} at {}", endpoint.as_deref().unwrap_or("AWS")),
                    reason,
                };
                let mut builder = AmazonS3Builder::new().with_bucket_name(&bucket).with_region(&config.region);
                if let Some(endpoint) = &endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(key), Some(secret)) = (secret_str(&config.access_key), secret_str(&config.secret_key)) {
                    builder = builder.with_access_key_id(key).with_secret_access_key(secret);
                }
                let s3 = builder.build().map_err(|e| fail(e.to_string()))?;
                Ok(Objects { store: Arc::new(s3), backend: "s3", local: None })
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Where the object `key` lies on this machine's file system, when the backend is local and
    /// the object exists — for tools that read files, so they need no copy. Objects are written
    /// whole (a rename), so an existing path is a complete object.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        let path = self.local.as_ref()?.path_to_filesystem(&Path::from(key)).ok()?;
        path.is_file().then_some(path)
    }

    /// The underlying store, for services that stream or list.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), String> {
        self.store.put(&Path::from(key), data.into()).await.map(|_| ()).map_err(|e| e.to_string())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        match self.store.get(&Path::from(key)).await {
            Ok(result) => result.bytes().await.map(Some).map_err(|e| e.to_string()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A cheap round trip: list one level under a prefix nobody writes to.
    pub async fn ping(&self) -> Result<(), String> {
        self.store.list_with_delimiter(Some(&Path::from("_loom_health"))).await.map(|_| ()).map_err(|e| e.to_string())
    }
}
