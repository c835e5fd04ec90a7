//! Durable dedup state: `dd_checkpoints`, one row per (policy, part) — `part` is `rest` for the
//! `/check` state, or `topic/partition` in stream mode — holding the engine snapshot, the next
//! source offset it has absorbed, the output positions it had reached (stream mode: where the
//! recovery scan starts), the policy version it was built under and a sequence number. A save is
//! conditional on the sequence it read, so two nodes briefly believing they own a part cannot
//! both write: the stale one is refused and reloads. Policies themselves are documents
//! (`loom_service::book`).

use loom_storage::documents::{now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, binary, integer, string, text};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_dedup"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("dd_checkpoints")
                .if_not_exists()
                .col(string("policy"))
                .col(string("part"))
                .col(big_integer("seq"))
                .col(integer("policy_version"))
                .col(big_integer("next_offset"))
                .col(binary("state"))
                .col(text("positions"))
                .col(big_integer("updated_ms"))
                .primary_key(Index::create().col("policy").col("part"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("dd_checkpoints").to_owned()).await
    }
}

/// One saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub seq: i64,
    pub policy_version: i32,
    pub next_offset: i64,
    pub state: Vec<u8>,
    /// Stream mode: JSON `{"topic/partition": next offset}` of the outputs at save time.
    pub positions: String,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

impl Store {
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub async fn load(&self, policy: &str, part: &str) -> Result<Option<Checkpoint>, DbErr> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT seq, policy_version, next_offset, state, positions FROM dd_checkpoints \
                 WHERE policy = ? AND part = ?",
                vec![policy.into(), part.into()],
            ))
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                seq: r.try_get("", "seq")?,
                policy_version: r.try_get("", "policy_version")?,
                next_offset: r.try_get("", "next_offset")?,
                state: r.try_get("", "state")?,
                positions: r.try_get("", "positions")?,
            })
        })
        .transpose()
    }

    /// Drops a part's saved state (a deleted policy's REST keys: an id created again starts
    /// empty). A copy still held in memory then fails its next conditional save and reloads.
    pub async fn delete(&self, policy: &str, part: &str) -> Result<(), DbErr> {
        let sql = "DELETE FROM dd_checkpoints WHERE policy = ? AND part = ?";
        self.db.execute_raw(stmt(self.backend(), sql, vec![policy.into(), part.into()])).await?;
        Ok(())
    }

    /// Saves `cp` if nobody moved the part since `cp.seq - 1` (0: none yet); false if stale.
    pub async fn save(&self, policy: &str, part: &str, cp: &Checkpoint) -> Result<bool, DbErr> {
        let expected = cp.seq - 1;
        let r = if expected == 0 {
            self.db
                .execute_raw(stmt(
                    self.backend(),
                    "INSERT INTO dd_checkpoints (policy, part, seq, policy_version, next_offset, state, positions, \
                     updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (policy, part) DO NOTHING",
                    vec![
                        policy.into(),
                        part.into(),
                        cp.seq.into(),
                        cp.policy_version.into(),
                        cp.next_offset.into(),
                        cp.state.clone().into(),
                        cp.positions.clone().into(),
                        now_ms().into(),
                    ],
                ))
                .await?
        } else {
            self.db
                .execute_raw(stmt(
                    self.backend(),
                    "UPDATE dd_checkpoints SET seq = ?, policy_version = ?, next_offset = ?, state = ?, \
                     positions = ?, updated_ms = ? WHERE policy = ? AND part = ? AND seq = ?",
                    vec![
                        cp.seq.into(),
                        cp.policy_version.into(),
                        cp.next_offset.into(),
                        cp.state.clone().into(),
                        cp.positions.clone().into(),
                        now_ms().into(),
                        policy.into(),
                        part.into(),
                        expected.into(),
                    ],
                ))
                .await?
        };
        Ok(r.rows_affected() == 1)
    }

    /// (part, seq, next_offset, bytes) of a policy's saved states.
    pub async fn parts(&self, policy: &str) -> Result<Vec<(String, i64, i64, i64)>, DbErr> {
        let sql = if self.backend() == DbBackend::Postgres {
            "SELECT part, seq, next_offset, octet_length(state)::bigint AS bytes FROM dd_checkpoints \
             WHERE policy = ? ORDER BY part"
        } else {
            "SELECT part, seq, next_offset, length(state) AS bytes FROM dd_checkpoints WHERE policy = ? ORDER BY part"
        };
        let rows = self.db.query_all_raw(stmt(self.backend(), sql, vec![policy.into()])).await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get("", "part")?,
                    r.try_get("", "seq")?,
                    r.try_get("", "next_offset")?,
                    r.try_get("", "bytes")?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;
    use sea_orm_migration::SchemaManager;

    use super::*;

    #[tokio::test]
    async fn saves_are_conditional_on_the_sequence_read() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migration.up(&SchemaManager::new(&db)).await.unwrap();
        let store = Store { db };
        assert_eq!(store.load("p", "rest").await.unwrap(), None);
        let mut cp =
            Checkpoint { seq: 1, policy_version: 1, next_offset: -1, state: vec![1, 2, 3], positions: "{}".into() };
        assert!(store.save("p", "rest", &cp).await.unwrap());
        assert!(!store.save("p", "rest", &cp).await.unwrap(), "a second first save is stale");
        cp.seq = 2;
        cp.state = vec![4];
        assert!(store.save("p", "rest", &cp).await.unwrap());
        assert!(!store.save("p", "rest", &cp).await.unwrap(), "the same sequence twice is stale");
        assert_eq!(store.load("p", "rest").await.unwrap(), Some(cp));
        assert_eq!(store.parts("p").await.unwrap(), vec![("rest".to_owned(), 2, -1, 1)]);
    }
}
