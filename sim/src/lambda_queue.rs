//! An emulation of the front door of AWS Lambda's `Invoke` API, for running a
//! function locally under an emulator that answers every invocation synchronously
//! (`cargo lambda watch` ignores `X-Amz-Invocation-Type: Event`).
//!
//! Point the function's Lambda client at [`LambdaQueue::url`] (e.g. with
//! `AWS_ENDPOINT_URL_LAMBDA`) and the queue at the emulator. Then, like Lambda:
//!
//! - `POST /2015-03-31/functions/{name}/invocations` with `X-Amz-Invocation-Type:
//!   Event` is answered **202** with an empty body at once; the event is queued and
//!   delivered to `{target}/2015-03-31/functions/{name}/invocations` in the
//!   background. A delivery that fails (a non-2xx answer, an `X-Amz-Function-Error`
//!   header, or no answer at all) is retried up to [`QueueOptions::max_retries`]
//!   more times (Lambda's default: 2), after [`QueueOptions::retry_delay`], then
//!   twice that (Lambda waits one, then two minutes: the emulation compresses time).
//!   Every event ends up in [`LambdaQueue::delivered`].
//! - `RequestResponse` (or no invocation type) is proxied synchronously: the target's
//!   status, headers and body are returned as they are.
//! - `DryRun` is answered **204** (the caller could invoke) without invoking.
//! - A payload that is not JSON is refused with 400 `InvalidRequestContentException`,
//!   one over the size limit (1 MiB asynchronous, 6 MiB synchronous) with 413
//!   `RequestEntityTooLargeException`, an unknown invocation type with 400
//!   `InvalidParameterValueException` (each with `x-amzn-ErrorType`, as Lambda does).
//!
//! The request's signature is not checked. Only `http://` targets are supported.
//! [`LambdaQueue::wait_idle`] waits until every accepted event has been delivered
//! (including the events those deliveries queued in turn).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest asynchronous payload Lambda accepts.
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;
/// Largest synchronous payload Lambda accepts.
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;

/// How the queue retries failed deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Retries after the first failed attempt (Lambda's default and maximum: 2).
    pub max_retries: u32,
    /// Wait before the first retry; each further retry waits twice the previous.
    pub retry_delay: Duration,
    /// How long one delivery may take before it counts as failed (Lambda: the
    /// function's timeout; the target usually enforces its own).
    pub attempt_timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            max_retries: 2,
            retry_delay: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// One queued event, after its last delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The function name (or ARN) as invoked.
    pub function: String,
    pub payload: Value,
    /// The status of the last attempt; 0 when the target did not answer.
    pub status: u16,
    /// Attempts made: 1 plus the retries.
    pub attempts: u32,
    /// Whether the last attempt failed too (the event was given up).
    pub function_error: bool,
    /// The last attempt's answer: JSON when it is JSON, else a string (an error
    /// message when the target did not answer).
    pub response: Value,
}

/// A running queue. Dropping it stops the server and any delivery in progress.
pub struct LambdaQueue {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

struct Inner {
    target: Target,
    options: QueueOptions,
    /// Events accepted and not yet finally delivered.
    pending: watch::Sender<usize>,
    delivered: Mutex<Vec<Delivery>>,
    deliveries: Mutex<JoinSet<()>>,
}

impl LambdaQueue {
    /// Starts a queue on a free loopback port delivering to `target_base_url`
    /// (e.g. `http://127.0.0.1:9100`), with Lambda's default retries.
    pub async fn start(target_base_url: String) -> io::Result<LambdaQueue> {
        Self::start_with(target_base_url, QueueOptions::default()).await
    }

    pub async fn start_with(
        target_base_url: String,
        options: QueueOptions,
    ) -> io::Result<LambdaQueue> {
        let target = Target::parse(&target_base_url)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            target,
            options,
            pending: watch::Sender::new(0),
            delivered: Mutex::new(Vec::new()),
            deliveries: Mutex::new(JoinSet::new()),
        });
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .layer(DefaultBodyLimit::max(MAX_SYNC_PAYLOAD + 1))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("lambda queue stopped: {e}");
            }
        });
        Ok(LambdaQueue {
            addr,
            inner,
            server,
        })
    }

    /// The endpoint to give the function's Lambda client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Events accepted and not yet finally delivered (retries included).
    pub fn pending(&self) -> usize {
        *self.inner.pending.borrow()
    }

    /// Waits until no event is pending; false if that did not happen within `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.pending.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await,
            Ok(Ok(_))
        )
    }

    /// The events delivered (or given up) so far, in the order they finished.
    pub fn delivered(&self) -> Vec<Delivery> {
        lock(&self.inner.delivered).clone()
    }
}

