//! One module per console page.

pub mod audit;
pub mod customer;
pub mod customers;
pub mod login;
pub mod runs;
pub mod settings;


use crate::web::Web;
use axum::Router;

pub fn routes() -> Router<Web> {
    Router::new()
        .merge(login::routes())
        .merge(audit::routes())
        .merge(customers::routes())
        .merge(customer::routes())
        .merge(runs::routes())
        .merge(settings::routes())

}
