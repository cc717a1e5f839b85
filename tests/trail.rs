//! A trail that names people: who started each run (console, API, schedule, CLI),
//! the audit trail filtered by person (console page and CSV, `GET /audit?actor=`,
//! `audit --actor`), and password guessing limited (429 after 10 wrong passwords,
//! counted in the store so a second router over it is locked too).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sophos_cw_sync::app::App;
use sophos_cw_sync::config::Environment;
use sophos_cw_sync::console::ConsoleConfig;
use sophos_cw_sync::store::{AuditEntry, AuditFilter, Store};
use sophos_cw_sync::web::router;
use std::sync::Arc;
use std::time::Duration;
use support::app::{CONSOLE_PASSWORD, Harness, MONTH, QueueInvoker, demo_settings, tenant};
use support::console::{Client, app, test_config};
use support::review::{held, put};

const TOKEN: &str = "webhook-token-secret-value";

async fn synced() -> Harness {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h
}

fn client(h: &Harness, config: ConsoleConfig) -> Client {
    let (app, _invoker) = app(h);
    Client::new(router(app, config))
}

async fn api(c: &mut Client, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "console.test")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let answer = c.send(req).await;
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

async fn entries(h: &Harness, filter: AuditFilter) -> Vec<AuditEntry> {
    h.store.list_audit_matching(&filter, 500).await.unwrap()
}

fn action(name: &str) -> AuditFilter {
    AuditFilter {
        action: Some(name.to_owned()),
        ..AuditFilter::default()
    }
}

fn entry(seq: u32, actor: &str, action: &str) -> AuditEntry {
    AuditEntry {
        run_id: String::new(),
        seq,
        at: chrono::Utc::now() - chrono::Duration::seconds(i64::from(100 - seq)),
        actor: actor.to_owned(),
        action: action.to_owned(),
        tenant_id: None,
        agreement_id: None,
        identifier: String::new(),
        entity_id: None,
        old_quantity: None,
        new_quantity: None,
        detail: Some(format!("{action} by {actor}")),
    }
}

