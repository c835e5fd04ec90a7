//! Durable registry state through sea-orm (SQLite embedded, PostgreSQL in clusters): schemas by
//! global id (unique fingerprint, so concurrent registration of one schema on two nodes yields
//! one id), subject versions (unique subject + version; a losing concurrent insert retries with
//! the next number), and per-subject or global config (compatibility, mode, policy). The
//! migration lives here too and is applied by the node at start.

use loom_storage::sea_orm_migration::prelude::*;
use loom_storage::sea_orm_migration::schema::{boolean, integer, pk_auto, string, string_null, string_uniq, text};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::model::Reference;

pub mod schemas {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sr_schemas")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub fingerprint: String,
        pub schema_type: String,
        #[sea_orm(column_type = "Text")]
        pub schema: String,
        /// JSON array of references.
        #[sea_orm(column_type = "Text")]
        pub refs: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod versions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sr_versions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub subject: String,
        pub version: i32,
        pub schema_id: i32,
        pub deleted: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod configs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sr_configs")]
    pub struct Model {
        /// The subject, or "" for the global config.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub compatibility: Option<String>,
        pub mode: Option<String>,
        pub policy: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The registry's tables.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_schema_registry"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("sr_schemas")
                    .if_not_exists()
                    .col(pk_auto("id"))
                    .col(string_uniq("fingerprint"))
                    .col(string("schema_type"))
                    .col(text("schema"))
                    .col(text("refs"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sr_versions")
                    .if_not_exists()
                    .col(pk_auto("id"))
                    .col(string("subject"))
                    .col(integer("version"))
                    .col(integer("schema_id"))
                    .col(boolean("deleted"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sr_versions_subject_version")
                    .table("sr_versions")
                    .col("subject")
                    .col("version")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sr_configs")
                    .if_not_exists()
                    .col(string("subject").primary_key())
                    .col(string_null("compatibility"))
                    .col(string_null("mode"))
                    .col(string_null("policy"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["sr_configs", "sr_versions", "sr_schemas"] {
            manager.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

/// Which config field.
#[derive(Debug, Clone, Copy)]
pub enum ConfigField {
    Compatibility,
    Mode,
    Policy,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Store {
        Store { db }
    }

    pub async fn schema(&self, id: i32) -> Result<Option<schemas::Model>, DbErr> {
        schemas::Entity::find_by_id(id).one(&self.db).await
    }

    pub async fn schema_by_fingerprint(&self, fingerprint: &str) -> Result<Option<schemas::Model>, DbErr> {
        schemas::Entity::find().filter(schemas::Column::Fingerprint.eq(fingerprint)).one(&self.db).await
    }

    /// The id of the schema with `fingerprint`, inserting it if new. Concurrent inserts of the
    /// same schema (other nodes) collapse on the unique fingerprint.
    pub async fn intern_schema(
        &self,
        fingerprint: &str,
        schema_type: &str,
        schema: &str,
        refs: &[Reference],
    ) -> Result<i32, DbErr> {
        if let Some(found) = self.schema_by_fingerprint(fingerprint).await? {
            return Ok(found.id);
        }
        let row = schemas::ActiveModel {
            fingerprint: Set(fingerprint.to_owned()),
            schema_type: Set(schema_type.to_owned()),
            schema: Set(schema.to_owned()),
            refs: Set(serde_json::to_string(refs).unwrap_or_else(|_| "[]".into())),
            ..Default::default()
        };
        let insert = schemas::Entity::insert(row)
            .on_conflict(OnConflict::column(schemas::Column::Fingerprint).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await;
        if let Err(e) = insert {
            tracing::debug!(error = %e, "schema insert raced; reading the winner");
        }
        self.schema_by_fingerprint(fingerprint)
            .await?
            .map(|m| m.id)
            .ok_or_else(|| DbErr::Custom("schema vanished after insert".into()))
    }

    /// Every version row of `subject`, oldest first.
    pub async fn versions(&self, subject: &str) -> Result<Vec<versions::Model>, DbErr> {
        versions::Entity::find()
            .filter(versions::Column::Subject.eq(subject))
            .order_by_asc(versions::Column::Version)
            .all(&self.db)
            .await
    }

    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>, DbErr> {
        let mut rows = versions::Entity::find();
        if !include_deleted {
            rows = rows.filter(versions::Column::Deleted.eq(false));
        }
        let mut subjects: Vec<String> = rows.all(&self.db).await?.into_iter().map(|r| r.subject).collect();
        subjects.sort();
        subjects.dedup();
        Ok(subjects)
    }

    /// Inserts `subject` version `version`; `Ok(false)` when the number was taken meanwhile.
    pub async fn insert_version(&self, subject: &str, version: i32, schema_id: i32) -> Result<bool, DbErr> {
        let row = versions::ActiveModel {
            subject: Set(subject.to_owned()),
            version: Set(version),
            schema_id: Set(schema_id),
            deleted: Set(false),
            ..Default::default()
        };
        match row.insert(&self.db).await {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn mark_deleted(&self, subject: &str, version: Option<i32>) -> Result<(), DbErr> {
        let mut update = versions::Entity::update_many()
            .col_expr(versions::Column::Deleted, Expr::value(true))
            .filter(versions::Column::Subject.eq(subject));
        if let Some(v) = version {
            update = update.filter(versions::Column::Version.eq(v));
        }
        update.exec(&self.db).await.map(|_| ())
    }

    pub async fn purge(&self, subject: &str, version: Option<i32>) -> Result<(), DbErr> {
        let mut delete = versions::Entity::delete_many().filter(versions::Column::Subject.eq(subject));
        if let Some(v) = version {
            delete = delete.filter(versions::Column::Version.eq(v));
        }
        delete.exec(&self.db).await.map(|_| ())
    }

    /// Every (subject, version) row that uses schema `id`.
    pub async fn uses_of(&self, id: i32) -> Result<Vec<versions::Model>, DbErr> {
        versions::Entity::find()
            .filter(versions::Column::SchemaId.eq(id))
            .order_by_asc(versions::Column::Subject)
            .order_by_asc(versions::Column::Version)
            .all(&self.db)
            .await
    }

    /// The schemas whose references name `subject` at `version`, ascending by id, each with
    /// the version rows (live and soft-deleted) that still use it. A schema row outlives its
    /// versions, so a referrer whose every version was hard-deleted comes back with none: the
    /// callers decide what still counts (Confluent drops such referrers from its index).
    pub async fn referrers(&self, subject: &str, version: i32) -> Result<Vec<(i32, Vec<versions::Model>)>, DbErr> {
        let candidates = schemas::Entity::find()
            .filter(schemas::Column::Refs.ne("[]"))
            .order_by_asc(schemas::Column::Id)
            .all(&self.db)
            .await?;
        let mut out = Vec::new();
        for s in candidates {
            let names_it = serde_json::from_str::<Vec<Reference>>(&s.refs)
                .unwrap_or_default()
                .iter()
                .any(|r| r.subject == subject && r.version == version);
            if names_it {
                out.push((s.id, self.uses_of(s.id).await?));
            }
        }
        Ok(out)
    }

    pub async fn config(&self, subject: &str) -> Result<Option<configs::Model>, DbErr> {
        configs::Entity::find_by_id(subject.to_owned()).one(&self.db).await
    }

    pub async fn set_config(&self, subject: &str, field: ConfigField, value: Option<String>) -> Result<(), DbErr> {
        // One column per call, and only that column on conflict: two nodes setting the mode
        // and the level of one subject at once must not overwrite each other's write.
        let (column, mut active) = (
            match field {
                ConfigField::Compatibility => configs::Column::Compatibility,
                ConfigField::Mode => configs::Column::Mode,
                ConfigField::Policy => configs::Column::Policy,
            },
            configs::ActiveModel {
                subject: Set(subject.to_owned()),
                compatibility: Set(None),
                mode: Set(None),
                policy: Set(None),
            },
        );
        match field {
            ConfigField::Compatibility => active.compatibility = Set(value),
            ConfigField::Mode => active.mode = Set(value),
            ConfigField::Policy => active.policy = Set(value),
        }
        configs::Entity::insert(active)
            .on_conflict(OnConflict::column(configs::Column::Subject).update_column(column).to_owned())
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }
}

fn is_unique_violation(e: &DbErr) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unique") || text.contains("duplicate key")
}
