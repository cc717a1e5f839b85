//! ConnectWise's companies for the mapping suggestions, read once and kept a few
//! minutes (a mapping session looks at many customers against the same list),
//! and the ConnectWise client the console's mapping pages use.

use super::page::ConsoleError;
use crate::connectwise::client::ConnectWiseClient;
use crate::domain::suggest::{CompanyCandidate, CompanyIndex};
use crate::http::{ApiCounters, HttpPolicy};
use crate::state::Web;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long the companies read from ConnectWise are used before they are read
/// again (the page also offers "read them again now").
pub const TTL: Duration = Duration::from_secs(5 * 60);

/// The index of every company and when it was read.
pub struct Companies {
    pub index: Arc<CompanyIndex>,
    pub read_at: Instant,
}

/// The companies (recycle bin included), from the cache while it is younger
/// than [`TTL`] and `refresh` is false, else read from ConnectWise. The lock
/// is held while reading, so pages opened together read ConnectWise once.
pub async fn get(web: &Web, refresh: bool) -> Result<Companies, ConsoleError> {
    let mut cached = web.console.companies.cached.lock().await;
    if let Some((at, index)) = cached.as_ref() {
        if !refresh && at.elapsed() < TTL {
            return Ok(Companies {
                index: index.clone(),
                read_at: *at,
            });
        }
    }
    let cw = connectwise(web).await?;
    let companies = cw
        .companies_for_suggestions()
        .await
        .map_err(|e| failed("read the list of companies", &e))?;
    let candidates = companies.iter().map(CompanyCandidate::from).collect();
    let index = Arc::new(CompanyIndex::new(candidates));
    let now = Instant::now();
    *cached = Some((now, index.clone()));
    Ok(Companies {
        index,
        read_at: now,
    })
}

/// A ConnectWise client from the secret in force, or a 503 page saying why not.
pub async fn connectwise(web: &Web) -> Result<ConnectWiseClient, ConsoleError> {
    let secrets = web.app.secrets.get().await.map_err(|e| {
        tracing::error!(error = %e, "console: cannot load the secrets");
        ConsoleError::Unavailable(
            "the service cannot read its secrets, so it cannot ask ConnectWise; the operator finds the cause in the service log".into(),
        )
    })?;
    let counters = Arc::new(ApiCounters::default());
    let (_sophos, cw) =
        crate::wiring::build_clients_with_policy(&web.app.env, &secrets, counters, policy())
            .await
        .map_err(|e| {
            tracing::error!(error = %e, "console: cannot connect to ConnectWise");
            ConsoleError::Unavailable(format!(
                "ConnectWise could not be reached ({e}); nothing was changed. Try again in a moment, or check the connectwise entries of the secret"
            ))
        })?;
    Ok(cw)
}

/// A person is waiting for the page: shorter timeouts and fewer retries than a
/// sync's, so a ConnectWise outage shows as a 503 page soon rather than a hang.
fn policy() -> HttpPolicy {
    HttpPolicy {
        timeout: Duration::from_secs(15),
        max_retries: 1,
        max_retry_after: Duration::from_secs(5),
        ..HttpPolicy::default()
    }
}

/// A ConnectWise call that failed, as a 503 page that says what failed.
pub fn failed(what: &str, e: &crate::http::ApiError) -> ConsoleError {
    tracing::error!(error = %e, "console: a ConnectWise call failed");
    ConsoleError::Unavailable(format!(
        "ConnectWise failed when the console tried to {what}: {e}. Nothing was changed; try again in a moment"
    ))
}

/// "read 3 min ago", for the page.
pub fn age(read_at: Instant) -> String {
    let secs = read_at.elapsed().as_secs();
    match secs {
        0..=59 => "just now".into(),
        60..=119 => "1 minute ago".into(),
        s => format!("{} minutes ago", s / 60),
    }
}
