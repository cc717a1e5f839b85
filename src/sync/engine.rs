//! One sync cycle: take the lease, read both vendors, plan (pure), carry out the
//! plan towards ConnectWise with bounded concurrency, record results and release.
//!
//! Crash safety comes from reading ConnectWise before every decision: catalog items
//! are found by identifier and additions by product on the agreement, so a write
//! whose result a crash cut off is found and adopted on the next run, never
//! repeated. POSTs are not retried blindly after they may have reached the server:
//! a create whose answer was lost (5xx, timeout, broken answer) is read back first,
//! then adopted or sent again in the same run (`verified_create`, used by
//! `additions` for additions and `catalog_setup` for catalog items).
//!
//! This module holds the run loop and the state its customers share; one
//! customer's flow is in `customer`, its addition writes in `additions`, and the
//! catalog half in `catalog_setup`.

mod additions;
mod catalog_setup;
mod customer;
mod review;
mod usage_guard;
mod verified_create;

use crate::config::{ConfigError, Settings};
use crate::connectwise::client::ConnectWiseClient;
use crate::connectwise::model::{Agreement, CatalogItem};
use crate::domain::{month::Month, products};
use crate::http::{ApiCounters, ApiError, ApiErrorKind};
use crate::sophos::client::SophosClient;
use crate::store::*;
use crate::sync::plan::{self, AdditionRules};
use crate::sync::report::*;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How a cycle ended badly (per-customer problems are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Bad settings or credentials: nothing was written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// Another cycle took the lease over (this one ran past its expiry).
    #[error("run {0} lost its lease to another cycle; it stopped to avoid overlapping writes")]
    LeaseLost(String),
    /// A test failpoint: the process "died" after this many ConnectWise writes.
    #[error("crash injected after {0} ConnectWise writes")]
    Crashed(u64),
}

/// Where a run keeps its customers' results besides the store.
pub enum KeepCustomers {
    /// In the returned report (tests, `review approve --sync`).
    InReport,
    /// In this file (the CLI prints them from there after the run, so its memory
    /// does not grow with the partner).
    OnDisk(Arc<std::sync::Mutex<crate::sync::kept::KeptCustomers>>),
    /// Nowhere: results go to the store as they finish (the service), so an
    /// invocation's memory does not grow with the partner.
    Nowhere,
}

pub struct RunOptions {
    pub run_id: String,
    pub month: Month,
    pub dry_run: bool,
    /// What started the run ("cli", "schedule", "webhook").
    pub trigger: String,
    /// Who is written into the audit trail.
    pub actor: String,
    /// Who asked for the run (`RunRecord::started_by`): `console:<email>`,
    /// `api:token`, `schedule`, `cli:<user>`.
    pub started_by: Option<String>,
    /// ConnectWise requests in flight at once (the `connectwiseConcurrency` setting).
    pub concurrency: usize,
    /// Customers worked on at once; None: twice `concurrency`, so one customer's
    /// store bookkeeping overlaps another's ConnectWise calls. (Tests set 1 for a
    /// deterministic write order.)
    pub customers_in_progress: Option<usize>,
    pub lease_ttl: Duration,
    /// How long run records are kept (DynamoDB TTL).
    pub run_retention: Duration,
    /// Test failpoint: stop dead after this many ConnectWise writes.
    pub crash_after_writes: Option<u64>,
    /// Shifts "now" for the lease (tests of expired leases, without sleeping).
    pub clock_offset: chrono::Duration,
    /// When the last new customer may start (an invocation's deadline less the
    /// margin of `RunPolicy::last_start`). After it the cycle takes no new customer,
    /// lets those in progress finish and ends `incomplete`.
    pub deadline: Option<tokio::time::Instant>,
    /// The summary of this run's previous invocation: its counts carry on, and the
    /// customers it stored (`Store::list_run_customer_ids`) are done.
    pub resume: Option<RunReport>,
    /// Where every customer's result is kept besides the store.
    pub keep_customers: KeepCustomers,
    /// Keep a dry run's report as a run record (the HTTP API's preview); the CLI's
    /// dry run writes nothing anywhere.
    pub record_dry_run: bool,
    /// Lower quantities even when the usage report shrank past `usageDropGuard`
    /// (the operator checked the drop is real).
    pub accept_usage_drop: bool,
}

