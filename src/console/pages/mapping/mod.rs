//! The Mapping page: unmapped customers first, each with candidate ConnectWise
//! companies as suggestions (exact name, then equal after normalising, then close
//! matches with a score). Nothing is ever mapped by itself: the operator picks a
//! company (a plain link), then one of its active agreements of the configured
//! type (a POST form), and the mapping is checked against ConnectWise again before
//! it is stored. Below: the billing product codes the latest run could not map,
//! each with a form that adds it to the settings.

mod assign;
mod codes;

use assign::{map_customer, no_agreement_type, no_company, parse_id};
use codes::{codes_view, map_code};

use crate::config::Settings;
use crate::config::operators::Role;
use crate::connectwise::model::{Agreement, Company};
use crate::console::companies::{self, Companies};
use crate::console::page::{
    Authed, ConsoleError, Layout, SignedForm, encode, query_get, query_pairs, render, see_other,
    wire_name,
};
use crate::console::pages::customer::{customer_link, describe, ensure_known};
use crate::console::pages::customers::{self, ErrorRow, Filter};
use crate::console::pages::settings;
use crate::console::pages::view::qty;
use crate::console::scan::{Scan, Source, scan_reports};
use crate::domain::products;
use crate::domain::suggest::{CompanyCandidate, CompanyIndex, Suggestion};
use crate::state::Web;
use crate::store::{Mapping, MappingKind, Store};
use crate::sync::plan;
use crate::sync::report::CustomerReport;
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

pub fn routes() -> Router<Web> {
    Router::new()
        // The page: every role. Mapping a code or a customer: operator.
        .route("/console/mapping", get(mapping_page))
        .route("/console/mapping/codes", post(map_code))
        .route("/console/customers/{tenant}/map", post(map_customer))
}

/// Suggestions per customer.
const SUGGESTIONS: usize = 8;
/// Companies a search shows.
const SEARCH_HITS: usize = 25;
/// The longest billing product code the codes form takes.
const MAX_CODE_LEN: usize = 100;

#[derive(Template)]
#[template(path = "mapping.html")]
struct MappingPage {
    layout: Layout,
    notice: Option<String>,
    /// `?tenant=`: one customer, whatever its status.
    single: bool,
    customers: Vec<CustomerBlock>,
    next_link: Option<String>,
    scanned: usize,
    companies: Option<CompaniesInfo>,
    codes: CodesView,
}

struct CompaniesInfo {
    count: usize,
    deleted: usize,
    age: String,
    refresh_link: String,
}

struct CustomerBlock {
    tenant_id: String,
    name: String,
    status: String,
    detail_link: String,
    ignore_action: String,
    ignored: bool,
    /// The stored mapping, described (single-customer view only).
    mapping: Option<String>,
    reason: Option<String>,
    errors: Vec<ErrorRow>,
    suggestions: Vec<CompanyLine>,
    search: Option<SearchView>,
    picked: Option<Picked>,
}

/// A company as the page lists it (a suggestion or a search hit).
struct CompanyLine {
    id: i64,
    identifier: String,
    name: String,
    status: String,
    deleted: bool,
    /// "exact", "normalised", "close" (empty for a search hit).
    kind: String,
    score: String,
    why: String,
    /// Why it cannot be picked, if it cannot.
    refused: Option<String>,
    pick_link: String,
}

struct SearchView {
    q: String,
    hits: Vec<CompanyLine>,
    more: bool,
}

struct Picked {
    company: CompanyLine,
    /// Set when no agreement can be offered at all (no type configured).
    problem: Option<String>,
    agreements: Vec<AgreementLine>,
    offered: usize,
    action: String,
}

struct AgreementLine {
    id: i64,
    name: String,
    type_name: String,
    status: String,
    /// Why it is not offered, if it is not.
    refused: Option<String>,
}

struct CodesView {
    run_id: Option<String>,
    codes: Vec<CodeLine>,
    omitted: u64,
    identifiers: Vec<IdentifierOption>,
}

struct CodeLine {
    code: String,
    description: String,
    sku: String,
    group: String,
    quantity: String,
    known_as: String,
    /// What the settings in force map it to now (mapped since the run).
    now: Option<String>,
}

struct IdentifierOption {
    identifier: &'static str,
    description: &'static str,
    selected: bool,
}

/// A customer the page shows.
struct Known {
    tenant_id: String,
    report: Option<CustomerReport>,
}

