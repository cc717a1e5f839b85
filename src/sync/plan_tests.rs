//! Unit tests of the pure planning of a sync cycle (`sync::plan`).

use super::*;
use crate::connectwise::model::Reference;
use crate::domain::products;
use chrono::{DateTime, Utc};

// ---------------------------------------------------------------- builders

const IXA: &str = "Sophos_Intercept_X_Advanced";
const EP: &str = "Sophos_Endpoint_Protection";
const DE: &str = "Sophos_Device_Encryption";
const XDR: &str = "Sophos_XDR_30";
const TYPE: &str = "Managed Services";

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(0, 0).expect("epoch")
}

fn tenant(id: &str, name: &str) -> Tenant {
    Tenant {
        id: id.to_owned(),
        name: name.to_owned(),
        show_as: None,
        billing_type: Some("usage".to_owned()),
        api_host: Some("https://api-eu01.central.sophos.com".to_owned()),
        data_region: Some("eu01".to_owned()),
    }
}

fn with_billing(mut t: Tenant, billing: Option<&str>) -> Tenant {
    t.billing_type = billing.map(str::to_owned);
    t
}

fn with_api_host(mut t: Tenant, host: Option<&str>) -> Tenant {
    t.api_host = host.map(str::to_owned);
    t
}

fn company(id: i64, name: &str) -> Company {
    Company {
        id,
        identifier: format!("C{id}"),
        name: name.to_owned(),
        deleted_flag: Some(false),
        status: None,
    }
}

fn deleted(mut c: Company) -> Company {
    c.deleted_flag = Some(true);
    c
}

fn agreement(id: i64, company_id: i64, type_name: &str) -> Agreement {
    Agreement {
        id,
        name: format!("Agreement {id}"),
        agreement_type: Some(Reference {
            id: Some(7),
            identifier: None,
            name: Some(type_name.to_owned()),
        }),
        company: Some(Reference::id(company_id)),
        cancelled_flag: Some(false),
        agreement_status: Some("Active".to_owned()),
    }
}

fn cancelled_agreement(mut a: Agreement) -> Agreement {
    a.cancelled_flag = Some(true);
    a.agreement_status = Some("Cancelled".to_owned());
    a
}

fn with_status(mut a: Agreement, status: &str) -> Agreement {
    a.agreement_status = Some(status.to_owned());
    a
}

fn addition(id: i64, product_id: i64, quantity: f64) -> Addition {
    Addition {
        id,
        product: Some(Reference::id(product_id)),
        quantity: Some(quantity),
        effective_date: Some("2026-01-01T00:00:00Z".to_owned()),
        cancelled_date: None,
        agreement_id: Some(500),
        addition_status: Some("Active".to_owned()),
        agreement_status: Some("Active".to_owned()),
    }
}

fn line(account: Option<&str>, code: &str, billable: f64, actual: f64) -> UsageLine {
    UsageLine {
        account_id: account.map(str::to_owned),
        product_code: Some(code.to_owned()),
        sku: None,
        product_description: Some(format!("description of {code}")),
        product_group: Some("User".to_owned()),
        order_line_item_number: None,
        billable_quantity: Some(billable),
        actual_quantity: Some(actual),
        account_status: None,
    }
}

fn mapping(
    tenant_id: &str,
    kind: MappingKind,
    company: Option<i64>,
    agreement: Option<i64>,
) -> Mapping {
    Mapping {
        tenant_id: tenant_id.to_owned(),
        kind,
        company_id: company,
        agreement_id: agreement,
        updated_at: epoch(),
    }
}

fn manual(tenant_id: &str, company: i64, agreement: Option<i64>) -> Mapping {
    mapping(tenant_id, MappingKind::Manual, Some(company), agreement)
}

fn discovered(tenant_id: &str, company: i64, agreement: i64) -> Mapping {
    mapping(
        tenant_id,
        MappingKind::Discovered,
        Some(company),
        Some(agreement),
    )
}

fn record(identifier: &str, addition_id: i64) -> AdditionRecord {
    AdditionRecord {
        tenant_id: "t1".to_owned(),
        identifier: identifier.to_owned(),
        agreement_id: 500,
        addition_id,
        product_id: 100,
        quantity: 1.0,
        updated_at: epoch(),
    }
}

