//! Password guessing is limited, not only slowed: after [`MAX_FAILURES`] wrong
//! console passwords within [`WINDOW`], password sign-in is refused (429) for
//! [`LOCK`], even with the right password. Both the count and the lock live in the
//! store (`Store::count_event`, `Store::claim_once`), so they hold across Lambda
//! containers. Sign-in through the identity provider is not affected: only the
//! shared password can be guessed.
//!
//! Every function takes `now`, so tests choose the times instead of waiting.

use crate::console::audit_log::{self, ConsoleAction};
use crate::console::page::{Layout, render_with};
use crate::store::{Store, StoreError, StoreResult};
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

/// Wrong passwords that lock password sign-in...
pub const MAX_FAILURES: u32 = 10;
/// ...when they fall within this window (from the first of them)...
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// ...for this long.
pub const LOCK: Duration = Duration::from_secs(15 * 60);

/// The counter of wrong passwords (one for the console: the password is shared).
const FAILURES_KEY: &str = "console-password#failures";
/// The lock: a claim whose value is the instant it ends (RFC 3339).
const LOCK_KEY: &str = "console-password#locked";

/// What one more wrong password did.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Counted: this many wrong passwords in the current window.
    Counted(u32),
    /// This one started the lock, which ends at the instant given.
    LockStarted(DateTime<Utc>),
    /// Another container started the lock at the same time.
    AlreadyLocked(DateTime<Utc>),
}

/// When password sign-in is locked at `now`, until when.
pub async fn locked_until(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> StoreResult<Option<DateTime<Utc>>> {
    match store.claimed(LOCK_KEY, now).await? {
        Some(until) => parse_until(&until).map(Some),
        None => Ok(None),
    }
}

/// Counts one wrong password at `now`; the [`MAX_FAILURES`]th of a window locks
/// password sign-in for [`LOCK`].
pub async fn record_failure(store: &dyn Store, now: DateTime<Utc>) -> StoreResult<Failure> {
    let count = store.count_event(FAILURES_KEY, now, WINDOW).await?;
    if count < MAX_FAILURES {
        return Ok(Failure::Counted(count));
    }
    let until = now + chrono::Duration::from_std(LOCK).unwrap_or(chrono::Duration::minutes(15));
    let value = until.to_rfc3339_opts(SecondsFormat::Millis, true);
    match store.claim_once(LOCK_KEY, &value, now, LOCK).await? {
        None => Ok(Failure::LockStarted(until)),
        Some(other) => Ok(Failure::AlreadyLocked(parse_until(&other)?)),
    }
}

fn parse_until(value: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            StoreError::Corrupt(format!(
                "the console's password lock holds {value:?}, not an instant ({e}); delete the \
                 claim {LOCK_KEY:?} to lift the lock"
            ))
        })
}

/// Records on the audit trail that password sign-in is now locked.
pub async fn audit_lock_started(store: &dyn Store, until: DateTime<Utc>) -> StoreResult<()> {
    audit_log::record(
        store,
        ConsoleAction {
            actor: "console:anonymous".into(),
            action: "consoleLoginLocked",
            tenant_id: None,
            agreement_id: None,
            detail: format!(
                "password sign-in locked until {} after {MAX_FAILURES} wrong passwords within \
                 {} minutes",
                at(until),
                WINDOW.as_secs() / 60
            ),
        },
    )
    .await
}

/// Records a password attempt refused because of the lock (its password unchecked).
pub async fn audit_refused(store: &dyn Store, until: DateTime<Utc>) -> StoreResult<()> {
    audit_log::record(
        store,
        ConsoleAction {
            actor: "console:anonymous".into(),
            action: "consoleLoginFailed",
            tenant_id: None,
            agreement_id: None,
            detail: format!(
                "sign-in refused: password sign-in is locked until {}",
                at(until)
            ),
        },
    )
    .await
}

