//! The console's Mapping page without a browser, against the demo scenario after
//! one sync: suggestions (order, what each shows, the recycle bin), picking a
//! company and one of its agreements, the checks before a mapping is stored (one
//! agreement per customer, stale or wrong ids), the cache of ConnectWise's
//! companies, and mapping billing product codes, each followed by a sync where it
//! matters.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sophos_cw_sim::FaultKind;
use sophos_cw_sync::store::{AuditEntry, AuditFilter, MappingKind, Store};
use sophos_cw_sync::web::router;
use support::app::{Harness, demo_settings, tenant};
use support::console::{Answer, Client, app, test_config};
use support::sim_log::{cw_fault, cw_log};

const GAMMA: u32 = 3; // its only company, "Gamma LLC" (#115), is in the recycle bin
const DELTA: u32 = 4; // "Delta Inc" (#104) and "DELTA INC" (#114): ambiguous
const EPSILON: u32 = 5; // its company has no agreement of the configured type
const ZETA: u32 = 6; // its company has two active "Sophos MSP" agreements
const KAPPA: u32 = 10; // ConnectWise knows it as "Kappa Holdings Group" (#110)
const NU: u32 = 13; // synced: its discovered mapping holds agreement 213

/// Form fields of a request.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// A harness after one sync of the demo scenario (settings stored), and a
/// signed-in console client with its form token.
async fn signed_in() -> (Harness, Client, String) {
    let h = Harness::start().await;
    h.store.put_settings(&demo_settings()).await.unwrap();
    h.run(&demo_settings()).await;
    let (app, _invoker) = app(&h);
    let mut c = Client::new(router(app, test_config()));
    let csrf = c.sign_in().await;
    (h, c, csrf)
}

async fn audit(h: &Harness) -> Vec<AuditEntry> {
    h.store
        .list_audit_page(&AuditFilter::default(), 200, None)
        .await
        .unwrap()
        .items
}

async fn set_mappings(h: &Harness) -> Vec<AuditEntry> {
    audit(h)
        .await
        .into_iter()
        .filter(|e| e.action == "setMapping")
        .collect()
}

