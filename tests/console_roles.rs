//! Roles on the console: every state-changing route checks the role on the server
//! (403, nothing changed), pages show only what the role may do, the settings keep
//! an admin while OpenID Connect is the only way in, and a role taken away ends
//! the person's session. People sign in with session cookies forged from the
//! harness's secrets (what the OpenID Connect callback issues).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::config::operators::Role;
use sophos_cw_sync::store::{
    AuditEntry, AuditFilter, HeldChange, HeldStatus, Mapping, MappingKind, RunRecord, Store,
};
use sophos_cw_sync::web::router;
use support::app::{CONSOLE_PASSWORD, Harness, MONTH, demo_settings, tenant};
use support::console::{Client, app, oidc_person, test_config};
use support::review::{held, put};

const VIEWER: &str = "vera@example.com";
const OPERATOR: &str = "otto@example.com";
const APPROVER: &str = "alice@example.com";
const ADMIN: &str = "adam@example.com";
/// The harness's API token (`webhookToken`).
const API_TOKEN: &str = "webhook-token-secret-value";
/// Loopback, never asked: these tests forge the sessions the callback would issue.
const ISSUER: &str = "http://127.0.0.1:9";

/// The demo settings with one person of each role.
fn settings_with_operators(operators: Value) -> Settings {
    let mut value = serde_json::to_value(demo_settings()).unwrap();
    value["operators"] = operators;
    serde_json::from_value(value).expect("valid settings")
}

fn all_four() -> Value {
    json!([
        {"email": VIEWER, "role": "viewer"},
        {"email": OPERATOR, "role": "operator"},
        {"email": APPROVER, "role": "approver"},
        {"email": ADMIN, "role": "admin"},
    ])
}

/// A synced harness with OpenID Connect sign-in, the four people in `operators`
/// and one held change (Acme's Intercept X, 40 → 28).
async fn setup() -> (Harness, HeldChange) {
    let h = Harness::start().await.with_oidc(ISSUER);
    let settings = settings_with_operators(all_four());
    h.store.put_settings(&settings).await.unwrap();
    h.run(&settings).await;
    let change = held(
        MONTH,
        &tenant(1),
        "Acme Ltd",
        "Sophos_Intercept_X_Advanced",
        40.0,
        28.0,
    );
    put(h.store.as_ref(), &change).await;
    (h, change)
}

fn client(h: &Harness) -> Client {
    let (app, _invoker) = app(h);
    Client::new(router(app, test_config()))
}

async fn signed_in(h: &Harness, email: &str, role: Role) -> (Client, String) {
    let mut c = client(h);
    let csrf = c.sign_in_as(h, oidc_person(email, role)).await;
    (c, csrf)
}

/// Everything a console route could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    settings: Option<Settings>,
    mappings: Vec<Mapping>,
    audit: Vec<AuditEntry>,
    runs: Vec<RunRecord>,
    held: Vec<HeldChange>,
}

async fn snapshot(h: &Harness) -> Snapshot {
    let s = h.store.as_ref();
    Snapshot {
        settings: s.get_settings().await.unwrap(),
        mappings: s.list_mappings().await.unwrap(),
        audit: {
            // Entries of the same instant have no fixed order: compare them as a set.
            let mut entries = audit(h).await;
            entries.sort_by_key(|e| serde_json::to_string(e).unwrap());
            entries
        },
        runs: s.list_runs(100, None).await.unwrap(),
        held: s.list_held_changes(false, 100, None).await.unwrap().items,
    }
}

async fn audit(h: &Harness) -> Vec<AuditEntry> {
    h.store
        .list_audit_page(&AuditFilter::default(), 100, None)
        .await
        .unwrap()
        .items
}

async fn held_now(h: &Harness, id: &str) -> HeldChange {
    h.store.get_held_change(id).await.unwrap().expect("stored")
}

fn settings_form(settings: &Settings) -> String {
    serde_json::to_string_pretty(settings).unwrap()
}