impl Known {
    fn name(&self) -> &str {
        self.report
            .as_ref()
            .map_or(self.tenant_id.as_str(), |r| r.tenant_name.as_str())
    }
}

async fn mapping_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let q = query_pairs(&uri)?;
    let store = web.app.store.as_ref();
    let settings = web.app.settings().await?;
    let tenant = query_get(&q, "tenant").map(str::to_owned);
    let company = query_get(&q, "company")
        .map(|v| parse_id(v, "company"))
        .transpose()?;
    if company.is_some() && tenant.is_none() {
        return Err(ConsoleError::BadRequest(
            "a company is picked for a customer, and this address names no customer (tenant=…): follow a \"Pick\" link of the Mapping page".into(),
        ));
    }
    let search = query_get(&q, "q").map(str::to_owned);
    let refresh = query_get(&q, "refresh").is_some();
    let after = query_get(&q, "after").map(str::to_owned);

    let (known, next, scanned) = match &tenant {
        Some(t) => (vec![one_customer(&web, t).await?], None, 1),
        None => {
            let filter = Filter {
                status: "unmapped".into(),
                q: String::new(),
            };
            let Scan {
                rows: reports,
                next,
                scanned,
            } = scan_reports(
                store,
                Source::Statuses,
                |r| filter.matches(r),
                after.as_deref(),
            )
            .await?;
            let known = reports
                .into_iter()
                .map(|r| Known {
                    tenant_id: r.tenant_id.clone(),
                    report: Some(r),
                })
                .collect();
            (known, next, scanned)
        }
    };

    // ConnectWise is asked only when there is someone to suggest for.
    let companies = if known.is_empty() {
        None
    } else {
        Some(companies::get(&web, refresh).await?)
    };
    let mut blocks = Vec::with_capacity(known.len());
    for k in &known {
        let mut block = customer_block(k, companies.as_ref().map(|c| c.index.as_ref()));
        if tenant.is_some() {
            let mapping = store.get_mapping(&k.tenant_id).await?;
            block.ignored = mapping
                .as_ref()
                .is_some_and(|m| m.kind == MappingKind::Ignored);
            block.mapping = Some(match &mapping {
                Some(m) => describe(m),
                None => "none stored".into(),
            });
            if let (Some(q), Some(c)) = (&search, &companies) {
                block.search = Some(search_companies(&c.index, &k.tenant_id, q));
            }
            if let Some(company_id) = company {
                block.picked = Some(pick(&web, &settings, &k.tenant_id, company_id).await?);
            }
        }
        blocks.push(block);
    }
    let refresh_link = refresh_link(&q);
    let companies = companies.map(|c| companies_info(&c, refresh_link));
    let next_link = next.map(|n| format!("/console/mapping?after={}", encode(&n)));
    let codes = codes_view(store, &settings).await?;
    Ok(render(&MappingPage {
        layout: authed.layout("mapping"),
        notice: notice(&q, &settings),
        single: tenant.is_some(),
        customers: blocks,
        next_link,
        scanned,
        companies,
        codes,
    }))
}

/// `?tenant=`: the customer whatever its status; a 404 when no sync has seen it
/// and it has no mapping.
async fn one_customer(web: &Web, tenant: &str) -> Result<Known, ConsoleError> {
    ensure_known(web, tenant).await?;
    let report = web
        .app
        .store
        .get_customer_status(tenant)
        .await?
        .and_then(|s| serde_json::from_value(s.report).ok());
    Ok(Known {
        tenant_id: tenant.to_owned(),
        report,
    })
}

fn customer_block(k: &Known, index: Option<&CompanyIndex>) -> CustomerBlock {
    let link = customer_link(&k.tenant_id);
    let suggestions = index
        .map(|i| i.suggest(k.name(), SUGGESTIONS))
        .unwrap_or_default()
        .iter()
        .map(|s| suggestion_line(&k.tenant_id, s))
        .collect();
    let report = k.report.as_ref();
    CustomerBlock {
        tenant_id: k.tenant_id.clone(),
        name: k.name().to_owned(),
        status: report.map_or_else(|| "unknown".to_owned(), |r| wire_name(&r.status)),
        ignore_action: format!("{link}/ignore"),
        detail_link: link,
        ignored: false,
        mapping: None,
        // An unmapped customer's reason is its error's message: shown once.
        reason: report
            .filter(|r| r.errors.is_empty())
            .and_then(|r| r.reason.clone()),
        errors: report
            .map(|r| r.errors.iter().map(ErrorRow::of).collect())
            .unwrap_or_default(),
        suggestions,
        search: None,
        picked: None,
    }
}

