//! `validate` actions: the router validates through the shared Schema Registry client
//! (`loom-schemas`). Evaluation is synchronous, so a subject not cached yet is recorded as
//! missing; the router fetches it and evaluates the event again.

pub use loom_schemas::{SchemaCache, SchemaProblem, SubjectCheck};
use serde_json::Value;

use crate::rules::Schemas;

impl Schemas for SchemaCache {
    fn validate(&self, subject: &str, event: &Value) -> Result<(), SchemaProblem> {
        SchemaCache::validate(self, subject, event)
    }
}
