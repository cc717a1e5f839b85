//! The console's sign-in through an OpenID Connect issuer, without a browser:
//! against `oidc-provider-mock` (a real provider) over HTTP, and against a fake
//! issuer started here whose ID tokens the test forges (another issuer, another
//! audience, expired, a bad signature, a wrong nonce). Every refusal leaves no
//! session behind.

mod support;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde_json::{Value, json};
use sophos_cw_sync::store::{AuditFilter, Store};
use sophos_cw_sync::web::router;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::app::{Harness, OIDC_CLIENT_ID, demo_settings};
use support::console::{Answer, Client, app, test_config};
use support::oidc;

/// The console's address in these tests (the callback is taken from the
/// provider's redirect and sent to the in-process router).
const CONSOLE_URL: &str = "http://127.0.0.1:9/console";

/// A harness signing in through `issuer`, with `operators` in its settings.
async fn harness(issuer: &str, operators: Value) -> Harness {
    let mut h = Harness::start().await.with_oidc(issuer);
    h.console_url = Some(CONSOLE_URL.into());
    let mut settings = demo_settings();
    settings.operators = serde_json::from_value(operators).expect("operators");
    h.store.put_settings(&settings).await.unwrap();
    h
}

fn client(h: &Harness) -> Client {
    let (app, _invoker) = app(h);
    Client::new(router(app, test_config()))
}

/// A unique name for this test run (the provider is shared by the binary's tests).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// (actor, action, detail) of the trail, newest first.
async fn trail(h: &Harness) -> Vec<(String, String, String)> {
    let page = h
        .store
        .list_audit_page(&AuditFilter::default(), 100, None)
        .await
        .unwrap();
    page.items
        .into_iter()
        .map(|e| (e.actor, e.action, e.detail.unwrap_or_default()))
        .collect()
}

/// No session was issued, and none works: the console sends to the sign-in page.
async fn assert_no_session(c: &mut Client, answer: &Answer) {
    assert!(
        answer.set_cookie("scw_session").is_none(),
        "a session cookie was set: {:?}",
        answer.set_cookies()
    );
    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER, "{}", home.body);
    assert!(
        home.header("location")
            .is_some_and(|l| l.starts_with("/console/login")),
        "{:?}",
        home.header("location")
    );
}

/// A fresh subject of the provider named after `name`, with an address of its own
/// as its only claim: (subject, email).
async fn person(provider: &oidc::Provider, name: &str) -> (String, String) {
    let sub = unique(name);
    let email = format!("{sub}@example.com");
    provider.set_user(&sub, json!({"email": email})).await;
    (sub, email)
}

#[tokio::test]
async fn an_operator_signs_in_through_the_provider_and_the_trail_names_her() {
    let provider = oidc::provider();
    let (sub, email) = person(provider, "alice").await;
    let h = harness(
        &provider.url,
        json!([{"email": email.to_uppercase(), "role": "approver"}]),
    )
    .await;
    let mut c = client(&h);

    let answer = oidc::sign_in(&mut c, &sub, "/console/runs").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // A page that moves on by itself (not a redirect: the cookie is Strict).
    assert!(
        answer
            .body
            .contains(r#"<meta http-equiv="refresh" content="0;url=/console/runs">"#),
        "{}",
        answer.body
    );
    let cookie = answer.set_cookie("scw_session").expect("a session cookie");
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
    assert!(
        answer
            .set_cookie("scw_oidc")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the flow cookie is cleared: {:?}",
        answer.set_cookies()
    );

    let runs = c.get("/console/runs").await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.body);
    assert!(
        runs.body.contains(&format!(
            r#"id="signed-in-as" title="console:{email}">{email} <span class="role" id="signed-in-role">approver</span>"#
        )),
        "{}",
        runs.body
    );
    let trail = trail(&h).await;
    let login = trail
        .iter()
        .find(|(_, action, _)| action == "consoleLogin")
        .expect("a consoleLogin entry");
    assert_eq!(login.0, format!("console:{email}"));
    assert!(
        login.2.contains(&provider.url) && login.2.contains("approver"),
        "{}",
        login.2
    );
}

