//! The operator console without a browser: sign-in, the session cookie and its
//! flags, CSRF refusals, the security headers, 4xx pages for bad input, and the
//! console served through the Lambda handler from API Gateway 2.0 events.

mod support;

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};
use sophos_cw_sync::console::ConsoleConfig;
use sophos_cw_sync::lambda::{Function, handle};
use sophos_cw_sync::store::{AuditFilter, MappingKind, Store};
use sophos_cw_sync::web::router;
use support::app::{CONSOLE_PASSWORD, Harness, demo_settings, tenant};
use support::console::{Client, app, test_config};

/// (what it is, form fields, request headers)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>);
/// (path, form fields, status, what the page says)
type BadPost<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, &'a str);

/// A harness after one sync of the demo scenario, its settings stored.
async fn synced() -> Harness {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h.run(&demo_settings()).await;
    h
}

fn client(h: &Harness, config: ConsoleConfig) -> Client {
    let (app, _invoker) = app(h);
    Client::new(router(app, config))
}

async fn actions(h: &Harness) -> Vec<String> {
    let page = h
        .store
        .list_audit_page(&AuditFilter::default(), 100, None)
        .await
        .unwrap();
    page.items.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn a_wrong_password_is_refused_slowly_and_audited_and_the_right_one_enters() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    // Not signed in: every page sends the browser to the sign-in form, and back after.
    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(
        home.header("location"),
        Some("/console/login?next=%2Fconsole%2F")
    );

    let form = c.get("/console/login").await;
    assert_eq!(form.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let refused = c
        .post(
            "/console/login",
            &[
                ("csrf", &form.csrf()),
                ("next", "/console/runs"),
                ("password", "guess"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= test_config().login_delay);
    assert!(
        refused.body.contains("not the console password"),
        "{}",
        refused.body
    );
    assert!(refused.set_cookie("scw_session").is_none());
    assert!(!refused.body.contains(CONSOLE_PASSWORD));
    assert_eq!(
        actions(&h).await.first().map(String::as_str),
        Some("consoleLoginFailed")
    );

    // The refusal's page carries a fresh form token; with it and the right password:
    let entered = c
        .post(
            "/console/login",
            &[
                ("csrf", &refused.csrf()),
                ("next", "/console/runs"),
                ("password", CONSOLE_PASSWORD),
            ],
        )
        .await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER, "{}", entered.body);
    assert_eq!(entered.header("location"), Some("/console/runs"));
    let runs = c.get("/console/runs").await;
    assert_eq!(runs.status, StatusCode::OK);
    assert!(runs.body.contains("Sync now"));
    assert_eq!(
        actions(&h).await.first().map(String::as_str),
        Some("consoleLogin")
    );
}

#[tokio::test]
async fn the_session_cookie_is_httponly_secure_strict_and_expires() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let form = c.get("/console/login").await;
    let login_cookie = form
        .set_cookie("scw_login")
        .expect("the login form's cookie");
    assert!(
        login_cookie.contains("HttpOnly")
            && login_cookie.contains("SameSite=Strict")
            && login_cookie.contains("Secure")
    );
    let entered = c
        .post(
            "/console/login",
            &[("csrf", &form.csrf()), ("password", CONSOLE_PASSWORD)],
        )
        .await;
    let cookie = entered.set_cookie("scw_session").expect("a session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == flag),
            "{flag} missing in {cookie}"
        );
    }
    // The local-only switch drops Secure and nothing else.
    let mut local = client(
        &h,
        ConsoleConfig {
            secure_cookies: false,
            ..test_config()
        },
    );
    let form = local.get("/console/login").await;
    let entered = local
        .post(
            "/console/login",
            &[("csrf", &form.csrf()), ("password", CONSOLE_PASSWORD)],
        )
        .await;
    let cookie = entered.set_cookie("scw_session").unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
}

