//! File Processing — port 8021: thumbnails, audio conversion, text extraction, video frames, metadata.
//!
//! Built so far: the service's supervised tree (its `core` actor) and the ops routes every port
//! serves. Its feature routes are not built yet: until they are, the port answers `/health`,
//! `/ready`, `/metrics` and `/version`, and 404 problem+json for anything else.

use loom_protocol::ServiceId;
use loom_service::ServiceDef;

pub fn definition() -> ServiceDef {
    ServiceDef::foundation_only(ServiceId::FileProcessing, env!("CARGO_PKG_VERSION"))
}
