//! Sophos Central Partner API client (see sim/fixtures/sophos-partner-subset.json):
//! OAuth2 token, whoami, tenants (page-number paging) and monthly billing usage
//! (key paging).

use super::model::{Tenant, UsageLine, Whoami};
use crate::http::{
    self, ApiCounters, ApiError, ApiErrorKind, Call, HttpPolicy, RawResponse, parse_json,
};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const DEFAULT_ID_URL: &str = "https://id.sophos.com";
pub const DEFAULT_API_URL: &str = "https://api.central.sophos.com";

const TOKEN_PATH: &str = "/api/v2/oauth2/token";
/// Refresh this long before the token expires, so a call never starts with a token
/// that dies in flight (the same margin Sophos-style clients use).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Used when the token response has no `expires_in` (documented lifetime: 1 hour).
const DEFAULT_TOKEN_LIFETIME: u64 = 3600;
/// Upper bound on pages we will walk, so a server that never ends cannot loop us forever.
const MAX_PAGES: u32 = 10_000;
const API: &str = "sophos";
const VENDOR: &str = "Sophos";

/// Where and how to authenticate to Sophos Central. Both URLs may point at the same
/// test server (e.g. `http://127.0.0.1:9000`).
#[derive(Clone)]
pub struct SophosConfig {
    pub id_url: String,
    pub api_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl SophosConfig {
    /// A config for the production Sophos hosts.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            id_url: DEFAULT_ID_URL.to_string(),
            api_url: DEFAULT_API_URL.to_string(),
            client_id: client_id.into(),
            client_secret,
        }
    }
}

impl fmt::Debug for SophosConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SophosConfig")
            .field("id_url", &self.id_url)
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

/// Sophos Central Partner API client. Cheap to clone: clones share the token cache.
#[derive(Clone)]
pub struct SophosClient {
    http: reqwest::Client,
    config: Arc<SophosConfig>,
    policy: HttpPolicy,
    counters: Arc<ApiCounters>,
    token: Arc<Mutex<Option<CachedToken>>>,
}