fn ok(a: &Answer) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// The HTML of one customer's block on the Mapping page.
fn block<'a>(body: &'a str, tenant_id: &str) -> &'a str {
    let marker = format!(r#"data-tenant="{tenant_id}""#);
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no block for {tenant_id} in {body}"));
    let rest = &body[start..];
    let end = rest[marker.len()..]
        .find(r#"class="card mapping-customer""#)
        .map(|i| i + marker.len())
        .or_else(|| rest.find(r#"<section id="codes""#))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// `(company id, row html)` of each element of `class` (e.g. `suggestion`), in page order.
fn rows<'a>(html: &'a str, class: &str) -> Vec<(i64, &'a str)> {
    let open = format!(r#"<tr class="{class}"#);
    html.match_indices(&open)
        .map(|(at, _)| {
            let row = &html[at..];
            let row = &row[..row.find("</tr>").unwrap()];
            let id = attr(row, "data-company").parse().unwrap();
            (id, row)
        })
        .collect()
}

fn attr<'a>(html: &'a str, name: &str) -> &'a str {
    let key = format!(r#"{name}=""#);
    let at = html
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + key.len();
    &html[at..at + html[at..].find('"').unwrap()]
}

/// The target of the row's "Pick…" link, unescaped.
fn pick_href(row: &str) -> String {
    let at = row
        .find(r#"class="pick" href=""#)
        .unwrap_or_else(|| panic!("no pick link in {row}"));
    attr(&row[at..], "href")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The agreement ids offered by `use-agreement` buttons.
fn offered(html: &str) -> Vec<i64> {
    html.match_indices(r#"class="use-agreement""#)
        .map(|(at, _)| {
            let rest = &html[at..];
            attr(rest, "value").parse().unwrap()
        })
        .collect()
}

fn map_path(n: u32) -> String {
    format!("/console/customers/{}/map", tenant(n))
}

#[tokio::test]
async fn suggestions_come_exact_then_normalised_then_close_with_identifier_id_and_status() {
    let (h, mut c, _csrf) = signed_in().await;
    // The demo has Delta's exact and case-only duplicates; add a legal-suffix
    // variant that is inactive and a misspelling, so every kind of match shows.
    h.sim.with_state(|s| {
        let companies = s.collection_mut("companies");
        companies.push(
            json!({"id": 190, "identifier": "DelttaInc", "name": "Deltta Inc",
            "status": {"id": 1, "name": "Active"}, "deletedFlag": false}),
        );
        companies.push(
            json!({"id": 191, "identifier": "DeltaIncorporated", "name": "Delta Incorporated",
            "status": {"id": 2, "name": "Inactive"}, "deletedFlag": false}),
        );
    });
    let page = c.get("/console/mapping").await;
    ok(&page);
    // Unmapped customers only (the synced and ignored ones are not listed).
    for n in [GAMMA, DELTA, EPSILON, ZETA, KAPPA, 14] {
        assert!(
            page.body
                .contains(&format!(r#"data-tenant="{}""#, tenant(n))),
            "{n}"
        );
    }
    for n in [1, 2, 7, NU] {
        assert!(
            !page
                .body
                .contains(&format!(r#"data-tenant="{}""#, tenant(n))),
            "{n}"
        );
    }
    // Vendor text is escaped: the demo customer named like an HTML tag stays text.
    assert!(!page.body.contains("<img src=x"));
    let odd = block(&page.body, &tenant(14));
    assert!(
        odd.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{odd}"
    );

    let delta = block(&page.body, &tenant(DELTA));
    let suggestions = rows(delta, "suggestion");
    let ids: Vec<i64> = suggestions.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [104, 114, 191, 190], "{delta}");
    let kinds: Vec<&str> = suggestions
        .iter()
        .map(|(_, r)| attr(r, "data-kind"))
        .collect();
    assert_eq!(kinds, ["exact", "normalised", "normalised", "close"]);
    let (_, exact) = suggestions[0];
    for shown in ["Delta Inc", "DeltaInc", "#104", "Active", "1.00"] {
        assert!(exact.contains(shown), "{shown} in {exact}");
    }
    let (_, duplicate) = suggestions[1];
    assert!(duplicate.contains("DeltaInc2") && duplicate.contains("#114"));
    assert!(duplicate.contains(r#"class="pick""#));
    // An inactive company is shown, with why it cannot be picked.
    let (_, inactive) = suggestions[2];
    assert!(inactive.contains("Inactive") && inactive.contains("Cannot be picked"));
    assert!(!inactive.contains(r#"class="pick""#), "{inactive}");
    let (_, close) = suggestions[3];
    assert!(
        close.contains("DelttaInc") && close.contains("0.75"),
        "{close}"
    );
    // Every unmapped customer can be ignored from here.
    assert!(delta.contains(&format!(
        r#"action="/console/customers/{}/ignore""#,
        tenant(DELTA)
    )));

    // Nothing was mapped by showing suggestions.
    assert!(h.store.get_mapping(&tenant(DELTA)).await.unwrap().is_none());
    assert!(set_mappings(&h).await.is_empty());

    // Paging: after Delta's id, only the customers that follow it.
    let after = c
        .get(&format!("/console/mapping?after={}", tenant(DELTA)))
        .await;
    ok(&after);
    assert!(
        !after
            .body
            .contains(&format!(r#"data-tenant="{}""#, tenant(GAMMA)))
    );
    assert!(
        after
            .body
            .contains(&format!(r#"data-tenant="{}""#, tenant(EPSILON)))
    );

    // One customer, whatever its status: Acme is synced.
    let acme = c
        .get(&format!("/console/mapping?tenant={}", tenant(1)))
        .await;
    ok(&acme);
    let acme_block = block(&acme.body, &tenant(1));
    assert!(acme_block.contains("synced"));
    assert!(acme_block.contains("discovered: company 101, agreement 201"));
    assert_eq!(rows(acme_block, "suggestion")[0].0, 101);
    let unknown = c.get("/console/mapping?tenant=nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}

#[tokio::test]
async fn a_recycle_bin_duplicate_is_shown_but_cannot_be_picked() {
    let (h, mut c, csrf) = signed_in().await;
    let page = c.get("/console/mapping").await;
    ok(&page);
    let gamma = block(&page.body, &tenant(GAMMA));
    let suggestions = rows(gamma, "suggestion");
    assert_eq!(suggestions.len(), 1, "{gamma}");
    let (id, row) = suggestions[0];
    assert_eq!(id, 115);
    for shown in [
        "Gamma LLC",
        "GammaOld",
        "#115",
        "recycle bin",
        "Cannot be picked",
    ] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    assert!(!row.contains(r#"class="pick""#), "{row}");

    // Opening it anyway (an old link): the company is shown, no agreement offered.
    let picked = c
        .get(&format!(
            "/console/mapping?tenant={}&company=115",
            tenant(GAMMA)
        ))
        .await;
    ok(&picked);
    assert!(
        picked.body.contains(r#"id="pick-refused""#),
        "{}",
        picked.body
    );
    assert!(picked.body.contains("recycle bin"));
    assert!(offered(&picked.body).is_empty());

    // Posting it anyway: refused, nothing stored.
    let refused = c
        .post(
            &map_path(GAMMA),
            &[("csrf", &csrf), ("company", "115"), ("agreement", "204")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("recycle bin"), "{}", refused.body);
    assert!(h.store.get_mapping(&tenant(GAMMA)).await.unwrap().is_none());
    assert!(set_mappings(&h).await.is_empty());
}

#[tokio::test]
async fn mapping_from_a_suggestion_stores_a_manual_mapping_audits_it_and_the_next_sync_bills_it() {
    let (h, mut c, csrf) = signed_in().await;
    let page = c.get("/console/mapping").await;
    let delta = block(&page.body, &tenant(DELTA));
    let (id, row) = rows(delta, "suggestion")[0];
    assert_eq!(id, 104);
    let href = pick_href(row);
    assert_eq!(
        href,
        format!("/console/mapping?tenant={}&company=104#pick", tenant(DELTA))
    );

    // Picking offers the company's active agreements of the configured type.
    let picked = c.get(href.split('#').next().unwrap()).await;
    ok(&picked);
    assert_eq!(offered(&picked.body), [204]);
    let form_at = picked.body.find(r#"class="agreements""#).unwrap();
    let form = &picked.body[..form_at];
    assert!(
        form.ends_with(&format!(r#"action="{}" "#, map_path(DELTA))),
        "{form}"
    );
    assert!(h.store.get_mapping(&tenant(DELTA)).await.unwrap().is_none());

    let mapped = c
        .post(
            &map_path(DELTA),
            &[("csrf", &csrf), ("company", "104"), ("agreement", "204")],
        )
        .await;
    assert_eq!(mapped.status, StatusCode::SEE_OTHER, "{}", mapped.body);
    assert_eq!(
        mapped.header("location"),
        Some(format!("/console/customers/{}?done=mapped", tenant(DELTA)).as_str())
    );
    let m = h.store.get_mapping(&tenant(DELTA)).await.unwrap().unwrap();
    assert_eq!(m.kind, MappingKind::Manual);
    assert_eq!((m.company_id, m.agreement_id), (Some(104), Some(204)));
    let entries = set_mappings(&h).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert_eq!(e.tenant_id.as_deref(), Some(tenant(DELTA).as_str()));
    assert_eq!(e.agreement_id, Some(204));
    assert!(e.actor.starts_with("console:"), "{}", e.actor);
    assert_eq!(
        e.detail.as_deref(),
        Some("mapped to Delta Inc (DeltaInc, #104), agreement Delta - Sophos (#204)")
    );
    let detail = c.get(mapped.header("location").unwrap()).await;
    ok(&detail);
    assert!(detail.body.contains(r#"id="done""#));
    assert!(detail.body.contains("manual"));

    // The next sync bills Delta on agreement 204: 6 licences of the demo usage.
    assert!(h.additions_of(204).is_empty());
    let report = h.run(&demo_settings()).await;
    let delta = report
        .customers
        .iter()
        .find(|c| c.tenant_id == tenant(DELTA))
        .unwrap();
    assert_eq!(
        serde_json::to_value(delta.status).unwrap(),
        json!("synced"),
        "{delta:?}"
    );
    assert_eq!(delta.agreement_id, Some(204));
    let additions = h.additions_of(204);
    assert_eq!(additions.len(), 1, "{additions:?}");
    assert_eq!(additions[0]["quantity"].as_f64(), Some(6.0));
    // Delta is no longer listed as unmapped.
    let after = c.get("/console/mapping").await;
    assert!(
        !after
            .body
            .contains(&format!(r#"data-tenant="{}""#, tenant(DELTA)))
    );
}

#[tokio::test]
async fn only_active_agreements_of_the_configured_type_are_offered_and_each_refusal_says_why() {
    let (_h, mut c, _csrf) = signed_in().await;
    let pick =
        |n: u32, company: i64| format!("/console/mapping?tenant={}&company={company}", tenant(n));
    // Zeta's company has two: both are offered; the operator chooses.
    let zeta = c.get(&pick(ZETA, 106)).await;
    ok(&zeta);
    assert_eq!(offered(&zeta.body), [206, 207]);
    // Epsilon's only agreement is of another type.
    let epsilon = c.get(&pick(EPSILON, 105)).await;
    ok(&epsilon);
    assert!(offered(&epsilon.body).is_empty());
    assert!(epsilon.body.contains(r#"id="no-offer""#));
    assert!(
        epsilon
            .body
            .contains("its type is &#34;Managed Services&#34;, not the configured agreement type &#34;Sophos MSP&#34;"),
        "{}",
        epsilon.body
    );
    // Beta's company: the cancelled agreement is not offered, the live one already bills Beta.
    let beta = c.get(&pick(DELTA, 102)).await;
    ok(&beta);
    assert!(offered(&beta.body).is_empty(), "{}", beta.body);
    let row = |body: &str, id: i64| {
        let at = body.find(&format!(r#"data-agreement="{id}""#)).unwrap();
        body[at..at + body[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row(&beta.body, 203).contains("Cancelled"));
    assert!(row(&beta.body, 202).contains("already bills customer"));
    assert!(row(&beta.body, 202).contains("Beta Corp"));
    // A company id ConnectWise does not have, or that is not a number.
    let missing = c.get(&pick(DELTA, 999)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let bad = c
        .get(&format!(
            "/console/mapping?tenant={}&company=abc",
            tenant(DELTA)
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

#[tokio::test]
async fn an_agreement_that_bills_another_customer_is_refused_with_409_and_nothing_is_stored() {
    let (h, mut c, csrf) = signed_in().await;
    let nu = h.store.get_mapping(&tenant(NU)).await.unwrap().unwrap();
    assert_eq!(
        (nu.kind, nu.agreement_id),
        (MappingKind::Discovered, Some(213))
    );

    // The page does not offer it...
    let picked = c
        .get(&format!(
            "/console/mapping?tenant={}&company=113",
            tenant(KAPPA)
        ))
        .await;
    ok(&picked);
    assert!(offered(&picked.body).is_empty(), "{}", picked.body);
    assert!(picked.body.contains("already bills customer"));
    // ...and a form that posts it anyway is refused, naming who holds it.
    let refused = c
        .post(
            &map_path(KAPPA),
            &[("csrf", &csrf), ("company", "113"), ("agreement", "213")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    for said in [
        "Nu Shared",
        tenant(NU).as_str(),
        "discovered",
        "clear its mapping",
    ] {
        assert!(refused.body.contains(said), "{said} in {}", refused.body);
    }
    assert!(h.store.get_mapping(&tenant(KAPPA)).await.unwrap().is_none());
    assert_eq!(
        h.store.get_mapping(&tenant(NU)).await.unwrap().unwrap(),
        nu,
        "the holder's mapping is untouched"
    );
    assert!(set_mappings(&h).await.is_empty());

    // Kappa's own company, "Kappa Holdings Group", is only a partial match (its
    // name begins with the customer's); a search finds it too. Mapped, billed.
    let page = c.get("/console/mapping").await;
    let suggested = rows(block(&page.body, &tenant(KAPPA)), "suggestion");
    assert_eq!(suggested.len(), 1, "{suggested:?}");
    let (id, row) = suggested[0];
    assert_eq!((id, attr(row, "data-kind")), (110, "partial"));
    assert!(
        row.contains("KappaHoldings") && row.contains("0.17"),
        "{row}"
    );
    let search = c
        .get(&format!(
            "/console/mapping?tenant={}&q=kappa",
            tenant(KAPPA)
        ))
        .await;
    ok(&search);
    let hits = rows(&search.body, "search-hit");
    assert_eq!(hits.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [110]);
    let picked = c.get(pick_href(hits[0].1).split('#').next().unwrap()).await;
    assert_eq!(offered(&picked.body), [210]);
    let mapped = c
        .post(
            &map_path(KAPPA),
            &[("csrf", &csrf), ("company", "110"), ("agreement", "210")],
        )
        .await;
    assert_eq!(mapped.status, StatusCode::SEE_OTHER, "{}", mapped.body);
    h.run(&demo_settings()).await;
    let kappa = h
        .store
        .get_customer_status(&tenant(KAPPA))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kappa.report["status"], "synced", "{}", kappa.report);
    assert_eq!(h.additions_of(210)[0]["quantity"].as_f64(), Some(15.0));
    // Nu still bills on its own agreement.
    let nu_status = h
        .store
        .get_customer_status(&tenant(NU))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nu_status.report["status"], "synced");
}

#[tokio::test]
async fn a_stale_or_wrong_company_or_agreement_is_a_4xx_that_says_what_is_wrong_and_stores_nothing()
{
    let (h, mut c, csrf) = signed_in().await;
    let cases: [(&str, u32, Fields, StatusCode, &str); 9] = [
        (
            "not a number",
            KAPPA,
            vec![("company", "abc"), ("agreement", "210")],
            StatusCode::BAD_REQUEST,
            "not a ConnectWise id",
        ),
        (
            "no agreement chosen",
            KAPPA,
            vec![("company", "110")],
            StatusCode::BAD_REQUEST,
            "agreement",
        ),
        (
            "no such company",
            KAPPA,
            vec![("company", "999"), ("agreement", "210")],
            StatusCode::NOT_FOUND,
            "no company #999",
        ),
        (
            "no such agreement",
            KAPPA,
            vec![("company", "110"), ("agreement", "999")],
            StatusCode::NOT_FOUND,
            "no agreement #999",
        ),
        (
            "another company's agreement",
            KAPPA,
            vec![("company", "110"), ("agreement", "206")],
            StatusCode::BAD_REQUEST,
            "belongs to company #106",
        ),
        (
            "another agreement type",
            KAPPA,
            vec![("company", "101"), ("agreement", "209")],
            StatusCode::CONFLICT,
            "Managed Services",
        ),
        (
            "a cancelled agreement",
            KAPPA,
            vec![("company", "102"), ("agreement", "203")],
            StatusCode::CONFLICT,
            "Cancelled",
        ),
        (
            "an unknown customer",
            99,
            vec![("company", "110"), ("agreement", "210")],
            StatusCode::NOT_FOUND,
            "no customer",
        ),
        (
            "no form token",
            KAPPA,
            vec![("csrf", ""), ("company", "110"), ("agreement", "210")],
            StatusCode::FORBIDDEN,
            "reload",
        ),
    ];
    for (what, n, fields, status, said) in cases {
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.retain(|(k, _)| !fields.iter().any(|(f, _)| f == k));
        form.extend(fields);
        let answer = c.post(&map_path(n), &form).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert!(
            answer.body.contains(said),
            "{what}: {said:?} in {}",
            answer.body
        );
        assert!(
            answer.body.contains(r#"id="error-message""#),
            "{what}: a console page"
        );
    }
    assert!(h.store.get_mapping(&tenant(KAPPA)).await.unwrap().is_none());
    assert!(h.store.get_mapping(&tenant(99)).await.unwrap().is_none());
    assert!(set_mappings(&h).await.is_empty());
}

#[tokio::test]
async fn companies_are_read_from_connectwise_once_and_a_failure_is_a_503_that_says_what_failed() {
    let (h, mut c, _csrf) = signed_in().await;
    let company_lists = |h: &Harness| {
        cw_log(h)
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/company/companies"))
            .count()
    };
    // The first read fails: a 503 page naming ConnectWise and what it was doing.
    h.sim.clear_requests();
    h.sim.add_fault(cw_fault(
        "GET",
        "/company/companies",
        FaultKind::Status { status: 403 },
    ));
    let failed = c.get("/console/mapping").await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    assert!(failed.body.contains("ConnectWise"), "{}", failed.body);
    assert!(failed.body.contains("list of companies"), "{}", failed.body);
    // Then it is read once, recycle bin included, and kept across pages.
    h.sim.clear_requests();
    let first = c.get("/console/mapping").await;
    ok(&first);
    assert_eq!(company_lists(&h), 1);
    let listed = cw_log(&h)
        .into_iter()
        .find(|r| r.path.ends_with("/company/companies"))
        .unwrap();
    assert!(
        listed.query.contains("deletedFlag%3Dtrue") || listed.query.contains("deletedFlag=true"),
        "{}",
        listed.query
    );
    assert!(
        first.body.contains("(1 in the recycle bin)"),
        "{}",
        first.body
    );
    for path in [
        format!("/console/mapping?after={}", tenant(GAMMA)),
        format!("/console/mapping?tenant={}", tenant(DELTA)),
        "/console/mapping".to_owned(),
    ] {
        ok(&c.get(&path).await);
    }
    assert_eq!(company_lists(&h), 1, "{:?}", cw_log(&h));
    // Asked to, it reads them again.
    let refreshed = c.get("/console/mapping?refresh=1").await;
    ok(&refreshed);
    assert_eq!(company_lists(&h), 2);
}

#[tokio::test]
async fn mapping_a_product_code_edits_the_settings_is_audited_and_the_next_sync_bills_it() {
    let (h, mut c, csrf) = signed_in().await;
    // The latest run's summary lists the unmapped codes (Beta's unknown one).
    let run = h.store.list_runs(1, None).await.unwrap().remove(0);
    let listed: Vec<&str> = run.report["unmappedCodes"]
        .as_array()
        .expect("the run's summary has unmappedCodes")
        .iter()
        .filter_map(|c| c["productCode"].as_str())
        .collect();
    assert_eq!(listed, ["ZZUNKNOWN-MSP"], "{}", run.report);
    let page = c.get("/console/mapping").await;
    ok(&page);
    let codes = &page.body[page.body.find(r#"<section id="codes""#).unwrap()..];
    assert!(codes.contains(r#"data-code="ZZUNKNOWN-MSP""#), "{codes}");
    assert!(codes.contains("A product with no catalog mapping"));
    assert!(codes.contains(r#"action="/console/mapping/codes""#));
    assert!(codes.contains(r#"<option value="Sophos_Intercept_X_Advanced">"#));

    // Refused: an unknown identifier, no code, an own item for a product not synced.
    let before = h.store.get_settings().await.unwrap().unwrap();
    for (what, form, said) in [
        (
            "unknown identifier",
            vec![("code", "ZZUNKNOWN-MSP"), ("identifier", "Sophos_Nope")],
            "35 catalog identifiers",
        ),
        (
            "no code",
            vec![("code", " "), ("identifier", "Sophos_Intercept_X_Advanced")],
            "billing product code",
        ),
        (
            "no identifier",
            vec![("code", "ZZUNKNOWN-MSP")],
            "catalog identifier",
        ),
        (
            "own item of a product not synced",
            vec![
                ("code", "ZZUNKNOWN-MSP"),
                ("identifier", "Sophos_Intercept_X"),
                ("ownItem", "MY-IX"),
            ],
            "not among the selected products",
        ),
    ] {
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend(form);
        let answer = c.post("/console/mapping/codes", &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            answer.body
        );
        assert!(
            answer.body.contains(said),
            "{what}: {said:?} in {}",
            answer.body
        );
    }
    assert_eq!(h.store.get_settings().await.unwrap().unwrap(), before);
    assert!(!audit(&h).await.iter().any(|e| e.action == "updateSettings"));

    let mapped = c
        .post(
            "/console/mapping/codes",
            &[
                ("csrf", &csrf),
                ("code", "ZZUNKNOWN-MSP"),
                ("identifier", "Sophos_Intercept_X_Advanced"),
            ],
        )
        .await;
    assert_eq!(mapped.status, StatusCode::SEE_OTHER, "{}", mapped.body);
    let location = mapped.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        "/console/mapping?done=code&code=ZZUNKNOWN-MSP#codes"
    );
    let settings = h.store.get_settings().await.unwrap().unwrap();
    assert_eq!(
        settings
            .product_codes
            .get("ZZUNKNOWN-MSP")
            .map(String::as_str),
        Some("Sophos_Intercept_X_Advanced")
    );
    let mut expected = before.clone();
    expected
        .product_codes
        .insert("ZZUNKNOWN-MSP".into(), "Sophos_Intercept_X_Advanced".into());
    assert_eq!(settings, expected, "only that code changed");
    let updates: Vec<AuditEntry> = audit(&h)
        .await
        .into_iter()
        .filter(|e| e.action == "updateSettings")
        .collect();
    assert_eq!(updates.len(), 1);
    let detail = updates[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("ZZUNKNOWN-MSP") && detail.contains("Sophos_Intercept_X_Advanced"),
        "{detail}"
    );
    assert!(detail.contains("productCodes"), "{detail}");
    let back = c.get(location.split('#').next().unwrap()).await;
    ok(&back);
    assert!(
        back.body
            .contains("Billing code ZZUNKNOWN-MSP now bills as Sophos_Intercept_X_Advanced"),
        "{}",
        back.body
    );
    assert!(back.body.contains("Now mapped to"));

    // The next sync bills Beta's 3 licences of that code with its 8 of CIXA-MSP.
    let report = h.run(&settings).await;
    let beta = report
        .customers
        .iter()
        .find(|c| c.tenant_id == tenant(2))
        .unwrap();
    assert!(beta.errors.is_empty(), "{beta:?}");
    let beta_ixa: Vec<Value> = h
        .additions_of(202)
        .into_iter()
        .filter(|a| a["cancelledDate"].as_str().is_none_or(str::is_empty))
        .collect();
    assert_eq!(beta_ixa.len(), 1, "{beta_ixa:?}");
    assert_eq!(beta_ixa[0]["quantity"].as_f64(), Some(11.0));
}

/// A large partner's ConnectWise (75,000 companies, with fields ConnectWise
/// answers by default that suggestions do not use): the Mapping page reads them in pages of 1,000
/// asking only for the fields the suggestions use, each page once, and lists
/// every company. (How long that takes belongs in `make bench`.)
#[tokio::test(flavor = "multi_thread")]
async fn the_mapping_page_reads_75000_companies_in_pages_of_the_fields_suggestions_use() {
    let (h, mut c, _csrf) = signed_in().await;
    let extra = 75_000;
    let before = h.sim.with_state(|s| {
        let companies = s.collection_mut("companies");
        let before = companies.len();
        for i in 0..extra {
            companies.push(json!({
                "id": 1_000_000 + i, "identifier": format!("Big{i:05}"),
                "name": format!("Big Customer {i:05} Ltd"),
                "status": {"id": 1, "name": "Active"}, "deletedFlag": false,
                "addressLine1": "1 Long Street", "website": "example.com",
            }));
        }
        before
    });
    h.sim.clear_requests();
    let page = c.get("/console/mapping").await;
    ok(&page);
    let total = before + extra;
    assert!(
        page.body
            .contains(&format!("{total} ConnectWise companies")),
        "{}",
        &page.body[..page.body.len().min(3000)]
    );
    let lists: Vec<_> = cw_log(&h)
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/company/companies"))
        .collect();
    assert_eq!(
        lists.len(),
        total.div_ceil(1000),
        "one request a page of 1,000"
    );
    let mut pages: Vec<String> = Vec::new();
    for r in &lists {
        let query: Vec<(String, String)> = serde_urlencoded::from_str(&r.query).unwrap();
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("fields").as_deref(),
            Some("id,identifier,name,deletedFlag,status"),
            "{}",
            r.query
        );
        assert_eq!(get("pageSize").as_deref(), Some("1000"), "{}", r.query);
        pages.push(get("page").unwrap_or_else(|| "1".into()));
    }
    let expected: Vec<String> = (1..=lists.len()).map(|p| p.to_string()).collect();
    assert_eq!(pages, expected, "each page once, in order");
}