fn catalog_item(id: i64, identifier: &str, description: &str) -> CatalogItem {
    CatalogItem {
        id,
        identifier: identifier.to_owned(),
        description: description.to_owned(),
        inactive_flag: Some(false),
        price: None,
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn keys<V>(map: &BTreeMap<String, V>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

fn codes() -> BTreeMap<String, String> {
    products::code_table(&BTreeMap::new())
}

fn usage(entries: &[(&str, f64)]) -> TenantUsage {
    TenantUsage {
        by_product: entries.iter().map(|(i, q)| ((*i).to_owned(), *q)).collect(),
        unmapped_codes: BTreeMap::new(),
        evidence: Vec::new(),
    }
}

fn feb_2026() -> Month {
    Month::new(2026, 2).expect("month")
}

fn assert_advice(e: &ErrorReport) {
    assert!(!e.advice.is_empty(), "{e:?} has no advice");
    assert_eq!(e.advice, e.code.advice(), "{e:?}");
    assert!(!e.message.is_empty(), "{e:?} has no message");
}

/// The error of a resolution that failed; panics on Mapped/Ignored.
fn error_of(r: &Resolution) -> &ErrorReport {
    let e = match r {
        Resolution::Unmapped(e) | Resolution::AgreementProblem(_, e) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_advice(e);
    e
}

fn unmapped_code(r: &Resolution) -> ErrorCode {
    match r {
        Resolution::Unmapped(e) => {
            assert_advice(e);
            e.code
        }
        other => panic!("expected Unmapped, got {other:?}"),
    }
}

/// (company id, error code) of an AgreementProblem.
fn agreement_problem(r: &Resolution) -> (i64, ErrorCode) {
    match r {
        Resolution::AgreementProblem(c, e) => {
            assert_advice(e);
            (c.id, e.code)
        }
        other => panic!("expected AgreementProblem, got {other:?}"),
    }
}

/// (company id, agreement id, newly discovered) of a Mapped resolution.
fn mapped(r: &Resolution) -> (i64, i64, bool) {
    match r {
        Resolution::Mapped {
            company,
            agreement,
            newly_discovered,
        } => (company.id, agreement.id, *newly_discovered),
        other => panic!("expected Mapped, got {other:?}"),
    }
}

fn resolve(
    t: &Tenant,
    m: Option<&Mapping>,
    companies: &[Company],
    agreements: &[Agreement],
) -> Resolution {
    resolve_one(t, m, companies, agreements, TYPE)
}

// ---------------------------------------------------------------- aggregate_usage

#[test]
fn usage_of_one_tenant_and_product_is_summed_across_order_lines() {
    let lines = [
        line(Some("t1"), "CIXA-MSP", 10.0, 0.0),
        line(Some("t1"), "CIXA-MSP", 5.0, 0.0),
        line(Some("t2"), "CIXA-MSP", 4.0, 0.0),
        line(Some("t1"), "CDE-MSP", 3.0, 0.0),
        line(Some("t1"), "CIXA-MSP", 2.0, 0.0),
    ];
    let s = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    assert_eq!(s.tenants.len(), 2);
    let t1 = &s.tenants["t1"];
    assert_eq!(t1.by_product.len(), 2);
    assert_eq!(t1.by_product[IXA], 17.0);
    assert_eq!(t1.by_product[DE], 3.0);
    assert!(t1.unmapped_codes.is_empty());
    let t2 = &s.tenants["t2"];
    assert_eq!(t2.by_product.len(), 1);
    assert_eq!(t2.by_product[IXA], 4.0);
    assert!(s.unassigned.is_empty());
}

#[test]
fn quantity_field_setting_picks_billable_or_actual() {
    let lines = [
        line(Some("t1"), "CIXA-MSP", 10.0, 12.0),
        line(Some("t1"), "CIXA-MSP", 1.0, 3.0),
    ];
    let billable = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    assert_eq!(billable.tenants["t1"].by_product[IXA], 11.0);
    let actual = aggregate_usage(&lines, &codes(), QuantityField::ActualQuantity);
    assert_eq!(actual.tenants["t1"].by_product[IXA], 15.0);
}

#[test]
fn a_missing_quantity_counts_as_zero() {
    let mut no_billable = line(Some("t1"), "CIXA-MSP", 0.0, 8.0);
    no_billable.billable_quantity = None;
    let lines = [no_billable, line(Some("t1"), "CIXA-MSP", 2.0, 1.0)];
    let s = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    assert_eq!(s.tenants["t1"].by_product[IXA], 2.0);
}

#[test]
fn lines_without_an_account_go_to_unassigned_never_to_a_tenant() {
    let lines = [
        line(None, "CIXA-MSP", 6.0, 7.0),
        line(Some(""), "CDE-MSP", 2.0, 3.0),
        line(Some("t1"), "CIXA-MSP", 1.0, 1.0),
    ];
    let s = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    assert_eq!(
        s.unassigned,
        vec![
            UnassignedUsage {
                product_code: Some("CIXA-MSP".into()),
                product_description: Some("description of CIXA-MSP".into()),
                quantity: 6.0,
            },
            UnassignedUsage {
                product_code: Some("CDE-MSP".into()),
                product_description: Some("description of CDE-MSP".into()),
                quantity: 2.0,
            },
        ]
    );
    assert_eq!(s.tenants.keys().collect::<Vec<_>>(), vec!["t1"]);
    assert_eq!(s.tenants["t1"].by_product[IXA], 1.0);
    assert!(!s.tenants["t1"].by_product.contains_key(DE));
}

#[test]
fn unassigned_lines_use_the_configured_quantity_field() {
    let lines = [line(None, "CIXA-MSP", 6.0, 7.0)];
    let s = aggregate_usage(&lines, &codes(), QuantityField::ActualQuantity);
    assert_eq!(s.unassigned.len(), 1);
    assert_eq!(s.unassigned[0].quantity, 7.0);
    assert!(s.tenants.is_empty());
}

#[test]
fn unknown_product_codes_land_in_unmapped_codes() {
    let lines = [
        line(Some("t1"), "MYSTERY-MSP", 5.0, 5.0),
        line(Some("t1"), "MYSTERY-MSP", 1.0, 1.0),
        line(Some("t1"), "OTHER-MSP", 1.0, 1.0),
        line(Some("t1"), "CIXA-MSP", 3.0, 3.0),
    ];
    let s = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    let t1 = &s.tenants["t1"];
    assert_eq!(keys(&t1.unmapped_codes), set(&["MYSTERY-MSP", "OTHER-MSP"]));
    assert_eq!(t1.by_product.len(), 1);
    assert_eq!(t1.by_product[IXA], 3.0);
}

#[test]
fn an_unmapped_code_carries_what_its_lines_say_and_is_never_summed() {
    let mut first = line(Some("t1"), "MYSTERY-MSP", 5.0, 6.0);
    first.sku = Some("MYS123".into());
    first.product_group = Some("Server".into());
    let second = line(Some("t1"), "MYSTERY-MSP", 2.0, 2.0);
    let wireless = line(Some("t1"), "AP6-840-SUP-MSP", 4.0, 4.0);
    let s = aggregate_usage(
        &[first, second, wireless],
        &codes(),
        QuantityField::BillableQuantity,
    );
    let t1 = &s.tenants["t1"];
    assert!(t1.by_product.is_empty(), "{t1:?}");
    let m = &t1.unmapped_codes["MYSTERY-MSP"];
    assert_eq!(
        m.product_description.as_deref(),
        Some("description of MYSTERY-MSP")
    );
    assert_eq!(m.sku.as_deref(), Some("MYS123"));
    assert_eq!(m.product_group.as_deref(), Some("Server"));
    assert_eq!(m.quantity, 7.0, "billable quantities summed");
    assert_eq!(m.known_as, None);
    // A known code with no identifier: reported with what the evidence says.
    let ap = &t1.unmapped_codes["AP6-840-SUP-MSP"];
    assert!(
        ap.known_as.as_deref().unwrap().contains("Sophos_Wireless_"),
        "{ap:?}"
    );
    assert_eq!(ap.quantity, 4.0);

    let e = ErrorReport::unmapped_product(m.clone());
    assert_eq!(e.code, ErrorCode::ProductUnmapped);
    assert!(
        e.advice
            .contains(r#""productCodes": {"MYSTERY-MSP": "<identifier>"}"#),
        "{}",
        e.advice
    );
    assert_eq!(e.advice, e.expected_advice());
    for part in [
        "MYSTERY-MSP",
        "description of MYSTERY-MSP",
        "MYS123",
        "Server",
        "7",
    ] {
        assert!(e.message.contains(part), "{part} in {}", e.message);
    }
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["product"]["productCode"], "MYSTERY-MSP");
    assert_eq!(json["product"]["productGroup"], "Server");
    assert_eq!(
        json["product"]["productDescription"],
        "description of MYSTERY-MSP"
    );
    assert!(json["product"].get("knownAs").is_none());
}

#[test]
fn a_line_with_neither_code_nor_sku_is_unmapped_not_summed() {
    let mut l = line(Some("t1"), "x", 4.0, 4.0);
    l.product_code = None;
    l.sku = None;
    let s = aggregate_usage(&[l], &codes(), QuantityField::BillableQuantity);
    let t1 = &s.tenants["t1"];
    assert!(t1.by_product.is_empty());
    assert_eq!(t1.unmapped_codes.len(), 1);
}

#[test]
fn sku_is_used_when_product_code_is_absent() {
    let mut by_sku = line(Some("t1"), "x", 4.0, 4.0);
    by_sku.product_code = None;
    by_sku.sku = Some("CIXA-MSP".into());
    let mut both = line(Some("t1"), "CDE-MSP", 2.0, 2.0);
    both.sku = Some("CIXA-MSP".into());
    let mut unassigned = line(None, "x", 9.0, 9.0);
    unassigned.product_code = None;
    unassigned.sku = Some("CDE-MSP".into());

    let s = aggregate_usage(
        &[by_sku, both, unassigned],
        &codes(),
        QuantityField::BillableQuantity,
    );
    let t1 = &s.tenants["t1"];
    assert_eq!(t1.by_product[IXA], 4.0, "sku fallback");
    assert_eq!(t1.by_product[DE], 2.0, "productCode wins over sku");
    assert!(t1.unmapped_codes.is_empty());
    assert_eq!(s.unassigned.len(), 1);
    assert_eq!(s.unassigned[0].product_code.as_deref(), Some("CDE-MSP"));
    assert_eq!(s.unassigned[0].quantity, 9.0);
}

#[test]
fn code_table_overrides_and_extends_the_built_in_codes() {
    let mut overrides = BTreeMap::new();
    overrides.insert("CIXA-MSP".to_owned(), XDR.to_owned());
    overrides.insert("NEW-MSP".to_owned(), "Sophos_Cloud_Optix".to_owned());
    let table = products::code_table(&overrides);
    let lines = [
        line(Some("t1"), "CIXA-MSP", 3.0, 3.0),
        line(Some("t1"), "NEW-MSP", 2.0, 2.0),
        line(Some("t1"), "CDE-MSP", 1.0, 1.0),
    ];
    let s = aggregate_usage(&lines, &table, QuantityField::BillableQuantity);
    let t1 = &s.tenants["t1"];
    assert_eq!(t1.by_product[XDR], 3.0);
    assert!(!t1.by_product.contains_key(IXA));
    assert_eq!(t1.by_product["Sophos_Cloud_Optix"], 2.0);
    assert_eq!(t1.by_product[DE], 1.0);
    assert!(t1.unmapped_codes.is_empty());

    // Without the override NEW-MSP is unknown.
    let plain = aggregate_usage(&lines, &codes(), QuantityField::BillableQuantity);
    assert_eq!(keys(&plain.tenants["t1"].unmapped_codes), set(&["NEW-MSP"]));
    assert_eq!(plain.tenants["t1"].by_product[IXA], 3.0);
}

#[test]
fn no_lines_no_usage() {
    let s = aggregate_usage(&[], &codes(), QuantityField::BillableQuantity);
    assert_eq!(s, UsageSummary::default());
}

// ---------------------------------------------------------------- plan_catalog

#[test]
fn catalog_matches_by_identifier_case_insensitively() {
    let found = [catalog_item(
        11,
        "sophos_intercept_x_advanced",
        "whatever the partner wrote",
    )];
    let plan = plan_catalog(&set(&[IXA]), &found);
    assert_eq!(plan[IXA], CatalogState::Existing(11));
}

#[test]
fn catalog_ignores_descriptions() {
    // The description matches the product exactly, the identifier does not.
    let found = [catalog_item(
        11,
        "SIXA",
        "Sophos Central Intercept X Advanced",
    )];
    let plan = plan_catalog(&set(&[IXA]), &found);
    assert_eq!(plan[IXA], CatalogState::Missing);
}

#[test]
fn catalog_missing_identifier_is_missing() {
    let found = [catalog_item(11, EP, "x")];
    let plan = plan_catalog(&set(&[IXA, EP]), &found);
    assert_eq!(plan[IXA], CatalogState::Missing);
    assert_eq!(plan[EP], CatalogState::Existing(11));
    assert_eq!(plan_catalog(&set(&[IXA]), &[])[IXA], CatalogState::Missing);
}

#[test]
fn catalog_two_items_with_one_identifier_are_ambiguous() {
    let found = [
        catalog_item(11, IXA, "a"),
        catalog_item(12, EP, "b"),
        catalog_item(13, &IXA.to_uppercase(), "c"),
    ];
    let plan = plan_catalog(&set(&[IXA, EP]), &found);
    assert_eq!(plan[IXA], CatalogState::Ambiguous(vec![11, 13]));
    assert_eq!(plan[EP], CatalogState::Existing(12));
}

#[test]
fn catalog_ignores_inactive_items() {
    let mut inactive = catalog_item(11, IXA, "old");
    inactive.inactive_flag = Some(true);
    let mut unspecified = catalog_item(12, IXA, "new");
    unspecified.inactive_flag = None;
    let plan = plan_catalog(&set(&[IXA]), &[inactive.clone(), unspecified]);
    assert_eq!(plan[IXA], CatalogState::Existing(12));

    let only_inactive = plan_catalog(&set(&[IXA]), &[inactive]);
    assert_eq!(only_inactive[IXA], CatalogState::Missing);
}

#[test]
fn catalog_lists_only_selected_identifiers() {
    let found = [
        catalog_item(11, IXA, "a"),
        catalog_item(12, EP, "b"),
        catalog_item(13, XDR, "c"),
    ];
    let plan = plan_catalog(&set(&[EP, "Sophos_Cloud_Optix"]), &found);
    assert_eq!(
        plan.keys().cloned().collect::<BTreeSet<_>>(),
        set(&[EP, "Sophos_Cloud_Optix"])
    );
    assert_eq!(plan[EP], CatalogState::Existing(12));
    assert_eq!(plan["Sophos_Cloud_Optix"], CatalogState::Missing);
    assert!(plan_catalog(&BTreeSet::new(), &found).is_empty());
}

// ---------------------------------------------------------------- ignore_reason

#[test]
fn usage_billed_activated_tenants_are_not_ignored() {
    let t = tenant("t1", "Acme");
    assert_eq!(ignore_reason(&t, None), None);
    assert_eq!(ignore_reason(&t, Some(&manual("t1", 10, None))), None);
    assert_eq!(ignore_reason(&t, Some(&discovered("t1", 10, 500))), None);
}

#[test]
fn trial_term_and_unknown_billing_types_are_ignored() {
    for billing in [Some("trial"), Some("term"), Some("monthly"), Some(""), None] {
        let t = with_billing(tenant("t1", "Acme"), billing);
        let reason = ignore_reason(&t, None);
        assert!(
            reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{billing:?}: {reason:?}"
        );
    }
    let trial = ignore_reason(&with_billing(tenant("t1", "A"), Some("trial")), None).unwrap();
    assert!(trial.contains("trial"), "{trial}");
    let term = ignore_reason(&with_billing(tenant("t1", "A"), Some("term")), None).unwrap();
    assert!(term.contains("term"), "{term}");
    let other = ignore_reason(&with_billing(tenant("t1", "A"), Some("monthly")), None).unwrap();
    assert!(other.contains("monthly"), "{other}");
}

#[test]
fn tenants_not_activated_are_ignored() {
    for host in [None, Some("")] {
        let t = with_api_host(tenant("t1", "Acme"), host);
        let reason = ignore_reason(&t, None);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("not activated")),
            "{host:?}: {reason:?}"
        );
    }
}

#[test]
fn operator_ignored_mappings_are_ignored() {
    let t = tenant("t1", "Acme");
    let m = mapping("t1", MappingKind::Ignored, None, None);
    let reason = ignore_reason(&t, Some(&m)).expect("ignored");
    assert!(reason.contains("operator"), "{reason}");
    // Even with a company and agreement that would otherwise resolve.
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let m = mapping("t1", MappingKind::Ignored, Some(10), Some(500));
    assert!(matches!(
        resolve(&t, Some(&m), &companies, &agreements),
        Resolution::Ignored(_)
    ));
}

#[test]
fn resolve_one_reports_ignored_tenants_without_resolving() {
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let trial = with_billing(tenant("t1", "Acme"), Some("trial"));
    match resolve(&trial, None, &companies, &agreements) {
        Resolution::Ignored(reason) => assert!(reason.contains("trial")),
        other => panic!("{other:?}"),
    }
    let inactive = with_api_host(tenant("t1", "Acme"), None);
    assert!(matches!(
        resolve(&inactive, None, &companies, &agreements),
        Resolution::Ignored(_)
    ));
}

// ---------------------------------------------------------------- company

#[test]
fn company_name_match_is_exact_after_trim_and_case() {
    let companies = [company(9, "Alpha"), company(10, "Beta Corp")];
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(&tenant("t1", "  beta corp "), None, &companies, &agreements);
    assert_eq!(mapped(&r), (10, 500, true));

    let companies = [company(10, " BETA CORP ")];
    let r = resolve(&tenant("t1", "Beta Corp"), None, &companies, &agreements);
    assert_eq!(mapped(&r), (10, 500, true));
}

#[test]
fn company_names_are_never_matched_fuzzily() {
    let companies = [company(10, "Acme Ltd")];
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &agreements);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);

    let companies = [company(10, "Acme")];
    let r = resolve(&tenant("t1", "Acme Ltd"), None, &companies, &agreements);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);
    assert!(error_of(&r).message.contains("Acme Ltd"));
}

