//! Changes held for review, against the simulators: each rule holds its change
//! while the rest of the customer and the other customers sync; approve writes
//! once, reject is not proposed again, a held change follows usage and closes by
//! itself, an approval goes back to review when ConnectWise changed meanwhile, a
//! held change does not outlive its month, and a second run writes nothing.

mod support;

use serde_json::{Value, json};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::store::{HeldChange, HeldStatus, MappingKind, ReviewRule, Store};
use sophos_cw_sync::sync::report::{CustomerState, ProductAction, RunReport};
use sophos_cw_sync::sync::review::{Decision, decide};
use support::app::{Harness, customer, demo_settings, tenant};

const IXA: &str = "Sophos_Intercept_X_Advanced";
const XDR: &str = "Sophos_Intercept_X_Advanced_XDR";

fn with_review(review: Value) -> Settings {
    let mut s = serde_json::to_value(demo_settings()).unwrap();
    s["review"] = review;
    serde_json::from_value(s).expect("valid settings")
}

fn qty(v: &Value) -> f64 {
    v["quantity"].as_f64().unwrap()
}

/// The active additions of `product_id` on `agreement_id`.
fn additions(h: &Harness, agreement_id: i64, product_id: i64) -> Vec<Value> {
    h.additions_of(agreement_id)
        .into_iter()
        .filter(|a| a["product"]["id"] == product_id)
        .filter(|a| a["cancelledDate"].as_str().is_none_or(str::is_empty))
        .collect()
}

fn set_addition_quantity(h: &Harness, addition_id: i64, quantity: f64) {
    h.sim.with_state(|s| {
        for a in s.collection_mut("additions") {
            if a["id"] == addition_id {
                a["quantity"] = json!(quantity);
            }
        }
    });
}

/// Sets the November usage of `tenant_n`'s Intercept X lines to `quantity` in all
/// (the first line carries it, the others 0).
fn set_ixa_usage(h: &Harness, tenant_n: u32, quantity: f64) {
    let id = tenant(tenant_n);
    h.sim.with_state(|s| {
        let lines = s.scenario.sophos.usage.get_mut("2026-11").unwrap();
        let mut first = true;
        for l in lines.iter_mut() {
            if l["accountId"] == id.as_str() && l["productCode"] == "CIXA-MSP" {
                let q = if first { quantity } else { 0.0 };
                l["billableQuantity"] = json!(q);
                l["actualQuantity"] = json!(q);
                first = false;
            }
        }
    });
}

async fn all_held(h: &Harness) -> Vec<HeldChange> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = h
            .store
            .list_held_changes(false, 100, after.as_deref())
            .await
            .unwrap();
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

async fn held_of(h: &Harness, tenant_n: u32, identifier: &str) -> Option<HeldChange> {
    all_held(h)
        .await
        .into_iter()
        .find(|c| c.tenant_id == tenant(tenant_n) && c.identifier == identifier)
}

