//! The one HTTP router of the service, served by `sophos-cw-sync serve`
//! (`axum::serve`) and by the Lambda function (through `lambda_http`): the operator
//! console under `/console`, and the JSON API (bearer token) everywhere else.

pub mod json_api;

use crate::app::App;
use crate::console::{self, Console, ConsoleConfig};
use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use std::sync::Arc;

/// What every handler of the router shares.
#[derive(Clone)]
pub struct Web {
    pub app: Arc<App>,
    pub console: Arc<Console>,
}

pub fn router(app: Arc<App>, config: ConsoleConfig) -> Router {
    let web = Web {
        app,
        console: Arc::new(Console::new(config)),
    };
    Router::new()
        // A person who opens the service's address lands on the console.
        .route("/", get(|| async { Redirect::to(console::HOME) }))
        .merge(console::routes(web.clone()))
        .fallback(json_api::handle)
        .with_state(web)
}
