//! Typed configuration: environment, secrets and settings.

pub mod env;
pub mod operators;
pub mod settings;
pub mod webhook_target;

pub use env::{ConfigError, Environment, OidcConfig, RunPolicy, Secrets, SecretsSpec, StoreSpec};
pub use settings::*;
pub use webhook_target::WebhookTarget;
