//! The layer every vendor request passes through: latency, injected faults, the
//! request log and the read/write counters.

use crate::scenario::Throttle;
use crate::state::{Api, Fault, FaultKind, LoggedRequest, Shared, lock};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

pub async fn layer(
    State((shared, api)): State<(Shared, Api)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (_in_flight, in_flight) = InFlight::begin(&shared, api);
    let (fault, delay, seq) = {
        let mut s = lock(&shared);
        let seq = s.next_seq();
        let throttled = s.throttles(api, in_flight);
        let latency = s.latency.get(&api).copied().unwrap_or_default();
        let jitter = match latency.jitter_ms {
            0 => 0,
            j => seq.wrapping_mul(2_654_435_761) % (j + 1),
        };
        // A throttled request is refused before anything else looks at it.
        let fault = match throttled {
            Some(t) => Some(throttled_fault(t)),
            None => s.take_fault(api, &method, &path),
        };
        // Logged and counted on arrival: a request the server is still holding
        // (a hang) was seen all the same; `Answer` fills in its status.
        let counts = s.counts_mut(api);
        if method == "GET" {
            counts.reads += 1
        } else {
            counts.writes += 1
        }
        s.log.push(LoggedRequest {
            seq,
            api,
            method: method.clone(),
            path,
            query,
            status: 0,
            duration_ms: 0,
            fault: match throttled {
                Some(_) => Some(THROTTLED.to_owned()),
                None => fault.as_ref().map(|f| format!("{:?}", f.kind)),
            },
            in_flight,
        });
        // A throttled answer takes the latency too, and stays in flight for it,
        // as a real one takes its round trip: a client that sends too many at
        // once is seen with all of them in flight.
        (fault, latency.fixed_ms + jitter, seq)
    };
    // Fills in the status when answered, or 499 if the client gives up first
    // (hyper then drops this future).
    let mut answer = Answer {
        shared: shared.clone(),
        seq,
        started,
        status: CLIENT_CLOSED,
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let response = match fault {
        None => next.run(req).await,
        Some(f) => {
            // A truncated body is the real body cut short, so the request runs.
            let truncates = matches!(f.kind, FaultKind::Truncate);
            let applied = if f.after_apply || truncates {
                Some(next.run(req).await)
            } else {
                None
            };
            inject(api, &f.kind, applied).await
        }
    };
    answer.status = response.status().as_u16();
    response
}

/// The status logged for a request whose client went away before the answer
/// (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// Completes a request's log entry when it is answered or dropped.
struct Answer {
    shared: Shared,
    seq: u64,
    started: Instant,
    status: u16,
}

impl Drop for Answer {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        if let Some(logged) = s.log.iter_mut().rev().find(|r| r.seq == self.seq) {
            logged.status = self.status;
            logged.duration_ms = self.started.elapsed().as_millis() as u64;
        }
    }
}

/// Counts one request in flight from its start until it is answered or dropped
/// (a client that gives up mid-request still ends it).
struct InFlight {
    shared: Shared,
    api: Api,
}

impl InFlight {
    /// Also returns how many are in flight with this one.
    fn begin(shared: &Shared, api: Api) -> (Self, u64) {
        let now = lock(shared).begin_request(api);
        let guard = Self {
            shared: shared.clone(),
            api,
        };
        (guard, now)
    }
}

/// What the request log's `fault` says of a request the throttle answered 429.
pub const THROTTLED: &str = "Throttled";

/// The throttle's answer, as the fault injector's rate limit builds it.
fn throttled_fault(throttle: Throttle) -> Fault {
    Fault {
        api: Api::Connectwise,
        method: None,
        path_contains: None,
        nth: 1,
        times: 1,
        after_apply: false,
        kind: FaultKind::RateLimit {
            retry_after: throttle.retry_after,
        },
        seen: 0,
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.shared).end_request(self.api);
    }
}

/// Builds the faulty response. `applied` is the real response when the request was
/// carried out first (`afterApply`).
async fn inject(api: Api, kind: &FaultKind, applied: Option<Response>) -> Response {
    match kind {
        FaultKind::Status { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(api, status, "Injected fault")
        }
        FaultKind::RateLimit { retry_after } => {
            let mut r = error_response(api, StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        FaultKind::Hang { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            error_response(api, StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
        }
        FaultKind::Invalid {
            resource,
            field,
            message,
        } => invalid_response(resource, field, message),
        FaultKind::Truncate => {
            let full = match applied {
                Some(r) => r,
                None => error_response(api, StatusCode::OK, "truncated"),
            };
            truncate(full).await
        }
    }
}

/// ConnectWise's 400 for invalid data (ConnectWise's API documentation).
fn invalid_response(resource: &str, field: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "code": "InvalidObject",
        "message": format!("{resource} object is invalid"),
        "errors": [{"code": "InvalidField", "message": message,
                    "resource": resource, "field": field}],
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

async fn truncate(full: Response) -> Response {
    let (mut parts, body) = full.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let half = bytes.slice(0..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(half))
}

/// An error in the vendor's own shape.
pub fn error_response(api: Api, status: StatusCode, message: &str) -> Response {
    let body = match api {
        Api::Sophos => crate::sophos::error_body(status, message),
        Api::Connectwise => crate::connectwise::error_body(status, message),
    };
    (status, axum::Json(body)).into_response()
}
