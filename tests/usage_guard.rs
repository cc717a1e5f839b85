//! The usage drop guard against the simulators: a usage report that lost most of
//! its customers lowers no quantity (increases and new additions still go
//! through), warns with both counts and ends partial; accepting the drop writes
//! the zeros; a small drop, a first run and a guard of 0 sync normally; the month
//! before is compared when this month has no run yet; a resumed invocation keeps
//! its run's decision. Assertions are on the simulator's final state and request log.

mod support;

use serde_json::{Value, json};
use sophos_cw_sim::generate::{self, generate};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::domain::month::Month;
use sophos_cw_sync::store::{RunStatus, Store};
use sophos_cw_sync::sync::engine::RunOptions;
use sophos_cw_sync::sync::report::{ProductAction, RunReport, WarningCode};
use std::collections::BTreeMap;
use support::app::{Harness, customer, demo_settings, generated_settings, tenant};
use support::sim_log::cw_log;

const TENANTS: usize = 20;

/// A generated partner of [`TENANTS`] customers with two products each, all
/// mapped (tenant `i`, 1-based, bills on agreement `200_000 + i`), and its tenant ids.
async fn start() -> (Harness, Vec<String>) {
    let scenario = generate(TENANTS, 2, 7);
    let ids = scenario
        .sophos
        .tenants
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    (Harness::with_scenario(scenario).await, ids)
}

/// The generated partner's settings with every product priced, so the only
/// warnings a run can have are the guard's (an unpriced item warns
/// `CATALOG_PRICE_ZERO`, a matter of its own: tests/catalog_setup.rs).
fn priced_settings() -> sophos_cw_sync::config::Settings {
    let mut s = generated_settings();
    s.prices = s
        .products
        .iter()
        .map(|p| {
            let price = sophos_cw_sync::config::Price {
                price: 4.5,
                cost: 2.9,
            };
            (p.clone(), price)
        })
        .collect();
    s
}

fn agreement(index: usize) -> i64 {
    200_000 + index as i64 + 1
}

/// Active additions by agreement: [(identifier, quantity)].
fn quantities(h: &Harness) -> BTreeMap<i64, Vec<(String, f64)>> {
    let mut map: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
    for a in h.additions() {
        if a["cancelledDate"].as_str().is_some_and(|d| !d.is_empty()) {
            continue;
        }
        map.entry(a["agreementId"].as_i64().unwrap())
            .or_default()
            .push((
                a["product"]["identifier"].as_str().unwrap_or("").to_owned(),
                a["quantity"].as_f64().unwrap(),
            ));
    }
    for v in map.values_mut() {
        v.sort_by(|a, b| a.0.cmp(&b.0));
    }
    map
}

/// Removes the November usage lines of `tenants`.
fn drop_usage(h: &Harness, tenants: &[String]) {
    h.sim.with_state(|s| {
        let lines = s.scenario.sophos.usage.get_mut(MONTH).unwrap();
        lines.retain(|l| !tenants.iter().any(|t| l["accountId"] == t.as_str()));
    });
}

/// Doubles the November usage of `tenant`.
fn double_usage(h: &Harness, tenant: &str) {
    h.sim.with_state(|s| {
        for l in s.scenario.sophos.usage.get_mut(MONTH).unwrap() {
            if l["accountId"] == tenant {
                for field in ["billableQuantity", "actualQuantity"] {
                    l[field] = json!(l[field].as_f64().unwrap() * 2.0);
                }
            }
        }
    });
}

/// Gives `tenant` usage of a product it had none of; its product code.
fn add_product(h: &Harness, tenant: &str) -> String {
    h.sim.with_state(|s| {
        let lines = s.scenario.sophos.usage.get_mut(MONTH).unwrap();
        let own: Vec<Value> = lines
            .iter()
            .filter(|l| l["accountId"] == tenant)
            .cloned()
            .collect();
        let (code, description) = generate::PRODUCTS
            .iter()
            .find(|(c, _)| !own.iter().any(|l| l["productCode"] == *c))
            .unwrap();
        let mut line = own[0].clone();
        line["productCode"] = json!(code);
        line["sku"] = json!(format!("{code}-SKU"));
        line["productDescription"] = json!(description);
        line["orderLineItemNumber"] = json!("9999");
        line["billableQuantity"] = json!(3);
        line["actualQuantity"] = json!(3);
        lines.push(line);
        (*code).to_owned()
    })
}

