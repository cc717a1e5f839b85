//! The retrying request executor shared by both clients.
//!
//! It returns any HTTP response it ends up with (success or not) so each client can
//! turn a vendor error body into an [`ApiError`] its own way; it only produces errors
//! itself for transport failures (timeout, refused or broken connection).

use super::HttpPolicy;
use super::error::{ApiError, ApiErrorKind, body_snippet};
use super::limit::{AdaptiveLimit, Attempt};
use super::retry::{Outcome, next_delay, parse_retry_after, should_retry};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Describes one logical call for retrying, counting, logging and errors.
pub(crate) struct Call<'a> {
    /// "sophos" | "connectwise" (goes into [`ApiError::api`] and logs).
    pub api: &'static str,
    /// "Sophos" | "ConnectWise" (for messages).
    pub vendor: &'static str,
    pub method: Method,
    /// Path only (no host, no query): safe to log.
    pub path: &'a str,
    /// May the request be repeated after the server might have processed it?
    /// See [`should_retry`] for why a POST usually may not.
    pub idempotent: bool,
    /// Incremented once per attempt.
    pub counter: &'a AtomicU64,
    /// Also incremented once per attempt (ConnectWise writes).
    pub write_counter: Option<&'a AtomicU64>,
}

/// A complete HTTP response (body fully read).
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The body is left out: a token response carries the bearer token.
impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl RawResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends the request built by `build` (called again for each attempt), retrying per
/// the policy and [`should_retry`]. Every attempt gets the policy timeout, so a
/// server that hangs becomes a `Timeout` error instead of a stuck run.
pub(crate) async fn send<F>(
    policy: &HttpPolicy,
    call: &Call<'_>,
    build: F,
) -> Result<RawResponse, ApiError>
where
    F: Fn() -> RequestBuilder,
{
    send_limited(policy, call, None, build).await
}

