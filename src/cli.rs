//! The `sophos-cw-sync` command line: thin wiring of environment, store, clients
//! and engine, and the human-readable output.

use crate::app::changes::{ChangeError, Changes};
use crate::app::{App, AppError, JobStyle, NoContinuation, RunRequest};
use crate::config::{ConfigError, Environment, Settings};
use crate::domain::{month::Month, products};
use crate::store::{Mapping, MappingKind, RunStatus, Store, StoreError};
use crate::sync::engine::{KeepCustomers, new_run_id};
use crate::sync::kept::KeptCustomers;
use crate::sync::report::RunReport;
use crate::sync::review::{Decision, DecisionOutcome};
use crate::wiring::{load_secrets, open_store};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "sophos-cw-sync",
    version,
    about = "Keeps ConnectWise PSA agreement additions in step with Sophos Central Partner usage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one sync cycle (or, with --dry-run, print the plan and write nothing).
    Sync {
        #[arg(long)]
        dry_run: bool,
        /// Billing month YYYY-MM (default: the `month` setting).
        #[arg(long)]
        month: Option<String>,
        #[arg(long)]
        json: bool,
        /// Lower quantities even though the usage report shrank past the
        /// `usageDropGuard` setting (the run's report says it was accepted).
        #[arg(long)]
        accept_usage_drop: bool,
    },
    /// Stop every writing run (scheduled, webhook, this CLI) until `resume`;
    /// dry runs still plan.
    Pause {
        /// Why, shown wherever a run is refused and on every console page.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let writing runs write again after `pause`.
    Resume,
    /// Per-customer result of the latest run.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Map a Sophos tenant by hand, ignore it, or clear its mapping.
    Map {
        tenant_id: String,
        #[arg(long, conflicts_with_all = ["ignore", "clear"])]
        company: Option<i64>,
        #[arg(long, requires = "company")]
        agreement: Option<i64>,
        #[arg(long, conflicts_with = "clear")]
        ignore: bool,
        #[arg(long)]
        clear: bool,
    },
    /// Show the settings in force.
    Settings {
        #[arg(long)]
        json: bool,
    },
    /// Recent runs, latest first; with a run id, that run and all its customers.
    Runs {
        run_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail of ConnectWise writes, latest first.
    Audit {
        #[arg(long)]
        json: bool,
        /// Only the entries of this person, exactly as the trail names them
        /// (`console:alice@example.com`, `cli:bob`, `api:token`, `schedule`).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Changes held for review: list them (open ones; --all every status), or
    /// approve or reject them by id.
    #[command(args_conflicts_with_subcommands = true)]
    Review {
        #[command(subcommand)]
        action: Option<ReviewAction>,
        #[arg(long)]
        json: bool,
        /// Every held change (applied, closed and rejected too), not only the open ones.
        #[arg(long)]
        all: bool,
    },
    /// Serve the operator console (/console/) and the HTTP API (webhook, runs,
    /// status, audit, mappings, settings).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Let the console's session cookie travel over plain http on a loopback
        /// address (drops its Secure flag); refused on any other address.
        #[arg(long)]
        insecure_local_cookies: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReviewAction {
    /// Approve held changes: the next sync of their month writes them.
    Approve {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[arg(long)]
        json: bool,
        /// Run a sync cycle of each approved change's month right away, so the
        /// approval is written now.
        #[arg(long)]
        sync: bool,
    },
    /// Reject held changes: the same proposal is not made again this month.
    Reject {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes of the contract.
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_SKIPPED: u8 = 3;

pub async fn main(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Serve { .. }) {
        die_quietly_on_closed_pipe();
    }
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `sophos-cw-sync status | head -1`: once `head` has its line and closes the
/// pipe, the next write would fail, and Rust's `println!` panics on it. Rust
/// ignores SIGPIPE at start; restoring the default makes such a write end the
/// process quietly, killed by SIGPIPE (the shell's exit 141), as `cat` or `grep`
/// end: the conventional signal to a pipeline that the output was cut short by
/// its reader, not finished. One reset covers every print of every command,
/// where handling `BrokenPipe` would take a check at each `println!`.
///
/// Sockets are not affected: Rust writes them with `MSG_NOSIGNAL` (Linux) or
/// `SO_NOSIGPIPE` (macOS), so a vendor closing a connection is still an error.
/// `serve` keeps SIGPIPE ignored all the same: a long-running server should not
/// end because whoever reads its logs went away.
fn die_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: signal() sets one process-wide disposition and is safe to call from
    // any thread; SIG_DFL is valid for SIGPIPE, and nothing in this program
    // installs a SIGPIPE handler that this would replace.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub enum Failure {
    Config(String),
    Other(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e.0)
    }
}

impl From<crate::app::AppError> for Failure {
    fn from(e: crate::app::AppError) -> Self {
        match e {
            crate::app::AppError::Config(m) => Failure::Config(m),
            crate::app::AppError::Store(s) => Failure::from(s),
            other => Failure::Other(other.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Config(m) => Failure::Config(m),
            other => Failure::Other(other.to_string()),
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let env = Environment::from_process()?;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(open_store(&env.store).await?);
    let settings = apply_settings_file(store.as_ref(), &env).await?;
    let shared = store.clone();
    let store = store.as_ref();
    match cli.command {
        Command::Sync {
            dry_run,
            month,
            json,
            accept_usage_drop,
        } => {
            let request = SyncRequest {
                dry_run,
                month,
                accept_usage_drop,
            };
            sync(&cli_app(env, shared), request, json).await
        }
        Command::Pause { reason } => pause(store, reason).await,
        Command::Resume => resume(store).await,
        Command::Status { json } => status(store, json).await,
        Command::Map {
            tenant_id,
            company,
            agreement,
            ignore,
            clear,
        } => map(store, tenant_id, company, agreement, ignore, clear).await,
        Command::Settings { json } => {
            if json {
                println!("{}", settings_json(&settings))
            } else {
                print_settings(&settings)
            }
            Ok(0)
        }
        Command::Runs { run_id, json } => runs(store, run_id, json).await,
        Command::Audit { json, actor } => audit(store, json, actor).await,
        Command::Review { action, json, all } => match action {
            None => review_list(store, json, all).await,
            Some(ReviewAction::Approve { ids, json, sync }) => {
                let outcomes = decide(store, &ids, Decision::Approve).await?;
                review_approved(&cli_app(env, shared), outcomes, json, sync).await
            }
            Some(ReviewAction::Reject { ids, json }) => {
                let outcomes = decide(store, &ids, Decision::Reject).await?;
                print_decisions(&outcomes, Decision::Reject, json, Vec::new());
                Ok(decisions_code(&outcomes))
            }
        },
        // Boxed: the server future is deep, and inlined it overflows the layout query.
        Command::Serve {
            addr,
            insecure_local_cookies,
        } => {
            let opts = crate::serve::ServeOptions {
                addr,
                insecure_local_cookies,
            };
            Box::pin(crate::serve::run(opts, env, shared))
                .await
                .map(|()| 0)
                .map_err(Failure::from)
        }
    }
}

/// The App the CLI's cycles run through, as the service's do; they run to their
/// end in this process, so there is never a next invocation to ask for.
fn cli_app(env: Environment, store: Arc<dyn Store>) -> App {
    App::new(env, store, Arc::new(NoContinuation), None)
}

/// `SYNC_SETTINGS` replaces the stored settings with the file's (a missing field
/// takes its default); without it the stored settings are used. A change goes on
/// the audit trail as the CLI user's; a pause in force is kept unless the file
/// says `"paused"` itself, so a settings file never resumes a sync by leaving it out.
async fn apply_settings_file(store: &dyn Store, env: &Environment) -> Result<Settings, Failure> {
    let Some(path) = &env.settings_file else {
        return Ok(store.get_settings().await?.unwrap_or_default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read SYNC_SETTINGS file {} ({e})",
            path.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "settings file {} is not valid: {e}",
            path.display()
        ))
    })?;
    let says_paused = value.get("paused").is_some();
    let mut settings: Settings = serde_json::from_value(value).map_err(|e| {
        ConfigError(format!(
            "settings file {} is not valid: {e}",
            path.display()
        ))
    })?;
    let changes = Changes::new(store);
    let stored = changes.settings().await?;
    if !says_paused {
        settings.paused = stored.paused.clone();
    }
    check_new_agreement_type(env, &stored, &settings).await?;
    if crate::app::may_leave_no_admin(env, &stored, &settings) {
        let secrets = load_secrets(&env.secrets).await?;
        crate::app::check_keeps_an_admin(env, &secrets, &stored, &settings)
            .map_err(|e| change_failure(e, "SYNC_SETTINGS"))?;
    }
    let saved = changes
        .update_settings(settings, &cli_actor(), Some("applied SYNC_SETTINGS"))
        .await
        .map_err(|e| change_failure(e, "SYNC_SETTINGS"))?;
    Ok(saved.settings)
}

/// A changed `agreementType` is checked against ConnectWise before it is stored,
/// as `PUT /settings` and the console check it; the settings' own checks first.
async fn check_new_agreement_type(
    env: &Environment,
    stored: &Settings,
    new: &Settings,
) -> Result<(), Failure> {
    let Some(name) = new
        .agreement_type
        .as_deref()
        .filter(|n| Some(*n) != stored.agreement_type.as_deref())
    else {
        return Ok(());
    };
    crate::wiring::validate_settings(new)
        .map_err(|e| Failure::Config(format!("SYNC_SETTINGS: {}", e.0)))?;
    let secrets = load_secrets(&env.secrets).await?;
    crate::app::check_agreement_type(env, &secrets, name)
        .await
        .map_err(|e| change_failure(e, "SYNC_SETTINGS"))
}

/// A use case's refusal as the CLI's failure: bad input is a configuration error
/// (exit 2) and names where it came from.
fn change_failure(e: ChangeError, source: &str) -> Failure {
    match e {
        ChangeError::Store(s) => Failure::from(s),
        ChangeError::Invalid(m) => Failure::Config(format!("{source}: {m}")),
        other => Failure::Config(format!("{source}: {other}")),
    }
}

/// `pause [--reason TEXT]`.
async fn pause(store: &dyn Store, reason: Option<String>) -> Result<u8, Failure> {
    let saved = Changes::new(store)
        .pause(&cli_actor(), reason)
        .await
        .map_err(|e| change_failure(e, "pause"))?;
    let pause = saved.settings.paused.unwrap_or_default();
    if saved.changed {
        println!(
            "{}; writing runs are skipped until `sophos-cw-sync resume` (console: Settings > Resume; API: PUT /settings with \"paused\": false)",
            pause.describe()
        );
    } else {
        println!("already paused: {}", pause.describe());
    }
    Ok(0)
}

/// `resume`.
async fn resume(store: &dyn Store) -> Result<u8, Failure> {
    let saved = Changes::new(store)
        .resume(&cli_actor())
        .await
        .map_err(|e| change_failure(e, "resume"))?;
    println!(
        "{}",
        if saved.changed {
            "resumed: the next run writes again"
        } else {
            "the sync was not paused"
        }
    );
    Ok(0)
}

/// What `sync` was asked for.
struct SyncRequest {
    dry_run: bool,
    month: Option<String>,
    accept_usage_drop: bool,
}

async fn sync(app: &App, request: SyncRequest, json: bool) -> Result<u8, Failure> {
    // Checked here, so that the error names the option.
    let month = request
        .month
        .map(|m| m.parse::<Month>())
        .transpose()
        .map_err(|e| ConfigError(format!("--month: {e}")))?;
    let mut job = RunRequest::new(new_run_id(), month, request.dry_run, "cli");
    job.accept_usage_drop = request.accept_usage_drop;
    // The results to print wait in a temporary file, not in memory (sync::kept).
    let kept = match KeptCustomers::new() {
        Ok(kept) => Some(Arc::new(std::sync::Mutex::new(kept))),
        Err(e) => {
            eprintln!(
                "warning: no temporary file for the results ({e}): they are kept in memory; set TMPDIR to a writable directory"
            );
            None
        }
    };
    let keep = kept.as_ref().map_or(KeepCustomers::InReport, |k| {
        KeepCustomers::OnDisk(k.clone())
    });
    let report = cycle(app, job, keep).await?;
    if let Some(reason) = report
        .reason
        .as_deref()
        .filter(|_| report.status == RunStatus::Skipped)
    {
        // The reason says who paused and how to resume (or which run holds the lease).
        eprintln!("skipped: {reason}");
    }
    let printed = match kept {
        Some(kept) => {
            let mut kept = kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if json {
                crate::output::print_report_json_kept(&report, &mut kept)
            } else {
                crate::output::print_report_kept(&report, &mut kept)
            }
        }
        None if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(())
        }
        None => {
            crate::output::print_report(&report);
            Ok(())
        }
    };
    if let Err(e) = printed {
        eprintln!(
            "warning: the results could not all be printed ({e}); see `sophos-cw-sync runs {}`",
            report.run_id
        );
    }
    Ok(exit_code(&report))
}

/// One sync cycle as the service runs one (`App::run_job_as`), started by the CLI's
/// user, with no invocation deadline: its results kept as `keep` says, a dry run
/// written nowhere.
async fn cycle(app: &App, job: RunRequest, keep: KeepCustomers) -> Result<RunReport, Failure> {
    let job = RunRequest {
        started_by: Some(cli_actor()),
        ..job
    };
    let style = JobStyle {
        keep_customers: keep,
        record_dry_run: false,
        crash_after_writes: crate::clock::test_hook_number("SOPHOS_CW_SYNC_CRASH_AFTER_WRITES"),
    };
    match app.run_job_as(&job, None, style).await {
        Ok(report) => Ok(report),
        Err(AppError::Crashed(n)) => {
            // The failpoint stands for a killed process: no cleanup at all.
            eprintln!("crash injected after {n} writes");
            std::process::exit(137);
        }
        Err(e) => Err(Failure::from(e)),
    }
}

fn exit_code(report: &RunReport) -> u8 {
    match report.status {
        RunStatus::Skipped => EXIT_SKIPPED,
        RunStatus::Failed => EXIT_FAILED,
        _ => 0,
    }
}

/// Customers read per store call by `status` and `runs <id>`: what is printed is
/// streamed, never held whole.
const CLI_PAGE: usize = 200;

async fn status(store: &dyn Store, json: bool) -> Result<u8, Failure> {
    let mut out =
        crate::output::CustomerList::new(json, "no sync has run yet: run `sophos-cw-sync sync`");
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_customer_statuses(CLI_PAGE, after.as_deref())
            .await?;
        out.page(page.items.into_iter().map(|s| s.report));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.finish();
    Ok(0)
}

/// `runs <id>`: the run's summary, then its customers page by page.
async fn run_detail(store: &dyn Store, run_id: &str, json: bool) -> Result<u8, Failure> {
    let Some(run) = store.get_run(run_id).await? else {
        return Err(Failure::Other(format!(
            "no run {run_id:?}: `sophos-cw-sync runs` lists the recent run ids"
        )));
    };
    if json {
        // The record's fields, then `customers` streamed as the last one.
        let record = serde_json::to_string_pretty(&run).unwrap_or_default();
        let head = record.trim_end();
        let head = head.strip_suffix('}').unwrap_or(head).trim_end();
        println!("{head},\n  \"customers\":");
    } else {
        crate::output::print_run_summary(&run);
    }
    let mut out = crate::output::CustomerList::new(json, "no customer results recorded");
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_run_customers(run_id, CLI_PAGE, after.as_deref())
            .await?;
        out.page(page.items.into_iter().map(|c| c.report));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.finish();
    if json {
        println!("}}");
    }
    Ok(0)
}

async fn map(
    store: &dyn Store,
    tenant_id: String,
    company: Option<i64>,
    agreement: Option<i64>,
    ignore: bool,
    clear: bool,
) -> Result<u8, Failure> {
    let tenant_id = tenant_id.trim().to_owned();
    if tenant_id.is_empty() {
        return Err(Failure::Config(
            "the tenant id is empty: use the Sophos tenant id shown by `status`".into(),
        ));
    }
    let changes = Changes::new(store);
    if clear {
        let existed = changes
            .clear_mapping(&tenant_id, &cli_actor())
            .await
            .map_err(|e| change_failure(e, "map --clear"))?
            .is_some();
        println!(
            "{}",
            if existed {
                format!("mapping of {tenant_id} cleared")
            } else {
                format!("{tenant_id} had no mapping")
            }
        );
        return Ok(0);
    }
    let kind = if ignore {
        MappingKind::Ignored
    } else {
        MappingKind::Manual
    };
    if !ignore && company.is_none() {
        return Err(Failure::Config(
            "say what to map to: --company <id> [--agreement <id>], --ignore or --clear".into(),
        ));
    }
    let mapping = Mapping {
        tenant_id: tenant_id.clone(),
        kind,
        company_id: company,
        agreement_id: agreement,
        updated_at: chrono::Utc::now(),
    };
    changes
        .set_mapping(&mapping, &cli_actor())
        .await
        .map_err(|e| change_failure(e, "map"))?;
    match kind {
        MappingKind::Ignored => println!("{tenant_id} will be ignored by the sync"),
        _ => println!(
            "{tenant_id} mapped to company {}{}",
            company.unwrap_or_default(),
            agreement
                .map(|a| format!(", agreement {a}"))
                .unwrap_or_default()
        ),
    }
    Ok(0)
}

async fn runs(store: &dyn Store, run_id: Option<String>, json: bool) -> Result<u8, Failure> {
    if let Some(id) = run_id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        return run_detail(store, id, json).await;
    }
    let runs = store.list_runs(20, None).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
    } else {
        crate::output::print_runs(&runs);
    }
    Ok(0)
}

async fn audit(store: &dyn Store, json: bool, actor: Option<String>) -> Result<u8, Failure> {
    let filter = crate::store::AuditFilter {
        actor: actor.filter(|a| !a.trim().is_empty()),
        ..crate::store::AuditFilter::default()
    };
    let entries = store.list_audit_matching(&filter, 200).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
    } else {
        crate::output::print_audit(&entries);
    }
    Ok(0)
}

