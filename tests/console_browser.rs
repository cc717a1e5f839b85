//! The operator console in real headless Chromium over WebDriver: sign-in and
//! sign-out, the customers page of the demo scenario (statuses, ConnectWise ids,
//! agreement types, error advice), filters, mapping a customer from a suggestion
//! and "Sync now", ignoring a customer, the audit page and its CSV export, and the
//! hostile customer name shown as text with no script run. The screenshots in
//! docs/screenshots are taken here, so the README's pictures never go stale.
//! Needs Chromium and chromedriver: `make browser-deps` (part of `make test`).

mod support;

use fantoccini::{Client, Locator};
use serde_json::Value;
use sophos_cw_sync::store::Store;
use std::time::Duration;
use support::app::{CONSOLE_PASSWORD, Harness, demo_settings, tenant};
use support::browser::{
    Browser, click, console_errors, find, js, screenshot, text_of, wait_for, wait_for_text,
    wait_for_url_query,
};

const WAIT: Duration = Duration::from_secs(20);

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The demo scenario synced once, served on a loopback port (plain http, so the
/// cookie's Secure flag is dropped as `serve --insecure-local-cookies` does).
struct Served {
    h: Harness,
    base: String,
}

async fn served() -> Served {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h.run(&demo_settings()).await;
    let (app, _invoker) = support::console::app(&h);
    let base = support::browser::serve_console(app).await;
    Served { h, base }
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let field = find(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn sign_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/console/")).await.unwrap();
    wait_for(c, "#password", WAIT).await;
    type_into(c, "#password", CONSOLE_PASSWORD).await;
    click(c, "#sign-in").await;
    wait_for(c, "#customers", WAIT).await;
}

async fn url(c: &Client) -> String {
    c.current_url().await.unwrap().to_string()
}

/// Each customer row's (tenant id, status) on the page.
async fn rows(c: &Client) -> Vec<(String, String)> {
    let v = js(
        c,
        "return [...document.querySelectorAll('tr.customer')].map(r => [r.dataset.tenant, r.dataset.status]);",
    )
    .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls the listed rows (a condition on the page, not a fixed wait) until `done`
/// holds; the rows then. A swap in progress (stale rows) is read again.
async fn until_rows(
    c: &Client,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = rows(c).await;
        if done(&now) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the list never showed what was expected: {now:?} at {}",
            url(c).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run page's status once it is no longer "running" (the page reloads itself
/// when the run ends; the status is read from whichever page is loaded).
async fn finished_status(c: &Client) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = c
            .execute(
                "return document.querySelector('#run-status')?.textContent ?? null;",
                Vec::new(),
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        if let Some(status) = now.filter(|s| s != "running") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn row_text(c: &Client, tenant_id: &str) -> String {
    text_of(c, &format!("tr.customer[data-tenant='{tenant_id}']")).await
}

#[tokio::test]
async fn a_wrong_password_is_refused_the_right_one_enters_and_sign_out_leaves() {
    let s = served().await;
    let c = Browser::session().await;
    c.goto(&format!("{}/console/runs", s.base)).await.unwrap();
    wait_for(&c, "#password", WAIT).await;
    type_into(&c, "#password", "not-the-password").await;
    click(&c, "#sign-in").await;
    let problem = wait_for(&c, "#login-error", WAIT)
        .await
        .text()
        .await
        .unwrap();
    assert!(problem.contains("not the console password"), "{problem}");
    assert!(
        c.find(Locator::Css("nav")).await.is_err(),
        "refused, yet signed in"
    );

    type_into(&c, "#password", CONSOLE_PASSWORD).await;
    click(&c, "#sign-in").await;
    // Back to where it was going.
    wait_for(&c, "#sync-now", WAIT).await;
    assert!(url(&c).await.ends_with("/console/runs"));

    click(&c, "#logout").await;
    wait_for(&c, "#signed-out", WAIT).await;
    c.goto(&format!("{}/console/", s.base)).await.unwrap();
    wait_for(&c, "#password", WAIT).await;
    assert!(
        url(&c).await.contains("/console/login"),
        "the session outlived sign-out"
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn the_customers_page_shows_the_demo_customers_with_their_errors_and_advice() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in(&c, &s.base).await;
    let rows = rows(&c).await;
    let status = |n: u32| {
        rows.iter()
            .find(|(t, _)| *t == tenant(n))
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("tenant {n} not listed: {rows:?}"))
    };
    assert_eq!(rows.len(), 14, "{rows:?}");
    assert_eq!(status(1), "synced");
    assert_eq!(status(2), "error");
    assert_eq!(status(3), "unmapped");
    assert_eq!(status(7), "ignored");
    // ConnectWise company (name, identifier, id) and the agreement with its type.
    let acme = row_text(&c, &tenant(1)).await;
    for part in ["Acme Ltd (AcmeLtd)", "#101", "Acme - Sophos", "Sophos MSP"] {
        assert!(acme.contains(part), "{part:?} not in {acme:?}");
    }
    // Each error's code, message and advice, readable on the page.
    let errors = text_of(&c, &format!("tr.errors[data-tenant='{}']", tenant(11))).await;
    assert!(errors.contains("ADDITION_AMBIGUOUS"), "{errors}");
    assert!(
        errors.contains("Cancel or delete the extra additions"),
        "{errors}"
    );
    let visible = js(&c, &format!("return document.querySelector(\"tr.errors[data-tenant='{}'] .advice\").offsetHeight > 0;", tenant(11))).await;
    assert_eq!(visible, Value::Bool(true), "the advice is not shown");
    let banner = text_of(&c, "#banner").await;
    assert!(
        banner.contains("unmapped customers") && banner.contains("customers in error"),
        "{banner}"
    );
    assert!(
        text_of(&c, "#banner-unmapped").await.starts_with('6'),
        "{banner}"
    );

    // The hostile name is text: shown as typed, no element made of it, no script run.
    let name = text_of(
        &c,
        &format!("tr.customer[data-tenant='{}'] a.name", tenant(14)),
    )
    .await;
    assert_eq!(name, HOSTILE);
    let imgs = js(&c, "return document.querySelectorAll('img').length;").await;
    assert_eq!(imgs, Value::from(0));
    assert!(
        c.get_alert_text().await.is_err(),
        "an alert is open: the name ran as script"
    );
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    screenshot(&c, "customers").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn filters_narrow_the_list_and_stay_in_the_address() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in(&c, &s.base).await;
    // The banner's link is a filtered view.
    click(&c, "#banner-error").await;
    wait_for(&c, "#customers", WAIT).await;
    let listed = rows(&c).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|(_, s)| s == "error"), "{listed:?}");
    assert!(url(&c).await.contains("status=error"));

    // Status and free text together, as a shareable link. htmx swaps the list in
    // as the filters change, so each step waits for the list it should show.
    find(&c, "#status")
        .await
        .select_by_value("unmapped")
        .await
        .unwrap();
    let unmapped = until_rows(&c, |rows| {
        rows.len() == 6 && rows.iter().all(|(_, s)| s == "unmapped")
    })
    .await;
    assert!(
        unmapped.iter().any(|(t, _)| *t == tenant(10)),
        "{unmapped:?}"
    );
    find(&c, "#q").await.send_keys("kap\n").await.unwrap();
    let narrowed = until_rows(&c, |rows| rows.len() == 1).await;
    assert_eq!(narrowed, vec![(tenant(10), "unmapped".to_owned())]);

    let shared = url(&c).await;
    assert!(
        shared.contains("status=unmapped") && shared.contains("q=kap"),
        "{shared}"
    );
    // Opening the link again gives the same view.
    c.goto(&shared).await.unwrap();
    wait_for(&c, "#customers", WAIT).await;
    assert_eq!(rows(&c).await, vec![(tenant(10), "unmapped".to_owned())]);
    c.close().await.unwrap();
}

#[tokio::test]
async fn mapping_a_customer_from_a_suggestion_then_sync_now_bills_it() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in(&c, &s.base).await;
    c.goto(&format!("{}/console/mapping", s.base))
        .await
        .unwrap();
    // Kappa has no company of its exact name; "Kappa Holdings Group" is a close match.
    let kappa = format!("[data-tenant='{}']", tenant(10));
    wait_for(
        &c,
        &format!("{kappa} .suggestion[data-company='110']"),
        WAIT,
    )
    .await;
    screenshot(&c, "mapping").await;
    assert!(
        s.h.store.get_mapping(&tenant(10)).await.unwrap().is_none(),
        "a suggestion was applied by itself"
    );
    click(
        &c,
        &format!("{kappa} .suggestion[data-company='110'] a.pick"),
    )
    .await;
    wait_for(&c, ".use-agreement", WAIT).await;
    click(&c, ".use-agreement").await;
    wait_for(&c, "#done", WAIT).await;
    let mapping =
        s.h.store
            .get_mapping(&tenant(10))
            .await
            .unwrap()
            .expect("mapped");
    assert_eq!(
        (mapping.company_id, mapping.agreement_id),
        (Some(110), Some(210))
    );
    assert!(s.h.additions_of(210).is_empty(), "billed before any sync");

    // First the preview: the plan shows Kappa's addition and nothing is written.
    c.goto(&format!("{}/console/runs", s.base)).await.unwrap();
    wait_for(&c, "#preview", WAIT).await;
    click(&c, "#preview").await;
    wait_for(&c, "#dry-run-note", WAIT).await;
    // The demo keeps customers in error, so a whole run is "partial".
    let planned = finished_status(&c).await;
    assert!(
        planned == "succeeded" || planned == "partial",
        "the preview ended {planned}"
    );
    let plan = text_of(
        &c,
        &format!("tr.run-customer[data-tenant='{}']", tenant(10)),
    )
    .await;
    assert!(
        plan.contains("Sophos_Intercept_X_Advanced") && plan.contains("(created)"),
        "{plan}"
    );
    assert!(
        s.h.additions_of(210).is_empty(),
        "the preview wrote to ConnectWise"
    );

    // Then Sync now: the run page follows the progress, then shows the result.
    c.goto(&format!("{}/console/runs", s.base)).await.unwrap();
    wait_for(&c, "#sync-now", WAIT).await;
    click(&c, "#sync-now").await;
    wait_for(&c, "#run-status", WAIT).await;
    let ended = finished_status(&c).await;
    assert!(
        ended == "succeeded" || ended == "partial",
        "the run ended {ended}"
    );
    assert!(c.find(Locator::Css("#dry-run-note")).await.is_err());
    let changed = text_of(
        &c,
        &format!("tr.run-customer[data-tenant='{}']", tenant(10)),
    )
    .await;
    assert!(
        changed.contains("→") && changed.contains("(created)"),
        "{changed}"
    );
    screenshot(&c, "run").await;
    c.goto(&format!("{}/console/runs", s.base)).await.unwrap();
    wait_for(&c, "tr.run", WAIT).await;
    let listed = js(&c, "return document.querySelectorAll('tr.run').length;").await;
    assert_eq!(
        listed,
        Value::from(3),
        "the first sync, the preview and this run"
    );
    screenshot(&c, "runs").await;
    // ConnectWise now holds Kappa's addition, and the customers page says synced.
    let additions = s.h.additions_of(210);
    assert_eq!(additions.len(), 1, "{additions:?}");
    c.goto(&format!("{}/console/?q=Kappa", s.base))
        .await
        .unwrap();
    wait_for(&c, "#customers", WAIT).await;
    assert_eq!(rows(&c).await, vec![(tenant(10), "synced".to_owned())]);

    // The audit page shows what this session did, latest first, with its writes.
    c.goto(&format!("{}/console/audit?tenant={}", s.base, tenant(10)))
        .await
        .unwrap();
    wait_for(&c, "#audit", WAIT).await;
    let kappa = js(
        &c,
        "return [...document.querySelectorAll('tr.audit-row')].map(r => r.dataset.action);",
    )
    .await;
    assert_eq!(
        kappa,
        serde_json::json!(["createAddition", "setMapping"]),
        "Kappa's trail"
    );
    c.goto(&format!("{}/console/audit", s.base)).await.unwrap();
    wait_for(&c, "#audit", WAIT).await;
    let all = js(
        &c,
        "return [...document.querySelectorAll('tr.audit-row')].map(r => r.dataset.action);",
    )
    .await;
    let all: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for action in ["requestSync", "requestDryRun", "setMapping", "consoleLogin"] {
        assert!(all.contains(&action), "{action} missing from {all:?}");
    }
    let who = text_of(&c, "tr.audit-row[data-action='setMapping']").await;
    assert!(
        who.contains("console:"),
        "the entry names the console session: {who}"
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn ignoring_a_customer_shows_on_its_page_and_on_the_audit_trail_and_its_csv() {
    let s = served().await;
    let c = Browser::session().await;
    sign_in(&c, &s.base).await;
    c.goto(&format!("{}/console/customers/{}", s.base, tenant(3)))
        .await
        .unwrap();
    wait_for(&c, "#ignore", WAIT).await;
    click(&c, "#ignore").await;
    wait_for(&c, "#unignore", WAIT).await;
    assert_eq!(text_of(&c, "#mapping-kind").await, "ignored");
    let m =
        s.h.store
            .get_mapping(&tenant(3))
            .await
            .unwrap()
            .expect("a mapping");
    assert_eq!(m.kind, sophos_cw_sync::store::MappingKind::Ignored);

    c.goto(&format!("{}/console/audit", s.base)).await.unwrap();
    wait_for(&c, "#audit", WAIT).await;
    let actions = js(
        &c,
        "return [...document.querySelectorAll('tr.audit-row')].map(r => r.dataset.action);",
    )
    .await;
    let actions: Vec<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"ignoreCustomer"), "{actions:?}");
    assert!(actions.contains(&"consoleLogin"), "{actions:?}");
    assert!(actions.contains(&"createAddition"), "{actions:?}");
    // Filtered by action, then the CSV of that view, fetched as the browser would.
    find(&c, "#action")
        .await
        .select_by_value("ignoreCustomer")
        .await
        .unwrap();
    click(&c, "#apply-audit-filter").await;
    // The unfiltered page has an ignoreCustomer row too: wait for the filtered
    // page's address first, then for its rows.
    wait_for_url_query(&c, "action=ignoreCustomer", WAIT).await;
    wait_for(&c, "tr.audit-row[data-action='ignoreCustomer']", WAIT).await;
    let rows = js(
        &c,
        "return document.querySelectorAll('tr.audit-row').length;",
    )
    .await;
    assert_eq!(rows, Value::from(1));
    screenshot(&c, "audit").await;
    let href = find(&c, "#csv-export")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.contains("action=ignoreCustomer"), "{href}");
    let csv = js(
        &c,
        &format!("return fetch({href:?}, {{credentials: 'same-origin'}}).then(r => r.text().then(t => [r.status, r.headers.get('content-type'), t]));"),
    )
    .await;
    assert_eq!(csv[0], Value::from(200), "{csv}");
    assert!(csv[1].as_str().unwrap().starts_with("text/csv"), "{csv}");
    let text = csv[2].as_str().unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("at,actor,action,tenantId"), "{text}");
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].contains("ignoreCustomer") && lines[1].contains(&tenant(3)),
        "{text}"
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn held_changes_are_approved_one_by_one_in_bulk_and_rejected_on_the_review_page() {
    use sophos_cw_sync::store::HeldStatus;
    use support::review::{held, put};
    let s = served().await;
    let month = support::app::MONTH;
    let xa = "Sophos_Intercept_X_Advanced";
    let xdr = "Sophos_Intercept_X_Advanced_XDR";
    let one = held(month, &tenant(1), "Acme Ltd", xa, 40.0, 28.0);
    let bulk_a = held(month, &tenant(1), "Acme Ltd", xdr, 12.0, 2.0);
    let bulk_b = held(month, &tenant(4), "Delta Co", xa, 30.0, 10.0);
    let reject = held(month, &tenant(5), "Echo Labs", xa, 25.0, 0.0);
    for c in [&one, &bulk_a, &bulk_b, &reject] {
        put(s.h.store.as_ref(), c).await;
    }
    let row = |id: &str| format!("tr.held-change[data-id='{id}']");
    let c = Browser::session().await;
    sign_in(&c, &s.base).await;
    // The home page's banner counts them and leads to the page.
    let banner = text_of(&c, "#banner-review").await;
    assert!(banner.contains("4 changes wait for review"), "{banner}");
    click(&c, "#banner-review").await;
    wait_for(&c, &row(&one.id), WAIT).await;
    assert!(url(&c).await.ends_with("/console/review"));
    let acme = text_of(&c, &row(&one.id)).await;
    for part in [
        "40 → 28",
        "(-12)",
        "decreaseOverUnits",
        "CIXA-MSP",
        "r-proposer",
    ] {
        assert!(acme.contains(part), "{part:?} not in {acme:?}");
    }
    screenshot(&c, "review").await;

    // Approve one.
    click(&c, &format!("{} button.approve", row(&one.id))).await;
    wait_for(
        &c,
        &format!("{}[data-status='approved']", row(&one.id)),
        WAIT,
    )
    .await;
    assert!(text_of(&c, "#done").await.contains("Approved 1 change."));
    let stored = s.h.store.get_held_change(&one.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HeldStatus::Approved);
    let actor = stored.decided_by.clone().expect("decided by");
    assert!(actor.starts_with("console:"), "{actor}");

    // Tick two, approve the selection.
    click(&c, &format!("{} input.select", row(&bulk_a.id))).await;
    click(&c, &format!("{} input.select", row(&bulk_b.id))).await;
    click(&c, "#approve-selected").await;
    wait_for(
        &c,
        &format!("{}[data-status='approved']", row(&bulk_b.id)),
        WAIT,
    )
    .await;
    wait_for_text(&c, "#done", "Approved 2 changes.", WAIT).await;
    for id in [&bulk_a.id, &bulk_b.id] {
        let stored = s.h.store.get_held_change(id).await.unwrap().unwrap();
        assert_eq!(stored.status, HeldStatus::Approved, "{id}");
        assert_eq!(stored.decided_by.as_deref(), Some(actor.as_str()));
    }
    let held_still =
        s.h.store
            .get_held_change(&reject.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        held_still.status,
        HeldStatus::Held,
        "an unticked one was approved"
    );

    // Reject one: it leaves the open view and shows under All.
    click(&c, &format!("{} button.reject", row(&reject.id))).await;
    // The page before the redirect has a #done too (the approvals' flash).
    let flash = wait_for_text(&c, "#done", "Rejected", WAIT).await;
    assert!(flash.contains("Rejected 1 change."), "{flash}");
    assert!(c.find(Locator::Css(&row(&reject.id))).await.is_err());
    let stored =
        s.h.store
            .get_held_change(&reject.id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.status, HeldStatus::Rejected);
    assert_eq!(stored.decided_by.as_deref(), Some(actor.as_str()));
    click(&c, "#view-all").await;
    wait_for(
        &c,
        &format!("{}[data-status='rejected']", row(&reject.id)),
        WAIT,
    )
    .await;

    // The audit page shows the decisions, with the session as actor.
    c.goto(&format!("{}/console/audit", s.base)).await.unwrap();
    wait_for(&c, "#audit", WAIT).await;
    find(&c, "#action")
        .await
        .select_by_value("approveChange")
        .await
        .unwrap();
    click(&c, "#apply-audit-filter").await;
    // The filtered page, not the unfiltered one it was sent from (which has
    // approveChange rows too).
    wait_for_url_query(&c, "action=approveChange", WAIT).await;
    wait_for(&c, "tr.audit-row[data-action='approveChange']", WAIT).await;
    let approvals = js(
        &c,
        "return [...document.querySelectorAll('tr.audit-row')].map(r => [r.dataset.action, r.textContent]);",
    )
    .await;
    let approvals = approvals.as_array().unwrap();
    assert_eq!(approvals.len(), 3, "{approvals:?}");
    assert!(
        approvals
            .iter()
            .all(|a| a[0] == "approveChange" && a[1].as_str().unwrap().contains(&actor)),
        "{approvals:?}"
    );
    c.goto(&format!("{}/console/audit?action=rejectChange", s.base))
        .await
        .unwrap();
    wait_for(&c, "tr.audit-row[data-action='rejectChange']", WAIT).await;
    let rejection = text_of(&c, "tr.audit-row[data-action='rejectChange']").await;
    assert!(rejection.contains(&actor), "{rejection}");
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await.unwrap();
}