#[tokio::test]
async fn logout_ends_the_session_and_rotating_the_token_ends_every_session() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csrf = c.sign_in().await;
    let copied = c.jar.get("scw_session").cloned().expect("a session cookie");
    let mut other = client(&h, test_config());
    let other_csrf = other.sign_in().await;
    let out = c.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), Some("/console/login?signedOut=1"));
    assert!(out.set_cookie("scw_session").unwrap().contains("Max-Age=0"));
    assert_eq!(c.get("/console/").await.status, StatusCode::SEE_OTHER);
    // A copy of the signed-out session's cookie no longer signs anyone in...
    c.jar.insert("scw_session".into(), copied);
    let replayed = c.get("/console/").await;
    assert_eq!(
        replayed.status,
        StatusCode::SEE_OTHER,
        "a signed-out cookie still works"
    );
    assert!(
        replayed
            .header("location")
            .unwrap()
            .starts_with("/console/login")
    );
    // ...while another session goes on.
    assert_eq!(other.get("/console/").await.status, StatusCode::OK);
    assert!(!other_csrf.is_empty());
    assert_eq!(
        actions(&h).await.first().map(String::as_str),
        Some("consoleLogout")
    );

    // Two sessions; the operator rotates the console token in the secret.
    let mut a = client(&h, test_config());
    let mut b = client(&h, test_config());
    a.sign_in().await;
    b.sign_in().await;
    let text = std::fs::read_to_string(&h.secrets_path).unwrap();
    std::fs::write(
        &h.secrets_path,
        text.replace(CONSOLE_PASSWORD, "a-brand-new-console-password"),
    )
    .unwrap();
    for c in [&mut a, &mut b] {
        let page = c.get("/console/").await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "the old session still works"
        );
        assert!(
            page.header("location")
                .unwrap()
                .starts_with("/console/login")
        );
    }
}

