//! The audit trail, latest first, filterable by customer, action, run and person
//! (kept in the query string), paged; and its CSV export with spreadsheet formulas
//! neutralised.

use crate::console::csv::{Cell, write_cells, write_row};
use crate::console::page::{Authed, ConsoleError, Layout, query_get, query_pairs, render};
use crate::console::pages::customer::{AuditLine, audit_line};
use crate::state::Web;
use crate::store::{AuditEntry, AuditFilter, MAX_PAGE};
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/console/audit", get(audit_page))
        .route("/console/audit.csv", get(audit_csv))
}

/// Entries per page.
const ROWS: usize = 100;
/// Rows of one CSV download; a larger trail continues through the `Link` header's
/// next cursor (the response stays far below Lambda's 6 MB).
const CSV_ROWS: usize = 10_000;

/// Every action the trail holds: the sync's writes, then the console's own.
pub const ACTIONS: [&str; 21] = [
    "createCatalogItem",
    "adoptCatalogItem",
    "createAddition",
    "updateAddition",
    "zeroAddition",
    "cancelAddition",
    "adoptAddition",
    "reconcileAddition",
    "consoleLogin",
    "consoleLoginFailed",
    "consoleLoginLocked",
    "consoleLogout",
    "setMapping",
    "ignoreCustomer",
    "unignoreCustomer",
    "clearMapping",
    "updateSettings",
    "requestSync",
    "requestDryRun",
    "approveChange",
    "rejectChange",
];

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    tenant: String,
    action: String,
    run: String,
    actor: String,
    actions: &'static [&'static str],
    rows: Vec<AuditRow>,
    next_link: Option<String>,
    csv_link: String,
}

/// One entry as shown, with the link to that person's entries.
struct AuditRow {
    line: AuditLine,
    actor_link: String,
}

impl AuditRow {
    fn of(e: &AuditEntry) -> Self {
        let by_actor = AuditFilter {
            actor: Some(e.actor.clone()),
            ..AuditFilter::default()
        };
        Self {
            line: audit_line(e),
            actor_link: link("/console/audit", &by_actor, None),
        }
    }
}

struct Query {
    filter: AuditFilter,
    before: Option<String>,
}

fn parse(uri: &Uri) -> Result<Query, ConsoleError> {
    let q = query_pairs(uri)?;
    let action = query_get(&q, "action").map(str::to_owned);
    if let Some(a) = &action {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(ConsoleError::BadRequest(format!(
                "there is no audit action {a:?}: choose one of {}",
                ACTIONS.join(", ")
            )));
        }
    }
    Ok(Query {
        filter: AuditFilter {
            run_id: query_get(&q, "run").map(str::to_owned),
            tenant_id: query_get(&q, "tenant").map(str::to_owned),
            action,
            actor: query_get(&q, "actor").map(str::to_owned),
        },
        before: query_get(&q, "before").map(str::to_owned),
    })
}

/// The filter as a query string, plus a cursor.
fn link(path: &str, f: &AuditFilter, before: Option<&str>) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = &f.tenant_id {
        pairs.push(("tenant", t));
    }
    if let Some(a) = &f.action {
        pairs.push(("action", a));
    }
    if let Some(r) = &f.run_id {
        pairs.push(("run", r));
    }
    if let Some(p) = &f.actor {
        pairs.push(("actor", p));
    }
    if let Some(b) = before {
        pairs.push(("before", b));
    }
    let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    if qs.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{qs}")
    }
}

async fn audit_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let q = parse(&uri)?;
    let page = web
        .app
        .store
        .list_audit_page(&q.filter, ROWS, q.before.as_deref())
        .await?;
    Ok(render(&AuditPage {
        layout: authed.layout("audit"),
        tenant: q.filter.tenant_id.clone().unwrap_or_default(),
        action: q.filter.action.clone().unwrap_or_default(),
        run: q.filter.run_id.clone().unwrap_or_default(),
        actor: q.filter.actor.clone().unwrap_or_default(),
        actions: &ACTIONS,
        rows: page.items.iter().map(AuditRow::of).collect(),
        next_link: page
            .next
            .as_deref()
            .map(|n| link("/console/audit", &q.filter, Some(n))),
        csv_link: link("/console/audit.csv", &q.filter, None),
    }))
}

async fn audit_csv(
    State(web): State<Web>,
    _authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let q = parse(&uri)?;
    let mut out = String::new();
    write_row(
        &mut out,
        &[
            "at",
            "actor",
            "action",
            "tenantId",
            "agreementId",
            "identifier",
            "entityId",
            "oldQuantity",
            "newQuantity",
            "detail",
            "runId",
        ],
    );
    let mut before = q.before.clone();
    let mut rows = 0;
    let next = loop {
        let page = web
            .app
            .store
            .list_audit_page(&q.filter, MAX_PAGE.min(CSV_ROWS - rows), before.as_deref())
            .await?;
        rows += page.items.len();
        for e in &page.items {
            csv_row(&mut out, e);
        }
        match page.next {
            Some(n) if rows < CSV_ROWS => before = Some(n),
            next => break next,
        }
    };
    let mut response = out.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    if let Some(n) = next {
        let next_link = format!(
            "<{}>; rel=\"next\"",
            link("/console/audit.csv", &q.filter, Some(&n))
        );
        if let Ok(v) = HeaderValue::from_str(&next_link) {
            h.insert(header::LINK, v);
        }
    }
    Ok(response)
}

fn csv_row(out: &mut String, e: &AuditEntry) {
    let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let opt_num = |v: Option<f64>| v.map_or(Cell::Text(""), Cell::Number);
    let opt_int = |v: Option<i64>| v.map_or(Cell::Text(""), Cell::Integer);
    write_cells(
        out,
        &[
            Cell::Text(&at),
            Cell::Text(&e.actor),
            Cell::Text(&e.action),
            Cell::Text(e.tenant_id.as_deref().unwrap_or("")),
            opt_int(e.agreement_id),
            Cell::Text(&e.identifier),
            opt_int(e.entity_id),
            opt_num(e.old_quantity),
            opt_num(e.new_quantity),
            Cell::Text(e.detail.as_deref().unwrap_or("")),
            Cell::Text(&e.run_id),
        ],
    );
}
