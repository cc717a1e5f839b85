//! Sign-in through the partner's identity provider (OpenID Connect):
//! `/console/auth/login` sends the browser to the issuer, `/console/auth/callback`
//! ends the flow. Someone the issuer vouches for but whom `operators` does not
//! name is refused (403, audited) and gets no session.

use crate::auth::oidc::{Flow, Identity, OidcError, Provider};
use crate::config::env::OidcConfig;
use crate::config::operators::{self, Role};
use crate::console::audit_log::{self, ConsoleAction};
use crate::console::page::{
    self, ConsoleError, Layout, encode, query_get, query_pairs, render_with,
};
use crate::console::session::{self, Person, SessionKey, SignInWay};
use crate::state::Web;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cookie that carries the flow (state, nonce, PKCE verifier, where to go
/// afterwards) from the redirect to the issuer until its callback.
pub const FLOW_COOKIE: &str = "scw_oidc";
/// How long a started sign-in may take at the identity provider.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// What the flow cookie's MAC is for (a session key signs other things too).
const FLOW_PURPOSE: &str = "oidc-flow";

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/console/auth/login", get(start))
        .route("/console/auth/callback", get(callback))
}

/// The flow as kept in the cookie.
#[derive(Serialize, Deserialize)]
struct FlowCookie {
    #[serde(flatten)]
    flow: Flow,
    next: String,
    /// Unix seconds.
    expires: u64,
}

async fn start(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let (config, secret) = configured(&web).await?;
    let q = query_pairs(&uri)?;
    let next = super::login::safe_next(query_get(&q, "next"));
    let redirect_uri = redirect_uri(&web, &headers)?;
    let key = page::session_key(&web).await?;
    let provider = provider(&web, &config, &secret, redirect_uri);
    let (location, flow) = provider.start().await.map_err(unavailable)?;
    let cookie = FlowCookie {
        flow,
        next,
        expires: unix_now() + FLOW_TTL.as_secs(),
    };
    let json = serde_json::to_vec(&cookie).expect("a flow serialises");
    let value = key.seal(FLOW_PURPOSE, &json);
    let mut response = page::see_other(&location);
    set(
        &mut response,
        flow_cookie(&value, FLOW_TTL, web.console.config.secure_cookies),
    );
    Ok(response)
}

/// The OpenID Connect configuration and its client secret, or the page that says
/// what is missing.
async fn configured(web: &Web) -> Result<(OidcConfig, SecretString), ConsoleError> {
    let Some(config) = web.app.env.console_oidc.clone() else {
        return Err(ConsoleError::NotFound(
            "sign-in through an identity provider is not set up on this console (CONSOLE_OIDC_ISSUER and CONSOLE_OIDC_CLIENT_ID are not set); sign in with the console password instead".into(),
        ));
    };
    let secrets = page::secrets(web).await?;
    let Some(secret) = secrets.console_oidc_client_secret.clone() else {
        return Err(ConsoleError::Unavailable(
            "sign-in through the identity provider is set up (CONSOLE_OIDC_ISSUER), but the secret has no \"consoleOidcClientSecret\": add the app registration's client secret to the secret as \"consoleOidcClientSecret\" (Secrets Manager, or the SYNC_SECRETS file) and sign in again".into(),
        ));
    };
    Ok((config, secret))
}

fn provider<'a>(
    web: &'a Web,
    config: &'a OidcConfig,
    secret: &'a SecretString,
    redirect_uri: String,
) -> Provider<'a> {
    Provider {
        config,
        client_secret: secret,
        redirect_uri,
        cache: &web.console.oidc,
    }
}

fn unavailable(e: OidcError) -> ConsoleError {
    tracing::warn!(error = %e, "console: OpenID Connect sign-in failed");
    ConsoleError::Unavailable(e.to_string())
}