#[test]
fn deleted_companies_never_match() {
    let agreements = [agreement(500, 10, TYPE), agreement(501, 11, TYPE)];
    let only_deleted = [deleted(company(10, "Acme"))];
    let r = resolve(&tenant("t1", "Acme"), None, &only_deleted, &agreements);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);

    // A deleted namesake does not make the live one ambiguous.
    let both = [deleted(company(10, "Acme")), company(11, "Acme")];
    let r = resolve(&tenant("t1", "Acme"), None, &both, &agreements);
    assert_eq!(mapped(&r), (11, 501, true));
}

#[test]
fn two_companies_with_the_name_are_ambiguous_and_listed() {
    let companies = [
        company(10, "Acme"),
        company(11, "acme "),
        company(12, "Other"),
    ];
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &agreements);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyAmbiguous);
    let message = &error_of(&r).message;
    assert!(
        message.contains("10") && message.contains("11"),
        "{message}"
    );
    assert!(!message.contains("12"), "{message}");
}

#[test]
fn no_company_with_the_name_is_not_found() {
    let r = resolve(&tenant("t1", "Acme"), None, &[company(10, "Globex")], &[]);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);
    let r = resolve(&tenant("t1", "Acme"), None, &[], &[]);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);
}

#[test]
fn manual_mapping_wins_over_the_name() {
    let companies = [company(10, "Alpha"), company(20, "Zeta Inc")];
    let agreements = [agreement(500, 10, TYPE), agreement(600, 20, TYPE)];
    let m = manual("t1", 20, None);
    let r = resolve(&tenant("t1", "Alpha"), Some(&m), &companies, &agreements);
    assert_eq!(mapped(&r), (20, 600, false));
}

