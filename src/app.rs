//! The application service behind every entry point (CLI `serve`, the Lambda
//! handler, the HTTP API): starting, running and continuing sync cycles, with the
//! store, secrets and self-invocation as ports.

pub mod changes;

use crate::config::{ConfigError, Environment, Secrets, SecretsSpec, Settings};
use crate::domain::month::Month;
use crate::http::ApiCounters;
use crate::store::Mapping;
use crate::store::{LeaseOutcome, RunRecord, RunStatus, Store, StoreError};
use crate::sync::engine::{CycleError, Engine, KeepCustomers, RunOptions, new_run_id};
use crate::sync::report::RunReport;
use crate::wiring::{build_clients, load_secrets_with};
use async_trait::async_trait;
use changes::{ChangeError, Changes, SettingsChange};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The internal asynchronous event: "run (or continue) this cycle".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    /// Always "run": tells this event apart from the others the function receives.
    pub sophos_cw_sync: String,
    pub run_id: String,
    #[serde(default)]
    pub month: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// What started it: "webhook", "schedule", "continue".
    #[serde(default = "default_trigger")]
    pub trigger: String,
    /// Lower quantities even if the usage report shrank past `usageDropGuard`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_usage_drop: bool,
    /// Who asked for the run (kept as the run's `startedBy`); None in events
    /// queued before it was carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
}

fn default_trigger() -> String {
    "webhook".into()
}

impl RunRequest {
    pub fn new(run_id: String, month: Option<Month>, dry_run: bool, trigger: &str) -> Self {
        Self {
            sophos_cw_sync: "run".into(),
            run_id,
            month: month.map(|m| m.to_string()),
            dry_run,
            trigger: trigger.into(),
            accept_usage_drop: false,
            started_by: None,
        }
    }
}

/// Starts a cycle somewhere else and returns at once (Lambda: invoke itself with
/// InvocationType=Event; `serve`: a tokio task).
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad settings, secrets or credentials: retrying will not help.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The asynchronous start failed (the lease taken for it was given back).
    #[error("could not start the cycle: {0}")]
    Invoke(String),
    #[error("the cycle failed: {0}")]
    Cycle(String),
    /// The test failpoint stopped the run dead after this many writes, as a killed
    /// process would: nothing is recorded or notified.
    #[error("crash injected after {0} writes")]
    Crashed(u64),
}

impl AppError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Config(_) => false,
            AppError::Store(e) => e.is_retryable(),
            AppError::Invoke(_) | AppError::Cycle(_) | AppError::Crashed(_) => true,
        }
    }
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e.0)
    }
}

impl From<CycleError> for AppError {
    fn from(e: CycleError) -> Self {
        match e {
            CycleError::Config(c) => AppError::Config(c.0),
            CycleError::Store(s) => AppError::Store(s),
            CycleError::Crashed(n) => AppError::Crashed(n),
            other => AppError::Cycle(other.to_string()),
        }
    }
}

/// Secrets read once and kept for `refresh`, so a rotated secret is picked up
/// without a cold start.
pub struct SecretsCache {
    spec: SecretsSpec,
    aws: Option<aws_config::SdkConfig>,
    refresh: Duration,
    cached: Mutex<Option<(Instant, Arc<Secrets>)>>,
}

impl SecretsCache {
    pub fn new(spec: SecretsSpec, aws: Option<aws_config::SdkConfig>, refresh: Duration) -> Self {
        Self {
            spec,
            aws,
            refresh,
            cached: Mutex::new(None),
        }
    }

    /// The AWS configuration the app's AWS clients use (Secrets Manager, SNS);
    /// None: read from the environment when needed.
    pub fn aws_config(&self) -> Option<&aws_config::SdkConfig> {
        self.aws.as_ref()
    }

    pub async fn get(&self) -> Result<Arc<Secrets>, ConfigError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, secrets)) = cached.as_ref() {
            if at.elapsed() < self.refresh {
                return Ok(secrets.clone());
            }
        }
        let secrets = Arc::new(match &self.aws {
            Some(config) => load_secrets_with(&self.spec, config).await?,
            None => crate::wiring::load_secrets(&self.spec).await?,
        });
        *cached = Some((Instant::now(), secrets.clone()));
        Ok(secrets)
    }
}

