//! Result sinks beyond the service's own `ts_windows`: the PostgreSQL table a job names (in
//! the node's database, written in the same transaction as the checkpoint, so a replay or a
//! retry never double-counts) and the Kafka records (results, late records, dead letters).
//!
//! The table is a TimescaleDB hypertable on `window_start` when the extension is installed
//! (detected when the table is created), otherwise a plain table partitioned by month on
//! `window_start`, whose partitions are created before rows land in them. One code path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, TimeZone, Utc};
use loom_kafka::producer::Outgoing;
use loom_kafka::{Producer, Record};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr};
use serde_json::Value;

use crate::error::TsError;
use crate::store::{Store, stmt};

/// How result tables are laid out in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Hypertable,
    MonthlyPartitions,
}

#[derive(Clone)]
pub struct PgSink {
    store: Store,
    layout: Arc<tokio::sync::OnceCell<Layout>>,
    /// (table, month start) partitions known to exist.
    partitions: Arc<Mutex<HashSet<(String, i64)>>>,
}

impl PgSink {
    /// The sink of a PostgreSQL database; `None` on any other.
    pub fn new(store: Store) -> Option<PgSink> {
        (store.backend() == DbBackend::Postgres).then(|| PgSink {
            store,
            layout: Arc::default(),
            partitions: Arc::default(),
        })
    }

    /// Hypertables when TimescaleDB is installed (asked once), monthly partitions otherwise.
    pub async fn layout(&self) -> Result<Layout, DbErr> {
        self.layout
            .get_or_try_init(|| async {
                let ext = self
                    .store
                    .db
                    .query_one_raw(stmt(
                        DbBackend::Postgres,
                        "SELECT 1 AS x FROM pg_extension WHERE extname = 'timescaledb'",
                        vec![],
                    ))
                    .await?;
                let layout = if ext.is_some() { Layout::Hypertable } else { Layout::MonthlyPartitions };
                tracing::info!(?layout, "postgres result tables");
                Ok(layout)
            })
            .await
            .copied()
    }

