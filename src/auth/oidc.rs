//! Sign-in through any OpenID Connect issuer (Entra ID, Google, Okta, Cognito):
//! discovery (cached), the authorization code flow with PKCE (S256), `state` and
//! `nonce`, and the ID token verified by `openidconnect` (JWKS signature, `iss`,
//! `aud`, `exp`, `nonce`). HTTP goes through our reqwest, not the crate's own.

use crate::config::env::OidcConfig;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthType, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a discovery document (with its JWKS) is used before it is read again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Every request to the identity provider gives up after this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong signing someone in. The messages say what is wrong and what
/// to do; none carries a secret, a code or a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error(
        "the identity provider's discovery document at {url} could not be read ({cause}); check that CONSOLE_OIDC_ISSUER is the issuer exactly as the provider states it (e.g. https://login.microsoftonline.com/<tenant-id>/v2.0) and that the provider is reachable, then sign in again"
    )]
    Discovery { url: String, cause: String },
    #[error(
        "the console's redirect URI {0:?} is not a valid address; set CONSOLE_URL to the console's https address, e.g. https://<api>/console"
    )]
    RedirectUri(String),
    #[error(
        "the identity provider's discovery document names no token endpoint, so the sign-in cannot be completed; check CONSOLE_OIDC_ISSUER"
    )]
    NoTokenEndpoint,
    #[error(
        "the identity provider did not accept the sign-in code ({0}); sign in again. If it keeps happening, check that CONSOLE_OIDC_CLIENT_ID and the secret's consoleOidcClientSecret match the provider's app registration and that its redirect URI is this console's"
    )]
    TokenExchange(String),
    #[error(
        "the identity provider answered without an ID token; check that the app registration may use OpenID Connect (the scope \"openid\"), then sign in again"
    )]
    NoIdToken,
    #[error(
        "the identity provider's ID token was refused: {0}. Nobody was signed in; sign in again, and if it keeps happening check CONSOLE_OIDC_ISSUER and CONSOLE_OIDC_CLIENT_ID against the provider's app registration"
    )]
    IdToken(String),
}

/// The ID token's claims beyond the standard ones, all of them (the groups claim's
/// name is configured, e.g. `groups` or `cognito:groups`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type IdTokenFields = openidconnect::IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// The token endpoint's answer, with our claims type.
pub type TokenResponse = StandardTokenResponse<IdTokenFields, CoreTokenType>;
/// An ID token with our claims type.
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Our reqwest, as openidconnect's HTTP client: no redirects followed (the crate
/// asks for that: a redirect could carry a code elsewhere), short timeouts.
#[derive(Clone)]
pub struct Http(reqwest::Client);

/// A request to the identity provider that failed (its cause, never its body).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl Http {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(HTTP_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .build()
            // Only a broken TLS set-up fails here; a default client still answers
            // with errors the page reports.
            .unwrap_or_default();
        Self(client)
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(describe_reqwest)?;
        let mut answer = openidconnect::http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let bytes = response.bytes().await.map_err(describe_reqwest)?;
        answer
            .body(bytes.to_vec())
            .map_err(|e| HttpError(e.to_string()))
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

fn describe_reqwest(e: reqwest::Error) -> HttpError {
    HttpError(if e.is_timeout() {
        format!("no answer within {} s", HTTP_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // Without the URL: a query could carry a code.
        truncate(&e.without_url().to_string())
    })
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The discovery document in use and when it was read, kept in the console's
/// state so a sign-in does not read it twice.
#[derive(Default)]
pub struct DiscoveryCache {
    cached: Mutex<Option<(Instant, String, Arc<CoreProviderMetadata>)>>,
    http: std::sync::OnceLock<Http>,
}

impl DiscoveryCache {
    fn http(&self) -> &Http {
        self.http.get_or_init(Http::new)
    }

    /// The issuer's metadata: the cached copy while it is young, else read anew.
    /// `fresh` reads it anew anyway (an ID token signed by a key the cached JWKS
    /// does not have: the provider rotated its keys).
    async fn metadata(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((read, of, metadata)) = cached.as_ref()
            && !fresh
            && of == issuer
            && read.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let metadata = Arc::new(discover(issuer, self.http()).await?);
        *cached = Some((Instant::now(), issuer.to_owned(), metadata.clone()));
        Ok(metadata)
    }
}

async fn discover(issuer: &str, http: &Http) -> Result<CoreProviderMetadata, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let failed = |cause: String| OidcError::Discovery {
        url: url.clone(),
        cause,
    };
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| failed(e.to_string()))?;
    CoreProviderMetadata::discover_async(issuer_url, http)
        .await
        .map_err(|e| failed(discovery_cause(&e)))
}