/// What `start_sync` did.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Started {
        run_id: String,
    },
    /// Another cycle holds the lease.
    Busy {
        run_id: String,
    },
    /// The sync is paused (`settings.paused`): no run was started. `reason` says
    /// who paused it, when and why.
    Paused {
        reason: String,
    },
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub env: Environment,
    pub secrets: SecretsCache,
    pub invoker: Arc<dyn Invoker>,
}

impl App {
    /// The one way an App is made, by every entry point: what the environment says
    /// (its lease and deadline policy included), the store, how runs continue
    /// (`invoker`), and the AWS configuration for Secrets Manager and SNS (None:
    /// read from the environment when needed).
    pub fn new(
        env: Environment,
        store: Arc<dyn Store>,
        invoker: Arc<dyn Invoker>,
        aws: Option<aws_config::SdkConfig>,
    ) -> Self {
        Self {
            store,
            secrets: SecretsCache::new(env.secrets.clone(), aws, env.secrets_refresh),
            env,
            invoker,
        }
    }

    pub async fn settings(&self) -> Result<Settings, StoreError> {
        Ok(self.store.get_settings().await?.unwrap_or_default())
    }

    /// The webhook: takes the lease for a new run id (so a second request meanwhile
    /// is told who runs), records the run as queued and starts it asynchronously.
    /// A dry run takes no lease. `actor` is who asks (`console:<email>`,
    /// `api:token`, ...), kept as the run's `startedBy`.
    pub async fn start_sync(
        &self,
        month: Option<Month>,
        dry_run: bool,
        actor: &str,
    ) -> Result<StartOutcome, AppError> {
        self.start_sync_with(month, dry_run, false, actor).await
    }

    /// [`Self::start_sync`]; `accept_usage_drop` lets the run lower quantities
    /// even if the usage report shrank past `usageDropGuard`. While the sync is
    /// paused a writing run is not started at all (a dry run still is).
    pub async fn start_sync_with(
        &self,
        month: Option<Month>,
        dry_run: bool,
        accept_usage_drop: bool,
        actor: &str,
    ) -> Result<StartOutcome, AppError> {
        if !dry_run {
            if let Some(pause) = self.settings().await?.paused {
                return Ok(StartOutcome::Paused {
                    reason: pause.describe(),
                });
            }
        }
        let run_id = new_run_id();
        let now = chrono::Utc::now();
        if !dry_run {
            if let LeaseOutcome::HeldBy(lease) = self
                .store
                .acquire_lease(&run_id, now, self.env.run_policy.lease_ttl)
                .await?
            {
                return Ok(StartOutcome::Busy {
                    run_id: lease.run_id,
                });
            }
        }
        let request = RunRequest {
            accept_usage_drop,
            started_by: Some(actor.to_owned()),
            ..RunRequest::new(run_id.clone(), month, dry_run, "webhook")
        };
        let queued = RunRecord {
            run_id: run_id.clone(),
            status: RunStatus::Running,
            started_at: now,
            finished_at: None,
            month: month.map(|m| m.to_string()).unwrap_or_default(),
            dry_run,
            trigger: "webhook".into(),
            started_by: request.started_by.clone(),
            report: serde_json::Value::Null,
            expires_at: Some(now + chrono::Duration::days(90)),
        };
        self.store.put_run(&queued).await?;
        if let Err(e) = self.invoker.invoke_async(&request).await {
            let failed = RunRecord {
                status: RunStatus::Failed,
                finished_at: Some(chrono::Utc::now()),
                ..queued
            };
            self.store.put_run(&failed).await?;
            self.store.release_lease(&run_id).await?;
            return Err(AppError::Invoke(e));
        }
        Ok(StartOutcome::Started { run_id })
    }

    /// Runs (or, if the run is incomplete, continues) the cycle `request` names.
    /// An incomplete run asks the invoker for its next invocation. A run that
    /// ended (not `incomplete`) with something for a person to do is notified
    /// once (see [`crate::notify`]); notifying never makes this fail.
    pub async fn run_job(
        &self,
        request: &RunRequest,
        deadline: Option<Instant>,
    ) -> Result<RunReport, AppError> {
        self.run_job_as(request, deadline, JobStyle::service())
            .await
    }

