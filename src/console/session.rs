//! The console's session: a signed, expiring cookie that names the person and the
//! role they signed in with. The signing key is derived from the secret's
//! `consoleToken` and `consoleOidcClientSecret`, so rotating either invalidates
//! every session at once (within the secrets' refresh time) without a session
//! table.

use crate::config::operators::Role;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
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
    /// The key of a console with only the password way in.
    pub fn from_token(token: &SecretString) -> Self {
        Self::from_secrets(Some(token), None).expect("a token is given")
    }

    /// The key from the console's secrets in force (either may be absent, not
    /// both: a console with neither has no way in and no key).
    pub fn from_secrets(
        console_token: Option<&SecretString>,
        oidc_client_secret: Option<&SecretString>,
    ) -> Option<Self> {
        if console_token.is_none() && oidc_client_secret.is_none() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"sophos-cw-sync console session key v2\0");
        for secret in [console_token, oidc_client_secret] {
            match secret {
                Some(s) => {
                    h.update(b"1");
                    h.update((s.expose_secret().len() as u64).to_be_bytes());
                    h.update(s.expose_secret().as_bytes());
                }
                None => h.update(b"0"),
            }
        }
        Some(Self(h.finalize().into()))
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

    /// A new session's cookie value for `person`: `{id}.{expires}.{person}.{mac}`,
    /// the person as base64url JSON.
    pub fn issue(&self, person: Person, now: SystemTime, ttl: Duration) -> (Session, String) {
        let id = random_hex();
        let expires = unix(now) + ttl.as_secs();
        let json = serde_json::to_vec(&person).expect("a person serialises");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let mac = hex::encode(self.mac(&[
            b"session",
            id.as_bytes(),
            expires.to_string().as_bytes(),
            payload.as_bytes(),
        ]));
        let value = format!("{id}.{expires}.{payload}.{mac}");
        (
            Session {
                id,
                expires,
                person,
            },
            value,
        )
    }

    /// The session a cookie value stands for, if its MAC holds and it has not expired.
    pub fn open(&self, value: &str, now: SystemTime) -> Option<Session> {
        let mut parts = value.split('.');
        let (id, expires, payload, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if !self.verify(
            &[
                b"session",
                id.as_bytes(),
                expires.as_bytes(),
                payload.as_bytes(),
            ],
            mac,
        ) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let person: Person = serde_json::from_slice(&json).ok()?;
        (expires > unix(now)).then(|| Session {
            id: id.to_owned(),
            expires,
            person,
        })
    }

    /// The per-session form token every console form carries (CSRF).
    pub fn form_token(&self, session: &Session) -> String {
        hex::encode(self.mac(&[b"form", session.id.as_bytes()]))
    }

    pub fn form_token_matches(&self, session: &Session, presented: &str) -> bool {
        self.verify(&[b"form", session.id.as_bytes()], presented)
    }

    /// `payload` signed for `purpose` (e.g. the OpenID Connect flow's cookie), as
    /// `{base64url payload}.{mac}`. Signed, not encrypted: the browser may read it.
    pub fn seal(&self, purpose: &str, payload: &[u8]) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        let mac = hex::encode(self.mac(&[b"seal", purpose.as_bytes(), payload.as_bytes()]));
        format!("{payload}.{mac}")
    }

    /// The payload of a [`SessionKey::seal`]ed value, if its MAC holds for `purpose`.
    pub fn unseal(&self, purpose: &str, value: &str) -> Option<Vec<u8>> {
        let (payload, mac) = value.split_once('.')?;
        if !self.verify(&[b"seal", purpose.as_bytes(), payload.as_bytes()], mac) {
            return None;
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
    }
}

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// 128 random bits, hex.
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
    /// Who signed in, and with which role.
    pub person: Person,
}

impl Session {
    /// How the audit trail names this session's person (see [`Person::actor`]).
    pub fn actor(&self) -> String {
        self.person.actor()
    }
}

/// The person of a session, as signed into its cookie (short field names: the
/// cookie stays small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// How they signed in.
    #[serde(rename = "v")]
    pub via: SignInWay,
    /// The ID token's `sub` (empty for the password).
    #[serde(rename = "s", default)]
    pub subject: String,
    /// The ID token's `email`, as the identity provider spells it.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The role at sign-in.
    #[serde(rename = "r")]
    pub role: Role,
    /// The groups of the ID token that `operators` named at sign-in (a role that
    /// came from a group is checked again against them on every request).
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The two ways into the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignInWay {
    /// The shared password (`consoleToken`): `make console` and the break-glass.
    #[serde(rename = "p")]
    Password,
    /// The partner's identity provider (OpenID Connect).
    #[serde(rename = "o")]
    Oidc,
}