const MONTH: &str = generate::USAGE_MONTH;

/// The ConnectWise PATCHes of additions on `agreement_id` since the last clear.
fn patches_of(h: &Harness, agreement_id: i64) -> usize {
    cw_log(h)
        .iter()
        .filter(|r| r.method == "PATCH")
        .filter(|r| {
            r.path
                .contains(&format!("/agreements/{agreement_id}/additions"))
        })
        .count()
}

fn shrank(report: &RunReport) -> Vec<&sophos_cw_sync::sync::report::Warning> {
    report
        .warnings
        .iter()
        .filter(|w| w.code == WarningCode::UsageReportShrank)
        .collect()
}

fn accepting(h: &Harness) -> RunOptions {
    let mut opts = h.options(false);
    opts.accept_usage_drop = true;
    opts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_that_lost_80_percent_lowers_nothing_until_the_drop_is_accepted() {
    let (h, ids) = start().await;
    let settings = priced_settings();
    let first = h.run(&settings).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.customers_with_usage, Some(TENANTS as u64));
    assert!(first.warnings.is_empty() && !first.usage_drop_guarded);
    let before = quantities(&h);
    assert_eq!(before.len(), TENANTS);

    // 16 of the 20 customers vanish from the report; one of the others grows, one
    // more gets a new product.
    drop_usage(&h, &ids[..16]);
    double_usage(&h, &ids[16]);
    add_product(&h, &ids[17]);
    h.sim.clear_requests();
    let guarded = h.run(&settings).await;

    assert_eq!(guarded.status, RunStatus::Partial, "{guarded:#?}");
    assert!(guarded.usage_drop_guarded && !guarded.usage_drop_accepted);
    assert_eq!(guarded.customers_with_usage, Some(4));
    let warning = shrank(&guarded);
    assert_eq!(warning.len(), 1, "{:#?}", guarded.warnings);
    assert_eq!(warning[0].customers_with_usage, Some(4));
    assert_eq!(warning[0].previous_customers_with_usage, Some(20));
    assert_eq!(warning[0].customers_missing, Some(16));
    assert_eq!(
        warning[0].compared_run_id.as_deref(),
        Some(first.run_id.as_str())
    );
    assert!(
        warning[0].message.contains("16 of the 20"),
        "{}",
        warning[0].message
    );
    assert!(warning[0].advice.contains("acceptUsageDrop"));

    // Nothing lowered: no PATCH on the vanished customers' agreements, their
    // quantities as they were; each shows why.
    let after = quantities(&h);
    for (i, id) in ids.iter().enumerate().take(16) {
        assert_eq!(
            patches_of(&h, agreement(i)),
            0,
            "agreement {}",
            agreement(i)
        );
        assert_eq!(after[&agreement(i)], before[&agreement(i)]);
        let c = customer(&guarded, id);
        assert_eq!(c["status"], "synced", "{c}");
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .contains("USAGE_REPORT_SHRANK"),
            "{c}"
        );
        let products = c["products"].as_array().unwrap();
        assert_eq!(products.len(), 2, "{c}");
        for (p, (_, held)) in products.iter().zip(&before[&agreement(i)]) {
            assert_eq!(p["action"], "guarded", "{c}");
            assert_eq!(p["proposedQuantity"], 0.0);
            assert_eq!(p["previousQuantity"].as_f64(), Some(*held));
            assert_eq!(p["newQuantity"].as_f64(), Some(*held));
        }
    }
    // The increase and the new addition went through.
    let grown: Vec<f64> = after[&agreement(16)].iter().map(|(_, q)| *q).collect();
    let was: Vec<f64> = before[&agreement(16)]
        .iter()
        .map(|(_, q)| q * 2.0)
        .collect();
    assert_eq!(grown, was);
    assert_eq!(patches_of(&h, agreement(16)), 2);
    assert_eq!(
        after[&agreement(17)].len(),
        3,
        "{:?}",
        after[&agreement(17)]
    );
    assert_eq!(guarded.writes, 3);
    let stored = h.store.get_run(&guarded.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Partial);
    assert_eq!(stored.report["usageDropGuarded"], true);
    assert_eq!(stored.report["warnings"][0]["code"], "USAGE_REPORT_SHRANK");

    // Still short: the guarded run is no yardstick, the first one is compared again.
    let again = h.run(&settings).await;
    assert!(again.usage_drop_guarded);
    assert_eq!(
        shrank(&again)[0].compared_run_id.as_deref(),
        Some(first.run_id.as_str())
    );
    assert_eq!(again.writes, 0);

    // Accepted: the zeros are written.
    h.sim.clear_requests();
    let accepted = h.run_with(&settings, accepting(&h)).await.unwrap();
    assert_eq!(accepted.status, RunStatus::Succeeded, "{accepted:#?}");
    assert!(accepted.usage_drop_accepted && !accepted.usage_drop_guarded);
    assert!(accepted.warnings.is_empty(), "{:#?}", accepted.warnings);
    let zeroed = quantities(&h);
    for (i, id) in ids.iter().enumerate().take(16) {
        assert_eq!(patches_of(&h, agreement(i)), 2);
        assert!(zeroed[&agreement(i)].iter().all(|(_, q)| *q == 0.0));
        let c = customer(&accepted, id);
        assert!(
            c["products"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["action"] == "zero")
        );
    }
    assert_eq!(accepted.writes, 32);

    // The accepted run is the new yardstick: the next run has nothing to hold back.
    let next = h.run(&settings).await;
    assert_eq!(next.status, RunStatus::Succeeded);
    assert!(!next.usage_drop_guarded && next.warnings.is_empty());
    assert_eq!(next.writes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_what_the_guard_holds_back_and_writes_nothing() {
    let (h, ids) = start().await;
    let settings = priced_settings();
    h.run(&settings).await;
    drop_usage(&h, &ids[..16]);
    h.sim.clear_requests();
    let preview = h.run_with(&settings, h.options(true)).await.unwrap();
    assert!(preview.usage_drop_guarded);
    assert_eq!(shrank(&preview).len(), 1);
    assert_eq!(h.cw_writes(), 0);
    let c = customer(&preview, &ids[0]);
    assert!(
        c["products"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] == "guarded")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_percent_drop_syncs_normally() {
    let (h, ids) = start().await;
    let settings = priced_settings();
    h.run(&settings).await;
    drop_usage(&h, &ids[..1]);
    h.sim.clear_requests();
    let report = h.run(&settings).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert!(!report.usage_drop_guarded && report.warnings.is_empty());
    assert_eq!(report.customers_with_usage, Some(19));
    assert_eq!(patches_of(&h, agreement(0)), 2);
    assert!(quantities(&h)[&agreement(0)].iter().all(|(_, q)| *q == 0.0));
    let c = customer(&report, &ids[0]);
    assert!(c["reason"].is_null(), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_run_ever_has_nothing_to_compare_and_syncs_normally() {
    // The demo's Mu (12) has an addition of 7 and no usage: zeroed on the first run.
    let h = Harness::start().await;
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
    let report = h.run(&demo_settings()).await;
    assert!(!report.usage_drop_guarded);
    assert!(shrank(&report).is_empty(), "{:#?}", report.warnings);
    assert!(report.customers_with_usage.is_some_and(|n| n > 0));
    let mu = customer(&report, &tenant(12));
    assert_eq!(mu["products"][0]["action"], "zero");
    assert_eq!(h.additions_of(212)[0]["quantity"], 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guard_of_zero_is_off() {
    let (h, ids) = start().await;
    let settings = Settings {
        usage_drop_guard: 0.0,
        ..priced_settings()
    };
    h.run(&settings).await;
    drop_usage(&h, &ids[..16]);
    h.sim.clear_requests();
    let report = h.run(&settings).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:#?}");
    assert!(!report.usage_drop_guarded && report.warnings.is_empty());
    let zeroed = quantities(&h);
    for i in 0..16 {
        assert_eq!(patches_of(&h, agreement(i)), 2);
        assert!(zeroed[&agreement(i)].iter().all(|(_, q)| *q == 0.0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_run_of_a_month_compares_with_the_month_before() {
    let (h, ids) = start().await;
    let settings = priced_settings();
    let november = h.run(&settings).await;
    // December's report so far lists 4 of the 20 customers.
    h.sim.with_state(|s| {
        let lines: Vec<Value> = s.scenario.sophos.usage[MONTH]
            .iter()
            .filter(|l| ids[16..].iter().any(|t| l["accountId"] == t.as_str()))
            .cloned()
            .collect();
        s.scenario.sophos.usage.insert("2026-12".into(), lines);
    });
    h.sim.clear_requests();
    let december = RunOptions::new("2026-12".parse::<Month>().unwrap(), false, "test");
    let report = h.run_with(&settings, december).await.unwrap();
    assert!(report.usage_drop_guarded, "{report:#?}");
    assert_eq!(report.status, RunStatus::Partial);
    let warning = shrank(&report);
    assert_eq!(
        warning[0].compared_run_id.as_deref(),
        Some(november.run_id.as_str())
    );
    assert_eq!(warning[0].customers_missing, Some(16));
    for i in 0..16 {
        assert_eq!(patches_of(&h, agreement(i)), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_invocation_keeps_its_runs_decision() {
    let (h, ids) = start().await;
    let settings = priced_settings();
    h.run(&settings).await;
    drop_usage(&h, &ids[..16]);
    // The first invocation is out of time after one customer.
    let mut opts = h.options(false);
    opts.customers_in_progress = Some(1);
    opts.deadline = Some(tokio::time::Instant::now());
    let first = h.run_with(&settings, opts).await.unwrap();
    assert_eq!(first.status, RunStatus::Incomplete, "{first:#?}");
    assert!(first.usage_drop_guarded);
    // A threshold the drop stays under would give another answer if asked again.
    let looser = Settings {
        usage_drop_guard: 90.0,
        ..settings.clone()
    };
    h.sim.clear_requests();
    let resumed = RunOptions::resuming(first.clone(), "test").unwrap();
    let rest = h.run_with(&looser, resumed).await.unwrap();
    assert_eq!(rest.run_id, first.run_id);
    assert_eq!(rest.status, RunStatus::Partial, "{rest:#?}");
    assert!(rest.usage_drop_guarded);
    assert_eq!(shrank(&rest).len(), 1);
    for i in 0..16 {
        assert_eq!(
            patches_of(&h, agreement(i)),
            0,
            "agreement {}",
            agreement(i)
        );
    }
    let guarded = rest
        .customers
        .iter()
        .flat_map(|c| &c.products)
        .filter(|p| p.action == ProductAction::Guarded)
        .count();
    assert!(guarded >= 30, "{rest:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn review_rules_judge_what_the_guard_lets_through() {
    let (h, ids) = start().await;
    let mut s = serde_json::to_value(priced_settings()).unwrap();
    s["review"] = json!({"zeroOrCancel": true});
    let settings: Settings = serde_json::from_value(s).unwrap();
    h.run(&settings).await;
    drop_usage(&h, &ids[..16]);
    double_usage(&h, &ids[16]);

    // Guarded: the zeros are held back before the review, so none is proposed;
    // the increase is judged (no rule holds it) and written.
    h.sim.clear_requests();
    let guarded = h.run(&settings).await;
    assert!(guarded.usage_drop_guarded);
    let open = h.store.list_held_changes(true, 100, None).await.unwrap();
    assert!(open.items.is_empty(), "{:#?}", open.items);
    assert_eq!(patches_of(&h, agreement(16)), 2);
    assert_eq!(
        customer(&guarded, &ids[0])["products"][0]["action"],
        "guarded"
    );

    // Accepted: the zeros reach the review, which holds them; still nothing lowered.
    h.sim.clear_requests();
    let accepted = h.run_with(&settings, accepting(&h)).await.unwrap();
    assert!(!accepted.usage_drop_guarded);
    assert_eq!(accepted.customer_counts.held, 32, "{accepted:#?}");
    assert_eq!(
        customer(&accepted, &ids[0])["products"][0]["action"],
        "hold"
    );
    for i in 0..16 {
        assert_eq!(patches_of(&h, agreement(i)), 0);
    }
}
