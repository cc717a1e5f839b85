//! The HTTP API, free of any transport: `serve` (axum) and the Lambda adapter turn
//! their requests into an [`ApiRequest`], call [`handle`] and send the
//! [`ApiResponse`] back as JSON (`Content-Type: application/json`).
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
//! checked before anything else. Every error is `{"error": "<what and how to fix>"}`
//! (a 405 adds `"allow": [...]`, a 409 adds `"runId"`).

pub mod auth;
pub mod errors;
pub mod routes;

use crate::app::App;
use errors::ApiError;
use serde_json::Value;

/// The largest body accepted; larger ones get a 413.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiRequest {
    pub method: String,
    /// The path without the query, e.g. `/runs/r2026...`; percent-encoded as received.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names in any case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

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

pub(crate) fn ok(body: Value) -> ApiResponse {
    ApiResponse { status: 200, body }
}

/// Answers one request. A panic (a bug) is caught by the router's layer
/// (`web::answer_panics`), which answers a JSON 500 "internal error".
pub async fn handle(app: &App, req: ApiRequest) -> ApiResponse {
    let response = match dispatch(app, &req).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Never the headers (the token) nor the body.
    tracing::info!(method = %req.method, path = ?req.path, status = response.status, "api request");
    response
}

async fn dispatch(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    auth::authorize(app, &req.headers).await?;
    let route = routes::resolve(&req.path)?;
    let method = req.method.to_ascii_uppercase();
    let allow = route.allow();
    if !allow.contains(&method.as_str()) {
        return Err(ApiError::method_not_allowed(&method, &req.path, allow));
    }
    if req.body.len() > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    routes::run(app, route, &method, &req.query, &req.body).await
}
