use super::*;
use crate::sync::plan::{AdditionOp, ProductPlan};

const IXA: &str = "Sophos_Intercept_X_Advanced";

fn policy(json: serde_json::Value) -> ReviewPolicy {
    serde_json::from_value(json).expect("valid policy")
}

fn update(old: f64, new: f64) -> Change {
    Change {
        op: if new == 0.0 {
            HeldOp::Zero
        } else {
            HeldOp::Update
        },
        addition_id: Some(301),
        product_id: None,
        current: old,
        proposed: new,
    }
}

fn create(quantity: f64) -> Change {
    Change {
        op: HeldOp::Create,
        addition_id: None,
        product_id: Some(901),
        current: 0.0,
        proposed: quantity,
    }
}

fn rule(p: &ReviewPolicy, c: &Change) -> Option<ReviewRule> {
    rule_for(p, c, false).map(|(r, _)| r)
}

#[test]
fn each_rule_matches_only_past_its_threshold() {
    let units = policy(serde_json::json!({"decreaseOverUnits": 10}));
    assert_eq!(
        rule(&units, &update(40.0, 29.0)),
        Some(ReviewRule::DecreaseOverUnits)
    );
    assert_eq!(
        rule(&units, &update(40.0, 30.0)),
        None,
        "exactly 10 is not more"
    );
    assert_eq!(rule(&units, &update(10.0, 40.0)), None, "an increase");

    let percent = policy(serde_json::json!({"decreaseOverPercent": 20}));
    assert_eq!(
        rule(&percent, &update(100.0, 79.0)),
        Some(ReviewRule::DecreaseOverPercent)
    );
    assert_eq!(rule(&percent, &update(100.0, 80.0)), None);
    assert_eq!(
        rule(&percent, &create(5.0)),
        None,
        "no percentage of nothing"
    );

    let zero = policy(serde_json::json!({"zeroOrCancel": true}));
    assert_eq!(
        rule(&zero, &update(3.0, 0.0)),
        Some(ReviewRule::ZeroOrCancel)
    );
    let cancel = Change {
        op: HeldOp::Cancel,
        ..update(3.0, 0.0)
    };
    assert_eq!(rule(&zero, &cancel), Some(ReviewRule::ZeroOrCancel));
    assert_eq!(rule(&zero, &update(3.0, 1.0)), None);
    assert_eq!(
        rule(&policy(serde_json::json!({"zeroOrCancel": false})), &cancel),
        None
    );

    let first = policy(serde_json::json!({"firstAdditionOver": 50}));
    assert_eq!(
        rule(&first, &create(51.0)),
        Some(ReviewRule::FirstAdditionOver)
    );
    assert_eq!(rule(&first, &create(50.0)), None);
    assert_eq!(
        rule(&first, &update(1.0, 60.0)),
        None,
        "not a first addition"
    );

    let over = policy(serde_json::json!({"quantityOver": 500}));
    assert_eq!(
        rule(&over, &update(499.0, 501.0)),
        Some(ReviewRule::QuantityOver)
    );
    assert_eq!(rule(&over, &create(501.0)), Some(ReviewRule::QuantityOver));
    assert_eq!(
        rule(&over, &update(600.0, 500.0)),
        None,
        "down to 500 is not above it"
    );

    let newly = policy(serde_json::json!({"newlyMapped": true}));
    assert_eq!(
        rule_for(&newly, &create(1.0), true).map(|(r, _)| r),
        Some(ReviewRule::NewlyMapped)
    );
    assert_eq!(rule(&newly, &create(1.0)), None, "a customer mapped before");

    assert!(ReviewPolicy::default().is_off());
    assert_eq!(rule(&ReviewPolicy::default(), &update(500.0, 0.0)), None);
}

