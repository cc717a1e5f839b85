//! The one loop behind every create ConnectWise cannot make idempotent (an
//! agreement addition, a catalog item): a POST whose outcome is unknown (5xx,
//! timeout, broken answer) is never repeated blindly. After each lost answer it
//! waits one backoff (a request still being processed gets a moment to land),
//! reads back, and sends the POST again only when the read-back found nothing.
//!
//! The budget is the client's own: at most `HttpPolicy::max_retries + 1` POSTs,
//! each lost answer followed by one backoff wait and one read-back.

use crate::http::{ApiError, HttpPolicy};

/// What a read-back found of the thing a lost POST was to create.
pub(super) enum ReadBack<T, A> {
    Nothing,
    One(T),
    /// More than one candidate: none may be taken for ours.
    Several(A),
}

/// How a verified create ended.
pub(super) enum Verified<C, T, A> {
    /// ConnectWise answered the POST with the created thing.
    Answered(C),
    /// The answer was lost; reading back found exactly one.
    FoundOnReadBack(T),
    /// The answer was lost; reading back found several.
    Ambiguous(A),
    /// ConnectWise refused the POST (its outcome is known: nothing landed).
    Refused(ApiError),
    /// The answer was lost and reading back failed: it may have landed.
    Unverified { lost: ApiError, read: ApiError },
    /// Every POST's answer was lost and each read-back found nothing.
    NotLanded { lost: ApiError, attempts: u32 },
}

/// Sends `post` and, when its answer is lost, verifies with `read_back` (see the
/// module's doc). `what` names the create in the log.
/// (Closures returning futures rather than async closures: the engine's futures
/// must be `Send`, which async closures do not yet prove.)
pub(super) async fn create_verified<C, T, A, Post, Read>(
    policy: &HttpPolicy,
    what: &str,
    mut post: impl FnMut() -> Post,
    mut read_back: impl FnMut() -> Read,
) -> Verified<C, T, A>
where
    Post: Future<Output = Result<C, ApiError>>,
    Read: Future<Output = Result<ReadBack<T, A>, ApiError>>,
{
    let attempts = policy.max_retries + 1;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let lost = match post().await {
            Ok(created) => return Verified::Answered(created),
            Err(e) if !e.outcome_unknown() => return Verified::Refused(e),
            Err(e) => e,
        };
        tracing::warn!(what, error = %lost, "a create's answer was lost: reading back");
        let wait = crate::http::retry::backoff_delay(attempt - 1, policy, &mut rand::rng());
        tokio::time::sleep(wait).await;
        match read_back().await {
            Err(read) => return Verified::Unverified { lost, read },
            Ok(ReadBack::One(found)) => return Verified::FoundOnReadBack(found),
            Ok(ReadBack::Several(found)) => return Verified::Ambiguous(found),
            Ok(ReadBack::Nothing) if attempt >= attempts => {
                return Verified::NotLanded { lost, attempts };
            }
            // Not created: safe to send again.
            Ok(ReadBack::Nothing) => {}
        }
    }
}