fn pick_link(tenant: &str, company_id: i64) -> String {
    format!(
        "/console/mapping?tenant={}&company={company_id}#pick",
        encode(tenant)
    )
}

fn status_text(c: &CompanyCandidate) -> String {
    c.status.clone().unwrap_or_else(|| "(no status)".into())
}

/// Why a company cannot be picked: in the recycle bin, or not active.
fn company_refusal(c: &CompanyCandidate) -> Option<String> {
    if c.deleted {
        return Some(
            "in ConnectWise's recycle bin: a deleted company is never billed. Pick the live company, or restore this one in ConnectWise and re-read the companies".into(),
        );
    }
    if !c.is_active() {
        return Some(format!(
            "its ConnectWise status is {:?}, not Active: set it to Active in ConnectWise and re-read the companies, or pick another company",
            status_text(c)
        ));
    }
    None
}

fn company_line(tenant: &str, c: &CompanyCandidate) -> CompanyLine {
    CompanyLine {
        id: c.id,
        identifier: c.identifier.clone(),
        name: c.name.clone(),
        status: status_text(c),
        deleted: c.deleted,
        kind: String::new(),
        score: String::new(),
        why: String::new(),
        refused: company_refusal(c),
        pick_link: pick_link(tenant, c.id),
    }
}

fn suggestion_line(tenant: &str, s: &Suggestion) -> CompanyLine {
    CompanyLine {
        kind: wire_name(&s.kind),
        score: format!("{:.2}", s.score),
        why: s.why.clone(),
        ..company_line(tenant, &s.company)
    }
}

/// Companies whose name or identifier contains `q` (any case), or whose id is `q`:
/// active ones first, then by name.
fn search_companies(index: &CompanyIndex, tenant: &str, q: &str) -> SearchView {
    let needle = q.to_lowercase();
    let id: Option<i64> = q.trim_start_matches('#').parse().ok();
    let mut hits: Vec<&CompanyCandidate> = index
        .companies()
        .iter()
        .filter(|c| {
            Some(c.id) == id
                || c.name.to_lowercase().contains(&needle)
                || c.identifier.to_lowercase().contains(&needle)
        })
        .collect();
    hits.sort_by(|a, b| {
        company_refusal(a)
            .is_some()
            .cmp(&company_refusal(b).is_some())
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then(a.id.cmp(&b.id))
    });
    let more = hits.len() > SEARCH_HITS;
    SearchView {
        q: q.to_owned(),
        hits: hits
            .into_iter()
            .take(SEARCH_HITS)
            .map(|c| company_line(tenant, c))
            .collect(),
        more,
    }
}

fn agreement_type_name(a: &Agreement) -> String {
    a.agreement_type
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_default()
}

fn agreement_status(a: &Agreement) -> String {
    match (a.cancelled_flag, &a.agreement_status) {
        (Some(true), Some(s)) if !s.eq_ignore_ascii_case("Cancelled") => format!("{s}, cancelled"),
        (Some(true), None) => "cancelled".into(),
        (_, Some(s)) => s.clone(),
        (_, None) => "(no status)".into(),
    }
}

/// Why the sync would not bill `a` for `company_id` (its rule: `plan::eligible`
/// decides; this only says why), or `None` when it would.
fn agreement_refusal(a: &Agreement, company_id: i64, agreement_type: &str) -> Option<String> {
    if plan::eligible(a, company_id, agreement_type) {
        return None;
    }
    let owner = a.company.as_ref().and_then(|c| c.id);
    if owner != Some(company_id) {
        return Some(match owner {
            Some(other) => format!("it belongs to company #{other}, not #{company_id}"),
            None => format!("ConnectWise does not say it belongs to company #{company_id}"),
        });
    }
    let type_name = agreement_type_name(a);
    if !type_name.trim().eq_ignore_ascii_case(agreement_type.trim()) {
        return Some(format!(
            "its type is {type_name:?}, not the configured agreement type {agreement_type:?}: the sync bills only agreements of that type (Settings: agreementType)"
        ));
    }
    if !plan::usable(a) {
        return Some(format!(
            "it is {}: a cancelled, expired or inactive agreement does not bill",
            agreement_status(a)
        ));
    }
    Some("the sync would not bill it".into())
}

