//! The quality dashboard at `GET /` on 8031: one self-contained HTML page (`dashboard.html`,
//! compiled in; inline CSS, JS and SVG charts, no CDN, no build step). It lists `/monitors`,
//! then follows the chosen monitor's `/ws/monitors/{id}` (snapshot, then changed windows;
//! reconnecting): volume, compliance and completeness per window, drift per field and the open
//! conditions (drifted fields, anomalous metrics, schema violations) of the newest window. The
//! page builds its DOM with text nodes only.

use axum::response::Response;
use loom_http::{ApiRouter, routes};

const PAGE: &str = include_str!("dashboard.html");

pub fn routes() -> ApiRouter {
    ApiRouter::new().routes(routes!(page))
}

/// The quality dashboard (one self-contained HTML page).
#[utoipa::path(get, path = "/", responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String)))]
async fn page() -> Response {
    loom_http::page::html(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_uses_only_real_routes() {
        // (what, must the page contain it)
        let cases = [
            ("/ws/monitors/", true),
            ("fetch(\"/monitors\")", true),
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