impl Person {
    /// The shared password's person: an admin, named `console:password`.
    pub fn password() -> Self {
        Self {
            via: SignInWay::Password,
            subject: String::new(),
            email: None,
            role: Role::Admin,
            groups: Vec::new(),
        }
    }

    /// How the audit trail names them: `console:<email>`, `console:password` for
    /// the shared password, `console:sub:<subject>` for a person whose identity
    /// provider sent no email.
    pub fn actor(&self) -> String {
        match (self.via, &self.email) {
            (SignInWay::Password, _) => "console:password".to_owned(),
            (SignInWay::Oidc, Some(email)) => format!("console:{email}"),
            (SignInWay::Oidc, None) => format!("console:sub:{}", self.subject),
        }
    }

    /// For the page's header: the email, or what stands for it.
    pub fn display(&self) -> String {
        match (self.via, &self.email) {
            (SignInWay::Password, _) => "the console password".to_owned(),
            (SignInWay::Oidc, Some(email)) => email.clone(),
            (SignInWay::Oidc, None) => format!("subject {}", self.subject),
        }
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

    fn alice() -> Person {
        Person {
            via: SignInWay::Oidc,
            subject: "a1".into(),
            email: Some("alice@example.com".into()),
            role: Role::Approver,
            groups: vec!["billing".into()],
        }
    }

    #[test]
    fn the_key_follows_both_secrets() {
        let s = |v: &str| SecretString::from(v.to_owned());
        let now = SystemTime::now();
        let both = SessionKey::from_secrets(Some(&s("pw")), Some(&s("client"))).unwrap();
        let (_, value) = both.issue(alice(), now, Duration::from_secs(60));
        assert!(both.open(&value, now).is_some());
        for other in [
            SessionKey::from_secrets(Some(&s("pw")), None).unwrap(),
            SessionKey::from_secrets(None, Some(&s("client"))).unwrap(),
            SessionKey::from_secrets(Some(&s("pw")), Some(&s("rotated"))).unwrap(),
            SessionKey::from_secrets(Some(&s("client")), Some(&s("pw"))).unwrap(),
        ] {
            assert!(other.open(&value, now).is_none());
        }
        assert!(SessionKey::from_secrets(None, None).is_none());
        assert_eq!(Person::password().actor(), "console:password");
    }

    #[test]
    fn a_session_opens_with_its_key_until_it_expires() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (session, value) = k.issue(alice(), now, Duration::from_secs(60));
        assert_eq!(k.open(&value, now), Some(session.clone()));
        assert_eq!(session.actor(), "console:alice@example.com");
        assert_eq!(k.open(&value, now + Duration::from_secs(61)), None);
        // A rotated token is another key: every session ends.
        assert_eq!(key("rotated-password").open(&value, now), None);
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (_, value) = k.issue(alice(), now, Duration::from_secs(60));
        let parts: Vec<&str> = value.split('.').collect();
        let [id, expires, person, mac] = parts[..] else {
            panic!("{value}")
        };
        let later: u64 = expires.parse::<u64>().unwrap() + 3600;
        let mut admin = alice();
        admin.role = Role::Admin;
        let admin = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&admin).unwrap());
        for bad in [
            format!("{id}.{later}.{person}.{mac}"),
            format!("{}.{expires}.{person}.{mac}", "0".repeat(32)),
            format!("{id}.{expires}.{person}.{}", "0".repeat(64)),
            // A role raised in the cookie breaks its MAC.
            format!("{id}.{expires}.{admin}.{mac}"),
            format!("{id}.{expires}.{person}"),
            format!("{value}.x"),
            String::new(),
        ] {
            assert_eq!(k.open(&bad, now), None, "{bad}");
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let k = key("console-password");
        let value = k.seal("oidc-flow", br#"{"state":"s"}"#);
        assert_eq!(
            k.unseal("oidc-flow", &value).as_deref(),
            Some(&br#"{"state":"s"}"#[..])
        );
        assert_eq!(k.unseal("another-purpose", &value), None);
        assert_eq!(key("rotated-password").unseal("oidc-flow", &value), None);
        let (_, mac) = value.split_once('.').unwrap();
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"state":"x"}"#);
        assert_eq!(k.unseal("oidc-flow", &format!("{other}.{mac}")), None);
        assert_eq!(k.unseal("oidc-flow", ""), None);
    }

    #[test]
    fn form_tokens_belong_to_their_session() {
        let now = SystemTime::now();
        let k = key("console-password");
        let (a, _) = k.issue(alice(), now, Duration::from_secs(60));
        let (b, _) = k.issue(alice(), now, Duration::from_secs(60));
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