/// [`send`], each attempt passing `limit` first and telling it how it went.
///
/// A slot is kept across the backoff of a retry (a struggling server gets no
/// more requests from us while we wait to repeat one), except after a 429: the
/// limit has just been lowered, so the retry queues for a slot under it like any
/// other request instead of coming back at the old concurrency.
pub(crate) async fn send_limited<F>(
    policy: &HttpPolicy,
    call: &Call<'_>,
    limit: Option<&AdaptiveLimit>,
    build: F,
) -> Result<RawResponse, ApiError>
where
    F: Fn() -> RequestBuilder,
{
    let mut attempt: u32 = 0;
    let mut slot = None;
    loop {
        if let (None, Some(limit)) = (&slot, limit) {
            slot = Some(limit.acquire().await);
        }
        call.counter.fetch_add(1, Ordering::Relaxed);
        if let Some(writes) = call.write_counter {
            writes.fetch_add(1, Ordering::Relaxed);
        }
        let started = Instant::now();
        let result = attempt_once(build(), policy.timeout).await;
        let (outcome, retry_after) = classify(&result);
        log_attempt(call, &result, attempt, started.elapsed());
        let throttled = matches!(outcome, Outcome::Status { code: 429, .. });
        if let (Some(limit), Some(held)) = (limit, &slot) {
            limit.record(held, limit_attempt(outcome));
        }
        if throttled {
            slot = None;
        }
        if attempt >= policy.max_retries || !should_retry(call.idempotent, outcome) {
            return result.map_err(|e| transport_error(call, policy, &e, attempt + 1));
        }
        // ThreadRng is not Send: keep it out of scope across the await.
        let delay = next_delay(attempt, retry_after, policy, &mut rand::rng());
        tracing::debug!(
            api = call.api,
            method = %call.method,
            path = call.path,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "retrying"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// What an attempt tells the concurrency limit.
fn limit_attempt(outcome: Outcome) -> Attempt {
    match outcome {
        Outcome::Status { code: 429, .. } => Attempt::Throttled,
        Outcome::Status { code, .. } if code < 500 => Attempt::Answered,
        _ => Attempt::Failed,
    }
}

async fn attempt_once(
    request: RequestBuilder,
    timeout: Duration,
) -> Result<RawResponse, reqwest::Error> {
    let response = request.timeout(timeout).send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // The per-request timeout also covers reading the body.
    let body = response.bytes().await?.to_vec();
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn classify(result: &Result<RawResponse, reqwest::Error>) -> (Outcome, Option<Duration>) {
    match result {
        Ok(raw) => {
            let retry_after = header_str(&raw.headers, RETRY_AFTER.as_str())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
            let outcome = Outcome::Status {
                code: raw.status,
                retry_after: retry_after.is_some(),
            };
            (outcome, retry_after)
        }
        // A connect failure means the request never left: safe to repeat any method.
        Err(e) if e.is_connect() => (Outcome::ConnectFailed, None),
        Err(e) if e.is_timeout() => (Outcome::TimedOut, None),
        // Our own request could not be built (e.g. a header value with a newline).
        Err(e) if e.is_builder() => (Outcome::NotSent, None),
        Err(_) => (Outcome::BrokenAfterSend, None),
    }
}

fn log_attempt(
    call: &Call<'_>,
    result: &Result<RawResponse, reqwest::Error>,
    attempt: u32,
    elapsed: Duration,
) {
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(raw) => tracing::debug!(
            api = call.api,
            method = %call.method,
            path = call.path,
            status = raw.status,
            attempt,
            elapsed_ms,
            "http attempt"
        ),
        Err(e) => tracing::debug!(
            api = call.api,
            method = %call.method,
            path = call.path,
            failure = failure_label(e),
            attempt,
            elapsed_ms,
            "http attempt failed"
        ),
    }
}

fn failure_label(e: &reqwest::Error) -> &'static str {
    if e.is_builder() {
        "builder"
    } else if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    }
}

/// Turns a transport failure into an operator-readable error. The reqwest error is
/// stripped of its URL (which may carry a query string) before it is shown.
fn transport_error(
    call: &Call<'_>,
    policy: &HttpPolicy,
    e: &reqwest::Error,
    attempts: u32,
) -> ApiError {
    let vendor = call.vendor;
    let tries = if attempts == 1 {
        String::new()
    } else {
        format!(" ({attempts} attempts)")
    };
    let (kind, mut message) = if e.is_builder() {
        let msg = format!(
            "could not build the request to {vendor}: {}",
            error_chain(e)
        );
        (ApiErrorKind::Config, msg)
    } else if e.is_connect() {
        let msg = format!(
            "could not connect to {vendor}{tries}: {}; check the configured URL/site and the network",
            error_chain(e)
        );
        (ApiErrorKind::Unavailable, msg)
    } else if e.is_timeout() {
        let secs = policy.timeout.as_secs_f64();
        let msg = format!("{vendor} did not answer within {secs}s{tries}");
        (ApiErrorKind::Timeout, msg)
    } else if e.is_body() || e.is_decode() {
        let msg = format!(
            "the response from {vendor} was cut short{tries}: {}",
            error_chain(e)
        );
        (ApiErrorKind::BadResponse, msg)
    } else {
        let msg = format!(
            "the connection to {vendor} failed{tries}: {}",
            error_chain(e)
        );
        (ApiErrorKind::Unavailable, msg)
    };
    if !call.idempotent && !e.is_connect() && !e.is_builder() {
        message.push_str(
            "; the request was not repeated because the server may already have processed it \
             (a repeat could create a duplicate): the next run checks before creating",
        );
    }
    ApiError::new(call.api, kind, call.method.as_str(), call.path, message)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        // Display of a reqwest error names the URL; only the kind is wanted here.
        return failure_label(e).to_string();
    }
    parts.join(": ")
}

