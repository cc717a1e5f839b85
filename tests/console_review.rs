//! The console's Review page through the router (no socket): held changes listed
//! by customer, approve, reject and bulk approve through `sync::review::decide`,
//! the CSRF and origin checks on the decision form, 4xx pages for unknown or
//! finished changes, the audit entries naming the console session, the home
//! page's banner and the `review` status on the customers list.

mod support;

use axum::http::StatusCode;
use sophos_cw_sync::store::{AuditFilter, HeldChange, HeldStatus, Store};
use sophos_cw_sync::web::router;
use support::app::{Harness, MONTH, demo_settings, tenant};
use support::console::{Client, app, test_config};
use support::review::{held, put, with_status};

/// Form fields (or request headers) of a test request.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

const XA: &str = "Sophos_Intercept_X_Advanced";
const XDR: &str = "Sophos_Intercept_X_Advanced_XDR";

/// A store with three open held changes (Acme twice, Beta once) and an applied one.
struct Held {
    h: Harness,
    acme_xa: HeldChange,
    acme_xdr: HeldChange,
    beta: HeldChange,
    applied: HeldChange,
}

async fn held_changes() -> Held {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    let acme_xa = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 28.0);
    let acme_xdr = held(MONTH, &tenant(1), "Acme Ltd", XDR, 12.0, 2.0);
    let beta = held(MONTH, &tenant(4), "Beta GmbH", XA, 30.0, 10.0);
    let applied = with_status(
        &held("2026-10", &tenant(5), "Gamma Inc", XA, 9.0, 1.0),
        HeldStatus::Applied,
    );
    for c in [&acme_xa, &acme_xdr, &beta, &applied] {
        put(h.store.as_ref(), c).await;
    }
    Held {
        h,
        acme_xa,
        acme_xdr,
        beta,
        applied,
    }
}

fn client(h: &Harness) -> Client {
    let (app, _invoker) = app(h);
    Client::new(router(app, test_config()))
}

async fn status_of(h: &Harness, id: &str) -> HeldChange {
    h.store.get_held_change(id).await.unwrap().expect("stored")
}

/// The review page's token (its form carries the session's CSRF token).
async fn review_csrf(c: &mut Client) -> String {
    let page = c.get("/console/review").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.csrf()
}

async fn audit_of(h: &Harness, action: &str) -> Vec<sophos_cw_sync::store::AuditEntry> {
    let filter = AuditFilter {
        action: Some(action.to_owned()),
        ..AuditFilter::default()
    };
    h.store
        .list_audit_page(&filter, 100, None)
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn the_review_page_lists_open_changes_by_customer_and_all_of_them_on_request() {
    let s = held_changes().await;
    let mut c = client(&s.h);
    c.sign_in().await;
    let page = c.get("/console/review").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    for c in [&s.acme_xa, &s.acme_xdr, &s.beta] {
        assert!(
            body.contains(&format!("data-id=\"{}\" data-status=\"held\"", c.id)),
            "{} not listed",
            c.id
        );
    }
    assert!(!body.contains(&s.applied.id), "an applied change is open");
    // One group per customer, with its ConnectWise company and agreement.
    assert_eq!(body.matches("class=\"card review-group\"").count(), 2);
    for part in [
        "Acme Ltd",
        "AcmeLtdCo",
        "agreement #201",
        "40 → 28",
        "(-12)",
        "decreaseOverUnits",
        "a decrease of 12 units (from 40 to 28)",
        "CIXA-MSP",
        "Central Intercept X Advanced",
        "href=\"/console/runs/r-proposer\"",
        "id=\"approve-selected\"",
        "id=\"sync-after\"",
    ] {
        assert!(body.contains(part), "{part:?} not on the page");
    }
    assert!(body.contains("href=\"/console/review\""), "no nav link");

    let all = c.get("/console/review?view=all").await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(
        all.body.contains(&format!(
            "data-id=\"{}\" data-status=\"applied\"",
            s.applied.id
        )),
        "{}",
        all.body
    );
    assert!(all.body.contains("written by run r-writer"));
    // One change by id (the customers pages link there).
    let one = c.get(&format!("/console/review?id={}", s.applied.id)).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body.matches("class=\"held-change\"").count(), 1);
    let bad = c.get("/console/review?view=decided").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("view=all"), "{}", bad.body);
    let gone = c.get("/console/review?id=2026-11-000000000000").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // The home page counts what waits.
    let home = c.get("/console/").await;
    assert!(
        home.body.contains("id=\"banner-review\"")
            && home
                .body
                .contains("<strong>3</strong> changes wait for review"),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn the_review_list_pages_with_the_stores_cursor() {
    let h = Harness::start().await;
    for n in 0..53u32 {
        let c = held(
            MONTH,
            &tenant(100 + n),
            &format!("Customer {n:02}"),
            XA,
            50.0,
            5.0,
        );
        put(h.store.as_ref(), &c).await;
    }
    let mut c = client(&h);
    c.sign_in().await;
    let first = c.get("/console/review").await;
    assert_eq!(first.body.matches("class=\"held-change\"").count(), 50);
    let marker = "id=\"next-page\" href=\"";
    let at = first.body.find(marker).expect("a more link") + marker.len();
    let link = &first.body[at..at + first.body[at..].find('"').unwrap()];
    let link = link.replace("&amp;", "&");
    assert!(link.starts_with("/console/review?after="), "{link}");
    let second = c.get(&link).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body.matches("class=\"held-change\"").count(), 3);
    assert!(!second.body.contains("id=\"next-page\""));
    // 53 open: the banner says so.
    let home = c.get("/console/").await;
    assert!(home.body.contains("<strong>53</strong> changes wait"));
}