/// (path, form fields besides the token, the role it needs)
type Post = (String, Vec<(&'static str, String)>, Role);

/// Every state-changing console route, with fields that would do something, and
/// the role it needs.
fn state_changing_posts(change: &HeldChange, settings_json: &str) -> Vec<Post> {
    let t = tenant(1);
    let approve = format!("approve:{}", change.id);
    let reject = format!("reject:{}", change.id);
    let s = |v: &str| v.to_owned();
    vec![
        (
            s("/console/sync"),
            vec![("mode", s("sync"))],
            Role::Operator,
        ),
        (
            s("/console/sync"),
            vec![("mode", s("preview"))],
            Role::Operator,
        ),
        (
            format!("/console/customers/{t}/ignore"),
            vec![],
            Role::Operator,
        ),
        (
            format!("/console/customers/{t}/unignore"),
            vec![],
            Role::Operator,
        ),
        (
            format!("/console/customers/{t}/clear"),
            vec![],
            Role::Operator,
        ),
        (
            format!("/console/customers/{t}/map"),
            vec![("company", s("101")), ("agreement", s("201"))],
            Role::Operator,
        ),
        (
            s("/console/mapping/codes"),
            vec![
                ("code", s("ZZUNKNOWN-MSP")),
                ("identifier", s("Sophos_Intercept_X_Advanced")),
            ],
            Role::Operator,
        ),
        (
            s("/console/settings/pause"),
            vec![("reason", s("checking"))],
            Role::Operator,
        ),
        (s("/console/settings/resume"), vec![], Role::Operator),
        (
            s("/console/review"),
            vec![("act", approve), ("sync", s("1"))],
            Role::Approver,
        ),
        (s("/console/review"), vec![("act", reject)], Role::Approver),
        (
            s("/console/review"),
            vec![("act", s("approve-selected")), ("id", change.id.clone())],
            Role::Approver,
        ),
        (
            s("/console/settings"),
            vec![("settings", s(settings_json))],
            Role::Admin,
        ),
        (
            s("/console/settings/products"),
            vec![("product", s("Sophos_Intercept_X_Advanced"))],
            Role::Admin,
        ),
    ]
}

async fn post_fields(
    c: &mut Client,
    path: &str,
    csrf: &str,
    fields: &[(&'static str, String)],
) -> support::console::Answer {
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf)];
    form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    c.post(path, &form).await
}

#[tokio::test]
async fn a_viewer_is_refused_every_state_changing_route_and_nothing_changes() {
    let (h, change) = setup().await;
    let (mut c, csrf) = signed_in(&h, VIEWER, Role::Viewer).await;
    let mut changed = h.store.get_settings().await.unwrap().unwrap();
    changed.month = "2026-10".into();
    let before = snapshot(&h).await;
    for (path, fields, needed) in state_changing_posts(&change, &settings_form(&changed)) {
        let answer = post_fields(&mut c, &path, &csrf, &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{path} {fields:?}: {}",
            answer.body
        );
        assert!(
            answer
                .body
                .contains(&format!("needs the role {needed} or higher"))
                && answer.body.contains("Nothing was changed"),
            "{path}: {}",
            answer.body
        );
    }
    assert_eq!(snapshot(&h).await, before, "no route changed the store");
    // Signing out stays open to every role.
    let out = c.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
}

#[tokio::test]
async fn an_operator_maps_ignores_and_syncs_but_may_not_approve_or_save_settings() {
    let (h, change) = setup().await;
    let (mut c, csrf) = signed_in(&h, OPERATOR, Role::Operator).await;
    let actor = format!("console:{OPERATOR}");

    let ignored = c
        .post(
            &format!("/console/customers/{}/ignore", tenant(2)),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(ignored.status, StatusCode::SEE_OTHER, "{}", ignored.body);
    let mapping = h
        .store
        .get_mapping(&tenant(2))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(mapping.kind, MappingKind::Ignored);

    let mapped = c
        .post(
            "/console/mapping/codes",
            &[
                ("csrf", &csrf),
                ("code", "ZZUNKNOWN-MSP"),
                ("identifier", "Sophos_Intercept_X_Advanced"),
            ],
        )
        .await;
    assert_eq!(mapped.status, StatusCode::SEE_OTHER, "{}", mapped.body);
    let settings = h.store.get_settings().await.unwrap().unwrap();
    assert_eq!(
        settings
            .product_codes
            .get("ZZUNKNOWN-MSP")
            .map(String::as_str),
        Some("Sophos_Intercept_X_Advanced")
    );
    assert!(
        audit(&h).await.iter().filter(|e| e.actor == actor).count() >= 2,
        "the trail names the operator: {:?}",
        audit(&h).await
    );

    // Approving and saving the settings are above an operator.
    let mut other = settings.clone();
    other.month = "2026-10".into();
    let before = snapshot(&h).await;
    let approve = format!("approve:{}", change.id);
    let refused = c
        .post("/console/review", &[("csrf", &csrf), ("act", &approve)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("approver"), "{}", refused.body);
    let json = settings_form(&other);
    let refused = c
        .post("/console/settings", &[("csrf", &csrf), ("settings", &json)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(snapshot(&h).await, before);
    assert_eq!(held_now(&h, &change.id).await.status, HeldStatus::Held);

    // Last: "Sync now" starts a run (it runs on in the background).
    let started = c
        .post("/console/sync", &[("csrf", &csrf), ("mode", "sync")])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert!(
        started
            .header("location")
            .unwrap()
            .starts_with("/console/runs/"),
        "{:?}",
        started.header("location")
    );
}

#[tokio::test]
async fn an_approver_approves_and_the_decision_names_her() {
    let (h, change) = setup().await;
    let (mut c, csrf) = signed_in(&h, APPROVER, Role::Approver).await;
    let approve = format!("approve:{}", change.id);
    let answer = c
        .post("/console/review", &[("csrf", &csrf), ("act", &approve)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let decided = held_now(&h, &change.id).await;
    assert_eq!(decided.status, HeldStatus::Approved);
    assert_eq!(
        decided.decided_by.as_deref(),
        Some("console:alice@example.com")
    );
    // The settings stay an admin's.
    let json = settings_form(&h.store.get_settings().await.unwrap().unwrap());
    let refused = c
        .post("/console/settings", &[("csrf", &csrf), ("settings", &json)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

#[tokio::test]
async fn an_admin_saves_the_settings() {
    let (h, _change) = setup().await;
    let (mut c, csrf) = signed_in(&h, ADMIN, Role::Admin).await;
    let page = c.get("/console/settings").await;
    assert!(page.body.contains(r#"id="settings-json""#), "{}", page.body);
    let mut next = h.store.get_settings().await.unwrap().unwrap();
    next.month = "2026-10".into();
    let answer = c
        .post(
            "/console/settings",
            &[("csrf", &csrf), ("settings", &settings_form(&next))],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(h.store.get_settings().await.unwrap().unwrap(), next);
    let entry = audit(&h)
        .await
        .into_iter()
        .find(|e| e.action == "updateSettings")
        .expect("audited");
    assert_eq!(entry.actor, format!("console:{ADMIN}"));
}

/// The pages a viewer reads, and what the password's admin sees on each that a
/// viewer must not.
fn pages() -> Vec<(String, Vec<&'static str>)> {
    vec![
        ("/console/".into(), vec![]),
        (
            format!("/console/customers/{}", tenant(1)),
            vec!["/ignore\"", r#"id="map-link""#],
        ),
        (
            "/console/mapping".into(),
            vec![
                r#"id="map-other-code""#,
                r#"class="pick""#,
                "ignore-customer",
            ],
        ),
        // Zeta's company, picked: two agreements an operator could use.
        (
            format!("/console/mapping?tenant={}&company=106", tenant(6)),
            vec![r#"class="use-agreement""#, "/map\""],
        ),
        (
            "/console/review".into(),
            vec![r#"id="review-form""#, r#"class="approve""#],
        ),
        (
            "/console/runs".into(),
            vec![r#"action="/console/sync""#, r#"id="sync-now""#],
        ),
        (
            "/console/settings".into(),
            vec![
                r#"id="settings-json""#,
                r#"id="save-products""#,
                r#"id="pause-sync""#,
            ],
        ),
    ]
}

#[tokio::test]
async fn a_viewers_pages_show_none_of_the_controls_and_say_what_her_role_allows() {
    let (h, _change) = setup().await;
    let mut admin = client(&h);
    admin.sign_in().await;
    let (mut viewer, _csrf) = signed_in(&h, VIEWER, Role::Viewer).await;
    for (path, controls) in pages() {
        let full = admin.get(&path).await;
        let seen = viewer.get(&path).await;
        assert_eq!(seen.status, StatusCode::OK, "{path}: {}", seen.body);
        for control in &controls {
            assert!(
                full.body.contains(control),
                "{path}: an admin sees {control}"
            );
            assert!(
                !seen.body.contains(control),
                "{path}: a viewer sees {control}: {}",
                seen.body
            );
        }
        // Her only form is signing out.
        assert_eq!(
            seen.body.matches(r#"method="post""#).count(),
            1,
            "{path}: {}",
            seen.body
        );
        assert!(seen.body.contains(r#"action="/console/logout""#));
        if !controls.is_empty() {
            assert!(
                seen.body.contains("role-note") && seen.body.contains("Your role, viewer, may"),
                "{path} says what her role allows: {}",
                seen.body
            );
        }
    }
    // The trail and its CSV are hers to read too.
    for path in ["/console/audit", "/console/audit.csv"] {
        let answer = viewer.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    // The settings as text, not an editor.
    let settings = viewer.get("/console/settings").await;
    assert!(
        settings.body.contains(r#"<pre id="settings-text">"#),
        "{}",
        settings.body
    );
    assert!(!settings.body.contains("<textarea"));
    // An operator sees the run controls and still no approving.
    let (mut operator, _) = signed_in(&h, OPERATOR, Role::Operator).await;
    let runs = operator.get("/console/runs").await;
    assert!(runs.body.contains(r#"id="sync-now""#));
    let review = operator.get("/console/review").await;
    assert!(!review.body.contains(r#"class="approve""#));
    assert!(
        review.body.contains("to approve or reject held changes"),
        "{}",
        review.body
    );
}

/// `PUT /settings` through the router, with the API token.
async fn put_settings(c: &mut Client, settings: &Settings) -> support::console::Answer {
    let req = Request::put("/settings")
        .header("host", "console.test")
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(settings).unwrap()))
        .unwrap();
    c.send(req).await
}

#[tokio::test]
async fn settings_that_leave_no_admin_are_refused_while_oidc_is_the_only_way_in() {
    let (h, _change) = setup().await;
    h.set_secret_fields(json!({"consoleToken": null}));
    let (mut c, csrf) = signed_in(&h, ADMIN, Role::Admin).await;
    let no_admin = settings_with_operators(json!([{"email": ADMIN, "role": "approver"}]));
    let before = snapshot(&h).await;

    let page = c
        .post(
            "/console/settings",
            &[("csrf", &csrf), ("settings", &settings_form(&no_admin))],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    for said in [
        "leave no",
        "\"role\": \"admin\"",
        "consoleToken",
        "Nothing was stored",
    ] {
        let said = said.replace('"', "&#34;");
        assert!(page.body.contains(&said), "{said} in {}", page.body);
    }
    let api = put_settings(&mut c, &no_admin).await;
    assert_eq!(api.status, StatusCode::BAD_REQUEST, "{}", api.body);
    assert!(
        api.body.contains("leave no") && api.body.contains("consoleToken"),
        "{}",
        api.body
    );
    assert_eq!(
        snapshot(&h).await,
        before,
        "nothing stored, nothing audited"
    );

    // With the break-glass password in the secret the same document is accepted.
    h.set_secret_fields(json!({"consoleToken": CONSOLE_PASSWORD}));
    let api = put_settings(&mut c, &no_admin).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert_eq!(
        h.store.get_settings().await.unwrap().unwrap().operators,
        no_admin.operators
    );
}

#[tokio::test]
async fn a_role_taken_away_ends_her_session_and_her_old_cookie_changes_nothing() {
    let (h, change) = setup().await;
    let (mut alice, csrf) = signed_in(&h, APPROVER, Role::Approver).await;
    assert_eq!(alice.get("/console/review").await.status, StatusCode::OK);

    // Otto's role is lowered (operator to viewer) in the same save.
    let (mut otto, _) = signed_in(&h, OPERATOR, Role::Operator).await;
    let (mut admin, admin_csrf) = signed_in(&h, ADMIN, Role::Admin).await;
    let without_her = settings_with_operators(json!([
        {"email": ADMIN, "role": "admin"},
        {"email": OPERATOR.to_uppercase(), "role": "viewer"},
    ]));
    let saved = admin
        .post(
            "/console/settings",
            &[
                ("csrf", &admin_csrf),
                ("settings", &settings_form(&without_her)),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);

    let page = alice.get("/console/review").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        page.header("location")
            .unwrap()
            .starts_with("/console/login")
    );
    let before = snapshot(&h).await;
    let approve = format!("approve:{}", change.id);
    let post = alice
        .post("/console/review", &[("csrf", &csrf), ("act", &approve)])
        .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER, "{}", post.body);
    assert!(
        post.header("location")
            .unwrap()
            .starts_with("/console/login")
    );
    assert_eq!(snapshot(&h).await, before);
    assert_eq!(held_now(&h, &change.id).await.status, HeldStatus::Held);

    let lowered = otto.get("/console/runs").await;
    assert_eq!(lowered.status, StatusCode::SEE_OTHER, "{}", lowered.body);
    assert!(
        lowered
            .header("location")
            .unwrap()
            .starts_with("/console/login")
    );
    // The admin's own session goes on.
    assert_eq!(admin.get("/console/settings").await.status, StatusCode::OK);
}
