//! An in-process client of the router (console and API): requests go straight
//! into the axum `Router` (no socket), with a cookie jar, so tests can look at
//! every header, cookie and status the console answers.

use super::app::{CONSOLE_PASSWORD, Harness};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use secrecy::SecretString;
use sophos_cw_sync::app::App;
use sophos_cw_sync::config::Environment;
use sophos_cw_sync::config::operators::Role;
use sophos_cw_sync::console::ConsoleConfig;
use sophos_cw_sync::console::session::{self, Person, SessionKey, SignInWay};
use sophos_cw_sync::serve::LocalInvoker;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The console's defaults with a short refused-login delay, so tests stay quick.
pub fn test_config() -> ConsoleConfig {
    ConsoleConfig {
        login_delay: Duration::from_millis(300),
        ..ConsoleConfig::default()
    }
}

/// The App of a harness with its secrets re-read on every request (so a test can
/// rotate the console token) and a local invoker for "Sync now".
pub fn app(h: &Harness) -> (Arc<App>, Arc<LocalInvoker>) {
    let invoker = Arc::new(LocalInvoker::new());
    let app = Arc::new(App::new(
        Environment {
            secrets_refresh: Duration::ZERO,
            ..h.env()
        },
        h.store.clone(),
        invoker.clone(),
        None,
    ));
    invoker.attach(&app);
    (app, invoker)
}

/// A person the identity provider vouched for, with `role` at sign-in.
pub fn oidc_person(email: &str, role: Role) -> Person {
    Person {
        via: SignInWay::Oidc,
        subject: format!("sub-{email}"),
        email: Some(email.to_owned()),
        role,
        groups: Vec::new(),
    }
}

/// The session key of the harness's secrets as they are now (the console derives
/// it the same way from `consoleToken` and `consoleOidcClientSecret`).
pub fn session_key(h: &Harness) -> SessionKey {
    let secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&h.secrets_path).unwrap()).unwrap();
    let field = |name: &str| {
        secret[name]
            .as_str()
            .map(|v| SecretString::from(v.to_owned()))
    };
    let oidc = field("consoleOidcClientSecret").filter(|_| h.console_oidc.is_some());
    SessionKey::from_secrets(field("consoleToken").as_ref(), oidc.as_ref())
        .expect("the harness's console has a way in")
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first `name="csrf"` hidden field of the page.
    pub fn csrf(&self) -> String {
        form_token(&self.body).unwrap_or_else(|| panic!("no csrf field in: {}", self.body))
    }
}

pub fn form_token(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

/// A browser-like client: keeps cookies, sends `Sec-Fetch-Site: same-origin` on
/// its POSTs unless told otherwise.
pub struct Client {
    pub router: Router,
    pub jar: BTreeMap<String, String>,
}

impl Client {
    pub fn new(router: Router) -> Self {
        Self {
            router,
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, req: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .expect("body");
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = Request::get(path)
            .header("host", "console.test")
            .header("cookie", self.cookie_header())
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// A POST with `Sec-Fetch-Site: same-origin`, as a console page's form sends it.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.post_with(path, form, &[("sec-fetch-site", "same-origin")])
            .await
    }

    pub async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::post(path)
            .header("host", "console.test")
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// Signs in as `person` with a session cookie forged from the harness's
    /// secrets (what the OpenID Connect callback issues); returns the home page's
    /// form token.
    pub async fn sign_in_as(&mut self, h: &Harness, person: Person) -> String {
        let key = session_key(h);
        let (_, cookie) = key.issue(
            person,
            std::time::SystemTime::now(),
            Duration::from_secs(3600),
        );
        self.jar.insert(session::COOKIE.to_owned(), cookie);
        let home = self.get("/console/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        home.csrf()
    }

    /// Signs in with the harness's console password; returns the page's form token.
    pub async fn sign_in(&mut self) -> String {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.csrf();
        let answer = self
            .post(
                "/console/login",
                &[
                    ("csrf", &csrf),
                    ("next", "/console/"),
                    ("password", CONSOLE_PASSWORD),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let home = self.get("/console/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        home.csrf()
    }
}