impl RunOptions {
    pub fn new(month: Month, dry_run: bool, trigger: &str) -> Self {
        Self {
            run_id: new_run_id(),
            month,
            dry_run,
            trigger: trigger.to_owned(),
            actor: format!("{trigger}:{}", whoami()),
            started_by: None,
            concurrency: 4,
            customers_in_progress: None,
            lease_ttl: crate::config::env::DEFAULT_LEASE_TTL,
            run_retention: Duration::from_secs(90 * 24 * 3600),
            crash_after_writes: None,
            clock_offset: chrono::Duration::zero(),
            deadline: None,
            resume: None,
            keep_customers: KeepCustomers::InReport,
            record_dry_run: false,
            accept_usage_drop: false,
        }
    }

    /// Continues `previous` (an incomplete run) under its run id.
    pub fn resuming(previous: RunReport, trigger: &str) -> Result<Self, String> {
        let month = previous.month.parse::<Month>()?;
        let mut opts = Self::new(month, previous.dry_run, trigger);
        opts.run_id = previous.run_id.clone();
        opts.accept_usage_drop = previous.usage_drop_accepted;
        opts.resume = Some(previous);
        Ok(opts)
    }
    fn now(&self) -> DateTime<Utc> {
        crate::clock::now() + self.clock_offset
    }
}

/// Run ids sort by start time: `r20261129T005012Z-1a2b3c4d`.
pub fn new_run_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("r{}-{}", Utc::now().format("%Y%m%dT%H%M%S%3fZ"), &id[..8])
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "sophos-cw-sync".into())
}

pub struct Engine<'a> {
    pub store: &'a dyn Store,
    pub sophos: &'a SophosClient,
    pub cw: &'a ConnectWiseClient,
    pub counters: Arc<ApiCounters>,
    pub settings: &'a Settings,
}

/// State shared by the per-customer tasks of one run.
struct Ctx<'a> {
    engine: &'a Engine<'a>,
    opts: &'a RunOptions,
    audit_seq: AtomicU32,
    writes: AtomicU64,
    /// Customers started in this invocation, and whether any was put off.
    started: std::sync::atomic::AtomicUsize,
    deferred: std::sync::atomic::AtomicBool,
    lease_renewed: tokio::sync::Mutex<tokio::time::Instant>,
    /// Tenants an earlier invocation of this run finished.
    done: BTreeSet<String>,
    /// The engine's client, kept to `opts.concurrency` requests in flight.
    cw: ConnectWiseClient,
    /// Whether customers' plans go through the review (`review::review_active`).
    review_active: bool,
    /// The usage drop guard holds back every lowered quantity in this run
    /// (decided once, before any customer: `usage_guard`).
    lowering_held: std::sync::atomic::AtomicBool,
}

/// Finished customers are stored this many at a time (DynamoDB's batch size).
const RECORD_BATCH: usize = 25;

