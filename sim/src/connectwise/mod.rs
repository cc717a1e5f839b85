//! The ConnectWise PSA REST API simulator.

mod listing;
pub mod patch;
pub mod query;
mod resources;
pub mod routes;
pub mod validate;

use crate::state::Shared;
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// Every ConnectWise route the simulator serves; see [`routes`].
pub fn router() -> Router<Shared> {
    routes::router()
}

/// ConnectWise's documented error body.
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
