//! What every console page shares: signing in (the session extractor), the
//! layout, rendering, form bodies with their CSRF token, error pages, and the
//! security headers.

use super::session::{self, Session, SessionKey, SignInWay};
use crate::config::operators::{self, Role};
use crate::state::Web;
use askama::Template;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::time::SystemTime;

/// The strict policy of every console answer: nothing inline, nothing from
/// elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the security headers to every console response (pages, errors, assets).
pub async fn security_headers(
    axum::extract::State(_web): axum::extract::State<Web>,
    mut response: Response,
) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages hold billing data: never kept by a browser or a proxy. Assets set
    // their own (long) caching and keep it.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What went wrong, as a page with a 4xx (or 503) status that says what to do.
#[derive(Debug)]
pub enum ConsoleError {
    /// Not signed in (or the session expired, or the token was rotated).
    SignIn {
        next: String,
    },
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// The service cannot do it now (secrets, store or a vendor): not the
    /// operator's input.
    Unavailable(String),
    /// A bug: the page could not be made (the cause is in the service log).
    Internal(String),
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "console: the store failed");
        ConsoleError::Unavailable(format!(
            "the store could not be read or written ({e}); try again in a moment"
        ))
    }
}

impl From<crate::app::changes::ChangeError> for ConsoleError {
    fn from(e: crate::app::changes::ChangeError) -> Self {
        use crate::app::changes::ChangeError;
        match e {
            ChangeError::Store(s) => s.into(),
            ChangeError::Invalid(m) => ConsoleError::BadRequest(format!("nothing was saved: {m}")),
            e @ ChangeError::UnknownAgreementType { .. } => ConsoleError::BadRequest(e.to_string()),
            e @ (ChangeError::ConnectWiseUnreachable(_) | ChangeError::Secrets(_)) => {
                tracing::error!(error = %e, "console: cannot check the agreement type");
                ConsoleError::Unavailable(
                    "ConnectWise could not be asked whether the agreement type exists, so nothing was saved; try again in a moment (the operator finds the cause in the service log)".into(),
                )
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            ConsoleError::SignIn { next } => {
                let target = format!("/console/login?next={}", encode(next));
                return Redirect::to(&target).into_response();
            }
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            ConsoleError::Conflict(m) => (StatusCode::CONFLICT, "Conflict", m),
            ConsoleError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m),
            ConsoleError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error", m),
        };
        let page = ErrorPage {
            layout: Layout::anonymous("error"),
            status: status.as_u16(),
            title,
            message,
        };
        render_with(status, &page)
    }
}

/// The frame of every page: navigation, the signed-in session and the form
/// token its forms carry.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Which navigation entry is current.
    pub nav: &'static str,
    pub signed_in: bool,
    /// The per-session CSRF token (empty when not signed in).
    pub csrf: String,
    /// How the trail names the signed-in person, e.g. `console:alice@example.com`.
    pub actor: String,
    /// Who is signed in, for the header (their email, or "the console password").
    pub who: String,
    /// The signed-in person's role (viewer when not signed in); pages show only
    /// what it may do, and every state-changing route checks it again.
    pub role: Role,
    pub htmx: &'static str,
    pub css: &'static str,
    /// While the sync is paused: who paused it, when and why (a banner on every page).
    pub paused: Option<String>,
}

impl Layout {
    pub fn anonymous(nav: &'static str) -> Self {
        Self {
            nav,
            signed_in: false,
            csrf: String::new(),
            actor: String::new(),
            who: String::new(),
            role: Role::Viewer,
            htmx: super::assets::HTMX_PATH,
            css: super::assets::CSS_PATH,
            paused: None,
        }
    }

    /// Map and ignore customers, start runs, pause and resume.
    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }

    /// Approve and reject held changes.
    pub fn can_approve(&self) -> bool {
        self.role >= Role::Approver
    }

    /// Change the settings.
    pub fn can_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    /// The one muted line a page shows in place of the controls the role may not
    /// use, so an empty section is not mistaken for nothing to do.
    pub fn role_note(&self, what: &str, needed: &str) -> String {
        format!(
            "Your role, {role}, may {may}. You need the role {needed} or higher to {what}: a console admin gives it in the settings' \"operators\".",
            role = self.role,
            may = self.role.may(),
        )
    }
}