impl Engine<'_> {
    pub async fn run(&self, opts: &RunOptions) -> Result<RunReport, CycleError> {
        if let (Some(pause), false) = (&self.settings.paused, opts.dry_run) {
            return self.skip_paused(opts, pause).await;
        }
        let agreement_type = self.settings.agreement_type.clone().ok_or_else(|| {
            ConfigError("the agreementType setting is empty: set it to the name of the ConnectWise agreement type that receives Sophos additions (e.g. {\"agreementType\":\"Sophos MSP\"})".into())
        })?;
        let mut report = empty_report(opts);
        let carried = self.carry_over(&mut report, opts).await?;
        if !opts.dry_run {
            if let LeaseOutcome::HeldBy(lease) = self
                .store
                .acquire_lease(&opts.run_id, opts.now(), opts.lease_ttl)
                .await?
            {
                report.status = RunStatus::Skipped;
                report.held_by = Some(lease.run_id);
                report.finished_at = Some(Utc::now());
                return Ok(report);
            }
            self.store.put_run(&run_record(&report, opts)).await?;
        }
        let review_active = review::active(self.store, &self.settings.review).await?;
        let ctx = Ctx {
            engine: self,
            opts,
            audit_seq: AtomicU32::new(carried.audit_seq),
            writes: AtomicU64::new(0),
            started: Default::default(),
            deferred: Default::default(),
            lease_renewed: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            done: carried.done,
            cw: self.cw.limited_to(opts.concurrency),
            review_active,
            lowering_held: Default::default(),
        };
        let outcome = ctx
            .cycle(&agreement_type, carried.unmapped_seen, &mut report)
            .await;
        let snapshot = self.counters.snapshot();
        report.api_calls = ApiCalls {
            sophos: carried.api_calls.sophos + snapshot.sophos_calls,
            connectwise: carried.api_calls.connectwise + snapshot.connectwise_calls,
        };
        report.writes = carried.writes + ctx.writes.load(Ordering::SeqCst);
        if let Some(throttling) = ctx.cw.throttling() {
            report.add_throttling(throttling);
        }
        let incomplete = ctx.deferred.load(Ordering::SeqCst);
        report.finished_at = Some(Utc::now());
        report.status = match &outcome {
            Err(CycleError::Crashed(_)) => return outcome.map(|_| report),
            Err(CycleError::Config(e)) if !opts.dry_run => {
                self.finish(opts, &mut report, RunStatus::Failed).await?;
                return Err(CycleError::Config(ConfigError(e.0.clone())));
            }
            Err(_) => RunStatus::Failed,
            Ok(()) if incomplete => RunStatus::Incomplete,
            Ok(()) if !report.errors.is_empty() => RunStatus::Failed,
            Ok(()) if report.customer_counts.with_errors > 0 => RunStatus::Partial,
            // Quantities that should have been lowered were not: not a success.
            Ok(()) if report.usage_drop_guarded => RunStatus::Partial,
            Ok(()) => RunStatus::Succeeded,
        };
        if let Err(e) = outcome {
            if let CycleError::Config(c) = e {
                return Err(CycleError::Config(c));
            }
            return Err(e);
        }
        if !opts.dry_run {
            let status = report.status;
            self.finish(opts, &mut report, status).await?;
        } else if opts.record_dry_run {
            self.store.put_run(&run_record(&report, opts)).await?;
        }
        Ok(report)
    }

    /// A run that would write while the sync is paused: recorded `skipped` with
    /// the pause's reason, nothing read or written, and the lease given back (an
    /// incomplete run paused between two invocations stops here too).
    async fn skip_paused(
        &self,
        opts: &RunOptions,
        pause: &crate::config::Pause,
    ) -> Result<RunReport, CycleError> {
        let mut report = empty_report(opts);
        if let Some(previous) = &opts.resume {
            report.started_at = previous.started_at;
            report.customer_counts = previous.customer_counts;
            report.writes = previous.writes;
            report.api_calls = previous.api_calls;
            report.throttled = previous.throttled;
            report.lowest_concurrency = previous.lowest_concurrency;
        }
        report.status = RunStatus::Skipped;
        report.reason = Some(format!(
            "{}; nothing was written. Resume it to sync again (console: Settings > Resume; API: PUT /settings without \"paused\"; CLI: `sophos-cw-sync resume`); a dry run still shows the plan",
            pause.describe()
        ));
        report.finished_at = Some(Utc::now());
        tracing::info!(run_id = %opts.run_id, "the sync is paused: run skipped");
        self.store.put_run(&run_record(&report, opts)).await?;
        self.store.release_lease(&opts.run_id).await?;
        Ok(report)
    }

    async fn finish(
        &self,
        opts: &RunOptions,
        report: &mut RunReport,
        status: RunStatus,
    ) -> StoreResult<()> {
        report.status = status;
        self.store.put_run(&run_record(report, opts)).await?;
        if status == RunStatus::Incomplete {
            // Keep the lease: the next invocation of this run carries on under it.
            self.store
                .renew_lease(&opts.run_id, opts.now(), opts.lease_ttl)
                .await
                .map(|_| ())
        } else {
            self.store.release_lease(&opts.run_id).await
        }
    }
}