// ---------------------------------------------------------------- who started a run

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_page_shows_who_started_a_run_from_the_console() {
    let h = synced().await;
    let (app, invoker) = app(&h);
    let mut c = Client::new(router(app, test_config()));
    let csrf = c.sign_in().await;
    let started = c
        .post("/console/sync", &[("csrf", &csrf), ("mode", "sync")])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    invoker.wait_idle().await;
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    assert_eq!(run.started_by.as_deref(), Some("console:password"));

    let runs = c.get("/console/runs").await;
    assert_eq!(runs.status, StatusCode::OK);
    assert!(runs.body.contains("<th>Started by</th>"), "{}", runs.body);
    assert!(
        runs.body
            .contains(r#"<td class="mono started-by">console:password</td>"#),
        "{}",
        runs.body
    );
    let page = c.get(&format!("/console/runs/{}", run.run_id)).await;
    assert!(
        page.body
            .contains(r#"<dd class="mono" id="run-started-by">console:password</dd>"#),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_through_the_api_is_started_by_the_token_and_says_so_in_json() {
    let h = synced().await;
    let (app, invoker) = app(&h);
    let mut c = Client::new(router(app, test_config()));
    let (status, body) = api(&mut c, "POST", "/sync", "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    invoker.wait_idle().await;
    let run = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.started_by.as_deref(), Some("api:token"));
    let (status, runs) = api(&mut c, "GET", "/runs", "").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert_eq!(runs["items"][0]["runId"], run_id.as_str());
    assert_eq!(runs["items"][0]["startedBy"], "api:token");
    let (_, one) = api(&mut c, "GET", &format!("/runs/{run_id}"), "").await;
    assert!(
        one.to_string().contains(r#""startedBy":"api:token""#),
        "{one}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_run_is_started_by_the_schedule() {
    let h = synced().await;
    let app = App::new(
        h.lambda_env(Duration::from_secs(300)),
        h.store.clone(),
        Arc::new(QueueInvoker(Default::default())),
        None,
    );
    let report = app
        .on_schedule("2026-12-01T06:00", None)
        .await
        .unwrap()
        .expect("the tick ran");
    let run = h.store.get_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(run.started_by.as_deref(), Some("schedule"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_starts_runs_as_its_user_and_filters_the_trail_by_person() {
    let h = synced().await;
    let user = [("USER", "tester")];
    let out = h.cli(&["sync"], &user).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    assert_eq!(run.started_by.as_deref(), Some("cli:tester"));

    let alice = entry(1, "console:alice@example.com", "approveChange");
    h.store.append_audit(&alice).await.unwrap();
    h.store
        .append_audit(&entry(2, "console:bob@example.com", "rejectChange"))
        .await
        .unwrap();
    let out = h
        .cli(
            &["audit", "--json", "--actor", "console:alice@example.com"],
            &user,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<AuditEntry> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, vec![alice]);
}

// ---------------------------------------------------------------- the trail by person

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_page_its_csv_and_the_api_filter_by_person() {
    let h = synced().await;
    let alice = "console:alice@example.com";
    let e = [
        entry(1, alice, "approveChange"),
        entry(2, "console:bob@example.com", "rejectChange"),
        entry(3, alice, "setMapping"),
        entry(4, "api:token", "setMapping"),
    ];
    for x in &e {
        h.store.append_audit(x).await.unwrap();
    }
    let mut c = client(&h, test_config());
    c.sign_in().await;
    let page = c
        .get("/console/audit?actor=console%3Aalice%40example.com")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(r#"id="actor" name="actor" value="console:alice@example.com""#),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches(r#"class="audit-row""#).count(),
        2,
        "{}",
        page.body
    );
    assert!(!page.body.contains("bob@example.com"), "{}", page.body);
    // Each entry's person links to that person's entries.
    assert!(
        page.body.contains(
            r#"<a class="audit-actor" href="/console/audit?actor=console%3Aalice%40example.com">console:alice@example.com</a>"#
        ),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"href="/console/audit.csv?actor=console%3Aalice%40example.com""#),
        "{}",
        page.body
    );
    let csv = c
        .get("/console/audit.csv?actor=console%3Aalice%40example.com&action=setMapping")
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(
        lines[1].contains(alice) && lines[1].contains("setMapping"),
        "{}",
        csv.body
    );

    let (status, body) = api(&mut c, "GET", "/audit?actor=api%3Atoken", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items: Vec<AuditEntry> = serde_json::from_value(body["items"].clone()).unwrap();
    assert_eq!(items, vec![e[3].clone()]);
    let (_, body) = api(&mut c, "GET", "/audit?actor=console%3Anobody", "").await;
    assert_eq!(body["items"], Value::Array(vec![]));
}

// ---------------------------------------------------------------- password guessing

async fn try_password(c: &mut Client, password: &str) -> support::console::Answer {
    let form = c.get("/console/login").await;
    assert_eq!(form.status, StatusCode::OK);
    c.post(
        "/console/login",
        &[("csrf", &form.csrf()), ("password", password)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_wrong_passwords_lock_password_sign_in_in_every_container() {
    let h = synced().await;
    let quick = ConsoleConfig {
        login_delay: Duration::from_millis(20),
        ..test_config()
    };
    let mut c = client(&h, quick.clone());
    for i in 1..10 {
        let refused = try_password(&mut c, "guess").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Nine do not lock: the right password still enters.
    let mut other = client(&h, quick.clone());
    let entered = try_password(&mut other, CONSOLE_PASSWORD).await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER, "{}", entered.body);
    assert!(entered.set_cookie("scw_session").is_some());
    assert!(entries(&h, action("consoleLoginLocked")).await.is_empty());

    // The tenth locks, then even the right password is refused, slowly.
    let tenth = try_password(&mut c, "guess").await;
    assert_eq!(
        tenth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        tenth.body
    );
    let started = std::time::Instant::now();
    let locked = try_password(&mut c, CONSOLE_PASSWORD).await;
    assert!(started.elapsed() >= quick.login_delay);
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert!(locked.set_cookie("scw_session").is_none());
    assert!(
        locked.body.contains("Password sign-in is locked"),
        "{}",
        locked.body
    );
    assert!(
        locked.body.contains("Try the password again after"),
        "{}",
        locked.body
    );
    assert!(locked.body.contains("identity provider"), "{}", locked.body);
    assert!(!locked.body.contains(CONSOLE_PASSWORD));
    let wait: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((800..=900).contains(&wait), "{wait}");

    // Another container (a second App and router over the same store) is locked too.
    let mut second = client(&h, quick);
    let there = try_password(&mut second, CONSOLE_PASSWORD).await;
    assert_eq!(
        there.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        there.body
    );
    assert!(there.set_cookie("scw_session").is_none());

    // The lock is audited once; each refusal while locked is audited as a failure.
    let lock = entries(&h, action("consoleLoginLocked")).await;
    assert_eq!(lock.len(), 1, "{lock:?}");
    assert!(lock[0].detail.as_deref().unwrap().contains("locked until"));
    let refused = entries(&h, action("consoleLoginFailed")).await;
    assert_eq!(refused.len(), 12, "{refused:?}");
    let while_locked = refused
        .iter()
        .filter(|e| e.detail.as_deref().unwrap().contains("is locked until"))
        .count();
    assert_eq!(while_locked, 2);
}

// ---------------------------------------------------------------- decidedBy

/// A console whose environment has OpenID Connect configured (the issuer is never
/// asked: the session below is forged with the console's key).
fn oidc_client(h: &Harness) -> Client {
    let env = Environment {
        console_oidc: Some(sophos_cw_sync::config::OidcConfig {
            issuer: "http://127.0.0.1:9/issuer".into(),
            client_id: "console".into(),
            groups_claim: "groups".into(),
        }),
        secrets_refresh: Duration::ZERO,
        ..h.env()
    };
    let app = Arc::new(App::new(
        env,
        h.store.clone(),
        Arc::new(QueueInvoker(Default::default())),
        None,
    ));
    Client::new(router(app, test_config()))
}

fn request(method: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "console.test")
        .header("cookie", cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_from_a_named_session_records_her_email_as_decided_by_and_actor() {
    use sophos_cw_sync::config::operators::Role;
    use sophos_cw_sync::console::session::{Person, SessionKey, SignInWay};
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.operators = serde_json::from_value(
        serde_json::json!([{"email": "Alice@Example.com", "role": "approver"}]),
    )
    .unwrap();
    h.store.put_settings(&settings).await.unwrap();
    let change = held(
        MONTH,
        &tenant(1),
        "Acme Ltd",
        "Sophos_Intercept_X_Advanced",
        40.0,
        28.0,
    );
    put(h.store.as_ref(), &change).await;

    let key = SessionKey::from_secrets(Some(&CONSOLE_PASSWORD.to_owned().into()), None).unwrap();
    let alice = Person {
        via: SignInWay::Oidc,
        subject: "sub-alice".into(),
        email: Some("alice@example.com".into()),
        role: Role::Approver,
        groups: vec![],
    };
    let (_session, value) = key.issue(
        alice,
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    );
    let cookie = format!("scw_session={value}");
    let mut c = oidc_client(&h);
    let page = c
        .send(request("GET", "/console/review", &cookie, &[]))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("alice@example.com"), "{}", page.body);
    let act = format!("approve:{}", change.id);
    let answer = c
        .send(request(
            "POST",
            "/console/review",
            &cookie,
            &[("csrf", &page.csrf()), ("act", &act)],
        ))
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let stored = h.store.get_held_change(&change.id).await.unwrap().unwrap();
    assert_eq!(
        stored.decided_by.as_deref(),
        Some("console:alice@example.com")
    );
    let trail = entries(&h, action("approveChange")).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].actor, "console:alice@example.com");
    // And the trail finds her by name.
    let hers = entries(
        &h,
        AuditFilter {
            actor: Some("console:alice@example.com".into()),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(hers, trail);
}
