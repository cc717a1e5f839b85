//! The JSON API inside the router: an axum request becomes an [`ApiRequest`] for
//! [`api::handle`] (bearer token, routes, JSON errors), and its answer a response.

use super::Web;
use crate::api::{self, ApiRequest, ApiResponse, MAX_BODY};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;

/// Read beyond the limit (and thrown away) so a 413 reaches the client cleanly.
const DRAIN_LIMIT: usize = 1024 * 1024;

pub async fn handle(State(web): State<Web>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(()) => {
            return to_http(ApiResponse {
                status: 400,
                body: serde_json::json!({"error": "the request body could not be read: send it again"}),
            });
        }
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let req = ApiRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    };
    to_http(api::handle(&web.app, req).await)
}

/// The body, cut at `MAX_BODY + 1` bytes (enough for `handle` to answer 413).
async fn read_body(body: Body) -> Result<Vec<u8>, ()> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        seen += chunk.len();
        if out.len() <= MAX_BODY {
            let room = MAX_BODY + 1 - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    Ok(out)
}

pub fn to_http(response: ApiResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let allow = response.allow();
    let bytes = serde_json::to_vec(&response.body)
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