/// What a resumed run brings from its earlier invocations.
#[derive(Default)]
struct Carried {
    api_calls: ApiCalls,
    writes: u64,
    audit_seq: u32,
    done: BTreeSet<String>,
    /// The unmapped product codes of the customers in `done`.
    unmapped_seen: UnmappedCodesSeen,
}

impl Engine<'_> {
    /// Starts the report from the previous invocation's summary (its counts and
    /// unmapped codes included) and reads only the tenant ids of the customers it
    /// stored: they are done. The results themselves are read again only when the
    /// summary does not count as many customers as are stored (a summary from
    /// before counts were carried, or one left behind by a write that failed).
    async fn carry_over(&self, report: &mut RunReport, opts: &RunOptions) -> StoreResult<Carried> {
        let Some(previous) = &opts.resume else {
            return Ok(Carried::default());
        };
        report.started_at = previous.started_at;
        report.warnings = previous.warnings.clone();
        report.customers_with_usage = previous.customers_with_usage;
        report.usage_drop_guarded = previous.usage_drop_guarded;
        report.throttled = previous.throttled;
        report.lowest_concurrency = previous.lowest_concurrency;
        let done = self.finished_tenants(&opts.run_id).await?;
        let unmapped_seen = if previous.customer_counts.total == done.len() as u64 {
            report.customer_counts = previous.customer_counts;
            report.unmapped_codes = previous.unmapped_codes.clone();
            report.unmapped_codes_omitted = previous.unmapped_codes_omitted;
            UnmappedCodesSeen::listed_in(report)
        } else {
            tracing::warn!(
                run_id = %opts.run_id,
                counted = previous.customer_counts.total,
                stored = done.len(),
                "the run's summary does not count every stored customer: counting them again"
            );
            self.recount(report, &opts.run_id).await?
        };
        Ok(Carried {
            api_calls: previous.api_calls,
            writes: previous.writes,
            // Leaves room for the earlier invocations' entries of this run.
            audit_seq: (previous.writes as u32 + 1) * 1000,
            done,
            unmapped_seen,
        })
    }

    /// The tenant ids an earlier invocation of `run_id` stored, keys only.
    async fn finished_tenants(&self, run_id: &str) -> StoreResult<BTreeSet<String>> {
        let mut done = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_run_customer_ids(run_id, MAX_PAGE, after.as_deref())
                .await?;
            done.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(done),
            }
        }
    }

    /// Counts the stored results of `run_id` (and their unmapped codes) into
    /// `report`, reading them back a page at a time.
    async fn recount(
        &self,
        report: &mut RunReport,
        run_id: &str,
    ) -> StoreResult<UnmappedCodesSeen> {
        let mut unmapped_seen = UnmappedCodesSeen::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_run_customers(run_id, MAX_PAGE, after.as_deref())
                .await?;
            for stored in page.items {
                let c: CustomerReport = serde_json::from_value(stored.report).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the result of customer {} in run {run_id}: {e}",
                        stored.tenant_id
                    ))
                })?;
                report.customer_counts.add(&c);
                report.add_unmapped_codes(&c, &mut unmapped_seen);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(unmapped_seen),
            }
        }
    }
}