#[test]
fn manual_mapping_to_a_deleted_or_missing_company_is_not_found() {
    let companies = [company(10, "Alpha"), deleted(company(20, "Zeta Inc"))];
    let agreements = [agreement(500, 10, TYPE), agreement(600, 20, TYPE)];
    let t = tenant("t1", "Alpha");
    // No fall back to the name rule even though "Alpha" would match.
    let r = resolve(&t, Some(&manual("t1", 20, None)), &companies, &agreements);
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);
    let r = resolve(
        &t,
        Some(&manual("t1", 99, Some(500))),
        &companies,
        &agreements,
    );
    assert_eq!(unmapped_code(&r), ErrorCode::CompanyNotFound);
    assert!(error_of(&r).message.contains("99"));
}

#[test]
fn discovered_mapping_keeps_its_company_after_a_rename() {
    let companies = [company(10, "Acme Renamed")];
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (10, 500, false));
}

#[test]
fn discovered_mapping_to_a_deleted_company_falls_back_to_the_name() {
    let companies = [deleted(company(10, "Old")), company(11, "Acme")];
    let agreements = [agreement(500, 10, TYPE), agreement(501, 11, TYPE)];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (11, 501, true));
}

// ---------------------------------------------------------------- agreement

#[test]
fn only_an_active_agreement_of_the_type_and_company_is_picked() {
    let companies = [company(10, "Acme"), company(11, "Globex")];
    let agreements = [
        agreement(1, 10, "Block Time"),
        cancelled_agreement(agreement(2, 10, TYPE)),
        with_status(agreement(3, 10, TYPE), "Expired"),
        with_status(agreement(4, 10, TYPE), "Inactive"),
        agreement(5, 11, TYPE),
        {
            let mut flagged = agreement(6, 10, TYPE);
            flagged.cancelled_flag = Some(true);
            flagged
        },
        agreement(7, 10, " MANAGED services "),
    ];
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &agreements);
    assert_eq!(mapped(&r), (10, 7, true));
}

#[test]
fn agreement_type_setting_is_case_insensitive() {
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, "Managed Services")];
    let r = resolve_one(
        &tenant("t1", "Acme"),
        None,
        &companies,
        &agreements,
        "managed SERVICES",
    );
    assert_eq!(mapped(&r), (10, 500, true));
}

#[test]
fn no_eligible_agreement_is_not_found() {
    let companies = [company(10, "Acme")];
    let agreements = [
        agreement(1, 10, "Block Time"),
        cancelled_agreement(agreement(2, 10, TYPE)),
        with_status(agreement(3, 10, TYPE), "Expired"),
        agreement(4, 11, TYPE),
    ];
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &agreements);
    assert_eq!(agreement_problem(&r), (10, ErrorCode::AgreementNotFound));
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &[]);
    assert_eq!(agreement_problem(&r), (10, ErrorCode::AgreementNotFound));
}

#[test]
fn two_eligible_agreements_are_ambiguous() {
    let companies = [company(10, "Acme")];
    let agreements = [
        agreement(500, 10, TYPE),
        agreement(501, 10, TYPE),
        agreement(502, 10, "Other"),
    ];
    let r = resolve(&tenant("t1", "Acme"), None, &companies, &agreements);
    assert_eq!(agreement_problem(&r), (10, ErrorCode::AgreementAmbiguous));
    let message = &error_of(&r).message;
    assert!(
        message.contains("500") && message.contains("501"),
        "{message}"
    );
    assert!(!message.contains("502"), "{message}");
}

#[test]
fn manual_pinned_agreement_wins_even_of_another_type() {
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE), agreement(501, 10, "Block Time")];
    let m = manual("t1", 10, Some(501));
    let r = resolve(&tenant("t1", "Acme"), Some(&m), &companies, &agreements);
    assert_eq!(mapped(&r), (10, 501, false));

    // It also settles an otherwise ambiguous choice.
    let agreements = [agreement(500, 10, TYPE), agreement(501, 10, TYPE)];
    let m = manual("t1", 10, Some(501));
    let r = resolve(&tenant("t1", "Acme"), Some(&m), &companies, &agreements);
    assert_eq!(mapped(&r), (10, 501, false));
}

#[test]
fn manual_pinned_agreement_unusable_or_foreign_is_not_found() {
    let companies = [company(10, "Acme"), company(11, "Globex")];
    let t = tenant("t1", "Acme");
    let cases = [
        ("cancelled", cancelled_agreement(agreement(501, 10, TYPE))),
        ("cancelled flag only", {
            let mut a = agreement(501, 10, TYPE);
            a.cancelled_flag = Some(true);
            a
        }),
        ("expired", with_status(agreement(501, 10, TYPE), "Expired")),
        ("another company's", agreement(501, 11, TYPE)),
    ];
    for (what, pinned) in cases {
        // An eligible agreement exists: a manual pin must not silently fall back to it.
        let agreements = [agreement(500, 10, TYPE), pinned];
        let r = resolve(
            &t,
            Some(&manual("t1", 10, Some(501))),
            &companies,
            &agreements,
        );
        assert_eq!(
            agreement_problem(&r),
            (10, ErrorCode::AgreementNotFound),
            "{what}"
        );
        assert!(error_of(&r).message.contains("501"), "{what}");
    }
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(
        &t,
        Some(&manual("t1", 10, Some(999))),
        &companies,
        &agreements,
    );
    assert_eq!(agreement_problem(&r), (10, ErrorCode::AgreementNotFound));
}

#[test]
fn manual_mapping_without_agreement_uses_the_rule() {
    let companies = [company(10, "Acme"), company(20, "Zeta")];
    let agreements = [agreement(600, 20, "Block Time"), agreement(601, 20, TYPE)];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&manual("t1", 20, None)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (20, 601, false));

    let agreements = [agreement(600, 20, "Block Time")];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&manual("t1", 20, None)),
        &companies,
        &agreements,
    );
    assert_eq!(agreement_problem(&r), (20, ErrorCode::AgreementNotFound));
}

#[test]
fn discovered_mapping_still_valid_is_not_newly_discovered() {
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (10, 500, false));
}

#[test]
fn discovered_mapping_with_a_cancelled_agreement_falls_back_to_the_rule() {
    let companies = [company(10, "Acme")];
    let agreements = [
        cancelled_agreement(agreement(500, 10, TYPE)),
        agreement(501, 10, TYPE),
    ];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (10, 501, true));

    // Nothing else eligible: not found, never the cancelled one.
    let agreements = [cancelled_agreement(agreement(500, 10, TYPE))];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(agreement_problem(&r), (10, ErrorCode::AgreementNotFound));
}

