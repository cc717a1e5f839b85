//! A real local AWS endpoint for tests: moto's server.
//!
//! - With `AWS_ENDPOINT_URL` set (as `make test` does, together with `AWS_REGION` and
//!   dummy keys), the normal SDK configuration is used unchanged.
//! - Otherwise `.venv/bin/moto_server` (from `make venv`) is started once per test
//!   process on a free loopback port. It is started under a tiny `sh` watchdog that
//!   reads the test process's end of a pipe: when the test process exits (normally or
//!   killed), the pipe closes and the watchdog kills moto, so nothing is left behind.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

/// The endpoint of the moto server this process started (if it started one).
static ENDPOINT: OnceLock<String> = OnceLock::new();
/// Kept alive (never dropped) so the watchdog's stdin stays open until exit.
static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);

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

fn moto_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

fn start_moto() -> String {
    let bin = moto_binary();
    assert!(
        bin.exists(),
        "{} is missing: run `make venv` (or set AWS_ENDPOINT_URL to a running moto)",
        bin.display()
    );
    let port = free_port();
    // The watchdog: moto in the background, then wait for our pipe to close.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; cat >/dev/null; kill "$m" 2>/dev/null; wait "$m""#)
        .arg(&bin)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto_server exited before it was ready ({status})");
        }
        if Instant::now() > deadline {
            // Closing the pipe makes the watchdog stop moto.
            drop(child.stdin.take());
            panic!("moto_server did not listen on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    *WATCHDOG.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    format!("http://{addr}")
}
