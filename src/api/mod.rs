//! The HTTP API: axum routes ([`routes::routes`]) on the shared state
//! (`crate::state::Web`), served by `serve` and by the Lambda function through the
//! one router (`crate::web`). Every answer is JSON (`Content-Type:
//! application/json`).
//!
//! | route | answer |
//! |---|---|
//! | `POST /sync` `{"month":"YYYY-MM","dryRun":true}` (optional) | 202 `{"runId","status":"queued","dryRun"}`, 409 when a cycle runs |
//! | `GET /runs?limit=N&before=<runId>` | `{"items":[run...],"next":<runId or null>}` latest first |
//! | `GET /runs/{runId}` | the run record, with its report once finished |
//! | `GET /status` | `{"customers":[customer report...]}` by tenant id |
//! | `GET /audit?limit=N&runId=<runId>` | `{"items":[entry...]}` latest first |
//! | `GET /mappings` | `{"items":[mapping...]}` |
//! | `PUT /mappings/{tenantId}` `{"companyId":1,"agreementId":2}` or `{"ignore":true}` | the mapping |
//! | `DELETE /mappings/{tenantId}` | `{"deleted":true}` |
//! | `GET /settings`, `PUT /settings` (the full settings) | the settings |
//! | `GET /review?all=true&limit=N&after=<id>` | `{"items":[held change...],"next":<id or null>}` open ones (held, approved) unless `all`, latest month first |
//! | `POST /review/{id}/approve` `{"sync":true}` (optional) | `{"change":...}`; with `sync`, 202 and `"sync":{"runId","status":"queued"}` (or `"busy"`) |
//! | `POST /review/{id}/reject` | `{"change":...}`; 404 unknown id, 409 applied or closed |
//!
//! Every route needs `Authorization: Bearer <webhookToken of the secret>`; it is
//! checked before anything else ([`auth::require_token`]). Every error is
//! `{"error": "<what and how to fix>"}` (a 405 adds `"allow": [...]` and the `Allow`
//! header, a 409 adds `"runId"`). One trailing slash is tolerated; a path
//! parameter with broken percent-encoding is a 400, an empty one a 404; a body
//! larger than [`MAX_BODY`] a 413.

pub mod auth;
pub mod errors;
pub mod extract;
pub mod routes;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The largest body accepted; larger ones get a 413.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    /// For a 405: the methods the path answers (send them as the `Allow` header).
    pub fn allow(&self) -> Option<String> {
        let allow = self.body.get("allow")?.as_array()?;
        let methods: Vec<&str> = allow.iter().filter_map(Value::as_str).collect();
        Some(methods.join(", "))
    }
}

/// The JSON answer, never cached; a 405's `Allow` header from its `allow`.
impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let allow = self.allow();
        let bytes = serde_json::to_vec(&self.body)
            .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
        let mut http = Response::new(Body::from(bytes));
        *http.status_mut() = status;
        let headers = http.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        http
    }
}

pub(crate) fn ok(body: Value) -> ApiResponse {
    ApiResponse { status: 200, body }
}
