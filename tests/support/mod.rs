//! Helpers shared by the integration tests (each test crate uses `mod support;`).

pub mod moto;
