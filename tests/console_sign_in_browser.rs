//! Named operators in real headless Chromium: each person signs in through a real
//! OpenID Connect provider (oidc-provider-mock, typed into its authorization
//! form) and the console lets them do what their role allows, and no more.
//! An approver approves a held change and the trail names her; a viewer sees no
//! approve, sync or mapping controls and her forged POST is refused; a member of
//! the admin group edits the settings; someone who is no operator is refused.
//! Needs Chromium and chromedriver (`make browser-deps`) and the provider
//! (`make venv`; `make test` starts it).

mod support;

use fantoccini::{Client, Locator};
use serde_json::json;
use sophos_cw_sync::store::{HeldStatus, Store};
use std::time::Duration;
use support::app::{Harness, demo_settings, tenant};
use support::browser::{
    Browser, click, js, screenshot, text_of, wait_for, wait_for_text, wait_for_url_query,
};

const WAIT: Duration = Duration::from_secs(20);

const ALICE: &str = "alice@example.com";
const VERA: &str = "vera@example.com";
const CAROL: &str = "carol@example.com";
const MALLORY: &str = "mallory@example.com";

/// The demo scenario synced once, its console served on a loopback port with
/// sign-in through the test provider, and these operators: Alice approves, Vera
/// views, the group `billing-admins` (Carol's) administers.
struct Served {
    h: Harness,
    base: String,
}

async fn served() -> Served {
    let provider = support::oidc::provider();
    // Subjects of this test binary only: other binaries share the provider.
    for (sub, claims) in [
        ("browser-alice", json!({"email": ALICE})),
        ("browser-vera", json!({"email": VERA})),
        (
            "browser-carol",
            json!({"email": CAROL, "groups": ["billing-admins", "staff"]}),
        ),
        (
            "browser-mallory",
            json!({"email": MALLORY, "groups": ["staff"]}),
        ),
    ] {
        provider.set_user(sub, claims).await;
    }
    let h = Harness::start().await.with_oidc(&provider.url);
    let mut settings = demo_settings();
    settings.operators = serde_json::from_value(json!([
        {"email": "Alice@Example.com", "role": "approver"},
        {"email": VERA, "role": "viewer"},
        {"group": "billing-admins", "role": "admin"}
    ]))
    .unwrap();
    h.store.put_settings(&settings).await.unwrap();
    h.run(&settings).await;
    let (app, _invoker) = support::console::app(&h);
    let base = support::browser::serve_console(app).await;
    Served { h, base }
}

/// Opens `path` of the console, is sent to the sign-in page, chooses the identity
/// provider and types `subject` into the provider's own authorization form.
async fn sign_in_through_the_provider(c: &Client, base: &str, path: &str, subject: &str) {
    c.goto(&format!("{base}{path}")).await.unwrap();
    click(c, "#sign-in-oidc").await;
    // The provider's page, not ours.
    let field = wait_for(c, "input[name='sub']", WAIT).await;
    let at = c.current_url().await.unwrap();
    assert!(
        at.as_str().starts_with(&support::oidc::provider().url),
        "not on the provider's form: {at}"
    );
    field.send_keys(subject).await.unwrap();
    field
        .find(Locator::XPath("ancestor::form//button[@type='submit']"))
        .await
        .expect("the form's Authorize button")
        .click()
        .await
        .unwrap();
}

/// The role the page's header shows, once it shows one.
async fn signed_in(c: &Client, email: &str) -> String {
    wait_for_text(c, "#signed-in-as", email, WAIT).await;
    text_of(c, "#signed-in-role").await
}

/// A held decrease of Acme Ltd's Intercept X Advanced (40 to 28), put in the store.
async fn held_acme_decrease(s: &Served) -> sophos_cw_sync::store::HeldChange {
    let change = support::review::held(
        support::app::MONTH,
        &tenant(1),
        "Acme Ltd",
        "Sophos_Intercept_X_Advanced",
        40.0,
        28.0,
    );
    support::review::put(s.h.store.as_ref(), &change).await;
    change
}

/// The actor of every audit row on the page.
async fn actors_listed(c: &Client) -> Vec<String> {
    let v = js(
        c,
        "return [...document.querySelectorAll('tr.audit-row a.audit-actor')].map(a => a.textContent.trim());",
    )
    .await;
    serde_json::from_value(v).unwrap()
}

/// How many elements match `css` on the page now.
async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

/// POSTs a form from inside the page (the browser's own cookies and headers,
/// the page's own form token), as a forged request would; the answer's status.
async fn post_from_the_page(c: &Client, path: &str, fields: &[(&str, &str)]) -> u64 {
    let fields = serde_json::to_value(fields).unwrap();
    let status = c
        .execute_async(
            r#"const [path, fields, done] = arguments;
               const csrf = document.querySelector("input[name='csrf']").value;
               const body = new URLSearchParams([["csrf", csrf], ...fields]);
               fetch(path, {method: "POST", body, redirect: "manual"})
                 .then(r => done(r.status), e => done("failed: " + e));"#,
            vec![json!(path), fields],
        )
        .await
        .unwrap();
    status
        .as_u64()
        .unwrap_or_else(|| panic!("the POST did not answer: {status}"))
}