/// A signed-in request: its session and the key that signed it.
pub struct Authed {
    pub session: Session,
    pub key: SessionKey,
    /// The pause in force when the request came (see [`Layout::paused`]).
    pub paused: Option<String>,
}

impl Authed {
    pub fn layout(&self, nav: &'static str) -> Layout {
        Layout {
            nav,
            signed_in: true,
            csrf: self.key.form_token(&self.session),
            actor: self.session.actor(),
            who: self.session.person.display(),
            role: self.role(),
            paused: self.paused.clone(),
            ..Layout::anonymous(nav)
        }
    }

    pub fn actor(&self) -> String {
        self.session.actor()
    }

    /// The role this request acts with (the one signed in with; a lowered role
    /// ends the session, see [`authed`]).
    pub fn role(&self) -> Role {
        self.session.person.role
    }

    /// Refuses (403, nothing changed) a request whose role is below `needed`;
    /// `what` says what was refused, e.g. "approve held changes".
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ConsoleError> {
        if self.role() >= needed {
            return Ok(());
        }
        Err(ConsoleError::Forbidden(format!(
            "you are signed in as {} with the role {}, and to {what} needs the role {needed} or higher ({needed}s may {}). Nothing was changed. Ask a console admin to give you the role in the settings' \"operators\".",
            self.session.person.display(),
            self.role(),
            needed.may(),
        )))
    }
}

/// The secrets in force; a page that sends the operator to the log when they
/// cannot be read (the cause may name a secret's source, never for a visitor).
pub async fn secrets(web: &Web) -> Result<std::sync::Arc<crate::config::Secrets>, ConsoleError> {
    web.app.secrets.get().await.map_err(|e| {
        tracing::error!(error = %e, "console: cannot load the secrets");
        ConsoleError::Unavailable(
            "the service cannot read its secrets; the operator finds the cause in the service log"
                .into(),
        )
    })
}

/// The console with no way in: no `consoleToken`, and no OpenID Connect sign-in
/// with its client secret.
pub fn switched_off() -> ConsoleError {
    ConsoleError::Unavailable(
        "the console is switched off: the secret has no \"consoleToken\" and OpenID Connect sign-in is not set up (CONSOLE_OIDC_ISSUER, CONSOLE_OIDC_CLIENT_ID and the secret's \"consoleOidcClientSecret\"). Add \"consoleToken\": \"<a long random password>\" to the secret (Secrets Manager, or the SYNC_SECRETS file) and sign in with it, or set up sign-in through your identity provider (docs/deploy.md).".into(),
    )
}

/// The key sessions are signed with, from the console's secrets in force; a
/// clear error when the console has no way in.
pub async fn session_key(web: &Web) -> Result<SessionKey, ConsoleError> {
    let secrets = secrets(web).await?;
    let oidc_secret = web
        .app
        .env
        .console_oidc
        .as_ref()
        .and(secrets.console_oidc_client_secret.as_ref());
    SessionKey::from_secrets(secrets.console_token.as_ref(), oidc_secret).ok_or_else(switched_off)
}

/// The signed-in session of a request, or a redirect to the login page that comes
/// back to `uri` afterwards.
pub async fn authed(web: &Web, headers: &HeaderMap, uri: &Uri) -> Result<Authed, ConsoleError> {
    let key = session_key(web).await?;
    let next = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| super::HOME.to_owned());
    let session = session::cookie(headers, session::COOKIE)
        .and_then(|value| key.open(value, SystemTime::now()))
        .ok_or_else(|| ConsoleError::SignIn { next: next.clone() })?;
    // A signed-out session stays signed out, even if its cookie was copied.
    let ended = web
        .app
        .store
        .claimed(&ended_key(&session), chrono::Utc::now())
        .await?;
    if ended.is_some() {
        return Err(ConsoleError::SignIn { next });
    }
    let settings = web.app.settings().await;
    if session.person.via == SignInWay::Oidc {
        // A role taken away (or lowered) in `operators` ends the session at the
        // next request; so does switching OpenID Connect off.
        let settings = settings.as_ref().map_err(|e| {
            tracing::error!(error = %e, "console: cannot read the settings to check a role");
            ConsoleError::Unavailable(
                "the settings cannot be read, so your role cannot be checked; try again in a moment (the operator finds the cause in the service log)".into(),
            )
        })?;
        let now = operators::role_for(
            &settings.operators,
            session.person.email.as_deref(),
            &session.person.groups,
        );
        if web.app.env.console_oidc.is_none() || now.is_none_or(|r| r < session.person.role) {
            return Err(ConsoleError::SignIn { next });
        }
    }
    // Settings the store cannot give are told by the page itself; the banner only
    // needs them when they are there.
    let paused = match settings {
        Ok(settings) => settings.paused.map(|p| p.describe()),
        Err(_) => None,
    };
    Ok(Authed {
        session,
        key,
        paused,
    })
}

