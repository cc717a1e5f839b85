//! The pure message builder: each trigger, and the quiet cases.

use super::*;
use crate::sync::report::{CustomerCounts, CustomerState, ErrorReport, UnmappedProduct};
use serde_json::json;

const CONSOLE: &str = "https://abc.execute-api.eu-west-1.amazonaws.com/console";

fn report(status: &str) -> RunReport {
    serde_json::from_value(json!({
        "runId": "20261129T060000Z-ab12", "status": status, "month": "2026-11",
        "dryRun": false, "startedAt": "2026-11-29T06:00:00Z",
        "finishedAt": "2026-11-29T06:01:00Z", "errors": [], "usageAvailable": true,
        "catalog": [], "unassignedUsage": [],
        "apiCalls": {"sophos": 3, "connectwise": 40}, "writes": 6
    }))
    .expect("a report")
}

fn clean_counts() -> CustomerCounts {
    CustomerCounts {
        total: 10,
        synced: 9,
        ignored: 1,
        ..CustomerCounts::default()
    }
}

fn customer_with(codes: &[ErrorCode]) -> CustomerReport {
    serde_json::from_value::<CustomerReport>(json!({
        "tenantId": "t1", "tenantName": "Acme", "status": "error", "reason": null,
        "companyId": null, "companyIdentifier": null, "agreementId": null,
        "agreementName": null, "agreementType": null, "products": [], "errors": []
    }))
    .map(|mut c| {
        c.status = CustomerState::Error;
        c.errors = codes
            .iter()
            .map(|code| ErrorReport::new(*code, "TOPSECRET-free message"))
            .collect();
        c
    })
    .expect("a customer")
}

fn text(n: &Notice) -> String {
    n.text()
}

#[test]
fn a_clean_run_sends_nothing() {
    let mut r = report("succeeded");
    r.customer_counts = clean_counts();
    assert_eq!(notice_for_report(&r, &[], Some(CONSOLE)), None);
}

#[test]
fn dry_incomplete_running_and_skipped_runs_send_nothing_even_with_problems() {
    for status in ["succeeded", "incomplete", "running", "skipped"] {
        let mut r = report(status);
        r.customer_counts = CustomerCounts {
            error: 2,
            with_errors: 2,
            held: 1,
            ..clean_counts()
        };
        r.dry_run = status == "succeeded";
        assert_eq!(
            notice_for_report(&r, &[], Some(CONSOLE)),
            None,
            "{status} (dry run: {})",
            r.dry_run
        );
    }
}

#[test]
fn a_failed_run_says_so_with_its_codes_and_links_to_the_run() {
    let mut r = report("failed");
    r.errors = vec![ErrorReport::new(
        ErrorCode::UpstreamUnavailable,
        "Sophos answered 503 <five times>",
    )];
    let n = notice_for_report(&r, &[], Some(CONSOLE)).expect("a failed run is notified");
    assert_eq!(n.run_id, "20261129T060000Z-ab12");
    assert_eq!(n.subject, "sophos-cw-sync 2026-11: run failed");
    let t = text(&n);
    assert!(
        t.contains("20261129T060000Z-ab12") && t.contains("2026-11"),
        "{t}"
    );
    assert!(t.contains("ended with status failed"), "{t}");
    assert!(
        t.contains("The run failed (first codes: UPSTREAM_UNAVAILABLE x1). First: Sophos"),
        "{t}"
    );
    assert!(t.contains("‹five times›") && !t.contains('<'), "{t}");
    assert!(
        t.contains(&format!("{CONSOLE}/runs/20261129T060000Z-ab12")),
        "{t}"
    );
    assert_eq!(t.matches("/runs/").count(), 1, "the run link once: {t}");
}

#[test]
fn customers_in_error_are_counted_with_their_first_codes_and_linked() {
    let mut r = report("partial");
    r.customer_counts = CustomerCounts {
        error: 2,
        with_errors: 3,
        errors: 4,
        ..clean_counts()
    };
    let customers = [
        customer_with(&[ErrorCode::CompanyNotFound, ErrorCode::CwValidation]),
        customer_with(&[ErrorCode::CompanyNotFound]),
    ];
    let n = notice_for_report(&r, &customers, Some(CONSOLE)).unwrap();
    let t = text(&n);
    assert!(
        t.contains(
            "Customers with errors: 3 (2 in error; first codes: COMPANY_NOT_FOUND x2, CW_VALIDATION x1)."
        ),
        "{t}"
    );
    assert!(t.contains(&format!("{CONSOLE}/?status=error")), "{t}");
    assert!(t.contains(&format!("{CONSOLE}/runs/")), "{t}");
    assert!(!t.contains("/review") && !t.contains("/mapping"), "{t}");
    assert_eq!(n.subject, "sophos-cw-sync 2026-11: 3 customers with errors");
}

#[test]
fn more_than_five_codes_are_summed_up() {
    let mut r = report("partial");
    r.customer_counts = CustomerCounts {
        error: 1,
        with_errors: 1,
        ..clean_counts()
    };
    use ErrorCode::*;
    let c = customer_with(&[
        CompanyNotFound,
        CompanyAmbiguous,
        AgreementNotFound,
        AgreementAmbiguous,
        AgreementShared,
        CwPermission,
        CwValidation,
    ]);
    let t = text(&notice_for_report(&r, &[c], None).unwrap());
    assert!(t.contains("AGREEMENT_SHARED x1, 2 more codes"), "{t}");
    assert!(!t.contains("CW_PERMISSION"), "{t}");
}