#[tokio::test]
async fn a_group_member_gets_the_groups_role() {
    let provider = oidc::provider();
    let sub = unique("bob");
    let email = format!("{sub}@example.com");
    let group = unique("billing-admins");
    provider
        .set_user(&sub, json!({"email": email, "groups": [group, "other"]}))
        .await;
    let h = harness(
        &provider.url,
        json!([{"group": group, "role": "admin"}, {"email": email, "role": "viewer"}]),
    )
    .await;
    let mut c = client(&h);
    let answer = oidc::sign_in(&mut c, &sub, "/console/settings").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let page = c.get("/console/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(r#"<span class="role" id="signed-in-role">admin</span>"#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn someone_who_is_no_operator_is_refused_by_name_and_audited() {
    let provider = oidc::provider();
    let (sub, email) = person(provider, "carol").await;
    let h = harness(
        &provider.url,
        json!([{"email": "someone-else@example.com", "role": "admin"}]),
    )
    .await;
    let mut c = client(&h);
    let answer = oidc::sign_in(&mut c, &sub, "/console/").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(
        answer.body.contains(r#"id="not-an-operator""#),
        "{}",
        answer.body
    );
    assert!(answer.body.contains(&email), "{}", answer.body);
    assert!(
        answer.body.contains("operators") && answer.body.contains("viewer"),
        "{}",
        answer.body
    );
    assert_no_session(&mut c, &answer).await;
    let trail = trail(&h).await;
    assert!(
        trail
            .iter()
            .any(|(actor, action, detail)| action == "consoleSignInRefused"
                && *actor == format!("console:{email}")
                && detail.contains(&email)
                && detail.contains(&provider.url)),
        "{trail:?}"
    );
    assert!(!trail.iter().any(|(_, action, _)| action == "consoleLogin"));
}

#[tokio::test]
async fn a_wrong_state_is_refused() {
    let provider = oidc::provider();
    let (sub, email) = person(provider, "dave").await;
    let h = harness(&provider.url, json!([{"email": email, "role": "admin"}])).await;
    let mut c = client(&h);
    let authorize = oidc::start(&mut c, "/console/").await;
    let callback = oidc::authorize(&authorize, &sub).await;
    let state = query(&callback, "state");
    let forged = callback.replace(&format!("state={state}"), "state=forged-state");
    assert_ne!(forged, callback);
    let answer = c.get(&forged).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(
        answer.body.contains("state does not match"),
        "{}",
        answer.body
    );
    assert_no_session(&mut c, &answer).await;

    // The genuine answer in another browser (no flow cookie) is refused too.
    let mut elsewhere = client(&h);
    let answer = elsewhere.get(&callback).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(
        answer.body.contains("not started in this browser"),
        "{}",
        answer.body
    );
    assert_no_session(&mut elsewhere, &answer).await;
}

#[tokio::test]
async fn a_reused_callback_is_refused_even_with_its_cookie() {
    let provider = oidc::provider();
    let (sub, email) = person(provider, "erin").await;
    let h = harness(&provider.url, json!([{"email": email, "role": "admin"}])).await;
    let mut c = client(&h);
    let authorize = oidc::start(&mut c, "/console/").await;
    let flow_cookie = c.jar.get("scw_oidc").expect("a flow cookie").clone();
    let callback = oidc::authorize(&authorize, &sub).await;
    let first = c.get(&callback).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    // Someone replays the same answer with a copy of the flow cookie.
    let mut replay = client(&h);
    replay.jar.insert("scw_oidc".into(), flow_cookie);
    let again = replay.get(&callback).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert_no_session(&mut replay, &again).await;
}

#[tokio::test]
async fn an_error_from_the_provider_is_a_page_and_no_session() {
    let provider = oidc::provider();
    let h = harness(&provider.url, json!([])).await;
    let mut c = client(&h);
    oidc::start(&mut c, "/console/").await;
    let answer = c
        .get("/console/auth/callback?error=access_denied&error_description=The+user+said+no")
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(
        answer.body.contains("access_denied") && answer.body.contains("The user said no"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains(r#"id="sign-in-again""#),
        "{}",
        answer.body
    );
    assert_no_session(&mut c, &answer).await;
}

// --- a fake issuer whose tokens the test forges -------------------------------

/// An issuer on 127.0.0.1: discovery, JWKS (at first the fixture key
/// `issuer-key`) and a token endpoint that answers with whatever ID token the
/// test set.
struct FakeIssuer {
    url: String,
    state: Arc<FakeState>,
}

#[derive(Default)]
struct FakeState {
    id_token: Mutex<String>,
    jwks: Mutex<Value>,
    /// How often the discovery document was read.
    discoveries: AtomicUsize,
}

/// A fixture key (test-only, see tests/fixtures/oidc/README.md) with key id `kid`.
fn signing_key(file: &str, kid: &str) -> CoreRsaPrivateSigningKey {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/oidc")
            .join(file),
    )
    .unwrap();
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.into()))).unwrap()
}

