//! The home page: one row per Sophos customer with its latest result, a banner of
//! what needs a person first, filters by status and free text kept in the query
//! string (a filtered view is a link to share), and each error's code, message
//! and advice on the row.

use crate::console::page::{
    self, Authed, ConsoleError, Layout, query_get, query_pairs, render, wire_name,
};
use crate::console::pages::view::{self, action_name, held_link, qty};
use crate::console::scan::{Scan, Source, scan_reports};
use crate::state::Web;
use crate::store::Store;
use crate::sync::report::{CustomerReport, ProductAction, ProductReport, Warning};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;

pub fn routes() -> Router<Web> {
    Router::new().route("/console/", get(customers_page))
}

#[derive(Template)]
#[template(path = "customers.html")]
struct CustomersPage {
    layout: Layout,
    banner: Banner,
    filter: Filter,
    rows: Vec<Row>,
    /// The cursor of the next page, if there may be more.
    next: Option<String>,
    next_link: String,
    scanned: usize,
    has_statuses: bool,
}

/// The state and text filters, as in the query string.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: String,
    pub q: String,
}

impl Filter {
    pub const STATUSES: [&'static str; 5] = ["synced", "review", "error", "unmapped", "ignored"];

    fn parse(pairs: &[(String, String)]) -> Result<Self, ConsoleError> {
        let status = query_get(pairs, "status")
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_empty() && !Self::STATUSES.contains(&status.as_str()) {
            return Err(ConsoleError::BadRequest(format!(
                "there is no status {status:?}: filter by synced, review, error, unmapped or ignored"
            )));
        }
        Ok(Self {
            status,
            q: query_get(pairs, "q").unwrap_or("").to_owned(),
        })
    }

    pub fn matches(&self, c: &CustomerReport) -> bool {
        if !self.status.is_empty() && wire_name(&c.status) != self.status {
            return false;
        }
        if self.q.is_empty() {
            return true;
        }
        let needle = self.q.to_lowercase();
        let company_id = c.company_id.map(|id| id.to_string());
        [
            Some(c.tenant_name.as_str()),
            Some(c.tenant_id.as_str()),
            c.company_name.as_deref(),
            c.company_identifier.as_deref(),
            company_id.as_deref(),
            c.agreement_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|field| field.to_lowercase().contains(&needle))
    }

    /// The query string of this filter plus `after` (for links).
    pub fn link(&self, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if !self.status.is_empty() {
            pairs.push(("status", &self.status));
        }
        if !self.q.is_empty() {
            pairs.push(("q", &self.q));
        }
        if let Some(a) = after {
            pairs.push(("after", a));
        }
        let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if qs.is_empty() {
            "/console/".into()
        } else {
            format!("/console/?{qs}")
        }
    }
}

/// What needs a person first, from the latest finished (non-dry) run.
#[derive(Debug, Default)]
pub struct Banner {
    pub run_id: Option<String>,
    pub unmapped: u64,
    pub in_error: u64,
    pub unmapped_codes: u64,
    /// Open held changes (held or approved), as the store counts them.
    pub held: u64,
    /// The run's warnings (the first [`BANNER_WARNINGS`]): what it wrote although
    /// a person should look.
    pub warnings: Vec<ErrorRow>,
    /// Warnings past those, shown on the run's page.
    pub warnings_more: usize,
}

/// How many of the latest run's warnings the banner spells out.
pub const BANNER_WARNINGS: usize = 5;

/// One customer's row, ready to show.
pub struct Row {
    pub tenant_id: String,
    pub name: String,
    pub status: String,
    pub company: Option<String>,
    pub company_id: Option<i64>,
    pub agreement: Option<String>,
    pub agreement_type: Option<String>,
    pub products: Vec<ProductRow>,
    pub change: String,
    pub errors: Vec<ErrorRow>,
    pub detail_link: String,
}

/// An error as the page shows it: its code as the API spells it.
#[derive(Debug)]
pub struct ErrorRow {
    pub code: String,
    pub message: String,
    pub advice: String,
}

impl ErrorRow {
    pub fn of(e: &crate::sync::report::ErrorReport) -> Self {
        let code = wire_name(&e.code);
        Self {
            code,
            message: e.message.clone(),
            advice: e.advice.clone(),
        }
    }