#[tokio::test]
async fn an_approver_signs_in_through_the_provider_approves_and_the_trail_names_her() {
    let s = served().await;
    let change = held_acme_decrease(&s).await;
    let c = Browser::session().await;
    sign_in_through_the_provider(&c, &s.base, "/console/review", "browser-alice").await;
    // Back where she was going, named in the header with her role.
    assert_eq!(signed_in(&c, ALICE).await, "approver");
    let row = format!("tr.held-change[data-id='{}']", change.id);
    wait_for(&c, &row, WAIT).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/review")
    );
    screenshot(&c, "signed-in-approver").await;

    click(&c, &format!("{row} button.approve")).await;
    wait_for(&c, &format!("{row}[data-status='approved']"), WAIT).await;
    let stored =
        s.h.store
            .get_held_change(&change.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.status, HeldStatus::Approved);
    let me = format!("console:{ALICE}");
    assert_eq!(stored.decided_by.as_deref(), Some(me.as_str()));

    // On the audit page, her name leads to her entries only: her sign-in and
    // her approval, and none of the run's writes listed beside them before.
    c.goto(&format!("{}/console/audit", s.base)).await.unwrap();
    wait_for(&c, "tr.audit-row", WAIT).await;
    let everyone = actors_listed(&c).await;
    assert!(
        everyone.iter().any(|a| a != &me),
        "only her entries to begin with: {everyone:?}"
    );
    click(
        &c,
        "tr.audit-row[data-action='approveChange'] a.audit-actor",
    )
    .await;
    wait_for_url_query(&c, "actor=", WAIT).await;
    wait_for(&c, "tr.audit-row", WAIT).await;
    let listed = actors_listed(&c).await;
    assert!(listed.iter().all(|a| a == &me), "{listed:?}");
    let actions = js(
        &c,
        "return [...document.querySelectorAll('tr.audit-row')].map(r => r.dataset.action);",
    )
    .await;
    for action in ["consoleLogin", "approveChange"] {
        assert!(
            actions.as_array().unwrap().iter().any(|a| a == action),
            "{action} not in {actions}"
        );
    }
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_viewer_sees_no_approve_sync_or_mapping_controls_and_her_forged_post_is_refused() {
    let s = served().await;
    let change = held_acme_decrease(&s).await;
    let c = Browser::session().await;
    sign_in_through_the_provider(&c, &s.base, "/console/", "browser-vera").await;
    assert_eq!(signed_in(&c, VERA).await, "viewer");
    wait_for(&c, "#customers", WAIT).await;

    for (path, controls) in [
        (
            "/console/review",
            "button.approve, button.reject, #approve-selected",
        ),
        ("/console/runs", "#sync-now, #preview"),
        (
            "/console/mapping",
            "form[method='post'][action^='/console/customers'], form[action='/console/mapping/codes']",
        ),
        (
            "/console/settings",
            "#save-settings, #save-products, #pause-sync",
        ),
    ] {
        c.goto(&format!("{}{path}", s.base)).await.unwrap();
        wait_for(&c, "#role-note, #pause-role-note", WAIT).await;
        assert_eq!(
            count(&c, controls).await,
            0,
            "{path} shows a viewer {controls}"
        );
    }
    // The held change is there to see, without its buttons.
    c.goto(&format!("{}/console/review", s.base)).await.unwrap();
    wait_for(
        &c,
        &format!("tr.held-change[data-id='{}']", change.id),
        WAIT,
    )
    .await;
    screenshot(&c, "signed-in-viewer").await;

    // With her session and the page's own form token, the server still says no.
    let approve = format!("approve:{}", change.id);
    let before = s.h.store.list_audit(100, None).await.unwrap().len();
    assert_eq!(
        post_from_the_page(&c, "/console/review", &[("act", approve.as_str())]).await,
        403
    );
    assert_eq!(
        post_from_the_page(&c, "/console/sync", &[("mode", "sync")]).await,
        403
    );
    let stored =
        s.h.store
            .get_held_change(&change.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        stored.status,
        HeldStatus::Held,
        "a viewer's forged POST approved"
    );
    assert_eq!(
        s.h.store.list_runs(10, None).await.unwrap().len(),
        1,
        "a run was started"
    );
    assert_eq!(s.h.store.list_audit(100, None).await.unwrap().len(), before);
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_member_of_the_admin_group_edits_the_settings() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in_through_the_provider(&c, &s.base, "/console/settings", "browser-carol").await;
    assert_eq!(signed_in(&c, CAROL).await, "admin");
    let product = "Sophos_Endpoint_Protection";
    wait_for(&c, &format!("#product-{product}"), WAIT).await;
    click(&c, &format!("#product-{product}")).await;
    click(&c, "#save-products").await;
    wait_for(&c, "#saved", WAIT).await;
    let settings = s.h.store.get_settings().await.unwrap().unwrap();
    assert!(
        settings.products.contains(product),
        "{:?}",
        settings.products
    );
    let trail = s.h.store.list_audit(20, Some("")).await.unwrap();
    let saved = trail
        .iter()
        .find(|e| e.action == "updateSettings")
        .expect("the change is on the trail");
    assert_eq!(saved.actor, format!("console:{CAROL}"));
    c.close().await.unwrap();
}

#[tokio::test]
async fn someone_who_is_no_operator_is_refused_with_the_address_to_add() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in_through_the_provider(&c, &s.base, "/console/", "browser-mallory").await;
    let refusal = wait_for_text(&c, "#not-an-operator", MALLORY, WAIT).await;
    assert!(refusal.contains("operators"), "{refusal}");
    screenshot(&c, "not-an-operator").await;
    assert_eq!(count(&c, "nav").await, 0, "refused, yet signed in");
    // No session was issued: the console still asks to sign in.
    c.goto(&format!("{}/console/", s.base)).await.unwrap();
    wait_for(&c, "#sign-in-oidc", WAIT).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    let trail = s.h.store.list_audit(20, Some("")).await.unwrap();
    let refused = trail
        .iter()
        .find(|e| e.action == "consoleSignInRefused")
        .expect("the refusal is on the trail");
    assert!(refused.detail.as_deref().unwrap_or("").contains(MALLORY));
    c.close().await.unwrap();
}