    /// Creates the job's table if it does not exist.
    pub async fn create(&self, table: &str) -> Result<(), TsError> {
        let columns = "job TEXT NOT NULL, key JSONB NOT NULL, key_text TEXT NOT NULL, \
             window_start TIMESTAMPTZ NOT NULL, window_end TIMESTAMPTZ NOT NULL, \
             \"values\" JSONB NOT NULL, count BIGINT NOT NULL, version INTEGER NOT NULL, \
             final BOOLEAN NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
             PRIMARY KEY (job, key_text, window_start)";
        let db = &self.store.db;
        match self.layout().await? {
            Layout::Hypertable => {
                db.execute_unprepared(&format!("CREATE TABLE IF NOT EXISTS {table} ({columns})")).await?;
                db.execute_unprepared(&format!(
                    "SELECT create_hypertable('{table}', 'window_start', if_not_exists => TRUE, migrate_data => TRUE)"
                ))
                .await?;
            }
            Layout::MonthlyPartitions => {
                db.execute_unprepared(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({columns}) PARTITION BY RANGE (window_start)"
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Upserts results in `txn` (a newer version replaces an older one, never the reverse).
    pub async fn write(&self, txn: &DatabaseTransaction, table: &str, rows: &[SinkRow]) -> Result<(), DbErr> {
        let rows = crate::store::newest(rows, |r| (&r.key_text, r.start), |r| r.version);
        let columns = [
            "?",
            "CAST(? AS JSONB)",
            "?",
            "to_timestamp(? / 1000.0)",
            "to_timestamp(? / 1000.0)",
            "CAST(? AS JSONB)",
            "?",
            "?",
            "?",
            "now()",
        ];
        for chunk in rows.chunks(crate::store::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO {table} (job, key, key_text, window_start, window_end, \"values\", count, version, final, updated_at) \
                 VALUES {} ON CONFLICT (job, key_text, window_start) DO UPDATE SET window_end = excluded.window_end, \
                 \"values\" = excluded.\"values\", count = excluded.count, version = excluded.version, final = excluded.final, \
                 updated_at = now() WHERE {table}.version < excluded.version",
                crate::store::placeholders(chunk.len(), &columns)
            );
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 9);
            for r in chunk {
                values.extend([
                    r.job.clone().into(),
                    r.key.to_string().into(),
                    r.key_text.clone().into(),
                    r.start.into(),
                    r.end.into(),
                    r.values.to_string().into(),
                    r.count.into(),
                    r.version.into(),
                    r.is_final.into(),
                ]);
            }
            txn.execute_raw(stmt(DbBackend::Postgres, &sql, values)).await?;
        }
        Ok(())
    }

    /// Creates the monthly partitions rows starting at `starts` need, each in its own statement
    /// (before the transaction that writes the rows: a rolled-back transaction must not leave
    /// this cache believing a partition exists). Concurrent creators on other nodes are fine.
    pub async fn ensure_partitions(&self, table: &str, starts: impl Iterator<Item = i64>) -> Result<(), DbErr> {
        if self.layout().await? != Layout::MonthlyPartitions {
            return Ok(());
        }
        let months: std::collections::BTreeSet<(i64, i64, String)> = starts.map(month_of).collect();
        for (from, to, name) in months {
            if self.partitions.lock().map(|p| p.contains(&(table.to_owned(), from))).unwrap_or(false) {
                continue;
            }
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {table}_{name} PARTITION OF {table} FOR VALUES FROM ('{}') TO ('{}')",
                loom_streams::time::rfc3339(from),
                loom_streams::time::rfc3339(to)
            );
            if let Err(e) = self.store.db.execute_unprepared(&ddl).await {
                // Another node may have created it at the same moment; check by retrying once.
                tracing::debug!(table, partition = %name, error = %e, "partition creation raced; retrying");
                self.store.db.execute_unprepared(&ddl).await?;
            }
            if let Ok(mut p) = self.partitions.lock() {
                p.insert((table.to_owned(), from));
            }
        }
        Ok(())
    }
}

/// The calendar month (UTC) holding `ts`: start, end (ms) and the partition suffix `p2026_01`.
pub fn month_of(ts: i64) -> (i64, i64, String) {
    let t = Utc.timestamp_millis_opt(ts).single().unwrap_or_default();
    let (y, m) = (t.year(), t.month());
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or_default();
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single().unwrap_or_default();
    (start.timestamp_millis(), end.timestamp_millis(), format!("p{y:04}_{m:02}"))
}

/// One result as a sink row.
#[derive(Debug, Clone)]
pub struct SinkRow {
    pub job: String,
    pub key: Value,
    pub key_text: String,
    pub start: i64,
    pub end: i64,
    pub values: Value,
    pub count: i64,
    pub version: i32,
    pub is_final: bool,
}

/// A record for Kafka, owned until it is enqueued.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Enqueues every record in order, then waits for all acknowledgements.
pub async fn produce_all(producer: &Producer, records: &[OutRecord]) -> Result<(), TsError> {
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let out = Outgoing {
            topic: &r.topic,
            key: r.key.as_deref(),
            payload: Some(&r.payload),
            headers: &r.headers,
            partition: None,
        };
        pending.push(producer.enqueue(out).map_err(|e| TsError::Kafka(e.to_string()))?);
    }
    for p in pending {
        p.acknowledged().await.map_err(|e| TsError::Kafka(e.to_string()))?;
    }
    Ok(())
}

/// A source record copied to the late topic or the dead-letter topic with Loom's headers.
pub fn forward(topic: &str, source: &Record, extra: Vec<(String, Vec<u8>)>) -> OutRecord {
    let mut headers = source.headers.clone();
    headers.extend(extra);
    headers.push(("loom.source.topic".into(), source.topic.clone().into_bytes()));
    headers.push(("loom.source.partition".into(), source.partition.to_string().into_bytes()));
    headers.push(("loom.source.offset".into(), source.offset.to_string().into_bytes()));
    OutRecord {
        topic: topic.to_owned(),
        key: source.key.clone(),
        payload: source.payload.clone().unwrap_or_default(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_for_partitions() {
        for (ts, start, name) in [
            (1_767_225_600_000, 1_767_225_600_000, "p2026_01"), // 2026-01-01
            (1_767_225_599_999, 1_764_547_200_000, "p2025_12"),
            (1_772_323_200_000 - 1, 1_769_904_000_000, "p2026_02"),
        ] {
            let (s, e, n) = month_of(ts);
            assert_eq!((s, n.as_str()), (start, name), "{ts}");
            assert!(e > ts && s <= ts);
        }
    }
}
