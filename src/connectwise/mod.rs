//! ConnectWise PSA (Manage) REST API: model types and client.

pub mod client;
pub mod model;

pub use client::{
    ACCEPT_VERSION, ConnectWiseClient, ConnectWiseConfig, NamedKind, next_link, quote,
};
pub use model::*;
