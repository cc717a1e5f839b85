//! One customer: its mapping and why, per product its quantities, addition and
//! last change, its audit entries, and the actions ignore / un-ignore / clear the
//! mapping (mapping to a company is on the Mapping page, with suggestions).

use crate::config::operators::Role;
use crate::console::page::{
    self, Authed, ConsoleError, Layout, SignedForm, query_get, query_pairs, render, see_other,
    wire_name,
};
use crate::console::pages::customers::ErrorRow;
use crate::console::pages::view::{action_name, held_link, qty};
use crate::state::Web;
use crate::store::{AuditEntry, AuditFilter, Mapping, MappingKind};
use crate::sync::report::CustomerReport;
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};

pub fn routes() -> Router<Web> {
    Router::new()
        // The page: every role. Ignore, unignore and clear: operator.
        .route("/console/customers/{tenant}", get(customer_page))
        .route("/console/customers/{tenant}/ignore", post(ignore))
        .route("/console/customers/{tenant}/unignore", post(unignore))
        .route("/console/customers/{tenant}/clear", post(clear))
}

/// Audit entries shown on the page (the Audit page has them all).
const AUDIT_ROWS: usize = 50;

#[derive(Template)]
#[template(path = "customer.html")]
struct CustomerPage {
    layout: Layout,
    tenant_id: String,
    name: String,
    status: String,
    reason: Option<String>,
    company: Option<String>,
    agreement: Option<String>,
    mapping: MappingView,
    products: Vec<ProductLine>,
    errors: Vec<ErrorRow>,
    audit: Vec<AuditLine>,
    last_run: String,
    done: Option<&'static str>,
    link: String,
}

pub struct MappingView {
    pub kind: &'static str,
    pub why: String,
    pub ignored: bool,
    pub has_mapping: bool,
}

pub struct ProductLine {
    pub identifier: String,
    pub sophos: String,
    pub before: String,
    pub after: String,
    pub addition_id: String,
    pub action: &'static str,
    /// The held change behind a `hold` or `rejected` action: (id, review link).
    pub held: Option<(String, String)>,
}

pub struct AuditLine {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub what: String,
    pub run_id: String,
    pub tenant: String,
}

pub fn audit_line(e: &AuditEntry) -> AuditLine {
    let mut what = Vec::new();
    if !e.identifier.is_empty() {
        what.push(e.identifier.clone());
    }
    if e.old_quantity.is_some() || e.new_quantity.is_some() {
        what.push(format!("{} → {}", qty(e.old_quantity), qty(e.new_quantity)));
    }
    if let Some(id) = e.entity_id {
        what.push(format!("#{id}"));
    }
    if let Some(d) = &e.detail {
        what.push(d.clone());
    }
    AuditLine {
        at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        what: what.join(" · "),
        run_id: e.run_id.clone(),
        tenant: e.tenant_id.clone().unwrap_or_default(),
    }
}

fn mapping_view(mapping: Option<&Mapping>) -> MappingView {
    match mapping {
        None => MappingView {
            kind: "none",
            why: "No mapping is stored: each sync looks for exactly one active ConnectWise company with this customer's name, and reports the customer as unmapped when there is none or several.".into(),
            ignored: false,
            has_mapping: false,
        },
        Some(m) => {
            let target = match (m.company_id, m.agreement_id) {
                (Some(c), Some(a)) => format!("company #{c}, agreement #{a}"),
                (Some(c), None) => format!("company #{c} (its one active agreement of the configured type)"),
                _ => String::new(),
            };
            let when = m.updated_at.format("%Y-%m-%d %H:%M UTC");
            let (kind, why) = match m.kind {
                MappingKind::Manual => ("manual", format!("Set by hand on {when}: {target}. A manual mapping always wins over discovery.")),
                MappingKind::Discovered => ("discovered", format!("Found by the exact-name rule and remembered on {when}: {target}. A renamed company stays mapped.")),
                MappingKind::Ignored => ("ignored", format!("Left out by an operator on {when}: no sync writes anything for this customer.")),
            };
            MappingView {
                kind,
                why,
                ignored: m.kind == MappingKind::Ignored,
                has_mapping: true,
            }
        }
    }
}

