//! Optional bearer-token auth with `read` / `write` / `admin` scopes. Which scope a request
//! needs follows from its method and path (one rule, here); `/health` and `/ready` stay open so
//! orchestrators can probe, and so do the API's description (`/openapi.json`, `/docs`) and the
//! browser sign-in (`/login`, `/logout`). A browser session's cookie counts as the bearer header.
//! Tokens are compared in constant time and never logged.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use loom_config::AuthSection;
use loom_protocol::Scope;

use crate::Problem;

/// Sensitive routes outside `/admin` that need the `admin` scope whatever the method: reversing
/// anonymization, GDPR erasure, the audit log, and privacy policies (they decide what is
/// anonymized: a weaker one would publish raw data).
const ADMIN_ROUTES: [&str; 4] = ["/deanonymize", "/gdpr", "/audit", "/policies"];

#[derive(Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<Token>>,
}

struct Token {
    name: String,
    secret: Vec<u8>,
    scope: Scope,
}

/// Who made an authorized request (absent when auth is off or the route is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Auth {
    pub fn from_config(section: &AuthSection) -> Auth {
        let tokens = section
            .tokens
            .iter()
            .filter_map(|t| {
                Some(Token {
                    name: t.name.clone(),
                    secret: t.token.expose().as_bytes().to_vec(),
                    scope: t.max_scope()?,
                })
            })
            .collect();
        Auth { tokens: Arc::new(tokens) }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The scope a request needs, or `None` for an open route.
    pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
        if matches!(path, "/health" | "/ready" | "/openapi.json" | "/docs" | "/login" | "/logout") {
            None
        } else if path == "/admin"
            || path.starts_with("/admin/")
            || ADMIN_ROUTES.iter().any(|r| path == *r || path.starts_with(&format!("{r}/")))
        {
            Some(Scope::Admin)
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Some(Scope::Read)
        } else {
            Some(Scope::Write)
        }
    }

    /// Checks the request's bearer token against the scope its route needs.
    pub fn authorize(&self, headers: &HeaderMap, method: &Method, path: &str) -> Result<Option<Caller>, Problem> {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(required) = Self::required_scope(method, path) else { return Ok(None) };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .or_else(|| session_cookie(headers));
        let Some(presented) = presented else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("this route needs a bearer token with the `{required}` scope"),
            ));
        };
        match self.caller(presented) {
            None => Err(Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", "the bearer token is not recognized")),
            Some(c) if !c.scope.grants(required) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this route needs the `{required}` scope; the token has `{}`", c.scope),
            )),
            Some(c) => Ok(Some(c)),
        }
    }

    /// Who holds `presented`, if it is one of the configured tokens.
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let token = self.tokens.iter().find(|t| constant_time_eq(&t.secret, presented.as_bytes()))?;
        Some(Caller { name: token.name.clone(), scope: token.scope })
    }
}

/// The browser session's token (`loom_session` cookie, set by `POST /login`).
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == crate::login::SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.trim())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use loom_config::{Secret, TokenConfig};

    use super::*;

    fn auth() -> Auth {
        let token = |name: &str, scope: Scope| TokenConfig {
            name: name.into(),
            token: Secret::new(format!("{name}-token-0123456789")),
            scopes: vec![scope],
        };
        Auth::from_config(&AuthSection {
            tokens: vec![token("r", Scope::Read), token("w", Scope::Write), token("a", Scope::Admin)],
        })
    }

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(header::AUTHORIZATION, format!("Bearer {t}-token-0123456789").parse().unwrap());
        }
        h
    }

    /// (token, method, path, expected: Ok or the problem code)
    #[test]
    fn scopes_are_enforced_by_method_and_path() {
        let cases: &[(Option<&str>, Method, &str, Result<(), &str>)] = &[
            (None, Method::GET, "/health", Ok(())),
            (None, Method::GET, "/ready", Ok(())),
            (None, Method::GET, "/metrics", Err("unauthenticated")),
            (Some("x"), Method::GET, "/metrics", Err("invalid_token")),
            (Some("r"), Method::GET, "/metrics", Ok(())),
            (Some("r"), Method::POST, "/subjects/x/versions", Err("insufficient_scope")),
            (Some("w"), Method::POST, "/subjects/x/versions", Ok(())),
            (Some("w"), Method::DELETE, "/subjects/x", Ok(())),
            (Some("w"), Method::POST, "/admin/faults", Err("insufficient_scope")),
            (Some("a"), Method::POST, "/admin/faults", Ok(())),
            (Some("a"), Method::GET, "/version", Ok(())),
            (Some("r"), Method::GET, "/administrator", Ok(())),
        ];
        let auth = auth();
        for (token, method, path, want) in cases {
            let got = auth.authorize(&headers(*token), method, path).map(|_| ()).map_err(|p| p.code);
            assert_eq!(got, want.map_err(str::to_owned), "{token:?} {method} {path}");
        }
    }

    #[test]
    fn a_session_cookie_counts_as_the_bearer_header() {
        let auth = auth();
        let cases = [
            ("loom_session=r-token-0123456789", Method::GET, Ok(())),
            ("theme=dark; loom_session=r-token-0123456789", Method::GET, Ok(())),
            ("loom_session=r-token-0123456789", Method::POST, Err("insufficient_scope")),
            ("loom_session=nope", Method::GET, Err("invalid_token")),
            ("loom_session=", Method::GET, Err("unauthenticated")),
            ("other=r-token-0123456789", Method::GET, Err("unauthenticated")),
        ];
        for (cookie, method, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, cookie.parse().unwrap());
            let got = auth.authorize(&h, &method, "/jobs").map(|_| ()).map_err(|p| p.code);
            assert_eq!(got, want.map_err(str::to_owned), "{cookie} {method}");
        }
    }

    #[test]
    fn auth_off_lets_everything_through() {
        let auth = Auth::default();
        assert!(auth.authorize(&HeaderMap::new(), &Method::POST, "/admin/faults").unwrap().is_none());
    }

    #[test]
    fn constant_time_eq_matches_eq() {
        for (a, b) in [("", ""), ("a", "a"), ("a", "b"), ("ab", "a"), ("abc", "abd")] {
            assert_eq!(constant_time_eq(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
        }
    }
}