#[test]
fn held_changes_link_to_the_review_page() {
    let mut r = report("succeeded");
    r.customer_counts = CustomerCounts {
        review: 1,
        held: 2,
        synced: 8,
        ..clean_counts()
    };
    let n = notice_for_report(&r, &[], Some(CONSOLE)).expect("held changes are notified");
    let t = text(&n);
    assert!(
        t.contains("Held for review: 2 product changes (1 customer in review);"),
        "{t}"
    );
    assert!(t.contains(&format!("Review: {CONSOLE}/review")), "{t}");
    assert!(!t.contains("?status=error"), "{t}");
    assert_eq!(
        n.subject,
        "sophos-cw-sync 2026-11: 2 changes held for review"
    );
}

#[test]
fn unmapped_customers_and_codes_link_to_the_mapping_page() {
    let mut r = report("partial");
    r.customer_counts = CustomerCounts {
        unmapped: 2,
        ..clean_counts()
    };
    let code = |c: &str| UnmappedProduct {
        product_code: c.into(),
        product_description: None,
        sku: None,
        product_group: None,
        quantity: 1.0,
        known_as: None,
    };
    r.unmapped_codes = (0..6).map(|i| code(&format!("ZZ-{i}"))).collect();
    r.unmapped_codes_omitted = 3;
    let n = notice_for_report(&r, &[], Some(CONSOLE)).unwrap();
    let t = text(&n);
    assert!(
        t.contains("Unmapped: 2 customers without a ConnectWise company or agreement; 9 billing product codes without a catalog identifier (ZZ-0, ZZ-1, ZZ-2, ZZ-3, ZZ-4, and 4 more)."),
        "{t}"
    );
    assert!(t.contains(&format!("Mapping: {CONSOLE}/mapping")), "{t}");
    assert_eq!(
        n.subject,
        "sophos-cw-sync 2026-11: 2 customers unmapped, 9 product codes unmapped"
    );

    // Only codes, no customer: still notified.
    let mut only_codes = report("succeeded");
    only_codes.customer_counts = clean_counts();
    only_codes.unmapped_codes_omitted = 1;
    assert!(notice_for_report(&only_codes, &[], None).is_some());
}

#[test]
fn a_clean_run_with_warnings_is_notified_with_each_message_bounded() {
    use crate::sync::report::Warning;
    let mut r = report("succeeded");
    r.customer_counts = clean_counts();
    r.warn(Warning::catalog_price_zero(
        "Sophos_Intercept_X_Advanced_XDR",
        Some(902),
    ));
    let n = notice_for_report(&r, &[], Some(CONSOLE)).expect("warnings need a person");
    assert_eq!(n.subject, "sophos-cw-sync 2026-11: 1 warning");
    let t = text(&n);
    assert!(
        t.contains("1 warning; the writes went through, but a person should look:"),
        "{t}"
    );
    assert!(
        t.contains("- CATALOG_PRICE_ZERO: the ConnectWise catalog item for Sophos_Intercept_X_Advanced_XDR (catalog item 902) has a price of 0"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "Run details: {CONSOLE}/runs/20261129T060000Z-ab12"
        )),
        "the advice is on the run page: {t}"
    );

    // Past five, the rest are counted, not quoted.
    for i in 0..7 {
        r.warn(Warning::catalog_price_zero(&format!("Sophos_P{i}"), None));
    }
    let t = text(&notice_for_report(&r, &[], None).unwrap());
    assert_eq!(t.matches("- CATALOG_PRICE_ZERO: ").count(), 5, "{t}");
    assert!(t.contains("- and 3 more warnings"), "{t}");
    assert!(t.contains("8 warnings;"), "{t}");

    // A dry run's warnings are for the operator previewing it, not a message.
    r.dry_run = true;
    assert_eq!(notice_for_report(&r, &[], None), None);
}

#[test]
fn without_a_console_url_there_are_no_links() {
    let mut r = report("partial");
    r.customer_counts = CustomerCounts {
        error: 1,
        with_errors: 1,
        held: 1,
        review: 1,
        unmapped: 1,
        ..clean_counts()
    };
    let n = notice_for_report(&r, &[], None).unwrap();
    assert!(!n.text().contains("http"), "{}", n.text());
    assert!(n.subject.len() <= 99, "{}", n.subject);
    assert!(n.subject.is_ascii());
}

#[test]
fn a_run_that_ended_in_an_error_is_notified_with_the_error() {
    let n = notice_for_error(
        "r-1",
        "2026-11",
        "the agreementType setting is empty: set it",
        Some(CONSOLE),
    );
    assert_eq!(n.subject, "sophos-cw-sync 2026-11: run failed");
    let t = n.text();
    assert!(t.contains("the run r-1 for 2026-11 failed"), "{t}");
    assert!(t.contains("agreementType"), "{t}");
    assert!(t.contains(&format!("{CONSOLE}/runs/r-1")), "{t}");
    let long = "x".repeat(1000);
    assert!(notice_for_error("r", "", &long, None).text().len() < 400);
}

#[test]
fn the_chat_body_is_text_only_with_blank_lines_between() {
    let n = notice_for_error("r-1", "2026-11", "boom", Some(CONSOLE));
    let body: serde_json::Value = serde_json::from_str(&webhook::body(&n)).unwrap();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only text: {body}");
    let text = obj["text"].as_str().unwrap();
    assert!(text.contains("\n\nRun details: https://"), "{text}");
}
