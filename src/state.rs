//! What every HTTP handler shares: the application and the console's own state.
//! It sits below both the router (`crate::web`) and the console's pages
//! (`crate::console`), so neither imports the other to reach it.

use crate::app::App;
use crate::domain::suggest::CompanyIndex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What every handler of the router shares.
#[derive(Clone)]
pub struct Web {
    pub app: Arc<App>,
    pub console: Arc<ConsoleState>,
}

impl Web {
    pub fn new(app: Arc<App>, config: ConsoleConfig) -> Self {
        Self {
            app,
            console: Arc::new(ConsoleState::new(config)),
        }
    }
}

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
pub struct ConsoleState {
    pub config: ConsoleConfig,
    /// ConnectWise's companies for the mapping suggestions, kept a few minutes
    /// (read and refreshed by `crate::console::companies`).
    pub companies: CompanyCache,
    /// The OpenID Connect issuer's discovery document, kept ~10 minutes.
    pub oidc: crate::auth::oidc::DiscoveryCache,
}

impl ConsoleState {
    pub fn new(config: ConsoleConfig) -> Self {
        Self {
            config,
            companies: CompanyCache::default(),
            oidc: Default::default(),
        }
    }
}

/// The last index of ConnectWise's companies and when it was read.
#[derive(Default)]
pub struct CompanyCache {
    pub(crate) cached: Mutex<Option<(Instant, Arc<CompanyIndex>)>>,
}
