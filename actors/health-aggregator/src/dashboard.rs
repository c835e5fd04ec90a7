//! The health dashboard at `GET /` on 8030: one self-contained HTML page (`dashboard.html`,
//! compiled in; inline CSS and JS, no CDN, no build step) showing nodes, services per node, the
//! dependency graph, incidents and SLA. It loads `/cluster/members`, `/dependencies`,
//! `/incidents` and `/sla` once, then follows `/ws/health` (reconnecting with `?since=`). The
//! page builds its DOM with text nodes only, and a content security policy keeps it to this
//! origin.

use axum::response::Response;
use loom_http::{ApiRouter, routes};

const PAGE: &str = include_str!("dashboard.html");

pub fn routes() -> ApiRouter {
    ApiRouter::new().routes(routes!(page))
}

/// The live health dashboard (one self-contained HTML page).
#[utoipa::path(get, path = "/", responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String)))]
async fn page() -> Response {
    loom_http::page::html(PAGE)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_page_is_self_contained_html() {
        let r = axum::Router::from(routes()).oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        // (what, must the page contain it)
        let cases = [
            ("/ws/health", true),
            ("/dependencies", true),
            ("/incidents", true),
            ("/sla", true),
            ("<script src", false),
            ("<link", false),
            ("src=\"http", false),
            ("href=\"http", false),
            ("url(", false),
            ("@import", false),
            ("innerHTML", false),
        ];
        for (needle, present) in cases {
            assert_eq!(PAGE.contains(needle), present, "{needle}");
        }
    }
}