fn product(report: &RunReport, tenant_n: u32, identifier: &str) -> Value {
    let c = customer(report, &tenant(tenant_n));
    c["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == identifier)
        .cloned()
        .unwrap_or_else(|| panic!("{identifier} in {c}"))
}

fn status_of(report: &RunReport, tenant_n: u32) -> CustomerState {
    report
        .customers
        .iter()
        .find(|c| c.tenant_id == tenant(tenant_n))
        .unwrap()
        .status
}

async fn approve(h: &Harness, id: &str) {
    let out = decide(
        h.store.as_ref(),
        &[id.to_owned()],
        Decision::Approve,
        "test:alice",
    )
    .await
    .unwrap();
    assert!(out[0].ok(), "{out:?}");
}

// Demo month 2026-11 (see sim/fixtures/demo.json): Acme (1) gets Intercept X 42
// (30 + 12 over two order lines) and XDR 5 created on agreement 201; Beta (2) has
// addition 301 of 5 with usage 8; Mu (12) has addition 313 of 7 and no usage (to
// zero). Beta also has an unmapped product code (status error whatever else).
// Catalog item 901 is Intercept X.

#[tokio::test(flavor = "multi_thread")]
async fn each_rule_holds_its_change_while_the_rest_syncs() {
    struct Case {
        review: Value,
        /// Beta's addition before the run (to make a decrease).
        beta_before: f64,
        held: &'static [(u32, &'static str, ReviewRule)],
    }
    let cases = [
        Case {
            review: json!({"zeroOrCancel": true}),
            beta_before: 5.0,
            held: &[(12, IXA, ReviewRule::ZeroOrCancel)],
        },
        Case {
            review: json!({"decreaseOverUnits": 10}),
            beta_before: 20.0,
            held: &[(2, IXA, ReviewRule::DecreaseOverUnits)],
        },
        Case {
            review: json!({"decreaseOverPercent": 50}),
            beta_before: 20.0,
            held: &[
                (2, IXA, ReviewRule::DecreaseOverPercent),
                (12, IXA, ReviewRule::DecreaseOverPercent),
            ],
        },
        Case {
            review: json!({"firstAdditionOver": 40}),
            beta_before: 5.0,
            held: &[(1, IXA, ReviewRule::FirstAdditionOver)],
        },
        Case {
            review: json!({"quantityOver": 40}),
            beta_before: 5.0,
            held: &[(1, IXA, ReviewRule::QuantityOver)],
        },
    ];
    for case in cases {
        let h = Harness::start().await;
        set_addition_quantity(&h, 301, case.beta_before);
        let report = h.run(&with_review(case.review.clone())).await;
        let what = &case.review;
        let held = all_held(&h).await;
        assert_eq!(held.len(), case.held.len(), "{what}: {held:#?}");
        for (n, identifier, rule) in case.held {
            let c = held_of(&h, *n, identifier).await.unwrap();
            assert_eq!((c.rule, c.status), (*rule, HeldStatus::Held), "{what}");
            assert_eq!(c.run_id, report.run_id);
            assert_eq!(c.month, "2026-11");
            // The evidence: the lines behind the proposal (none behind a zero).
            let lines: f64 = c.usage_lines.iter().map(|l| l.quantity).sum();
            assert_eq!(lines, c.proposed_quantity, "{what}: {c:#?}");
            assert_eq!(c.usage_lines.is_empty(), c.proposed_quantity == 0.0);
            assert_eq!(product(&report, *n, identifier)["action"], "hold", "{what}");
            assert_eq!(
                product(&report, *n, identifier)["heldChangeId"],
                c.id.as_str()
            );
            // Beta also has an unmapped product code: an error outranks a review.
            let expected = if *n == 2 {
                CustomerState::Error
            } else {
                CustomerState::Review
            };
            assert_eq!(status_of(&report, *n), expected, "{what}");
        }
        let is_held = |n: u32| case.held.iter().any(|(t, _, _)| *t == n);
        // What is held is not written; everything else is.
        let acme_ixa = additions(&h, 201, 901);
        if is_held(1) {
            assert!(acme_ixa.is_empty(), "{what}: held create not written");
        } else {
            assert_eq!(qty(&acme_ixa[0]), 42.0, "{what}");
        }
        // Acme's XDR (5, a first addition under every threshold) always syncs.
        let xdr: Vec<Value> = h
            .additions_of(201)
            .into_iter()
            .filter(|a| a["product"]["id"] != 901)
            .collect();
        assert_eq!(xdr.len(), 1, "{what}: the other product syncs");
        assert_eq!(qty(&xdr[0]), 5.0);
        assert_eq!(product(&report, 1, XDR)["action"], "create");
        let beta = qty(&additions(&h, 202, 901)[0]);
        assert_eq!(
            beta,
            if is_held(2) { case.beta_before } else { 8.0 },
            "{what}"
        );
        let mu = qty(&additions(&h, 212, 901)[0]);
        assert_eq!(mu, if is_held(12) { 7.0 } else { 0.0 }, "{what}");
        assert_eq!(report.customer_counts.held, case.held.len() as u64);

        // A second run writes nothing and leaves the held changes as they are.
        h.sim.clear_requests();
        let before = all_held(&h).await;
        let again = h.run(&with_review(case.review.clone())).await;
        assert_eq!(h.cw_writes(), 0, "{what}: {:?}", h.sim.requests());
        assert_eq!(all_held(&h).await, before, "{what}: not even rewritten");
        assert_eq!(again.customer_counts.held, case.held.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn newly_mapped_customers_are_held_while_known_ones_sync() {
    let h = Harness::start().await;
    h.run(&demo_settings()).await;
    // Kappa (10) is mapped by hand for the first time; Beta's usage moves.
    h.store
        .put_mapping(&sophos_cw_sync::store::Mapping {
            tenant_id: tenant(10),
            kind: MappingKind::Manual,
            company_id: Some(110),
            agreement_id: Some(210),
            updated_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    set_ixa_usage(&h, 2, 11.0);
    let report = h.run(&with_review(json!({"newlyMapped": true}))).await;
    let kappa = held_of(&h, 10, IXA).await.expect("Kappa held");
    assert_eq!(kappa.rule, ReviewRule::NewlyMapped);
    assert_eq!(
        (kappa.current_quantity, kappa.proposed_quantity),
        (0.0, 15.0)
    );
    assert!(h.additions_of(210).is_empty(), "Kappa not billed yet");
    assert_eq!(qty(&additions(&h, 202, 901)[0]), 11.0, "Beta syncs");
    assert_eq!(status_of(&report, 10), CustomerState::Review);
    assert_eq!(all_held(&h).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_writes_once_and_reject_is_not_proposed_again() {
    let h = Harness::start().await;
    let settings = with_review(json!({"firstAdditionOver": 40, "zeroOrCancel": true}));
    h.run(&settings).await;
    let acme = held_of(&h, 1, IXA).await.unwrap();
    let mu = held_of(&h, 12, IXA).await.unwrap();
    assert_eq!(mu.rule, ReviewRule::ZeroOrCancel);
    approve(&h, &acme.id).await;
    let out = decide(
        h.store.as_ref(),
        std::slice::from_ref(&mu.id),
        Decision::Reject,
        "test:bob",
    )
    .await
    .unwrap();
    assert_eq!(out[0].change.as_ref().unwrap().status, HeldStatus::Rejected);

    h.sim.clear_requests();
    let report = h.run(&settings).await;
    let ixa = additions(&h, 201, 901);
    assert_eq!(ixa.len(), 1, "approved create written once");
    assert_eq!(qty(&ixa[0]), 42.0);
    assert_eq!(h.cw_writes(), 1, "{:?}", h.sim.requests());
    let acme = held_of(&h, 1, IXA).await.unwrap();
    assert_eq!(acme.status, HeldStatus::Applied);
    assert_eq!(acme.applied_by_run.as_deref(), Some(report.run_id.as_str()));
    assert_eq!(acme.decided_by.as_deref(), Some("test:alice"));
    assert_eq!(product(&report, 1, IXA)["action"], "create");
    assert_eq!(status_of(&report, 1), CustomerState::Synced);
    // Mu's rejected drop to zero is not proposed again.
    assert_eq!(qty(&additions(&h, 212, 901)[0]), 7.0);
    assert_eq!(product(&report, 12, IXA)["action"], "rejected");
    let mu = held_of(&h, 12, IXA).await.unwrap();
    assert_eq!(mu.status, HeldStatus::Rejected);
    assert_eq!(mu.decided_by.as_deref(), Some("test:bob"));

    // A third run: nothing to write, nothing proposed, the trail has each decision.
    h.sim.clear_requests();
    let third = h.run(&settings).await;
    assert_eq!(h.cw_writes(), 0, "{:?}", h.sim.requests());
    assert_eq!(third.customer_counts.held, 0);
    assert_eq!(additions(&h, 201, 901).len(), 1);
    let trail = h.store.list_audit(200, None).await.unwrap();
    let by = |action: &str| {
        trail
            .iter()
            .filter(|e| e.action == action)
            .map(|e| e.actor.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by("approveChange"), ["test:alice"]);
    assert_eq!(by("rejectChange"), ["test:bob"]);
    assert_eq!(by("holdChange").len(), 2, "each proposal once");
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "createAddition"
                && e.identifier == IXA
                && e.tenant_id == Some(tenant(1)))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_change_follows_usage_and_closes_when_usage_returns() {
    let h = Harness::start().await;
    set_addition_quantity(&h, 301, 20.0);
    let settings = with_review(json!({"decreaseOverUnits": 10}));
    h.run(&settings).await;
    let first = held_of(&h, 2, IXA).await.unwrap();
    assert_eq!(
        (first.current_quantity, first.proposed_quantity),
        (20.0, 8.0)
    );

    // New usage: the same held change now proposes 9, never a second one.
    set_ixa_usage(&h, 2, 9.0);
    h.run(&settings).await;
    let held = all_held(&h).await;
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0].id, first.id);
    assert_eq!(held[0].proposed_quantity, 9.0);
    assert_eq!(
        held[0].usage_lines.iter().map(|l| l.quantity).sum::<f64>(),
        9.0
    );
    assert!(held[0].version > first.version);
    assert_eq!(held[0].status, HeldStatus::Held);

    // Usage back at ConnectWise's 20: it closes by itself, nothing written.
    set_ixa_usage(&h, 2, 20.0);
    h.sim.clear_requests();
    let report = h.run(&settings).await;
    let closed = held_of(&h, 2, IXA).await.unwrap();
    assert_eq!(closed.status, HeldStatus::Closed, "{closed:#?}");
    assert!(closed.note.as_deref().unwrap().contains("came back"));
    assert_eq!(qty(&additions(&h, 202, 901)[0]), 20.0);
    // Never written by us, the addition is now adopted as it stands.
    assert_eq!(product(&report, 2, IXA)["action"], "adopt");
    assert_eq!(
        status_of(&report, 2),
        CustomerState::Error,
        "its unmapped code only"
    );
    assert_eq!(h.cw_writes(), 0, "{:?}", h.sim.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn connectwise_changed_meanwhile_sends_the_approval_back_to_review() {
    let h = Harness::start().await;
    set_addition_quantity(&h, 301, 20.0);
    let settings = with_review(json!({"decreaseOverUnits": 10}));
    h.run(&settings).await;
    let held = held_of(&h, 2, IXA).await.unwrap();
    approve(&h, &held.id).await;
    // Someone edits the addition in ConnectWise before the approval is written.
    set_addition_quantity(&h, 301, 19.0);
    h.sim.clear_requests();
    let report = h.run(&settings).await;
    assert_eq!(h.cw_writes(), 0, "{:?}", h.sim.requests());
    assert_eq!(qty(&additions(&h, 202, 901)[0]), 19.0);
    let back = held_of(&h, 2, IXA).await.unwrap();
    assert_eq!(back.status, HeldStatus::Held, "{back:#?}");
    assert_eq!(back.current_quantity, 19.0);
    assert!(
        back.note
            .as_deref()
            .unwrap()
            .contains("ConnectWise changed")
    );
    assert_eq!(product(&report, 2, IXA)["action"], "hold");

    // Approved again, it is written once.
    approve(&h, &back.id).await;
    h.run(&settings).await;
    assert_eq!(qty(&additions(&h, 202, 901)[0]), 8.0);
    assert_eq!(
        held_of(&h, 2, IXA).await.unwrap().status,
        HeldStatus::Applied
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_change_does_not_outlive_its_month_and_a_dry_run_stores_nothing() {
    let h = Harness::start().await;
    let settings = with_review(json!({"zeroOrCancel": true}));
    // A dry run shows the hold but keeps nothing.
    let preview = h.run_with(&settings, h.options(true)).await.unwrap();
    assert_eq!(product(&preview, 12, IXA)["action"], "hold");
    assert!(all_held(&h).await.is_empty());

    h.run(&settings).await;
    assert_eq!(held_of(&h, 12, IXA).await.unwrap().status, HeldStatus::Held);
    let mut december = settings.clone();
    december.month = "2026-12".into();
    let mut opts = h.options(false);
    opts.month = "2026-12".parse().unwrap();
    h.run_with(&december, opts).await.unwrap();
    let old = held_of(&h, 12, IXA).await.unwrap();
    assert_eq!(old.status, HeldStatus::Closed);
    assert!(
        old.note
            .as_deref()
            .unwrap()
            .contains("month 2026-11 is over")
    );
    // Too late to approve.
    let out = decide(
        h.store.as_ref(),
        std::slice::from_ref(&old.id),
        Decision::Approve,
        "test",
    )
    .await
    .unwrap();
    assert!(!out[0].ok());
    assert!(
        out[0].error.as_deref().unwrap().contains("closed"),
        "{out:?}"
    );
    assert_eq!(qty(&additions(&h, 212, 901)[0]), 7.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_policy_nothing_is_held() {
    let h = Harness::start().await;
    let report = h.run(&demo_settings()).await;
    assert!(all_held(&h).await.is_empty());
    assert_eq!(report.customer_counts.review, 0);
    assert!(
        report
            .customers
            .iter()
            .flat_map(|c| &c.products)
            .all(|p| p.action != ProductAction::Hold)
    );
    assert_eq!(qty(&additions(&h, 212, 901)[0]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_dies_after_writing_an_approval_is_not_written_twice() {
    let h = Harness::start().await;
    let settings = with_review(json!({"firstAdditionOver": 40}));
    h.run(&settings).await;
    let held = held_of(&h, 1, IXA).await.unwrap();
    approve(&h, &held.id).await;
    // The process dies right after its first ConnectWise write: the approved create.
    let mut opts = h.options(false);
    opts.customers_in_progress = Some(1);
    opts.crash_after_writes = Some(1);
    let crashed = h.run_with(&settings, opts).await;
    assert!(crashed.is_err(), "the failpoint stops the run");
    let written = additions(&h, 201, 901);
    assert_eq!(written.len(), 1, "the approved create landed");
    assert_eq!(
        held_of(&h, 1, IXA).await.unwrap().status,
        HeldStatus::Approved
    );
    // The lease of the dead run expires; the next run finds the write and settles.
    let mut opts = h.options(false);
    opts.clock_offset = chrono::Duration::hours(1);
    let report = h.run_with(&settings, opts).await.unwrap();
    assert_eq!(additions(&h, 201, 901).len(), 1, "never written twice");
    let settled = held_of(&h, 1, IXA).await.unwrap();
    assert_eq!(settled.status, HeldStatus::Applied, "{settled:#?}");
    assert_eq!(product(&report, 1, IXA)["action"], "adopt");
}

#[tokio::test(flavor = "multi_thread")]
async fn held_changes_close_when_their_customer_or_product_leaves_the_sync() {
    let h = Harness::start().await;
    let settings = with_review(json!({"firstAdditionOver": 40, "zeroOrCancel": true}));
    h.run(&settings).await;
    assert_eq!(held_of(&h, 1, IXA).await.unwrap().status, HeldStatus::Held);
    let mu = held_of(&h, 12, IXA).await.unwrap();
    approve(&h, &mu.id).await;

    // Mu is ignored by the operator; Intercept X is taken out of the products.
    h.store
        .put_mapping(&sophos_cw_sync::store::Mapping {
            tenant_id: tenant(12),
            kind: MappingKind::Ignored,
            company_id: None,
            agreement_id: None,
            updated_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let mut narrowed = settings.clone();
    narrowed.products.remove(IXA);
    h.sim.clear_requests();
    h.run(&narrowed).await;
    let mu = held_of(&h, 12, IXA).await.unwrap();
    assert_eq!(mu.status, HeldStatus::Closed, "{mu:#?}");
    assert!(
        mu.note.as_deref().unwrap().contains("not synced any more"),
        "{mu:#?}"
    );
    let acme = held_of(&h, 1, IXA).await.unwrap();
    assert_eq!(acme.status, HeldStatus::Closed, "{acme:#?}");
    assert!(
        acme.note
            .as_deref()
            .unwrap()
            .contains("not among the selected products")
    );
    assert_eq!(
        h.cw_writes(),
        0,
        "the approval of an ignored customer is not written"
    );
    assert_eq!(qty(&additions(&h, 212, 901)[0]), 7.0);
    assert!(additions(&h, 201, 901).is_empty());
    // Back in the sync, the proposal is made again (and held again).
    h.store.delete_mapping(&tenant(12)).await.unwrap();
    h.run(&settings).await;
    assert_eq!(held_of(&h, 12, IXA).await.unwrap().status, HeldStatus::Held);
    assert_eq!(held_of(&h, 1, IXA).await.unwrap().status, HeldStatus::Held);
    assert!(held_of(&h, 1, IXA).await.unwrap().version > acme.version);
}