// ---------------------------------------------------------------- review

/// Who decides from the command line.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "sophos-cw-sync".into())
    )
}

/// `review [--all]`: the held changes page by page, printed as they are read.
async fn review_list(store: &dyn Store, json: bool, all: bool) -> Result<u8, Failure> {
    let mut out = crate::output::HeldList::new(
        json,
        if all {
            "no change was ever held for review"
        } else {
            "no change waits for review (`sophos-cw-sync review --all` lists the decided ones)"
        },
    );
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_held_changes(!all, CLI_PAGE, after.as_deref())
            .await?;
        out.page(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.finish();
    Ok(0)
}

async fn decide(
    store: &dyn Store,
    ids: &[String],
    decision: Decision,
) -> Result<Vec<DecisionOutcome>, Failure> {
    Ok(crate::sync::review::decide(store, ids, decision, &cli_actor()).await?)
}

/// Approvals, then (with `--sync`) one cycle per month of the approved changes.
async fn review_approved(
    app: &App,
    outcomes: Vec<DecisionOutcome>,
    json: bool,
    sync: bool,
) -> Result<u8, Failure> {
    let mut code = decisions_code(&outcomes);
    let mut reports = Vec::new();
    if sync {
        let months: std::collections::BTreeSet<String> = outcomes
            .iter()
            .filter_map(|o| o.change.as_ref())
            .filter(|c| c.status == crate::store::HeldStatus::Approved)
            .map(|c| c.month.clone())
            .collect();
        for month in months {
            let month = month
                .parse::<Month>()
                .map_err(|e| Failure::Other(format!("held change month {month:?}: {e}")))?;
            let job = RunRequest::new(new_run_id(), Some(month), false, "cli");
            let report = cycle(app, job, KeepCustomers::InReport).await?;
            code = code.max(exit_code(&report));
            reports.push(report);
        }
    }
    // After a sync each change is told as it now stands (applied, or back in review).
    let mut outcomes = outcomes;
    if !reports.is_empty() {
        for o in outcomes.iter_mut().filter(|o| o.ok()) {
            if let Some(now) = app.store.get_held_change(&o.id).await? {
                o.change = Some(now);
            }
        }
    }
    print_decisions(&outcomes, Decision::Approve, json, reports);
    Ok(code)
}

fn decisions_code(outcomes: &[DecisionOutcome]) -> u8 {
    if outcomes.iter().all(DecisionOutcome::ok) {
        0
    } else {
        EXIT_FAILED
    }
}

/// `{"decisions":[...]}` (plus `"runs"` after `--sync`), or a line per id; a
/// refusal's reason also goes to stderr.
fn print_decisions(
    outcomes: &[DecisionOutcome],
    decision: Decision,
    json: bool,
    reports: Vec<RunReport>,
) {
    if json {
        let mut doc = serde_json::json!({ "decisions": outcomes });
        if !reports.is_empty() {
            doc["runs"] = serde_json::to_value(&reports).unwrap_or_default();
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        crate::output::print_decisions(outcomes, decision);
        for report in &reports {
            println!();
            crate::output::print_report(report);
        }
    }
    for o in outcomes {
        if let Some(e) = &o.error {
            eprintln!("error: {e}");
        }
    }
}

fn print_settings(s: &Settings) {
    println!(
        "products:        {}",
        if s.products.is_empty() {
            "(none selected: nothing is written)".into()
        } else {
            s.products.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    );
    println!(
        "agreementType:   {}",
        s.agreement_type.as_deref().unwrap_or("(not set)")
    );
    println!(
        "catalog:         type={:?} category={:?} subcategory={:?} unitOfMeasure={:?} productClass={:?}",
        s.catalog.product_type,
        s.catalog.category,
        s.catalog.subcategory,
        s.catalog.unit_of_measure,
        s.catalog.product_class
    );
    println!("quantityField:   {:?}", s.quantity_field);
    println!("zeroUsage:       {:?}", s.zero_usage);
    println!("month:           {}", s.month);
    println!("productCodes:    {} extra", s.product_codes.len());
    println!(
        "\nbilling product codes in force (Sophos publishes none; only `confirmed` is Sophos' own; a productCodes line wins):"
    );
    for row in products::code_rows(&s.product_codes) {
        print_code_row(&row);
    }
}

fn print_code_row(row: &products::CodeRow) {
    let word = |c: Option<products::Confidence>| {
        c.map(|c| format!("{c:?}").to_lowercase())
            .unwrap_or_else(|| "-".into())
    };
    let identifier = row.identifier.as_deref().unwrap_or("(not mapped)");
    let (code_conf, mapping_conf) = match (&row.evidence, row.source) {
        (Some(e), "builtIn") => (word(Some(e.code_confidence)), word(e.mapping_confidence)),
        (Some(e), _) => (word(Some(e.code_confidence)), "settings".into()),
        (None, _) => ("-".into(), "settings".into()),
    };
    println!(
        "  {:<20} {:<32} code {:<9} mapping {}",
        row.product_code, identifier, code_conf, mapping_conf
    );
    if let Some(e) = &row.evidence {
        if let Some(note) = e.note {
            println!("      {note}");
        }
        println!("      seen in: {}", e.seen_in);
    }
}

/// The settings document, plus `productCodeTable`: the code table in force with
/// its evidence (output only; the settings file does not take it).
fn settings_json(s: &Settings) -> String {
    let mut value = serde_json::to_value(s).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        let rows = serde_json::to_value(products::code_rows(&s.product_codes));
        map.insert("productCodeTable".into(), rows.unwrap_or_default());
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
