//! One module per console page.

pub mod customers;
pub mod login;


use crate::web::Web;
use axum::Router;

pub fn routes() -> Router<Web> {
    Router::new()
        .merge(login::routes())
        .merge(customers::routes())

}