    /// [`Self::run_job`] the way `style` says (the CLI keeps its results on disk for
    /// its printout and records no dry run).
    pub async fn run_job_as(
        &self,
        request: &RunRequest,
        deadline: Option<Instant>,
        style: JobStyle,
    ) -> Result<RunReport, AppError> {
        let result = self.run_cycle(request, deadline, style).await;
        if let Err(AppError::Crashed(_)) = result {
            return result;
        }
        if let Err(e) = &result {
            // An error a retry cannot mend (settings, secrets, credentials) ends the
            // run here, before or inside the cycle: recorded failed, lease given back,
            // so it does not stay `running` and block the next start for the lease's
            // lifetime. A retryable one is left to the retry of the same run.
            if !e.is_retryable() {
                self.mark_failed(&request.run_id, e).await;
            }
        }
        self.notify(request, &result).await;
        result
    }

    /// Hands how the job ended to [`crate::notify::after_job`], with the channels
    /// the environment and the secrets configure (read only when a message may
    /// be due).
    async fn notify(&self, request: &RunRequest, result: &Result<RunReport, AppError>) {
        use crate::notify::{FinishedJob, JobOutcome, Notifier};
        let outcome = match result {
            Ok(report) => JobOutcome::Report(report),
            Err(e) => JobOutcome::Error {
                message: e.to_string(),
                retryable: e.is_retryable(),
            },
        };
        let job = FinishedJob {
            run_id: &request.run_id,
            month: request.month.as_deref(),
            dry_run: request.dry_run,
            outcome,
        };
        if !job.may_notify() {
            return;
        }
        let secrets = match self.secrets.get().await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(run_id = %request.run_id, error = %e, "cannot read the secrets: the webhook is not notified");
                None
            }
        };
        let notifier =
            Notifier::new(&self.env, secrets.as_deref(), self.secrets.aws_config()).await;
        let console = self.env.console_url.as_deref();
        crate::notify::after_job(self.store.as_ref(), &notifier, console, &job).await;
    }

    async fn run_cycle(
        &self,
        request: &RunRequest,
        deadline: Option<Instant>,
        style: JobStyle,
    ) -> Result<RunReport, AppError> {
        let settings = self.settings().await?;
        let previous = self.store.get_run(&request.run_id).await?;
        let mut opts = match previous.filter(|r| r.status == RunStatus::Incomplete) {
            Some(run) => {
                let report: RunReport = serde_json::from_value(run.report).map_err(|e| {
                    AppError::Store(StoreError::Corrupt(format!("run {}: {e}", request.run_id)))
                })?;
                let mut opts =
                    RunOptions::resuming(report, &request.trigger).map_err(AppError::Config)?;
                // A continuation keeps who started the run, whoever delivers it.
                opts.started_by = run.started_by.or_else(|| request.started_by.clone());
                opts
            }
            None => {
                let month = match &request.month {
                    Some(m) => m.parse::<Month>().map_err(AppError::Config)?,
                    None => settings
                        .run_month(crate::clock::now())
                        .map_err(AppError::Config)?,
                };
                let mut opts = RunOptions::new(month, request.dry_run, &request.trigger);
                opts.run_id = request.run_id.clone();
                opts.accept_usage_drop = request.accept_usage_drop;
                opts.started_by = request.started_by.clone();
                opts
            }
        };
        let policy = self.env.run_policy;
        opts.deadline = deadline.map(|d| policy.last_start(Instant::now(), d));
        opts.concurrency = settings.connectwise_concurrency;
        opts.keep_customers = style.keep_customers;
        opts.lease_ttl = policy.lease_ttl;
        opts.record_dry_run = style.record_dry_run;
        opts.crash_after_writes = style.crash_after_writes;
        let secrets = self.secrets.get().await?;
        let counters = Arc::new(ApiCounters::default());
        let (sophos, cw) = build_clients(&self.env, &secrets, counters.clone()).await?;
        let engine = Engine {
            store: self.store.as_ref(),
            sophos: &sophos,
            cw: &cw,
            counters,
            settings: &settings,
        };
        let report = match engine.run(&opts).await {
            Ok(report) => report,
            Err(CycleError::Crashed(n)) => return Err(AppError::Crashed(n)),
            Err(e) => {
                let error = AppError::from(e);
                self.mark_failed(&request.run_id, &error).await;
                return Err(error);
            }
        };
        if report.status == RunStatus::Incomplete {
            let next = RunRequest {
                trigger: "continue".into(),
                ..request.clone()
            };
            self.invoker
                .invoke_async(&next)
                .await
                .map_err(AppError::Invoke)?;
        }
        Ok(report)
    }

    /// Records a run that ended in an error as failed and gives its lease back, so
    /// the next webhook is not refused for the lease's lifetime. Best effort: the
    /// store may be what failed.
    async fn mark_failed(&self, run_id: &str, error: &AppError) {
        let Ok(Some(mut run)) = self.store.get_run(run_id).await else {
            return;
        };
        if run.status != RunStatus::Running {
            return;
        }
        run.status = RunStatus::Failed;
        run.finished_at = Some(chrono::Utc::now());
        run.report = serde_json::json!({"error": error.to_string()});
        if self.store.put_run(&run).await.is_ok() {
            let _ = self.store.release_lease(run_id).await;
        }
    }

    /// A scheduled tick: the same tick delivered twice runs once; an incomplete run
    /// is continued rather than a new one started.
    pub async fn on_schedule(
        &self,
        tick: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<RunReport>, AppError> {
        let run_id = new_run_id();
        let key = format!("schedule#{tick}");
        let now = chrono::Utc::now();
        if let Some(first) = self
            .store
            .claim_once(&key, &run_id, now, Duration::from_secs(7 * 24 * 3600))
            .await?
        {
            // A retry of a tick whose run failed, or died before it was recorded,
            // runs again under the same id; a finished or running one is a duplicate.
            let retry = match self.store.get_run(&first).await? {
                None => true,
                Some(run) => matches!(run.status, RunStatus::Failed | RunStatus::Incomplete),
            };
            if !retry {
                tracing::info!(tick, run_id = %first, "scheduled event already handled; skipping the duplicate delivery");
                return Ok(None);
            }
            let request = scheduled(RunRequest::new(first, None, false, "schedule"));
            return self.run_job(&request, deadline).await.map(Some);
        }
        let latest = self.store.list_runs(1, None).await?;
        let request = match latest.first().filter(|r| r.status == RunStatus::Incomplete) {
            Some(run) => RunRequest::new(run.run_id.clone(), None, run.dry_run, "schedule"),
            None => RunRequest::new(run_id, None, false, "schedule"),
        };
        let request = scheduled(request);
        self.run_job(&request, deadline).await.map(Some)
    }
}

