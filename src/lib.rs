//! sophos-cw-sync: keeps ConnectWise PSA agreement additions in step with Sophos
//! Central Partner usage.

pub mod config;
pub mod store;