/// The console's callback address the issuer sends the browser back to:
/// `CONSOLE_URL` + `/auth/callback`, else (only on this machine) the request's
/// loopback host over http. A Host header from elsewhere could send codes to a
/// stranger's address, so it is never trusted beyond loopback.
pub fn redirect_uri(web: &Web, headers: &HeaderMap) -> Result<String, ConsoleError> {
    if let Some(url) = &web.app.env.console_url {
        return Ok(format!("{url}/auth/callback"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let local = reqwest::Url::parse(&format!("http://{host}/"))
        .ok()
        .filter(|u| {
            u.username().is_empty()
                && u.password().is_none()
                && u.path() == "/"
                && crate::config::env::is_loopback_host(u)
        });
    match local {
        Some(mut url) => {
            url.set_path("/console/auth/callback");
            Ok(url.to_string())
        }
        None => Err(ConsoleError::BadRequest(format!(
            "the console does not know its own address for the identity provider's redirect URI (the request came to {host:?}, not this machine): set CONSOLE_URL to the console's https address, e.g. https://<api>/console, and register <CONSOLE_URL>/auth/callback as the app's redirect URI"
        ))),
    }
}

#[derive(Template)]
#[template(path = "auth_refused.html")]
struct RefusedPage {
    layout: Layout,
    status: u16,
    title: &'static str,
    message: String,
    /// The address to add to `operators` (someone the issuer vouched for).
    not_an_operator: Option<String>,
    retry: String,
}

#[derive(Template)]
#[template(path = "auth_continue.html")]
struct ContinuePage {
    layout: Layout,
    who: String,
    role: Role,
    next: String,
}

/// Why a callback signed nobody in.
enum Refusal {
    /// The flow itself failed (state, replay, the issuer's answer, the token).
    Flow(StatusCode, &'static str, String),
    /// The issuer vouched for them, `operators` does not name them.
    NotAnOperator(String),
    /// A console page (the store, the secrets, the configuration).
    Page(ConsoleError),
}

impl From<ConsoleError> for Refusal {
    fn from(e: ConsoleError) -> Self {
        Refusal::Page(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::Page(e.into())
    }
}

fn flow_failed(message: impl Into<String>) -> Refusal {
    Refusal::Flow(
        StatusCode::BAD_REQUEST,
        "Sign-in not completed",
        message.into(),
    )
}

async fn callback(State(web): State<Web>, headers: HeaderMap, uri: Uri) -> Response {
    let secure = web.console.config.secure_cookies;
    let next = flow_next(&web, &headers).await;
    let mut response = match finish(&web, &headers, &uri).await {
        Ok(response) => response,
        Err(refusal) => refused(refusal, &next),
    };
    // The flow is over either way: a second callback cannot use it.
    set(&mut response, flow_cookie("", Duration::ZERO, secure));
    response
}

/// Where the refused sign-in should lead back to (the flow's `next`, if readable).
async fn flow_next(web: &Web, headers: &HeaderMap) -> String {
    match page::session_key(web).await {
        Ok(key) => open_flow(&key, headers).map(|f| f.next),
        Err(_) => None,
    }
    .unwrap_or_else(|| crate::console::HOME.to_owned())
}

fn refused(refusal: Refusal, next: &str) -> Response {
    let (status, title, message, not_an_operator) = match refusal {
        Refusal::Page(e) => return e.into_response(),
        Refusal::Flow(status, title, message) => (status, title, message, None),
        Refusal::NotAnOperator(address) => (
            StatusCode::FORBIDDEN,
            "Not an operator",
            format!(
                "Your identity provider signed you in as {address}, but this console's settings do not name that address (or a group of yours) in \"operators\", so you were not signed in. Ask a console admin to add {{\"email\": \"{address}\", \"role\": \"viewer\"}} to \"operators\" (on the Settings page, with PUT /settings, or in the SYNC_SETTINGS file), then sign in again."
            ),
            Some(address),
        ),
    };
    let page = RefusedPage {
        layout: Layout::anonymous("login"),
        status: status.as_u16(),
        title,
        message,
        not_an_operator,
        retry: format!("/console/login?next={}", encode(next)),
    };
    render_with(status, &page)
}

fn open_flow(key: &SessionKey, headers: &HeaderMap) -> Option<FlowCookie> {
    let value = session::cookie(headers, FLOW_COOKIE)?;
    let json = key.unseal(FLOW_PURPOSE, value)?;
    let flow: FlowCookie = serde_json::from_slice(&json).ok()?;
    (flow.expires > unix_now()).then_some(flow)
}

async fn finish(web: &Web, headers: &HeaderMap, uri: &Uri) -> Result<Response, Refusal> {
    let q = query_pairs(uri)?;
    if let Some(error) = query_get(&q, "error") {
        let description = query_get(&q, "error_description").unwrap_or("no description");
        return Err(Refusal::Flow(
            StatusCode::UNAUTHORIZED,
            "Sign-in refused by the identity provider",
            format!(
                "The identity provider did not sign you in ({error}: {description}). Nobody was signed in; sign in again, or ask whoever runs the identity provider to give you access to this app."
            ),
        ));
    }
    let (config, secret) = configured(web).await?;
    let key = page::session_key(web).await?;
    let flow = open_flow(&key, headers).ok_or_else(|| {
        flow_failed("This sign-in was not started in this browser, or was started more than 10 minutes ago (its cookie is missing, expired or altered). Nobody was signed in; sign in again.")
    })?;
    let state = query_get(&q, "state").unwrap_or("");
    if !crate::api::auth::token_matches(flow.flow.state.as_bytes(), state.as_bytes()) {
        return Err(flow_failed(
            "The identity provider's answer does not belong to the sign-in this browser started (its state does not match). Nobody was signed in; sign in again.",
        ));
    }
    // A callback is good once, even with its cookie: a replayed one is refused.
    let claimed = web
        .app
        .store
        .claim_once(
            &format!("console-oidc-state#{}", flow.flow.state),
            "used",
            chrono::Utc::now(),
            FLOW_TTL,
        )
        .await?;
    if claimed.is_some() {
        return Err(flow_failed(
            "This sign-in's answer from the identity provider was already used. Nobody was signed in; sign in again.",
        ));
    }
    let code = query_get(&q, "code").ok_or_else(|| {
        flow_failed(
            "The identity provider's answer has no code. Nobody was signed in; sign in again.",
        )
    })?;
    let redirect_uri = redirect_uri(web, headers)?;
    let identity = provider(web, &config, &secret, redirect_uri)
        .finish(code, &flow.flow)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "console: OpenID Connect sign-in refused");
            match e {
                OidcError::Discovery { .. } => {
                    Refusal::Page(ConsoleError::Unavailable(e.to_string()))
                }
                e => Refusal::Flow(StatusCode::UNAUTHORIZED, "Sign-in refused", e.to_string()),
            }
        })?;
    admit(web, &key, &config, identity, &flow.next).await
}

/// Signs in the person the issuer vouched for, if `operators` names them.
async fn admit(
    web: &Web,
    key: &SessionKey,
    config: &OidcConfig,
    identity: Identity,
    next: &str,
) -> Result<Response, Refusal> {
    let Some(email) = identity.email.clone() else {
        refusal_audit(
            web,
            format!("console:sub:{}", identity.subject),
            format!(
                "sign-in refused: {} sent no (verified) email for subject {}",
                config.issuer, identity.subject
            ),
        )
        .await?;
        return Err(Refusal::Flow(
            StatusCode::FORBIDDEN,
            "No email address",
            format!(
                "Your identity provider signed you in (subject {}) but sent no verified email address, and the console names operators by their address. Nobody was signed in. Whoever runs the identity provider can add the \"email\" claim to the ID token (Entra ID: the app registration's Token configuration, optional claim \"email\"; see docs/deploy.md); then sign in again.",
                identity.subject
            ),
        ));
    };
    let settings = web.app.settings().await?;
    let Some(role) = operators::role_for(&settings.operators, Some(&email), &identity.groups)
    else {
        refusal_audit(
            web,
            format!("console:{email}"),
            format!(
                "sign-in refused: {email} (signed in through {}) is not named in operators",
                config.issuer
            ),
        )
        .await?;
        return Err(Refusal::NotAnOperator(email));
    };
    let person = Person {
        via: SignInWay::Oidc,
        subject: identity.subject,
        email: Some(email),
        role,
        groups: operators::named_groups(&settings.operators, &identity.groups),
    };
    let (session, value) = key.issue(person, SystemTime::now(), web.console.config.session_ttl);
    audit_log::record(
        web.app.store.as_ref(),
        ConsoleAction {
            actor: session.actor(),
            action: "consoleLogin",
            tenant_id: None,
            agreement_id: None,
            detail: format!("signed in through {} as {role}", config.issuer),
        },
    )
    .await?;
    // Not a 303: the session cookie is SameSite=Strict, and this response ends a
    // redirect chain that began at the identity provider (another site), so a
    // browser would not send the new cookie on a redirect straight into the
    // console and the first page would ask to sign in again. A page of ours that
    // moves on by itself (meta refresh: the CSP allows no inline script) makes
    // the next request a same-site one.
    let page = ContinuePage {
        layout: Layout::anonymous("login"),
        who: session.person.display(),
        role,
        next: next.to_owned(),
    };
    let mut response = render_with(StatusCode::OK, &page);
    set(
        &mut response,
        session::set_cookie(
            session::COOKIE,
            &value,
            web.console.config.session_ttl,
            web.console.config.secure_cookies,
        ),
    );
    Ok(response)
}

async fn refusal_audit(web: &Web, actor: String, detail: String) -> Result<(), Refusal> {
    audit_log::record(
        web.app.store.as_ref(),
        ConsoleAction {
            actor,
            action: "consoleSignInRefused",
            tenant_id: None,
            agreement_id: None,
            detail,
        },
    )
    .await?;
    Ok(())
}

/// The flow cookie: like the session's, but SameSite=Lax, because the identity
/// provider's redirect back to the callback is a cross-site navigation and a
/// Strict cookie would not come with it.
fn flow_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    session::set_cookie(FLOW_COOKIE, value, max_age, secure)
        .replace("SameSite=Strict", "SameSite=Lax")
}

fn set(response: &mut Response, cookie: String) {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