#[tokio::test]
async fn a_cross_site_post_or_a_missing_form_token_is_refused_and_changes_nothing() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csrf = c.sign_in().await;
    let unmapped = tenant(3);
    let path = format!("/console/customers/{unmapped}/ignore");
    let cases: [Case; 5] = [
        (
            "cross-site",
            vec![("csrf", &csrf)],
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            "foreign origin",
            vec![("csrf", &csrf)],
            vec![("origin", "https://evil.example")],
        ),
        ("no origin at all", vec![("csrf", &csrf)], vec![]),
        (
            "no form token",
            vec![],
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "another session's token",
            vec![(
                "csrf",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            )],
            vec![("sec-fetch-site", "same-origin")],
        ),
    ];
    for (what, form, headers) in cases {
        let answer = c.post_with(&path, &form, &headers).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("reload") || answer.body.contains("console page"),
            "{what}: {}",
            answer.body
        );
        assert!(
            h.store.get_mapping(&unmapped).await.unwrap().is_none(),
            "{what} changed the mapping"
        );
    }
    // The same form from the console itself goes through (same origin by Origin/Host too).
    let ok = c
        .post_with(
            &path,
            &[("csrf", &csrf)],
            &[("origin", "http://console.test")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let mapping = h.store.get_mapping(&unmapped).await.unwrap().unwrap();
    assert_eq!(mapping.kind, MappingKind::Ignored);
    // The sign-in form checks its own token too (double submit): a forged login is refused.
    let mut other = client(&h, test_config());
    let forged = other
        .post(
            "/console/login",
            &[("csrf", "forged"), ("password", CONSOLE_PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.set_cookie("scw_session").is_none());
}

#[tokio::test]
async fn every_console_answer_carries_the_security_headers() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
    let anonymous = c.get("/console/login").await;
    c.sign_in().await;
    let mut answers = vec![("login", anonymous)];
    for path in [
        "/console/",
        "/console/runs",
        "/console/audit",
        "/console/settings",
        "/console/customers/nope",
        "/console/assets/htmx-2.0.4.min.js",
    ] {
        answers.push((path, c.get(path).await));
    }
    for (path, a) in &answers {
        assert_eq!(a.header("content-security-policy"), Some(csp), "{path}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(a.header("referrer-policy"), Some("same-origin"), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
    }
    for (path, a) in &answers[..answers.len() - 1] {
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
        assert!(
            a.header("content-type").unwrap().starts_with("text/html"),
            "{path}"
        );
        // No inline script: the only script is the vendored one.
        assert_eq!(a.body.matches("<script").count(), 1, "{path}");
        assert!(
            a.body
                .contains(r#"<script src="/console/assets/htmx-2.0.4.min.js" defer></script>"#),
            "{path}"
        );
    }
    let asset = &answers.last().unwrap().1;
    assert_eq!(
        asset.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(asset.header("cache-control").unwrap().contains("immutable"));
}

#[tokio::test]
async fn bad_input_gets_a_page_that_says_what_is_wrong_with_a_4xx() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csrf = c.sign_in().await;
    let cases = [
        (
            "/console/customers/no-such-tenant",
            StatusCode::NOT_FOUND,
            "there is no customer",
        ),
        (
            "/console/runs/r-nope",
            StatusCode::NOT_FOUND,
            "there is no run",
        ),
        (
            "/console/?status=weird",
            StatusCode::BAD_REQUEST,
            "there is no status",
        ),
        (
            "/console/audit?action=dropTables",
            StatusCode::BAD_REQUEST,
            "there is no audit action",
        ),
        (
            "/console/no-such-page",
            StatusCode::NOT_FOUND,
            "no console page",
        ),
    ];
    for (path, status, says) in cases {
        let a = c.get(path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.body.contains(says), "{path}: {}", a.body);
        assert!(
            a.header("content-type").unwrap().starts_with("text/html"),
            "{path}"
        );
    }
    let posts: [BadPost; 4] = [
        (
            "/console/customers/no-such-tenant/ignore",
            vec![("csrf", &csrf)],
            StatusCode::NOT_FOUND,
            "there is no customer",
        ),
        (
            "/console/sync",
            vec![("csrf", &csrf), ("mode", "maybe")],
            StatusCode::BAD_REQUEST,
            "say whether to sync or to preview",
        ),
        (
            "/console/sync",
            vec![("csrf", &csrf), ("mode", "sync"), ("month", "2026-13")],
            StatusCode::BAD_REQUEST,
            "the month",
        ),
        (
            "/console/settings",
            vec![("csrf", &csrf), ("settings", "{\"products\": [\"Nope\"]}")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown product identifiers",
        ),
    ];
    for (path, form, status, says) in posts {
        let a = c.post(path, &form).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.body.contains(says), "{path}: {}", a.body);
    }
    // A refused settings edit stored nothing.
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));
}

/// An HTTP API 2.0 event as API Gateway sends it to the function.
fn event(
    method: &str,
    path: &str,
    query: &str,
    cookies: &[String],
    headers: Value,
    body: Option<(&str, bool)>,
) -> Value {
    let mut e = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "api", "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"}
        },
        "isBase64Encoded": false
    });
    if !cookies.is_empty() {
        e["cookies"] = json!(cookies);
    }
    if let Some((b, base64)) = body {
        e["body"] = json!(b);
        e["isBase64Encoded"] = json!(base64);
    }
    e
}

async fn invoke(f: &Function, payload: Value) -> Value {
    handle(
        f,
        lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default()),
    )
    .await
    .map_err(|e| e.message)
    .expect("the function answers")
}

