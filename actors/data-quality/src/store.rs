//! Durable quality state. `dq_windows`: one row per (monitor, part, group, window start) with
//! the window's profile — `part` is `rest@<node>` for REST ingest (one writer: that node)
//! or `topic/partition` in stream mode (one writer: the partition's owner), so parts never
//! contend and a report merges every part's row of a window. `dq_parts`: per (monitor, part)
//! the freshness state (devices' last event times) and the next source offset, written in the
//! same transaction as the windows a batch touched: a batch counts once or not at all.
//! `dq_alerts`: per monitor its alert state (`alerts.rs`) with a revision, written as a
//! compare-and-set on the revision, so two nodes evaluating at once never both open the same
//! condition.

use loom_storage::documents::{now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionTrait};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, binary, string};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_data_quality"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("dq_windows")
                .if_not_exists()
                .col(string("monitor"))
                .col(string("part"))
                .col(string("grp"))
                .col(big_integer("window_start"))
                .col(binary("profile"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("monitor").col("part").col("grp").col("window_start"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("dq_windows_by_time")
                .table("dq_windows")
                .if_not_exists()
                .col("monitor")
                .col("window_start")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("dq_parts")
                .if_not_exists()
                .col(string("monitor"))
                .col(string("part"))
                .col(big_integer("next_offset"))
                .col(binary("state"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("monitor").col("part"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("dq_windows").to_owned()).await?;
        m.drop_table(Table::drop().table("dq_parts").to_owned()).await
    }
}

/// The alert state table (added after the first release, hence its own migration).
pub struct AlertsMigration;

impl MigrationName for AlertsMigration {
    fn name(&self) -> &str {
        "m002_data_quality_alerts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AlertsMigration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("dq_alerts")
                .if_not_exists()
                .col(string("monitor").primary_key())
                .col(big_integer("revision"))
                .col(binary("state"))
                .col(big_integer("updated_ms"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("dq_alerts").to_owned()).await
    }
}

/// A stored window row: (group, window start, profile bytes).
pub type Row = (String, i64, Vec<u8>);

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

/// Rows a report reads at most.
pub const MAX_ROWS: u64 = 50_000;

impl Store {
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The part's (next offset, state), if saved.
    pub async fn part(&self, monitor: &str, part: &str) -> Result<Option<(i64, Vec<u8>)>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT next_offset, state FROM dq_parts WHERE monitor = ? AND part = ?",
                vec![monitor.into(), part.into()],
            ))
            .await?;
        row.map(|r| Ok((r.try_get("", "next_offset")?, r.try_get("", "state")?))).transpose()
    }

    /// Every part's freshness state of a monitor.
    pub async fn part_states(&self, monitor: &str) -> Result<Vec<Vec<u8>>, DbErr> {
        let rows = self
            .db
            .query_all_raw(stmt(self.backend(), "SELECT state FROM dq_parts WHERE monitor = ?", vec![monitor.into()]))
            .await?;
        rows.into_iter().map(|r| r.try_get("", "state")).collect()
    }

    /// Merges a batch into its windows: `merge(stored, batch)` gives each row's new bytes; all
    /// rows and the part's state are written in one transaction (REST parts: one writer).
    pub async fn apply(
        &self,
        monitor: &str,
        part: &str,
        windows: Vec<(String, i64, Vec<u8>)>,
        merge: impl Fn(Option<&[u8]>, &[u8]) -> Vec<u8>,
        next_offset: i64,
        state: Vec<u8>,
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        let now = now_ms();
        txn.execute_raw(stmt(
            self.backend(),
            "INSERT INTO dq_parts (monitor, part, next_offset, state, updated_ms) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (monitor, part) DO UPDATE SET next_offset = excluded.next_offset, state = excluded.state, \
             updated_ms = excluded.updated_ms",
            vec![monitor.into(), part.into(), next_offset.into(), state.into(), now.into()],
        ))
        .await?;
        self.merge_windows(&txn, monitor, part, windows, merge).await?;
        txn.commit().await
    }

    /// [`Store::apply`] for a stream part, conditional on its saved `next_offset` still being
    /// `expected` (`None`: not saved yet). The part's row is written first, so on PostgreSQL it
    /// is locked for the transaction and a concurrent writer waits, then finds it changed.
    /// `Ok(false)`: the condition failed and nothing was written.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_cas(
        &self,
        monitor: &str,
        part: &str,
        windows: Vec<(String, i64, Vec<u8>)>,
        merge: impl Fn(Option<&[u8]>, &[u8]) -> Vec<u8>,
        expected: Option<i64>,
        next_offset: i64,
        state: Vec<u8>,
    ) -> Result<bool, DbErr> {
        let b = self.backend();
        let txn = self.db.begin().await?;
        let now = now_ms();
        let written = match expected {
            Some(old) => txn.execute_raw(stmt(
                b,
                "UPDATE dq_parts SET next_offset = ?, state = ?, updated_ms = ? \
                 WHERE monitor = ? AND part = ? AND next_offset = ?",
                vec![next_offset.into(), state.into(), now.into(), monitor.into(), part.into(), old.into()],
            )),
            None => txn.execute_raw(stmt(
                b,
                "INSERT INTO dq_parts (monitor, part, next_offset, state, updated_ms) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (monitor, part) DO NOTHING",
                vec![monitor.into(), part.into(), next_offset.into(), state.into(), now.into()],
            )),
        }
        .await?
        .rows_affected();
        if written != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        self.merge_windows(&txn, monitor, part, windows, merge).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn merge_windows(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        monitor: &str,
        part: &str,
        windows: Vec<(String, i64, Vec<u8>)>,
        merge: impl Fn(Option<&[u8]>, &[u8]) -> Vec<u8>,
    ) -> Result<(), DbErr> {
        let b = self.backend();
        let now = now_ms();
        for (grp, start, batch) in windows {
            let old = txn
                .query_one_raw(stmt(
                    b,
                    "SELECT profile FROM dq_windows WHERE monitor = ? AND part = ? AND grp = ? AND window_start = ?",
                    vec![monitor.into(), part.into(), grp.clone().into(), start.into()],
                ))
                .await?
                .map(|r| r.try_get::<Vec<u8>>("", "profile"))
                .transpose()?;
            let bytes = merge(old.as_deref(), &batch);
            txn.execute_raw(stmt(
                b,
                "INSERT INTO dq_windows (monitor, part, grp, window_start, profile, updated_ms) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (monitor, part, grp, window_start) DO UPDATE SET profile = excluded.profile, \
                 updated_ms = excluded.updated_ms",
                vec![monitor.into(), part.into(), grp.into(), start.into(), bytes.into(), now.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// Window rows of every part with start in [from, to), oldest first (at most [`MAX_ROWS`]).
    pub async fn windows(&self, monitor: &str, from: i64, to: i64) -> Result<Vec<Row>, DbErr> {
        let sql = format!(
            "SELECT grp, window_start, profile FROM dq_windows WHERE monitor = ? AND window_start >= ? \
             AND window_start < ? ORDER BY window_start, grp LIMIT {MAX_ROWS}"
        );
        let rows =
            self.db.query_all_raw(stmt(self.backend(), &sql, vec![monitor.into(), from.into(), to.into()])).await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("", "grp")?, r.try_get("", "window_start")?, r.try_get("", "profile")?)))
            .collect()
    }

    /// Window starts (any group, any part) written after `since_ms`, oldest first, each with
    /// its newest write time (at most `limit`): what a live feed sends next.
    pub async fn changed_since(&self, monitor: &str, since_ms: i64, limit: u32) -> Result<Vec<(i64, i64)>, DbErr> {
        let sql = format!(
            "SELECT window_start, MAX(updated_ms) AS updated FROM dq_windows WHERE monitor = ? AND updated_ms > ? \
             GROUP BY window_start ORDER BY window_start LIMIT {limit}"
        );
        let rows = self.db.query_all_raw(stmt(self.backend(), &sql, vec![monitor.into(), since_ms.into()])).await?;
        rows.into_iter().map(|r| Ok((r.try_get("", "window_start")?, r.try_get("", "updated")?))).collect()
    }

    /// The newest window start of a monitor, if any.
    pub async fn latest(&self, monitor: &str) -> Result<Option<i64>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT MAX(window_start) AS latest FROM dq_windows WHERE monitor = ?",
                vec![monitor.into()],
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "latest").ok().flatten()))
    }

    /// The newest write of any window or part of a monitor (unix ms), if any.
    pub async fn last_write(&self, monitor: &str) -> Result<Option<i64>, DbErr> {
        let mut newest = None;
        for table in ["dq_windows", "dq_parts"] {
            let sql = format!("SELECT MAX(updated_ms) AS newest FROM {table} WHERE monitor = ?");
            let row = self.db.query_one_raw(stmt(self.backend(), &sql, vec![monitor.into()])).await?;
            let t = row.and_then(|r| r.try_get::<Option<i64>>("", "newest").ok().flatten());
            newest = Ord::max(newest, t);
        }
        Ok(newest)
    }

    /// A monitor's alert state and its revision, if saved.
    pub async fn alerts(&self, monitor: &str) -> Result<Option<(i64, Vec<u8>)>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT revision, state FROM dq_alerts WHERE monitor = ?",
                vec![monitor.into()],
            ))
            .await?;
        row.map(|r| Ok((r.try_get("", "revision")?, r.try_get("", "state")?))).transpose()
    }

    /// Saves an alert state if its revision is still `expected` (`None`: never saved); the
    /// new revision is one more. `Ok(false)`: another writer came first, nothing was written.
    pub async fn save_alerts(&self, monitor: &str, expected: Option<i64>, state: Vec<u8>) -> Result<bool, DbErr> {
        let now = now_ms();
        let written = match expected {
            Some(rev) => self.db.execute_raw(stmt(
                self.backend(),
                "UPDATE dq_alerts SET revision = ?, state = ?, updated_ms = ? WHERE monitor = ? AND revision = ?",
                vec![(rev + 1).into(), state.into(), now.into(), monitor.into(), rev.into()],
            )),
            None => self.db.execute_raw(stmt(
                self.backend(),
                "INSERT INTO dq_alerts (monitor, revision, state, updated_ms) VALUES (?, 1, ?, ?) \
                 ON CONFLICT (monitor) DO NOTHING",
                vec![monitor.into(), state.into(), now.into()],
            )),
        }
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    /// Forgets a monitor's windows, parts and alert state (the monitor was deleted).
    pub async fn delete(&self, monitor: &str) -> Result<(), DbErr> {
        for table in ["dq_windows", "dq_parts", "dq_alerts"] {
            let sql = format!("DELETE FROM {table} WHERE monitor = ?");
            self.db.execute_raw(stmt(self.backend(), &sql, vec![monitor.into()])).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;
    use sea_orm_migration::SchemaManager;

    use super::*;

    #[tokio::test]
    async fn a_batch_merges_into_its_rows_and_the_part_in_one_go() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migration.up(&SchemaManager::new(&db)).await.unwrap();
        AlertsMigration.up(&SchemaManager::new(&db)).await.unwrap();
        let store = Store { db };
        let concat = |old: Option<&[u8]>, new: &[u8]| [old.unwrap_or_default(), new].concat();
        let w = vec![("".to_owned(), 0, vec![1u8]), ("g".to_owned(), 600, vec![2u8])];
        store.apply("m", "rest", w.clone(), concat, -1, vec![9]).await.unwrap();
        store.apply("m", "rest", w, concat, 5, vec![8]).await.unwrap();
        store.apply("m", "t/0", vec![("".to_owned(), 0, vec![3u8])], concat, 7, vec![]).await.unwrap();
        let rows = store.windows("m", 0, 1000).await.unwrap();
        assert_eq!(rows, vec![("".into(), 0, vec![1, 1]), ("".into(), 0, vec![3]), ("g".into(), 600, vec![2, 2])]);
        assert_eq!(store.part("m", "rest").await.unwrap(), Some((5, vec![8])));
        assert_eq!(store.latest("m").await.unwrap(), Some(600));
        // stream parts: compare-and-set on next_offset
        let one = || vec![("".to_owned(), 0, vec![4u8])];
        assert!(store.apply_cas("m", "t/1", one(), concat, None, 10, vec![]).await.unwrap());
        assert!(!store.apply_cas("m", "t/1", one(), concat, None, 20, vec![]).await.unwrap());
        assert!(!store.apply_cas("m", "t/1", one(), concat, Some(5), 20, vec![]).await.unwrap());
        assert!(store.apply_cas("m", "t/1", one(), concat, Some(10), 20, vec![1]).await.unwrap());
        assert_eq!(store.part("m", "t/1").await.unwrap(), Some((20, vec![1])));
        let t1: Vec<Row> = store.windows("m", 0, 1).await.unwrap();
        assert_eq!(t1.iter().filter(|r| r.2 == vec![4, 4]).count(), 1, "two applied, two refused: {t1:?}");
        let changed = store.changed_since("m", 0, 10).await.unwrap();
        assert_eq!(changed.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 600]);
        let newest = changed.iter().map(|c| c.1).max().unwrap();
        assert!(store.changed_since("m", newest, 10).await.unwrap().is_empty());
        assert!(store.last_write("m").await.unwrap().unwrap() >= newest);
        assert_eq!(store.last_write("none").await.unwrap(), None);
        // alert state: compare-and-set on the revision
        assert_eq!(store.alerts("m").await.unwrap(), None);
        assert!(store.save_alerts("m", None, vec![1]).await.unwrap());
        assert!(!store.save_alerts("m", None, vec![2]).await.unwrap());
        assert!(store.save_alerts("m", Some(1), vec![3]).await.unwrap());
        assert!(!store.save_alerts("m", Some(1), vec![4]).await.unwrap());
        assert_eq!(store.alerts("m").await.unwrap(), Some((2, vec![3])));
        store.delete("m").await.unwrap();
        assert_eq!(store.alerts("m").await.unwrap(), None);
        assert!(store.windows("m", 0, 1000).await.unwrap().is_empty());
        assert_eq!(store.latest("m").await.unwrap(), None);
    }
}
