//! The operator console: server-rendered pages (askama, auto-escaped) under
//! `/console`, beside the JSON API. Plain HTML forms that POST and redirect (303);
//! one vendored script (htmx) for filters and progress, and the pages work without
//! it. Sign-in with the secret's `consoleToken`; a signed session cookie; CSRF and
//! a strict Content-Security-Policy on every response.

pub mod assets;
pub mod audit_log;
pub mod companies;
pub mod csrf;
pub mod csv;
pub mod lockout;

pub mod page;
pub mod pages;
pub mod scan;
pub mod session;

use crate::state::Web;
use axum::Router;

/// Where a signed-in operator lands.
pub const HOME: &str = "/console/";

pub use crate::state::ConsoleConfig;

/// Every console route, with the security headers on every answer.
pub fn routes(web: Web) -> Router<Web> {
    pages::routes()
        .merge(assets::routes())
        .layer(axum::middleware::map_response_with_state(
            web,
            page::security_headers,
        ))
}