#[test]
fn one_change_names_the_first_rule_it_matches_and_says_why() {
    let all = policy(
        serde_json::json!({"decreaseOverUnits": 10, "decreaseOverPercent": 20,
        "zeroOrCancel": true, "quantityOver": 5}),
    );
    let (r, why) = rule_for(&all, &update(40.0, 0.0), false).unwrap();
    assert_eq!(r, ReviewRule::ZeroOrCancel);
    assert!(why.contains("from 40"), "{why}");
    let (r, why) = rule_for(&all, &update(40.0, 28.0), false).unwrap();
    assert_eq!(r, ReviewRule::DecreaseOverUnits);
    assert_eq!(why, "a decrease of 12 units (from 40 to 28), more than 10");
}

#[test]
fn thresholds_are_checked_with_what_to_fix() {
    for (json, key) in [
        (
            serde_json::json!({"decreaseOverUnits": -1}),
            "decreaseOverUnits",
        ),
        (
            serde_json::json!({"decreaseOverPercent": 150}),
            "decreaseOverPercent",
        ),
        (serde_json::json!({"quantityOver": -0.5}), "quantityOver"),
    ] {
        let err = policy(json).check().unwrap_err();
        assert!(
            err.contains(key) && err.contains("leave the key out"),
            "{err}"
        );
    }
    assert_eq!(
        policy(serde_json::json!({"decreaseOverPercent": 100})).check(),
        Ok(())
    );
    let err = serde_json::from_value::<ReviewPolicy>(serde_json::json!({"decreaseOver": 3}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("decreaseOver"), "{err}");
}

#[test]
fn ids_are_one_per_month_customer_and_product() {
    let nov: Month = "2026-11".parse().unwrap();
    let dec: Month = "2026-12".parse().unwrap();
    let id = held_change_id(nov, "t-1", IXA);
    assert!(id.starts_with("2026-11-") && id.len() == 20, "{id}");
    assert_eq!(id, held_change_id(nov, "t-1", &IXA.to_uppercase()));
    assert_ne!(id, held_change_id(dec, "t-1", IXA));
    assert_ne!(id, held_change_id(nov, "t-2", IXA));
    assert_ne!(id, held_change_id(nov, "t-1", "Sophos_Email"));
}

// ---------------------------------------------------------------- judge

fn plan(op: AdditionOp) -> ProductPlan {
    ProductPlan {
        identifier: IXA.into(),
        sophos_quantity: 0.0,
        op,
        adopted: false,
        drifted_from: None,
    }
}

fn updating(old: f64, new: f64) -> ProductPlan {
    plan(AdditionOp::Update {
        addition_id: 301,
        old,
        new,
    })
}

fn unchanged(quantity: f64) -> ProductPlan {
    plan(AdditionOp::Unchanged {
        addition_id: 301,
        quantity,
    })
}

fn ctx(p: &ReviewPolicy) -> Context<'_> {
    Context {
        policy: p,
        month: "2026-11".parse().unwrap(),
        run_id: "r2",
        now: Utc::now(),
        tenant_id: "t-1",
        tenant_name: "Acme",
        company_id: Some(101),
        company_identifier: Some("ACME"),
        agreement_id: 201,
        newly_mapped: false,
        lines: Vec::new(),
    }
}

fn units() -> ReviewPolicy {
    policy(serde_json::json!({"decreaseOverUnits": 10}))
}