#[test]
fn discovered_mapping_with_an_agreement_of_another_type_falls_back_to_the_rule() {
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, "Block Time"), agreement(501, 10, TYPE)];
    let r = resolve(
        &tenant("t1", "Acme"),
        Some(&discovered("t1", 10, 500)),
        &companies,
        &agreements,
    );
    assert_eq!(mapped(&r), (10, 501, true));
}

// ---------------------------------------------------------------- resolve_all

fn mappings(list: &[Mapping]) -> BTreeMap<String, Mapping> {
    list.iter()
        .map(|m| (m.tenant_id.clone(), m.clone()))
        .collect()
}

#[test]
fn resolve_all_keeps_order_and_resolves_each_tenant() {
    let tenants = [
        tenant("t1", "Acme"),
        with_billing(tenant("t2", "Acme"), Some("trial")),
        tenant("t3", "Globex"),
        tenant("t4", "Nobody"),
    ];
    let companies = [company(10, "Acme"), company(11, "Globex")];
    let agreements = [agreement(500, 10, TYPE), agreement(501, 11, TYPE)];
    let r = resolve_all(&tenants, &BTreeMap::new(), &companies, &agreements, TYPE);
    assert_eq!(r.len(), 4);
    assert_eq!(mapped(&r[0]), (10, 500, true));
    assert!(matches!(r[1], Resolution::Ignored(_)));
    assert_eq!(mapped(&r[2]), (11, 501, true));
    assert_eq!(unmapped_code(&r[3]), ErrorCode::CompanyNotFound);
}