    /// A run warning shown the same way: code, message, advice.
    pub fn of_warning(w: &Warning) -> Self {
        Self {
            code: wire_name(&w.code),
            message: w.message.clone(),
            advice: w.advice.clone(),
        }
    }
}

pub struct ProductRow {
    pub identifier: String,
    pub sophos: String,
    pub connectwise: String,
    pub action: &'static str,
    /// The held change behind a `hold` or `rejected` action, and its review link.
    pub held: Option<(String, String)>,
}

async fn customers_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let pairs = query_pairs(&uri)?;
    let filter = Filter::parse(&pairs)?;
    let after = query_get(&pairs, "after").map(str::to_owned);
    let store = web.app.store.as_ref();
    let Scan {
        rows: statuses,
        next,
        scanned,
    } = scan_reports(
        store,
        Source::Statuses,
        |r| filter.matches(r),
        after.as_deref(),
    )
    .await?;
    let rows = statuses.iter().map(row).collect();
    let banner = banner(store).await?;
    let has_statuses = !(statuses.is_empty()
        && after.is_none()
        && filter.status.is_empty()
        && filter.q.is_empty());
    let next_link = filter.link(next.as_deref());
    Ok(render(&CustomersPage {
        layout: authed.layout("customers"),
        banner,
        filter,
        rows,
        next,
        next_link,
        scanned,
        has_statuses,
    }))
}

/// The banner's counts from the latest finished run that wrote (dry runs change
/// nothing, so they do not say what is outstanding).
pub async fn banner(store: &dyn Store) -> Result<Banner, ConsoleError> {
    let held = view::count_open(store).await?;
    let Some(run) = latest_finished_run(store).await? else {
        return Ok(Banner {
            held,
            ..Banner::default()
        });
    };
    let summary = run.summary();
    let counts = summary.customer_counts.unwrap_or_default();
    let warnings = &summary.warnings;
    Ok(Banner {
        run_id: Some(run.run_id.clone()),
        unmapped: counts.unmapped,
        in_error: counts.error,
        unmapped_codes: summary.unmapped_code_count(),
        held,
        warnings_more: warnings.len().saturating_sub(BANNER_WARNINGS),
        warnings: warnings
            .iter()
            .take(BANNER_WARNINGS)
            .map(ErrorRow::of_warning)
            .collect(),
    })
}

/// The latest finished run that wrote (among the 20 latest runs), with a summary.
pub async fn latest_finished_run(
    store: &dyn Store,
) -> Result<Option<crate::store::RunRecord>, ConsoleError> {
    let runs = store.list_runs(20, None).await?;
    Ok(runs
        .into_iter()
        // A skipped run (paused, or busy) read nothing: the run before it still
        // tells how the customers stand.
        .find(|r| {
            !r.dry_run
                && r.finished_at.is_some()
                && r.report.is_object()
                && r.status != crate::store::RunStatus::Skipped
        }))
}

fn row(c: &CustomerReport) -> Row {
    let company = match (&c.company_name, &c.company_identifier) {
        (Some(name), Some(ident)) => Some(format!("{name} ({ident})")),
        (Some(name), None) => Some(name.clone()),
        (None, Some(ident)) => Some(ident.clone()),
        (None, None) => None,
    };
    Row {
        tenant_id: c.tenant_id.clone(),
        name: c.tenant_name.clone(),
        status: wire_name(&c.status),
        company,
        company_id: c.company_id,
        agreement: c.agreement_name.clone(),
        agreement_type: c.agreement_type.clone(),
        products: c.products.iter().map(product_row).collect(),
        change: change_summary(&c.products),
        errors: c.errors.iter().map(ErrorRow::of).collect(),
        detail_link: format!("/console/customers/{}", page::encode(&c.tenant_id)),
    }
}

pub fn product_row(p: &ProductReport) -> ProductRow {
    let cw = p.new_quantity.or(p.previous_quantity);
    ProductRow {
        identifier: p.identifier.clone(),
        sophos: qty(Some(p.sophos_quantity)),
        connectwise: qty(cw),
        action: action_name(p.action),
        held: held_link(p),
    }
}

/// The last run's change for the customer, e.g. "Sophos_Email: 10 → 12".
pub fn change_summary(products: &[ProductReport]) -> String {
    let changes: Vec<String> = products
        .iter()
        .filter(|p| !matches!(p.action, ProductAction::Unchanged | ProductAction::Skip))
        .map(|p| {
            format!(
                "{}: {} → {} ({})",
                p.identifier,
                qty(p.previous_quantity),
                qty(p.new_quantity),
                action_name(p.action)
            )
        })
        .collect();
    if changes.is_empty() {
        "no change".into()
    } else {
        changes.join("; ")
    }
}
