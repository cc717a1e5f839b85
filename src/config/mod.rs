//! Typed configuration: environment, secrets and settings.

pub mod env;
pub mod operators;
pub mod settings;

pub use env::{ConfigError, Environment, OidcConfig, Secrets, SecretsSpec, StoreSpec};
pub use settings::*;
