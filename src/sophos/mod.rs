//! Sophos Central Partner API: model types and client.

pub mod client;
pub mod model;

pub use client::{DEFAULT_API_URL, DEFAULT_ID_URL, SophosClient, SophosConfig};
pub use model::{Tenant, UsageLine, Whoami};