/// A header's value as text, if present and valid ASCII.
pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Parses a JSON body. A body that is cut short or not JSON becomes `BadResponse`
/// (never a panic). `show_body: false` keeps the body (and serde's message, which can
/// quote values) out of the error, for responses that may carry a token.
pub(crate) fn parse_json<T: DeserializeOwned>(
    call: &Call<'_>,
    raw: &RawResponse,
    show_body: bool,
) -> Result<T, ApiError> {
    serde_json::from_slice(&raw.body).map_err(|e| {
        let detail = if show_body {
            format!("{e}; body starts: {}", body_snippet(&raw.body, 200))
        } else {
            "the body is not the expected JSON (not shown: it may contain a token)".to_string()
        };
        let message = format!(
            "unexpected response from {} {} {}: {detail}",
            call.vendor, call.method, call.path
        );
        ApiError::new(
            call.api,
            ApiErrorKind::BadResponse,
            call.method.as_str(),
            call.path,
            message,
        )
        .with_status(raw.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn raw(body: &str) -> RawResponse {
        RawResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    fn call() -> Call<'static> {
        Call {
            api: "connectwise",
            vendor: "ConnectWise",
            method: Method::GET,
            path: "/finance/agreements",
            idempotent: true,
            counter: &COUNTER,
            write_counter: None,
        }
    }

    #[test]
    fn bad_json_is_bad_response_with_snippet() {
        let err = parse_json::<Vec<i64>>(&call(), &raw("<html>oops</html>"), true).unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::BadResponse);
        assert_eq!(err.status, Some(200));
        assert!(
            err.message
                .starts_with("unexpected response from ConnectWise GET /finance/agreements: "),
            "{}",
            err.message
        );
        assert!(err.message.contains("<html>oops</html>"));
    }

    #[test]
    fn truncated_json_is_bad_response() {
        let err = parse_json::<Vec<i64>>(&call(), &raw("[1,2,"), true).unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::BadResponse);
    }

    #[test]
    fn hidden_body_is_not_shown() {
        let body = r#"{"access_token":"SECRET-TOKEN-123","expires_in":"x"}"#;
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            expires_in: u64,
        }
        let err = parse_json::<T>(&call(), &raw(body), false).unwrap_err();
        assert!(!err.to_string().contains("SECRET-TOKEN-123"));
    }

    /// A loopback server answering each connection with the next canned reply
    /// (`None`: accept, read, then hang). Returns its base URL and a hit counter.
    async fn server(replies: Vec<Option<&'static str>>) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            for reply in replies.into_iter().cycle() {
                let (mut sock, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    match reply {
                        Some(text) => {
                            let _ = sock.write_all(text.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(5)).await,
                    }
                });
            }
        });
        (base, hits)
    }

    fn fast_policy() -> HttpPolicy {
        HttpPolicy {
            timeout: Duration::from_millis(300),
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(5),
        }
    }

    const E500: &str =
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const E429: &str = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]";
    const CUT: &str = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n[1,2";

    async fn run(method: Method, idempotent: bool, base: &str) -> Result<RawResponse, ApiError> {
        let http = reqwest::Client::new();
        let url = format!("{base}/x");
        let counter = AtomicU64::new(0);
        let call = Call {
            method: method.clone(),
            idempotent,
            counter: &counter,
            ..call()
        };
        send(&fast_policy(), &call, || http.request(method.clone(), &url)).await
    }

    #[tokio::test]
    async fn get_retries_5xx_then_succeeds() {
        let (base, hits) = server(vec![Some(E500), Some(OK)]).await;
        let raw = run(Method::GET, true, &base).await.unwrap();
        assert_eq!(raw.status, 200);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_429_lowers_the_limit_and_is_retried() {
        let (base, hits) = server(vec![Some(E429), Some(OK)]).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/x");
        let counter = AtomicU64::new(0);
        let call = Call {
            counter: &counter,
            ..call()
        };
        let limit = AdaptiveLimit::new(4);
        let raw = send_limited(&fast_policy(), &call, Some(&limit), || http.get(&url))
            .await
            .unwrap();
        assert_eq!(raw.status, 200);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(limit.limit(), 2);
        let stats = limit.stats();
        assert_eq!((stats.throttled, stats.lowest_concurrency), (1, 2));
    }

    #[tokio::test]
    async fn post_is_not_retried_on_500() {
        let (base, hits) = server(vec![Some(E500)]).await;
        let raw = run(Method::POST, false, &base).await.unwrap();
        assert_eq!(raw.status, 500);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hanging_server_is_a_timeout_and_post_is_not_repeated() {
        let (base, hits) = server(vec![None]).await;
        let err = run(Method::POST, false, &base).await.unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Timeout);
        assert!(err.message.contains("not repeated"), "{}", err.message);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn cut_short_body_is_bad_response() {
        let (base, hits) = server(vec![Some(CUT)]).await;
        let err = run(Method::GET, true, &base).await.unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::BadResponse, "{err}");
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = run(Method::POST, false, &base).await.unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Unavailable, "{err}");
    }

    #[tokio::test]
    async fn unbuildable_request_is_a_config_error_without_retries() {
        let http = reqwest::Client::new();
        let counter = AtomicU64::new(0);
        let call = Call {
            counter: &counter,
            ..call()
        };
        let err = send(&fast_policy(), &call, || {
            http.get("http://127.0.0.1:9/x")
                .header("X-Partner-ID", "bad\nvalue")
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::Config, "{err}");
        assert_eq!(counter.load(Ordering::SeqCst), 1);
    }
}
