//! The chat webhook channel: a signed JSON POST of `{"text": "..."}`, which
//! Microsoft Teams and Slack incoming webhooks accept as it is (the links are in
//! the text).
//!
//! Signature: `X-Sophos-Cw-Sync-Timestamp: <unix seconds>` and
//! `X-Sophos-Cw-Sync-Signature: sha256=<hex>`, the hex HMAC-SHA256 under the
//! secret's `notifyWebhookSecret` of `<timestamp>.<body>` (the timestamp header's
//! value, a dot, the raw body bytes). A receiver recomputes it, compares in
//! constant time and refuses timestamps more than a few minutes old.
//!
//! Each attempt has a timeout (`NOTIFY_WEBHOOK_TIMEOUT_SECONDS`); timeouts, connection
//! errors and 5xx answers are retried twice with jittered backoff, 4xx answers
//! are not. The URL carries the receiver's token, so it is never logged nor put
//! in an error: only its host is.

use crate::config::WebhookTarget;
use crate::http::HttpPolicy;
use crate::http::retry::backoff_delay;
use crate::notify::Notice;
use hmac::{KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "X-Sophos-Cw-Sync-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Sophos-Cw-Sync-Timestamp";
/// Retries after the first attempt.
pub const MAX_RETRIES: u32 = 2;

/// The request body: `{"text": "..."}`.
pub fn body(notice: &Notice) -> String {
    serde_json::json!({ "text": notice.chat_text() }).to_string()
}

/// `sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`.
pub fn signature(key: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a webhook delivery failed, for the log: never the URL.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the receiver answered {status} after {attempts} attempts")]
    Status { status: u16, attempts: u32 },
    #[error("no answer within {timeout:?} after {attempts} attempts")]
    TimedOut { timeout: Duration, attempts: u32 },
    #[error("could not connect after {attempts} attempts")]
    Connect { attempts: u32 },
    #[error("the request failed after {attempts} attempts")]
    Other { attempts: u32 },
}

/// A client that follows no redirect: the signed message goes to the configured
/// address only (a 3xx answer is a failure, not retried).
fn client() -> reqwest::Client {
    let agent = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));
    reqwest::Client::builder()
        .user_agent(agent)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // Building only fails if the TLS backend cannot initialise (a broken
        // install); reqwest's defaults still send the message.
        .unwrap_or_default()
}

pub struct WebhookChannel {
    target: WebhookTarget,
    client: reqwest::Client,
    policy: HttpPolicy,
}

impl WebhookChannel {
    /// Each attempt may take `timeout`.
    pub fn new(target: WebhookTarget, timeout: Duration) -> Self {
        Self {
            target,
            client: client(),
            policy: HttpPolicy {
                timeout,
                max_retries: MAX_RETRIES,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(2),
                ..HttpPolicy::default()
            },
        }
    }

    pub fn host(&self) -> &str {
        self.target.host()
    }

    /// Posts `notice`, signed afresh on each attempt. Returns the attempts made.
    pub async fn post(&self, notice: &Notice) -> Result<u32, WebhookError> {
        let body = body(notice);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let sig = signature(
                self.target.key().expose_secret(),
                &timestamp,
                body.as_bytes(),
            );
            let sent = self
                .client
                .post(self.target.url().expose_secret())
                .timeout(self.policy.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, &timestamp)
                .header(SIGNATURE_HEADER, sig)
                .body(body.clone())
                .send()
                .await;
            // reqwest's errors quote the URL: only their kind is kept.
            let (error, retry) = match sent {
                Ok(answer) if answer.status().is_success() => return Ok(attempt),
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    (
                        WebhookError::Status {
                            status,
                            attempts: attempt,
                        },
                        answer.status().is_server_error(),
                    )
                }
                Err(e) if e.is_timeout() => (
                    WebhookError::TimedOut {
                        timeout: self.policy.timeout,
                        attempts: attempt,
                    },
                    true,
                ),
                Err(e) if e.is_connect() => (WebhookError::Connect { attempts: attempt }, true),
                Err(e) => (
                    WebhookError::Other { attempts: attempt },
                    e.is_request() || e.is_body(),
                ),
            };
            if !retry || attempt > self.policy.max_retries {
                return Err(error);
            }
            let wait = backoff_delay(attempt - 1, &self.policy, &mut rand::rng());
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_key_error_names_the_header_the_signature_is_sent_in() {
        // The config's message quotes the header by name; it must stay this one.
        let e = WebhookTarget::from_secret(Some("https://example.com/h".into()), None, "t")
            .unwrap_err()
            .0;
        assert!(e.contains(SIGNATURE_HEADER), "{e}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Against a value computed independently (openssl):
        // printf '1700000000.{"text":"hi"}' | openssl dgst -sha256 -hmac key
        let sig = signature("key", "1700000000", br#"{"text":"hi"}"#);
        assert_eq!(
            sig,
            "sha256=e0fb27bbd98eedf3b560379f4c21ed82331fa6f39b2c39ccf439a53c12cd1485"
        );
    }
}