impl fmt::Debug for SophosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SophosClient")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .field("token", &"[redacted]")
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Identity-service error body: `{"errorCode","message","trackingId"}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct IdentityError {
    error_code: Option<String>,
}

/// API error body: `{"error","message","correlationId","code",...}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SophosErrorBody {
    error: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Paged<T> {
    #[serde(default = "Option::default")]
    items: Option<Vec<T>>,
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Pages {
    total: Option<u64>,
    next_key: Option<String>,
}

impl SophosClient {
    pub fn new(config: SophosConfig, policy: HttpPolicy, counters: Arc<ApiCounters>) -> Self {
        Self::with_http(http::default_client(), config, policy, counters)
    }

    /// Like [`SophosClient::new`] with a caller-supplied reqwest client.
    pub fn with_http(
        http: reqwest::Client,
        config: SophosConfig,
        policy: HttpPolicy,
        counters: Arc<ApiCounters>,
    ) -> Self {
        Self {
            http,
            config: Arc::new(config),
            policy,
            counters,
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// Who the credentials belong to; refuses anything but a partner credential,
    /// because the billing and tenant endpoints only exist for partners.
    pub async fn whoami(&self) -> Result<Whoami, ApiError> {
        let path = "/whoami/v1";
        let raw = self.get(path, &[], None).await?;
        let who: Whoami = parse_json(&self.call(Method::GET, path), &raw, true)?;
        if who.id_type != "partner" {
            let message = format!(
                "these credentials are for a {}, not a partner: create them in Sophos Central \
                 Partner (Settings > API Credentials)",
                who.id_type
            );
            return Err(ApiError::new(
                API,
                ApiErrorKind::Config,
                "GET",
                path,
                message,
            ));
        }
        Ok(who)
    }

    /// All tenants of the partner, walking `page=1..=pages.total`.
    pub async fn tenants(&self, partner_id: &str) -> Result<Vec<Tenant>, ApiError> {
        let path = "/partner/v1/tenants";
        let mut tenants = Vec::new();
        let mut page: u32 = 1;
        loop {
            let query = [
                ("page", page.to_string()),
                ("pageSize", "100".to_string()),
                ("pageTotal", "true".to_string()),
            ];
            let raw = self.get(path, &query, Some(partner_id)).await?;
            let body: Paged<Tenant> = parse_json(&self.call(Method::GET, path), &raw, true)?;
            let items = body.items.unwrap_or_default();
            let got = items.len();
            tenants.extend(items);
            let total = body.pages.and_then(|p| p.total);
            if tenants_done(page, total, got) {
                tenants.shrink_to_fit();
                return Ok(tenants);
            }
            if page >= MAX_PAGES {
                return Err(endless_paging(path, "pages.total is missing"));
            }
            page += 1;
        }
    }

    /// The billing usage report for one month, all pages, handed to `on_page` a
    /// page at a time (a large partner's report is never held whole). `Ok(false)`
    /// when Sophos has no report for that month (404): that means "unknown", NOT
    /// zero usage. A failure after some pages leaves `on_page` with a part: the
    /// caller must drop what it gathered.
    pub async fn usage(
        &self,
        partner_id: &str,
        year: i32,
        month: u32,
        mut on_page: impl FnMut(&[UsageLine]),
    ) -> Result<bool, ApiError> {
        let path = format!("/partner/v1/billing/usage/{year}/{month:02}");
        if !(1..=12).contains(&month) {
            let msg = format!("month {month} is not between 1 and 12");
            return Err(ApiError::new(API, ApiErrorKind::Config, "GET", &path, msg));
        }
        let mut seen_keys = HashSet::new();
        let mut next_key: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("pageSize", "1000".to_string())];
            if let Some(key) = &next_key {
                query.push(("pageFromKey", key.clone()));
            }
            let raw = self.get_raw(&path, &query, Some(partner_id)).await?;
            if raw.status == 404 && next_key.is_none() {
                return Ok(false);
            }
            let raw = self.check(&self.call(Method::GET, &path), raw)?;
            let body: Paged<UsageLine> = parse_json(&self.call(Method::GET, &path), &raw, true)?;
            on_page(body.items.as_deref().unwrap_or_default());
            next_key = body
                .pages
                .and_then(|p| p.next_key)
                .filter(|k| !k.is_empty());
            match &next_key {
                None => return Ok(true),
                Some(key) if !seen_keys.insert(key.clone()) => {
                    return Err(endless_paging(
                        &path,
                        "pages.nextKey repeated an earlier key",
                    ));
                }
                Some(_) => {}
            }
        }
        Err(endless_paging(&path, "too many pages"))
    }

    fn call<'a>(&'a self, method: Method, path: &'a str) -> Call<'a> {
        Call {
            api: API,
            vendor: VENDOR,
            method,
            path,
            idempotent: true,
            counter: &self.counters.sophos_calls,
            write_counter: None,
        }
    }

    /// GET that must succeed (2xx), else the mapped error.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        partner_id: Option<&str>,
    ) -> Result<RawResponse, ApiError> {
        let raw = self.get_raw(path, query, partner_id).await?;
        self.check(&self.call(Method::GET, path), raw)
    }

    /// GET with a bearer token. On 401 the token may have been revoked or expired
    /// early: drop it, fetch a new one and try that call once more.
    async fn get_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
        partner_id: Option<&str>,
    ) -> Result<RawResponse, ApiError> {
        let token = self.token().await?;
        let raw = self.get_once(path, query, partner_id, &token).await?;
        if raw.status != 401 {
            return Ok(raw);
        }
        self.invalidate(&token).await;
        let token = self.token().await?;
        self.get_once(path, query, partner_id, &token).await
    }

    async fn get_once(
        &self,
        path: &str,
        query: &[(&str, String)],
        partner_id: Option<&str>,
        token: &SecretString,
    ) -> Result<RawResponse, ApiError> {
        let url = join_url(&self.config.api_url, path);
        let call = self.call(Method::GET, path);
        http::send(&self.policy, &call, || {
            let mut req = self
                .http
                .get(&url)
                .query(query)
                .bearer_auth(token.expose_secret());
            if let Some(id) = partner_id {
                req = req.header("X-Partner-ID", id);
            }
            req
        })
        .await
    }

    /// A valid bearer token, fetched if none is cached or the cached one is about to
    /// expire. The lock is held while fetching so concurrent callers share one fetch.
    async fn token(&self) -> Result<SecretString, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.token.clone());
        }
        let (token, lifetime) = self.fetch_token().await?;
        let refresh_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets `used` if it is still the cached token (another task may already
    /// have replaced it with a fresh one, which must be kept).
    async fn invalidate(&self, used: &SecretString) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.token.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<(SecretString, Duration), ApiError> {
        let url = join_url(&self.config.id_url, TOKEN_PATH);
        // A token request creates nothing on the server, so repeating it is harmless.
        let call = self.call(Method::POST, TOKEN_PATH);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose_secret()),
            ("scope", "token"),
        ];
        let raw = http::send(&self.policy, &call, || self.http.post(&url).form(&form)).await?;
        if matches!(raw.status, 400 | 401) {
            return Err(token_refused(&raw));
        }
        let raw = self.check(&call, raw)?;
        // The body holds the token: never quote it in an error.
        let body: TokenResponse = parse_json(&call, &raw, false)?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME));
        Ok((SecretString::from(body.access_token), lifetime))
    }

    /// Passes a 2xx response through; anything else becomes an [`ApiError`].
    fn check(&self, call: &Call<'_>, raw: RawResponse) -> Result<RawResponse, ApiError> {
        if raw.is_success() {
            Ok(raw)
        } else {
            Err(status_error(call, &raw))
        }
    }
}

