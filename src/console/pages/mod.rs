//! One module per console page.

pub mod audit;
pub mod auth;
pub mod customer;
pub mod customers;
pub mod login;
pub mod mapping;
pub mod review;
pub mod runs;
pub mod settings;
pub mod view;

use crate::state::Web;
use axum::Router;

pub fn routes() -> Router<Web> {
    Router::new()
        // Any other path under /console: a console page that says so, not the API's JSON.
        .route("/console/{*rest}", axum::routing::any(no_such_page))
        .merge(login::routes())
        .merge(auth::routes())
        .merge(audit::routes())
        .merge(customers::routes())
        .merge(customer::routes())
        .merge(mapping::routes())
        .merge(review::routes())
        .merge(runs::routes())
        .merge(settings::routes())
}

async fn no_such_page(uri: axum::http::Uri) -> crate::console::page::ConsoleError {
    crate::console::page::ConsoleError::NotFound(format!(
        "there is no console page {:?}; use the links at the top of the page",
        uri.path()
    ))
}
