//! Durable Privacy Filter state through sea-orm (SQLite or PostgreSQL):
//!
//! - `pf_keys`: managed keys — a scope (`global`, `index`, or `subject:<index>`), a version per
//!   scope, the material (NULL once destroyed: crypto-shredding);
//! - `pf_pseudonyms`: the stable number of each (key, entity, keyed digest) — never the value;
//! - `pf_policies`: named policies, one row per name with its version (tombstones on delete);
//! - `pf_audit`: one row per (request, field path, entity, operator) decision, with a count —
//!   never the value;
//! - `pf_erasure`: GDPR erasure jobs with per-participant status, owner node and heartbeat;
//!   `pf_erasure_open`: the one open job per subject.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, binary_null, boolean, integer, integer_null, string, string_null, text,
};

pub mod keys {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pf_keys")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub scope: String,
        pub version: i32,
        pub material: Option<Vec<u8>>,
        pub created_ms: i64,
        pub destroyed_ms: Option<i64>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod pseudonyms {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pf_pseudonyms")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub entity: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub digest: String,
        pub n: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod policies {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pf_policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub version: i32,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub deleted: bool,
        pub updated_ms: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "pf_audit")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub time_ms: i64,
        pub request_id: String,
        pub source: Option<String>,
        /// The subject's keyed index (never the subject id).
        #[serde(skip)]
        pub subject: Option<String>,
        pub path: String,
        pub entity: String,
        pub policy: Option<String>,
        pub policy_version: Option<i32>,
        pub operator: String,
        pub key_id: Option<i64>,
        pub key_version: Option<i32>,
        pub count: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod erasure {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pf_erasure")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The subject's keyed index; one open job per subject.
        pub subject: String,
        pub state: String,
        /// Per-participant status (JSON).
        #[sea_orm(column_type = "Text")]
        pub participants: String,
        pub node: String,
        pub heartbeat_ms: i64,
        pub created_ms: i64,
        pub finished_ms: Option<i64>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod erasure_open {
    use sea_orm::entity::prelude::*;
    /// The open erasure job of a subject: the primary key makes it one per subject, whichever
    /// node creates it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "pf_erasure_open")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub job_id: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_privacy_filter"
    }
}

/// One open erasure job per subject across nodes.
pub struct OpenJobs;

impl MigrationName for OpenJobs {
    fn name(&self) -> &str {
        "m002_privacy_filter_open_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OpenJobs {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("pf_erasure_open")
                .if_not_exists()
                .col(string("subject").primary_key())
                .col(string("job_id"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("pf_erasure_open").to_owned()).await
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("pf_keys")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("scope"))
                .col(integer("version"))
                .col(binary_null("material"))
                .col(big_integer("created_ms"))
                .col(big_integer_null("destroyed_ms"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("pf_keys_scope_version")
                .table("pf_keys")
                .col("scope")
                .col("version")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pf_pseudonyms")
                .if_not_exists()
                .col(big_integer("key_id"))
                .col(string("entity"))
                .col(string("digest"))
                .col(big_integer("n"))
                .primary_key(Index::create().col("key_id").col("entity").col("digest"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("pf_pseudonyms_number")
                .table("pf_pseudonyms")
                .col("key_id")
                .col("entity")
                .col("n")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pf_policies")
                .if_not_exists()
                .col(string("name").primary_key())
                .col(integer("version"))
                .col(text("body"))
                .col(boolean("deleted"))
                .col(big_integer("updated_ms"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pf_audit")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("time_ms"))
                .col(string("request_id"))
                .col(string_null("source"))
                .col(string_null("subject"))
                .col(string("path"))
                .col(string("entity"))
                .col(string_null("policy"))
                .col(integer_null("policy_version"))
                .col(string("operator"))
                .col(big_integer_null("key_id"))
                .col(integer_null("key_version"))
                .col(big_integer("count"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("pf_audit_time").table("pf_audit").col("time_ms").if_not_exists().to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("pf_audit_subject").table("pf_audit").col("subject").if_not_exists().to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pf_erasure")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("subject"))
                .col(string("state"))
                .col(text("participants"))
                .col(string("node"))
                .col(big_integer("heartbeat_ms"))
                .col(big_integer("created_ms"))
                .col(big_integer_null("finished_ms"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["pf_erasure", "pf_audit", "pf_policies", "pf_pseudonyms", "pf_keys"] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// Audit rows per INSERT (13 parameters each: well under SQLite's 32,766 and PostgreSQL's 65,535).
const AUDIT_CHUNK: usize = 1_000;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Audit filters (`GET /audit`).
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub entity: Option<String>,
    pub policy: Option<String>,
    pub request_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Rows with an id below this (paging backwards from the newest).
    pub before_id: Option<i64>,
    pub limit: u64,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

impl Store {
    // --- keys ---

    /// The newest key of `scope`, if any (destroyed ones included: the caller decides).
    pub async fn current_key(&self, scope: &str) -> Result<Option<keys::Model>, DbErr> {
        keys::Entity::find()
            .filter(keys::Column::Scope.eq(scope))
            .order_by_desc(keys::Column::Version)
            .one(&self.db)
            .await
    }

    pub async fn key(&self, id: i64) -> Result<Option<keys::Model>, DbErr> {
        keys::Entity::find_by_id(id).one(&self.db).await
    }

    /// Adds version `version` of `scope`; `Ok(false)` when another writer added it first.
    pub async fn add_key(&self, scope: &str, version: i32, material: Vec<u8>) -> Result<bool, DbErr> {
        let row = keys::ActiveModel {
            scope: Set(scope.to_owned()),
            version: Set(version),
            material: Set(Some(material)),
            created_ms: Set(now_ms()),
            destroyed_ms: Set(None),
            ..Default::default()
        };
        let inserted = keys::Entity::insert(row)
            .on_conflict(OnConflict::columns([keys::Column::Scope, keys::Column::Version]).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(inserted > 0)
    }

    /// Wipes every key of `scope` (crypto-shredding); returns the key ids destroyed now.
    pub async fn destroy_keys(&self, scope: &str) -> Result<Vec<i64>, DbErr> {
        let live: Vec<i64> = keys::Entity::find()
            .filter(keys::Column::Scope.eq(scope))
            .filter(keys::Column::Material.is_not_null())
            .all(&self.db)
            .await?
            .into_iter()
            .map(|k| k.id)
            .collect();
        if !live.is_empty() {
            keys::Entity::update_many()
                .col_expr(keys::Column::Material, Expr::value(Option::<Vec<u8>>::None))
                .col_expr(keys::Column::DestroyedMs, Expr::value(now_ms()))
                .filter(keys::Column::Id.is_in(live.clone()))
                .exec(&self.db)
                .await?;
        }
        Ok(live)
    }

    pub async fn keys_of_scope(&self, scope: &str) -> Result<Vec<keys::Model>, DbErr> {
        keys::Entity::find().filter(keys::Column::Scope.eq(scope)).all(&self.db).await
    }

    // --- pseudonyms ---

    /// The number of (key, entity, digest), assigning the next free one on first sight.
    /// Concurrent writers on other nodes are resolved by the two unique keys: retry.
    pub async fn pseudonym(&self, key_id: i64, entity: &str, digest: &str) -> Result<i64, DbErr> {
        // Never number values under a destroyed key (a node may still hold it for a moment).
        if self.key(key_id).await?.is_none_or(|k| k.material.is_none()) {
            return Err(DbErr::Custom("the key was destroyed".into()));
        }
        for _ in 0..8 {
            let found =
                pseudonyms::Entity::find_by_id((key_id, entity.to_owned(), digest.to_owned())).one(&self.db).await?;
            if let Some(row) = found {
                return Ok(row.n);
            }
            let max: Option<Option<i64>> = pseudonyms::Entity::find()
                .select_only()
                .column_as(pseudonyms::Column::N.max(), "max")
                .filter(pseudonyms::Column::KeyId.eq(key_id))
                .filter(pseudonyms::Column::Entity.eq(entity))
                .into_tuple()
                .one(&self.db)
                .await?;
            let n = max.flatten().unwrap_or(0) + 1;
            let row = pseudonyms::ActiveModel {
                key_id: Set(key_id),
                entity: Set(entity.to_owned()),
                digest: Set(digest.to_owned()),
                n: Set(n),
            };
            // Either unique key may collide (same value, or the number taken by a concurrent
            // writer): look again.
            match pseudonyms::Entity::insert(row).exec_without_returning(&self.db).await {
                Ok(_) => return Ok(n),
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Err(DbErr::Custom("pseudonym assignment kept colliding".into()))
    }

    pub async fn delete_pseudonyms(&self, key_ids: &[i64]) -> Result<u64, DbErr> {
        if key_ids.is_empty() {
            return Ok(0);
        }
        let r = pseudonyms::Entity::delete_many()
            .filter(pseudonyms::Column::KeyId.is_in(key_ids.to_vec()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    // --- policies ---

    pub async fn policy(&self, name: &str) -> Result<Option<policies::Model>, DbErr> {
        policies::Entity::find_by_id(name.to_owned()).one(&self.db).await
    }

    pub async fn policies(&self) -> Result<Vec<policies::Model>, DbErr> {
        policies::Entity::find()
            .filter(policies::Column::Deleted.eq(false))
            .order_by_asc(policies::Column::Name)
            .all(&self.db)
            .await
    }

    /// Writes `body` (or a tombstone) as the next version of `name`; returns the version.
    pub async fn put_policy(&self, name: &str, body: Option<&str>) -> Result<i32, DbErr> {
        let now = now_ms();
        for _ in 0..8 {
            let current = self.policy(name).await?;
            let version = current.as_ref().map_or(1, |p| p.version + 1);
            let row = policies::ActiveModel {
                name: Set(name.to_owned()),
                version: Set(version),
                body: Set(body.unwrap_or_default().to_owned()),
                deleted: Set(body.is_none()),
                updated_ms: Set(now),
            };
            match current {
                None => {
                    let n = policies::Entity::insert(row)
                        .on_conflict(OnConflict::column(policies::Column::Name).do_nothing().to_owned())
                        .exec_without_returning(&self.db)
                        .await?;
                    if n > 0 {
                        return Ok(version);
                    }
                }
                Some(prev) => {
                    // Compare-and-set on the version: concurrent writers each get their own.
                    let r = policies::Entity::update_many()
                        .set(row)
                        .filter(policies::Column::Name.eq(name))
                        .filter(policies::Column::Version.eq(prev.version))
                        .exec(&self.db)
                        .await?;
                    if r.rows_affected == 1 {
                        return Ok(version);
                    }
                }
            }
        }
        Err(DbErr::Custom("policy write kept racing".into()))
    }

    // --- audit ---

    /// Inserts audit rows in chunks (SQLite and PostgreSQL bound the parameters of a statement).
    pub async fn audit(&self, rows: Vec<audit::ActiveModel>) -> Result<(), DbErr> {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<audit::ActiveModel> = rows.by_ref().take(AUDIT_CHUNK).collect();
            audit::Entity::insert_many(chunk).exec_without_returning(&self.db).await?;
        }
        Ok(())
    }

    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<audit::Model>, DbErr> {
        let mut cond = Condition::all();
        if let Some(e) = &q.entity {
            cond = cond.add(audit::Column::Entity.eq(e.as_str()));
        }
        if let Some(p) = &q.policy {
            cond = cond.add(audit::Column::Policy.eq(p.as_str()));
        }
        if let Some(r) = &q.request_id {
            cond = cond.add(audit::Column::RequestId.eq(r.as_str()));
        }
        if let Some(t) = q.since_ms {
            cond = cond.add(audit::Column::TimeMs.gte(t));
        }
        if let Some(t) = q.until_ms {
            cond = cond.add(audit::Column::TimeMs.lt(t));
        }
        if let Some(id) = q.before_id {
            cond = cond.add(audit::Column::Id.lt(id));
        }
        audit::Entity::find().filter(cond).order_by_desc(audit::Column::Id).limit(q.limit).all(&self.db).await
    }

    pub async fn delete_audit_before(&self, time_ms: i64) -> Result<u64, DbErr> {
        let r = audit::Entity::delete_many().filter(audit::Column::TimeMs.lt(time_ms)).exec(&self.db).await?;
        Ok(r.rows_affected)
    }

    pub async fn delete_audit_of_subject(&self, subject: &str) -> Result<u64, DbErr> {
        let r = audit::Entity::delete_many().filter(audit::Column::Subject.eq(subject)).exec(&self.db).await?;
        Ok(r.rows_affected)
    }

    // --- erasure jobs ---

    pub async fn insert_erasure(&self, row: erasure::Model) -> Result<(), DbErr> {
        erasure::Entity::insert(erasure::ActiveModel::from(row)).exec_without_returning(&self.db).await?;
        Ok(())
    }

    pub async fn erasure(&self, id: &str) -> Result<Option<erasure::Model>, DbErr> {
        erasure::Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    /// The unfinished job of a subject, if any (one open job per subject).
    pub async fn open_erasure_of(&self, subject: &str) -> Result<Option<erasure::Model>, DbErr> {
        let Some(open) = erasure_open::Entity::find_by_id(subject.to_owned()).one(&self.db).await? else {
            return Ok(None);
        };
        match self.erasure(&open.job_id).await? {
            Some(job) if job.state == "running" => Ok(Some(job)),
            // Ended (or gone) but not released: release it now.
            _ => {
                self.release_subject(subject, &open.job_id).await?;
                Ok(None)
            }
        }
    }

    /// Makes `job_id` the subject's open job; `false` when another job is open already.
    pub async fn claim_subject(&self, subject: &str, job_id: &str) -> Result<bool, DbErr> {
        let row = erasure_open::ActiveModel { subject: Set(subject.to_owned()), job_id: Set(job_id.to_owned()) };
        let n = erasure_open::Entity::insert(row)
            .on_conflict(OnConflict::column(erasure_open::Column::Subject).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(n > 0)
    }

    /// A job ended: its subject may get a new one.
    pub async fn release_subject(&self, subject: &str, job_id: &str) -> Result<(), DbErr> {
        erasure_open::Entity::delete_many()
            .filter(erasure_open::Column::Subject.eq(subject))
            .filter(erasure_open::Column::JobId.eq(job_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn delete_erasure(&self, id: &str) -> Result<(), DbErr> {
        erasure::Entity::delete_by_id(id.to_owned()).exec(&self.db).await?;
        Ok(())
    }

    /// Saves a job's participants and state if `node` still owns it; false when it does not.
    pub async fn save_erasure(
        &self,
        id: &str,
        node: &str,
        state: &str,
        participants: &str,
        finished_ms: Option<i64>,
    ) -> Result<bool, DbErr> {
        let r = erasure::Entity::update_many()
            .col_expr(erasure::Column::State, Expr::value(state))
            .col_expr(erasure::Column::Participants, Expr::value(participants))
            .col_expr(erasure::Column::HeartbeatMs, Expr::value(now_ms()))
            .col_expr(erasure::Column::FinishedMs, Expr::value(finished_ms))
            .filter(erasure::Column::Id.eq(id))
            .filter(erasure::Column::Node.eq(node))
            .filter(erasure::Column::State.eq("running"))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Renews a running job's heartbeat if `node` still owns it.
    pub async fn touch_erasure(&self, id: &str, node: &str) -> Result<(), DbErr> {
        erasure::Entity::update_many()
            .col_expr(erasure::Column::HeartbeatMs, Expr::value(now_ms()))
            .filter(erasure::Column::Id.eq(id))
            .filter(erasure::Column::Node.eq(node))
            .filter(erasure::Column::State.eq("running"))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Claims running jobs of this node (after a restart, `own`) and jobs whose owner has not
    /// heartbeaten for `stale_ms`. Each claim is a conditional update, so one node wins.
    pub async fn claim_erasures(&self, node: &str, own: bool, stale_ms: i64) -> Result<Vec<erasure::Model>, DbErr> {
        let running = erasure::Entity::find().filter(erasure::Column::State.eq("running")).all(&self.db).await?;
        let now = now_ms();
        let mut claimed = Vec::new();
        for job in running {
            let mine = job.node == node;
            if !(mine && own) && (mine || now - job.heartbeat_ms < stale_ms) {
                continue;
            }
            let r = erasure::Entity::update_many()
                .col_expr(erasure::Column::Node, Expr::value(node))
                .col_expr(erasure::Column::HeartbeatMs, Expr::value(now))
                .filter(erasure::Column::Id.eq(job.id.as_str()))
                .filter(erasure::Column::Node.eq(job.node.as_str()))
                .filter(erasure::Column::HeartbeatMs.eq(job.heartbeat_ms))
                .exec(&self.db)
                .await?;
            if r.rows_affected == 1 {
                claimed.push(erasure::Model { node: node.to_owned(), heartbeat_ms: now, ..job });
            }
        }
        Ok(claimed)
    }
}