/// The tenants loop ends at `pages.total`; without a total it ends on an empty page.
fn tenants_done(page: u32, total: Option<u64>, items_on_page: usize) -> bool {
    match total {
        Some(total) => u64::from(page) >= total || items_on_page == 0,
        None => items_on_page == 0,
    }
}

fn endless_paging(path: &str, why: &str) -> ApiError {
    let message = format!(
        "unexpected response from Sophos GET {path}: paging does not end ({why}); \
         stopped to avoid an endless loop"
    );
    ApiError::new(API, ApiErrorKind::BadResponse, "GET", path, message)
}

fn token_refused(raw: &RawResponse) -> ApiError {
    let body: IdentityError = serde_json::from_slice(&raw.body).unwrap_or_default();
    let code = body
        .error_code
        .unwrap_or_else(|| format!("HTTP {}", raw.status));
    let message = format!(
        "Sophos rejected the API credentials ({code}): check sophos.clientId and \
         sophos.clientSecret in the secret (Sophos Central Partner > Settings > API Credentials)"
    );
    ApiError::new(API, ApiErrorKind::Unauthorized, "POST", TOKEN_PATH, message)
        .with_status(raw.status)
}

/// Maps a non-2xx Sophos response to an error with advice.
fn status_error(call: &Call<'_>, raw: &RawResponse) -> ApiError {
    let said = vendor_said(call, raw);
    let s = raw.status;
    let (kind, message) = match s {
        401 => (
            ApiErrorKind::Unauthorized,
            format!(
                "Sophos refused the access token (401: {said}) even after fetching a new one: \
                 check that the credentials are Sophos Central Partner API credentials and that \
                 X-Partner-ID is the partner id from whoami"
            ),
        ),
        403 => (
            ApiErrorKind::Forbidden,
            format!(
                "Sophos denied access (403: {said}): the API credential's role lacks a \
                 permission, or X-Partner-ID is not this partner's id"
            ),
        ),
        404 => (
            ApiErrorKind::NotFound,
            format!("Sophos has no such resource (404: {said})"),
        ),
        429 => (
            ApiErrorKind::RateLimited,
            format!(
                "Sophos is rate-limiting requests (429: {said}) and the retries ran out: run again later"
            ),
        ),
        500..=599 => (
            ApiErrorKind::Unavailable,
            format!("Sophos is unavailable (HTTP {s}: {said}): try again later"),
        ),
        400 | 409 | 422 => (
            ApiErrorKind::Validation,
            format!("Sophos rejected the request (HTTP {s}: {said})"),
        ),
        _ => (
            ApiErrorKind::BadResponse,
            format!(
                "unexpected response from Sophos {} {}: HTTP {s}: {said}",
                call.method, call.path
            ),
        ),
    };
    ApiError::new(call.api, kind, call.method.as_str(), call.path, message).with_status(s)
}

/// `error: message` from a Sophos error body, or the start of the body if it is not one.
/// The token endpoint's body is never quoted (it is the one body that holds a secret).
fn vendor_said(call: &Call<'_>, raw: &RawResponse) -> String {
    let body: SophosErrorBody = serde_json::from_slice(&raw.body).unwrap_or_default();
    let parts: Vec<String> = [body.error, body.message].into_iter().flatten().collect();
    if !parts.is_empty() {
        return parts.join(": ");
    }
    if call.path == TOKEN_PATH {
        return "no error details".to_string();
    }
    crate::http::error::body_snippet(&raw.body, 200)
}

