//! The stores against real infrastructure: the same contract cases on the in-process cache and
//! on Redis, objects on the local filesystem and on an S3 store (s3s-fs), the database on SQLite
//! and PostgreSQL — and a node running on PostgreSQL, Redis and S3 reporting them healthy.

use std::time::Duration;

use bytes::Bytes;
use loom_config::{ObjectBackend, ObjectStoreSection, Secret};
use loom_storage::{Cache, Database, Objects};
use loom_testkit::{LoomNode, NodeOptions, http, infra};
use serde_json::Value;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

async fn cache_contract(cache: &Cache) {
    let key = unique("cache");
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache.set(&key, b"one", Duration::from_secs(30)).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert!(!cache.set_if_absent(&key, b"two", Duration::from_secs(30)).await.unwrap(), "present: not replaced");
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert!(cache.delete(&key).await.unwrap());
    assert!(!cache.delete(&key).await.unwrap());
    assert!(cache.set_if_absent(&key, b"three", Duration::from_millis(200)).await.unwrap(), "absent: stored");
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"three"[..]));
    loom_testkit::eventually("entry expires", Duration::from_secs(5), || async {
        cache.get(&key).await.unwrap().is_none().then_some(())
    })
    .await;
    cache.ping().await.unwrap();
}

#[tokio::test]
async fn cache_contract_in_process() {
    cache_contract(&Cache::local(1000)).await;
}

#[tokio::test]
async fn cache_contract_redis() {
    let cache = Cache::redis(&infra::redis_url()).await.unwrap();
    assert_eq!(cache.backend(), "redis");
    cache_contract(&cache).await;
}

#[tokio::test]
async fn unreachable_redis_is_a_named_error() {
    let err = match Cache::redis("redis://127.0.0.1:1").await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("cache (redis://127.0.0.1:1):"), "{err}");
}

async fn objects_contract(objects: &Objects) {
    let key = format!("{}/blob.bin", unique("objects"));
    assert_eq!(objects.get(&key).await.unwrap(), None);
    objects.put(&key, Bytes::from_static(b"payload")).await.unwrap();
    assert_eq!(objects.get(&key).await.unwrap().as_deref(), Some(&b"payload"[..]));
    objects.delete(&key).await.unwrap();
    assert_eq!(objects.get(&key).await.unwrap(), None);
    objects.delete(&key).await.unwrap();
    objects.ping().await.unwrap();
}

#[tokio::test]
async fn objects_contract_local() {
    let dir = tempfile::tempdir().unwrap();
    let objects =
        Objects::open(&ObjectStoreSection { path: Some(dir.path().to_owned()), ..Default::default() }).unwrap();
    assert_eq!(objects.backend(), "local");
    objects_contract(&objects).await;
}

fn s3_section() -> ObjectStoreSection {
    let (endpoint, key, secret) = infra::s3();
    ObjectStoreSection {
        backend: ObjectBackend::S3,
        endpoint: Some(endpoint),
        bucket: Some(infra::S3_BUCKET.into()),
        access_key: Some(Secret::new(key)),
        secret_key: Some(Secret::new(secret)),
        ..Default::default()
    }
}

#[tokio::test]
async fn objects_contract_s3() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let objects = Objects::open(&s3_section()).unwrap();
    assert_eq!(objects.backend(), "s3");
    objects_contract(&objects).await;
}

#[tokio::test]
async fn s3_with_a_wrong_secret_fails_its_check() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut section = s3_section();
    section.secret_key = Some(Secret::new("not-the-secret"));
    let objects = Objects::open(&section).unwrap();
    assert!(objects.ping().await.is_err());
}

#[tokio::test]
async fn database_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("nested/dir/loom.db").display());
    let sqlite = Database::connect(&url, 5).await.unwrap();
    assert_eq!(sqlite.backend(), "sqlite");
    sqlite.ping().await.unwrap();
    assert!(dir.path().join("nested/dir/loom.db").exists());

    let pg = Database::connect(&infra::postgres_url(), 4).await.unwrap();
    assert_eq!(pg.backend(), "postgres");
    pg.ping().await.unwrap();
}

#[tokio::test]
async fn a_node_on_postgres_redis_and_s3_reports_them_healthy() {
    let database = infra::fresh_postgres_database("node_stores").await;
    let (endpoint, key, secret) = infra::s3();
    let node = LoomNode::start_ready(
        "stores-1",
        NodeOptions::default()
            .env("LOOM_DATABASE_URL", database.clone())
            .env("LOOM_REDIS_URL", infra::redis_url())
            .env("LOOM_OBJECT_STORE", "s3")
            .env("LOOM_S3_ENDPOINT", endpoint)
            .env("LOOM_S3_BUCKET", infra::S3_BUCKET)
            .env("LOOM_S3_ACCESS_KEY", key)
            .env("LOOM_S3_SECRET_KEY", secret.clone()),
    )
    .await;
    let health: Value = http().get(node.url(8030, "/health")).send().await.unwrap().json().await.unwrap();
    let checks = &health["checks"];
    assert_eq!(checks["database:responseTime"][0]["componentType"], "datastore/postgres", "{health}");
    assert_eq!(checks["database:responseTime"][0]["status"], "pass", "{health}");
    assert_eq!(checks["cache:responseTime"][0]["componentType"], "datastore/redis");
    assert_eq!(checks["cache:responseTime"][0]["status"], "pass", "{health}");
    assert_eq!(checks["objectStore:responseTime"][0]["componentType"], "datastore/s3");
    assert_eq!(checks["objectStore:responseTime"][0]["status"], "pass", "{health}");
    assert_eq!(health["status"], "pass");
    // migrations ran on PostgreSQL
    let out = tokio::process::Command::new("psql")
        .args([database.as_str(), "-tAc", "SELECT count(*) FROM seaql_migrations"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // secrets stay out of the log
    let logs = node.stdout();
    assert!(!logs.contains(&secret));
}
