//! Durable aggregator state through sea-orm, in portable SQL (SQLite on the embedded default,
//! PostgreSQL in clusters, where every node shares it):
//!
//! - `ts_jobs`: one row per job id with its version, and a global `revision` that grows on
//!   every write (tombstones for deletes), which every node polls and reloads on change.
//! - `ts_windows`: the results, one row per (job, key, window start), upserted only by a newer
//!   version (a replay or retry never goes backwards or double-counts).
//! - `ts_checkpoints`: per (job, partition) the engine snapshot, the next source offset to
//!   read, and a sequence number. Written in the same transaction as the results it produced,
//!   conditional on the sequence read, so two nodes briefly believing they own a partition
//!   cannot both commit.
//! - `ts_batch_parts`: partial aggregate states per (job, batch id, key, window) of the batch
//!   API; a repeated batch replaces its own parts, so batches are idempotent.

pub use loom_storage::documents::stmt;
use loom_storage::documents::{VersionedRow, is_unique_violation, write_versioned};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait, Value};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, integer, string, text};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_timeseries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("ts_jobs")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(integer("version"))
                .col(big_integer("revision").unique_key())
                .col(text("body"))
                .col(boolean("deleted"))
                .col(big_integer("updated_ms"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("ts_windows")
                .if_not_exists()
                .col(string("job"))
                .col(string("wkey"))
                .col(big_integer("window_start"))
                .col(big_integer("window_end"))
                .col(text("vals"))
                .col(big_integer("cnt"))
                .col(integer("version"))
                .col(boolean("is_final"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("job").col("wkey").col("window_start"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ts_windows_by_time")
                .table("ts_windows")
                .col("job")
                .col("window_start")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("ts_checkpoints")
                .if_not_exists()
                .col(string("job"))
                .col(string("part"))
                .col(big_integer("seq"))
                .col(integer("job_version"))
                .col(big_integer("next_offset"))
                .col(text("state"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("job").col("part"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("ts_batch_parts")
                .if_not_exists()
                .col(string("job"))
                .col(string("batch"))
                .col(string("wkey"))
                .col(big_integer("window_start"))
                .col(big_integer("window_end"))
                .col(big_integer("cnt"))
                .col(text("states"))
                .primary_key(Index::create().col("job").col("batch").col("wkey").col("window_start"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["ts_batch_parts", "ts_checkpoints", "ts_windows", "ts_jobs"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored job row.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub version: i32,
    pub revision: i64,
    pub body: String,
    pub deleted: bool,
    pub updated_ms: i64,
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub job: String,
    pub key: String,
    pub start: i64,
    pub end: i64,
    pub values: String,
    pub count: i64,
    pub version: i32,
    pub is_final: bool,
}

/// Which result rows `Store::windows` returns.
#[derive(Debug, Clone, Copy)]
pub struct WindowQuery<'a> {
    pub key: Option<&'a str>,
    pub from: i64,
    pub to: i64,
    pub final_only: bool,
    pub limit: u64,
    pub newest_first: bool,
}

/// A partition's checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub seq: i64,
    pub job_version: i32,
    pub next_offset: i64,
    pub state: String,
}

/// A stored batch part.
#[derive(Debug, Clone)]
pub struct PartRow {
    pub key: String,
    pub start: i64,
    pub end: i64,
    pub count: i64,
    pub states: String,
}

/// What `save_checkpoint` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Committed {
        seq: i64,
    },
    /// Another writer moved the checkpoint meanwhile: reload and redo.
    Stale,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

/// Rows per multi-row statement (9 parameters each; well under SQLite's and PostgreSQL's limits).
pub const ROWS_PER_STATEMENT: usize = 500;

/// `(?, ?, …), (?, ?, …)`: `rows` tuples of `width` placeholders (optionally wrapped per column).
pub fn placeholders(rows: usize, columns: &[&str]) -> String {
    let tuple = format!("({})", columns.join(", "));
    vec![tuple; rows].join(", ")
}

const UPSERT_WINDOW_HEAD: &str =
    "INSERT INTO ts_windows (job, wkey, window_start, window_end, vals, cnt, version, is_final, updated_ms) VALUES ";
const UPSERT_WINDOW_TAIL: &str = " ON CONFLICT (job, wkey, window_start) DO UPDATE SET \
     window_end = excluded.window_end, vals = excluded.vals, cnt = excluded.cnt, version = excluded.version, \
     is_final = excluded.is_final, updated_ms = excluded.updated_ms \
     WHERE ts_windows.version < excluded.version";

impl Store {
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub async fn revision(&self) -> Result<i64, DbErr> {
        let row = self.db.query_one_raw(stmt(self.backend(), "SELECT MAX(revision) AS r FROM ts_jobs", vec![])).await?;
        Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "r").ok().flatten()).unwrap_or(0))
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(
                self.backend(),
                "SELECT id, version, revision, body, deleted, updated_ms FROM ts_jobs ORDER BY id",
                vec![],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(JobRow {
                    version: r.try_get("", "version")?,
                    revision: r.try_get("", "revision")?,
                    body: r.try_get("", "body")?,
                    deleted: r.try_get("", "deleted")?,
                    updated_ms: r.try_get("", "updated_ms")?,
                })
            })
            .collect()
    }

    async fn job_version(&self, id: &str) -> Result<Option<i32>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(self.backend(), "SELECT version FROM ts_jobs WHERE id = ?", vec![id.into()]))
            .await?;
        row.map(|r| r.try_get("", "version")).transpose()
    }

    /// Writes a job (or its tombstone) with the next revision and version; a writer on another
    /// node that got there first (same job or same revision) makes this one re-read and retry. Returns (version, revision).
    pub async fn put_job(&self, id: &str, body: Option<&str>) -> Result<(i32, i64), DbErr> {
        for _ in 0..16 {
            let revision = self.revision().await? + 1;
            let read = self.job_version(id).await?.unwrap_or(0);
            let row = VersionedRow { id, version: read + 1, revision, read, body };
            match write_versioned(&self.db, "ts_jobs", None, row).await {
                Ok(true) => return Ok((read + 1, revision)),
                Ok(false) => continue,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbErr::Custom("could not allocate a job revision after 16 attempts".into()))
    }

    /// Removes a job's results, checkpoints and batch parts (after its tombstone is written).
    pub async fn purge(&self, job: &str) -> Result<(), DbErr> {
        for t in ["ts_windows", "ts_checkpoints", "ts_batch_parts"] {
            self.db
                .execute_raw(stmt(self.backend(), &format!("DELETE FROM {t} WHERE job = ?"), vec![job.into()]))
                .await?;
        }
        Ok(())
    }

    pub async fn checkpoint(&self, job: &str, part: &str) -> Result<Option<Checkpoint>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT seq, job_version, next_offset, state FROM ts_checkpoints WHERE job = ? AND part = ?",
                vec![job.into(), part.into()],
            ))
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                seq: r.try_get("", "seq")?,
                job_version: r.try_get("", "job_version")?,
                next_offset: r.try_get("", "next_offset")?,
                state: r.try_get("", "state")?,
            })
        })
        .transpose()
    }

    pub async fn checkpoints(&self, job: &str) -> Result<Vec<(String, i64, i64)>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(
                self.backend(),
                "SELECT part, seq, next_offset FROM ts_checkpoints WHERE job = ? ORDER BY part",
                vec![job.into()],
            ))
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("", "part")?, r.try_get("", "seq")?, r.try_get("", "next_offset")?)))
            .collect()
    }

    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db.begin().await
    }

    /// Upserts result rows inside `txn` (only newer versions replace older ones), many rows per
    /// statement. Rows of one (key, window) keep only the newest, as one statement cannot touch a
    /// row twice.
    pub async fn upsert_windows(&self, txn: &DatabaseTransaction, rows: &[WindowRow]) -> Result<(), DbErr> {
        let now = now_ms();
        let rows = newest(rows, |w| (&w.key, w.start), |w| w.version);
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 9);
            for w in chunk {
                values.extend([
                    w.job.clone().into(),
                    w.key.clone().into(),
                    w.start.into(),
                    w.end.into(),
                    w.values.clone().into(),
                    w.count.into(),
                    w.version.into(),
                    w.is_final.into(),
                    now.into(),
                ]);
            }
            let sql = format!("{UPSERT_WINDOW_HEAD}{}{UPSERT_WINDOW_TAIL}", placeholders(chunk.len(), &["?"; 9]));
            txn.execute_raw(stmt(self.backend(), &sql, values)).await?;
        }
        Ok(())
    }

    /// Saves a checkpoint inside `txn` if nobody moved it since `expected_seq` (0: none yet).
    pub async fn save_checkpoint(
        &self,
        txn: &DatabaseTransaction,
        job: &str,
        part: &str,
        expected_seq: i64,
        cp: &Checkpoint,
    ) -> Result<Saved, DbErr> {
        let seq = expected_seq + 1;
        if expected_seq == 0 {
            let r = txn
                .execute_raw(stmt(
                    self.backend(),
                    "INSERT INTO ts_checkpoints (job, part, seq, job_version, next_offset, state, updated_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, part) DO NOTHING",
                    vec![
                        job.into(),
                        part.into(),
                        seq.into(),
                        cp.job_version.into(),
                        cp.next_offset.into(),
                        cp.state.clone().into(),
                        now_ms().into(),
                    ],
                ))
                .await?;
            return Ok(if r.rows_affected() == 1 { Saved::Committed { seq } } else { Saved::Stale });
        }
        let r = txn
            .execute_raw(stmt(
                self.backend(),
                "UPDATE ts_checkpoints SET seq = ?, job_version = ?, next_offset = ?, state = ?, updated_ms = ? \
                 WHERE job = ? AND part = ? AND seq = ?",
                vec![
                    seq.into(),
                    cp.job_version.into(),
                    cp.next_offset.into(),
                    cp.state.clone().into(),
                    now_ms().into(),
                    job.into(),
                    part.into(),
                    expected_seq.into(),
                ],
            ))
            .await?;
        Ok(if r.rows_affected() == 1 { Saved::Committed { seq } } else { Saved::Stale })
    }

    /// Result rows of a job, by time, optionally of one key and final only.
    pub async fn windows(&self, job: &str, q: &WindowQuery<'_>) -> Result<Vec<WindowRow>, DbErr> {
        let (key, from, to, final_only, limit, newest_first) =
            (q.key, q.from, q.to, q.final_only, q.limit, q.newest_first);
        let mut sql = String::from(
            "SELECT job, wkey, window_start, window_end, vals, cnt, version, is_final FROM ts_windows \
             WHERE job = ? AND window_start >= ? AND window_start < ?",
        );
        let mut values: Vec<Value> = vec![job.into(), from.into(), to.into()];
        if let Some(k) = key {
            sql.push_str(" AND wkey = ?");
            values.push(k.into());
        }
        if final_only {
            sql.push_str(" AND is_final = ?");
            values.push(true.into());
        }
        let order = if newest_first { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY window_start {order}, wkey LIMIT {limit}"));
        let rows = self.db.query_all_raw(stmt(self.backend(), &sql, values)).await?;
        rows.into_iter().map(window_row).collect()
    }

    /// Replaces a batch's parts inside `txn`.
    pub async fn replace_parts(
        &self,
        txn: &DatabaseTransaction,
        job: &str,
        batch: &str,
        parts: &[PartRow],
    ) -> Result<(), DbErr> {
        txn.execute_raw(stmt(
            self.backend(),
            "DELETE FROM ts_batch_parts WHERE job = ? AND batch = ?",
            vec![job.into(), batch.into()],
        ))
        .await?;
        for p in parts {
            txn.execute_raw(stmt(
                self.backend(),
                "INSERT INTO ts_batch_parts (job, batch, wkey, window_start, window_end, cnt, states) VALUES (?, ?, ?, ?, ?, ?, ?)",
                vec![
                    job.into(),
                    batch.into(),
                    p.key.clone().into(),
                    p.start.into(),
                    p.end.into(),
                    p.count.into(),
                    p.states.clone().into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }

    /// Every batch's part of one (key, window), inside `txn`.
    pub async fn parts_of(
        &self,
        txn: &DatabaseTransaction,
        job: &str,
        key: &str,
        start: i64,
    ) -> Result<Vec<PartRow>, DbErr> {
        let rows = txn
            .query_all_raw(stmt(
                self.backend(),
                "SELECT wkey, window_start, window_end, cnt, states FROM ts_batch_parts WHERE job = ? AND wkey = ? AND window_start = ?",
                vec![job.into(), key.into(), start.into()],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PartRow {
                    key: r.try_get("", "wkey")?,
                    start: r.try_get("", "window_start")?,
                    end: r.try_get("", "window_end")?,
                    count: r.try_get("", "cnt")?,
                    states: r.try_get("", "states")?,
                })
            })
            .collect()
    }
}

/// Of rows with the same identity, the one with the highest version (first seen on a tie), in
/// first-seen order.
pub fn newest<'a, T, K: Eq + std::hash::Hash>(
    rows: &'a [T],
    id: impl Fn(&'a T) -> K,
    version: impl Fn(&T) -> i32,
) -> Vec<&'a T> {
    let mut at: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut out: Vec<&T> = Vec::new();
    for r in rows {
        match at.get(&id(r)) {
            Some(&i) if version(out[i]) < version(r) => out[i] = r,
            Some(_) => {}
            None => {
                at.insert(id(r), out.len());
                out.push(r);
            }
        }
    }
    out
}

fn window_row(r: sea_orm::QueryResult) -> Result<WindowRow, DbErr> {
    Ok(WindowRow {
        job: r.try_get("", "job")?,
        key: r.try_get("", "wkey")?,
        start: r.try_get("", "window_start")?,
        end: r.try_get("", "window_end")?,
        values: r.try_get("", "vals")?,
        count: r.try_get("", "cnt")?,
        version: r.try_get("", "version")?,
        is_final: r.try_get("", "is_final")?,
    })
}

impl Store {
    /// The (key, window start) pairs a stored batch touched, inside `txn`.
    pub async fn batch_windows(
        &self,
        txn: &DatabaseTransaction,
        job: &str,
        batch: &str,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        let rows = txn
            .query_all_raw(stmt(
                self.backend(),
                "SELECT wkey, window_start FROM ts_batch_parts WHERE job = ? AND batch = ?",
                vec![job.into(), batch.into()],
            ))
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get("", "wkey")?, r.try_get("", "window_start")?))).collect()
    }

    /// A window row's version and (values, count), inside `txn` (0 and `None` when absent).
    pub async fn window_version(
        &self,
        txn: &DatabaseTransaction,
        job: &str,
        key: &str,
        start: i64,
    ) -> Result<(i32, Option<(String, i64)>), DbErr> {
        let row = txn
            .query_one_raw(stmt(
                self.backend(),
                "SELECT version, vals, cnt FROM ts_windows WHERE job = ? AND wkey = ? AND window_start = ?",
                vec![job.into(), key.into(), start.into()],
            ))
            .await?;
        match row {
            None => Ok((0, None)),
            Some(r) => Ok((r.try_get("", "version")?, Some((r.try_get("", "vals")?, r.try_get("", "cnt")?)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_placeholder_numbering() {
        assert_eq!(placeholders(2, &["?", "CAST(? AS JSONB)"]), "(?, CAST(? AS JSONB)), (?, CAST(? AS JSONB))");
        let s = stmt(DbBackend::Postgres, "INSERT INTO t VALUES (?, ?), (?, ?)", vec![]);
        assert_eq!(s.sql, "INSERT INTO t VALUES ($1, $2), ($3, $4)");
        assert_eq!(stmt(DbBackend::Sqlite, "(?)", vec![]).sql, "(?)");
    }

    #[test]
    fn newest_keeps_one_row_per_identity() {
        let rows = [("a", 1), ("b", 1), ("a", 3), ("a", 2), ("c", 1), ("b", 1)];
        let got: Vec<(&str, i32)> = newest(&rows, |r| r.0, |r| r.1).into_iter().copied().collect();
        assert_eq!(got, vec![("a", 3), ("b", 1), ("c", 1)]);
    }
}
