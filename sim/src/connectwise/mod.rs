//! The ConnectWise PSA REST API simulator.

pub mod patch;
pub mod query;
pub mod validate;

use crate::state::Shared;
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub fn router() -> Router<Shared> {
    Router::new()
}

/// ConnectWise's error body (apis.md B.5).
pub fn error_body(status: StatusCode, message: &str) -> Value {
    let code = match status.as_u16() {
        400 => "InvalidObject",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "ConnectWiseApi",
    };
    json!({"code": code, "message": message})
}
