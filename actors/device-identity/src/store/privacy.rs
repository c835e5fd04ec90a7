//! The tables of the second migration: which subject a device belongs to (`di_subjects`, one
//! keyed subject hash per device, for GDPR erasure) and which shared identifier values link which
//! devices (`di_shared`, keyed hashes of IPs, wifi networks, accounts, households, for the link
//! limits). Neither holds a raw value. Created with `if_not_exists`, so nodes that start together
//! on one database agree.

use sea_orm::DbErr;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{pk_auto, string};

pub mod subjects {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_subjects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_id: String,
        pub tenant: String,
        /// `MasterKey::subject_hash(tenant, subject_id)`.
        pub hash: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod shared {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "di_shared")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub tenant: String,
        /// The identifier type (`ip`, `wifi`, `account`, `household`, or a configured one).
        pub kind: String,
        /// `MasterKey::shared_hash(tenant, kind, normalized value)`.
        pub hash: String,
        pub device_id: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m002_device_identity_privacy"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("di_subjects")
                .if_not_exists()
                .col(string("device_id").primary_key())
                .col(string("tenant"))
                .col(string("hash"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_subjects_tenant_hash")
                .table("di_subjects")
                .col("tenant")
                .col("hash")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("di_shared")
                .if_not_exists()
                .col(pk_auto("id"))
                .col(string("tenant"))
                .col(string("kind"))
                .col(string("hash"))
                .col(string("device_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("di_shared_unique")
                .table("di_shared")
                .col("tenant")
                .col("kind")
                .col("hash")
                .col("device_id")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("di_shared_device").table("di_shared").col("device_id").if_not_exists().to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["di_shared", "di_subjects"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
