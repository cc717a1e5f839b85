//! One sync cycle: take the lease, read both vendors, plan (pure), carry out the
//! plan towards ConnectWise with bounded concurrency, record results and release.
//!
//! Crash safety comes from reading ConnectWise before every decision: catalog items
//! are found by identifier and additions by product on the agreement, so a write
//! whose result a crash cut off is found and adopted on the next run, never
//! repeated. POSTs are not retried blindly after they may have reached the server:
//! a create whose answer was lost (5xx, timeout, broken answer) is read back first,
//! then adopted or sent again in the same run (`Ctx::create_verified` for
//! additions, `catalog_setup` for catalog items).

mod catalog_setup;

use crate::config::{ConfigError, Settings};
use crate::connectwise::client::ConnectWiseClient;
use crate::connectwise::model::{
    Addition, Agreement, CatalogItem, NewAddition, PatchOp, Reference,
};
use crate::domain::{month::Month, products};
use crate::http::{ApiCounters, ApiError, ApiErrorKind};
use crate::sophos::client::SophosClient;
use crate::sophos::model::Tenant;
use crate::store::*;
use crate::sync::plan::{self, AdditionOp, AdditionRules, ProductPlan, Resolution, TenantUsage};
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

pub struct RunOptions {
    pub run_id: String,
    pub month: Month,
    pub dry_run: bool,
    /// What started the run ("cli", "schedule", "webhook").
    pub trigger: String,
    /// Who is written into the audit trail.
    pub actor: String,
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
    /// When the invocation must be over (Lambda's deadline). The cycle stops taking
    /// new customers `deadline_margin` before it and ends `incomplete`.
    pub deadline: Option<tokio::time::Instant>,
    pub deadline_margin: Duration,
    /// The summary of this run's previous invocation; the customers it stored
    /// (`Store::list_run_customers`) are done.
    pub resume: Option<RunReport>,
    /// Keep every customer's result in the returned report (the CLI prints them).
    /// Off in the service: results go to the store as they finish, so an
    /// invocation's memory does not grow with the partner.
    pub keep_customers: bool,
    /// Keep a dry run's report as a run record (the HTTP API's preview); the CLI's
    /// dry run writes nothing anywhere.
    pub record_dry_run: bool,
}

impl RunOptions {
    pub fn new(month: Month, dry_run: bool, trigger: &str) -> Self {
        Self {
            run_id: new_run_id(),
            month,
            dry_run,
            trigger: trigger.to_owned(),
            actor: format!("{trigger}:{}", whoami()),
            concurrency: 4,
            customers_in_progress: None,
            lease_ttl: Duration::from_secs(15 * 60),
            run_retention: Duration::from_secs(90 * 24 * 3600),
            crash_after_writes: None,
            clock_offset: chrono::Duration::zero(),
            deadline: None,
            deadline_margin: Duration::from_secs(60),
            resume: None,
            keep_customers: true,
            record_dry_run: false,
        }
    }

    /// Continues `previous` (an incomplete run) under its run id.
    pub fn resuming(previous: RunReport, trigger: &str) -> Result<Self, String> {
        let month = previous.month.parse::<Month>()?;
        let mut opts = Self::new(month, previous.dry_run, trigger);
        opts.run_id = previous.run_id.clone();
        opts.resume = Some(previous);
        Ok(opts)
    }
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
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
}

/// Finished customers are stored this many at a time (DynamoDB's batch size).
const RECORD_BATCH: usize = 25;

impl Engine<'_> {
    pub async fn run(&self, opts: &RunOptions) -> Result<RunReport, CycleError> {
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
        };
        let outcome = ctx.cycle(&agreement_type, &mut report).await;
        let snapshot = self.counters.snapshot();
        report.api_calls = ApiCalls {
            sophos: carried.api_calls.sophos + snapshot.sophos_calls,
            connectwise: carried.api_calls.connectwise + snapshot.connectwise_calls,
        };
        report.writes = carried.writes + ctx.writes.load(Ordering::SeqCst);
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
}

