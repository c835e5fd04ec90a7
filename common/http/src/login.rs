//! Browser sessions for the dashboards when tokens are configured: a plain browser cannot send
//! `Authorization: Bearer`, so `GET /login` shows a form, `POST /login` checks the token and
//! keeps it in an `HttpOnly; SameSite=Strict` cookie (`loom_session`), which [`Auth`] accepts
//! like the header on every port of the host; `POST /logout` clears it. A browser asking an
//! HTML page without credentials is redirected to the form (see `layers.rs`). SameSite=Strict
//! keeps the cookie off cross-site requests, so another site cannot ride the session.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::{ApiRouter, Auth, Problem, routes};

pub const SESSION_COOKIE: &str = "loom_session";
/// How long a session cookie lives (12 h).
const SESSION_SECONDS: u32 = 12 * 3600;

pub fn routes(auth: Auth) -> ApiRouter {
    ApiRouter::new().routes(routes!(form, login)).routes(routes!(logout)).with_state(auth)
}

/// Where to go after signing in: a path on this host only (no scheme, no `//host`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// `/login?next=…` for a request to `path_and_query`.
pub fn login_location(path_and_query: &str) -> String {
    let next: String = form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    format!("/login?next={next}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(next: &str, message: Option<&str>) -> String {
    let message = message.map(|m| format!("<p class=\"err\">{}</p>", escape(m))).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Loom — sign in</title>\
         <style>body{{font:15px system-ui,sans-serif;max-width:26rem;margin:4rem auto;color:#1b1f24}}\
         input{{width:100%;padding:.5rem;margin:.4rem 0;box-sizing:border-box}}button{{padding:.5rem 1.2rem}}\
         .err{{color:#cf222e}}</style></head><body><h1>Loom</h1><p>Sign in with an API token \
         (one of <code>LOOM_AUTH_TOKENS</code>).</p>{message}<form method=\"post\" action=\"/login\">\
         <label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label>\
         <input type=\"hidden\" name=\"next\" value=\"{next}\"><button type=\"submit\">Sign in</button></form></body></html>",
        next = escape(next),
    )
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// The sign-in form.
#[utoipa::path(get, path = "/login", params(("next" = Option<String>, Query, description = "the path to return to")),
    responses((status = 200, description = "an HTML form posting the token to /login", content_type = "text/html", body = String)))]
async fn form(Query(q): Query<Next>) -> Html<String> {
    Html(page(safe_next(q.next.as_deref()), None))
}

/// The sign-in form's fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads it with `form_urlencoded`
struct LoginForm {
    /// a bearer token from `LOOM_AUTH_TOKENS`
    token: String,
    /// the local path to return to
    next: Option<String>,
}

/// Checks a token from the form and keeps it in an `HttpOnly; SameSite=Strict` session cookie.
#[utoipa::path(post, path = "/login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed in: `Set-Cookie: loom_session=…; HttpOnly; SameSite=Strict`, back to `next`"),
        (status = 401, description = "the token is not recognized: the form again", content_type = "text/html", body = String)))]
async fn login(State(auth): State<Auth>, body: Bytes) -> Response {
    let mut token = None;
    let mut next = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "token" => token = Some(v.into_owned()),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(token) = token else {
        return Problem::new(StatusCode::BAD_REQUEST, "missing_token", "the form has no `token` field").into_response();
    };
    let next = safe_next(next.as_deref()).to_owned();
    if !auth.enabled() {
        return redirect(&next, None); // nothing to keep: every route is open
    }
    if auth.caller(token.trim()).is_none() {
        return (StatusCode::UNAUTHORIZED, Html(page(&next, Some("That token is not recognized.")))).into_response();
    }
    let cookie =
        format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}", token.trim());
    redirect(&next, Some(cookie))
}

/// Ends the browser session (clears the cookie).
#[utoipa::path(post, path = "/logout", responses((status = 303, description = "signed out, to /login")))]
async fn logout() -> Response {
    redirect("/login", Some(format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")))
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(header::LOCATION, location);
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_host() {
        let cases = [
            (None, "/"),
            (Some("/"), "/"),
            (Some("/monitors?x=1"), "/monitors?x=1"),
            (Some("//evil.example/"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some(""), "/"),
        ];
        for (next, want) in cases {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
    }

    #[test]
    fn the_login_location_carries_the_path_encoded() {
        assert_eq!(login_location("/a?b=c&d"), "/login?next=%2Fa%3Fb%3Dc%26d");
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let p = page("/\"><script>", Some("<b>"));
        assert!(!p.contains("<script>") && !p.contains("<b>"));
    }
}