fn empty_report(opts: &RunOptions) -> RunReport {
    RunReport {
        run_id: opts.run_id.clone(),
        status: RunStatus::Running,
        month: opts.month.to_string(),
        dry_run: opts.dry_run,
        started_at: Utc::now(),
        finished_at: None,
        held_by: None,
        errors: Vec::new(),
        usage_available: false,
        catalog: Vec::new(),
        customer_counts: CustomerCounts::default(),
        customers: Vec::new(),
        unassigned_usage: Vec::new(),
        unassigned_usage_omitted: 0,
        unmapped_codes: Vec::new(),
        unmapped_codes_omitted: 0,
        api_calls: ApiCalls::default(),
        writes: 0,
        throttled: 0,
        lowest_concurrency: None,
        warnings: Vec::new(),
        reason: None,
        customers_with_usage: None,
        usage_drop_guarded: false,
        usage_drop_accepted: opts.accept_usage_drop,
    }
}

fn run_record(report: &RunReport, opts: &RunOptions) -> RunRecord {
    let retention = chrono::Duration::from_std(opts.run_retention)
        .unwrap_or_else(|_| chrono::Duration::days(90));
    RunRecord {
        run_id: report.run_id.clone(),
        status: report.status,
        started_at: report.started_at,
        finished_at: report.finished_at,
        month: report.month.clone(),
        dry_run: report.dry_run,
        trigger: opts.trigger.clone(),
        started_by: opts.started_by.clone(),
        report: report.summary(),
        expires_at: Some(report.started_at + retention),
    }
}

/// A vendor failure that stops the whole cycle, as a report error.
fn upstream_error(e: &ApiError) -> Result<ErrorReport, CycleError> {
    let code = match e.kind {
        ApiErrorKind::Unauthorized | ApiErrorKind::Config => {
            return Err(CycleError::Config(ConfigError(e.to_string())));
        }
        ApiErrorKind::Forbidden => ErrorCode::CwPermission,
        ApiErrorKind::Validation => ErrorCode::CwValidation,
        _ => ErrorCode::UpstreamUnavailable,
    };
    Ok(ErrorReport::new(code, e.to_string()))
}

/// A ConnectWise failure on one customer's write.
fn write_error(e: &ApiError) -> ErrorReport {
    let code = match e.kind {
        ApiErrorKind::Unauthorized | ApiErrorKind::Forbidden => ErrorCode::CwPermission,
        ApiErrorKind::Validation | ApiErrorKind::NotFound => ErrorCode::CwValidation,
        _ => ErrorCode::UpstreamUnavailable,
    };
    ErrorReport::new(code, e.to_string())
}

/// What the cycle read before planning.
struct Reads {
    tenants: Vec<crate::sophos::model::Tenant>,
    usage: Option<plan::UsageSummary>,
    mappings: BTreeMap<String, Mapping>,
    // The store's remembered additions are read per customer, as it is synced
    // (`Store::list_additions_of`): a large partner's are not held whole.
}