#[test]
fn resolve_all_uses_each_tenants_own_mapping() {
    let tenants = [tenant("t1", "Acme"), tenant("t2", "Globex")];
    let companies = [
        company(10, "Acme"),
        company(11, "Globex"),
        company(12, "Initech"),
    ];
    let agreements = [
        agreement(500, 10, TYPE),
        agreement(501, 11, TYPE),
        agreement(502, 12, TYPE),
    ];
    let m = mappings(&[manual("t2", 12, None)]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    assert_eq!(mapped(&r[0]), (10, 500, true));
    assert_eq!(mapped(&r[1]), (12, 502, false));
}

#[test]
fn tenants_sharing_an_agreement_are_both_refused() {
    let tenants = [
        tenant("t1", "Acme"),
        tenant("t2", " ACME"),
        tenant("t3", "Globex"),
    ];
    let companies = [company(10, "Acme"), company(11, "Globex")];
    let agreements = [agreement(500, 10, TYPE), agreement(501, 11, TYPE)];
    let r = resolve_all(&tenants, &BTreeMap::new(), &companies, &agreements, TYPE);
    assert_eq!(agreement_problem(&r[0]), (10, ErrorCode::AgreementShared));
    assert_eq!(agreement_problem(&r[1]), (10, ErrorCode::AgreementShared));
    assert!(error_of(&r[0]).message.contains("500"));
    assert_eq!(mapped(&r[2]), (11, 501, true));
}

#[test]
fn a_single_manual_pin_keeps_a_shared_agreement() {
    let tenants = [tenant("t1", "Acme"), tenant("t2", "Acme Subsidiary")];
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let m = mappings(&[manual("t2", 10, Some(500))]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    assert_eq!(agreement_problem(&r[0]), (10, ErrorCode::AgreementShared));
    assert_eq!(mapped(&r[1]), (10, 500, false));
}

#[test]
fn a_manual_pin_also_wins_against_a_discovered_mapping() {
    let tenants = [tenant("t1", "Acme"), tenant("t2", "Other")];
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let m = mappings(&[discovered("t1", 10, 500), manual("t2", 10, Some(500))]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    assert_eq!(agreement_problem(&r[0]), (10, ErrorCode::AgreementShared));
    assert_eq!(mapped(&r[1]), (10, 500, false));
}

#[test]
fn manual_mappings_without_a_pinned_agreement_do_not_keep_a_shared_one() {
    let tenants = [tenant("t1", "Acme"), tenant("t2", "Other")];
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let m = mappings(&[manual("t2", 10, None)]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    assert_eq!(agreement_problem(&r[0]), (10, ErrorCode::AgreementShared));
    assert_eq!(agreement_problem(&r[1]), (10, ErrorCode::AgreementShared));
}

#[test]
fn two_manual_pins_of_one_agreement_are_both_refused() {
    let tenants = [tenant("t1", "A"), tenant("t2", "B"), tenant("t3", "C")];
    let companies = [company(10, "Acme")];
    let agreements = [agreement(500, 10, TYPE)];
    let m = mappings(&[
        manual("t1", 10, Some(500)),
        manual("t2", 10, Some(500)),
        manual("t3", 10, None),
    ]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    for (i, res) in r.iter().enumerate() {
        assert_eq!(
            agreement_problem(res),
            (10, ErrorCode::AgreementShared),
            "tenant {i}"
        );
    }
}

#[test]
fn every_error_report_carries_its_codes_advice() {
    let companies = [
        company(10, "Acme"),
        company(11, "Dup"),
        company(12, "Dup"),
        company(13, "Two"),
        company(14, "Shared"),
    ];
    let agreements = [
        agreement(500, 13, TYPE),
        agreement(501, 13, TYPE),
        agreement(502, 14, TYPE),
    ];
    let tenants = [
        tenant("t1", "Nobody"),
        tenant("t2", "Dup"),
        tenant("t3", "Acme"),
        tenant("t4", "Two"),
        tenant("t5", "Shared"),
        tenant("t6", "Shared"),
        tenant("t7", "Manual"),
    ];
    let m = mappings(&[manual("t7", 10, Some(999))]);
    let r = resolve_all(&tenants, &m, &companies, &agreements, TYPE);
    let codes: Vec<ErrorCode> = r.iter().map(|x| error_of(x).code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::CompanyNotFound,
            ErrorCode::CompanyAmbiguous,
            ErrorCode::AgreementNotFound,
            ErrorCode::AgreementAmbiguous,
            ErrorCode::AgreementShared,
            ErrorCode::AgreementShared,
            ErrorCode::AgreementNotFound,
        ]
    );
}

// ---------------------------------------------------------------- plan_additions

struct Setup {
    selected: BTreeSet<String>,
    catalog: BTreeMap<String, CatalogState>,
    zero_usage: ZeroUsage,
    month: Month,
}

impl Setup {
    /// IXA is product 100, EP is product 200, both selected and existing.
    fn new() -> Self {
        let mut catalog = BTreeMap::new();
        catalog.insert(IXA.to_owned(), CatalogState::Existing(100));
        catalog.insert(EP.to_owned(), CatalogState::Existing(200));
        Self {
            selected: set(&[IXA, EP]),
            catalog,
            zero_usage: ZeroUsage::Zero,
            month: feb_2026(),
        }
    }
    fn zero(mut self, z: ZeroUsage) -> Self {
        self.zero_usage = z;
        self
    }
    fn state(mut self, identifier: &str, state: CatalogState) -> Self {
        self.catalog.insert(identifier.to_owned(), state);
        self
    }
    fn plan(
        &self,
        usage: Option<&TenantUsage>,
        additions: &[Addition],
        records: &[AdditionRecord],
    ) -> Vec<ProductPlan> {
        let rules = AdditionRules {
            selected: &self.selected,
            catalog: &self.catalog,
            zero_usage: self.zero_usage,
            month: self.month,
        };
        plan_additions(usage, additions, records, &rules)
    }
}

/// The plan of the only product planned.
fn only(plans: Vec<ProductPlan>) -> ProductPlan {
    assert_eq!(plans.len(), 1, "{plans:?}");
    plans.into_iter().next().expect("one plan")
}

#[test]
fn usage_without_addition_creates_one_from_the_first_of_the_month() {
    let u = usage(&[(IXA, 10.0)]);
    let p = only(Setup::new().plan(Some(&u), &[], &[]));
    assert_eq!(
        p,
        ProductPlan {
            identifier: IXA.to_owned(),
            sophos_quantity: 10.0,
            op: AdditionOp::Create {
                product_id: Some(100),
                quantity: 10.0,
                effective_date: "2026-02-01T00:00:00Z".to_owned(),
            },
            adopted: false,
            drifted_from: None,
        }
    );
}

#[test]
fn missing_catalog_item_creates_without_product_id() {
    let u = usage(&[(IXA, 3.0)]);
    let p = only(
        Setup::new()
            .state(IXA, CatalogState::Missing)
            .plan(Some(&u), &[], &[]),
    );
    assert_eq!(
        p.op,
        AdditionOp::Create {
            product_id: None,
            quantity: 3.0,
            effective_date: "2026-02-01T00:00:00Z".to_owned()
        }
    );
    assert!(!p.adopted);
}

#[test]
fn same_quantity_is_unchanged() {
    let u = usage(&[(IXA, 10.0)]);
    let p = only(Setup::new().plan(Some(&u), &[addition(1, 100, 10.0)], &[record(IXA, 1)]));
    assert_eq!(
        p.op,
        AdditionOp::Unchanged {
            addition_id: 1,
            quantity: 10.0
        }
    );
    assert_eq!(p.sophos_quantity, 10.0);
    assert!(!p.adopted);
}

#[test]
fn different_quantity_is_updated() {
    let u = usage(&[(IXA, 12.0)]);
    let p = only(Setup::new().plan(Some(&u), &[addition(1, 100, 7.0)], &[record(IXA, 1)]));
    assert_eq!(
        p.op,
        AdditionOp::Update {
            addition_id: 1,
            old: 7.0,
            new: 12.0
        }
    );
    assert_eq!(p.sophos_quantity, 12.0);
}

#[test]
fn an_addition_without_quantity_counts_as_zero() {
    let u = usage(&[(IXA, 4.0)]);
    let mut a = addition(1, 100, 0.0);
    a.quantity = None;
    let p = only(Setup::new().plan(Some(&u), &[a], &[record(IXA, 1)]));
    assert_eq!(
        p.op,
        AdditionOp::Update {
            addition_id: 1,
            old: 0.0,
            new: 4.0
        }
    );
}

#[test]
fn two_active_additions_of_a_product_are_ambiguous() {
    let u = usage(&[(IXA, 10.0)]);
    let additions = [addition(1, 100, 10.0), addition(2, 100, 4.0)];
    for zero in [ZeroUsage::Keep, ZeroUsage::Zero, ZeroUsage::Cancel] {
        let p = only(
            Setup::new()
                .zero(zero)
                .plan(Some(&u), &additions, &[record(IXA, 1)]),
        );
        assert_eq!(
            p.op,
            AdditionOp::Ambiguous {
                addition_ids: vec![1, 2]
            }
        );
        assert_eq!(p.identifier, IXA);
    }
    // Without usage too.
    let p = only(Setup::new().plan(None, &additions, &[]));
    assert_eq!(
        p.op,
        AdditionOp::Ambiguous {
            addition_ids: vec![1, 2]
        }
    );
}

#[test]
fn cancelled_additions_are_ignored() {
    let u = usage(&[(IXA, 9.0)]);
    let mut by_date = addition(1, 100, 5.0);
    by_date.cancelled_date = Some("2026-01-31T00:00:00Z".to_owned());
    let mut by_status = addition(2, 100, 5.0);
    by_status.addition_status = Some("Cancelled".to_owned());
    let mut empty_date = addition(3, 100, 5.0);
    empty_date.cancelled_date = Some(String::new());

    let p = only(Setup::new().plan(
        Some(&u),
        &[by_date.clone(), by_status.clone(), empty_date],
        &[],
    ));
    assert_eq!(
        p.op,
        AdditionOp::Update {
            addition_id: 3,
            old: 5.0,
            new: 9.0
        }
    );

    // Only cancelled ones: a new addition is created.
    let p = only(Setup::new().plan(Some(&u), &[by_date.clone(), by_status.clone()], &[]));
    assert!(
        matches!(
            p.op,
            AdditionOp::Create {
                product_id: Some(100),
                ..
            }
        ),
        "{p:?}"
    );

    // Only cancelled ones and no usage: nothing to do, whatever the zero rule.
    for zero in [ZeroUsage::Keep, ZeroUsage::Zero, ZeroUsage::Cancel] {
        assert!(
            Setup::new()
                .zero(zero)
                .plan(None, &[by_date.clone(), by_status.clone()], &[])
                .is_empty()
        );
    }
}

#[test]
fn additions_of_other_products_are_ignored() {
    let u = usage(&[(IXA, 2.0)]);
    let additions = [addition(1, 999, 2.0), addition(2, 200, 0.0)];
    let plans = Setup::new().plan(Some(&u), &additions, &[]);
    let ixa = plans
        .iter()
        .find(|p| p.identifier == IXA)
        .expect("IXA planned");
    assert_eq!(
        ixa.op,
        AdditionOp::Create {
            product_id: Some(100),
            quantity: 2.0,
            effective_date: "2026-02-01T00:00:00Z".to_owned()
        }
    );
    assert!(
        plans
            .iter()
            .all(|p| !matches!(p.op, AdditionOp::Update { addition_id: 1, .. }))
    );
}

#[test]
fn additions_with_no_product_do_not_match_a_missing_catalog_item() {
    let u = usage(&[(IXA, 2.0)]);
    let mut a = addition(1, 0, 2.0);
    a.product = None;
    let p = only(
        Setup::new()
            .state(IXA, CatalogState::Missing)
            .plan(Some(&u), &[a], &[]),
    );
    assert!(
        matches!(
            p.op,
            AdditionOp::Create {
                product_id: None,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn zero_usage_keep_leaves_the_addition_unchanged() {
    let a = [addition(1, 100, 5.0)];
    let r = [record(IXA, 1)];
    for u in [None, Some(usage(&[])), Some(usage(&[(IXA, 0.0)]))] {
        let p = only(Setup::new().zero(ZeroUsage::Keep).plan(u.as_ref(), &a, &r));
        assert_eq!(
            p.op,
            AdditionOp::Unchanged {
                addition_id: 1,
                quantity: 5.0
            },
            "{u:?}"
        );
        assert_eq!(p.sophos_quantity, 0.0);
    }
}

#[test]
fn zero_usage_zero_sets_the_quantity_to_zero() {
    let r = [record(IXA, 1)];
    for u in [None, Some(usage(&[])), Some(usage(&[(IXA, 0.0)]))] {
        let p = only(Setup::new().zero(ZeroUsage::Zero).plan(
            u.as_ref(),
            &[addition(1, 100, 5.0)],
            &r,
        ));
        assert_eq!(
            p.op,
            AdditionOp::Update {
                addition_id: 1,
                old: 5.0,
                new: 0.0
            },
            "{u:?}"
        );
        assert_eq!(p.sophos_quantity, 0.0);

        let p = only(Setup::new().zero(ZeroUsage::Zero).plan(
            u.as_ref(),
            &[addition(1, 100, 0.0)],
            &r,
        ));
        assert_eq!(
            p.op,
            AdditionOp::Unchanged {
                addition_id: 1,
                quantity: 0.0
            },
            "{u:?}"
        );
    }
}

#[test]
fn zero_usage_cancel_cancels_at_the_end_of_the_month() {
    let a = [addition(1, 100, 5.0)];
    let r = [record(IXA, 1)];
    for u in [None, Some(usage(&[])), Some(usage(&[(IXA, 0.0)]))] {
        let p = only(
            Setup::new()
                .zero(ZeroUsage::Cancel)
                .plan(u.as_ref(), &a, &r),
        );
        assert_eq!(
            p.op,
            AdditionOp::Cancel {
                addition_id: 1,
                old: 5.0,
                cancelled_date: "2026-02-28T00:00:00Z".to_owned()
            },
            "{u:?}"
        );
    }
    let mut leap = Setup::new().zero(ZeroUsage::Cancel);
    leap.month = Month::new(2024, 2).expect("month");
    assert_eq!(
        only(leap.plan(None, &a, &r)).op,
        AdditionOp::Cancel {
            addition_id: 1,
            old: 5.0,
            cancelled_date: "2024-02-29T00:00:00Z".to_owned()
        }
    );
    let mut december = Setup::new().zero(ZeroUsage::Cancel);
    december.month = Month::new(2025, 12).expect("month");
    assert_eq!(
        only(december.plan(None, &a, &r)).op,
        AdditionOp::Cancel {
            addition_id: 1,
            old: 5.0,
            cancelled_date: "2025-12-31T00:00:00Z".to_owned()
        }
    );
}

#[test]
fn create_uses_the_first_of_the_planned_month() {
    let mut s = Setup::new();
    s.month = Month::new(2025, 12).expect("month");
    let p = only(s.plan(Some(&usage(&[(EP, 1.0)])), &[], &[]));
    assert_eq!(
        p.op,
        AdditionOp::Create {
            product_id: Some(200),
            quantity: 1.0,
            effective_date: "2025-12-01T00:00:00Z".to_owned()
        }
    );
    assert_eq!(p.identifier, EP);
}

#[test]
fn no_usage_and_no_addition_plans_nothing() {
    for zero in [ZeroUsage::Keep, ZeroUsage::Zero, ZeroUsage::Cancel] {
        let s = Setup::new().zero(zero);
        assert!(s.plan(None, &[], &[]).is_empty());
        assert!(s.plan(Some(&usage(&[(IXA, 0.0)])), &[], &[]).is_empty());
        assert!(s.plan(Some(&usage(&[])), &[], &[]).is_empty());
    }
}

#[test]
fn adopted_when_the_store_does_not_know_the_addition() {
    let u = usage(&[(IXA, 10.0)]);
    let a = [addition(1, 100, 10.0)];
    let s = Setup::new();
    assert!(only(s.plan(Some(&u), &a, &[])).adopted, "no record");
    assert!(
        only(s.plan(Some(&u), &a, &[record(IXA, 2)])).adopted,
        "record of another addition"
    );
    assert!(
        only(s.plan(Some(&u), &a, &[record(EP, 1)])).adopted,
        "record of another identifier"
    );
    assert!(
        !only(s.plan(Some(&u), &a, &[record(EP, 1), record(IXA, 1)])).adopted,
        "matching record"
    );

    // Adoption is reported whatever the operation.
    let p = only(s.plan(Some(&usage(&[(IXA, 3.0)])), &a, &[]));
    assert_eq!(
        p.op,
        AdditionOp::Update {
            addition_id: 1,
            old: 10.0,
            new: 3.0
        }
    );
    assert!(p.adopted);
    let p = only(s.plan(None, &a, &[]));
    assert_eq!(
        p.op,
        AdditionOp::Update {
            addition_id: 1,
            old: 10.0,
            new: 0.0
        }
    );
    assert!(p.adopted);
}

#[test]
fn a_remembered_quantity_other_than_connectwise_s_is_drift() {
    let u = usage(&[(IXA, 10.0)]);
    let a = [addition(1, 100, 10.0)];
    let s = Setup::new();
    let remembered = |quantity| AdditionRecord {
        quantity,
        ..record(IXA, 1)
    };
    let p = only(s.plan(Some(&u), &a, &[remembered(7.0)]));
    assert_eq!(
        p.op,
        AdditionOp::Unchanged {
            addition_id: 1,
            quantity: 10.0
        }
    );
    assert_eq!(
        p.drifted_from,
        Some(7.0),
        "remembered 7, ConnectWise has 10"
    );
    assert!(!p.adopted);
    let p = only(s.plan(Some(&u), &a, &[remembered(10.0)]));
    assert_eq!(p.drifted_from, None, "in step");
    let p = only(s.plan(Some(&u), &a, &[]));
    assert_eq!(p.drifted_from, None, "an adoption has nothing remembered");
    assert!(p.adopted);
    // Drift is about ConnectWise's current quantity, whatever the operation.
    let p = only(s.plan(Some(&usage(&[(IXA, 3.0)])), &a, &[remembered(7.0)]));
    assert!(matches!(p.op, AdditionOp::Update { old, new, .. } if old == 10.0 && new == 3.0));
    assert_eq!(p.drifted_from, Some(7.0));
}

#[test]
fn remembered_additions_cancelled_in_connectwise_are_found() {
    let cancelled = Addition {
        cancelled_date: Some("2026-01-31T00:00:00Z".to_owned()),
        ..addition(1, 100, 4.0)
    };
    let inactive = Addition {
        addition_status: Some("Cancelled".to_owned()),
        ..addition(2, 200, 6.0)
    };
    let additions = [cancelled, inactive, addition(3, 100, 9.0)];
    let records = [
        record(IXA, 1),
        record(EP, 2),
        record(IXA, 3),
        record(IXA, 4),
    ];
    let found: Vec<i64> = cancelled_records(&additions, &records)
        .iter()
        .map(|r| r.addition_id)
        .collect();
    assert_eq!(found, [1, 2], "active (3) and unknown (4) ones stay");
    assert!(cancelled_records(&additions, &[]).is_empty());
}

#[test]
fn ambiguous_catalog_with_usage_is_unavailable() {
    let u = usage(&[(IXA, 4.0), (EP, 2.0)]);
    let s = Setup::new().state(IXA, CatalogState::Ambiguous(vec![100, 101]));
    let plans = s.plan(Some(&u), &[addition(1, 100, 4.0)], &[]);
    assert_eq!(plans.len(), 2, "{plans:?}");
    let ixa = plans
        .iter()
        .find(|p| p.identifier == IXA)
        .expect("IXA planned");
    assert_eq!(ixa.op, AdditionOp::CatalogUnavailable);
    assert_eq!(ixa.sophos_quantity, 4.0);
    assert!(!ixa.adopted);
    let ep = plans
        .iter()
        .find(|p| p.identifier == EP)
        .expect("EP planned");
    assert!(matches!(
        ep.op,
        AdditionOp::Create {
            product_id: Some(200),
            ..
        }
    ));
}

#[test]
fn products_not_selected_never_appear() {
    let u = usage(&[(IXA, 4.0), (XDR, 7.0)]);
    let s = Setup::new().state(XDR, CatalogState::Existing(300));
    let additions = [addition(1, 300, 1.0), addition(2, 100, 4.0)];
    let plans = s.plan(Some(&u), &additions, &[]);
    assert!(plans.iter().all(|p| p.identifier != XDR), "{plans:?}");
    assert_eq!(
        only(plans).op,
        AdditionOp::Unchanged {
            addition_id: 2,
            quantity: 4.0
        }
    );

    // Nothing selected: nothing planned.
    let mut none = Setup::new();
    none.selected.clear();
    assert!(none.plan(Some(&u), &additions, &[]).is_empty());
}

#[test]
fn each_selected_product_is_planned_independently() {
    let u = usage(&[(IXA, 4.0)]);
    let additions = [addition(1, 100, 4.0), addition(2, 200, 6.0)];
    let plans = Setup::new().zero(ZeroUsage::Cancel).plan(
        Some(&u),
        &additions,
        &[AdditionRecord {
            quantity: 4.0,
            ..record(IXA, 1)
        }],
    );
    assert_eq!(
        plans,
        vec![
            ProductPlan {
                identifier: EP.to_owned(),
                sophos_quantity: 0.0,
                op: AdditionOp::Cancel {
                    addition_id: 2,
                    old: 6.0,
                    cancelled_date: "2026-02-28T00:00:00Z".to_owned(),
                },
                adopted: true,
                drifted_from: None,
            },
            ProductPlan {
                identifier: IXA.to_owned(),
                sophos_quantity: 4.0,
                op: AdditionOp::Unchanged {
                    addition_id: 1,
                    quantity: 4.0
                },
                adopted: false,
                drifted_from: None,
            },
        ]
    );
}

#[test]
fn a_product_billed_before_as_another_item_is_not_created_again() {
    // IXA was billed as item 100 (addition 1, remembered); catalogItems now maps
    // it to the partner's item 300. A new addition would bill the usage twice.
    let u = usage(&[(IXA, 4.0)]);
    let additions = [addition(1, 100, 4.0)];
    let setup = Setup::new().state(IXA, CatalogState::Existing(300));
    let p = only(
        setup
            .plan(Some(&u), &additions, &[record(IXA, 1)])
            .into_iter()
            .filter(|p| p.identifier == IXA)
            .collect(),
    );
    assert_eq!(
        p.op,
        AdditionOp::Ambiguous {
            addition_ids: vec![1]
        }
    );
    // Once that addition is cancelled, the new item gets its addition.
    let cancelled = [Addition {
        cancelled_date: Some("2026-01-31T00:00:00Z".to_owned()),
        addition_status: Some("Cancelled".to_owned()),
        ..addition(1, 100, 4.0)
    }];
    let p = only(
        setup
            .plan(Some(&u), &cancelled, &[record(IXA, 1)])
            .into_iter()
            .filter(|p| p.identifier == IXA)
            .collect(),
    );
    assert!(
        matches!(
            p.op,
            AdditionOp::Create {
                product_id: Some(300),
                ..
            }
        ),
        "{p:?}"
    );
}

// ---------------------------------------------------------------- usage drop guard

fn with_usage(tenants: &[(&str, &[(&str, f64)])]) -> UsageSummary {
    UsageSummary {
        tenants: tenants
            .iter()
            .map(|(id, entries)| ((*id).to_owned(), usage(entries)))
            .collect(),
        unassigned: Vec::new(),
    }
}

fn result_of(tenant_id: &str, quantities: &[f64]) -> CustomerReport {
    CustomerReport {
        tenant_id: tenant_id.to_owned(),
        tenant_name: tenant_id.to_owned(),
        status: crate::sync::report::CustomerState::Synced,
        reason: None,
        company_id: None,
        company_identifier: None,
        company_name: None,
        agreement_id: None,
        agreement_name: None,
        agreement_type: None,
        products: quantities
            .iter()
            .map(|q| crate::sync::report::ProductReport {
                identifier: IXA.to_owned(),
                sophos_quantity: *q,
                previous_quantity: None,
                new_quantity: None,
                addition_id: None,
                action: crate::sync::report::ProductAction::Unchanged,
                proposed_quantity: None,
                held_change_id: None,
                review_rule: None,
            })
            .collect(),
        errors: Vec::new(),
    }
}

fn drop_of(previous: u64, missing: u64) -> UsageDrop {
    UsageDrop { previous, missing }
}

#[test]
fn customers_with_usage_are_listed_tenants_with_a_selected_product_above_zero() {
    let tenants = [
        tenant("a", "A"),
        tenant("b", "B"),
        tenant("c", "C"),
        tenant("d", "D"),
    ];
    let summary = with_usage(&[
        ("a", &[(IXA, 3.0)]),
        ("b", &[(IXA, 0.0)]), // zero is no usage
        ("c", &[(EP, 5.0)]),  // not a selected product
        ("x", &[(IXA, 9.0)]), // not in the tenant list
        ("d", &[(EP, 1.0), (IXA, 1.0)]),
    ]);
    assert_eq!(
        customers_with_usage(&tenants, &summary, &set(&[IXA])),
        set(&["a", "d"])
    );
}

#[test]
fn a_stored_result_had_usage_when_a_product_had_a_quantity() {
    assert!(had_usage(&result_of("a", &[0.0, 2.0])));
    assert!(!had_usage(&result_of("a", &[0.0])));
    assert!(!had_usage(&result_of("a", &[])), "unmapped: no products");
}

#[test]
fn the_drop_counts_the_compared_customers_with_usage_missing_now() {
    let now = set(&["a"]);
    let mut drop = UsageDrop::default();
    drop.count(&result_of("a", &[4.0]), &now);
    drop.count(&result_of("b", &[4.0]), &now);
    drop.count(&result_of("c", &[0.0]), &now); // had none then: not counted
    assert_eq!(drop, drop_of(2, 1));
}

#[test]
fn the_guard_trips_on_strictly_more_than_its_percentage() {
    assert!(drop_of(20, 16).exceeds(20.0));
    assert!(drop_of(20, 5).exceeds(20.0));
    assert!(!drop_of(20, 4).exceeds(20.0), "exactly 20% is not more");
    assert!(!drop_of(20, 1).exceeds(20.0), "5%");
    assert!(!drop_of(20, 20).exceeds(0.0), "0 is off");
    assert!(!drop_of(0, 0).exceeds(20.0), "nothing to compare");
    assert!(drop_of(3, 3).exceeds(99.9));
}

#[test]
fn only_decreases_zeros_and_cancels_are_lowered() {
    let p = |op| ProductPlan {
        identifier: IXA.to_owned(),
        sophos_quantity: 0.0,
        op,
        adopted: false,
        drifted_from: None,
    };
    let update = |old, new| AdditionOp::Update {
        addition_id: 1,
        old,
        new,
    };
    assert_eq!(lowered_to(&p(update(5.0, 3.0))), Some(3.0));
    assert_eq!(lowered_to(&p(update(5.0, 0.0))), Some(0.0));
    assert_eq!(lowered_to(&p(update(5.0, 8.0))), None);
    let cancel = AdditionOp::Cancel {
        addition_id: 1,
        old: 5.0,
        cancelled_date: "2026-02-28T00:00:00Z".into(),
    };
    assert_eq!(lowered_to(&p(cancel)), Some(0.0));
    let create = AdditionOp::Create {
        product_id: Some(1),
        quantity: 2.0,
        effective_date: "2026-02-01T00:00:00Z".into(),
    };
    assert_eq!(lowered_to(&p(create)), None);
    let unchanged = AdditionOp::Unchanged {
        addition_id: 1,
        quantity: 5.0,
    };
    assert_eq!(lowered_to(&p(unchanged)), None);
}

#[test]
fn only_finished_writing_unguarded_counted_runs_are_compared() {
    let run = |id: &str, status, dry_run, report: serde_json::Value| RunRecord {
        run_id: id.to_owned(),
        status,
        started_at: epoch(),
        finished_at: None,
        month: "2026-02".into(),
        dry_run,
        trigger: "test".into(),
        started_by: None,
        report,
        expires_at: None,
    };
    let counted = serde_json::json!({"customersWithUsage": 12});
    let ok = run("r1", RunStatus::Succeeded, false, counted.clone());
    assert!(comparable_run(&ok, "r9"));
    assert!(!comparable_run(&ok, "r1"), "not the run itself");
    assert!(comparable_run(
        &run("r1", RunStatus::Partial, false, counted.clone()),
        "r9"
    ));
    for status in [
        RunStatus::Failed,
        RunStatus::Incomplete,
        RunStatus::Running,
        RunStatus::Skipped,
    ] {
        assert!(!comparable_run(
            &run("r1", status, false, counted.clone()),
            "r9"
        ));
    }
    assert!(!comparable_run(
        &run("r1", RunStatus::Succeeded, true, counted),
        "r9"
    ));
    let uncounted = serde_json::json!({});
    assert!(!comparable_run(
        &run("r1", RunStatus::Succeeded, false, uncounted),
        "r9"
    ));
    let guarded = serde_json::json!({"customersWithUsage": 2, "usageDropGuarded": true});
    assert!(!comparable_run(
        &run("r1", RunStatus::Partial, false, guarded),
        "r9"
    ));
}
