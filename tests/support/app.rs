//! Spawns the simulators and wires the engine to them, in-process or as the real
//! `sophos-cw-sync` binary, each test with its own temp dir and SQLite store.

use async_trait::async_trait;
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, Sim, generate};
use sophos_cw_sync::app::{Invoker, RunRequest};
use sophos_cw_sync::config::env::OidcConfig;
use sophos_cw_sync::config::{
    Environment, RunPolicy, Secrets, SecretsSpec, Settings, StoreSpec, ZeroUsage,
};
use sophos_cw_sync::domain::month::Month;
use sophos_cw_sync::http::{ApiCounters, HttpPolicy};
use sophos_cw_sync::store::Store;
use sophos_cw_sync::store::sqlite::SqliteStore;
use sophos_cw_sync::sync::engine::{CycleError, Engine, RunOptions};
use sophos_cw_sync::sync::report::RunReport;
use sophos_cw_sync::wiring::build_clients_with_policy;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const MONTH: &str = "2026-11";
/// The console password (`consoleToken`) of every harness's secret.
pub const CONSOLE_PASSWORD: &str = "console-password-secret-value";
/// The OpenID Connect client secret (`consoleOidcClientSecret`) of a harness
/// made [`Harness::with_oidc`].
pub const OIDC_CLIENT_SECRET: &str = "oidc-client-secret-value";
/// The client id of a harness made [`Harness::with_oidc`].
pub const OIDC_CLIENT_ID: &str = "sophos-cw-sync-console";

pub struct Harness {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub secrets_path: PathBuf,
    pub db_path: PathBuf,
    /// Sign-in through an OpenID Connect issuer (see [`Harness::with_oidc`]).
    pub console_oidc: Option<OidcConfig>,
    /// `CONSOLE_URL` (none by default).
    pub console_url: Option<String>,
}

/// The demo settings: Intercept X Advanced and its XDR variant, agreement type "Sophos MSP".
pub fn demo_settings() -> Settings {
    serde_json::from_value(json!({
        "products": ["Sophos_Intercept_X_Advanced", "Sophos_Intercept_X_Advanced_XDR"],
        "agreementType": "Sophos MSP",
        "catalog": {"type": "Software", "category": "Security", "subcategory": "Endpoint",
                    "unitOfMeasure": "Each", "productClass": "Agreement"},
        "quantityField": "billableQuantity",
        "zeroUsage": "zero",
        "month": MONTH
    }))
    .expect("valid settings")
}

/// The demo settings for a generated scenario: its month and every product the
/// generator uses (all in the built-in code table).
pub fn generated_settings() -> Settings {
    let mut s = demo_settings();
    s.month = generate::USAGE_MONTH.into();
    let codes = sophos_cw_sync::domain::products::code_table(&s.product_codes);
    s.products = generate::PRODUCTS
        .iter()
        .map(|(c, _)| codes[*c].clone())
        .collect();
    s
}

/// Records the asynchronous starts instead of running them: the test plays Lambda.
#[derive(Default)]
pub struct QueueInvoker(pub std::sync::Mutex<Vec<RunRequest>>);

#[async_trait]
impl Invoker for QueueInvoker {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        self.0.lock().unwrap().push(request.clone());
        Ok(())
    }
}

impl QueueInvoker {
    /// The latest start asked for, taken out of the queue.
    pub fn pop(&self) -> Option<RunRequest> {
        self.0.lock().unwrap().pop()
    }
}

