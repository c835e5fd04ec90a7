//! The node's database migrator: every service's migrations, applied at start in service order.
//! Service crates export their migrations; none of the services built so far has tables yet, so
//! the list is empty and `up` only creates sea-orm's bookkeeping table (which proves the store is
//! writable before the node reports ready).

use loom_storage::sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
