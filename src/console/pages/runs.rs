//! Runs, latest first; one run's changes, errors and skipped customers (paged);
//! "Sync now" and "Preview (dry run)", which start a run through the same code as
//! `POST /sync`, and the progress of a run until it finishes.

use crate::app::StartOutcome;
use crate::config::operators::Role;
use crate::console::audit_log::{self, ConsoleAction};
use crate::console::page::{
    self, Authed, ConsoleError, Layout, SignedForm, query_get, query_pairs, render, see_other,
    wire_name,
};
use crate::console::pages::customers::ErrorRow;
use crate::console::pages::view::{action_name, held_link, qty};
use crate::console::scan::{Source, scan_reports};
use crate::domain::month::Month;
use crate::state::Web;
use crate::store::{RunRecord, RunStatus};
use crate::sync::report::{CustomerReport, ProductAction, RunSummary};
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};

pub fn routes() -> Router<Web> {
    Router::new()
        // Pages: every role. Starting a run: operator (checked in the handler).
        .route("/console/runs", get(runs_page))
        .route("/console/runs/{id}", get(run_page))
        .route("/console/runs/{id}/progress", get(progress_fragment))
        .route("/console/sync", post(start_sync))
}

/// Runs per page of the list.
const RUNS: usize = 20;

/// A run as the list shows it.
pub struct RunRow {
    pub run_id: String,
    pub trigger: String,
    /// Who started it (`console:<email>`, `api:token`, `schedule`, ...); "–" for
    /// runs recorded before it was kept.
    pub started_by: String,
    pub month: String,
    pub status: String,
    pub dry_run: bool,
    pub started: String,
    pub duration: String,
    pub counts: String,
    pub writes: String,
    /// How often ConnectWise answered 429 and how low the concurrency went.
    pub throttling: String,
}

fn run_row(r: &RunRecord, summary: &RunSummary) -> RunRow {
    let counts = match &summary.customer_counts {
        Some(n) => format!(
            "{} customers: {} synced, {} error, {} unmapped, {} ignored",
            n.total, n.synced, n.error, n.unmapped, n.ignored
        ),
        None => "–".into(),
    };
    let duration = match r.finished_at {
        Some(f) => human_duration((f - r.started_at).num_milliseconds()),
        None => format!(
            "running for {}",
            human_duration((chrono::Utc::now() - r.started_at).num_milliseconds())
        ),
    };
    RunRow {
        run_id: r.run_id.clone(),
        trigger: r.trigger.clone(),
        started_by: r.started_by.clone().unwrap_or_else(|| "–".into()),
        month: if r.month.is_empty() {
            "(setting)".into()
        } else {
            r.month.clone()
        },
        status: wire_name(&r.status),
        dry_run: r.dry_run,
        started: r.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        duration,
        counts,
        writes: summary.writes.map_or("–".into(), |w| w.to_string()),
        throttling: throttling(summary),
    }
}

/// "none", or how many 429s and the fewest requests in flight; "–" for runs
/// recorded before throttling was kept.
fn throttling(summary: &RunSummary) -> String {
    match (summary.throttled, summary.lowest_concurrency) {
        (None, _) => "–".into(),
        (Some(0), _) => "none".into(),
        (Some(n), Some(lowest)) => {
            format!("{n} × 429 (busy), retried; requests in flight went down to {lowest}")
        }
        (Some(n), None) => format!("{n} × 429 (busy), retried"),
    }
}

fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    layout: Layout,
    runs: Vec<RunRow>,
    next: Option<String>,
    busy: Option<String>,
    /// A "Sync now" was refused because the sync is paused.
    paused: bool,
}

async fn runs_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let q = query_pairs(&uri)?;
    let before = query_get(&q, "before");
    let runs = web.app.store.list_runs(RUNS, before).await?;
    let next = (runs.len() == RUNS)
        .then(|| runs.last().map(|r| r.run_id.clone()))
        .flatten();
    Ok(render(&RunsPage {
        layout: authed.layout("runs"),
        runs: runs.iter().map(|r| run_row(r, &r.summary())).collect(),
        next,
        busy: query_get(&q, "busy").map(str::to_owned),
        paused: query_get(&q, "paused").is_some(),
    }))
}

