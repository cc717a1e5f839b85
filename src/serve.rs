//! `sophos-cw-sync serve [--addr 127.0.0.1:8080]`: the HTTP API on a local port,
//! with cycles run as tokio tasks of this process ([`LocalInvoker`]).

use crate::app::{App, AppError, Invoker, RunRequest};
use crate::config::Environment;
use crate::state::ConsoleConfig;
use crate::store::{RunRecord, RunStatus, Store, StoreError};
use crate::web::router;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Runs cycles as tokio tasks of this process. It holds a weak reference to the
/// [`App`] it belongs to (the App owns the invoker; a strong reference would be a
/// cycle); [`LocalInvoker::attach`] sets it once the App is built.
#[derive(Default)]
pub struct LocalInvoker {
    app: OnceLock<Weak<App>>,
    running: Arc<Running>,
}

#[derive(Default)]
struct Running {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts a cycle as running until dropped (also when its task panics).
struct RunningGuard(Arc<Running>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl LocalInvoker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Points the invoker at the App that owns it. Only the first call counts.
    pub fn attach(&self, app: &Arc<App>) {
        let _ = self.app.set(Arc::downgrade(app));
    }

    /// How many cycles this invoker started that have not ended yet.
    pub fn running(&self) -> usize {
        self.running.count.load(Ordering::SeqCst)
    }

    /// Waits until no cycle started by this invoker runs.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.running.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[async_trait]
impl Invoker for LocalInvoker {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        let app = self
            .app
            .get()
            .and_then(Weak::upgrade)
            .ok_or("the local invoker is not attached to a running service")?;
        self.running.count.fetch_add(1, Ordering::SeqCst);
        let guard = RunningGuard(self.running.clone());
        let request = request.clone();
        tokio::spawn(async move {
            let _guard = guard;
            run_cycle(app, request).await;
        });
        Ok(())
    }
}

/// One cycle in the background. When it ends in an error before the engine recorded
/// its outcome, the run is marked failed and its lease given back, so neither
/// `GET /runs/{id}` nor the next `POST /sync` waits for the lease to expire.
async fn run_cycle(app: Arc<App>, request: RunRequest) {
    let run_id = request.run_id.clone();
    let job = {
        let app = app.clone();
        tokio::spawn(async move { app.run_job(&request, None).await })
    };
    let error = match job.await {
        Ok(Ok(report)) => {
            tracing::info!(run_id, status = ?report.status, writes = report.writes, "cycle finished");
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(run_id, error = %e, "cycle failed");
            e.to_string()
        }
        Err(e) => {
            tracing::error!(run_id, error = %e, "cycle task ended abnormally");
            "internal error: the cycle stopped unexpectedly; see the service log".to_owned()
        }
    };
    if let Err(e) = mark_failed(app.store.as_ref(), &run_id, &error).await {
        tracing::error!(run_id, error = %e, "cannot record the failed cycle");
    }
}

async fn mark_failed(store: &dyn Store, run_id: &str, error: &str) -> Result<(), StoreError> {
    if let Some(run) = store.get_run(run_id).await? {
        if run.status == RunStatus::Running {
            let report = if run.report.is_null() {
                serde_json::json!({ "error": error })
            } else {
                run.report.clone()
            };
            let failed = RunRecord {
                status: RunStatus::Failed,
                finished_at: Some(chrono::Utc::now()),
                report,
                ..run
            };
            store.put_run(&failed).await?;
        }
    }
    store.release_lease(run_id).await
}

/// The App with the defaults of `serve` (secrets re-read every 5 minutes, a
/// 15-minute lease, no invocation deadline).
/// The App with a [`LocalInvoker`] attached to it (runs continue in this process).
pub fn build_local_app(env: Environment, store: Arc<dyn Store>) -> (Arc<App>, Arc<LocalInvoker>) {
    let invoker = Arc::new(LocalInvoker::new());
    let app = Arc::new(App::new(env, store, invoker.clone(), None));
    invoker.attach(&app);
    (app, invoker)
}

/// Serves the router (console and API) on `listener` until the process ends.
pub async fn serve_on(
    listener: TcpListener,
    app: Arc<App>,
    console: ConsoleConfig,
) -> std::io::Result<()> {
    axum::serve(listener, router(app, console)).await
}

/// How `serve` listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: String,
    /// Drop the session cookie's `Secure` flag, so the console works over plain
    /// `http://` on this machine. Refused unless `addr` is a loopback address.
    pub insecure_local_cookies: bool,
}

