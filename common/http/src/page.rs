//! Self-contained HTML pages served by a service (the dashboards on 8030 and 8031): compiled
//! in, no CDN, a content security policy that keeps them to their own origin (scripts and
//! styles inline, fetches and WebSockets to `'self'` only), never cached.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub const CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'";

/// `page` as `text/html` with the dashboard headers.
pub fn html(page: &'static str) -> Response {
    let mut r = page.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}