async fn customer_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
    Path(tenant): Path<String>,
) -> Result<Response, ConsoleError> {
    let q = query_pairs(&uri)?;
    let store = web.app.store.as_ref();
    let status = store.get_customer_status(&tenant).await?;
    let mapping = store.get_mapping(&tenant).await?;
    if status.is_none() && mapping.is_none() {
        return Err(unknown(&tenant));
    }
    let report: Option<CustomerReport> = status
        .as_ref()
        .and_then(|s| serde_json::from_value(s.report.clone()).ok());
    let filter = AuditFilter {
        tenant_id: Some(tenant.clone()),
        ..AuditFilter::default()
    };
    let audit = store.list_audit_page(&filter, AUDIT_ROWS, None).await?;
    let done = match query_get(&q, "done") {
        Some("ignored") => Some("The customer is now ignored: syncs leave it alone."),
        Some("unignored") => {
            Some("The customer is no longer ignored: the next sync maps it again.")
        }
        Some("cleared") => {
            Some("The mapping is cleared: the next sync looks for the company by name again.")
        }
        Some("mapped") => Some("Mapped. Run a sync (Runs page) to bill it."),
        _ => None,
    };
    let (name, status_name, reason, company, agreement, products, errors) = match &report {
        Some(r) => (
            r.tenant_name.clone(),
            wire_name(&r.status),
            r.reason.clone(),
            company_text(r),
            r.agreement_name
                .as_ref()
                .map(|n| match (&r.agreement_type, r.agreement_id) {
                    (Some(t), Some(id)) => format!("{n} · {t} (#{id})"),
                    (None, Some(id)) => format!("{n} (#{id})"),
                    _ => n.clone(),
                }),
            r.products
                .iter()
                .map(|p| ProductLine {
                    identifier: p.identifier.clone(),
                    sophos: qty(Some(p.sophos_quantity)),
                    before: qty(p.previous_quantity),
                    after: qty(p.new_quantity),
                    addition_id: p.addition_id.map_or("–".into(), |id| format!("#{id}")),
                    action: action_name(p.action),
                    held: held_link(p),
                })
                .collect(),
            r.errors.iter().map(ErrorRow::of).collect(),
        ),
        None => (
            tenant.clone(),
            "unknown".to_owned(),
            None,
            None,
            None,
            Vec::new(),
            Vec::new(),
        ),
    };
    Ok(render(&CustomerPage {
        layout: authed.layout("customers"),
        link: customer_link(&tenant),
        tenant_id: tenant,
        name,
        status: status_name,
        reason,
        company,
        agreement,
        mapping: mapping_view(mapping.as_ref()),
        products,
        errors,
        audit: audit.items.iter().map(audit_line).collect(),
        last_run: status.map(|s| s.run_id).unwrap_or_default(),
        done,
    }))
}

pub fn company_text(r: &CustomerReport) -> Option<String> {
    let id = r.company_id?;
    Some(match (&r.company_name, &r.company_identifier) {
        (Some(n), Some(i)) => format!("{n} ({i}, #{id})"),
        (None, Some(i)) => format!("{i} (#{id})"),
        (Some(n), None) => format!("{n} (#{id})"),
        (None, None) => format!("#{id}"),
    })
}

pub fn customer_link(tenant: &str) -> String {
    format!("/console/customers/{}", page::encode(tenant))
}

pub fn unknown(tenant: &str) -> ConsoleError {
    ConsoleError::NotFound(format!(
        "there is no customer {tenant:?}: only customers a sync has seen (or that have a mapping) are known; the Customers page lists them"
    ))
}

/// Known: the latest run reported it, or it has a mapping.
pub async fn ensure_known(web: &Web, tenant: &str) -> Result<Option<Mapping>, ConsoleError> {
    let mapping = web.app.store.get_mapping(tenant).await?;
    if mapping.is_none() && web.app.store.get_customer_status(tenant).await?.is_none() {
        return Err(unknown(tenant));
    }
    Ok(mapping)
}

async fn ignore(
    State(web): State<Web>,
    Path(tenant): Path<String>,
    SignedForm { authed, form: _ }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "ignore a customer")?;
    ensure_known(&web, &tenant).await?;
    let mapping = Mapping {
        tenant_id: tenant.clone(),
        kind: MappingKind::Ignored,
        company_id: None,
        agreement_id: None,
        updated_at: chrono::Utc::now(),
    };
    web.app
        .changes()
        .set_mapping_as(
            &mapping,
            &authed.actor(),
            "ignoreCustomer",
            Some("ignored".into()),
        )
        .await?;
    Ok(done(&tenant, "ignored"))
}

async fn unignore(
    State(web): State<Web>,
    Path(tenant): Path<String>,
    SignedForm { authed, form: _ }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "stop ignoring a customer")?;
    match ensure_known(&web, &tenant).await? {
        Some(m) if m.kind == MappingKind::Ignored => {}
        _ => {
            return Err(ConsoleError::Conflict(format!(
                "customer {tenant:?} is not ignored, so there is nothing to un-ignore; reload its page to see its mapping"
            )));
        }
    }
    web.app
        .changes()
        .clear_mapping_as(&tenant, &authed.actor(), "unignoreCustomer")
        .await?;
    Ok(done(&tenant, "unignored"))
}

async fn clear(
    State(web): State<Web>,
    Path(tenant): Path<String>,
    SignedForm { authed, form: _ }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "clear a customer's mapping")?;
    let cleared = match ensure_known(&web, &tenant).await? {
        Some(_) => web.app.clear_mapping(&tenant, &authed.actor()).await?,
        None => None,
    };
    if cleared.is_none() {
        return Err(ConsoleError::Conflict(format!(
            "customer {tenant:?} has no mapping to clear; reload its page"
        )));
    }
    Ok(done(&tenant, "cleared"))
}

/// Back to the customer's page with a notice (`?done=`); the change is on the
/// audit trail already (see [`crate::app::changes`]).
fn done(tenant: &str, what: &str) -> Response {
    see_other(&format!("{}?done={what}", customer_link(tenant)))
}

pub use crate::app::changes::describe_mapping as describe;
