//! Sign in with the console password (the secret's `consoleToken`) and sign out.
//! Both are audited; a refused password is answered after a fixed delay.

use crate::console::audit_log::{self, ConsoleAction};
use crate::console::lockout;
use crate::console::page::{
    self, ConsoleError, Form, Layout, SignedForm, query_get, query_pairs, render_with, see_other,
};
use crate::console::session;
use crate::state::Web;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

pub fn routes() -> Router<Web> {
    Router::new()
        .route(
            "/console",
            get(|| async { see_other(crate::console::HOME) }),
        )
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    problem: Option<String>,
    signed_out: bool,
    /// Sign-in through the identity provider, offered first when it is set up:
    /// the link that starts it.
    oidc_href: Option<String>,
    /// The password form (the break-glass when OpenID Connect is set up); only
    /// when the secret has a `consoleToken`.
    password: bool,
}

/// Lifetime of the login form's one-time token.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

async fn login_form(State(web): State<Web>, uri: Uri) -> Result<Response, ConsoleError> {
    page::session_key(&web).await?;
    let q = query_pairs(&uri)?;
    let next = safe_next(query_get(&q, "next"));
    let signed_out = query_get(&q, "signedOut").is_some();
    Ok(form_page(&web, StatusCode::OK, next, None, signed_out).await)
}

/// The form with a fresh one-time token, also set as a cookie (double submit:
/// before a session exists, only a page of ours can know the cookie's value).
async fn form_page(
    web: &Web,
    status: StatusCode,
    next: String,
    problem: Option<String>,
    signed_out: bool,
) -> Response {
    let nonce = session::random_hex();
    let oidc_href = web
        .app
        .env
        .console_oidc
        .as_ref()
        .map(|_| format!("/console/auth/login?next={}", page::encode(&next)));
    let password = page::secrets(web)
        .await
        .is_ok_and(|s| s.console_token.is_some());
    let page = LoginPage {
        layout: Layout::anonymous("login"),
        csrf: nonce.clone(),
        next,
        problem,
        signed_out,
        oidc_href,
        password,
    };
    let mut response = render_with(status, &page);
    let cookie = session::set_cookie(
        session::LOGIN_COOKIE,
        &nonce,
        LOGIN_FORM_TTL,
        web.console.config.secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let arrived = Instant::now();
    crate::console::csrf::check_origin(&headers).map_err(ConsoleError::Forbidden)?;
    let form = Form::parse(&body)?;
    let expected_nonce = session::cookie(&headers, session::LOGIN_COOKIE).unwrap_or("");
    let presented_nonce = form.get("csrf").unwrap_or("");
    if expected_nonce.is_empty()
        || !crate::api::auth::token_matches(expected_nonce.as_bytes(), presented_nonce.as_bytes())
    {
        return Err(ConsoleError::Forbidden(
            "the sign-in form is stale or was not sent from this console (its security token does not match); open the sign-in page again".into(),
        ));
    }
    let next = safe_next(form.get("next"));
    let secrets = page::secrets(&web).await?;
    let Some(token) = secrets.console_token.as_ref() else {
        if web.app.env.console_oidc.is_some() {
            return Err(ConsoleError::Forbidden(
                "this console has no password (the secret has no \"consoleToken\"): sign in with your organisation's account on the sign-in page instead".into(),
            ));
        }
        return Err(page::switched_off());
    };
    let store = web.app.store.as_ref();
    let now = crate::clock::now();
    let oidc = web.app.env.console_oidc.is_some();
    // Locked after too many wrong passwords: refused unchecked, even the right one.
    if let Some(until) = lockout::locked_until(store, now).await? {
        let audit = lockout::audit_refused(store, until).await;
        tokio::time::sleep_until(arrived + web.console.config.login_delay).await;
        audit?;
        return Ok(lockout::locked_response(until, now, oidc));
    }
    let password = form.get("password").unwrap_or("");
    if !crate::api::auth::token_matches(token.expose_secret().as_bytes(), password.as_bytes()) {
        let audit = audit_log::record(
            store,
            ConsoleAction {
                actor: "console:anonymous".into(),
                action: "consoleLoginFailed",
                tenant_id: None,
                agreement_id: None,
                detail: "sign-in refused: wrong password".into(),
            },
        )
        .await;
        let counted = lockout::record_failure(store, now).await;
        let (locked, lock_audit) = match &counted {
            Ok(lockout::Failure::LockStarted(until)) => (
                Some(*until),
                lockout::audit_lock_started(store, *until).await,
            ),
            Ok(lockout::Failure::AlreadyLocked(until)) => (Some(*until), Ok(())),
            _ => (None, Ok(())),
        };
        // The same wait whatever happened above.
        tokio::time::sleep_until(arrived + web.console.config.login_delay).await;
        audit?;
        counted?;
        lock_audit?;
        if let Some(until) = locked {
            return Ok(lockout::locked_response(until, now, oidc));
        }
        return Ok(form_page(
            &web,
            StatusCode::UNAUTHORIZED,
            next,
            Some("That password is not the console password. Check the secret's consoleToken and try again.".into()),
            false,
        )
        .await);
    }
    let key = page::session_key(&web).await?;
    let (session, value) = key.issue(
        session::Person::password(),
        SystemTime::now(),
        web.console.config.session_ttl,
    );
    audit_log::record(
        web.app.store.as_ref(),
        ConsoleAction {
            actor: session.actor(),
            action: "consoleLogin",
            tenant_id: None,
            agreement_id: None,
            detail: "signed in".into(),
        },
    )
    .await?;
    let secure = web.console.config.secure_cookies;
    let mut response = see_other(&next);
    let h = response.headers_mut();
    for cookie in [
        session::set_cookie(
            session::COOKIE,
            &value,
            web.console.config.session_ttl,
            secure,
        ),
        session::clear_cookie(session::LOGIN_COOKIE, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

async fn logout(
    State(web): State<Web>,
    SignedForm { authed, form: _ }: SignedForm,
) -> Result<Response, ConsoleError> {
    // The cookie is removed below; the store remembers the session as ended, so a
    // copy of the cookie no longer signs anyone in.
    let remaining = authed.session.expires.saturating_sub(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    );
    web.app
        .store
        .claim_once(
            &page::ended_key(&authed.session),
            "signed-out",
            chrono::Utc::now(),
            Duration::from_secs(remaining + 60),
        )
        .await?;
    audit_log::record(
        web.app.store.as_ref(),
        ConsoleAction {
            actor: authed.actor(),
            action: "consoleLogout",
            tenant_id: None,
            agreement_id: None,
            detail: "signed out".into(),
        },
    )
    .await?;
    let mut response = see_other("/console/login?signedOut=1");
    let cookie = session::clear_cookie(session::COOKIE, web.console.config.secure_cookies);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response.into_response())
}

/// Where to go after signing in: only a console path of ours (no open redirect).
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.starts_with("//")
                && !n.contains("\\")
                && !n.contains("://") =>
        {
            n.to_owned()
        }
        _ => crate::console::HOME.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/console/runs?x=1")), "/console/runs?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/other",
            "/console",
            "/console/\\evil",
            "/console/x?u=http://e",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(safe_next(None), "/console/");
    }
}
