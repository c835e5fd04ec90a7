//! Typed vocabulary shared by every Loom crate: which services exist, how errors are classified,
//! what health looks like, which scopes guard routes, and the ops messages every service actor
//! understands. Pure data — no I/O, no HTTP, no storage.

pub mod erasure;
pub mod error;
pub mod health;
pub mod ops;
pub mod request;
pub mod scope;
pub mod service;

pub use erasure::{ERASURE_ENDPOINT, ErasedItem, ErasureReport, ErasureRequest};
pub use error::{ErrorKind, ServiceError};
pub use health::{CheckResult, HealthStatus};
pub use ops::{Fault, OpsMsg};
pub use request::RequestId;
pub use scope::Scope;
pub use service::ServiceId;
