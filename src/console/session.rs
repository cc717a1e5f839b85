//! The console's session: a signed, expiring cookie. The signing key is derived
//! from the secret's `consoleToken`, so rotating the token invalidates every
//! session at once (within the secrets' refresh time) without a session table.

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The cookie that carries the session.
pub const COOKIE: &str = "scw_session";
/// The cookie that carries the login form's one-time token (before a session exists).
pub const LOGIN_COOKIE: &str = "scw_login";

/// A key derived from the console token; never the token itself.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn from_token(token: &SecretString) -> Self {
        let mut h = Sha256::new();
        h.update(b"sophos-cw-sync console session key v1\0");
        h.update(token.expose_secret().as_bytes());
        Self(h.finalize().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // The key is 32 bytes; HMAC accepts any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("any key length");
        for part in parts {
            mac.update(part);
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a hex MAC.
    fn verify(&self, parts: &[&[u8]], hex_mac: &str) -> bool {
        let expected = hex::encode(self.mac(parts));
        crate::api::auth::token_matches(expected.as_bytes(), hex_mac.as_bytes())
    }

    /// A new session's cookie value: `{id}.{expires}.{mac}`.
    pub fn issue(&self, now: SystemTime, ttl: Duration) -> (Session, String) {
        let id = random_hex();
        let expires = unix(now) + ttl.as_secs();
        let mac =
            hex::encode(self.mac(&[b"session", id.as_bytes(), expires.to_string().as_bytes()]));
        let value = format!("{id}.{expires}.{mac}");
        (Session { id, expires }, value)
    }

    /// The session a cookie value stands for, if its MAC holds and it has not expired.
    pub fn open(&self, value: &str, now: SystemTime) -> Option<Session> {
        let mut parts = value.split('.');
        let (id, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if !self.verify(&[b"session", id.as_bytes(), expires.as_bytes()], mac) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        (expires > unix(now)).then(|| Session {
            id: id.to_owned(),
            expires,
        })
    }

    /// The per-session form token every console form carries (CSRF).
    pub fn form_token(&self, session: &Session) -> String {
        hex::encode(self.mac(&[b"form", session.id.as_bytes()]))
    }

    pub fn form_token_matches(&self, session: &Session, presented: &str) -> bool {
        self.verify(&[b"form", session.id.as_bytes()], presented)
    }
}

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// 128 random bits, hex.
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
}

impl Session {
    /// How the audit trail names this session: `console:` and the first 8 hex digits
    /// of its id (enough to tell sessions apart, useless to forge one).
    pub fn actor(&self) -> String {
        format!("console:{}", &self.id[..8])
    }
}

/// The value of the cookie `name` in a `Cookie` header (several headers and
/// several pairs per header are allowed).
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value with the console's flags: HttpOnly, SameSite=Strict, Path
/// /console, and Secure unless the local-only switch dropped it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    )
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", Duration::ZERO, secure)
}

/// 122 random bits as 32 hex digits (a v4 UUID from the OS's generator).
pub fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> SessionKey {
        SessionKey::from_token(&SecretString::from(token.to_owned()))
    }

    #[test]
    fn a_session_opens_with_its_key_until_it_expires() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (session, value) = k.issue(now, Duration::from_secs(60));
        assert_eq!(k.open(&value, now), Some(session.clone()));
        assert_eq!(k.open(&value, now + Duration::from_secs(61)), None);
        // A rotated token is another key: every session ends.
        assert_eq!(key("rotated-password").open(&value, now), None);
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (_, value) = k.issue(now, Duration::from_secs(60));
        let (id, rest) = value.split_once('.').unwrap();
        let (expires, mac) = rest.split_once('.').unwrap();
        let later: u64 = expires.parse::<u64>().unwrap() + 3600;
        for bad in [
            format!("{id}.{later}.{mac}"),
            format!("{}.{expires}.{mac}", "0".repeat(32)),
            format!("{id}.{expires}.{}", "0".repeat(64)),
            format!("{id}.{expires}"),
            format!("{value}.x"),
            String::new(),
        ] {
            assert_eq!(k.open(&bad, now), None, "{bad}");
        }
    }

    #[test]
    fn form_tokens_belong_to_their_session() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (a, _) = k.issue(now, Duration::from_secs(60));
        let (b, _) = k.issue(now, Duration::from_secs(60));
        let token = k.form_token(&a);
        assert!(k.form_token_matches(&a, &token));
        assert!(!k.form_token_matches(&b, &token));
        assert!(!k.form_token_matches(&a, ""));
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; scw_session=abc".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let set = set_cookie(COOKIE, "v", Duration::from_secs(10), true);
        assert_eq!(
            set,
            "scw_session=v; Path=/console; Max-Age=10; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie(COOKIE, "v", Duration::from_secs(10), false).contains("Secure"));
    }
}
