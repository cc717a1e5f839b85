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
        // Every other path: the JSON API.
        .fallback_service(json_api::service(web.clone()))
        .layer(axum::middleware::from_fn(answer_panics))
        .with_state(web)
}

/// A bug in a handler answers 500 and is logged, instead of dropping the
/// connection (`serve`) or failing the invocation (Lambda). This is the one place
/// panics are caught: the console's paths get its error page, every other path
/// (the JSON API) the API's JSON error.
async fn answer_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::FutureExt;
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(%method, path, "a request handler panicked");
            internal_error(&path)
        }
    }
}

/// The 500 for a request to `path`: a console page under `/console`, else JSON.
fn internal_error(path: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if is_console_path(path) {
        console::page::ConsoleError::Internal(
            "the page could not be made; the operator finds the cause in the service log"
                .to_owned(),
        )
        .into_response()
    } else {
        crate::api::errors::ApiError::internal().into_response()
    }
}

fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
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

    async fn body_of(response: axum::response::Response) -> (String, String) {
        let kind = response.headers()[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (kind, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panic_answers_json_on_api_paths_and_the_console_page_under_console() {
        let app: Router = Router::new()
            .route("/runs", get(boom))
            .route("/console/boom", get(boom))
            .layer(axum::middleware::from_fn(answer_panics));
        let request = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let api = app.clone().oneshot(request("/runs")).await.unwrap();
        assert_eq!(api.status(), 500);
        let (kind, body) = body_of(api).await;
        assert_eq!(kind, "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        let page = app.oneshot(request("/console/boom")).await.unwrap();
        assert_eq!(page.status(), 500);
        let (kind, body) = body_of(page).await;
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(body.contains("Internal error"), "{body}");
    }
}
