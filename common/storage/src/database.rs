//! The relational database through sea-orm: a SQLite file (embedded default) or PostgreSQL
//! (clusters). Migrations are run by the node with the migrator it assembles from every service.

use std::time::Duration;

use sea_orm::{ConnectOptions, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

use crate::StoreError;

#[derive(Clone)]
pub struct Database {
    conn: DatabaseConnection,
    backend: &'static str,
}

impl Database {
    /// Connects (creating the SQLite file and its directory when needed).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, StoreError> {
        let fail = |reason: String| StoreError { store: "database", target: loom_config::redact_url(url), reason };
        let backend = if url.starts_with("sqlite:") { "sqlite" } else { "postgres" };
        if backend == "sqlite" {
            create_sqlite_dir(url).map_err(fail)?;
        }
        // SQLite: one connection — writes serialize anyway, and `:memory:` needs exactly one.
        let max = if backend == "sqlite" { 1 } else { max_connections };
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let conn = sea_orm::Database::connect(options).await.map_err(|e| fail(e.to_string()))?;
        Ok(Database { conn, backend })
    }

    /// Applies every pending migration of `M`.
    pub async fn migrate<M: MigratorTrait>(&self) -> Result<(), StoreError> {
        M::up(&self.conn, None).await.map_err(|e| StoreError {
            store: "database",
            target: "migrations".into(),
            reason: e.to_string(),
        })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.conn.ping().await.map_err(|e| e.to_string())
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// For `sqlite://path/to/file.db?…`, makes sure `path/to` exists.
fn create_sqlite_dir(url: &str) -> Result<(), String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create directory {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}