fn jwks_of(key: &CoreRsaPrivateSigningKey) -> Value {
    serde_json::to_value(CoreJsonWebKeySet::new(vec![key.as_verification_key()])).unwrap()
}

async fn fake_issuer() -> FakeIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(FakeState::default());
    *state.jwks.lock().unwrap() = jwks_of(&signing_key("issuer-key.pem", "issuer-key"));
    let discovery = json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "jwks_uri": format!("{url}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let app =
        axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move |State(s): State<Arc<FakeState>>| async move {
                    s.discoveries.fetch_add(1, Ordering::SeqCst);
                    Json(discovery)
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<FakeState>>| async move {
                    Json(s.jwks.lock().unwrap().clone())
                }),
            )
            .route(
                "/token",
                post(|State(s): State<Arc<FakeState>>| async move {
                    let id_token = s.id_token.lock().unwrap().clone();
                    Json(
                        json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}),
                    )
                }),
            )
            .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeIssuer { url, state }
}

/// What the forged ID token says; [`Forged::good`] is a token the console accepts.
struct Forged {
    issuer: String,
    audience: String,
    expires_in: i64,
    nonce: String,
    /// The fixture key file and the key id the token names.
    key: (&'static str, &'static str),
    email_verified: Option<bool>,
}

impl Forged {
    fn good(issuer: &str, nonce: &str) -> Self {
        Self {
            issuer: issuer.into(),
            audience: OIDC_CLIENT_ID.into(),
            expires_in: 300,
            nonce: nonce.into(),
            key: ("issuer-key.pem", "issuer-key"),
            email_verified: None,
        }
    }

    fn sign(&self) -> String {
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            vec![Audience::new(self.audience.clone())],
            now + chrono::Duration::seconds(self.expires_in),
            now - chrono::Duration::seconds(600),
            StandardClaims::new(SubjectIdentifier::new("fake-subject".into()))
                .set_email(Some(EndUserEmail::new("frank@example.com".into())))
                .set_email_verified(self.email_verified),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(self.nonce.clone())));
        let token = CoreIdToken::new(
            claims,
            &signing_key(self.key.0, self.key.1),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .unwrap();
        serde_json::to_value(&token)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The value of `name` in a URL's (or path's) query.
