//! The JSON API inside the router: every path the console does not answer goes to
//! the API's routes ([`api::routes::routes`]) on the shared state, behind its
//! bearer token, with one trailing slash tolerated and each request logged.

use super::Web;
use crate::api::{self, extract::trim_trailing_slash};
use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceExt;
use tower::util::MapRequest;

/// What the router's fallback serves: the API's routes, the token checked before
/// anything else of the request is looked at (a wrong path or method without the
/// token is a 401, not a 404 or 405).
pub type Service = MapRequest<Router, fn(Request) -> Request>;

pub fn service(web: Web) -> Service {
    api::routes::routes()
        .layer(middleware::from_fn_with_state(
            web.clone(),
            api::auth::require_token,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(web)
        .map_request(trim_trailing_slash as fn(Request) -> Request)
}

/// One line per API request: the method, the path as received and the status;
/// never the headers (the token) nor the body.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let response = next.run(request).await;
    tracing::info!(%method, ?path, status = response.status().as_u16(), "api request");
    response
}