#[tokio::test]
async fn the_banner_counts_every_open_change_past_500() {
    let h = Harness::start().await;
    for n in 0..501u32 {
        let c = held(MONTH, &tenant(1000 + n), "Many", XA, 50.0, 5.0);
        put(h.store.as_ref(), &c).await;
    }
    let mut c = client(&h);
    c.sign_in().await;
    let home = c.get("/console/").await;
    assert!(
        home.body
            .contains("<strong>501</strong> changes wait for review"),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn decision_forms_without_the_sessions_token_or_from_another_site_change_nothing() {
    let s = held_changes().await;
    let mut c = client(&s.h);
    c.sign_in().await;
    let csrf = review_csrf(&mut c).await;
    let act = format!("approve:{}", s.acme_xa.id);
    let cases: Vec<(&str, Pairs, Pairs)> = vec![
        (
            "no token",
            vec![("act", &act)],
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "a wrong token",
            vec![("csrf", "forged"), ("act", &act)],
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "another site",
            vec![("csrf", &csrf), ("act", &act)],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (what, form, headers) in cases {
        let answer = c.post_with("/console/review", &form, &headers).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            answer.body
        );
    }
    assert_eq!(
        status_of(&s.h, &s.acme_xa.id).await.status,
        HeldStatus::Held
    );
    assert!(audit_of(&s.h, "approveChange").await.is_empty());

    // Signed out: sent to sign in, nothing decided.
    let mut stranger = client(&s.h);
    let answer = stranger
        .post("/console/review", &[("csrf", &csrf), ("act", &act)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        answer
            .header("location")
            .unwrap()
            .starts_with("/console/login")
    );
    assert_eq!(
        status_of(&s.h, &s.acme_xa.id).await.status,
        HeldStatus::Held
    );
}

#[tokio::test]
async fn unknown_finished_or_missing_choices_get_a_4xx_that_says_what_to_do() {
    let s = held_changes().await;
    let mut c = client(&s.h);
    c.sign_in().await;
    let csrf = review_csrf(&mut c).await;
    let unknown = "approve:2026-11-000000000000".to_owned();
    let applied = format!("reject:{}", s.applied.id);
    let cases: Vec<(Pairs, StatusCode, &str)> = vec![
        (
            vec![("act", &unknown)],
            StatusCode::NOT_FOUND,
            "no held change has the id",
        ),
        (
            vec![("act", &applied)],
            StatusCode::CONFLICT,
            "is applied (written by run r-writer)",
        ),
        (
            vec![("act", "approve-selected")],
            StatusCode::BAD_REQUEST,
            "no change is selected",
        ),
        (
            vec![],
            StatusCode::BAD_REQUEST,
            "use the Approve or Reject buttons",
        ),
        (
            vec![("act", "delete:x")],
            StatusCode::BAD_REQUEST,
            "there is no review decision",
        ),
        (
            vec![("act", "approve:")],
            StatusCode::BAD_REQUEST,
            "names no held change",
        ),
    ];
    let many: Vec<String> = (0..101).map(|n| format!("2026-11-{n:012}")).collect();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("act", "approve-selected")];
    form.extend(many.iter().map(|id| ("id", id.as_str())));
    let answer = c.post("/console/review", &form).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body.contains("approve at most 100 at once"),
        "{}",
        answer.body
    );
    for (mut form, status, says) in cases {
        form.push(("csrf", &csrf));
        let answer = c.post("/console/review", &form).await;
        assert_eq!(answer.status, status, "{form:?}: {}", answer.body);
        assert!(answer.body.contains(says), "{form:?}: {}", answer.body);
    }
    assert_eq!(
        status_of(&s.h, &s.applied.id).await.status,
        HeldStatus::Applied
    );
    assert!(audit_of(&s.h, "rejectChange").await.is_empty());
}

#[tokio::test]
async fn approve_reject_and_bulk_approve_decide_audit_and_say_so() {
    let s = held_changes().await;
    let mut c = client(&s.h);
    c.sign_in().await;
    let csrf = review_csrf(&mut c).await;

    // One row's Approve (a checked box elsewhere is not part of it).
    let act = format!("approve:{}", s.acme_xa.id);
    let answer = c
        .post(
            "/console/review",
            &[("csrf", &csrf), ("act", &act), ("id", &s.beta.id)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert_eq!(location, "/console/review?done=approve&n=1");
    let after = status_of(&s.h, &s.acme_xa.id).await;
    assert_eq!(after.status, HeldStatus::Approved);
    let actor = after.decided_by.clone().expect("decided by");
    assert!(actor.starts_with("console:"), "{actor}");
    assert_eq!(status_of(&s.h, &s.beta.id).await.status, HeldStatus::Held);
    let flash = c.get(&location).await;
    assert!(
        flash
            .body
            .contains("Approved 1 change. The next sync of their month writes them."),
        "{}",
        flash.body
    );
    // Approved: still open, no checkbox any more, a Reject button instead.
    assert!(flash.body.contains(&format!(
        "data-id=\"{}\" data-status=\"approved\"",
        s.acme_xa.id
    )));
    assert!(
        !flash
            .body
            .contains(&format!("name=\"id\" value=\"{}\"", s.acme_xa.id))
    );

    // Reject one.
    let act = format!("reject:{}", s.acme_xdr.id);
    let answer = c
        .post("/console/review", &[("csrf", &csrf), ("act", &act)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let location = answer.header("location").unwrap().to_owned();
    let rejected = status_of(&s.h, &s.acme_xdr.id).await;
    assert_eq!(rejected.status, HeldStatus::Rejected);
    assert_eq!(rejected.rejected_quantities, vec![2.0]);
    assert_eq!(rejected.decided_by.as_deref(), Some(actor.as_str()));
    let page = c.get(&location).await;
    assert!(page.body.contains("Rejected 1 change."), "{}", page.body);
    // Rejected is decided: only the All view lists it.
    assert!(
        !page
            .body
            .contains(&format!("data-id=\"{}\"", s.acme_xdr.id))
    );

    // Bulk: the selected ones, one of them already approved (no harm), one applied.
    let answer = c
        .post(
            "/console/review",
            &[
                ("csrf", &csrf),
                ("act", "approve-selected"),
                ("id", &s.beta.id),
                ("id", &s.acme_xa.id),
                ("id", &s.applied.id),
                ("view", "all"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        format!(
            "/console/review?done=approve&n=2&view=all&refused={}",
            s.applied.id
        )
    );
    assert_eq!(
        status_of(&s.h, &s.beta.id).await.status,
        HeldStatus::Approved
    );
    let page = c.get(&location).await;
    assert!(page.body.contains("Approved 2 changes."), "{}", page.body);
    assert!(page.body.contains("id=\"refused\""), "{}", page.body);

    // The trail names the session: two approvals (the repeat writes nothing), one rejection.
    let approvals = audit_of(&s.h, "approveChange").await;
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    assert!(approvals.iter().all(|e| e.actor == actor));
    let rejections = audit_of(&s.h, "rejectChange").await;
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].identifier, XDR);
    assert_eq!(rejections[0].actor, actor);
    // And the audit page offers the decisions as a filter.
    let audit = c.get("/console/audit?action=approveChange").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert_eq!(
        audit.body.matches("data-action=\"approveChange\"").count(),
        2
    );
}

#[tokio::test]
async fn sync_now_after_approving_starts_a_run_of_the_changes_month() {
    let s = held_changes().await;
    let (app, invoker) = app(&s.h);
    let mut c = Client::new(router(app, test_config()));
    c.sign_in().await;
    let csrf = review_csrf(&mut c).await;
    let act = format!("approve:{}", s.beta.id);
    let answer = c
        .post(
            "/console/review",
            &[("csrf", &csrf), ("act", &act), ("sync", "1")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    let run_id = location
        .split("run=")
        .nth(1)
        .expect("a run in the redirect")
        .to_owned();
    invoker.wait_idle().await;
    let run = s.h.store.get_run(&run_id).await.unwrap().expect("the run");
    assert_eq!(run.month, MONTH);
    assert!(!run.dry_run);
    let requests = audit_of(&s.h, "requestSync").await;
    assert_eq!(requests.len(), 1);
    assert!(requests[0].actor.starts_with("console:"));
    let page = c.get(&location).await;
    assert!(
        page.body
            .contains("A sync was requested to write them now.")
            && page
                .body
                .contains(&format!("href=\"/console/runs/{run_id}\"")),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn customers_in_review_are_filtered_and_link_their_held_changes() {
    use sophos_cw_sync::sync::report::CustomerState;
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h.run(&demo_settings()).await;
    // Acme's latest result as a run that held its change would leave it.
    let change = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 28.0);
    put(h.store.as_ref(), &change).await;
    let mut status = h
        .store
        .get_customer_status(&tenant(1))
        .await
        .unwrap()
        .expect("Acme's status");
    status.report["status"] = serde_json::to_value(CustomerState::Review).unwrap();
    status.report["products"][0]["action"] = "hold".into();
    status.report["products"][0]["heldChangeId"] = change.id.clone().into();
    status.report["products"][0]["reviewRule"] = "decreaseOverUnits".into();
    h.store.put_customer_status(&status).await.unwrap();
    // And in the run's own results.
    let run_id = status.run_id.clone();
    let mut run_customers = h
        .store
        .list_run_customers(&run_id, 500, None)
        .await
        .unwrap()
        .items;
    for rc in run_customers
        .iter_mut()
        .filter(|rc| rc.tenant_id == tenant(1))
    {
        rc.report = status.report.clone();
    }
    h.store.put_run_customers(&run_customers).await.unwrap();

    let mut c = client(&h);
    c.sign_in().await;
    let list = c.get("/console/?status=review").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body.matches("<tr class=\"customer\"").count(), 1);
    assert!(list.body.contains(&format!(
        "data-tenant=\"{}\" data-status=\"review\"",
        tenant(1)
    )));
    assert!(list.body.contains("<option value=\"review\""));
    let link = format!("href=\"/console/review?id={}\"", change.id);
    assert!(list.body.contains(&link), "{}", list.body);
    assert!(list.body.contains("held for review"));
    let page = c.get(&format!("/console/customers/{}", tenant(1))).await;
    assert!(page.body.contains("chip review"), "{}", page.body);
    assert!(page.body.contains(&link), "{}", page.body);
    let run = c.get(&format!("/console/runs/{run_id}")).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert!(run.body.contains(&link), "{}", run.body);
}

/// End to end: the engine holds a first addition over 40, the console approves it
/// with "Sync now", and that run writes it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_the_engine_held_is_written_once_by_the_run_its_approval_starts() {
    let h = Harness::start().await;
    let mut settings = serde_json::to_value(demo_settings()).unwrap();
    settings["review"] = serde_json::json!({"firstAdditionOver": 40});
    let settings: sophos_cw_sync::config::Settings = serde_json::from_value(settings).unwrap();
    h.store.put_settings(&settings).await.unwrap();
    h.run(&settings).await;
    let acme_ixa = |h: &Harness| {
        h.additions_of(201)
            .into_iter()
            .filter(|a| a["product"]["id"] == 901)
            .collect::<Vec<_>>()
    };
    assert!(acme_ixa(&h).is_empty(), "held, not written");
    let held = h
        .store
        .list_held_changes(true, 10, None)
        .await
        .unwrap()
        .items;
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(
        (held[0].tenant_id.as_str(), held[0].identifier.as_str()),
        (tenant(1).as_str(), XA)
    );

    let (app, invoker) = app(&h);
    let mut c = Client::new(router(app, test_config()));
    c.sign_in().await;
    let page = c.get("/console/review").await;
    assert!(
        page.body.contains("Acme Ltd") && page.body.contains("0 → 42"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let act = format!("approve:{}", held[0].id);
    let answer = c
        .post(
            "/console/review",
            &[("csrf", &csrf), ("act", &act), ("sync", "1")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    invoker.wait_idle().await;
    let written = acme_ixa(&h);
    assert_eq!(written.len(), 1, "written once: {written:?}");
    assert_eq!(written[0]["quantity"], 42.0);
    let applied = status_of(&h, &held[0].id).await;
    assert_eq!(applied.status, HeldStatus::Applied, "{applied:#?}");
    assert!(
        applied
            .decided_by
            .as_deref()
            .unwrap()
            .starts_with("console:")
    );
    // The open list is empty again.
    let page = c.get("/console/review").await;
    assert!(!page.body.contains("0 → 42"), "{}", page.body);
}
