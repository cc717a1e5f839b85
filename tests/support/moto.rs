//! A real local AWS endpoint for tests: moto's server.
//!
//! - With `AWS_ENDPOINT_URL` set (as `make test` does, together with `AWS_REGION` and
//!   dummy keys), the normal SDK configuration is used unchanged.
//! - Otherwise `.venv/bin/moto_server` (from `make venv`) is started once per test
//!   process on a free loopback port, under the watchdog of [`super::watched`].

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

pub const REGION: &str = "us-east-1";

/// The endpoint of the moto server this process started (if it started one).
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// SDK configuration pointing at moto (or at `AWS_ENDPOINT_URL` when set).
pub async fn aws_config() -> SdkConfig {
    if std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty()) {
        return aws_config::defaults(BehaviorVersion::latest()).load().await;
    }
    let endpoint = ENDPOINT.get_or_init(start_moto).clone();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// `prefix` plus a random suffix: a fresh table / secret name per test.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn start_moto() -> String {
    // Listening is enough: moto answers as soon as it accepts.
    let addr = super::watched::start(
        "moto_server",
        r#"-H 127.0.0.1 -p "$1""#,
        "AWS_ENDPOINT_URL to a running moto",
        |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    );
    format!("http://{addr}")
}