pub fn settings_with(zero_usage: ZeroUsage) -> Settings {
    Settings {
        zero_usage,
        ..demo_settings()
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_scenario(Scenario::demo()).await
    }

    pub async fn with_scenario(scenario: Scenario) -> Self {
        let sim = Sim::start(scenario.clone())
            .await
            .expect("simulators start");
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("sync.db");
        let store = Arc::new(SqliteStore::open(&db_path).expect("sqlite store"));
        let secrets_path = dir.path().join("secrets.json");
        let secret = json!({
            "sophos": {"clientId": scenario.sophos.client_id, "clientSecret": scenario.sophos.client_secret},
            "connectwise": {"site": sim.cw_url(), "companyId": scenario.connectwise.company_id,
                "publicKey": scenario.connectwise.public_key, "privateKey": scenario.connectwise.private_key,
                "clientId": scenario.connectwise.client_id},
            "webhookToken": "webhook-token-secret-value",
            "consoleToken": CONSOLE_PASSWORD
        });
        std::fs::write(&secrets_path, secret.to_string()).expect("write secrets");
        Harness {
            sim,
            dir,
            store,
            secrets_path,
            db_path,
            console_oidc: None,
            console_url: None,
        }
    }

    /// Sign-in through `issuer` (client [`OIDC_CLIENT_ID`], groups claim `groups`),
    /// its client secret in the secret as `consoleOidcClientSecret`.
    pub fn with_oidc(mut self, issuer: &str) -> Self {
        self.console_oidc = Some(OidcConfig {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: OIDC_CLIENT_ID.to_owned(),
            groups_claim: sophos_cw_sync::config::env::DEFAULT_GROUPS_CLAIM.to_owned(),
        });
        self.set_secret_fields(json!({"consoleOidcClientSecret": OIDC_CLIENT_SECRET}));
        self
    }

    pub fn env(&self) -> Environment {
        Environment {
            store: StoreSpec::Sqlite(self.db_path.clone()),
            secrets: SecretsSpec::File(self.secrets_path.clone()),
            sophos_id_url: self.sim.sophos_url(),
            sophos_api_url: self.sim.sophos_url(),
            settings_file: None,
            console_url: self.console_url.clone(),
            notify_topic_arn: None,
            notify_webhook_timeout: sophos_cw_sync::config::env::DEFAULT_WEBHOOK_TIMEOUT,
            console_oidc: self.console_oidc.clone(),
            run_policy: RunPolicy::default(),
            secrets_refresh: sophos_cw_sync::config::env::DEFAULT_SECRETS_REFRESH,
            function_name: None,
        }
    }

    /// [`Self::env`] with the policy the Lambda tests run under: a 20-minute lease and
    /// no deadline margin (a test's deadline is the last start itself), secrets
    /// reused for `secrets_refresh`.
    pub fn lambda_env(&self, secrets_refresh: Duration) -> Environment {
        Environment {
            run_policy: RunPolicy {
                lease_ttl: Duration::from_secs(1200),
                deadline_margin: Duration::ZERO,
            },
            secrets_refresh,
            ..self.env()
        }
    }

    pub fn options(&self, dry_run: bool) -> RunOptions {
        RunOptions::new(MONTH.parse::<Month>().unwrap(), dry_run, "test")
    }

    /// One cycle in-process with `settings`.
    pub async fn run(&self, settings: &Settings) -> RunReport {
        self.run_with(settings, self.options(false))
            .await
            .expect("cycle runs")
    }

    pub async fn run_with(
        &self,
        settings: &Settings,
        opts: RunOptions,
    ) -> Result<RunReport, CycleError> {
        self.run_with_policy(settings, opts, HttpPolicy::default())
            .await
    }

    /// One cycle with the clients' timeouts and retry limits set to `policy`.
    pub async fn run_with_policy(
        &self,
        settings: &Settings,
        opts: RunOptions,
        policy: HttpPolicy,
    ) -> Result<RunReport, CycleError> {
        let secrets = Secrets::from_file(&self.secrets_path).expect("secrets");
        let counters = Arc::new(ApiCounters::default());
        let (sophos, cw) =
            build_clients_with_policy(&self.env(), &secrets, counters.clone(), policy)
                .await
                .expect("clients");
        let store: &dyn Store = self.store.as_ref();
        let engine = Engine {
            store,
            sophos: &sophos,
            cw: &cw,
            counters,
            settings,
        };
        engine.run(&opts).await
    }

    /// Sets (or, with null, removes) top-level fields of the harness's secret file,
    /// e.g. `{"notifyWebhookUrl": "...", "notifyWebhookSecret": "..."}`.
    pub fn set_secret_fields(&self, fields: Value) {
        let mut secret: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.secrets_path).unwrap()).unwrap();
        for (k, v) in fields.as_object().expect("an object of fields") {
            let obj = secret.as_object_mut().unwrap();
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(&self.secrets_path, secret.to_string()).expect("write secrets");
    }

    /// Runs the real binary with the environment pointing at the simulators.
    pub async fn cli(&self, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
        self.cli_command(args, extra_env)
            .output()
            .await
            .expect("binary runs")
    }

    /// The command [`Harness::cli`] runs, for a test that needs the child itself
    /// (to read its output as it comes).
    pub fn cli_command(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let settings_path = self.dir.path().join("settings.json");
        if !settings_path.exists() {
            std::fs::write(
                &settings_path,
                serde_json::to_string(&demo_settings()).unwrap(),
            )
            .unwrap();
        }
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sophos-cw-sync"));
        cmd.args(args)
            .env("SYNC_STORE", format!("sqlite:{}", self.db_path.display()))
            .env(
                "SYNC_SECRETS",
                format!("file:{}", self.secrets_path.display()),
            )
            .env("SYNC_SETTINGS", &settings_path)
            .env("SOPHOS_ID_URL", self.sim.sophos_url())
            .env("SOPHOS_API_URL", self.sim.sophos_url())
            .env_remove("RUST_LOG");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn additions(&self) -> Vec<Value> {
        self.sim.collection("additions")
    }

    pub fn additions_of(&self, agreement_id: i64) -> Vec<Value> {
        self.additions()
            .into_iter()
            .filter(|a| a["agreementId"].as_i64() == Some(agreement_id))
            .collect()
    }

    pub fn catalog(&self) -> Vec<Value> {
        self.sim.collection("catalog")
    }

    /// ConnectWise requests other than GET since the last clear.
    pub fn cw_writes(&self) -> u64 {
        self.sim.counters().connectwise.writes
    }
}

/// The customer entry of `tenant_id` in a report, as JSON.
pub fn customer(report: &RunReport, tenant_id: &str) -> Value {
    let c = report
        .customers
        .iter()
        .find(|c| c.tenant_id == tenant_id)
        .unwrap_or_else(|| panic!("tenant {tenant_id} in report"));
    serde_json::to_value(c).unwrap()
}

/// Demo tenant ids.
pub fn tenant(n: u32) -> String {
    format!("a0000000-0000-4000-8000-{n:012}")
}
