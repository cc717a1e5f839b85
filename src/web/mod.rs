//! The one HTTP router of the service, served by `sophos-cw-sync serve`
//! (`axum::serve`) and by the Lambda function (through `lambda_http`): the operator
//! console under `/console`, and the JSON API (bearer token) everywhere else.

pub mod json_api;

use crate::app::App;
use crate::console::{self, ConsoleConfig};
pub use crate::state::Web;
use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use std::sync::Arc;

pub fn router(app: Arc<App>, config: ConsoleConfig) -> Router {
    let web = Web::new(app, config);
    Router::new()
        // A person who opens the service's address lands on the console.
        .route("/", get(|| async { Redirect::to(console::HOME) }))
        .merge(console::routes(web.clone()))
        .fallback(json_api::handle)
        .layer(axum::middleware::from_fn(answer_panics))
        .with_state(web)
}

/// A bug in a handler answers 500 and is logged, instead of dropping the
/// connection (`serve`) or failing the invocation (Lambda). The JSON API catches
/// its own panics too; this covers the console and everything else.
async fn answer_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures::FutureExt;
    let path = request.uri().path().to_owned();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(path, "a request handler panicked");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the request could not be answered; the operator finds the cause in the service log",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(answer_panics));
        let request = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let boom = app.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(boom.status(), 500);
        let fine = app.oneshot(request("/fine")).await.unwrap();
        assert_eq!(fine.status(), 200);
    }
}
