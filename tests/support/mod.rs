//! Helpers shared by the integration tests (each test crate uses `mod support;`).

#[allow(dead_code)]
pub mod app;
#[allow(dead_code)]
pub mod browser;
#[allow(dead_code)]
pub mod console;
#[allow(dead_code)]
pub mod moto;
#[allow(dead_code)]
pub mod oidc;
#[allow(dead_code)]
pub mod review;
#[allow(dead_code)]
pub mod sim_log;
#[allow(dead_code)]
pub mod watched;