impl Drop for LambdaQueue {
    fn drop(&mut self) {
        self.server.abort();
        lock(&self.inner.deliveries).abort_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lambda's error answer: `x-amzn-ErrorType` plus `{"Type":"User","message":...}`.
fn lambda_error(status: StatusCode, kind: &'static str, message: String) -> Response {
    let mut response = (
        status,
        [("content-type", "application/json")],
        json!({"Type": "User", "message": message}).to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    response
}

fn request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

async fn invoke(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get("x-amz-invocation-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_else(|| "RequestResponse".into());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let limit = if kind == "Event" {
        MAX_ASYNC_PAYLOAD
    } else {
        MAX_SYNC_PAYLOAD
    };
    if body.len() > limit {
        return lambda_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!(
                "{} byte payload is too large for the {kind} invocation type (limit {limit} bytes)",
                body.len()
            ),
        );
    }
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    format!("Could not parse request body into json: {e}"),
                );
            }
        }
    };
    match kind.as_str() {
        "Event" => {
            inner.pending.send_modify(|n| *n += 1);
            let task_inner = inner.clone();
            let mut set = lock(&inner.deliveries);
            while set.try_join_next().is_some() {}
            set.spawn(async move {
                let delivery = deliver(&task_inner, name, path, payload, body).await;
                lock(&task_inner.delivered).push(delivery);
                task_inner.pending.send_modify(|n| *n -= 1);
            });
            let mut response = StatusCode::ACCEPTED.into_response();
            response
                .headers_mut()
                .insert("x-amzn-requestid", request_id());
            response
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "RequestResponse" => {
            match inner
                .target
                .post(&path, &body, inner.options.attempt_timeout)
                .await
            {
                Ok(answer) => answer.into_response(),
                Err(e) => lambda_error(
                    StatusCode::BAD_GATEWAY,
                    "ServiceException",
                    format!("the function at {} did not answer: {e}", inner.target),
                ),
            }
        }
        other => lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            format!(
                "invalid X-Amz-Invocation-Type {other:?}: use Event, RequestResponse or DryRun"
            ),
        ),
    }
}

