//! A real OpenID Connect provider for tests: `oidc-provider-mock` (PyPI, on
//! Authlib), one per test process.
//!
//! - With `OIDC_PROVIDER_URL` set (as `make test` does), that provider is used.
//! - Otherwise `.venv/bin/oidc-provider-mock` (from `make venv`) is started once on
//!   a free loopback port under the same kind of `sh` watchdog as moto (see
//!   `moto.rs`): when the test process exits, the watchdog's pipe closes and it
//!   stops the provider.
//!
//! The provider signs in whichever subject its authorization form is given;
//! [`Provider::set_user`] sets that subject's claims (email, groups). Its issuer is
//! the request's host URL, so it is always addressed as 127.0.0.1.

use super::console::{Answer, Client};
use axum::http::StatusCode;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// The provider of this test process.
pub struct Provider {
    /// Its issuer, e.g. `http://127.0.0.1:9455` (no trailing slash).
    pub url: String,
}

static PROVIDER: OnceLock<Provider> = OnceLock::new();

/// The provider of this test process (started on first use).
pub fn provider() -> &'static Provider {
    PROVIDER.get_or_init(|| {
        let url = match std::env::var("OIDC_PROVIDER_URL") {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => start_mock(),
        };
        Provider { url }
    })
}

impl Provider {
    /// Sets the claims the provider puts in `sub`'s ID token, e.g.
    /// `{"email": "alice@example.com", "groups": ["billing-admins"]}`.
    pub async fn set_user(&self, sub: &str, claims: Value) {
        let answer = http()
            .put(format!("{}/users/{sub}", self.url))
            .json(&claims)
            .send()
            .await
            .expect("oidc-provider-mock answers");
        assert!(
            answer.status().is_success(),
            "PUT /users/{sub}: {}",
            answer.status()
        );
    }
}

/// A client that follows no redirects: each hop of the flow is looked at.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Starts the sign-in on the console (`/console/auth/login?next=...`) and returns
/// the issuer's authorization URL it sends the browser to (the flow cookie is in
/// the client's jar).
pub async fn start(client: &mut Client, next: &str) -> String {
    let path = format!(
        "/console/auth/login?next={}",
        serde_urlencoded::to_string([("v", next)]).unwrap()[2..].to_owned()
    );
    let answer = client.get(&path).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer
        .header("location")
        .expect("a redirect to the issuer")
        .to_owned()
}

/// Signs `subject` in on the provider's authorization form (as the "Authorize"
/// button does) and returns where the provider sends the browser back: the
/// console's callback, as a path with its query (`/console/auth/callback?...`).
pub async fn authorize(authorize_url: &str, subject: &str) -> String {
    let answer = http()
        .post(authorize_url)
        .form(&[("sub", subject)])
        .send()
        .await
        .expect("oidc-provider-mock answers");
    assert!(
        answer.status().is_redirection(),
        "the authorization form answered {}",
        answer.status()
    );
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect back to the console");
    local_path(location)
}

/// The path and query of an absolute URL (the console is the in-process router).
pub fn local_path(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("an absolute URL");
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The whole code flow over HTTP: start, sign `subject` in at the provider, and
/// the console's answer to the callback.
pub async fn sign_in(client: &mut Client, subject: &str, next: &str) -> Answer {
    let authorize_url = start(client, next).await;
    let callback = authorize(&authorize_url, subject).await;
    client.get(&callback).await
}

fn start_mock() -> String {
    // Listening is not enough: wait until discovery answers.
    let addr = super::watched::start(
        "oidc-provider-mock",
        r#"--port "$1" --require-nonce true"#,
        "OIDC_PROVIDER_URL to a running oidc-provider-mock",
        discovery_answers,
    );
    format!("http://{addr}")
}

/// A plain HTTP/1.0 GET of the discovery document (no runtime needed here).
fn discovery_answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /.well-known/openid-configuration HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}
