//! Typed configuration: environment, secrets and settings.

pub mod env;
pub mod settings;

pub use env::{ConfigError, Environment, Secrets, SecretsSpec, StoreSpec};
pub use settings::*;
