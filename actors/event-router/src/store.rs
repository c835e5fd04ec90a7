//! Durable router state through sea-orm: the rules (one row per rule id with its version, and a
//! global `revision` that grows on every write — the rule set's version, which every node polls
//! and reloads on change) and the replay jobs (spec, state, per-partition progress, counts,
//! owner node and heartbeat, so a job resumes after a restart). Deleted rules stay as tombstones
//! so revisions never go backwards.

use loom_storage::documents::{VersionedRow, is_unique_violation, write_versioned};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, integer, string, text, text_null};

pub mod rules {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "er_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i32,
        pub revision: i64,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub deleted: bool,
        pub updated_ms: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod replays {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "er_replays")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_type = "Text")]
        pub spec: String,
        pub state: String,
        #[sea_orm(column_type = "Text")]
        pub progress: String,
        pub node: String,
        pub heartbeat_ms: i64,
        pub created_ms: i64,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_event_router"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("er_rules")
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
                .table("er_replays")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(text("spec"))
                .col(string("state"))
                .col(text("progress"))
                .col(string("node"))
                .col(big_integer("heartbeat_ms"))
                .col(big_integer("created_ms"))
                .col(text_null("error"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("er_replays").to_owned()).await?;
        m.drop_table(Table::drop().table("er_rules").to_owned()).await
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

impl Store {
    pub async fn revision(&self) -> Result<i64, DbErr> {
        let max: Option<Option<i64>> = rules::Entity::find()
            .select_only()
            .column_as(rules::Column::Revision.max(), "max")
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(max.flatten().unwrap_or(0))
    }

    pub async fn all_rules(&self) -> Result<Vec<rules::Model>, DbErr> {
        rules::Entity::find().order_by_asc(rules::Column::Id).all(&self.db).await
    }

    pub async fn rule(&self, id: &str) -> Result<Option<rules::Model>, DbErr> {
        rules::Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    /// Writes a rule (or its tombstone) with the next revision and version. A writer on another
    /// node that got there first (same rule or same revision) makes this one re-read and retry. Returns (version, revision).
    pub async fn put_rule(&self, id: &str, body: Option<&str>) -> Result<(i32, i64), DbErr> {
        for _ in 0..16 {
            let revision = self.revision().await? + 1;
            let read = self.rule(id).await?.map_or(0, |r| r.version);
            let row = VersionedRow { id, version: read + 1, revision, read, body };
            match write_versioned(&self.db, "er_rules", None, row).await {
                Ok(true) => return Ok((read + 1, revision)),
                Ok(false) => continue,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbErr::Custom("could not allocate a rule revision after 16 attempts".into()))
    }

    pub async fn insert_replay(&self, row: replays::Model) -> Result<(), DbErr> {
        let active = replays::ActiveModel {
            id: Set(row.id),
            spec: Set(row.spec),
            state: Set(row.state),
            progress: Set(row.progress),
            node: Set(row.node),
            heartbeat_ms: Set(row.heartbeat_ms),
            created_ms: Set(row.created_ms),
            error: Set(row.error),
        };
        replays::Entity::insert(active).exec_without_returning(&self.db).await.map(|_| ())
    }

    pub async fn replay(&self, id: &str) -> Result<Option<replays::Model>, DbErr> {
        replays::Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    pub async fn replays(&self, limit: u64) -> Result<Vec<replays::Model>, DbErr> {
        replays::Entity::find().order_by_desc(replays::Column::CreatedMs).limit(limit).all(&self.db).await
    }

    /// Saves progress of a job this node runs; false when another node took it over or it was
    /// cancelled meanwhile (the runner then stops).
    pub async fn save_replay(
        &self,
        id: &str,
        node: &str,
        state: &str,
        progress: &str,
        error: Option<&str>,
    ) -> Result<bool, DbErr> {
        let r = replays::Entity::update_many()
            .col_expr(replays::Column::State, Expr::value(state))
            .col_expr(replays::Column::Progress, Expr::value(progress))
            .col_expr(replays::Column::HeartbeatMs, Expr::value(now_ms()))
            .col_expr(replays::Column::Error, Expr::value(error.map(str::to_owned)))
            .filter(replays::Column::Id.eq(id))
            .filter(replays::Column::Node.eq(node))
            .filter(replays::Column::State.eq("running"))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    pub async fn cancel_replay(&self, id: &str) -> Result<bool, DbErr> {
        let r = replays::Entity::update_many()
            .col_expr(replays::Column::State, Expr::value("cancelled"))
            .filter(replays::Column::Id.eq(id))
            .filter(replays::Column::State.eq("running"))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Claims running jobs that are this node's own (`own`: once, at start, after a restart) or
    /// whose owner (possibly this node's previous life) stopped
    /// heartbeating for `stale_ms`. Each claim is a conditional update, so one node wins.
    pub async fn claim_orphans(&self, node: &str, own: bool, stale_ms: i64) -> Result<Vec<replays::Model>, DbErr> {
        let candidates = replays::Entity::find().filter(replays::Column::State.eq("running")).all(&self.db).await?;
        let mut claimed = Vec::new();
        for job in candidates {
            let orphan = now_ms() - job.heartbeat_ms >= stale_ms;
            if !(orphan || (own && job.node == node)) {
                continue;
            }
            let r = replays::Entity::update_many()
                .col_expr(replays::Column::Node, Expr::value(node))
                .col_expr(replays::Column::HeartbeatMs, Expr::value(now_ms()))
                .filter(replays::Column::Id.eq(job.id.clone()))
                .filter(replays::Column::Node.eq(job.node.clone()))
                .filter(replays::Column::HeartbeatMs.eq(job.heartbeat_ms))
                .exec(&self.db)
                .await?;
            if r.rows_affected == 1 {
                claimed.push(replays::Model { node: node.to_owned(), ..job });
            }
        }
        Ok(claimed)
    }
}