fn discovery_cause(e: &openidconnect::DiscoveryError<HttpError>) -> String {
    use openidconnect::DiscoveryError;
    match e {
        DiscoveryError::Request(cause) => cause.to_string(),
        DiscoveryError::Response(status, _, _) => format!("HTTP status {status}"),
        DiscoveryError::Parse(_) => "it is not an OpenID Connect discovery document".into(),
        DiscoveryError::Validation(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The flow's secrets for one sign-in, kept (signed) in the browser's cookie
/// between the redirect to the issuer and the callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the issuer vouched for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    /// `None` when the token has none, or says it is not verified.
    pub email: Option<String>,
    /// The groups claim's values (none when absent).
    pub groups: Vec<String>,
}

/// One sign-in's provider: the configuration, the client secret and the
/// console's redirect URI.
pub struct Provider<'a> {
    pub config: &'a OidcConfig,
    pub client_secret: &'a SecretString,
    pub redirect_uri: String,
    pub cache: &'a DiscoveryCache,
}

impl Provider<'_> {
    async fn client(&self, fresh: bool) -> Result<OidcClient, OidcError> {
        let metadata = self.cache.metadata(&self.config.issuer, fresh).await?;
        // Basic authentication unless the provider takes the secret in the body only.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| {
                m.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        let redirect = RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|_| OidcError::RedirectUri(self.redirect_uri.clone()))?;
        let client = OidcClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect);
        Ok(if post_only {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        })
    }

    /// Where to send the browser, and the flow to keep for the callback.
    pub async fn start(&self) -> Result<(String, Flow), OidcError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let flow = Flow {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        };
        Ok((url.to_string(), flow))
    }

    /// Exchanges the callback's code (with the flow's PKCE verifier) and verifies
    /// the ID token against the flow's nonce.
    pub async fn finish(&self, code: &str, flow: &Flow) -> Result<Identity, OidcError> {
        let client = self.client(false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| OidcError::NoTokenEndpoint)?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(self.cache.http())
            .await
            .map_err(|e| OidcError::TokenExchange(token_cause(&e)))?;
        let token = response.id_token().ok_or(OidcError::NoIdToken)?;
        match identity(&client, token, &flow.nonce, &self.config.groups_claim) {
            // Keys rotate: a key id the cached JWKS lacks is worth one fresh read.
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let client = self.client(true).await?;
                identity(&client, token, &flow.nonce, &self.config.groups_claim)
                    .map_err(|e| OidcError::IdToken(refusal(&e)))
            }
            other => other.map_err(|e| OidcError::IdToken(refusal(&e))),
        }
    }
}

fn token_cause(
    e: &RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error_description() {
            Some(d) => format!("{}: {}", r.error(), truncate(d)),
            None => r.error().to_string(),
        },
        RequestTokenError::Request(cause) => cause.to_string(),
        RequestTokenError::Parse(_, _) => "its answer is not a token response".into(),
        RequestTokenError::Other(m) => truncate(m),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Why an ID token was refused, in words (never the token or its nonce).
fn refusal(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::Expired(_) => "it has expired".into(),
        ClaimsVerificationError::InvalidAudience(_) => {
            "it was issued for another application (its audience is not CONSOLE_OIDC_CLIENT_ID)"
                .into()
        }
        ClaimsVerificationError::InvalidIssuer(_) => {
            "it was issued by another issuer than CONSOLE_OIDC_ISSUER".into()
        }
        ClaimsVerificationError::InvalidNonce(_) => {
            "its nonce does not belong to this sign-in (a replayed or mixed-up sign-in)".into()
        }
        ClaimsVerificationError::SignatureVerification(s) => {
            format!("its signature does not verify with the issuer's keys ({s})")
        }
        other => truncate(&other.to_string()),
    }
}

fn identity(
    client: &OidcClient,
    token: &IdToken,
    nonce: &str,
    groups_claim: &str,
) -> Result<Identity, ClaimsVerificationError> {
    let claims = token.claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))?;
    // An address the provider says it has not verified could be anyone's.
    let email = claims
        .email()
        .filter(|_| claims.email_verified() != Some(false))
        .map(|e| e.as_str().to_owned());
    Ok(Identity {
        subject: claims.subject().as_str().to_owned(),
        email,
        groups: groups(claims.additional_claims(), groups_claim),
    })
}

/// The groups claim as a list: an array of strings, or one string.
fn groups(extra: &ExtraClaims, claim: &str) -> Vec<String> {
    match extra.claims.get(claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra(v: serde_json::Value) -> ExtraClaims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_groups_claim_is_an_array_or_one_string() {
        let e = extra(json!({"groups": ["a", "b", 3], "cognito:groups": "admins"}));
        assert_eq!(groups(&e, "groups"), ["a", "b"]);
        assert_eq!(groups(&e, "cognito:groups"), ["admins"]);
        assert!(groups(&e, "roles").is_empty());
    }
}