/// What the first run holds for 40 -> 28.
fn first_hold(p: &ReviewPolicy) -> HeldChange {
    match judge(&ctx(p), IXA, Some(&updating(40.0, 28.0)), None) {
        Verdict::Hold { held, store: true } => held,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_proposal_is_held_once_then_left_alone() {
    let p = units();
    let h = first_hold(&p);
    assert_eq!(
        (h.status, h.version, h.rule),
        (HeldStatus::Held, 1, ReviewRule::DecreaseOverUnits)
    );
    assert_eq!(
        (h.current_quantity, h.proposed_quantity, h.addition_id),
        (40.0, 28.0, Some(301))
    );
    // The same proposal again: nothing to store.
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 28.0)), Some(&h)) {
        Verdict::Hold { store: false, .. } => {}
        other => panic!("{other:?}"),
    }
    // New usage updates the same change.
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 25.0)), Some(&h)) {
        Verdict::Hold { held, store: true } => {
            assert_eq!(
                (held.id.as_str(), held.proposed_quantity, held.version),
                (h.id.as_str(), 25.0, 2)
            );
            assert_eq!(held.created_at, h.created_at);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_approval_is_written_only_against_the_quantity_it_was_given_for() {
    let p = units();
    let approved = HeldChange {
        status: HeldStatus::Approved,
        ..first_hold(&p)
    };
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 28.0)), Some(&approved)) {
        Verdict::Write { held: Some(h) } => {
            assert_eq!(
                (h.status, h.applied_by_run.as_deref()),
                (HeldStatus::Applied, Some("r2"))
            );
        }
        other => panic!("{other:?}"),
    }
    // ConnectWise now holds 39: back to review, current updated.
    match judge(&ctx(&p), IXA, Some(&updating(39.0, 28.0)), Some(&approved)) {
        Verdict::Hold { held, store: true } => {
            assert_eq!(
                (held.status, held.current_quantity),
                (HeldStatus::Held, 39.0)
            );
            assert!(held.note.unwrap().contains("ConnectWise changed meanwhile"));
        }
        other => panic!("{other:?}"),
    }
    // Usage moved after the approval: a new proposal needs a new approval.
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 20.0)), Some(&approved)) {
        Verdict::Hold { held, .. } => assert!(held.note.unwrap().contains("usage changed")),
        other => panic!("{other:?}"),
    }
    // Already there (a run that died after writing): applied, nothing written.
    match judge(&ctx(&p), IXA, Some(&unchanged(28.0)), Some(&approved)) {
        Verdict::Quiet { close: Some(h) } => assert_eq!(h.status, HeldStatus::Applied),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rejected_proposal_is_not_made_again_but_a_new_one_is() {
    let p = units();
    let rejected = HeldChange {
        status: HeldStatus::Rejected,
        rejected_quantities: vec![28.0],
        ..first_hold(&p)
    };
    assert!(matches!(
        judge(&ctx(&p), IXA, Some(&updating(40.0, 28.0)), Some(&rejected)),
        Verdict::Rejected { .. }
    ));
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 20.0)), Some(&rejected)) {
        Verdict::Hold { held, store: true } => {
            assert_eq!(
                (held.status, held.proposed_quantity),
                (HeldStatus::Held, 20.0)
            );
            assert_eq!(
                held.rejected_quantities,
                [28.0],
                "the rejection is remembered"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn held_changes_close_by_themselves() {
    let p = units();
    let h = first_hold(&p);
    // Usage back at ConnectWise's quantity.
    match judge(&ctx(&p), IXA, Some(&unchanged(40.0)), Some(&h)) {
        Verdict::Quiet { close: Some(c) } => assert_eq!(c.status, HeldStatus::Closed),
        other => panic!("{other:?}"),
    }
    // The product has nothing planned at all any more.
    assert!(matches!(
        judge(&ctx(&p), IXA, None, Some(&h)),
        Verdict::Quiet { close: Some(_) }
    ));
    // An ambiguous product cannot be judged: the held change waits.
    let ambiguous = plan(AdditionOp::Ambiguous {
        addition_ids: vec![301, 302],
    });
    assert_eq!(
        judge(&ctx(&p), IXA, Some(&ambiguous), Some(&h)),
        Verdict::Quiet { close: None }
    );
    // A small change no rule holds is written and supersedes the held one.
    match judge(&ctx(&p), IXA, Some(&updating(40.0, 35.0)), Some(&h)) {
        Verdict::Write { held: Some(c) } => assert_eq!(c.status, HeldStatus::Closed),
        other => panic!("{other:?}"),
    }
    // A month later it is over.
    let dec: Month = "2026-12".parse().unwrap();
    let closed = outlived(&h, dec, "r9", Utc::now()).unwrap();
    assert_eq!(
        (closed.status, closed.version),
        (HeldStatus::Closed, h.version + 1)
    );
    assert!(outlived(&h, "2026-11".parse().unwrap(), "r9", Utc::now()).is_none());
}
