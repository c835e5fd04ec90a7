//! Incident records through sea-orm: the `ha_incidents` table (migration `m001_health_incidents`)
//! and its queries. Every node records the incidents it observes under its own name
//! (`observer`), so nodes sharing one PostgreSQL database never overwrite each other; lists
//! answer this node's records. Root causes and affected pairs are stored as JSON text. At most
//! [`MAX_STORED`] incidents per observer are kept: the oldest resolved ones go first.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, string, text};

use crate::incidents::Incident;

pub const MAX_STORED: u64 = 10_000;

pub mod incidents {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ha_incidents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub observer: String,
        pub state: String,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub roots: String,
        #[sea_orm(column_type = "Text")]
        pub affected: String,
        pub opened_ms: i64,
        pub updated_ms: i64,
        pub resolved_ms: Option<i64>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m001_health_incidents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("ha_incidents")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("observer"))
                .col(string("state"))
                .col(string("title"))
                .col(text("roots"))
                .col(text("affected"))
                .col(big_integer("opened_ms"))
                .col(big_integer("updated_ms"))
                .col(big_integer_null("resolved_ms"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ha_incidents_observer_updated")
                .table("ha_incidents")
                .if_not_exists()
                .col("observer")
                .col("updated_ms")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("ha_incidents").to_owned()).await
    }
}

/// An incident as stored and served.
pub fn to_incident(row: incidents::Model) -> Incident {
    Incident {
        id: row.id,
        state: row.state,
        title: row.title,
        roots: serde_json::from_str(&row.roots).unwrap_or_default(),
        affected: serde_json::from_str(&row.affected).unwrap_or_default(),
        opened_ms: row.opened_ms,
        updated_ms: row.updated_ms,
        resolved_ms: row.resolved_ms,
    }
}

/// What `GET /incidents` may ask for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<String>,
    /// Unix milliseconds: incidents updated at or after.
    pub since_ms: Option<i64>,
    /// Unix milliseconds: incidents updated strictly before (the next page's cursor).
    pub before_ms: Option<i64>,
    pub limit: u64,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    pub observer: String,
}

impl Store {
    /// Writes an incident (insert or full update).
    pub async fn save(&self, i: &Incident) -> Result<(), DbErr> {
        let row = incidents::ActiveModel {
            id: Set(i.id.clone()),
            observer: Set(self.observer.clone()),
            state: Set(i.state.clone()),
            title: Set(i.title.clone()),
            roots: Set(serde_json::to_string(&i.roots).unwrap_or_else(|_| "[]".into())),
            affected: Set(serde_json::to_string(&i.affected).unwrap_or_else(|_| "[]".into())),
            opened_ms: Set(i.opened_ms),
            updated_ms: Set(i.updated_ms),
            resolved_ms: Set(i.resolved_ms),
        };
        incidents::Entity::insert(row)
            .on_conflict(
                OnConflict::column(incidents::Column::Id)
                    .update_columns([
                        incidents::Column::State,
                        incidents::Column::Title,
                        incidents::Column::Roots,
                        incidents::Column::Affected,
                        incidents::Column::UpdatedMs,
                        incidents::Column::ResolvedMs,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    /// Incidents a previous run of this node left open: nobody watches their root causes any
    /// more, so they are resolved now (a still-failing root cause opens a fresh one).
    pub async fn close_stale(&self, now_ms: i64) -> Result<u64, DbErr> {
        let r = incidents::Entity::update_many()
            .col_expr(incidents::Column::State, Expr::value("resolved"))
            .col_expr(incidents::Column::ResolvedMs, Expr::value(now_ms))
            .col_expr(incidents::Column::UpdatedMs, Expr::value(now_ms))
            .filter(incidents::Column::Observer.eq(self.observer.clone()))
            .filter(incidents::Column::State.eq("open"))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Drops the oldest resolved incidents past [`MAX_STORED`].
    pub async fn prune(&self) -> Result<(), DbErr> {
        let mine = incidents::Column::Observer.eq(self.observer.clone());
        let count = incidents::Entity::find().filter(mine.clone()).count(&self.db).await?;
        if count <= MAX_STORED {
            return Ok(());
        }
        let cutoff: Option<i64> = incidents::Entity::find()
            .select_only()
            .column(incidents::Column::UpdatedMs)
            .filter(mine.clone())
            .order_by_desc(incidents::Column::UpdatedMs)
            .offset(MAX_STORED)
            .into_tuple()
            .one(&self.db)
            .await?;
        if let Some(cutoff) = cutoff {
            incidents::Entity::delete_many()
                .filter(mine)
                .filter(incidents::Column::State.eq("resolved"))
                .filter(incidents::Column::UpdatedMs.lte(cutoff))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Incident>, DbErr> {
        let row = incidents::Entity::find_by_id(id.to_owned())
            .filter(incidents::Column::Observer.eq(self.observer.clone()))
            .one(&self.db)
            .await?;
        Ok(row.map(to_incident))
    }

    /// Newest first (by last update), at most `q.limit`.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<Incident>, DbErr> {
        let mut find = incidents::Entity::find().filter(incidents::Column::Observer.eq(self.observer.clone()));
        if let Some(state) = &q.state {
            find = find.filter(incidents::Column::State.eq(state.clone()));
        }
        if let Some(since) = q.since_ms {
            find = find.filter(incidents::Column::UpdatedMs.gte(since));
        }
        if let Some(before) = q.before_ms {
            find = find.filter(incidents::Column::UpdatedMs.lt(before));
        }
        let rows = find
            .order_by_desc(incidents::Column::UpdatedMs)
            .order_by_desc(incidents::Column::Id)
            .limit(q.limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(to_incident).collect())
    }
}
