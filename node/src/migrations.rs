//! The node's database migrator: every service's migrations, applied at start in service order.
//! Service crates export their migrations (`migrations()`); the list also creates sea-orm's
//! bookkeeping table, which proves the store is writable before the node reports ready.

use loom_storage::sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all: Vec<Box<dyn MigrationTrait>> = vec![Box::new(loom_storage::documents::Migration)];
        all.extend(loom_schema_registry::migrations());
        all.extend(loom_device_identity::migrations());
        all.extend(loom_event_router::migrations());
        all.extend(loom_privacy_filter::migrations());
        all.extend(loom_health_aggregator::migrations());
        all.extend(loom_timeseries_aggregator::migrations());
        all.extend(loom_dedup::migrations());
        all.extend(loom_data_quality::migrations());
        all
    }
}
