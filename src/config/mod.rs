//! Typed configuration: environment, secrets and settings.

pub mod settings;

pub use settings::*;