fn query(url: &str, name: &str) -> String {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Starts a sign-in against `fake`, has it answer with the token `forge` makes
/// from the good one, and returns the console's answer.
async fn callback_from(
    fake: &FakeIssuer,
    c: &mut Client,
    forge: impl FnOnce(&mut Forged),
) -> Answer {
    let authorize = oidc::start(c, "/console/").await;
    assert!(
        authorize.starts_with(&format!("{}/authorize?", fake.url)),
        "{authorize}"
    );
    assert_eq!(query(&authorize, "code_challenge_method"), "S256");
    let mut forged = Forged::good(&fake.url, &query(&authorize, "nonce"));
    forge(&mut forged);
    *fake.state.id_token.lock().unwrap() = forged.sign();
    let state = query(&authorize, "state");
    c.get(&format!(
        "/console/auth/callback?code=any-code&state={state}"
    ))
    .await
}

/// [`callback_from`] a fresh fake issuer, with a harness and client of its own.
async fn callback_with(forge: impl FnOnce(&mut Forged)) -> (Harness, Client, Answer) {
    let fake = fake_issuer().await;
    let h = harness(
        &fake.url,
        json!([{"email": "frank@example.com", "role": "viewer"}]),
    )
    .await;
    let mut c = client(&h);
    let answer = callback_from(&fake, &mut c, forge).await;
    (h, c, answer)
}

#[tokio::test]
async fn discovery_is_cached_and_read_again_once_when_the_keys_rotate() {
    let fake = fake_issuer().await;
    let h = harness(
        &fake.url,
        json!([{"email": "frank@example.com", "role": "viewer"}]),
    )
    .await;
    let mut c = client(&h);
    let first = callback_from(&fake, &mut c, |_| {}).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(fake.state.discoveries.load(Ordering::SeqCst), 1);

    // The issuer rotates to a new key; the console's cached JWKS lacks it. (The
    // same router: the cache is the console's.)
    *fake.state.jwks.lock().unwrap() = jwks_of(&signing_key("other-key.pem", "rotated-key"));
    let mut c = Client::new(c.router.clone());
    let rotated = callback_from(&fake, &mut c, |f| f.key = ("other-key.pem", "rotated-key")).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(rotated.set_cookie("scw_session").is_some());
    assert_eq!(fake.state.discoveries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_fake_issuers_good_token_signs_in() {
    // The control: the refusals below are for what each one changed.
    let (_h, mut c, answer) = callback_with(|_| {}).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.set_cookie("scw_session").is_some());
    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("frank@example.com"), "{}", home.body);
}

#[tokio::test]
async fn forged_id_tokens_are_refused_with_no_session() {
    type Forge = Box<dyn FnOnce(&mut Forged)>;
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "another issuer",
            Box::new(|f| f.issuer = "http://127.0.0.1:1/other-issuer".into()),
            "another issuer",
        ),
        (
            "another audience",
            Box::new(|f| f.audience = "someone-elses-app".into()),
            "another application",
        ),
        ("expired", Box::new(|f| f.expires_in = -60), "expired"),
        (
            "a bad signature",
            // Another key under the JWKS's key id.
            Box::new(|f| f.key = ("other-key.pem", "issuer-key")),
            "signature",
        ),
        (
            "a wrong nonce",
            Box::new(|f| f.nonce = "not-this-sign-ins-nonce".into()),
            "nonce",
        ),
    ];
    for (what, forge, says) in cases {
        let (h, mut c, answer) = callback_with(forge).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
        assert!(answer.body.contains(says), "{what}: {}", answer.body);
        assert!(
            !answer.body.contains("eyJ"),
            "{what}: the page shows a token"
        );
        assert_no_session(&mut c, &answer).await;
        assert!(
            !trail(&h).await.iter().any(|(_, a, _)| a == "consoleLogin"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn an_unverified_email_counts_as_none_and_is_refused() {
    let (h, mut c, answer) = callback_with(|f| f.email_verified = Some(false)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(answer.body.contains("no verified email"), "{}", answer.body);
    assert_no_session(&mut c, &answer).await;
    assert!(
        trail(&h)
            .await
            .iter()
            .any(|(actor, a, _)| a == "consoleSignInRefused" && actor == "console:sub:fake-subject")
    );
}

// --- the redirect URI and the sign-in page ------------------------------------

async fn start_with_host(c: &mut Client, host: &str) -> Answer {
    let req = Request::get("/console/auth/login?next=%2Fconsole%2Fruns")
        .header("host", host)
        .body(Body::empty())
        .unwrap();
    c.send(req).await
}

#[tokio::test]
async fn the_redirect_uri_is_console_url_or_a_loopback_host_only() {
    let fake = fake_issuer().await;
    let mut h = harness(&fake.url, json!([])).await;

    let mut c = client(&h);
    let with_url = start_with_host(&mut c, "evil.example").await;
    assert_eq!(with_url.status, StatusCode::SEE_OTHER, "{}", with_url.body);
    assert_eq!(
        query(with_url.header("location").unwrap(), "redirect_uri"),
        format!("{CONSOLE_URL}/auth/callback")
    );
    let flow = with_url.set_cookie("scw_oidc").expect("a flow cookie");
    assert!(
        flow.contains("SameSite=Lax")
            && flow.contains("HttpOnly")
            && flow.contains("Path=/console"),
        "{flow}"
    );

    h.console_url = None;
    let mut c = client(&h);
    let local = start_with_host(&mut c, "127.0.0.1:8080").await;
    assert_eq!(local.status, StatusCode::SEE_OTHER, "{}", local.body);
    assert_eq!(
        query(local.header("location").unwrap(), "redirect_uri"),
        "http://127.0.0.1:8080/console/auth/callback"
    );

    for host in [
        "console.test",
        "127.0.0.1@evil.example",
        "evil.example:8080",
    ] {
        let mut c = client(&h);
        let refused = start_with_host(&mut c, host).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{host}: {}",
            refused.body
        );
        assert!(refused.body.contains("CONSOLE_URL"), "{}", refused.body);
        assert!(refused.set_cookie("scw_oidc").is_none(), "{host}");
    }
}

#[tokio::test]
async fn the_sign_in_page_offers_the_identity_provider_first() {
    let fake = fake_issuer().await;
    let h = harness(&fake.url, json!([])).await;
    let mut c = client(&h);
    let page = c.get("/console/login?next=%2Fconsole%2Fruns").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let oidc_at = page
        .body
        .find(r#"id="sign-in-oidc""#)
        .expect("the OIDC link");
    let password_at = page.body.find(r#"id="password""#).expect("the break-glass");
    assert!(oidc_at < password_at);
    assert!(
        page.body
            .contains(r#"href="/console/auth/login?next=%2Fconsole%2Fruns""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"id="sign-in""#));

    // Without a consoleToken there is no password to offer.
    h.set_secret_fields(json!({"consoleToken": null}));
    let page = c.get("/console/login").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="sign-in-oidc""#));
    assert!(!page.body.contains(r#"id="password""#), "{}", page.body);
    // A password posted anyway (with the form's token) is refused and says where
    // to sign in instead.
    let login_token = c.jar["scw_login"].clone();
    let posted = c
        .post(
            "/console/login",
            &[
                ("csrf", &login_token),
                ("next", "/console/"),
                ("password", "pw"),
            ],
        )
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN, "{}", posted.body);
    assert!(posted.body.contains("organisation"), "{}", posted.body);
    assert_no_session(&mut c, &posted).await;

    // OIDC set up but the client secret missing: a page that names the field.
    h.set_secret_fields(json!({"consoleOidcClientSecret": null, "consoleToken": "pw"}));
    let answer = c.get("/console/auth/login").await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("consoleOidcClientSecret"),
        "{}",
        answer.body
    );
}

/// `serve` with the harness's secret and `extra` environment: its first lines
/// (up to the console's), or its error when it stopped.
async fn serve_says(h: &Harness, extra: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sophos-cw-sync"));
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .env("SYNC_STORE", format!("sqlite:{}", h.db_path.display()))
        .env("SYNC_SECRETS", format!("file:{}", h.secrets_path.display()))
        .env("SOPHOS_ID_URL", h.sim.sophos_url())
        .env("SOPHOS_API_URL", h.sim.sophos_url())
        .env_remove("CONSOLE_OIDC_ISSUER")
        .env_remove("CONSOLE_OIDC_CLIENT_ID")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        said.push_str(&line);
        said.push('\n');
        if line.starts_with("console:") {
            child.kill().await.unwrap();
            return said;
        }
    }
    let out = child.wait_with_output().await.unwrap();
    said + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn serve_starts_with_only_the_identity_provider_as_the_way_in() {
    let fake = fake_issuer().await;
    let h = harness(&fake.url, json!([])).await;
    h.set_secret_fields(json!({"consoleToken": null, "webhookToken": null}));
    let oidc_env = [
        ("CONSOLE_OIDC_ISSUER", fake.url.as_str()),
        ("CONSOLE_OIDC_CLIENT_ID", OIDC_CLIENT_ID),
    ];
    let said = serve_says(&h, &oidc_env).await;
    assert!(
        said.contains("listening on http://127.0.0.1:")
            && said.contains("sign in through your identity provider"),
        "{said}"
    );
    // Without OpenID Connect the same secret has no way in: serve refuses to start.
    let said = serve_says(&h, &[]).await;
    assert!(
        said.contains("neither a webhookToken nor a consoleToken"),
        "{said}"
    );
    assert!(!said.contains("listening on"), "{said}");
}