/// The store key that marks a session as signed out (kept until the session
/// would have expired anyway).
pub fn ended_key(session: &Session) -> String {
    format!("console-signed-out#{}", session.id)
}

/// A urlencoded form body. Repeated fields keep every value (bulk selections).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &Bytes) -> Result<Self, ConsoleError> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(Form)
            .map_err(|_| {
                ConsoleError::BadRequest(
                    "the form could not be read (it is not a urlencoded form); open the page again and resubmit".into(),
                )
            })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// A required field, or a 400 that names it.
    pub fn required(&self, name: &str, what: &str) -> Result<&str, ConsoleError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "the form has no {what} (field {name:?}): fill it in and resubmit"
            ))
        })
    }
}

/// The biggest console form accepted (the settings editor's JSON is the largest).
const MAX_FORM: usize = 256 * 1024;

/// A signed-in request, as an extractor: a handler that takes `Authed` is only
/// reached with a valid session; anything else is sent to the sign-in page.
impl axum::extract::FromRequestParts<Web> for Authed {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        web: &Web,
    ) -> Result<Self, Self::Rejection> {
        authed(web, &parts.headers, &parts.uri).await
    }
}

/// A signed-in POST's form, as an extractor (the last one of a handler: it reads
/// the body): the origin check, the session and the form token all passed.
pub struct SignedForm {
    pub authed: Authed,
    pub form: Form,
}

impl axum::extract::FromRequest<Web> for SignedForm {
    type Rejection = ConsoleError;

    async fn from_request(req: axum::extract::Request, web: &Web) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            ConsoleError::BadRequest(format!(
                "the form could not be read (larger than {} KiB, or cut short); shorten it and resubmit",
                MAX_FORM / 1024
            ))
        })?;
        let (authed, form) = authed_post(web, &parts.headers, &parts.uri, &body).await?;
        Ok(Self { authed, form })
    }
}

/// A signed-in POST: the session, the origin check and the form token, then the
/// form. Stale or forged forms get a 403 page that says to reload.
async fn authed_post(
    web: &Web,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
) -> Result<(Authed, Form), ConsoleError> {
    super::csrf::check_origin(headers).map_err(ConsoleError::Forbidden)?;
    let authed = authed(web, headers, uri).await?;
    let form = Form::parse(body)?;
    let token = form.get("csrf").unwrap_or("");
    if !authed.key.form_token_matches(&authed.session, token) {
        return Err(ConsoleError::Forbidden(
            "this form's security token is missing or belongs to another session (the page may be stale, or you signed in again since); reload the page and submit it again".into(),
        ));
    }
    Ok((authed, form))
}

pub fn render<T: Template>(page: &T) -> Response {
    render_with(StatusCode::OK, page)
}

pub fn render_with<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the page could not be rendered; see the service log",
            )
                .into_response()
        }
    }
}

/// How the API spells an enum value (its serde name), so a page shows the same
/// word as `status`, the JSON report and the CLI.
pub fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// 303 See Other: where a form's POST sends the browser.
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s[2..].to_owned())
        .unwrap_or_default()
}

/// A query string's pairs (bad encoding is a 400).
pub fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ConsoleError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(uri.query().unwrap_or("")).map_err(|_| {
        ConsoleError::BadRequest(
            "the address's query string is not valid; follow a link from the console instead"
                .into(),
        )
    })
}

pub fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