impl Engine<'_> {
    /// Starts the report from the previous invocation's summary, and reads the
    /// customers it stored back a page at a time: they are done (and counted).
    async fn carry_over(&self, report: &mut RunReport, opts: &RunOptions) -> StoreResult<Carried> {
        let Some(previous) = &opts.resume else {
            return Ok(Carried::default());
        };
        report.started_at = previous.started_at;
        let mut done = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_run_customers(&opts.run_id, MAX_PAGE, after.as_deref())
                .await?;
            for stored in page.items {
                let c: CustomerReport = serde_json::from_value(stored.report).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the result of customer {} in run {}: {e}",
                        stored.tenant_id, opts.run_id
                    ))
                })?;
                report.customer_counts.add(&c);
                done.insert(stored.tenant_id);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(Carried {
            api_calls: previous.api_calls,
            writes: previous.writes,
            // Leaves room for the earlier invocations' entries of this run.
            audit_seq: (previous.writes as u32 + 1) * 1000,
            done,
        })
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
        api_calls: ApiCalls::default(),
        writes: 0,
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
    records: Vec<AdditionRecord>,
}

impl Ctx<'_> {
    async fn cycle(&self, agreement_type: &str, report: &mut RunReport) -> Result<(), CycleError> {
        let Some(reads) = self.read_sophos(report).await? else {
            return Ok(());
        };
        let selected = &self.engine.settings.products;
        let companies_agreements = self
            .read_connectwise(agreement_type, &reads, report)
            .await?;
        let Some((companies, agreements, found_catalog)) = companies_agreements else {
            return Ok(());
        };
        let resolutions = plan::resolve_all(
            &reads.tenants,
            &reads.mappings,
            &companies,
            &agreements,
            agreement_type,
        );
        let catalog = self
            .ensure_catalog(selected, &found_catalog, report)
            .await?;
        let rules = AdditionRules {
            selected,
            catalog: &catalog,
            zero_usage: self.engine.settings.zero_usage,
            month: self.opts.month,
        };
        // Collected first and boxed as Send: keeps the future spawnable (a lazy
        // filter/zip inside a stream trips the compiler's Send inference).
        let jobs: Vec<(usize, &Tenant, Resolution)> = reads
            .tenants
            .iter()
            .zip(resolutions)
            .enumerate()
            .filter(|(_, (t, _))| !self.done.contains(&t.id))
            .map(|(i, (t, r))| (i, t, r))
            .collect();
        let (reads, rules) = (&reads, &rules);
        // Futures are lazy: `buffer_unordered` still bounds how many run at once.
        let futures: Vec<CustomerFuture<'_>> = jobs
            .into_iter()
            .map(|(index, tenant, resolution)| -> CustomerFuture<'_> {
                Box::pin(async move {
                    if self.out_of_time() {
                        self.deferred.store(true, Ordering::SeqCst);
                        return Ok(None);
                    }
                    self.started.fetch_add(1, Ordering::SeqCst);
                    self.keep_lease().await?;
                    let c = self.sync_customer(tenant, resolution, reads, rules).await?;
                    Ok(Some((index, c)))
                })
            })
            .collect();
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
            let mut customers = stream::iter(futures).buffer_unordered(in_progress);
            // The first cycle-level error (store failure, lost lease, crash
            // failpoint) stops the run at once: the customers in flight are dropped.
            while let Some(result) = customers.next().await {
                if let Some(done) = result? {
                    if finished.send(done).await.is_err() {
                        break; // the recorder failed: its error is returned
                    }
                }
            }
            Ok::<(), CycleError>(())
        };
        let (produced, recorded) = futures::join!(produce, self.record_customers(results, report));
        recorded?;
        produced
    }

    /// Stores finished customers as they come, [`RECORD_BATCH`] at a time: the
    /// run's per-customer results, and (not in a dry run) each customer's status.
    /// Counts them into the report and, for the CLI, keeps them in Sophos order.
    async fn record_customers(
        &self,
        mut results: tokio::sync::mpsc::Receiver<(usize, CustomerReport)>,
        report: &mut RunReport,
    ) -> StoreResult<()> {
        let mut kept: Vec<(usize, CustomerReport)> = Vec::new();
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        loop {
            let next = results.recv().await;
            let closed = next.is_none();
            if let Some((index, c)) = next {
                report.customer_counts.add(&c);
                batch.push(c.clone());
                if self.opts.keep_customers {
                    kept.push((index, c));
                }
            }
            if batch.len() == RECORD_BATCH || (closed && !batch.is_empty()) {
                self.store_batch(&report.run_id, &std::mem::take(&mut batch))
                    .await?;
            }
            if closed {
                break;
            }
        }
        kept.sort_by_key(|(index, _)| *index);
        report.customers.extend(kept.into_iter().map(|(_, c)| c));
        Ok(())
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

    /// Near the deadline no new customer starts, but every invocation makes
    /// progress with at least one customer.
    fn out_of_time(&self) -> bool {
        let Some(deadline) = self.opts.deadline else {
            return false;
        };
        let near = tokio::time::Instant::now() + self.opts.deadline_margin >= deadline;
        near && self.started.load(Ordering::SeqCst) > 0
    }

    async fn read_sophos(&self, report: &mut RunReport) -> Result<Option<Reads>, CycleError> {
        let sophos = self.engine.sophos;
        let month = self.opts.month;
        let fetched = async {
            let me = sophos.whoami().await?;
            let tenants = sophos.tenants(&me.id).await?;
            let usage = sophos.usage(&me.id, month.year(), month.month()).await?;
            Ok::<_, ApiError>((tenants, usage))
        }
        .await;
        let (tenants, usage) = match fetched {
            Ok(v) => v,
            Err(e) => {
                report.errors.push(upstream_error(&e)?);
                return Ok(None);
            }
        };
        let settings = self.engine.settings;
        let codes = products::code_table(&settings.product_codes);
        let usage =
            usage.map(|lines| plan::aggregate_usage(&lines, &codes, settings.quantity_field));
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
        let records = self.engine.store.list_additions().await?;
        Ok(Some(Reads {
            tenants,
            usage,
            mappings,
            records,
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
            let missing: Vec<i64> = pinned
                .iter()
                .copied()
                .filter(|id| !agreements.iter().any(|a| a.id == *id))
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
        let entry = AuditEntry {
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
        };
        self.engine.store.append_audit(&entry).await
    }

    async fn sync_customer(
        &self,
        tenant: &crate::sophos::model::Tenant,
        resolution: Resolution,
        reads: &Reads,
        rules: &AdditionRules<'_>,
    ) -> Result<CustomerReport, CycleError> {
        let mut c = CustomerReport {
            tenant_id: tenant.id.clone(),
            tenant_name: tenant.name.clone(),
            status: CustomerState::Synced,
            reason: None,
            company_id: None,
            company_identifier: None,
            agreement_id: None,
            agreement_name: None,
            agreement_type: None,
            products: Vec::new(),
            errors: Vec::new(),
        };
        let (company, agreement, newly_discovered) = match resolution {
            Resolution::Ignored(reason) => {
                c.status = CustomerState::Ignored;
                c.reason = Some(reason);
                return Ok(c);
            }
            Resolution::Unmapped(e) => {
                c.status = CustomerState::Unmapped;
                c.reason = Some(e.message.clone());
                c.errors.push(e);
                return Ok(c);
            }
            Resolution::AgreementProblem(company, e) => {
                c.company_id = Some(company.id);
                c.company_identifier = Some(company.identifier);
                c.status = CustomerState::Unmapped;
                c.reason = Some(e.message.clone());
                c.errors.push(e);
                return Ok(c);
            }
            Resolution::Mapped {
                company,
                agreement,
                newly_discovered,
            } => (company, agreement, newly_discovered),
        };
        c.company_id = Some(company.id);
        c.company_identifier = Some(company.identifier.clone());
        c.agreement_id = Some(agreement.id);
        c.agreement_name = Some(agreement.name.clone());
        c.agreement_type = agreement
            .agreement_type
            .as_ref()
            .and_then(|t| t.name.clone());
        if newly_discovered && !self.opts.dry_run {
            let kind = reads
                .mappings
                .get(&tenant.id)
                .map(|m| m.kind)
                .unwrap_or(MappingKind::Discovered);
            let mapping = Mapping {
                tenant_id: tenant.id.clone(),
                kind,
                company_id: Some(company.id),
                agreement_id: Some(agreement.id),
                updated_at: Utc::now(),
            };
            self.engine.store.put_mapping(&mapping).await?;
        }
        let usage: Option<&TenantUsage> =
            reads.usage.as_ref().and_then(|u| u.tenants.get(&tenant.id));
        if let Some(u) = usage {
            for product in u.unmapped_codes.values() {
                c.errors
                    .push(ErrorReport::unmapped_product(product.clone()));
            }
        }
        // A month without usage data (404) changes nothing: unknown is not zero.
        if reads.usage.is_some() && !rules.selected.is_empty() {
            self.sync_additions(tenant, &agreement, usage, reads, rules, &mut c)
                .await?;
        }
        if !c.errors.is_empty() {
            c.status = CustomerState::Error;
        }
        Ok(c)
    }

    async fn sync_additions(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        usage: Option<&TenantUsage>,
        reads: &Reads,
        rules: &AdditionRules<'_>,
        c: &mut CustomerReport,
    ) -> Result<(), CycleError> {
        let additions = match self.cw.additions(agreement.id).await {
            Ok(a) => a,
            Err(e) => {
                c.errors.push(write_error(&e));
                return Ok(());
            }
        };
        let records: Vec<AdditionRecord> = reads
            .records
            .iter()
            .filter(|r| r.tenant_id == tenant.id)
            .cloned()
            .collect();
        if !self.opts.dry_run {
            for r in plan::cancelled_records(&additions, &records) {
                self.forget_cancelled(tenant, agreement, r).await?;
            }
        }
        let plans = plan::plan_additions(usage, &additions, &records, rules);
        for p in plans {
            let product = self.carry_out(tenant, agreement, &additions, &p, c).await?;
            c.products.push(product);
        }
        Ok(())
    }

    /// Puts a cancel the store missed on the trail (old: the remembered quantity),
    /// then forgets the addition.
    async fn forget_cancelled(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        record: &AdditionRecord,
    ) -> StoreResult<()> {
        let d = AuditDraft {
            action: "reconcileAddition",
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &record.identifier,
            entity_id: Some(record.addition_id),
            old: Some(record.quantity),
            new: None,
        };
        self.forget_addition(d, tenant).await
    }

    async fn carry_out(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        additions: &[Addition],
        p: &ProductPlan,
        c: &mut CustomerReport,
    ) -> Result<ProductReport, CycleError> {
        let mut out = ProductReport {
            identifier: p.identifier.clone(),
            sophos_quantity: p.sophos_quantity,
            previous_quantity: None,
            new_quantity: None,
            addition_id: None,
            action: ProductAction::Skip,
        };
        let dry = self.opts.dry_run;
        let draft = |action, entity_id, old, new| AuditDraft {
            action,
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &p.identifier,
            entity_id,
            old,
            new,
        };
        if let (Some(remembered), Some((addition_id, current)), false) =
            (p.drifted_from, p.op.existing(), dry)
        {
            // The store is behind ConnectWise (a write whose bookkeeping a crash cut
            // off, or a hand edit): catch up first, so the trail says it once.
            let product_id = product_of(additions, addition_id);
            self.record_addition(
                draft(
                    "reconcileAddition",
                    Some(addition_id),
                    Some(remembered),
                    Some(current),
                ),
                tenant,
                agreement,
                addition_id,
                product_id,
                current,
            )
            .await?;
        }
        match &p.op {
            AdditionOp::Create {
                product_id,
                quantity,
                effective_date,
            } => {
                out.new_quantity = Some(*quantity);
                out.action = ProductAction::Create;
                let Some(product_id) = product_id.filter(|_| !dry) else {
                    return Ok(out);
                };
                let new = NewAddition {
                    product: Reference::id(product_id),
                    quantity: *quantity,
                    bill_customer: "Billable".into(),
                    effective_date: effective_date.clone(),
                    invoice_description: products::description(&p.identifier).map(str::to_owned),
                };
                self.create(tenant, agreement, p, &new, &mut out, c).await?;
            }
            AdditionOp::Update {
                addition_id,
                old,
                new,
            } => {
                let zero = *new == 0.0;
                out.previous_quantity = Some(*old);
                out.new_quantity = Some(*new);
                out.addition_id = Some(*addition_id);
                out.action = if zero {
                    ProductAction::Zero
                } else {
                    ProductAction::Update
                };
                if dry
                    || !self
                        .patch(
                            agreement,
                            *addition_id,
                            PatchOp::replace("quantity", *new),
                            &mut out,
                            c,
                        )
                        .await?
                {
                    return Ok(out);
                }
                let product_id = product_of(additions, *addition_id);
                let action = if zero {
                    "zeroAddition"
                } else {
                    "updateAddition"
                };
                self.record_addition(
                    draft(action, Some(*addition_id), Some(*old), Some(*new)),
                    tenant,
                    agreement,
                    *addition_id,
                    product_id,
                    *new,
                )
                .await?;
            }
            AdditionOp::Cancel {
                addition_id,
                old,
                cancelled_date,
            } => {
                out.previous_quantity = Some(*old);
                out.new_quantity = Some(*old);
                out.addition_id = Some(*addition_id);
                out.action = ProductAction::Cancel;
                let op = PatchOp::replace("cancelledDate", cancelled_date.as_str());
                if dry || !self.patch(agreement, *addition_id, op, &mut out, c).await? {
                    return Ok(out);
                }
                self.forget_addition(
                    draft("cancelAddition", Some(*addition_id), Some(*old), None),
                    tenant,
                )
                .await?;
            }
            AdditionOp::Unchanged {
                addition_id,
                quantity,
            } => {
                out.previous_quantity = Some(*quantity);
                out.new_quantity = Some(*quantity);
                out.addition_id = Some(*addition_id);
                out.action = if p.adopted {
                    ProductAction::Adopt
                } else {
                    ProductAction::Unchanged
                };
                if p.adopted && !dry {
                    let product_id = product_of(additions, *addition_id);
                    self.record_addition(
                        draft(
                            "adoptAddition",
                            Some(*addition_id),
                            Some(*quantity),
                            Some(*quantity),
                        ),
                        tenant,
                        agreement,
                        *addition_id,
                        product_id,
                        *quantity,
                    )
                    .await?;
                }
            }
            AdditionOp::Ambiguous { addition_ids } => {
                c.errors.push(ErrorReport::new(
                    ErrorCode::AdditionAmbiguous,
                    format!(
                        "agreement {} has {} active additions of {} (ids {:?}); none was changed",
                        agreement.id,
                        addition_ids.len(),
                        p.identifier,
                        addition_ids
                    ),
                ));
            }
            AdditionOp::CatalogUnavailable => {
                c.errors.push(ErrorReport::new(
                    ErrorCode::CatalogSetup,
                    format!(
                        "no usable catalog item for {}; see the run's catalog errors",
                        p.identifier
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Creates an addition (verified, see `create_verified`) and puts the outcome
    /// in the report, on the trail and in the store.
    async fn create(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        p: &ProductPlan,
        new: &NewAddition,
        out: &mut ProductReport,
        c: &mut CustomerReport,
    ) -> Result<(), CycleError> {
        let product_id = new.product.id.unwrap_or_default();
        let wanted = new.quantity;
        let created = self.create_verified(agreement.id, new).await?;
        let draft = |action, id, old, new| AuditDraft {
            action,
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &p.identifier,
            entity_id: Some(id),
            old,
            new,
        };
        let found = match created {
            Created::Answered(created) => {
                out.addition_id = Some(created.id);
                let d = draft("createAddition", created.id, None, Some(wanted));
                self.record_addition(d, tenant, agreement, created.id, product_id, wanted)
                    .await?;
                return Ok(());
            }
            Created::FoundOnReadBack(found) => found,
            Created::Ambiguous(ids) => {
                out.action = ProductAction::Skip;
                c.errors.push(ErrorReport::new(
                    ErrorCode::AdditionAmbiguous,
                    format!(
                        "the answer to creating {} on agreement {} was lost, and reading back found {} active additions of it (ids {ids:?}); none was changed",
                        p.identifier,
                        agreement.id,
                        ids.len()
                    ),
                ));
                return Ok(());
            }
            Created::Failed(e) => {
                self.failed(out, c, &e);
                return Ok(());
            }
        };
        // The answer was lost but the read-back shows the addition: adopted, so
        // the customer is in step in this run.
        let current = found.quantity.unwrap_or(0.0);
        out.action = ProductAction::Adopt;
        out.addition_id = Some(found.id);
        out.new_quantity = Some(current);
        let d = draft("adoptAddition", found.id, None, Some(current));
        self.record_addition(d, tenant, agreement, found.id, product_id, current)
            .await?;
        if (current - wanted).abs() < 1e-9 {
            return Ok(());
        }
        // Someone else's, with another quantity: set ours.
        out.previous_quantity = Some(current);
        out.new_quantity = Some(wanted);
        out.action = ProductAction::Update;
        let op = PatchOp::replace("quantity", wanted);
        if self.patch(agreement, found.id, op, out, c).await? {
            let d = draft("updateAddition", found.id, Some(current), Some(wanted));
            self.record_addition(d, tenant, agreement, found.id, product_id, wanted)
                .await?;
        }
        Ok(())
    }

    /// Creates an addition; when the answer is lost (a 5xx, a timeout, a broken
    /// connection or a body cut short, see `ApiError::outcome_unknown`) it reads
    /// the agreement's additions back before deciding, because ConnectWise has no
    /// idempotency key and a blind repeat could bill twice. Found once: that is
    /// the addition (adopted). Not found: the POST did not land, so it is sent
    /// again. Found several: nothing is written (ambiguous). A read-back that
    /// fails ends it with the POST's error.
    ///
    /// The budget is the client's own: at most `HttpPolicy::max_retries + 1` POSTs
    /// in all (each may itself be retried by the HTTP layer only where it surely
    /// did not reach ConnectWise: 429, refused connection), each lost answer
    /// followed by one backoff wait and one read-back (a GET with the normal
    /// retries). Only a POST that landed counts as a write.
    async fn create_verified(
        &self,
        agreement_id: i64,
        new: &NewAddition,
    ) -> Result<Created, CycleError> {
        let cw = &self.cw;
        let policy = cw.policy();
        let mut attempt: u32 = 0;
        loop {
            let lost = match cw.create_addition(agreement_id, new).await {
                Ok(created) => {
                    self.wrote()?;
                    return Ok(Created::Answered(created));
                }
                Err(e) if !e.outcome_unknown() => return Ok(Created::Failed(e)),
                Err(e) => e,
            };
            tracing::warn!(agreement_id, error = %lost, "addition create's answer lost: reading back");
            // A request still being processed gets a moment to land before we look.
            let wait = crate::http::retry::backoff_delay(attempt, policy, &mut rand::rng());
            tokio::time::sleep(wait).await;
            let additions = match cw.additions(agreement_id).await {
                Ok(a) => a,
                Err(read) => {
                    return Ok(Created::Failed(with_note(
                        lost,
                        &format!("reading the additions back failed too ({read})"),
                    )));
                }
            };
            let mut same: Vec<Addition> = additions
                .into_iter()
                .filter(|a| a.is_active() && a.product_id() == new.product.id)
                .collect();
            match same.len() {
                0 if attempt < policy.max_retries => attempt += 1,
                0 => {
                    let note = format!(
                        "{} creates did not land (read back after each)",
                        attempt + 1
                    );
                    return Ok(Created::Failed(with_note(lost, &note)));
                }
                1 => {
                    let found = same.remove(0);
                    // The plan saw none of this product, so one now is ours if it
                    // carries our quantity (a write). One with another quantity was
                    // made by someone else and ours did not land (else there would
                    // be two): adopted all the same, and `create` sets our quantity.
                    let quantity = found.quantity.unwrap_or(0.0);
                    if (quantity - new.quantity).abs() < 1e-9 {
                        self.wrote()?;
                    }
                    return Ok(Created::FoundOnReadBack(found));
                }
                _ => return Ok(Created::Ambiguous(same.iter().map(|a| a.id).collect())),
            }
        }
    }

    /// PATCHes one field of an addition: true when written, false when ConnectWise
    /// refused it (the error is in the customer's report).
    async fn patch(
        &self,
        agreement: &Agreement,
        addition_id: i64,
        op: PatchOp,
        out: &mut ProductReport,
        c: &mut CustomerReport,
    ) -> Result<bool, CycleError> {
        match self
            .cw
            .patch_addition(agreement.id, addition_id, &[op])
            .await
        {
            Ok(_) => {
                self.wrote()?;
                Ok(true)
            }
            Err(e) => {
                self.failed(out, c, &e);
                Ok(false)
            }
        }
    }

    fn failed(&self, out: &mut ProductReport, c: &mut CustomerReport, e: &ApiError) {
        out.action = ProductAction::Skip;
        c.errors.push(write_error(e));
    }

    /// Puts a change on the trail, then remembers the addition as it now stands
    /// (in that order: see `audit`).
    async fn record_addition(
        &self,
        d: AuditDraft<'_>,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        addition_id: i64,
        product_id: i64,
        quantity: f64,
    ) -> StoreResult<()> {
        let identifier = d.identifier;
        self.audit(d).await?;
        let record = AdditionRecord {
            tenant_id: tenant.id.clone(),
            identifier: identifier.to_owned(),
            agreement_id: agreement.id,
            addition_id,
            product_id,
            quantity,
            updated_at: Utc::now(),
        };
        self.engine.store.put_addition(&record).await
    }

    /// Puts a change on the trail, then forgets the addition (in that order: see
    /// `audit`).
    async fn forget_addition(
        &self,
        d: AuditDraft<'_>,
        tenant: &crate::sophos::model::Tenant,
    ) -> StoreResult<()> {
        let identifier = d.identifier;
        self.audit(d).await?;
        self.engine
            .store
            .delete_addition(&tenant.id, identifier)
            .await
    }
}

/// How a verified addition create ended (see `Ctx::create_verified`).
enum Created {
    /// ConnectWise answered with the new addition.
    Answered(Addition),
    /// The answer was lost; reading back found exactly one active addition of
    /// the product.
    FoundOnReadBack(Addition),
    /// The answer was lost; reading back found several: none is touched.
    Ambiguous(Vec<i64>),
    /// Refused, or not verifiable (the read-back failed, or the budget ran out).
    Failed(ApiError),
}

/// The POST's error with what the read-back found, for the customer's report.
fn with_note(mut e: ApiError, note: &str) -> ApiError {
    e.message = format!("{}; {note}", e.message);
    e
}

fn product_of(additions: &[Addition], addition_id: i64) -> i64 {
    additions
        .iter()
        .find(|a| a.id == addition_id)
        .and_then(Addition::product_id)
        .unwrap_or_default()
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