/// The customer (other than `tenant`) whose mapping holds `agreement_id`.
fn holder(mappings: &[Mapping], tenant: &str, agreement_id: i64) -> Option<Mapping> {
    mappings
        .iter()
        .find(|m| {
            m.tenant_id != tenant
                && m.kind != MappingKind::Ignored
                && m.agreement_id == Some(agreement_id)
        })
        .cloned()
}

/// "customer "Nu Shared" (a0…13, discovered mapping)".
async fn holder_text(store: &dyn Store, m: &Mapping) -> Result<String, ConsoleError> {
    let name = store
        .get_customer_status(&m.tenant_id)
        .await?
        .and_then(|s| {
            s.report
                .get("tenantName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let kind = match m.kind {
        MappingKind::Manual => "manual",
        MappingKind::Discovered => "discovered",
        MappingKind::Ignored => "ignored",
    };
    Ok(match name {
        Some(n) => format!("customer {n:?} ({}, {kind} mapping)", m.tenant_id),
        None => format!("customer {} ({kind} mapping)", m.tenant_id),
    })
}

/// The picked company, read from ConnectWise now, with its agreements and which
/// of them can be used.
async fn pick(
    web: &Web,
    settings: &Settings,
    tenant: &str,
    company_id: i64,
) -> Result<Picked, ConsoleError> {
    let cw = companies::connectwise(web).await?;
    let company = cw
        .company(company_id)
        .await
        .map_err(|e| companies::failed(&format!("read company #{company_id}"), &e))?
        .ok_or_else(|| no_company(company_id))?;
    let candidate = CompanyCandidate::from(&company);
    let line = company_line(tenant, &candidate);
    let action = format!("{}/map", customer_link(tenant));
    if line.refused.is_some() {
        return Ok(Picked {
            company: line,
            problem: None,
            agreements: Vec::new(),
            offered: 0,
            action,
        });
    }
    let Some(agreement_type) = settings.agreement_type.as_deref() else {
        return Ok(Picked {
            company: line,
            problem: Some(no_agreement_type()),
            agreements: Vec::new(),
            offered: 0,
            action,
        });
    };
    let mut agreements = cw.agreements_of_company(company_id).await.map_err(|e| {
        companies::failed(&format!("read the agreements of company #{company_id}"), &e)
    })?;
    agreements.sort_by_key(|a| a.id);
    let mappings = web.app.store.list_mappings().await?;
    let mut lines = Vec::with_capacity(agreements.len());
    for a in &agreements {
        let mut refused = agreement_refusal(a, company_id, agreement_type);
        if refused.is_none() {
            if let Some(m) = holder(&mappings, tenant, a.id) {
                refused = Some(format!(
                    "it already bills {}: one agreement bills one customer",
                    holder_text(web.app.store.as_ref(), &m).await?
                ));
            }
        }
        lines.push(AgreementLine {
            id: a.id,
            name: a.name.clone(),
            type_name: agreement_type_name(a),
            status: agreement_status(a),
            refused,
        });
    }
    let offered = lines.iter().filter(|l| l.refused.is_none()).count();
    Ok(Picked {
        company: line,
        problem: None,
        agreements: lines,
        offered,
        action,
    })
}

fn companies_info(c: &Companies, refresh_link: String) -> CompaniesInfo {
    CompaniesInfo {
        count: c.index.len(),
        deleted: c.index.companies().iter().filter(|c| c.deleted).count(),
        age: companies::age(c.read_at),
        refresh_link,
    }
}

/// This page's address with `refresh=1`: the companies are read again.
fn refresh_link(pairs: &[(String, String)]) -> String {
    let mut kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "tenant" | "company" | "q" | "after"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    kept.push(("refresh", "1"));
    format!(
        "/console/mapping?{}",
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    )
}

fn notice(pairs: &[(String, String)], settings: &Settings) -> Option<String> {
    match query_get(pairs, "done") {
        Some("code") => {
            let code = query_get(pairs, "code")?;
            let identifier = settings.product_codes.get(code)?;
            let mut text = format!("Billing code {code} now bills as {identifier}");
            if let Some(own) = settings.own_catalog_item(identifier) {
                text.push_str(&format!(" (your own catalog item {own})"));
            }
            text.push_str(". The next sync uses it.");
            if !settings.products.contains(identifier) {
                text.push_str(&format!(
                    " {identifier} is not among the synced products, so it is still not billed: select it on the Settings page."
                ));
            }
            Some(text)
        }
        _ => None,
    }
}