/// `base` + `path`, tolerating a trailing slash on the configured base URL.
fn join_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-client-secret-value";

    fn config() -> SophosConfig {
        SophosConfig::new("client-id-1", SecretString::from(SECRET))
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn config_debug_redacts_secret() {
        let text = format!("{:?}", config());
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("client-id-1"));
        assert!(text.contains("[redacted]"));
    }

    #[tokio::test]
    async fn client_debug_redacts_secret_and_token() {
        let client = SophosClient::new(config(), HttpPolicy::default(), Arc::default());
        *client.token.lock().await = Some(CachedToken {
            token: SecretString::from("bearer-token-xyz"),
            refresh_at: Instant::now() + Duration::from_secs(600),
        });
        let text = format!("{client:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("bearer-token-xyz"),
            "{text}"
        );
        assert_eq!(
            client.token().await.unwrap().expose_secret(),
            "bearer-token-xyz"
        );
    }

    #[tokio::test]
    async fn invalidate_keeps_a_newer_token() {
        let client = SophosClient::new(config(), HttpPolicy::default(), Arc::default());
        let fresh = CachedToken {
            token: SecretString::from("new"),
            refresh_at: Instant::now() + Duration::from_secs(600),
        };
        *client.token.lock().await = Some(fresh);
        client.invalidate(&SecretString::from("old")).await;
        assert!(client.token.lock().await.is_some());
        client.invalidate(&SecretString::from("new")).await;
        assert!(client.token.lock().await.is_none());
    }

    #[test]
    fn token_refusal_message_names_the_fix() {
        let body = r#"{"errorCode":"oauth.invalid_client_secret","message":"Unauthorized","trackingId":"t1"}"#;
        let e = token_refused(&raw(401, body));
        assert_eq!(e.kind, ApiErrorKind::Unauthorized);
        assert_eq!(e.status, Some(401));
        assert!(e.message.starts_with(
            "Sophos rejected the API credentials (oauth.invalid_client_secret): check sophos.clientId and sophos.clientSecret"
        ));
        assert_eq!(e.path, TOKEN_PATH);
    }

    #[test]
    fn status_errors_use_the_sophos_body() {
        let client = SophosClient::new(config(), HttpPolicy::default(), Arc::default());
        let call = client.call(Method::GET, "/partner/v1/tenants");
        let body = r#"{"error":"forbidden","message":"Partner id mismatch","correlationId":"c"}"#;
        let e = status_error(&call, &raw(403, body));
        assert_eq!(e.kind, ApiErrorKind::Forbidden);
        assert!(
            e.message.contains("forbidden: Partner id mismatch"),
            "{}",
            e.message
        );
        let e = status_error(&call, &raw(503, "<html>down</html>"));
        assert_eq!(e.kind, ApiErrorKind::Unavailable);
        assert!(e.is_retryable());
        let e = status_error(&call, &raw(429, ""));
        assert_eq!(e.kind, ApiErrorKind::RateLimited);
        let e = status_error(&call, &raw(418, "teapot"));
        assert_eq!(e.kind, ApiErrorKind::BadResponse);
    }

    #[test]
    fn token_endpoint_body_is_never_quoted() {
        let client = SophosClient::new(config(), HttpPolicy::default(), Arc::default());
        let call = client.call(Method::POST, TOKEN_PATH);
        let e = status_error(&call, &raw(500, "access_token=abc123"));
        assert!(!e.to_string().contains("abc123"));
    }

    #[test]
    fn tenant_paging_stops() {
        assert!(!tenants_done(1, Some(3), 100));
        assert!(tenants_done(3, Some(3), 100));
        assert!(tenants_done(1, Some(1), 5));
        assert!(tenants_done(1, Some(0), 0));
        // Server claims more pages but sends nothing: stop rather than spin.
        assert!(tenants_done(2, Some(1_000_000), 0));
        assert!(!tenants_done(2, None, 100));
        assert!(tenants_done(2, None, 0));
    }

    #[test]
    fn urls_join_without_double_slash() {
        assert_eq!(
            join_url("http://127.0.0.1:9000/", "/whoami/v1"),
            "http://127.0.0.1:9000/whoami/v1"
        );
        assert_eq!(
            join_url(DEFAULT_ID_URL, TOKEN_PATH),
            "https://id.sophos.com/api/v2/oauth2/token"
        );
    }

    #[test]
    fn paged_bodies_parse_with_missing_parts() {
        let p: Paged<Tenant> = serde_json::from_str(r#"{"items":[{"id":"t"}]}"#).unwrap();
        assert_eq!(p.items.unwrap().len(), 1);
        assert!(p.pages.is_none());
        let p: Paged<UsageLine> =
            serde_json::from_str(r#"{"items":[],"pages":{"nextKey":null,"size":0}}"#).unwrap();
        assert!(p.pages.unwrap().next_key.is_none());
    }
}
