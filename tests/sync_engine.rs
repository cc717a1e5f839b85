//! The sync cycle against the simulators: mapping, catalog, additions, errors,
//! idempotency. Assertions are on the simulator's final state and request log.

mod support;

use serde_json::Value;
use sophos_cw_sync::config::ZeroUsage;
use sophos_cw_sync::store::{MappingKind, RunStatus, Store};
use sophos_cw_sync::sync::engine::RunOptions;
use sophos_cw_sync::sync::report::{CustomerState, ErrorCode, ProductAction, RunReport};
use support::app::{Harness, customer, demo_settings, settings_with, tenant};

fn qty(v: &Value) -> f64 {
    v["quantity"].as_f64().unwrap()
}

fn active(additions: Vec<Value>) -> Vec<Value> {
    additions
        .into_iter()
        .filter(|a| a["cancelledDate"].as_str().is_none_or(str::is_empty))
        .collect()
}

fn codes(c: &Value) -> Vec<String> {
    c["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_cycle_maps_creates_updates_and_reports_every_case() {
    let h = Harness::start().await;
    let report = h.run(&demo_settings()).await;
    assert_eq!(report.status, RunStatus::Partial, "{report:#?}");

    // Catalog: the existing item is found by identifier, the missing one created once.
    let catalog = h.catalog();
    let xdr: Vec<_> = catalog
        .iter()
        .filter(|c| c["identifier"] == "Sophos_Intercept_X_Advanced_XDR")
        .collect();
    assert_eq!(xdr.len(), 1);
    assert_eq!(
        catalog
            .iter()
            .filter(|c| c["identifier"] == "Sophos_Intercept_X_Advanced")
            .count(),
        1
    );
    assert_eq!(catalog.len(), 2, "only selected products are created");
    let ixa = catalog
        .iter()
        .find(|c| c["identifier"] == "Sophos_Intercept_X_Advanced")
        .unwrap();
    assert_eq!(
        ixa["customerDescription"],
        "Endpoint protection (edited by the partner)"
    );
    assert_eq!(ixa["price"], 4.5);

    // Acme: exact name; 30 + 12 aggregated across order lines; XDR created too.
    let acme = active(h.additions_of(201));
    assert_eq!(acme.len(), 2);
    let acme_ixa = acme.iter().find(|a| a["product"]["id"] == 901).unwrap();
    assert_eq!(qty(acme_ixa), 42.0);
    assert_eq!(acme_ixa["billCustomer"], "Billable");
    assert_eq!(acme_ixa["effectiveDate"], "2026-11-01T00:00:00Z");
    let acme_xdr = acme
        .iter()
        .find(|a| a["product"]["id"] == xdr[0]["id"])
        .unwrap();
    assert_eq!(qty(acme_xdr), 5.0);
    assert!(
        h.additions_of(209).is_empty(),
        "other agreement types untouched"
    );
    let c = customer(&report, &tenant(1));
    assert_eq!(c["status"], "synced");
    assert_eq!(c["companyId"], 101);
    assert_eq!(c["companyIdentifier"], "AcmeLtd");
    assert_eq!(c["companyName"], "Acme Ltd");
    assert_eq!(c["agreementId"], 201);
    assert_eq!(c["agreementType"], "Sophos MSP");

    // Beta: trimmed, case-insensitive name; existing addition updated 5 -> 8; unknown code reported.
    let beta = h.additions_of(202);
    assert_eq!(beta.len(), 1);
    assert_eq!(qty(&beta[0]), 8.0);
    assert!(
        h.additions_of(203).is_empty(),
        "cancelled agreement untouched"
    );
    let c = customer(&report, &tenant(2));
    assert_eq!(c["status"], "error");
    assert_eq!(codes(&c), ["PRODUCT_UNMAPPED"]);
    // The company's name as ConnectWise spells it, not the Sophos customer's.
    assert_eq!(c["companyName"], "  beta corp ");
    let p = &c["products"][0];
    assert_eq!(
        (p["previousQuantity"].as_f64(), p["newQuantity"].as_f64()),
        (Some(5.0), Some(8.0))
    );
    assert_eq!(p["action"], "update");

    // Mapping problems: unmapped with the code and advice; nothing written for them.
    for (n, code) in [
        (3, "COMPANY_NOT_FOUND"),
        (4, "COMPANY_AMBIGUOUS"),
        (5, "AGREEMENT_NOT_FOUND"),
        (6, "AGREEMENT_AMBIGUOUS"),
        (10, "COMPANY_NOT_FOUND"),
    ] {
        let c = customer(&report, &tenant(n));
        assert_eq!(c["status"], "unmapped", "tenant {n}");
        assert_eq!(codes(&c), [code], "tenant {n}");
        assert!(c["errors"][0]["advice"].as_str().unwrap().len() > 40);
    }
    // An agreement problem still names the company that was found.
    let epsilon = customer(&report, &tenant(5));
    assert_eq!(epsilon["companyId"], 105);
    assert_eq!(epsilon["companyName"], "Epsilon GmbH");
    assert!(
        h.additions_of(205).is_empty()
            && h.additions_of(206).is_empty()
            && h.additions_of(207).is_empty()
    );

    // Ignored with reasons.
    for (n, word) in [(7, "trial"), (8, "term"), (9, "not activated")] {
        let c = customer(&report, &tenant(n));
        assert_eq!(c["status"], "ignored");
        assert!(c["reason"].as_str().unwrap().contains(word), "{c}");
    }

    // Lambda: two additions of one product: reported, neither touched.
    let lambda = h.additions_of(211);
    assert_eq!(lambda.iter().map(qty).collect::<Vec<_>>(), [7.0, 7.0]);
    assert_eq!(
        codes(&customer(&report, &tenant(11))),
        ["ADDITION_AMBIGUOUS"]
    );

    // Mu: no usage this month -> zeroed (zeroUsage = zero).
    assert_eq!(qty(&h.additions_of(212)[0]), 0.0);
    assert_eq!(
        customer(&report, &tenant(12))["products"][0]["action"],
        "zero"
    );

    // The firewall line without a customer is reported, not guessed.
    assert_eq!(report.unassigned_usage.len(), 1);
    assert_eq!(
        report.unassigned_usage[0].product_code.as_deref(),
        Some("XGS-FW-MSP")
    );

    // Writes: 1 catalog item, 3 new additions (Acme x2, Nu), 2 PATCHes (Beta, Mu).
    assert_eq!(report.writes, 6);
    assert_eq!(h.cw_writes(), 6);
    assert!(report.api_calls.sophos >= 4 && report.api_calls.connectwise >= 6);

    // Audit trail: one entry per write, with old and new quantities, and one for
    // the existing catalog item the store now remembers.
    let audit = h.store.list_audit(100, Some(&report.run_id)).await.unwrap();
    assert_eq!(audit.len(), 7, "{audit:#?}");
    let writes: Vec<_> = audit
        .iter()
        .filter(|a| a.action != "adoptCatalogItem")
        .collect();
    assert_eq!(writes.len(), 6, "{audit:#?}");
    let beta_update = audit
        .iter()
        .find(|a| a.action == "updateAddition" && a.agreement_id == Some(202))
        .unwrap();
    assert_eq!(
        (beta_update.old_quantity, beta_update.new_quantity),
        (Some(5.0), Some(8.0))
    );

    // Second run: nothing to do, zero ConnectWise writes.
    h.sim.clear_requests();
    let again = h.run(&demo_settings()).await;
    assert_eq!(again.writes, 0);
    assert_eq!(h.cw_writes(), 0, "{:?}", h.sim.requests());
    assert_eq!(
        customer(&again, &tenant(2))["products"][0]["action"],
        "unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_mapping_wins_and_an_agreement_serves_one_tenant() {
    let h = Harness::start().await;
    let cli = h.cli(&["map", &tenant(10), "--company", "110"], &[]).await;
    assert!(cli.status.success(), "{cli:?}");
    let report = h.run(&demo_settings()).await;
    let kappa = customer(&report, &tenant(10));
    assert_eq!(kappa["status"], "synced");
    assert_eq!(kappa["agreementId"], 210);
    assert_eq!(qty(&h.additions_of(210)[0]), 15.0);

    // Pin Kappa onto Nu's agreement: the manual mapping keeps it, Nu is refused.
    let h = Harness::start().await;
    h.cli(
        &["map", &tenant(10), "--company", "113", "--agreement", "213"],
        &[],
    )
    .await;
    let report = h.run(&demo_settings()).await;
    assert_eq!(codes(&customer(&report, &tenant(13))), ["AGREEMENT_SHARED"]);
    assert_eq!(customer(&report, &tenant(10))["status"], "synced");
    let on_213 = h.additions_of(213);
    assert_eq!(on_213.len(), 1);
    assert_eq!(qty(&on_213[0]), 15.0, "Kappa's usage, not Nu's");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_ignored_tenant_is_left_alone() {
    let h = Harness::start().await;
    assert!(
        h.cli(&["map", &tenant(1), "--ignore"], &[])
            .await
            .status
            .success()
    );
    let m = h.store.get_mapping(&tenant(1)).await.unwrap().unwrap();
    assert_eq!(m.kind, MappingKind::Ignored);
    let report = h.run(&demo_settings()).await;
    let acme = customer(&report, &tenant(1));
    assert_eq!(acme["status"], "ignored");
    assert!(acme["reason"].as_str().unwrap().contains("operator"));
    assert!(h.additions_of(201).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_usage_keep_and_cancel() {
    let h = Harness::start().await;
    h.run(&settings_with(ZeroUsage::Keep)).await;
    assert_eq!(qty(&h.additions_of(212)[0]), 7.0);

    let h = Harness::start().await;
    let report = h.run(&settings_with(ZeroUsage::Cancel)).await;
    let mu = &h.additions_of(212)[0];
    assert_eq!(mu["cancelledDate"], "2026-11-30T00:00:00Z");
    assert_eq!(qty(mu), 7.0);
    assert_eq!(
        customer(&report, &tenant(12))["products"][0]["action"],
        "cancel"
    );
    h.sim.clear_requests();
    h.run(&settings_with(ZeroUsage::Cancel)).await;
    assert_eq!(
        h.cw_writes(),
        0,
        "a cancelled addition is not cancelled again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_addition_is_adopted_and_lost_one_recreated_once() {
    let h = Harness::start().await;
    h.run(&demo_settings()).await;
    // The store forgets everything it remembered about additions.
    for r in h.store.list_additions().await.unwrap() {
        h.store
            .delete_addition(&r.tenant_id, &r.identifier)
            .await
            .unwrap();
    }
    h.sim.clear_requests();
    let report = h.run(&demo_settings()).await;
    assert_eq!(h.cw_writes(), 0, "adopted, not duplicated");
    assert_eq!(
        customer(&report, &tenant(1))["products"][0]["action"],
        "adopt"
    );
    assert_eq!(active(h.additions_of(201)).len(), 2);
    assert_eq!(
        h.store
            .list_additions()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.tenant_id == tenant(1))
            .count(),
        2
    );

    // ConnectWise loses Acme's Intercept X addition: it is created again, once.
    h.sim.with_state(|s| {
        s.collection_mut("additions")
            .retain(|a| !(a["agreementId"] == 201 && a["product"]["id"] == 901))
    });
    h.run(&demo_settings()).await;
    h.run(&demo_settings()).await;
    let ixa: Vec<_> = active(h.additions_of(201))
        .into_iter()
        .filter(|a| a["product"]["id"] == 901)
        .collect();
    assert_eq!(ixa.len(), 1);
    assert_eq!(qty(&ixa[0]), 42.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_without_usage_data_changes_nothing() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.month = "2026-12".into();
    let mut opts = h.options(false);
    opts.month = "2026-12".parse().unwrap();
    let report = h.run_with(&settings, opts).await.unwrap();
    assert!(!report.usage_available);
    assert_eq!(
        h.cw_writes(),
        1,
        "only the missing catalog item: {:?}",
        h.sim.requests()
    );
    assert_eq!(
        qty(&h.additions_of(212)[0]),
        7.0,
        "unknown usage is not zero usage"
    );
    assert_eq!(qty(&h.additions_of(202)[0]), 5.0);
    let usage_404 = h
        .sim
        .requests()
        .iter()
        .any(|r| r.path.contains("/billing/usage/2026/12") && r.status == 404);
    assert!(usage_404);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_selected_writes_nothing() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.products.clear();
    let report = h.run(&settings).await;
    assert_eq!(h.cw_writes(), 0);
    assert!(report.catalog.is_empty());
    assert_eq!(customer(&report, &tenant(1))["status"], "synced");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_writes_nothing_anywhere() {
    let h = Harness::start().await;
    let report = h.run_with(&demo_settings(), h.options(true)).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(h.cw_writes(), 0);
    assert_eq!(report.writes, 0);
    let acme = customer(&report, &tenant(1));
    let actions: Vec<_> = acme["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["action"].clone(), p["newQuantity"].clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("create".into(), 42.0.into()),
            ("create".into(), 5.0.into())
        ]
    );
    let beta = customer(&report, &tenant(2));
    assert_eq!(
        (
            beta["products"][0]["previousQuantity"].as_f64(),
            beta["products"][0]["newQuantity"].as_f64()
        ),
        (Some(5.0), Some(8.0))
    );
    assert!(
        report
            .catalog
            .iter()
            .any(|c| c.identifier == "Sophos_Intercept_X_Advanced_XDR"
                && format!("{:?}", c.action) == "Create")
    );
    // Nothing in the store either.
    assert!(h.store.list_runs(10, None).await.unwrap().is_empty());
    assert!(h.store.list_audit(10, None).await.unwrap().is_empty());
    assert!(h.store.list_mappings().await.unwrap().is_empty());
    assert!(
        h.store
            .list_customer_statuses(10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_code_is_reported_with_its_line_details_and_the_settings_line_to_add() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    // Even selecting every identifier maps nothing by description.
    settings.products = sophos_cw_sync::domain::products::PRODUCTS
        .iter()
        .map(|(i, _)| (*i).to_owned())
        .collect();
    let report = h.run(&settings).await;
    let beta = customer(&report, &tenant(2));
    assert_eq!(beta["status"], "error");
    let unmapped: Vec<&Value> = beta["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["code"] == "PRODUCT_UNMAPPED")
        .collect();
    assert_eq!(unmapped.len(), 1, "{beta}");
    let e = unmapped[0];
    // What the demo's usage line says (sim/fixtures/demo.json, ORD-1014).
    assert_eq!(e["product"]["productCode"], "ZZUNKNOWN-MSP");
    assert_eq!(
        e["product"]["productDescription"],
        "A product with no catalog mapping"
    );
    assert_eq!(e["product"]["sku"], "ZZUNKNOWN-MSP-SKU");
    assert_eq!(e["product"]["productGroup"], "User");
    assert_eq!(e["product"]["quantity"], 3.0);
    let message = e["message"].as_str().unwrap();
    for part in [
        "ZZUNKNOWN-MSP",
        "A product with no catalog mapping",
        "ZZUNKNOWN-MSP-SKU",
        "User",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    let advice = e["advice"].as_str().unwrap();
    assert!(
        advice.contains(r#""productCodes": {"ZZUNKNOWN-MSP": "<identifier>"}"#),
        "{advice}"
    );
    // Nothing written for it: Beta's agreement holds only its Intercept X
    // Advanced addition, and no run wrote an entry naming the code.
    let beta_additions = h.additions_of(202);
    assert_eq!(beta_additions.len(), 1, "{beta_additions:#?}");
    assert_eq!(beta_additions[0]["id"], 301);
    let products: Vec<&str> = beta["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(products, ["Sophos_Intercept_X_Advanced"]);
    // The run lists the code once, with the line's details, whoever has it.
    let listed: Vec<&str> = report
        .unmapped_codes
        .iter()
        .map(|p| p.product_code.as_str())
        .collect();
    assert_eq!(listed, ["ZZUNKNOWN-MSP"], "{:#?}", report.unmapped_codes);
    assert_eq!(
        report.unmapped_codes[0].sku.as_deref(),
        Some("ZZUNKNOWN-MSP-SKU")
    );
    assert_eq!(report.unmapped_codes_omitted, 0);
    let audit = h.store.list_audit(1000, None).await.unwrap();
    assert!(
        audit
            .iter()
            .all(|a| a.tenant_id.as_deref() != Some(tenant(2).as_str())
                || a.identifier == "Sophos_Intercept_X_Advanced"),
        "{audit:#?}"
    );
    // The same details in the stored status (`status --json`).
    let beta_status = h
        .store
        .get_customer_status(&tenant(2))
        .await
        .unwrap()
        .expect("Beta's status is stored");
    assert_eq!(
        beta_status.report["errors"][0]["product"]["sku"],
        "ZZUNKNOWN-MSP-SKU"
    );
}

/// A run carried on over several invocations (as Lambda does near its deadline)
/// still lists the unknown code, though the invocation that met Beta was not the
/// last: each one rebuilds the list from the customers stored before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_run_keeps_the_unmapped_codes_its_earlier_invocations_met() {
    let h = Harness::start().await;
    let settings = demo_settings();
    // A deadline already due: an invocation does its first customer, then stops
    // taking new ones and ends incomplete (no waiting).
    let one_customer = |mut opts: RunOptions| {
        opts.deadline = Some(tokio::time::Instant::now());
        opts.customers_in_progress = Some(1);
        opts
    };
    let mut report = h
        .run_with(&settings, one_customer(h.options(false)))
        .await
        .expect("first invocation");
    let mut invocations = 1;
    let mut beta_in = None;
    loop {
        if report.customers.iter().any(|c| c.tenant_id == tenant(2)) {
            beta_in = Some(invocations);
        }
        if report.status != RunStatus::Incomplete {
            break;
        }
        assert!(invocations < 50, "each invocation makes progress");
        // Resumed from the stored summary, as the service does.
        let stored = h.store.get_run(&report.run_id).await.unwrap().unwrap();
        let previous: RunReport = serde_json::from_value(stored.report).unwrap();
        let opts = RunOptions::resuming(previous, "test").unwrap();
        report = h
            .run_with(&settings, one_customer(opts))
            .await
            .expect("next invocation");
        invocations += 1;
    }
    assert_eq!(
        beta_in,
        Some(2),
        "one customer per invocation, in Sophos order"
    );
    assert!(invocations > 2, "Beta's invocation was not the last");
    assert_eq!(report.status, RunStatus::Partial, "{report:#?}");
    assert_eq!(report.customer_counts.total as usize, invocations);
    let listed: Vec<&str> = report
        .unmapped_codes
        .iter()
        .map(|p| p.product_code.as_str())
        .collect();
    assert_eq!(listed, ["ZZUNKNOWN-MSP"]);
    let stored = h.store.get_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(
        stored.report["unmappedCodes"],
        serde_json::to_value(&report.unmapped_codes).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_show_the_code_table_with_its_evidence() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings
        .product_codes
        .insert("AP6-840-SUP-MSP".into(), "Sophos_Wireless_Standard".into());
    let path = h.dir.path().join("settings.json");
    std::fs::write(&path, serde_json::to_string(&settings).unwrap()).unwrap();

    let out = h.cli(&["settings", "--json"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["agreementType"], "Sophos MSP", "the settings document");
    let table = json["productCodeTable"].as_array().expect("the code table");
    assert_eq!(table.len(), 18, "{table:#?}");
    let row = |code: &str| {
        table
            .iter()
            .find(|r| r["productCode"] == code)
            .unwrap_or_else(|| panic!("{code}"))
            .clone()
    };
    let cixa = row("CIXA-MSP");
    assert_eq!(cixa["identifier"], "Sophos_Intercept_X_Advanced");
    assert_eq!(cixa["source"], "builtIn");
    assert_eq!(cixa["evidence"]["codeConfidence"], "confirmed");
    assert_eq!(cixa["evidence"]["mappingConfidence"], "likely");
    assert!(
        cixa["evidence"]["seenIn"]
            .as_str()
            .unwrap()
            .contains("Postman")
    );
    let xg = row("xg_email_std");
    assert!(xg["identifier"].is_null(), "known but unmapped: {xg}");
    assert!(xg["evidence"]["mappingConfidence"].is_null());
    let ap = row("AP6-840-SUP-MSP");
    assert_eq!(ap["identifier"], "Sophos_Wireless_Standard");
    assert_eq!(ap["source"], "settings");

    let out = h.cli(&["settings"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "CIXA-MSP",
        "code confirmed",
        "mapping likely",
        "xg_email_std",
        "(not mapped)",
        "seen in: xasz/ISCPP",
        "or Sophos_XDR_30",
    ] {
        assert!(text.contains(part), "{part} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_are_reported_for_the_error_codes() {
    let h = Harness::start().await;
    let report = h.run(&demo_settings()).await;
    let states: Vec<CustomerState> = report.customers.iter().map(|c| c.status).collect();
    assert!(states.contains(&CustomerState::Synced) && states.contains(&CustomerState::Error));
    for c in &report.customers {
        for e in &c.errors {
            assert_eq!(e.advice, e.expected_advice());
        }
    }
    let stored = h.store.list_customer_statuses(500, None).await.unwrap();
    assert_eq!(stored.items.len(), report.customers.len());
    let _ = (ErrorCode::CwPermission, ProductAction::Skip);
}

/// `status` and `runs <id>` read the store page by page (more customers than one
/// page) and still print every customer once, as one valid JSON document.
#[tokio::test(flavor = "multi_thread")]
async fn cli_status_and_run_detail_read_every_customer_page_by_page() {
    let tenants = 450; // more than two of the CLI's pages of 200
    let h = Harness::with_scenario(sophos_cw_sim::generate::generate(tenants, 1, 5)).await;
    let mut settings = demo_settings();
    settings.products.clear(); // map and report only: quick, and nothing is written
    settings.month = sophos_cw_sim::generate::USAGE_MONTH.into();
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&settings).unwrap(),
    )
    .unwrap();
    let sync = h.cli(&["sync", "--json"], &[]).await;
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let report: Value = serde_json::from_slice(&sync.stdout).unwrap();
    assert_eq!(report["customers"].as_array().unwrap().len(), tenants);
    assert_eq!(report["customerCounts"]["total"], tenants);
    let run_id = report["runId"].as_str().unwrap().to_owned();
    let mut expected: Vec<String> = report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tenantId"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    let ids = |customers: &Value| -> Vec<String> {
        customers
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["tenantId"].as_str().unwrap().to_owned())
            .collect()
    };

    let status = h.cli(&["status", "--json"], &[]).await;
    assert!(status.status.success());
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(ids(&status), expected, "every customer once, by tenant id");

    let detail = h.cli(&["runs", &run_id, "--json"], &[]).await;
    assert!(
        detail.status.success(),
        "{}",
        String::from_utf8_lossy(&detail.stderr)
    );
    let detail: Value = serde_json::from_slice(&detail.stdout).unwrap();
    assert_eq!(detail["runId"], run_id.as_str());
    assert_eq!(detail["report"]["customerCounts"]["total"], tenants);
    assert_eq!(ids(&detail["customers"]), expected);

    let table = h.cli(&["runs", &run_id], &[]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains(&format!("customers: {tenants} (")), "{text}");
    assert_eq!(text.matches("agreement type").count(), 1, "one header");
    assert!(expected.iter().all(|t| text.contains(t.as_str())));

    let missing = h.cli(&["runs", "r-none"], &[]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run \"r-none\""));
}