impl Ctx<'_> {
    /// `unmapped_seen`: the product codes already in the report's
    /// `unmapped_codes` (from earlier invocations), for `record_customers`.
    async fn cycle(
        &self,
        agreement_type: &str,
        unmapped_seen: UnmappedCodesSeen,
        report: &mut RunReport,
    ) -> Result<(), CycleError> {
        let Some(reads) = self.read_sophos(report).await? else {
            return Ok(());
        };
        self.guard_usage(&reads, report).await?;
        let selected = &self.engine.settings.products;
        let companies_agreements = self
            .read_connectwise(agreement_type, &reads, report)
            .await?;
        let Some((companies, agreements, found_catalog)) = companies_agreements else {
            return Ok(());
        };
        // Each customer is resolved as it starts (its resolution holds its own
        // copy of its company and agreement); this reads every tenant once to
        // find the agreements several would share.
        let resolver = plan::Resolver::new(
            &reads.tenants,
            &reads.mappings,
            &companies,
            &agreements,
            agreement_type,
        );
        let catalog = self
            .ensure_catalog(selected, &found_catalog, report)
            .await?;
        if self.review_active {
            self.close_outlived().await?;
        }
        let rules = AdditionRules {
            selected,
            catalog: &catalog,
            zero_usage: self.engine.settings.zero_usage,
            month: self.opts.month,
        };
        // The places of the tenants to sync (an earlier invocation of this run
        // may have done some).
        let jobs: Vec<usize> = (reads.tenants.iter().enumerate())
            .filter(|(_, t)| !self.done.contains(&t.id))
            .map(|(i, _)| i)
            .collect();
        let (reads, rules, resolver) = (&reads, &rules, &resolver);
        // ConnectWise requests are limited by the client (`self.cw`); twice as
        // many customers run, in any order, so one customer's store bookkeeping
        // (audit entries, remembered additions) overlaps another's ConnectWise
        // calls and one slow customer does not hold the others up. Each finished
        // one goes to the recorder, which stores them in batches alongside.
        let in_progress = (self.opts.customers_in_progress)
            .unwrap_or(self.opts.concurrency * 2)
            .max(1);
        let (finished, results) = tokio::sync::mpsc::channel(RECORD_BATCH * 4);
        let produce = async move {
            // `buffer_unordered` by hand: a closure mapping jobs to futures inside
            // the stream trips the compiler's Send inference, and making every
            // future up front costs the memory `customer_future` says.
            let mut waiting = jobs.into_iter();
            let mut customers = stream::FuturesUnordered::new();
            for job in waiting.by_ref().take(in_progress) {
                customers.push(self.customer_future(job, reads, rules, resolver));
            }
            // The first cycle-level error (store failure, lost lease, crash
            // failpoint) stops the run at once: the customers in flight are dropped.
            while let Some(result) = customers.next().await {
                if let Some(job) = waiting.next() {
                    customers.push(self.customer_future(job, reads, rules, resolver));
                }
                if let Some(done) = result? {
                    if finished.send(done).await.is_err() {
                        break; // the recorder failed: its error is returned
                    }
                }
            }
            Ok::<(), CycleError>(())
        };
        let recorder = self.record_customers(results, unmapped_seen, report);
        let (produced, recorded) = futures::join!(produce, recorder);
        recorded?;
        produced
    }

    /// One customer's work, made only when `buffer_unordered` takes it: a boxed
    /// customer future is several KB, so making them all up front held most of a
    /// large partner's memory (68 of 115 MB of heap at 10,000 customers).
    fn customer_future<'s>(
        &'s self,
        index: usize,
        reads: &'s Reads,
        rules: &'s AdditionRules<'s>,
        resolver: &'s plan::Resolver<'s>,
    ) -> CustomerFuture<'s> {
        Box::pin(async move {
            if self.out_of_time() {
                self.deferred.store(true, Ordering::SeqCst);
                return Ok(None);
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            self.keep_lease().await?;
            let tenant = &reads.tenants[index];
            let resolution = resolver.resolve(index, tenant);
            let c = self.sync_customer(tenant, resolution, reads, rules).await?;
            Ok(Some((index, c)))
        })
    }

    /// Stores finished customers as they come, [`RECORD_BATCH`] at a time: the
    /// run's per-customer results, and (not in a dry run) each customer's status.
    /// Counts them (and their unmapped product codes) into the report and, for the
    /// CLI, keeps them in Sophos order.
    async fn record_customers(
        &self,
        mut results: tokio::sync::mpsc::Receiver<(usize, CustomerReport)>,
        mut unmapped_seen: UnmappedCodesSeen,
        report: &mut RunReport,
    ) -> StoreResult<()> {
        let mut kept: Vec<(usize, CustomerReport)> = Vec::new();
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        loop {
            let next = results.recv().await;
            let closed = next.is_none();
            if let Some((index, c)) = next {
                report.customer_counts.add(&c);
                report.add_unmapped_codes(&c, &mut unmapped_seen);
                match &self.opts.keep_customers {
                    KeepCustomers::InReport => kept.push((index, c.clone())),
                    KeepCustomers::OnDisk(disk) => disk
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .keep(index, &c),
                    KeepCustomers::Nowhere => {}
                }
                batch.push(c);
            }
            if batch.len() == RECORD_BATCH || (closed && !batch.is_empty()) {
                self.store_batch(&report.run_id, &std::mem::take(&mut batch))
                    .await?;
                self.record_progress(report).await?;
            }
            if closed {
                break;
            }
        }
        kept.sort_by_key(|(index, _)| *index);
        report.customers.extend(kept.into_iter().map(|(_, c)| c));
        Ok(())
    }

    /// Writes the running counts into the run record after each stored batch, so
    /// the console's progress reads one record (written after the batch: it never
    /// counts a customer that is not stored yet). A dry run has no record to keep.
    async fn record_progress(&self, report: &RunReport) -> StoreResult<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        self.engine
            .store
            .put_run(&run_record(report, self.opts))
            .await
    }

    async fn store_batch(&self, run_id: &str, batch: &[CustomerReport]) -> StoreResult<()> {
        let opts = self.opts;
        let store = self.engine.store;
        // Each result is encoded once: the run's record and the status share it.
        let encoded: Vec<(&str, serde_json::Value)> = batch
            .iter()
            .map(|c| {
                (
                    c.tenant_id.as_str(),
                    serde_json::to_value(c).unwrap_or_default(),
                )
            })
            .collect();
        if !opts.dry_run || opts.record_dry_run {
            let expires_at = chrono::Duration::from_std(opts.run_retention)
                .ok()
                .map(|d| Utc::now() + d);
            let customers: Vec<RunCustomer> = encoded
                .iter()
                .map(|(tenant_id, report)| RunCustomer {
                    run_id: run_id.to_owned(),
                    tenant_id: (*tenant_id).to_owned(),
                    report: report.clone(),
                    expires_at,
                })
                .collect();
            store.put_run_customers(&customers).await?;
        }
        if !opts.dry_run {
            let statuses: Vec<CustomerStatus> = encoded
                .into_iter()
                .map(|(tenant_id, report)| CustomerStatus {
                    tenant_id: tenant_id.to_owned(),
                    run_id: run_id.to_owned(),
                    updated_at: Utc::now(),
                    report,
                })
                .collect();
            store.put_customer_statuses(&statuses).await?;
        }
        Ok(())
    }

    /// Renews the lease when a third of its time has passed, so a long cycle (slow
    /// vendors, long Retry-After waits) never overlaps the next one. A lost lease
    /// stops the cycle.
    async fn keep_lease(&self) -> Result<(), CycleError> {
        if self.opts.dry_run {
            return Ok(());
        }
        let mut renewed = self.lease_renewed.lock().await;
        if renewed.elapsed() < self.opts.lease_ttl / 3 {
            return Ok(());
        }
        let store = self.engine.store;
        if !store
            .renew_lease(&self.opts.run_id, self.opts.now(), self.opts.lease_ttl)
            .await?
        {
            return Err(CycleError::LeaseLost(self.opts.run_id.clone()));
        }
        *renewed = tokio::time::Instant::now();
        Ok(())
    }

    /// After the deadline no new customer starts, but every invocation makes
    /// progress with at least one customer.
    fn out_of_time(&self) -> bool {
        let Some(deadline) = self.opts.deadline else {
            return false;
        };
        tokio::time::Instant::now() >= deadline && self.started.load(Ordering::SeqCst) > 0
    }

    async fn read_sophos(&self, report: &mut RunReport) -> Result<Option<Reads>, CycleError> {
        let sophos = self.engine.sophos;
        let month = self.opts.month;
        let settings = self.engine.settings;
        let codes = products::code_table(&settings.product_codes);
        // The report is summed page by page as it arrives, never held whole.
        let mut aggregator = plan::UsageAggregator::new(&codes, settings.quantity_field);
        let fetched = async {
            let me = sophos.whoami().await?;
            let tenants = sophos.tenants(&me.id).await?;
            let found = sophos
                .usage(&me.id, month.year(), month.month(), |lines| {
                    aggregator.add(lines)
                })
                .await?;
            Ok::<_, ApiError>((tenants, found))
        }
        .await;
        let (tenants, found) = match fetched {
            Ok(v) => v,
            Err(e) => {
                report.errors.push(upstream_error(&e)?);
                return Ok(None);
            }
        };
        let usage = found.then(|| aggregator.finish());
        report.usage_available = usage.is_some();
        if let Some(u) = &usage {
            report.unassigned_usage = u.unassigned.clone();
        }
        let mappings = self
            .engine
            .store
            .list_mappings()
            .await?
            .into_iter()
            .map(|m| (m.tenant_id.clone(), m))
            .collect();
        Ok(Some(Reads {
            tenants,
            usage,
            mappings,
        }))
    }

    async fn read_connectwise(
        &self,
        agreement_type: &str,
        reads: &Reads,
        report: &mut RunReport,
    ) -> Result<
        Option<(
            Vec<crate::connectwise::model::Company>,
            Vec<Agreement>,
            Vec<CatalogItem>,
        )>,
        CycleError,
    > {
        let cw = &self.cw;
        let selected = crate::sync::catalog::lookup_identifiers(self.engine.settings);
        let pinned: Vec<i64> = reads
            .mappings
            .values()
            .filter_map(|m| m.agreement_id)
            .collect();
        let fetched = async {
            let companies = cw.all_companies().await?;
            let mut agreements = cw.agreements_of_type(agreement_type).await?;
            // A set, not a scan of every agreement per pinned mapping.
            let listed: std::collections::HashSet<i64> = agreements.iter().map(|a| a.id).collect();
            let missing: Vec<i64> = pinned
                .iter()
                .copied()
                .filter(|id| !listed.contains(id))
                .collect();
            if !missing.is_empty() {
                agreements.extend(cw.agreements_by_ids(&missing).await?);
            }
            let catalog = if selected.is_empty() {
                Vec::new()
            } else {
                cw.catalog_items_by_identifiers(&selected).await?
            };
            Ok::<_, ApiError>((companies, agreements, catalog))
        }
        .await;
        match fetched {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                report.errors.push(upstream_error(&e)?);
                Ok(None)
            }
        }
    }

    /// Counts a ConnectWise write and honours the crash failpoint.
    fn wrote(&self) -> Result<(), CycleError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.opts.crash_after_writes {
            Some(limit) if n >= limit => Err(CycleError::Crashed(n)),
            _ => Ok(()),
        }
    }

    /// Appends to the audit trail. Callers append before they update the store's
    /// memory of the entity: a run that dies between the two leaves the store
    /// behind ConnectWise, so the next run says it again (`adopt…`,
    /// `reconcileAddition`) rather than the write never reaching the trail.
    async fn audit(&self, d: AuditDraft<'_>) -> StoreResult<()> {
        self.engine.store.append_audit(&self.audit_entry(d)).await
    }

    /// The trail's entry for a change this run makes, numbered in the run.
    fn audit_entry(&self, d: AuditDraft<'_>) -> AuditEntry {
        AuditEntry {
            run_id: self.opts.run_id.clone(),
            seq: self.audit_seq.fetch_add(1, Ordering::SeqCst),
            at: Utc::now(),
            actor: self.opts.actor.clone(),
            action: d.action.to_owned(),
            tenant_id: d.tenant_id.map(str::to_owned),
            agreement_id: d.agreement_id,
            identifier: d.identifier.to_owned(),
            entity_id: d.entity_id,
            old_quantity: d.old,
            new_quantity: d.new,
            detail: None,
        }
    }
}

type CustomerFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Option<(usize, CustomerReport)>, CycleError>>
            + Send
            + 'a,
    >,
>;

struct AuditDraft<'a> {
    action: &'static str,
    tenant_id: Option<&'a str>,
    agreement_id: Option<i64>,
    identifier: &'a str,
    entity_id: Option<i64>,
    old: Option<f64>,
    new: Option<f64>,
}
