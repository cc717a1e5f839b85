//! The notification webhook's target as the secret configures it
//! (`notifyWebhookUrl`, `notifyWebhookSecret`): parsed and checked here, with the
//! rest of the secret, and posted to by the notify module's webhook channel. The URL
//! carries the receiver's token, so it is never shown: only its host is.

use crate::config::ConfigError;
use secrecy::SecretString;

/// Where to post and the signing key. `Debug` shows the host only.
#[derive(Clone)]
pub struct WebhookTarget {
    url: SecretString,
    host: String,
    key: SecretString,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl WebhookTarget {
    /// The secret's `notifyWebhookUrl` and `notifyWebhookSecret`. No URL: no
    /// webhook. A URL without a key is a configuration error (an unsigned request
    /// could not be told from a forged one), as is a URL that is not https (http
    /// only to this machine). Errors never quote the URL.
    pub fn from_secret(
        url: Option<String>,
        key: Option<String>,
        source: &str,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(url) = url else { return Ok(None) };
        let host = check_url(&url).map_err(|problem| {
            ConfigError(format!(
                "notifyWebhookUrl in the secret from {source} {problem}: set it to the incoming webhook's https:// address (Teams: the channel's Incoming Webhook or Workflows URL; Slack: https://hooks.slack.com/services/...), or remove it. The value is not shown: webhook URLs carry a token"
            ))
        })?;
        let Some(key) = key else {
            return Err(ConfigError(format!(
                "the secret from {source} has a notifyWebhookUrl but no notifyWebhookSecret: add \"notifyWebhookSecret\": \"<a long random string>\" (notifications are signed with it in the X-Sophos-Cw-Sync-Signature header; see the README's Notifications), or remove notifyWebhookUrl"
            )));
        };
        Ok(Some(Self {
            url: SecretString::from(url),
            host,
            key: SecretString::from(key),
        }))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The address to post to; it carries the receiver's token.
    pub fn url(&self) -> &SecretString {
        &self.url
    }

    /// The signing key (`notifyWebhookSecret`).
    pub fn key(&self) -> &SecretString {
        &self.key
    }
}

/// The URL's host if it is an https address, or http to a loopback address;
/// otherwise what is wrong with it (without the URL).
pub fn check_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "has no host".to_owned())?
        .to_owned();
    match parsed.scheme() {
        "https" => Ok(host),
        "http" if is_loopback(&host) => Ok(host),
        "http" => Err("is http:// to another machine (only https:// is allowed, http:// only to 127.0.0.1 or localhost)".into()),
        other => Err(format!("has the scheme {other}: (use https://)")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted_and_errors_never_quote_the_url() {
        assert_eq!(
            check_url("https://hooks.slack.com/services/T/B/TOKEN").unwrap(),
            "hooks.slack.com"
        );
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("http://[::1]:9/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        for bad in [
            "http://example.com/hook?token=TOPSECRET",
            "ftp://example.com/TOPSECRET",
            "not a url TOPSECRET",
        ] {
            let e = WebhookTarget::from_secret(Some(bad.into()), Some("k".into()), "test")
                .unwrap_err()
                .0;
            assert!(
                e.contains("notifyWebhookUrl") && e.contains("https://"),
                "{e}"
            );
            assert!(!e.contains("TOPSECRET"), "{e}");
        }
    }

    #[test]
    fn a_url_without_a_key_is_a_clear_error_and_no_url_is_no_webhook() {
        let e = WebhookTarget::from_secret(
            Some("https://hooks.slack.com/services/TOPSECRET".into()),
            None,
            "test",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("notifyWebhookSecret"), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
        assert!(
            WebhookTarget::from_secret(None, Some("k".into()), "t")
                .unwrap()
                .is_none()
        );
        let t = WebhookTarget::from_secret(
            Some("https://hooks.slack.com/services/TOPSECRET".into()),
            Some("KEYSECRET".into()),
            "t",
        )
        .unwrap()
        .unwrap();
        let shown = format!("{t:?}");
        assert!(
            shown.contains("hooks.slack.com") && !shown.contains("SECRET"),
            "{shown}"
        );
    }
}
