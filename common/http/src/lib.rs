//! HTTP glue shared by every service port: the problem+json error shape (`problem`), the
//! middleware stack — request id, logging span, metrics, concurrency, timeout, body limit, auth —
//! (`layers`, `auth`), JSON extraction with problem rejections (`json`), the four ops routes
//! (`ops`), the OpenAPI document and docs page generated from the routes (`openapi`) and graceful serving (`server`). Services add their own routes; everything else here
//! is identical on all ten ports.

pub mod auth;
pub mod json;
pub mod layers;
pub mod login;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod problem;
pub mod server;

pub use auth::Auth;
pub use json::{ApiJson, ApiJsonAny};
pub use layers::{ClusterWide, HttpSettings, service_router, writes_under};
pub use openapi::{ApiRouter, Binary};
pub use ops::{HealthReport, OpsProvider, VersionInfo};
pub use problem::{ApiError, Problem};
pub use server::serve;
pub use utoipa_axum::routes;