#[derive(Template)]
#[template(path = "error.html")]
struct LockedPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// The 429 page: what happened, when to try again, and the way in that still works.
pub fn locked_response(until: DateTime<Utc>, now: DateTime<Utc>, oidc: bool) -> Response {
    let other_way = if oidc {
        "Signing in through your identity provider still works: use its button on the sign-in page."
    } else {
        "Signing in through an identity provider is not affected (once CONSOLE_OIDC_ISSUER and \
         CONSOLE_OIDC_CLIENT_ID are configured)."
    };
    let message = format!(
        "Password sign-in is locked after {MAX_FAILURES} wrong passwords within {} minutes. \
         Try the password again after {}. {other_way}",
        WINDOW.as_secs() / 60,
        at(until)
    );
    let page = LockedPage {
        layout: Layout::anonymous("login"),
        status: 429,
        title: "Too many wrong passwords",
        message: &message,
    };
    let mut response = render_with(StatusCode::TOO_MANY_REQUESTS, &page);
    let wait = (until - now).num_seconds().max(1);
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
    }

    fn mins(n: i64) -> chrono::Duration {
        chrono::Duration::minutes(n)
    }

    /// Nine wrong passwords at `t0` + 0..9 seconds.
    async fn nine(store: &dyn Store) {
        for i in 0..9 {
            let got = record_failure(store, t0() + chrono::Duration::seconds(i))
                .await
                .unwrap();
            assert_eq!(got, Failure::Counted(u32::try_from(i + 1).unwrap()));
        }
    }

    #[tokio::test]
    async fn fewer_than_ten_wrong_passwords_do_not_lock() {
        let store = SqliteStore::open_in_memory().unwrap();
        nine(&store).await;
        assert_eq!(locked_until(&store, t0() + mins(1)).await.unwrap(), None);
        // The window ends 15 minutes after the first: the count starts again.
        let later = t0() + mins(15);
        assert_eq!(
            record_failure(&store, later).await.unwrap(),
            Failure::Counted(1)
        );
        assert_eq!(locked_until(&store, later).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_tenth_locks_for_fifteen_minutes_then_the_password_works_again() {
        let store = SqliteStore::open_in_memory().unwrap();
        nine(&store).await;
        let tenth = t0() + mins(5);
        let until = tenth + mins(15);
        assert_eq!(
            record_failure(&store, tenth).await.unwrap(),
            Failure::LockStarted(until)
        );
        assert_eq!(
            locked_until(&store, tenth + mins(1)).await.unwrap(),
            Some(until)
        );
        assert_eq!(
            locked_until(&store, until - chrono::Duration::seconds(1))
                .await
                .unwrap(),
            Some(until)
        );
        // Over: no lock, and the next wrong password starts a new count.
        let after = until + chrono::Duration::milliseconds(1);
        assert_eq!(locked_until(&store, after).await.unwrap(), None);
        assert_eq!(
            record_failure(&store, after).await.unwrap(),
            Failure::Counted(1)
        );
    }

    #[tokio::test]
    async fn another_container_sees_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let one = SqliteStore::open(&path).unwrap();
        let two = SqliteStore::open(&path).unwrap();
        // Failures counted in two containers add up.
        for i in 0..10 {
            let store: &dyn Store = if i % 2 == 0 { &one } else { &two };
            record_failure(store, t0() + chrono::Duration::seconds(i))
                .await
                .unwrap();
        }
        let until = t0() + chrono::Duration::seconds(9) + mins(15);
        assert_eq!(
            locked_until(&one, t0() + mins(1)).await.unwrap(),
            Some(until)
        );
        assert_eq!(
            locked_until(&two, t0() + mins(1)).await.unwrap(),
            Some(until)
        );
        // A failure racing the lock is told the lock that stands.
        assert_eq!(
            record_failure(&two, t0() + mins(2)).await.unwrap(),
            Failure::AlreadyLocked(until)
        );
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_locked_page_says_when_and_the_other_way_in() {
        let until = t0() + mins(15);
        let response = locked_response(until, t0(), true);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "900");
        let page = body(response).await;
        assert!(
            page.contains("after 10 wrong passwords within 15 minutes"),
            "{page}"
        );
        assert!(
            page.contains("Try the password again after 2026-12-07 09:15:00 UTC"),
            "{page}"
        );
        assert!(page.contains("identity provider still works"), "{page}");
        // Without OpenID Connect, it says how to set it up.
        let page = body(locked_response(until, t0(), false)).await;
        assert!(page.contains("CONSOLE_OIDC_ISSUER"), "{page}");
    }
}
