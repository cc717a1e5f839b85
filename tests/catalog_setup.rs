//! The catalog half of the cycle against the simulators: setup references resolved
//! the way ConnectWise scopes them (a subcategory within its category, inactive
//! records never chosen), a catalog create whose answer was lost verified and
//! adopted or repeated in the same run, and a partner's own catalog items used and
//! never created. Assertions are on the simulator's final state and request log.

mod support;

use serde_json::{Value, json};
use sophos_cw_sim::{Fault, FaultKind, LoggedRequest, Scenario};
use sophos_cw_sync::config::{Price, Secrets, Settings};
use sophos_cw_sync::http::{ApiCounters, HttpPolicy};
use sophos_cw_sync::store::Store;
use sophos_cw_sync::sync::report::{CatalogAction, ErrorCode, ErrorReport, RunReport, WarningCode};
use sophos_cw_sync::wiring::build_clients_with_policy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::app::{Harness, customer, demo_settings, tenant};
use support::sim_log::{cw_fault, cw_log, quick_policy};

const IXA_ID: &str = "Sophos_Intercept_X_Advanced";
const XDR_ID: &str = "Sophos_Intercept_X_Advanced_XDR";
/// The demo's existing Intercept X Advanced catalog item.
const IXA: i64 = 901;

// ------------------------------------------------------------------ helpers

/// Short backoff waits, and `timeout` per request.
fn policy(timeout: Duration) -> HttpPolicy {
    quick_policy(timeout)
}

/// One cycle in-process, with clients using `policy`.
async fn run_with_policy(h: &Harness, settings: &Settings, policy: HttpPolicy) -> RunReport {
    h.run_with_policy(settings, h.options(false), policy)
        .await
        .expect("cycle runs")
}

async fn run(h: &Harness, settings: &Settings) -> RunReport {
    run_with_policy(h, settings, policy(Duration::from_secs(30))).await
}

fn requests_to(h: &Harness, method: &str, path_ends: &str) -> Vec<LoggedRequest> {
    cw_log(h)
        .into_iter()
        .filter(|r| r.method == method && r.path.ends_with(path_ends))
        .collect()
}

/// Writes (non-GET) to the catalog, items included.
fn catalog_writes(h: &Harness) -> Vec<LoggedRequest> {
    cw_log(h)
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.contains("/procurement/catalog"))
        .collect()
}

/// The decoded `conditions` of a logged request.
fn conditions(r: &LoggedRequest) -> String {
    let url = reqwest::Url::parse(&format!("http://sim/?{}", r.query)).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "conditions")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn items_with(h: &Harness, identifier: &str) -> Vec<Value> {
    h.catalog()
        .into_iter()
        .filter(|c| c["identifier"] == identifier)
        .collect()
}

fn the_item(h: &Harness, identifier: &str) -> Value {
    let items = items_with(h, identifier);
    assert_eq!(items.len(), 1, "one item {identifier}: {:#?}", h.catalog());
    items[0].clone()
}

fn catalog_entry(report: &RunReport, identifier: &str) -> Value {
    let entry = report
        .catalog
        .iter()
        .find(|c| c.identifier == identifier)
        .unwrap_or_else(|| panic!("{identifier} in {:?}", report.catalog));
    serde_json::to_value(entry).unwrap()
}

fn errors_of(report: &RunReport, code: ErrorCode) -> Vec<ErrorReport> {
    report
        .errors
        .iter()
        .filter(|e| e.code == code)
        .cloned()
        .collect()
}