/// `name=value` of each cookie the function set (API Gateway 2.0 `cookies`).
fn cookie_pairs(response: &Value) -> Vec<String> {
    response["cookies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().unwrap().split(';').next().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_through_the_lambda_handler_from_api_gateway_events() {
    let h = synced().await;
    let (app, _invoker) = app(&h);
    let f = Function::new(app);
    let host = json!({"host": "api.execute-api.eu-west-1.amazonaws.com"});

    let form = invoke(
        &f,
        event(
            "GET",
            "/console/login",
            "next=%2Fconsole%2F",
            &[],
            host.clone(),
            None,
        ),
    )
    .await;
    assert_eq!(form["statusCode"], 200, "{form}");
    assert!(
        form["headers"]["content-security-policy"]
            .as_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookies = cookie_pairs(&form);
    let nonce = cookies
        .iter()
        .find(|c| c.starts_with("scw_login="))
        .expect("login cookie in `cookies`")
        .clone();
    let html = form["body"].as_str().unwrap();
    let csrf = support::console::form_token(html).unwrap();

    // The form body base64-encoded, as API Gateway sends form posts.
    let body = serde_urlencoded::to_string([
        ("csrf", csrf.as_str()),
        ("next", "/console/runs"),
        ("password", CONSOLE_PASSWORD),
    ])
    .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let headers = json!({"host": "api.execute-api.eu-west-1.amazonaws.com",
        "origin": "https://api.execute-api.eu-west-1.amazonaws.com",
        "content-type": "application/x-www-form-urlencoded"});
    let entered = invoke(
        &f,
        event(
            "POST",
            "/console/login",
            "",
            &[nonce],
            headers,
            Some((&encoded, true)),
        ),
    )
    .await;
    assert_eq!(entered["statusCode"], 303, "{entered}");
    assert_eq!(entered["headers"]["location"], "/console/runs");
    let session = cookie_pairs(&entered)
        .into_iter()
        .find(|c| c.starts_with("scw_session="))
        .expect("a session cookie");
    let set = entered["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.as_str().unwrap().starts_with("scw_session="))
        .unwrap();
    assert!(
        set.as_str().unwrap().contains("Secure"),
        "Lambda's cookie is always Secure: {set}"
    );

    let home = invoke(
        &f,
        event(
            "GET",
            "/console/",
            "",
            std::slice::from_ref(&session),
            host.clone(),
            None,
        ),
    )
    .await;
    assert_eq!(home["statusCode"], 200, "{home}");
    assert!(home["body"].as_str().unwrap().contains("Acme Ltd"));
    assert_eq!(home["headers"]["cache-control"], "no-store");

    // The asset is binary-safe text; the JSON API still answers beside the console.
    let asset = invoke(
        &f,
        event(
            "GET",
            "/console/assets/console-3.css",
            "",
            &[],
            host.clone(),
            None,
        ),
    )
    .await;
    assert_eq!(asset["statusCode"], 200);
    let status = invoke(
        &f,
        event(
            "GET",
            "/status",
            "",
            &[],
            json!({"authorization": "Bearer webhook-token-secret-value"}),
            None,
        ),
    )
    .await;
    assert_eq!(status["statusCode"], 200, "{status}");
    let body: Value = serde_json::from_str(status["body"].as_str().unwrap()).unwrap();
    assert!(body["customers"].as_array().unwrap().len() >= 10);
    // A body marked base64 that is not is a 400, not a crash.
    let bad = invoke(
        &f,
        event(
            "POST",
            "/console/login",
            "",
            &[],
            json!({}),
            Some(("%%%", true)),
        ),
    )
    .await;
    assert_eq!(bad["statusCode"], 400);
}

#[tokio::test]
async fn settings_are_edited_from_the_console_with_the_apis_validation_and_audited() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csrf = c.sign_in().await;
    let page = c.get("/console/settings").await;
    assert!(page.body.contains("Sophos_Intercept_X_Advanced"));
    assert!(
        page.body.contains("likely") || page.body.contains("confirmed"),
        "the code table shows confidence"
    );

    // The product checkboxes: exactly the ticked ones are synced afterwards.
    let saved = c
        .post(
            "/console/settings/products",
            &[
                ("csrf", &csrf),
                ("product", "Sophos_Intercept_X_Advanced"),
                ("product", "Sophos_Email_Advanced"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = h.store.get_settings().await.unwrap().unwrap();
    let products: Vec<&str> = stored.products.iter().map(String::as_str).collect();
    assert_eq!(
        products,
        ["Sophos_Email_Advanced", "Sophos_Intercept_X_Advanced"]
    );
    assert_eq!(
        stored.agreement_type,
        demo_settings().agreement_type,
        "other settings kept"
    );
    let entry = h
        .store
        .list_audit_page(&AuditFilter::default(), 1, None)
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(entry.action, "updateSettings");
    assert_eq!(
        entry.detail.as_deref(),
        Some(
            r#"products: ["Sophos_Intercept_X_Advanced","Sophos_Intercept_X_Advanced_XDR"] → ["Sophos_Email_Advanced","Sophos_Intercept_X_Advanced"]"#
        )
    );
    assert!(entry.actor.starts_with("console:"));

    let unknown = c
        .post(
            "/console/settings/products",
            &[("csrf", &csrf), ("product", "Sophos_Nope")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.contains("there is no product"));

    // The JSON editor: a valid document is stored whole.
    let mut edited = demo_settings();
    edited.month = "2026-10".into();
    let text = serde_json::to_string_pretty(&edited).unwrap();
    let saved = c
        .post("/console/settings", &[("csrf", &csrf), ("settings", &text)])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(h.store.get_settings().await.unwrap(), Some(edited));
}

/// The home page's warnings section, if it has one.
fn warnings_section(body: &str) -> Option<&str> {
    let start = body.find("id=\"banner-warnings\"")?;
    let end = body[start..].find("</section>")? + start;
    Some(&body[start..end])
}

#[tokio::test]
async fn the_home_page_banner_shows_the_latest_runs_warnings_with_advice_and_its_run() {
    // The demo creates the XDR item with no price configured: CATALOG_PRICE_ZERO.
    let h = synced().await;
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    let mut c = client(&h, test_config());
    c.sign_in().await;
    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    let section = warnings_section(&home.body).unwrap_or_else(|| panic!("{}", home.body));
    for part in [
        "1 warning from run",
        &format!("href=\"/console/runs/{}\"", run.run_id),
        "CATALOG_PRICE_ZERO",
        "the ConnectWise catalog item for Sophos_Intercept_X_Advanced_XDR",
        "has a price of 0",
        "Procurement &#62; Product Catalog",
        "PUT /settings",
    ] {
        assert!(section.contains(part), "{part:?} not in {section}");
    }
    // Still the page's own stylesheet and CSP: no inline style slipped in.
    assert!(!home.body.contains("style="), "no inline styles");
    assert!(
        home.header("content-security-policy")
            .is_some_and(|csp| csp.contains("style-src 'self'") && !csp.contains("unsafe-inline")),
        "{:?}",
        home.header("content-security-policy")
    );

    // Priced before its item is created, a run warns of nothing and the banner
    // has no warnings section.
    let mut priced = demo_settings();
    let price = sophos_cw_sync::config::Price {
        price: 6.5,
        cost: 3.0,
    };
    priced
        .prices
        .insert("Sophos_Intercept_X_Advanced_XDR".into(), price);
    let fresh = support::app::Harness::start().await;
    fresh.store.put_settings(&priced).await.unwrap();
    let report = fresh.run(&priced).await;
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    let mut c = client(&fresh, test_config());
    c.sign_in().await;
    let home = c.get("/console/").await;
    assert!(home.body.contains("id=\"banner\""), "{}", home.body);
    assert_eq!(warnings_section(&home.body), None, "{}", home.body);
}

#[tokio::test]
async fn a_runs_page_lists_its_changes_errors_or_skipped_customers() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    c.sign_in().await;
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    let listed = |body: &str| -> Vec<String> {
        body.match_indices(r#"<tr class="run-customer" data-tenant=""#)
            .map(|(i, m)| body[i + m.len()..].split('"').next().unwrap().to_owned())
            .collect()
    };
    let all = c.get(&format!("/console/runs/{}", run.run_id)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(listed(&all.body).len(), 14);
    // Acme and Nu created, Beta updated, Mu zeroed.
    let changes = c
        .get(&format!("/console/runs/{}?show=changes", run.run_id))
        .await;
    assert_eq!(listed(&changes.body), [1, 2, 12, 13].map(tenant));
    assert!(
        changes.body.contains("5 → 8"),
        "Beta's old and new quantity"
    );
    let errors = c
        .get(&format!("/console/runs/{}?show=errors", run.run_id))
        .await;
    assert_eq!(
        listed(&errors.body),
        [2, 3, 4, 5, 6, 10, 11, 14].map(tenant)
    );
    let skipped = c
        .get(&format!("/console/runs/{}?show=skipped", run.run_id))
        .await;
    assert_eq!(listed(&skipped.body), [tenant(11)]);
    let bad = c
        .get(&format!("/console/runs/{}?show=everything", run.run_id))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("show all, changes, errors or skipped"));
}

#[tokio::test]
async fn the_review_api_is_served_through_the_lambda_handler_from_api_gateway_events() {
    use sophos_cw_sync::store::HeldStatus;
    let h = synced().await;
    let change = support::review::held(
        support::app::MONTH,
        &tenant(1),
        "Acme Ltd",
        "Sophos_Intercept_X_Advanced",
        40.0,
        28.0,
    );
    support::review::put(h.store.as_ref(), &change).await;
    let (app, _invoker) = app(&h);
    let f = Function::new(app);
    let auth = json!({"authorization": "Bearer webhook-token-secret-value",
        "content-type": "application/json"});

    let listed = invoke(
        &f,
        event("GET", "/review", "limit=10", &[], auth.clone(), None),
    )
    .await;
    assert_eq!(listed["statusCode"], 200, "{listed}");
    let body: Value = serde_json::from_str(listed["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["items"][0]["id"], change.id.as_str(), "{body}");
    assert_eq!(body["next"], Value::Null);

    let path = format!("/review/{}/approve", change.id);
    let approved = invoke(
        &f,
        event("POST", &path, "", &[], auth.clone(), Some(("{}", false))),
    )
    .await;
    assert_eq!(approved["statusCode"], 200, "{approved}");
    let body: Value = serde_json::from_str(approved["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["change"]["status"], "approved");
    let stored = h.store.get_held_change(&change.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HeldStatus::Approved);
    assert_eq!(stored.decided_by.as_deref(), Some("api:token"));

    // Without the token: 401, nothing decided.
    let reject = format!("/review/{}/reject", change.id);
    let refused = invoke(&f, event("POST", &reject, "", &[], json!({}), None)).await;
    assert_eq!(refused["statusCode"], 401, "{refused}");
    let stored = h.store.get_held_change(&change.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HeldStatus::Approved);
}

#[tokio::test]
async fn the_console_pauses_and_resumes_with_a_banner_on_every_page_and_audits_both() {
    let h = synced().await;
    let (app, invoker) = app(&h);
    let mut c = Client::new(router(app, test_config()));
    let csrf = c.sign_in().await;
    let settings = c.get("/console/settings").await;
    assert!(
        settings.body.contains(r#"id="pause-sync""#),
        "{}",
        settings.body
    );
    assert!(!settings.body.contains(r#"id="paused-banner""#));

    // Without the form token nothing is paused.
    let forged = c.post("/console/settings/pause", &[("reason", "x")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        h.store
            .get_settings()
            .await
            .unwrap()
            .unwrap()
            .paused
            .is_none()
    );

    let paused = c
        .post(
            "/console/settings/pause",
            &[("csrf", &csrf), ("reason", "invoices being checked")],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    let pause = h
        .store
        .get_settings()
        .await
        .unwrap()
        .unwrap()
        .paused
        .unwrap();
    assert!(pause.by.as_deref().unwrap().starts_with("console:"));
    assert_eq!(pause.reason.as_deref(), Some("invoices being checked"));
    for path in [
        "/console/",
        "/console/runs",
        "/console/audit",
        "/console/settings",
    ] {
        let page = c.get(path).await;
        assert!(
            page.body.contains(r#"id="paused-banner""#)
                && page.body.contains("paused by console:")
                && page.body.contains("invoices being checked"),
            "{path}: {}",
            page.body
        );
    }
    assert!(
        c.get("/console/settings")
            .await
            .body
            .contains(r#"id="resume-sync""#)
    );

    // "Sync now" starts nothing while paused; a preview still plans.
    let runs_before = h.store.list_runs(10, None).await.unwrap().len();
    let refused = c
        .post("/console/sync", &[("csrf", &csrf), ("mode", "sync")])
        .await;
    assert_eq!(refused.header("location"), Some("/console/runs?paused=1"));
    assert!(
        c.get("/console/runs?paused=1")
            .await
            .body
            .contains(r#"id="paused""#)
    );
    assert_eq!(
        h.store.list_runs(10, None).await.unwrap().len(),
        runs_before
    );
    let preview = c
        .post("/console/sync", &[("csrf", &csrf), ("mode", "preview")])
        .await;
    assert_eq!(preview.status, StatusCode::SEE_OTHER, "{}", preview.body);
    invoker.wait_idle().await;
    let latest = h.store.list_runs(1, None).await.unwrap().remove(0);
    assert!(latest.dry_run && latest.status != sophos_cw_sync::store::RunStatus::Skipped);

    let resumed = c.post("/console/settings/resume", &[("csrf", &csrf)]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    assert!(
        h.store
            .get_settings()
            .await
            .unwrap()
            .unwrap()
            .paused
            .is_none()
    );
    assert!(
        !c.get("/console/runs")
            .await
            .body
            .contains(r#"id="paused-banner""#)
    );
    let trail: Vec<String> = actions(&h)
        .await
        .into_iter()
        .filter(|a| a.ends_with("Sync") && a != "requestSync")
        .collect();
    assert_eq!(trail, ["resumeSync", "pauseSync"]);

    // "Sync now" with "Accept the usage drop" ticked: the run is told so.
    let runs = c.get("/console/runs").await;
    assert!(runs.body.contains(r#"name="acceptUsageDrop""#));
    let started = c
        .post(
            "/console/sync",
            &[("csrf", &csrf), ("mode", "sync"), ("acceptUsageDrop", "1")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    invoker.wait_idle().await;
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    assert!(!run.dry_run);
    assert_eq!(run.report["usageDropAccepted"], true, "{}", run.report);
}

#[tokio::test]
async fn the_console_refuses_an_agreement_type_connectwise_does_not_have() {
    let h = synced().await;
    let mut c = client(&h, test_config());
    let csrf = c.sign_in().await;
    let mut wrong = demo_settings();
    wrong.agreement_type = Some("Sophos MPS".into());
    let text = serde_json::to_string_pretty(&wrong).unwrap();
    let refused = c
        .post("/console/settings", &[("csrf", &csrf), ("settings", &text)])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("Sophos MPS") && refused.body.contains("Managed Services"),
        "{}",
        refused.body
    );
    assert_eq!(h.store.get_settings().await.unwrap(), Some(demo_settings()));
    assert!(!actions(&h).await.iter().any(|a| a == "updateSettings"));
}

#[tokio::test]
async fn a_run_summary_that_does_not_read_whole_still_shows_its_pages_with_what_reads() {
    let h = synced().await;
    let mut run = h.store.list_runs(1, None).await.unwrap().remove(0);
    let writes = run.report["writes"].as_u64().expect("the demo run wrote");
    assert!(writes > 0);
    // A summary damaged in three places: its warnings, its counts and one of
    // its cycle errors do not read; the rest does.
    run.report["warnings"] = json!("not a list");
    run.report["customerCounts"] = json!({"total": "many"});
    run.report["errors"] = json!([
        {"code": "NO_SUCH_CODE", "message": "unreadable", "advice": "-"},
        {"code": "UPSTREAM_UNAVAILABLE", "message": "the vendor did not answer", "advice": "wait"}
    ]);
    run.report["unmappedCodes"] = json!([
        {"productCode": "ZZ-READS", "quantity": 3.0},
        {"quantity": 4.0}
    ]);
    h.store.put_run(&run).await.unwrap();
    let mut c = client(&h, test_config());
    c.sign_in().await;

    let list = c.get("/console/runs").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains(&run.run_id), "{}", list.body);

    let page = c.get(&format!("/console/runs/{}", run.run_id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("<dd id=\"run-writes\">{writes}</dd>")),
        "the writes still read: {}",
        page.body
    );
    assert!(
        page.body.contains("the vendor did not answer"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("unreadable"), "{}", page.body);
    assert!(
        page.body.contains("<dt>Customers</dt><dd>–</dd>"),
        "counts that do not read are not shown: {}",
        page.body
    );

    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert_eq!(warnings_section(&home.body), None, "{}", home.body);
    assert!(
        home.body
            .contains("<strong>1</strong> unmapped product code"),
        "the code that reads is counted: {}",
        home.body
    );

    let mapping = c.get("/console/mapping").await;
    assert_eq!(mapping.status, StatusCode::OK, "{}", mapping.body);
    assert!(mapping.body.contains("ZZ-READS"), "{}", mapping.body);
}
