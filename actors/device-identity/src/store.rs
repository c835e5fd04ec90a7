//! Durable device state through sea-orm (SQLite embedded, PostgreSQL shared by a cluster, so any
//! node answers): per-tenant keys by period, devices (no raw identifiers — only features that do
//! not identify on their own, enrichment and metadata), keyed identifier hashes pointing at their
//! device (unique per tenant, so two nodes registering the same device converge on one row), and
//! link edges (unique per ordered pair). Tenant keys are stored sealed (`crypto.rs`); subjects and
//! shared identifiers are in `store/privacy.rs`. The migrations live here; the node applies them.

mod privacy;

pub use privacy::{Migration as PrivacyMigration, shared, subjects};

use std::collections::BTreeSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, double, integer, integer_null, pk_auto, string, string_null, text,
};

pub mod keys {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_keys")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub tenant: String,
        pub period: i32,
        /// Key material sealed under the master key (`crypto.rs`); plaintext hex in rows written
        /// before encryption, resealed at start. Deleting the row is how ids of that period
        /// are erased.
        pub secret: String,
        pub retired: bool,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod devices {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant: String,
        pub key_period: Option<i32>,
        pub platform: Option<String>,
        #[sea_orm(column_type = "Text")]
        pub features: String,
        pub fingerprint: String,
        #[sea_orm(column_type = "Text")]
        pub enrichment: String,
        #[sea_orm(column_type = "Text")]
        pub metadata: String,
        pub created_ms: i64,
        pub updated_ms: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod identifiers {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_identifiers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub tenant: String,
        pub name: String,
        pub hash: String,
        pub device_id: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod links {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_links")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub a: String,
        pub b: String,
        pub confidence: f64,
        #[sea_orm(column_type = "Text")]
        pub evidence: String,
        pub created_ms: i64,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_device_identity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("di_keys")
                .if_not_exists()
                .col(pk_auto("id"))
                .col(string("tenant"))
                .col(integer("period"))
                .col(string("secret"))
                .col(boolean("retired"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_keys_tenant_period")
                .table("di_keys")
                .col("tenant")
                .col("period")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("di_devices")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("tenant"))
                .col(integer_null("key_period"))
                .col(string_null("platform"))
                .col(text("features"))
                .col(string("fingerprint"))
                .col(text("enrichment"))
                .col(text("metadata"))
                .col(big_integer("created_ms"))
                .col(big_integer("updated_ms"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_devices_tenant_platform")
                .table("di_devices")
                .col("tenant")
                .col("platform")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("di_identifiers")
                .if_not_exists()
                .col(pk_auto("id"))
                .col(string("tenant"))
                .col(string("name"))
                .col(string("hash"))
                .col(string("device_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_identifiers_unique")
                .table("di_identifiers")
                .col("tenant")
                .col("name")
                .col("hash")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("di_links")
                .if_not_exists()
                .col(pk_auto("id"))
                .col(string("a"))
                .col(string("b"))
                .col(double("confidence"))
                .col(text("evidence"))
                .col(big_integer("created_ms"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_links_pair")
                .table("di_links")
                .col("a")
                .col("b")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["di_links", "di_identifiers", "di_devices", "di_keys"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

/// What deleting a device removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub device: Option<devices::Model>,
    pub identifiers: u64,
    pub links: u64,
    pub shared: u64,
}

/// Most edges read around one device when computing its group.
pub const MAX_EDGES: u64 = 10_000;

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

impl Store {
    pub async fn current_key(&self, tenant: &str) -> Result<Option<keys::Model>, DbErr> {
        keys::Entity::find()
            .filter(keys::Column::Tenant.eq(tenant))
            .filter(keys::Column::Retired.eq(false))
            .order_by_desc(keys::Column::Period)
            .one(&self.db)
            .await
    }

    pub async fn key(&self, tenant: &str, period: i32) -> Result<Option<keys::Model>, DbErr> {
        keys::Entity::find()
            .filter(keys::Column::Tenant.eq(tenant))
            .filter(keys::Column::Period.eq(period))
            .one(&self.db)
            .await
    }

    /// Inserts a key for `period` unless one exists (another node may win; both read it back).
    pub async fn add_key(&self, tenant: &str, period: i32, secret: String) -> Result<keys::Model, DbErr> {
        let row = keys::ActiveModel {
            tenant: Set(tenant.to_owned()),
            period: Set(period),
            secret: Set(secret),
            retired: Set(false),
            ..Default::default()
        };
        let _ = keys::Entity::insert(row)
            .on_conflict(OnConflict::columns([keys::Column::Tenant, keys::Column::Period]).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await;
        self.key(tenant, period).await?.ok_or_else(|| DbErr::Custom("key vanished".into()))
    }

    pub async fn retire_keys_before(&self, tenant: &str, period: i32) -> Result<(), DbErr> {
        keys::Entity::update_many()
            .col_expr(keys::Column::Retired, sea_orm::sea_query::Expr::value(true))
            .filter(keys::Column::Tenant.eq(tenant))
            .filter(keys::Column::Period.lt(period))
            .exec(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn delete_key(&self, tenant: &str, period: i32) -> Result<u64, DbErr> {
        let r = keys::Entity::delete_many()
            .filter(keys::Column::Tenant.eq(tenant))
            .filter(keys::Column::Period.eq(period))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    pub async fn device(&self, id: &str) -> Result<Option<devices::Model>, DbErr> {
        devices::Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    pub async fn upsert_device(&self, d: devices::Model) -> Result<(), DbErr> {
        let row = devices::ActiveModel {
            id: Set(d.id),
            tenant: Set(d.tenant),
            key_period: Set(d.key_period),
            platform: Set(d.platform),
            features: Set(d.features),
            fingerprint: Set(d.fingerprint),
            enrichment: Set(d.enrichment),
            metadata: Set(d.metadata),
            created_ms: Set(d.created_ms),
            updated_ms: Set(d.updated_ms),
        };
        devices::Entity::insert(row)
            .on_conflict(
                OnConflict::column(devices::Column::Id)
                    .update_columns([
                        devices::Column::Platform,
                        devices::Column::Features,
                        devices::Column::Fingerprint,
                        devices::Column::Enrichment,
                        devices::Column::Metadata,
                        devices::Column::UpdatedMs,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    /// Devices of `tenant` on `platform`, newest first, at most `limit` (fingerprint candidates).
    pub async fn candidates(
        &self,
        tenant: &str,
        platform: Option<&str>,
        limit: u64,
    ) -> Result<Vec<devices::Model>, DbErr> {
        let mut q = devices::Entity::find().filter(devices::Column::Tenant.eq(tenant));
        q = match platform {
            Some(p) => q.filter(devices::Column::Platform.eq(p)),
            None => q.filter(devices::Column::Platform.is_null()),
        };
        q.order_by_desc(devices::Column::UpdatedMs).limit(limit).all(&self.db).await
    }

    pub async fn device_by_identifier(&self, tenant: &str, name: &str, hash: &str) -> Result<Option<String>, DbErr> {
        Ok(identifiers::Entity::find()
            .filter(identifiers::Column::Tenant.eq(tenant))
            .filter(identifiers::Column::Name.eq(name))
            .filter(identifiers::Column::Hash.eq(hash))
            .one(&self.db)
            .await?
            .map(|r| r.device_id))
    }

    pub async fn add_identifier(&self, tenant: &str, name: &str, hash: &str, device: &str) -> Result<(), DbErr> {
        let row = identifiers::ActiveModel {
            tenant: Set(tenant.to_owned()),
            name: Set(name.to_owned()),
            hash: Set(hash.to_owned()),
            device_id: Set(device.to_owned()),
            ..Default::default()
        };
        identifiers::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    identifiers::Column::Tenant,
                    identifiers::Column::Name,
                    identifiers::Column::Hash,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn identifier_names(&self, device: &str) -> Result<Vec<String>, DbErr> {
        let mut names: Vec<String> = identifiers::Entity::find()
            .filter(identifiers::Column::DeviceId.eq(device))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Deletes a device and everything attached to it: identifier hashes, links, its subject and
    /// shared identifier associations. Reports what it removed (the device row, if it existed,
    /// carried the fingerprint and the metadata).
    pub async fn delete_device(&self, id: &str) -> Result<Removed, DbErr> {
        let device = self.device(id).await?;
        let identifiers = identifiers::Entity::delete_many()
            .filter(identifiers::Column::DeviceId.eq(id))
            .exec(&self.db)
            .await?
            .rows_affected;
        let links = links::Entity::delete_many()
            .filter(Condition::any().add(links::Column::A.eq(id)).add(links::Column::B.eq(id)))
            .exec(&self.db)
            .await?
            .rows_affected;
        let shared =
            shared::Entity::delete_many().filter(shared::Column::DeviceId.eq(id)).exec(&self.db).await?.rows_affected;
        subjects::Entity::delete_by_id(id.to_owned()).exec(&self.db).await?;
        let deleted = devices::Entity::delete_by_id(id.to_owned()).exec(&self.db).await?.rows_affected > 0;
        Ok(Removed { device: device.filter(|_| deleted), identifiers, links, shared })
    }

    /// Tenant keys still stored in plaintext (written before encryption).
    pub async fn plaintext_keys(&self) -> Result<Vec<keys::Model>, DbErr> {
        keys::Entity::find()
            .filter(keys::Column::Secret.not_like(format!("{}%", crate::crypto::SEALED)))
            .all(&self.db)
            .await
    }

    /// Replaces a key's stored form if it is still `old` (another node may have resealed it).
    pub async fn reseal_key(&self, id: i32, old: &str, sealed: String) -> Result<bool, DbErr> {
        let r = keys::Entity::update_many()
            .col_expr(keys::Column::Secret, sea_orm::sea_query::Expr::value(sealed))
            .filter(keys::Column::Id.eq(id))
            .filter(keys::Column::Secret.eq(old))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    pub async fn set_subject(&self, tenant: &str, device: &str, hash: Option<&str>) -> Result<(), DbErr> {
        let Some(hash) = hash else {
            subjects::Entity::delete_by_id(device.to_owned()).exec(&self.db).await?;
            return Ok(());
        };
        let row = subjects::ActiveModel {
            device_id: Set(device.to_owned()),
            tenant: Set(tenant.to_owned()),
            hash: Set(hash.to_owned()),
        };
        subjects::Entity::insert(row)
            .on_conflict(
                OnConflict::column(subjects::Column::DeviceId)
                    .update_columns([subjects::Column::Tenant, subjects::Column::Hash])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn has_subject(&self, device: &str) -> Result<bool, DbErr> {
        Ok(subjects::Entity::find_by_id(device.to_owned()).one(&self.db).await?.is_some())
    }

    /// Devices of the subject with `hash` in `tenant`.
    pub async fn devices_of_subject(&self, tenant: &str, hash: &str) -> Result<Vec<String>, DbErr> {
        Ok(subjects::Entity::find()
            .filter(subjects::Column::Tenant.eq(tenant))
            .filter(subjects::Column::Hash.eq(hash))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.device_id)
            .collect())
    }

    /// Tenants that have devices with a subject.
    pub async fn subject_tenants(&self) -> Result<Vec<String>, DbErr> {
        let rows: Vec<String> = subjects::Entity::find()
            .select_only()
            .column(subjects::Column::Tenant)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// The devices a shared identifier value links now.
    pub async fn shared_devices(&self, tenant: &str, kind: &str, hash: &str) -> Result<BTreeSet<String>, DbErr> {
        Ok(shared::Entity::find()
            .filter(shared::Column::Tenant.eq(tenant))
            .filter(shared::Column::Kind.eq(kind))
            .filter(shared::Column::Hash.eq(hash))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.device_id)
            .collect())
    }

    /// Associates `device` with a shared identifier value; true when the association is new.
    pub async fn add_shared(&self, tenant: &str, kind: &str, hash: &str, device: &str) -> Result<bool, DbErr> {
        let row = shared::ActiveModel {
            tenant: Set(tenant.to_owned()),
            kind: Set(kind.to_owned()),
            hash: Set(hash.to_owned()),
            device_id: Set(device.to_owned()),
            ..Default::default()
        };
        let r = shared::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    shared::Column::Tenant,
                    shared::Column::Kind,
                    shared::Column::Hash,
                    shared::Column::DeviceId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(r > 0)
    }

    pub async fn remove_shared(&self, tenant: &str, kind: &str, hash: &str, device: &str) -> Result<(), DbErr> {
        shared::Entity::delete_many()
            .filter(shared::Column::Tenant.eq(tenant))
            .filter(shared::Column::Kind.eq(kind))
            .filter(shared::Column::Hash.eq(hash))
            .filter(shared::Column::DeviceId.eq(device))
            .exec(&self.db)
            .await
            .map(|_| ())
    }

    /// The identifier types a device is associated with (names only).
    pub async fn shared_kinds(&self, device: &str) -> Result<Vec<String>, DbErr> {
        let mut kinds: Vec<String> = shared::Entity::find()
            .filter(shared::Column::DeviceId.eq(device))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.kind)
            .collect();
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }

    pub async fn upsert_link(
        &self,
        a: &str,
        b: &str,
        confidence: f64,
        evidence: &str,
        now_ms: i64,
    ) -> Result<(), DbErr> {
        let row = links::ActiveModel {
            a: Set(a.to_owned()),
            b: Set(b.to_owned()),
            confidence: Set(confidence),
            evidence: Set(evidence.to_owned()),
            created_ms: Set(now_ms),
            ..Default::default()
        };
        links::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([links::Column::A, links::Column::B])
                    .update_columns([links::Column::Confidence, links::Column::Evidence])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    pub async fn delete_link(&self, a: &str, b: &str) -> Result<bool, DbErr> {
        Ok(links::Entity::delete_many()
            .filter(links::Column::A.eq(a))
            .filter(links::Column::B.eq(b))
            .exec(&self.db)
            .await?
            .rows_affected
            > 0)
    }

    /// The edges reachable from `start` (breadth-first over the link table, bounded).
    /// The links at or above `threshold` reachable from `start` (its group's edges), walked
    /// breadth-first with bounded queries. `None` when the walk passes [`MAX_EDGES`]: guardrails
    /// keep groups far smaller, so that means a group no answer should be built for.
    pub async fn edges_around(&self, start: &str, threshold: f64) -> Result<Option<Vec<links::Model>>, DbErr> {
        let mut frontier = vec![start.to_owned()];
        let mut seen = std::collections::BTreeSet::from([start.to_owned()]);
        let mut edges: std::collections::BTreeMap<i32, links::Model> = std::collections::BTreeMap::new();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            // Bounded IN lists (SQLite and PostgreSQL limit bind parameters).
            for chunk in frontier.chunks(500) {
                let found = links::Entity::find()
                    .filter(links::Column::Confidence.gte(threshold))
                    .filter(
                        Condition::any()
                            .add(links::Column::A.is_in(chunk.to_vec()))
                            .add(links::Column::B.is_in(chunk.to_vec())),
                    )
                    .limit(MAX_EDGES + 1)
                    .all(&self.db)
                    .await?;
                for e in found {
                    for n in [&e.a, &e.b] {
                        if seen.insert(n.clone()) {
                            next.push(n.clone());
                        }
                    }
                    edges.insert(e.id, e);
                }
                if edges.len() as u64 > MAX_EDGES {
                    return Ok(None);
                }
            }
            frontier = next;
        }
        Ok(Some(edges.into_values().collect()))
    }
}