/// What differs between the ways a job runs.
pub struct JobStyle {
    /// Where each customer's result goes besides the store.
    pub keep_customers: KeepCustomers,
    /// Keep a dry run's report as a run record (the service's preview); the CLI's
    /// dry run writes nothing anywhere.
    pub record_dry_run: bool,
    /// Test failpoint: stop dead after this many ConnectWise writes.
    pub crash_after_writes: Option<u64>,
}

impl JobStyle {
    /// The service's (webhook, schedule, `serve`, the Lambda): results go to the
    /// store as customers finish and the report keeps only the counts, so an
    /// invocation's memory does not grow with the partner; a dry run is recorded.
    pub fn service() -> Self {
        Self {
            keep_customers: KeepCustomers::Nowhere,
            record_dry_run: true,
            crash_after_writes: None,
        }
    }
}

/// The invoker of a process that runs every cycle to its end (the CLI, which has
/// no invocation deadline): there is never a next invocation to ask for.
pub struct NoContinuation;

#[async_trait]
impl Invoker for NoContinuation {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        Err(format!(
            "run {} stopped incomplete, and the CLI does not continue runs in the background: the next `sophos-cw-sync sync` covers its customers again",
            request.run_id
        ))
    }
}

/// A request of the schedule: started by `schedule` (a continued run keeps the
/// `startedBy` of its record, see `run_cycle`).
fn scheduled(request: RunRequest) -> RunRequest {
    RunRequest {
        started_by: Some("schedule".into()),
        ..request
    }
}

