//! The Sophos Central Partner API simulator (routes filled in separately).

use crate::state::Shared;
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub fn router() -> Router<Shared> {
    Router::new()
}

/// Sophos' standard API error body (apis.md A.5).
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({
        "error": status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', ""),
        "message": message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "requestId": uuid::Uuid::new_v4().to_string(),
        "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}
