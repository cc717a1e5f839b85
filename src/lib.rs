//! sophos-cw-sync: keeps ConnectWise PSA agreement additions in step with Sophos
//! Central Partner usage.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connectwise;
pub mod console;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod serve;
pub mod sophos;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod web;
pub mod wiring;
