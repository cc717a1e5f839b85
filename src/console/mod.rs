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

pub mod page;
pub mod pages;
pub mod scan;
pub mod session;
pub mod suggest;

use crate::web::Web;
use axum::Router;
use std::time::Duration;

/// Where a signed-in operator lands.
pub const HOME: &str = "/console/";

/// How the console behaves; the defaults are the production ones.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Mark the session cookie `Secure` (browsers then send it over https only).
    /// Only `serve --insecure-local-cookies` on a loopback address turns it off.
    pub secure_cookies: bool,
    /// A refused password is answered after exactly this long from the request's
    /// arrival, whatever went wrong, so the answer's timing tells nothing and
    /// guessing is slow.
    pub login_delay: Duration,
    /// How long a session lasts.
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            secure_cookies: true,
            login_delay: Duration::from_secs(1),
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

/// The console's state, shared by its handlers.
pub struct Console {
    pub config: ConsoleConfig,
    /// ConnectWise's companies for the mapping suggestions, kept a few minutes.
    pub companies: companies::CompanyCache,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Self {
        Self {
            config,
            companies: companies::CompanyCache::default(),
        }
    }
}

/// Every console route, with the security headers on every answer.
pub fn routes(web: Web) -> Router<Web> {
    pages::routes()
        .merge(assets::routes())
        .layer(axum::middleware::map_response_with_state(
            web,
            page::security_headers,
        ))
}