/// "Sync now" / "Preview (dry run)": the same start as `POST /sync`.
async fn start_sync(
    State(web): State<Web>,
    SignedForm { authed, form }: SignedForm,
) -> Result<Response, ConsoleError> {
    authed.require(Role::Operator, "start a run (sync or dry run)")?;
    let dry_run = match form.get("mode") {
        Some("sync") => false,
        Some("preview") => true,
        _ => {
            return Err(ConsoleError::BadRequest(
                "say whether to sync or to preview (field \"mode\" is \"sync\" or \"preview\"): use the buttons on the Runs page".into(),
            ));
        }
    };
    let month = match form.get("month").filter(|m| !m.is_empty()) {
        Some(m) => Some(
            m.parse::<Month>()
                .map_err(|e| ConsoleError::BadRequest(format!("the month: {e}")))?,
        ),
        None => None,
    };
    // The checkbox beside "Sync now": lower quantities even though the usage
    // report shrank past `usageDropGuard`.
    let accept_usage_drop = form.get("acceptUsageDrop").is_some_and(|v| !v.is_empty());
    Ok(
        match request_sync(&web, &authed, month, dry_run, accept_usage_drop).await? {
            StartOutcome::Started { run_id } => see_other(&run_link(&run_id)),
            StartOutcome::Busy { run_id } => {
                see_other(&format!("/console/runs?busy={}", page::encode(&run_id)))
            }
            StartOutcome::Paused { .. } => see_other("/console/runs?paused=1"),
        },
    )
}

/// Starts a run as `POST /sync` does, on the audit trail as the session's request
/// (`requestSync` / `requestDryRun`, refused ones too): "Sync now", "Preview" and
/// the review page's "Sync now after approving".
pub async fn request_sync(
    web: &Web,
    authed: &Authed,
    month: Option<Month>,
    dry_run: bool,
    accept_usage_drop: bool,
) -> Result<StartOutcome, ConsoleError> {
    let outcome = web
        .app
        .start_sync_with(month, dry_run, accept_usage_drop, &authed.actor())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "console: cannot start a sync");
            ConsoleError::Unavailable(format!("the sync could not be started: {e}"))
        })?;
    let detail = match &outcome {
        StartOutcome::Started { run_id } => format!("started run {run_id}"),
        StartOutcome::Busy { run_id } => format!("refused: run {run_id} is already running"),
        StartOutcome::Paused { reason } => format!("refused: {reason}"),
    };
    let detail = if accept_usage_drop {
        format!("{detail}, accepting a usage drop")
    } else {
        detail
    };
    audit_log::record(
        web.app.store.as_ref(),
        ConsoleAction {
            actor: authed.actor(),
            action: if dry_run {
                "requestDryRun"
            } else {
                "requestSync"
            },
            tenant_id: None,
            agreement_id: None,
            detail: match month {
                Some(m) => format!("{detail} for {m}"),
                None => detail,
            },
        },
    )
    .await?;
    Ok(outcome)
}

pub fn run_link(run_id: &str) -> String {
    format!("/console/runs/{}", page::encode(run_id))
}

/// Which of a run's customers its page lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Show {
    All,
    /// Customers with at least one written (or, in a plan, planned) change.
    Changes,
    Errors,
    /// Customers with a product left alone because of an error.
    Skipped,
}

impl Show {
    pub const ALL: [Show; 4] = [Show::All, Show::Changes, Show::Errors, Show::Skipped];

