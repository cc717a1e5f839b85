//! Static files compiled into the binary: the stylesheet and the pinned htmx
//! (`assets/README.md` says where it came from). Versioned names, so they may be
//! cached for long.

use crate::state::Web;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub const HTMX_PATH: &str = "/console/assets/htmx-2.0.4.min.js";
pub const CSS_PATH: &str = "/console/assets/console-3.css";
pub const ICON_PATH: &str = "/console/assets/favicon-1.svg";

const HTMX: &str = include_str!("assets/htmx-2.0.4.min.js");
const CSS: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/favicon.svg");

pub fn routes() -> Router<Web> {
    Router::new()
        .route(ICON_PATH, get(|| async { asset(ICON, "image/svg+xml") }))
        .route(
            HTMX_PATH,
            get(|| async { asset(HTMX, "text/javascript; charset=utf-8") }),
        )
        .route(
            CSS_PATH,
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400, immutable"),
    );
    response
}
