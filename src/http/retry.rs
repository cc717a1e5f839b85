//! Pure retry decisions: which outcomes are retried, how long to wait.
//!
//! Kept free of I/O so the rules can be unit-tested; `super::send` applies them.

use super::HttpPolicy;
use chrono::{DateTime, Utc};
use rand::{Rng, RngExt};
use std::time::Duration;

/// What one HTTP attempt ended with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this status.
    Status { code: u16, retry_after: bool },
    /// The connection was never established: the server cannot have seen the request.
    ConnectFailed,
    /// No complete answer within the timeout; the server may have processed the request.
    TimedOut,
    /// The connection broke after the request was sent (reset, body cut short).
    BrokenAfterSend,
    /// The request could not even be built: repeating it cannot help.
    NotSent,
}

/// Whether an attempt that ended with `outcome` may be tried again.
///
/// Idempotent requests (GET, and PATCH/PUT that set a field to an absolute value,
/// e.g. `quantity = 45`) can be repeated safely: retry on 429, 500, 502, 503, 504,
/// connect errors, timeouts and broken connections.
///
/// Non-idempotent requests (POST creating an addition or catalog item) must NOT be
/// repeated once the server may have received them: ConnectWise has no idempotency
/// key, so a POST that timed out or got a 5xx may still have created the record and
/// a retry would create a duplicate addition (double billing). A POST is retried only
/// when the server cannot have acted on it: 429 (refused before processing), 503 with
/// `Retry-After` (the server says it did not take the request and when to come back),
/// or a connect error (never reached the server).
pub fn should_retry(idempotent: bool, outcome: Outcome) -> bool {
    match outcome {
        Outcome::ConnectFailed => true,
        Outcome::Status { code: 429, .. } => true,
        Outcome::Status {
            code: 503,
            retry_after: true,
        } => true,
        Outcome::Status { code, .. } => idempotent && matches!(code, 500 | 502 | 503 | 504),
        Outcome::TimedOut | Outcome::BrokenAfterSend => idempotent,
        Outcome::NotSent => false,
    }
}

/// Exponential backoff with full jitter: a uniform delay in `[0, min(max_delay,
/// base_delay * 2^attempt)]`. Full jitter spreads concurrent workers apart so they do
/// not hit a recovering server in lock-step. `attempt` counts from 0 (first retry).
pub fn backoff_delay<R: Rng + ?Sized>(attempt: u32, policy: &HttpPolicy, rng: &mut R) -> Duration {
    let ceiling = backoff_ceiling(attempt, policy);
    let max_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=max_ms))
}

/// The upper bound of [`backoff_delay`] for `attempt`, saturating instead of overflowing.
pub fn backoff_ceiling(attempt: u32, policy: &HttpPolicy) -> Duration {
    let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
    policy
        .base_delay
        .checked_mul(factor)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`). A date in the past means "now". Anything
/// else is ignored (None) and the normal backoff applies.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// How long to wait before the next attempt: the server's `Retry-After` when it sent
/// one (capped so a hostile or confused server cannot park us for hours), else backoff.
pub fn next_delay<R: Rng + ?Sized>(
    attempt: u32,
    retry_after: Option<Duration>,
    policy: &HttpPolicy,
    rng: &mut R,
) -> Duration {
    match retry_after {
        Some(wait) => wait.min(policy.max_retry_after),
        None => backoff_delay(attempt, policy, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn status(code: u16, retry_after: bool) -> Outcome {
        Outcome::Status { code, retry_after }
    }

    #[test]
    fn idempotent_requests_retry_on_transient_failures() {
        for code in [429, 500, 502, 503, 504] {
            assert!(should_retry(true, status(code, false)), "{code}");
        }
        assert!(should_retry(true, Outcome::ConnectFailed));
        assert!(should_retry(true, Outcome::TimedOut));
        assert!(should_retry(true, Outcome::BrokenAfterSend));
    }

    #[test]
    fn permanent_statuses_are_not_retried() {
        for code in [200, 201, 400, 401, 403, 404, 409, 422, 501] {
            assert!(!should_retry(true, status(code, false)), "{code}");
            assert!(!should_retry(false, status(code, true)), "{code}");
        }
    }

    #[test]
    fn post_is_retried_only_when_the_server_cannot_have_acted() {
        assert!(should_retry(false, status(429, false)));
        assert!(should_retry(false, status(503, true)));
        assert!(should_retry(false, Outcome::ConnectFailed));
        // May have been processed: a retry could create a duplicate addition.
        assert!(!should_retry(false, status(500, false)));
        assert!(!should_retry(false, status(500, true)));
        assert!(!should_retry(false, status(502, false)));
        assert!(!should_retry(false, status(503, false)));
        assert!(!should_retry(false, status(504, false)));
        assert!(!should_retry(false, Outcome::TimedOut));
        assert!(!should_retry(false, Outcome::BrokenAfterSend));
        assert!(!should_retry(false, Outcome::NotSent));
        assert!(!should_retry(true, Outcome::NotSent));
    }

    #[test]
    fn backoff_ceiling_grows_and_caps() {
        let p = HttpPolicy::default();
        assert_eq!(backoff_ceiling(0, &p), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(1, &p), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(3, &p), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(6, &p), Duration::from_secs(30));
        assert_eq!(backoff_ceiling(40, &p), Duration::from_secs(30));
        assert_eq!(backoff_ceiling(u32::MAX, &p), Duration::from_secs(30));
    }

    #[test]
    fn backoff_delay_stays_within_bounds_and_jitters() {
        let p = HttpPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..12 {
            let cap = backoff_ceiling(attempt, &p);
            let delays: Vec<_> = (0..50)
                .map(|_| backoff_delay(attempt, &p, &mut rng))
                .collect();
            assert!(delays.iter().all(|d| *d <= cap), "attempt {attempt}");
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 1, "no jitter at attempt {attempt}");
        }
    }

    #[test]
    fn backoff_mean_grows_with_attempts() {
        let p = HttpPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mean = |a: u32, rng: &mut StdRng| -> u128 {
            (0..400)
                .map(|_| backoff_delay(a, &p, rng).as_millis())
                .sum::<u128>()
                / 400
        };
        let (m0, m2, m4) = (mean(0, &mut rng), mean(2, &mut rng), mean(4, &mut rng));
        assert!(m0 < m2 && m2 < m4, "{m0} {m2} {m4}");
    }

    #[test]
    fn zero_base_delay_never_sleeps() {
        let p = HttpPolicy {
            base_delay: Duration::ZERO,
            ..HttpPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(backoff_delay(5, &p, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds() {
        let now = Utc::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 30).unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already passed means: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = Utc::now();
        for v in ["", "soon", "-5", "1.5", "12abc", "Wed, 99 Foo 2015"] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }

    #[test]
    fn next_delay_caps_retry_after() {
        let p = HttpPolicy::default();
        let mut rng = StdRng::seed_from_u64(9);
        let long = Some(Duration::from_secs(3600));
        assert_eq!(next_delay(0, long, &p, &mut rng), p.max_retry_after);
        let short = Some(Duration::from_secs(2));
        assert_eq!(next_delay(0, short, &p, &mut rng), Duration::from_secs(2));
        assert!(next_delay(0, None, &p, &mut rng) <= p.base_delay);
    }
}
