//! sophos-cw-sync: keeps ConnectWise PSA agreement additions in step with Sophos
//! Central Partner usage.

pub mod cli;
pub mod config;
pub mod output;
pub mod telemetry;
pub mod domain;
pub mod sync;
pub mod store;
pub mod http;
pub mod sophos;
pub mod connectwise;