/// Delivers one event, retrying like Lambda; returns how it ended.
async fn deliver(
    inner: &Inner,
    function: String,
    path: String,
    payload: Value,
    body: Bytes,
) -> Delivery {
    let mut attempts = 0;
    let mut delay = inner.options.retry_delay;
    loop {
        attempts += 1;
        let (status, failed, response) = match inner
            .target
            .post(&path, &body, inner.options.attempt_timeout)
            .await
        {
            Ok(answer) => (answer.status, answer.failed(), answer.body_value()),
            Err(e) => (0, true, Value::String(e.to_string())),
        };
        if !failed || attempts > inner.options.max_retries {
            if failed {
                tracing::warn!(%function, status, attempts, "asynchronous invocation given up");
            }
            return Delivery {
                function,
                payload,
                status,
                attempts,
                function_error: failed,
                response,
            };
        }
        tracing::info!(%function, status, attempts, "asynchronous invocation failed; retrying");
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

/// Where deliveries go: `host:port` plus a base path.
#[derive(Debug, Clone)]
struct Target {
    authority: String,
    base_path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

/// A target's answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn failed(&self) -> bool {
        !(200..300).contains(&self.status) || self.header("x-amz-function-error").is_some()
    }

    fn body_value(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        for (k, v) in &self.headers {
            // Framing is the queue's own; the rest is passed on.
            if [
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
            {
                continue;
            }
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                headers.append(k, v);
            }
        }
        response
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Target {
    fn parse(url: &str) -> io::Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the lambda queue's target must be an http:// URL, not {url:?}"),
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the lambda queue's target {url:?} has no host"),
            ));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        Ok(Target {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// `POST {base}{path}` with a JSON body over HTTP/1.1 (`Connection: close`),
    /// the answer read to the end.
    async fn post(&self, path: &str, body: &[u8], timeout: Duration) -> io::Result<Answer> {
        let exchange = async {
            let mut stream = TcpStream::connect(&self.authority).await?;
            let head = format!(
                "POST {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                self.base_path,
                self.authority,
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            stream.flush().await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            parse_response(&raw)
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )
        })?
    }
}

fn parse_response(raw: &[u8]) -> io::Result<Answer> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("the answer ended before its headers did".into()))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| invalid("the answer's headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        rest.get(..len)
            .ok_or_else(|| invalid(format!("the body ended before its {len} bytes")))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("a chunk size line is cut short".into()))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| invalid("a chunk is cut short".into()))?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct TestTarget {
        url: String,
        calls: Arc<AtomicU32>,
        gate: watch::Sender<bool>,
        _task: JoinHandle<()>,
    }

    /// A function that fails its first `failures` invocations (500, as `cargo lambda
    /// watch` answers a function error), then echoes the payload. Every call waits
    /// until the gate is open (it starts open unless `closed`).
    async fn target(failures: u32, closed: bool) -> TestTarget {
        let calls = Arc::new(AtomicU32::new(0));
        let gate = watch::Sender::new(!closed);
        let (counter, gate_rx) = (calls.clone(), gate.subscribe());
        let app = Router::new().route(
            "/2015-03-31/functions/{name}/invocations",
            post(move |body: Bytes| {
                let (counter, mut gate_rx) = (counter.clone(), gate_rx.clone());
                async move {
                    let _ = gate_rx.wait_for(|open| *open).await;
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < failures {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            r#"{"errorType":"Retryable","errorMessage":"boom"}"#.to_owned(),
                        )
                    } else {
                        (StatusCode::OK, String::from_utf8_lossy(&body).into_owned())
                    }
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestTarget {
            url,
            calls,
            gate,
            _task: task,
        }
    }

    fn fast() -> QueueOptions {
        QueueOptions {
            retry_delay: Duration::from_millis(10),
            ..QueueOptions::default()
        }
    }

    async fn call(queue: &LambdaQueue, kind: Option<&str>, body: &str) -> (u16, String) {
        let client = reqwest::Client::new();
        let mut req = client
            .post(format!(
                "{}/2015-03-31/functions/f/invocations",
                queue.url()
            ))
            .body(body.to_owned());
        if let Some(kind) = kind {
            req = req.header("X-Amz-Invocation-Type", kind);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn an_event_is_accepted_at_once_and_retried_twice_after_failures() {
        let t = target(2, true).await;
        let queue = LambdaQueue::start_with(t.url.clone(), fast())
            .await
            .unwrap();
        // The function cannot answer yet: the 202 does not wait for it.
        let (status, body) = call(&queue, Some("Event"), r#"{"a":1}"#).await;
        assert_eq!((status, body.as_str()), (202, ""));
        assert_eq!(queue.pending(), 1);
        assert!(!queue.wait_idle(Duration::from_millis(50)).await);
        t.gate.send_replace(true);
        assert!(queue.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(t.calls.load(Ordering::SeqCst), 3);
        let d = queue.delivered();
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].status, d[0].attempts, d[0].function_error),
            (200, 3, false)
        );
        assert_eq!(d[0].payload, json!({"a": 1}));
        assert_eq!(d[0].response, json!({"a": 1}));
    }

    #[tokio::test]
    async fn an_event_failing_three_times_is_given_up() {
        let t = target(10, false).await;
        let queue = LambdaQueue::start_with(t.url.clone(), fast())
            .await
            .unwrap();
        assert_eq!(call(&queue, Some("Event"), "{}").await.0, 202);
        assert!(queue.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(t.calls.load(Ordering::SeqCst), 3);
        let d = &queue.delivered()[0];
        assert_eq!((d.status, d.attempts, d.function_error), (500, 3, true));
        assert_eq!(d.response["errorMessage"], "boom");
    }

    #[tokio::test]
    async fn request_response_is_proxied_and_dry_run_and_bad_payloads_answered_here() {
        let t = target(0, false).await;
        let queue = LambdaQueue::start_with(t.url.clone(), fast())
            .await
            .unwrap();
        assert_eq!(
            call(&queue, None, r#"{"x":true}"#).await,
            (200, r#"{"x":true}"#.to_owned())
        );
        assert_eq!(
            call(&queue, Some("RequestResponse"), "[1]").await,
            (200, "[1]".to_owned())
        );
        assert_eq!(call(&queue, Some("DryRun"), "{}").await.0, 204);
        let (status, body) = call(&queue, Some("Event"), "{nope").await;
        assert_eq!(status, 400);
        assert!(
            body.contains("Could not parse request body into json"),
            "{body}"
        );
        assert_eq!(call(&queue, Some("Sometimes"), "{}").await.0, 400);
        let big = format!("\"{}\"", "x".repeat(MAX_ASYNC_PAYLOAD));
        assert_eq!(call(&queue, Some("Event"), &big).await.0, 413);
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
        assert!(queue.delivered().is_empty() && queue.pending() == 0);
    }

    #[tokio::test]
    async fn an_unreachable_target_is_retried_then_given_up() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let queue = LambdaQueue::start_with(format!("http://127.0.0.1:{port}/"), fast())
            .await
            .unwrap();
        assert_eq!(call(&queue, Some("Event"), "{}").await.0, 202);
        assert!(queue.wait_idle(Duration::from_secs(10)).await);
        let d = &queue.delivered()[0];
        assert_eq!((d.status, d.attempts, d.function_error), (0, 3, true));
        assert_eq!(call(&queue, None, "{}").await.0, 502);
    }

    #[test]
    fn chunked_and_sized_answers_are_read() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        let a = parse_response(raw).unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"Wikipedia"[..]));
        assert_eq!(a.header("x-a"), Some("b"));
        let raw = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}";
        let a = parse_response(raw).unwrap();
        assert!(a.failed());
        assert_eq!(a.body, b"{}");
        let t = Target::parse("http://localhost/base/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.base_path.as_str()),
            ("localhost:80", "/base")
        );
        assert!(Target::parse("https://x").is_err());
    }
}
