//! Versioned documents: the cluster-wide configuration services store (dedup policies, and the
//! shape router rules and aggregation jobs share). One table, `loom_documents`, keyed by
//! (kind, id): each write bumps the document's `version` and takes the kind's next `revision`
//! (unique per kind, so two nodes writing at once collide and one retries). Deletes leave a
//! tombstone, so a kind's revision never goes backwards and every node can tell, by comparing
//! one number, whether its copy is current.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, integer, string, text};

/// Creates `loom_documents`; the node applies it before every service's own migrations.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m000_documents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("loom_documents")
                .if_not_exists()
                .col(string("kind"))
                .col(string("id"))
                .col(integer("version"))
                .col(big_integer("revision"))
                .col(text("body"))
                .col(boolean("deleted"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("kind").col("id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("loom_documents_revision")
                .table("loom_documents")
                .col("kind")
                .col("revision")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("loom_documents").to_owned()).await
    }
}

/// Builds a statement with `?` placeholders rewritten to the backend's (`$n` on PostgreSQL),
/// so one SQL text serves SQLite and PostgreSQL.
pub fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// True for a unique-key violation on either backend.
pub fn is_unique_violation(e: &DbErr) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    s.contains("unique") || s.contains("duplicate")
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One write of a versioned document: the next `version` and `revision`, and the version the
/// writer read (0: none), which the write compares against.
pub struct VersionedRow<'a> {
    pub id: &'a str,
    pub version: i32,
    pub revision: i64,
    pub read: i32,
    /// `None` writes the tombstone.
    pub body: Option<&'a str>,
}

/// The compare-and-set upsert every versioned table shares (`loom_documents`, and the services'
/// own tables with the same columns: `id, version, revision, body, deleted, updated_ms`, plus
/// `kind` when `kind` is given). `Ok(false)`: another writer changed the row since it was read;
/// a unique violation: another writer took the revision. Both mean re-read and retry.
pub async fn write_versioned(
    db: &DatabaseConnection,
    table: &str,
    kind: Option<&str>,
    row: VersionedRow<'_>,
) -> Result<bool, DbErr> {
    let (kind_col, kind_val, conflict) = match kind {
        Some(_) => ("kind, ", "?, ", "kind, id"),
        None => ("", "", "id"),
    };
    let sql = format!(
        "INSERT INTO {table} ({kind_col}id, version, revision, body, deleted, updated_ms) \
         VALUES ({kind_val}?, ?, ?, ?, ?, ?) ON CONFLICT ({conflict}) DO UPDATE SET version = excluded.version, \
         revision = excluded.revision, body = excluded.body, deleted = excluded.deleted, \
         updated_ms = excluded.updated_ms WHERE {table}.version = ?"
    );
    let mut values: Vec<Value> = kind.map(|k| vec![k.into()]).unwrap_or_default();
    values.extend([
        row.id.into(),
        row.version.into(),
        row.revision.into(),
        row.body.unwrap_or("").into(),
        row.body.is_none().into(),
        now_ms().into(),
        row.read.into(),
    ]);
    let done = db.execute_raw(stmt(db.get_database_backend(), &sql, values)).await?;
    Ok(done.rows_affected() == 1)
}

/// One stored document (or tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub version: i32,
    pub revision: i64,
    pub body: String,
    pub deleted: bool,
    pub updated_ms: i64,
}

/// The documents of one kind (`"dedup.policy"`, …).
#[derive(Clone)]
pub struct Documents {
    pub db: DatabaseConnection,
    pub kind: &'static str,
}

impl Documents {
    pub fn new(db: DatabaseConnection, kind: &'static str) -> Documents {
        Documents { db, kind }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The kind's newest revision (0 before the first write).
    pub async fn revision(&self) -> Result<i64, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT MAX(revision) AS r FROM loom_documents WHERE kind = ?",
                vec![self.kind.into()],
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "r").ok().flatten()).unwrap_or(0))
    }

    /// Every document of the kind, tombstones included, by id.
    pub async fn all(&self) -> Result<Vec<Document>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(
                self.backend(),
                "SELECT id, version, revision, body, deleted, updated_ms FROM loom_documents WHERE kind = ? ORDER BY id",
                vec![self.kind.into()],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Document {
                    id: r.try_get("", "id")?,
                    version: r.try_get("", "version")?,
                    revision: r.try_get("", "revision")?,
                    body: r.try_get("", "body")?,
                    deleted: r.try_get("", "deleted")?,
                    updated_ms: r.try_get("", "updated_ms")?,
                })
            })
            .collect()
    }

    async fn version_of(&self, id: &str) -> Result<Option<i32>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT version FROM loom_documents WHERE kind = ? AND id = ?",
                vec![self.kind.into(), id.into()],
            ))
            .await?;
        row.map(|r| r.try_get("", "version")).transpose()
    }

    /// Writes a document (`None`: its tombstone) with the next version and revision. The write
    /// is a compare-and-set on the version it read: a writer on another node that got there
    /// first (the same id, or the same revision of the kind) makes this one re-read and retry,
    /// so racing writes queue up as successive versions and none is lost. Returns (version,
    /// revision).
    pub async fn put(&self, id: &str, body: Option<&str>) -> Result<(i32, i64), DbErr> {
        for _ in 0..16 {
            let revision = self.revision().await? + 1;
            let read = self.version_of(id).await?.unwrap_or(0);
            let version = read + 1;
            let row = VersionedRow { id, version, revision, read, body };
            match write_versioned(&self.db, "loom_documents", Some(self.kind), row).await {
                Ok(true) => return Ok((version, revision)),
                Ok(false) => continue,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbErr::Custom(format!("could not allocate a {} revision after 16 attempts", self.kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let cases = [
            (DbBackend::Sqlite, "a = ? AND b = ?", "a = ? AND b = ?"),
            (DbBackend::Postgres, "a = ? AND b = ?", "a = $1 AND b = $2"),
            (DbBackend::Postgres, "no params", "no params"),
        ];
        for (backend, sql, want) in cases {
            assert_eq!(stmt(backend, sql, vec![]).sql, want);
        }
    }

    #[tokio::test]
    async fn versions_and_revisions_grow_and_tombstones_stay() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        Migration.up(&SchemaManager::new(&db)).await.unwrap();
        let a = Documents::new(db.clone(), "a");
        let b = Documents::new(db, "b");
        assert_eq!(a.revision().await.unwrap(), 0);
        assert_eq!(a.put("x", Some("1")).await.unwrap(), (1, 1));
        assert_eq!(a.put("x", Some("2")).await.unwrap(), (2, 2));
        assert_eq!(b.put("x", Some("other")).await.unwrap(), (1, 1));
        assert_eq!(a.put("x", None).await.unwrap(), (3, 3));
        let all = a.all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].deleted);
        assert_eq!((all[0].version, all[0].revision), (3, 3));
        assert_eq!(b.all().await.unwrap()[0].body, "other");
    }
}