    fn parse(value: Option<&str>) -> Result<Self, ConsoleError> {
        match value.unwrap_or("all") {
            "all" => Ok(Show::All),
            "changes" => Ok(Show::Changes),
            "errors" => Ok(Show::Errors),
            "skipped" => Ok(Show::Skipped),
            other => Err(ConsoleError::BadRequest(format!(
                "there is no view {other:?} of a run: show all, changes, errors or skipped"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Show::All => "all",
            Show::Changes => "changes",
            Show::Errors => "errors",
            Show::Skipped => "skipped",
        }
    }

    fn keeps(self, c: &CustomerReport) -> bool {
        match self {
            Show::All => true,
            Show::Changes => c
                .products
                .iter()
                .any(|p| !matches!(p.action, ProductAction::Unchanged | ProductAction::Skip)),
            Show::Errors => !c.errors.is_empty(),
            Show::Skipped => c.products.iter().any(|p| p.action == ProductAction::Skip),
        }
    }
}

/// One customer of a run, as the run page shows it.
pub struct RunCustomerRow {
    pub tenant_id: String,
    pub name: String,
    pub status: String,
    pub changes: Vec<ChangeRow>,
    pub skipped: Vec<String>,
    pub errors: Vec<ErrorRow>,
    pub reason: Option<String>,
}

pub struct ChangeRow {
    pub identifier: String,
    pub old: String,
    pub new: String,
    pub action: &'static str,
    /// A change held for review: (its id, its review link).
    pub held: Option<(String, String)>,
}

fn customer_row(c: &CustomerReport) -> RunCustomerRow {
    RunCustomerRow {
        tenant_id: c.tenant_id.clone(),
        name: c.tenant_name.clone(),
        status: wire_name(&c.status),
        changes: c
            .products
            .iter()
            .filter(|p| !matches!(p.action, ProductAction::Unchanged | ProductAction::Skip))
            .map(|p| ChangeRow {
                identifier: p.identifier.clone(),
                old: qty(p.previous_quantity),
                new: qty(p.new_quantity),
                action: action_name(p.action),
                held: held_link(p),
            })
            .collect(),
        skipped: c
            .products
            .iter()
            .filter(|p| p.action == ProductAction::Skip)
            .map(|p| p.identifier.clone())
            .collect(),
        errors: c.errors.iter().map(ErrorRow::of).collect(),
        reason: c.reason.clone(),
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    layout: Layout,
    run: RunRow,
    running: bool,
    progress: Progress,
    cycle_errors: Vec<ErrorRow>,
    unassigned: Vec<String>,
    customers: Vec<RunCustomerRow>,
    changed: usize,
    next: Option<String>,
    next_link: String,
    first_page: bool,
    /// Which customers the page lists: all, changes, errors, skipped.
    show: &'static str,
    scanned: usize,
}

/// How far a running run has got.
pub struct Progress {
    pub finished: String,
    pub status: String,
    pub elapsed: String,
}

async fn run_page(
    State(web): State<Web>,
    authed: Authed,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let q = query_pairs(&uri)?;
    let after = query_get(&q, "after");
    let show = Show::parse(query_get(&q, "show"))?;
    let store = web.app.store.as_ref();
    let Some(run) = store.get_run(&id).await? else {
        return Err(ConsoleError::NotFound(format!(
            "there is no run {id:?}; the Runs page lists the known runs (old runs expire after 90 days)"
        )));
    };
    let page = scan_reports(store, Source::Run(&id), |c| show.keeps(c), after).await?;
    let customers: Vec<RunCustomerRow> = page.rows.iter().map(customer_row).collect();
    let changed = customers.iter().filter(|c| !c.changes.is_empty()).count();
    let summary = run.summary();
    let cycle_errors = summary.errors.iter().map(ErrorRow::of).collect();
    let unassigned = summary
        .unassigned_usage
        .iter()
        .map(|l| {
            format!(
                "{} ×{} ({})",
                l.product_code.as_deref().unwrap_or("no code"),
                qty(Some(l.quantity)),
                l.product_description.as_deref().unwrap_or("no description")
            )
        })
        .collect();
    let running = run.status == RunStatus::Running;
    let progress = progress(&run, &summary);
    Ok(render(&RunPage {
        layout: authed.layout("runs"),
        run: run_row(&run, &summary),
        running,
        progress,
        cycle_errors,
        unassigned,
        customers,
        changed,
        show: show.name(),
        scanned: page.scanned,
        next_link: format!(
            "{}?show={}&after={}",
            run_link(&id),
            show.name(),
            page::encode(page.next.as_deref().unwrap_or(""))
        ),
        next: page.next,
        first_page: after.is_none(),
    }))
}

/// How far a run has got: the counts the engine writes into the run record after
/// each batch of customers it stores, so the 2-second poll reads that one record
/// whatever the partner's size.
fn progress(run: &RunRecord, summary: &RunSummary) -> Progress {
    let counts = summary.customer_counts.unwrap_or_default();
    Progress {
        finished: counts.total.to_string(),
        status: wire_name(&run.status),
        elapsed: human_duration((chrono::Utc::now() - run.started_at).num_milliseconds()),
    }
}

#[derive(Template)]
#[template(path = "run_progress.html")]
struct ProgressFragment {
    run_id: String,
    progress: Progress,
}

/// The progress box, polled by htmx while the run runs; once it has finished the
/// answer tells htmx to reload the page, which then shows the results.
async fn progress_fragment(
    State(web): State<Web>,
    _authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let Some(run) = web.app.store.get_run(&id).await? else {
        return Err(ConsoleError::NotFound(format!("there is no run {id:?}")));
    };
    let progress = progress(&run, &run.summary());
    let mut response = render(&ProgressFragment {
        run_id: id,
        progress,
    });
    if run.status != RunStatus::Running {
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::throttling;
    use crate::sync::report::RunSummary;
    use serde_json::json;

    fn read(value: serde_json::Value) -> RunSummary {
        let (summary, problems) = RunSummary::read(&value);
        assert_eq!(problems, Vec::<String>::new(), "{value}");
        summary
    }

    #[test]
    fn throttling_says_how_often_and_how_low() {
        assert_eq!(
            throttling(&read(json!({"writes": 3}))),
            "–",
            "an old record"
        );
        assert_eq!(
            throttling(&read(json!({"throttled": 0, "lowestConcurrency": 4}))),
            "none"
        );
        assert_eq!(
            throttling(&read(json!({"throttled": 7, "lowestConcurrency": 2}))),
            "7 × 429 (busy), retried; requests in flight went down to 2"
        );
        assert_eq!(
            throttling(&read(json!({"throttled": 7}))),
            "7 × 429 (busy), retried"
        );
    }
}