/// `sophos-cw-sync serve`: the App from the environment like the CLI's, then the
/// console and the API on `addr` until Ctrl-C / SIGTERM; running cycles are waited
/// for. `env` and `store` come from the CLI, which has applied `SYNC_SETTINGS`.
pub async fn run(
    opts: ServeOptions,
    env: Environment,
    store: Arc<dyn Store>,
) -> Result<(), AppError> {
    let (app, invoker) = build_local_app(env, store);
    // Fail at start rather than answer every request with 503.
    let secrets = app.secrets.get().await?;
    let oidc = app.env.console_oidc.is_some();
    let has_oidc = oidc && secrets.console_oidc_client_secret.is_some();
    let has_console = secrets.console_token.is_some() || has_oidc;
    if secrets.webhook_token.is_none() && !has_console {
        return Err(AppError::Config(
            "the secret has neither a webhookToken nor a consoleToken (and OpenID Connect sign-in is not set up with its consoleOidcClientSecret): add \"consoleToken\": \"<a long random password>\" to sign in to the console, and/or \"webhookToken\": \"<a long random string>\" for the API (sent as `Authorization: Bearer <token>`)".into(),
        ));
    }
    if oidc && !has_oidc {
        eprintln!(
            "note: CONSOLE_OIDC_ISSUER is set but the secret has no \"consoleOidcClientSecret\": sign-in through the identity provider answers 503 until it is added"
        );
    }
    let sign_in = match (has_oidc, secrets.console_token.is_some()) {
        (true, true) => "sign in through your identity provider, or with the secret's consoleToken",
        (true, false) => "sign in through your identity provider",
        _ => "sign in with the secret's consoleToken",
    };
    drop(secrets);
    let listener = TcpListener::bind(&opts.addr).await.map_err(|e| {
        AppError::Config(format!(
            "cannot listen on {} ({e}): choose another address with --addr, e.g. 127.0.0.1:8081",
            opts.addr
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| AppError::Config(format!("cannot read the bound address: {e}")))?;
    if opts.insecure_local_cookies && !local.ip().is_loopback() {
        return Err(AppError::Config(format!(
            "--insecure-local-cookies only works on a loopback address (127.0.0.1), not {local}: without the Secure flag the session cookie would cross the network in clear text"
        )));
    }
    println!("listening on http://{local}");
    if has_console {
        println!("console: http://{local}/console/ ({sign_in})");
        if !opts.insecure_local_cookies {
            println!(
                "note: the session cookie is Secure, so browsers keep it only over https; on this machine add --insecure-local-cookies"
            );
        }
    } else {
        println!("console: disabled until the secret has a consoleToken");
    }
    if !local.ip().is_loopback() {
        eprintln!(
            "note: this is plain HTTP; put a TLS-terminating proxy in front of it when it is reachable beyond this machine"
        );
    }
    let console = ConsoleConfig {
        secure_cookies: !opts.insecure_local_cookies,
        ..ConsoleConfig::default()
    };
    axum::serve(listener, router(app, console))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| AppError::Cycle(format!("the HTTP server stopped: {e}")))?;
    if invoker.running() > 0 {
        eprintln!(
            "waiting for {} running cycle(s) to finish (press Ctrl-C again to stop at once)",
            invoker.running()
        );
        tokio::select! {
            _ = invoker.wait_idle() => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped; the interrupted cycle is taken up by the next sync once its lease expires");
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