fn codes(report: &RunReport, n: u32) -> Vec<String> {
    customer(report, &tenant(n))["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

fn with_subcategory(mut scenario: Scenario, record: Value) -> Scenario {
    scenario.connectwise.subcategories.push(record);
    scenario
}

/// What a run left in ConnectWise and reported, independent of ids: per tenant
/// the status and error codes, per agreement the active additions as
/// (catalog identifier, quantity).
#[derive(Debug, PartialEq)]
struct Outcome {
    customers: BTreeMap<String, (String, Vec<String>)>,
    additions: BTreeMap<i64, Vec<(String, f64)>>,
}

fn outcome(h: &Harness, report: &RunReport) -> Outcome {
    let names: BTreeMap<i64, String> = h
        .catalog()
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["identifier"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let customers = report
        .customers
        .iter()
        .map(|c| {
            let v = serde_json::to_value(c).unwrap();
            let status = v["status"].as_str().unwrap().to_owned();
            let codes = c.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            (c.tenant_id.clone(), (status, codes))
        })
        .collect();
    let mut additions: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
    for a in h.additions() {
        if !a["cancelledDate"].as_str().is_none_or(str::is_empty) {
            continue;
        }
        let product = names[&a["product"]["id"].as_i64().unwrap()].clone();
        let entry = additions
            .entry(a["agreementId"].as_i64().unwrap())
            .or_default();
        entry.push((product, a["quantity"].as_f64().unwrap()));
        entry.sort_by(|x, y| x.0.cmp(&y.0));
    }
    Outcome {
        customers,
        additions,
    }
}

/// The demo run without faults: what a faulty run must end with too.
async fn baseline() -> (Outcome, RunReport) {
    let h = Harness::start().await;
    let report = run(&h, &demo_settings()).await;
    (outcome(&h, &report), report)
}

// ------------------------------------------------------------------ references

#[tokio::test(flavor = "multi_thread")]
async fn a_subcategory_name_repeated_under_two_categories_resolves_within_the_configured_one() {
    // The demo has "Endpoint" under Security (31) and Hardware (32), an inactive
    // "Endpoint" under Security (37), an inactive type "Software" (13) and an
    // inactive unit "Each" (43) next to the active ones.
    let h = Harness::start().await;
    let report = run(&h, &demo_settings()).await;
    assert!(
        errors_of(&report, ErrorCode::CatalogSetup).is_empty(),
        "{report:#?}"
    );
    let xdr = the_item(&h, XDR_ID);
    assert_eq!(xdr["subcategory"]["id"], 31, "{xdr}");
    assert_eq!(xdr["category"]["id"], 21, "{xdr}");
    assert_eq!(
        xdr["type"]["id"], 11,
        "the active type, not the inactive 13: {xdr}"
    );
    assert_eq!(xdr["unitOfMeasure"]["id"], 41, "{xdr}");
    assert_eq!(catalog_entry(&report, XDR_ID)["action"], "create");
    // The subcategory was looked up within the category, the category first.
    let subs = requests_to(&h, "GET", "/procurement/subcategories");
    assert_eq!(subs.len(), 1, "{subs:#?}");
    assert!(
        conditions(&subs[0]).starts_with("category/id=21 and "),
        "{}",
        conditions(&subs[0])
    );
    let cats = requests_to(&h, "GET", "/procurement/categories");
    assert!(cats[0].seq < subs[0].seq);
    assert_eq!(customer(&report, &tenant(1))["status"], "synced");

    // The same name under another configured category picks that category's record.
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.catalog.category = "hardware".into();
    settings.catalog.subcategory = " Endpoint ".into();
    run(&h, &settings).await;
    let xdr = the_item(&h, XDR_ID);
    assert_eq!(xdr["subcategory"]["id"], 32, "{xdr}");
    assert_eq!(xdr["category"]["id"], 22, "{xdr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inactive_type_with_the_configured_name_is_not_chosen() {
    let mut scenario = Scenario::demo();
    // Only the retired "Software" type (13) is left.
    scenario.connectwise.product_types.retain(|t| t["id"] != 11);
    let h = Harness::with_scenario(scenario).await;
    let report = run(&h, &demo_settings()).await;
    let setup = errors_of(&report, ErrorCode::CatalogSetup);
    assert_eq!(setup.len(), 1, "{report:#?}");
    let m = &setup[0].message;
    assert!(m.contains("only as inactive records (id 13)"), "{m}");
    assert!(m.contains("catalog.type"), "{m}");
    assert!(setup[0].advice.contains("Setup Tables"), "{:?}", setup[0]);
    assert!(catalog_writes(&h).is_empty(), "nothing created");
    assert!(items_with(&h, XDR_ID).is_empty());
    assert_eq!(catalog_entry(&report, XDR_ID)["action"], "failed");
    // The product whose item exists still syncs; the other one is reported.
    let acme = h.additions_of(201);
    assert!(acme.iter().all(|a| a["product"]["id"] == IXA), "{acme:#?}");
    assert_eq!(codes(&report, 1), ["CATALOG_SETUP"]);
    assert!(customer(&report, &tenant(2))["products"][0]["action"] == "update");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truly_ambiguous_subcategory_lists_the_candidates_and_names_the_setting() {
    let duplicate = json!({"id": 39, "name": "endpoint ", "inactiveFlag": false,
                           "category": {"id": 21, "name": "Security"}});
    let h = Harness::with_scenario(with_subcategory(Scenario::demo(), duplicate)).await;
    let report = run(&h, &demo_settings()).await;
    let setup = errors_of(&report, ErrorCode::CatalogSetup);
    assert_eq!(setup.len(), 1, "{report:#?}");
    let m = &setup[0].message;
    assert!(m.contains("2 active subcategory records"), "{m}");
    assert!(m.contains(r#"id 31 (category "Security" id 21)"#), "{m}");
    assert!(m.contains(r#"id 39 (category "Security" id 21)"#), "{m}");
    assert!(
        !m.contains("id 32"),
        "Hardware's Endpoint is not a candidate: {m}"
    );
    assert!(
        !m.contains("id 37"),
        "the inactive one is not a candidate: {m}"
    );
    assert!(m.contains("catalog.subcategory"), "{m}");
    assert!(catalog_writes(&h).is_empty());
    assert_eq!(h.catalog().len(), 1);

    // A name that exists only under other categories says where.
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.catalog.subcategory = "Licensing".into();
    let report = run(&h, &settings).await;
    let m = &errors_of(&report, ErrorCode::CatalogSetup)[0].message;
    assert!(
        m.contains(r#"under the category "Security" (id 21)"#),
        "{m}"
    );
    assert!(m.contains(r#"id 33 (category "Hardware" id 22)"#), "{m}");
    assert!(m.contains(r#"id 34 (category "Software" id 23)"#), "{m}");
    assert!(m.contains("catalog.category"), "{m}");
    assert!(catalog_writes(&h).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_connectwise_refuses_on_create_is_cw_validation_with_the_vendors_message() {
    let h = Harness::start().await;
    let vendor = "The subcategory Endpoint is restricted to the Security location.";
    h.sim.add_fault(cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Invalid {
            resource: "catalogItem".into(),
            field: "subcategory".into(),
            message: vendor.into(),
        },
    ));
    let report = run(&h, &demo_settings()).await;
    let refused = errors_of(&report, ErrorCode::CwValidation);
    assert_eq!(refused.len(), 1, "{report:#?}");
    let m = &refused[0].message;
    assert!(
        m.contains("catalogItem.subcategory"),
        "names the field: {m}"
    );
    assert!(m.contains(vendor), "the vendor's message: {m}");
    assert!(refused[0].advice.contains("field"), "{:?}", refused[0]);
    // A refusal is not an unknown outcome: no read-back, no second POST.
    let posts = requests_to(&h, "POST", "/procurement/catalog");
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].status, 400);
    assert!(items_with(&h, XDR_ID).is_empty());
    assert_eq!(catalog_entry(&report, XDR_ID)["action"], "failed");
    assert_eq!(codes(&report, 1), ["CATALOG_SETUP"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_refuses_what_connectwise_refuses_and_the_engine_passes_it_on() {
    // An item posted with Hardware's "Endpoint" under Security: the vendor's own
    // rule, with the vendor's message, as CW_VALIDATION naming the field. The
    // engine never sends this (it scopes the lookup), so this drives the client
    // and the report mapping directly through the simulator's rule.
    let h = Harness::start().await;
    let secrets = Secrets::from_file(&h.secrets_path).unwrap();
    let counters = Arc::new(ApiCounters::default());
    let (_, cw) = build_clients_with_policy(
        &h.env(),
        &secrets,
        counters,
        policy(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let item = sophos_cw_sync::connectwise::NewCatalogItem {
        identifier: XDR_ID.into(),
        description: "d".into(),
        customer_description: "c".into(),
        product_type: sophos_cw_sync::connectwise::Reference::id(11),
        category: sophos_cw_sync::connectwise::Reference::id(21),
        subcategory: sophos_cw_sync::connectwise::Reference::id(32),
        unit_of_measure: sophos_cw_sync::connectwise::Reference::id(41),
        product_class: "Agreement".into(),
        taxable_flag: false,
        price: 0.0,
        cost: 0.0,
    };
    let e = cw.create_catalog_item(&item).await.unwrap_err();
    assert!(!e.outcome_unknown(), "{e}");
    assert_eq!(e.details.len(), 1, "{e:?}");
    assert_eq!(e.details[0].field, "subcategory");
    let text = e.to_string();
    assert!(
        text.contains(r#"does not belong to the category "Security" (id 21)"#),
        "{text}"
    );
    assert!(h.catalog().len() == 1, "nothing created");
}

// ------------------------------------------------------------------ verified create

/// Checks a faulty run against the baseline: one item per identifier, the same
/// customers synced with the same additions, a second run writing nothing.
async fn assert_converged_in_one_run(h: &Harness, report: &RunReport) {
    let (expected, _) = baseline().await;
    assert_eq!(outcome(h, report), expected, "{report:#?}");
    for identifier in [IXA_ID, XDR_ID] {
        assert_eq!(items_with(h, identifier).len(), 1, "{:#?}", h.catalog());
    }
    assert_eq!(h.catalog().len(), 2);
    assert_eq!(customer(report, &tenant(1))["status"], "synced");
    assert_eq!(catalog_entry(report, XDR_ID)["action"], "create");
    h.sim.clear_requests();
    let again = run(h, &demo_settings()).await;
    assert_eq!(again.writes, 0, "{again:#?}");
    let writes: Vec<LoggedRequest> = cw_log(h)
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
}

async fn audit_actions(h: &Harness, report: &RunReport) -> Vec<(String, String)> {
    h.store
        .list_audit(100, Some(&report.run_id))
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action.contains("CatalogItem") && a.identifier == XDR_ID)
        .map(|a| (a.action, a.identifier))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_on_the_catalog_post_is_read_back_and_created_again_in_the_same_run() {
    let (_, base) = baseline().await;
    let h = Harness::start().await;
    h.sim.add_fault(cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Status { status: 500 },
    ));
    let report = run(&h, &demo_settings()).await;
    // POST (500, not applied), read back by identifier, POST again.
    let log = cw_log(&h);
    let catalog: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.path.ends_with("/procurement/catalog"))
        .collect();
    let shape: Vec<(&str, u16)> = catalog
        .iter()
        .map(|r| (r.method.as_str(), r.status))
        .collect();
    assert_eq!(
        shape,
        [("GET", 200), ("POST", 500), ("GET", 200), ("POST", 201)],
        "{catalog:#?}"
    );
    assert_eq!(
        conditions(catalog[2]),
        format!("identifier in (\"{XDR_ID}\")")
    );
    assert_eq!(
        audit_actions(&h, &report).await,
        [("createCatalogItem".to_owned(), XDR_ID.to_owned())]
    );
    // The 500 wrote nothing: the same writes as without it, two more calls.
    assert_eq!(report.writes, base.writes);
    assert_eq!(report.api_calls.connectwise, base.api_calls.connectwise + 2);
    assert_converged_in_one_run(&h, &report).await;
}

/// A catalog POST that ConnectWise applied but whose answer the client never got.
async fn lost_answer_is_adopted(fault: Fault, policy: HttpPolicy) {
    let (_, base) = baseline().await;
    let h = Harness::start().await;
    h.sim.add_fault(fault);
    let report = run_with_policy(&h, &demo_settings(), policy).await;
    let posts = requests_to(&h, "POST", "/procurement/catalog");
    assert_eq!(posts.len(), 1, "not repeated: it landed: {posts:#?}");
    assert!(posts[0].fault.is_some());
    let reads = requests_to(&h, "GET", "/procurement/catalog");
    assert_eq!(reads.len(), 2, "the lookup and the read-back: {reads:#?}");
    assert!(reads[1].seq > posts[0].seq);
    let xdr = the_item(&h, XDR_ID);
    let entry = catalog_entry(&report, XDR_ID);
    assert_eq!(entry["catalogItemId"], xdr["id"]);
    assert_eq!(
        audit_actions(&h, &report).await,
        [("adoptCatalogItem".to_owned(), XDR_ID.to_owned())]
    );
    let remembered = h.store.list_catalog_items().await.unwrap();
    assert!(
        remembered
            .iter()
            .any(|r| r.identifier == XDR_ID && Some(r.catalog_item_id) == xdr["id"].as_i64())
    );
    // The write landed, so it counts; one extra call (the read-back).
    assert_eq!(report.writes, base.writes);
    assert_eq!(report.api_calls.connectwise, base.api_calls.connectwise + 1);
    assert_converged_in_one_run(&h, &report).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_post_applied_behind_a_500_is_adopted_not_repeated() {
    let mut fault = cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Status { status: 500 },
    );
    fault.after_apply = true;
    lost_answer_is_adopted(fault, policy(Duration::from_secs(30))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_post_whose_answer_is_cut_short_is_adopted_not_repeated() {
    let fault = cw_fault("POST", "/procurement/catalog", FaultKind::Truncate);
    lost_answer_is_adopted(fault, policy(Duration::from_secs(30))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_post_applied_then_hanging_past_the_timeout_is_adopted() {
    let mut fault = cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Hang { ms: 3_000 },
    );
    fault.after_apply = true;
    lost_answer_is_adopted(fault, policy(Duration::from_millis(300))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_post_hanging_past_the_timeout_unapplied_is_created_again() {
    let h = Harness::start().await;
    h.sim.add_fault(cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Hang { ms: 3_000 },
    ));
    let report = run_with_policy(&h, &demo_settings(), policy(Duration::from_millis(300))).await;
    let posts = requests_to(&h, "POST", "/procurement/catalog");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let reads = requests_to(&h, "GET", "/procurement/catalog");
    assert_eq!(reads.len(), 2, "{reads:#?}");
    assert!(reads[1].seq < posts[1].seq, "read back before the repeat");
    assert_eq!(
        audit_actions(&h, &report).await,
        [("createCatalogItem".to_owned(), XDR_ID.to_owned())]
    );
    assert_converged_in_one_run(&h, &report).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_read_back_stops_that_item_and_the_next_run_creates_it_once() {
    let h = Harness::start().await;
    h.sim.add_fault(cw_fault(
        "POST",
        "/procurement/catalog",
        FaultKind::Status { status: 500 },
    ));
    // The lookup passes; every try of the read-back fails.
    let mut read_back = cw_fault(
        "GET",
        "/procurement/catalog",
        FaultKind::Status { status: 500 },
    );
    read_back.nth = 2;
    read_back.times = 100;
    h.sim.add_fault(read_back);
    let report = run(&h, &demo_settings()).await;
    assert_eq!(requests_to(&h, "POST", "/procurement/catalog").len(), 1);
    let down = errors_of(&report, ErrorCode::UpstreamUnavailable);
    assert_eq!(down.len(), 1, "{report:#?}");
    assert!(
        down[0].message.contains("reading the catalog back failed"),
        "{}",
        down[0].message
    );
    assert!(items_with(&h, XDR_ID).is_empty());
    assert_eq!(catalog_entry(&report, XDR_ID)["action"], "failed");
    assert_eq!(codes(&report, 1), ["CATALOG_SETUP"]);

    h.sim.clear_faults();
    h.sim.clear_requests();
    let next = run(&h, &demo_settings()).await;
    assert_eq!(requests_to(&h, "POST", "/procurement/catalog").len(), 1);
    the_item(&h, XDR_ID);
    assert_eq!(customer(&next, &tenant(1))["status"], "synced");
}

// ------------------------------------------------------------------ own catalog items

const OWN: &str = "ACME-EDR-XDR";

fn own_item(id: i64, identifier: &str, inactive: bool) -> Value {
    json!({"id": id, "identifier": identifier, "description": "ACME managed EDR seat",
           "customerDescription": "ACME Secure Endpoint (our bundle)", "inactiveFlag": inactive,
           "subcategory": {"id": 31, "name": "Endpoint"}, "type": {"id": 14, "name": "Services"},
           "category": {"id": 21, "name": "Security"}, "productClass": "Service",
           "unitOfMeasure": {"id": 42, "name": "User"}, "price": 9.0, "cost": 4.0,
           "taxableFlag": true})
}

fn with_catalog(items: Vec<Value>) -> Scenario {
    let mut scenario = Scenario::demo();
    scenario.connectwise.catalog.extend(items);
    scenario
}

fn own_settings(item: &str) -> Settings {
    let mut settings = demo_settings();
    settings
        .catalog_items
        .insert(XDR_ID.to_owned(), item.to_owned());
    settings
}

#[tokio::test(flavor = "multi_thread")]
async fn an_own_catalog_item_is_used_and_never_created_or_edited() {
    let h = Harness::with_scenario(with_catalog(vec![own_item(950, OWN, false)])).await;
    let before = h.catalog();
    let report = run(&h, &own_settings(OWN)).await;
    // Nothing written to the catalog at all: IXA exists, XDR is the partner's item.
    assert!(catalog_writes(&h).is_empty(), "{:#?}", catalog_writes(&h));
    assert_eq!(h.catalog(), before, "the catalog is untouched");
    assert!(items_with(&h, XDR_ID).is_empty(), "no Sophos XDR item made");
    let entry = catalog_entry(&report, XDR_ID);
    assert_eq!(entry["catalogItemId"], 950);
    assert_eq!(entry["action"], "existing");
    assert_eq!(
        report
            .catalog
            .iter()
            .find(|c| c.identifier == XDR_ID)
            .unwrap()
            .action,
        CatalogAction::Existing
    );
    // It was looked up by its own identifier.
    let lookup = &requests_to(&h, "GET", "/procurement/catalog")[0];
    assert!(
        conditions(lookup).contains(&format!("\"{OWN}\"")),
        "{lookup:?}"
    );
    // Acme's XDR usage is billed as the partner's item.
    let acme = h.additions_of(201);
    let xdr: Vec<&Value> = acme.iter().filter(|a| a["product"]["id"] == 950).collect();
    assert_eq!(xdr.len(), 1, "{acme:#?}");
    assert_eq!(xdr[0]["quantity"], 5.0);
    assert_eq!(xdr[0]["unitPrice"], 9.0, "the partner's price");
    assert_eq!(customer(&report, &tenant(1))["status"], "synced");
    let audit = audit_actions(&h, &report).await;
    assert_eq!(audit, [("adoptCatalogItem".to_owned(), XDR_ID.to_owned())]);

    h.sim.clear_requests();
    let again = run(&h, &own_settings(OWN)).await;
    assert_eq!(again.writes, 0, "{again:#?}");
    assert!(catalog_writes(&h).is_empty());
}

async fn assert_unusable_own_item(h: &Harness, report: &RunReport, says: &str) {
    let setup = errors_of(report, ErrorCode::CatalogSetup);
    assert_eq!(setup.len(), 1, "{report:#?}");
    let m = &setup[0].message;
    assert!(
        m.contains(OWN) && m.contains(XDR_ID) && m.contains(says),
        "{m}"
    );
    assert!(m.contains("catalogItems"), "says which setting: {m}");
    assert!(setup[0].advice.contains("catalogItems"), "{:?}", setup[0]);
    assert!(catalog_writes(h).is_empty(), "{:#?}", catalog_writes(h));
    assert!(items_with(h, XDR_ID).is_empty(), "never created instead");
    assert_eq!(catalog_entry(report, XDR_ID)["action"], "failed");
    // Nothing written for XDR; Intercept X Advanced still syncs.
    let acme = h.additions_of(201);
    assert!(acme.iter().all(|a| a["product"]["id"] == IXA), "{acme:#?}");
    assert_eq!(codes(report, 1), ["CATALOG_SETUP"]);
    assert_eq!(
        customer(report, &tenant(2))["products"][0]["action"],
        "update"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_own_catalog_item_is_reported_with_advice_and_nothing_written_for_it() {
    let h = Harness::start().await;
    let report = run(&h, &own_settings(OWN)).await;
    assert_unusable_own_item(&h, &report, "does not exist").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inactive_own_catalog_item_is_reported_with_advice_and_nothing_written_for_it() {
    let h = Harness::with_scenario(with_catalog(vec![own_item(951, OWN, true)])).await;
    let report = run(&h, &own_settings(OWN)).await;
    assert_unusable_own_item(&h, &report, "inactive (ids [951])").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_refuse_two_products_on_one_own_item_and_a_key_outside_products() {
    let h = Harness::start().await;
    let mut shared = own_settings(OWN);
    shared
        .catalog_items
        .insert(IXA_ID.to_owned(), OWN.to_lowercase());
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&shared).unwrap(),
    )
    .unwrap();
    let out = h.cli(&["sync"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("one catalog item can stand for one product"),
        "{stderr}"
    );
    assert!(
        stderr.contains(IXA_ID) && stderr.contains(XDR_ID),
        "{stderr}"
    );

    let mut outside = demo_settings();
    outside
        .catalog_items
        .insert("Sophos_Email_Advanced".to_owned(), OWN.to_owned());
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&outside).unwrap(),
    )
    .unwrap();
    let out = h.cli(&["sync"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not among the selected products"),
        "{stderr}"
    );
    assert_eq!(h.cw_writes(), 0, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_a_billed_product_to_an_own_item_never_bills_it_twice() {
    let h = Harness::start().await;
    run(&h, &demo_settings()).await;
    let sophos_xdr = the_item(&h, XDR_ID)["id"].as_i64().unwrap();
    let before: Vec<Value> = h.additions_of(201);
    assert!(before.iter().any(|a| a["product"]["id"] == sophos_xdr));
    h.sim
        .with_state(|s| s.collection_mut("catalog").push(own_item(950, OWN, false)));
    h.sim.clear_requests();
    let report = run(&h, &own_settings(OWN)).await;
    // Acme's XDR is still billed by the Sophos item's addition: none made for 950.
    assert_eq!(
        h.additions_of(201),
        before,
        "nothing written on Acme's agreement"
    );
    assert!(h.additions().iter().all(|a| a["product"]["id"] != 950));
    assert_eq!(codes(&report, 1), ["ADDITION_AMBIGUOUS"]);
    let c = customer(&report, &tenant(1));
    assert!(
        c["errors"][0]["advice"]
            .as_str()
            .unwrap()
            .contains("Cancel"),
        "{c}"
    );
    assert!(catalog_writes(&h).is_empty());
}

// ------------------------------------------------------------------ prices

fn price_zero_warnings(report: &RunReport) -> Vec<(String, Option<i64>)> {
    report
        .warnings
        .iter()
        .filter(|w| w.code == WarningCode::CatalogPriceZero)
        .map(|w| (w.identifier.clone().unwrap_or_default(), w.catalog_item_id))
        .collect()
}

/// Catalog item edits (PATCH or PUT of an item); a create is a POST.
fn catalog_edits(h: &Harness) -> Vec<LoggedRequest> {
    catalog_writes(h)
        .into_iter()
        .filter(|r| r.method != "POST")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_item_carries_its_configured_price_cost_and_taxable_and_is_not_warned() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    let priced = Price {
        price: 6.5,
        cost: 3.25,
    };
    settings.prices.insert(XDR_ID.to_owned(), priced);
    settings.catalog.taxable = true;
    let report = run(&h, &settings).await;
    let xdr = the_item(&h, XDR_ID);
    assert_eq!(xdr["price"], 6.5, "{xdr}");
    assert_eq!(xdr["cost"], 3.25, "{xdr}");
    assert_eq!(xdr["taxableFlag"], true, "{xdr}");
    // Its additions bill that price (ConnectWise copies it from the item).
    let acme_xdr: Vec<Value> = h
        .additions_of(201)
        .into_iter()
        .filter(|a| a["product"]["id"] == xdr["id"])
        .collect();
    assert_eq!(acme_xdr.len(), 1, "{acme_xdr:#?}");
    assert_eq!(acme_xdr[0]["unitPrice"], 6.5);
    // The existing item (4.5) is found by its price, warned about by nothing, and
    // never repriced: the only catalog write is the create.
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    let posts = requests_to(&h, "POST", "/procurement/catalog");
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert!(catalog_edits(&h).is_empty(), "{:#?}", catalog_edits(&h));
    assert_eq!(items_with(&h, IXA_ID)[0]["price"], 4.5);
    let lookup = &requests_to(&h, "GET", "/procurement/catalog")[0];
    let url = reqwest::Url::parse(&format!("http://sim/?{}", lookup.query)).unwrap();
    let fields = url
        .query_pairs()
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        fields.split(',').any(|f| f == "price"),
        "the lookup reads the price: {lookup:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpriced_created_item_and_a_found_item_priced_0_are_warned_and_still_written() {
    let mut scenario = Scenario::demo();
    scenario.connectwise.catalog[0]["price"] = json!(0.0);
    let h = Harness::with_scenario(scenario).await;
    let report = run(&h, &demo_settings()).await;
    let xdr = the_item(&h, XDR_ID);
    assert_eq!(
        (xdr["price"].as_f64(), xdr["cost"].as_f64()),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(
        xdr["taxableFlag"], false,
        "catalog.taxable defaults to false"
    );
    let mut warned = price_zero_warnings(&report);
    warned.sort();
    assert_eq!(
        warned,
        [
            (IXA_ID.to_owned(), Some(IXA)),
            (XDR_ID.to_owned(), xdr["id"].as_i64()),
        ],
        "{:#?}",
        report.warnings
    );
    let w = &report.warnings[0];
    assert!(w.message.contains("price of 0"), "{w:?}");
    assert!(w.advice.contains("PUT /settings"), "{w:?}");
    // The writes still happen: Acme's XDR addition exists, and nothing repriced.
    let acme = h.additions_of(201);
    assert!(
        acme.iter().any(|a| a["product"]["id"] == xdr["id"]),
        "{acme:#?}"
    );
    assert_eq!(customer(&report, &tenant(1))["status"], "synced");
    assert!(catalog_edits(&h).is_empty(), "{:#?}", catalog_edits(&h));
    assert_eq!(items_with(&h, IXA_ID)[0]["price"], 0.0);
    // The report carries them where the operator reads it.
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["code"] == "CATALOG_PRICE_ZERO"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_warns_of_the_unpriced_item_it_would_create_and_writes_nothing() {
    let h = Harness::start().await;
    let report = h
        .run_with(&demo_settings(), h.options(true))
        .await
        .expect("cycle runs");
    assert_eq!(
        price_zero_warnings(&report),
        [(XDR_ID.to_owned(), None)],
        "{:#?}",
        report.warnings
    );
    assert!(catalog_writes(&h).is_empty());
    assert_eq!(h.cw_writes(), 0);

    // Priced in the settings, the preview has nothing to say.
    let h = Harness::start().await;
    let mut settings = demo_settings();
    let priced = Price {
        price: 6.5,
        cost: 0.0,
    };
    settings.prices.insert(XDR_ID.to_owned(), priced);
    let report = h
        .run_with(&settings, h.options(true))
        .await
        .expect("cycle runs");
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partners_own_item_priced_0_is_warned_under_its_product_and_left_as_it_is() {
    let mut own = own_item(950, OWN, false);
    own["price"] = json!(0.0);
    let h = Harness::with_scenario(with_catalog(vec![own])).await;
    let before = h.catalog();
    let report = run(&h, &own_settings(OWN)).await;
    assert_eq!(
        price_zero_warnings(&report),
        [(XDR_ID.to_owned(), Some(950))],
        "{:#?}",
        report.warnings
    );
    assert!(catalog_writes(&h).is_empty(), "{:#?}", catalog_writes(&h));
    assert_eq!(h.catalog(), before, "the catalog is untouched");
    let acme = h.additions_of(201);
    assert!(acme.iter().any(|a| a["product"]["id"] == 950), "{acme:#?}");
}