/// The operator's changes (see [`changes`]), with the checks that need ConnectWise.
impl App {
    pub fn changes(&self) -> Changes<'_> {
        Changes::new(self.store.as_ref())
    }

    /// Replaces the settings; a new `agreementType` is checked against ConnectWise
    /// first (an unknown one, or ConnectWise out of reach, stores nothing).
    pub async fn update_settings(
        &self,
        new: Settings,
        actor: &str,
        note: Option<&str>,
    ) -> Result<SettingsChange, ChangeError> {
        let old = self.settings().await?;
        // The settings' own checks first: a bad document costs no ConnectWise call.
        crate::wiring::validate_settings(&new).map_err(|e| ChangeError::Invalid(e.0))?;
        self.check_keeps_an_admin(&old, &new).await?;
        if new.agreement_type != old.agreement_type {
            if let Some(name) = &new.agreement_type {
                self.check_agreement_type(name).await?;
            }
        }
        self.changes()
            .replace_settings(&old, new, actor, note)
            .await
    }

    /// Refuses a change of `operators` that leaves no admin while OpenID Connect is
    /// the only way into the console (no `consoleToken`): nobody could change the
    /// settings from the console again. Settings whose operators are not changed
    /// pass (a code mapped or a product ticked must not fail on an older document).
    async fn check_keeps_an_admin(
        &self,
        old: &Settings,
        new: &Settings,
    ) -> Result<(), ChangeError> {
        if !may_leave_no_admin(&self.env, old, new) {
            return Ok(());
        }
        let secrets = self
            .secrets
            .get()
            .await
            .map_err(|e| ChangeError::Secrets(e.0))?;
        check_keeps_an_admin(&self.env, &secrets, old, new)
    }

    /// Only a changed `agreementType` is asked about, so pausing or any other
    /// change still works while ConnectWise is down.
    async fn check_agreement_type(&self, name: &str) -> Result<(), ChangeError> {
        let secrets = self
            .secrets
            .get()
            .await
            .map_err(|e| ChangeError::Secrets(e.0))?;
        check_agreement_type(&self.env, &secrets, name).await
    }

    pub async fn set_mapping(&self, mapping: &Mapping, actor: &str) -> Result<(), ChangeError> {
        self.changes().set_mapping(mapping, actor).await
    }

    pub async fn clear_mapping(
        &self,
        tenant_id: &str,
        actor: &str,
    ) -> Result<Option<Mapping>, ChangeError> {
        self.changes().clear_mapping(tenant_id, actor).await
    }

    pub async fn pause(
        &self,
        actor: &str,
        reason: Option<String>,
    ) -> Result<SettingsChange, ChangeError> {
        self.changes().pause(actor, reason).await
    }

    pub async fn resume(&self, actor: &str) -> Result<SettingsChange, ChangeError> {
        self.changes().resume(actor).await
    }
}

/// Whether `new` changes `operators` so that no admin is left while OpenID Connect
/// is set up: then the secret decides ([`check_keeps_an_admin`]). Settings whose
/// operators are not changed pass (a code mapped or a product ticked must not
/// fail on an older document).
pub fn may_leave_no_admin(env: &Environment, old: &Settings, new: &Settings) -> bool {
    new.operators != old.operators
        && !crate::config::operators::has_admin(&new.operators)
        && env.console_oidc.is_some()
}

/// Refuses a change of `operators` that leaves no admin while OpenID Connect is
/// the only way into the console (the secret has no `consoleToken`): nobody could
/// change the settings from the console again. The console, `PUT /settings` and
/// the CLI's `SYNC_SETTINGS` all ask this.
pub fn check_keeps_an_admin(
    env: &Environment,
    secrets: &Secrets,
    old: &Settings,
    new: &Settings,
) -> Result<(), ChangeError> {
    if may_leave_no_admin(env, old, new) && secrets.console_token.is_none() {
        return Err(ChangeError::Invalid(NO_ADMIN_LEFT.into()));
    }
    Ok(())
}

/// Why a settings change that leaves no admin is refused, and the two ways out.
const NO_ADMIN_LEFT: &str = "these settings leave no \"admin\" in \"operators\", and OpenID Connect is the only way into the console (the secret has no \"consoleToken\"), so nobody could change the settings from the console again. Keep at least one admin in \"operators\", e.g. {\"email\": \"you@example.com\", \"role\": \"admin\"} or {\"group\": \"<your admins' group>\", \"role\": \"admin\"}, or first add a \"consoleToken\" (a long random password) to the secret as a break-glass sign-in. Nothing was stored";

/// Whether ConnectWise has an active agreement type `name` (exactly: the sync
/// looks agreements up by this name); refused with the names it has, or when
/// ConnectWise cannot be asked.
pub async fn check_agreement_type(
    env: &Environment,
    secrets: &Secrets,
    name: &str,
) -> Result<(), ChangeError> {
    let counters = Arc::new(ApiCounters::default());
    let (_, cw) = build_clients(env, secrets, counters)
        .await
        .map_err(|e| ChangeError::ConnectWiseUnreachable(e.0))?;
    let known = cw
        .agreement_type_names()
        .await
        .map_err(|e| ChangeError::ConnectWiseUnreachable(e.to_string()))?;
    if known.iter().any(|k| k == name) {
        return Ok(());
    }
    Err(ChangeError::UnknownAgreementType {
        name: name.to_owned(),
        known,
    })
}
