//! Shared HTTP plumbing for the Sophos and ConnectWise clients: timeouts and retry
//! policy, call counters, the common error type, the retrying request executor and
//! the adaptive concurrency limit it applies (ConnectWise).

pub mod error;
pub mod limit;
pub mod retry;
mod send;

pub use error::{ApiError, ApiErrorKind, FieldProblem};
pub use limit::{AdaptiveLimit, ThrottleStats};
pub(crate) use send::{Call, RawResponse, header_str, parse_json, send, send_limited};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Timeouts and retry limits applied to every vendor request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Whole-request timeout (connect, send, and read the full body).
    pub timeout: Duration,
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// First backoff ceiling; doubles per retry.
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
    /// Largest wait we accept from a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Counts of HTTP attempts made, shared (via `Arc`) by the clients of one run.
/// Every attempt counts, retries included: the numbers are what the vendors saw.
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub sophos_calls: AtomicU64,
    pub connectwise_calls: AtomicU64,
    /// ConnectWise POST/PATCH attempts (also counted in `connectwise_calls`).
    pub connectwise_writes: AtomicU64,
}

/// A point-in-time copy of [`ApiCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    pub sophos_calls: u64,
    pub connectwise_calls: u64,
    pub connectwise_writes: u64,
}

impl ApiCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            sophos_calls: self.sophos_calls.load(Ordering::Relaxed),
            connectwise_calls: self.connectwise_calls.load(Ordering::Relaxed),
            connectwise_writes: self.connectwise_writes.load(Ordering::Relaxed),
        }
    }
}

/// The reqwest client both vendor clients use by default. Timeouts are set per
/// request from [`HttpPolicy`], not here.
pub fn default_client() -> reqwest::Client {
    let agent = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));
    reqwest::Client::builder()
        .user_agent(agent)
        .build()
        // Building only fails if the TLS backend cannot initialise, which is a broken
        // install rather than a runtime condition; fall back to reqwest's defaults.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults() {
        let p = HttpPolicy::default();
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.max_retries, 5);
        assert_eq!(p.base_delay, Duration::from_millis(500));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        assert_eq!(p.max_retry_after, Duration::from_secs(120));
    }

    #[test]
    fn snapshot_reads_counters() {
        let c = ApiCounters::default();
        c.sophos_calls.fetch_add(2, Ordering::Relaxed);
        c.connectwise_writes.fetch_add(1, Ordering::Relaxed);
        let s = c.snapshot();
        assert_eq!(
            s,
            CounterSnapshot {
                sophos_calls: 2,
                connectwise_calls: 0,
                connectwise_writes: 1
            }
        );
    }
}
