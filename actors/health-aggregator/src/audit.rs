//! The remediation audit trail through sea-orm: the `ha_remediations` table (migration
//! `m002_health_remediations`) with one row per action decided or taken — applied, rate
//! limited, failed, and the closing of circuits and holds — and its queries. Rows are kept per
//! observing node (`observer`); at most [`MAX_STORED`] per observer, the oldest go first.

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, text};
use serde::{Deserialize, Serialize};

pub const MAX_STORED: u64 = 10_000;

/// One audit record, as stored, streamed and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub time_ms: i64,
    /// The node the action is about.
    pub node: String,
    /// A service, `dep:<store>`, or `*` for the node's services as a whole.
    pub component: String,
    /// `restart`, `open_circuit`, `not_ready`.
    pub action: String,
    /// The rule's name, or `manual` for an operator's request.
    pub rule: String,
    /// `fail`, `flapping`, `manual`, `cool_down`, `recovered`.
    pub trigger: String,
    /// `applied`, `rate_limited`, `failed`, `closed`, `released`.
    pub outcome: String,
    pub detail: serde_json::Value,
}

pub mod remediations {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ha_remediations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub observer: String,
        pub time_ms: i64,
        pub node: String,
        pub component: String,
        pub action: String,
        pub rule: String,
        pub trigger: String,
        pub outcome: String,
        #[sea_orm(column_type = "Text")]
        pub detail: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m002_health_remediations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("ha_remediations")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("observer"))
                .col(big_integer("time_ms"))
                .col(string("node"))
                .col(string("component"))
                .col(string("action"))
                .col(string("rule"))
                .col(string("trigger"))
                .col(string("outcome"))
                .col(text("detail"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ha_remediations_observer_time")
                .table("ha_remediations")
                .if_not_exists()
                .col("observer")
                .col("time_ms")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("ha_remediations").to_owned()).await
    }
}

fn to_action(row: remediations::Model) -> Action {
    Action {
        id: row.id,
        time_ms: row.time_ms,
        node: row.node,
        component: row.component,
        action: row.action,
        rule: row.rule,
        trigger: row.trigger,
        outcome: row.outcome,
        detail: serde_json::from_str(&row.detail).unwrap_or_default(),
    }
}

/// What `GET /remediations` may ask for (every filter optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub node: Option<String>,
    pub component: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub rule: Option<String>,
    pub since_ms: Option<i64>,
    /// Strictly before (the next page's cursor).
    pub before_ms: Option<i64>,
    pub limit: u64,
}

impl ListQuery {
    pub fn matches(&self, a: &Action) -> bool {
        let eq = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        eq(&self.node, &a.node)
            && eq(&self.component, &a.component)
            && eq(&self.action, &a.action)
            && eq(&self.outcome, &a.outcome)
            && eq(&self.rule, &a.rule)
            && self.since_ms.is_none_or(|t| a.time_ms >= t)
            && self.before_ms.is_none_or(|t| a.time_ms < t)
    }
}

#[derive(Clone)]
pub struct AuditStore {
    pub db: DatabaseConnection,
    pub observer: String,
}

impl AuditStore {
    /// Writes rows in one statement (a row already written is left as it is).
    pub async fn save_all(&self, actions: &[Action]) -> Result<(), DbErr> {
        if actions.is_empty() {
            return Ok(());
        }
        let rows = actions.iter().map(|a| self.row(a));
        remediations::Entity::insert_many(rows)
            .on_conflict(sea_orm::sea_query::OnConflict::column(remediations::Column::Id).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await
            .map(|_| ())
    }

    fn row(&self, a: &Action) -> remediations::ActiveModel {
        remediations::ActiveModel {
            id: Set(a.id.clone()),
            observer: Set(self.observer.clone()),
            time_ms: Set(a.time_ms),
            node: Set(a.node.clone()),
            component: Set(a.component.clone()),
            action: Set(a.action.clone()),
            rule: Set(a.rule.clone()),
            trigger: Set(a.trigger.clone()),
            outcome: Set(a.outcome.clone()),
            detail: Set(a.detail.to_string()),
        }
    }

    /// Drops the oldest records past [`MAX_STORED`].
    pub async fn prune(&self) -> Result<(), DbErr> {
        let mine = remediations::Column::Observer.eq(self.observer.clone());
        if remediations::Entity::find().filter(mine.clone()).count(&self.db).await? <= MAX_STORED {
            return Ok(());
        }
        let cutoff: Option<i64> = remediations::Entity::find()
            .select_only()
            .column(remediations::Column::TimeMs)
            .filter(mine.clone())
            .order_by_desc(remediations::Column::TimeMs)
            .offset(MAX_STORED)
            .into_tuple()
            .one(&self.db)
            .await?;
        if let Some(cutoff) = cutoff {
            remediations::Entity::delete_many()
                .filter(mine)
                .filter(remediations::Column::TimeMs.lte(cutoff))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Newest first, at most `q.limit`.
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<Action>, DbErr> {
        use remediations::Column as C;
        let mut find = remediations::Entity::find().filter(C::Observer.eq(self.observer.clone()));
        for (column, value) in [
            (C::Node, &q.node),
            (C::Component, &q.component),
            (C::Action, &q.action),
            (C::Outcome, &q.outcome),
            (C::Rule, &q.rule),
        ] {
            if let Some(v) = value {
                find = find.filter(column.eq(v.clone()));
            }
        }
        if let Some(since) = q.since_ms {
            find = find.filter(C::TimeMs.gte(since));
        }
        if let Some(before) = q.before_ms {
            find = find.filter(C::TimeMs.lt(before));
        }
        let rows = find.order_by_desc(C::TimeMs).order_by_desc(C::Id).limit(q.limit).all(&self.db).await?;
        Ok(rows.into_iter().map(to_action).collect())
    }
}
