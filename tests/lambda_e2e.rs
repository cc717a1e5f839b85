//! End to end: the function as AWS Lambda runs it, under `cargo lambda watch`, with
//! moto (DynamoDB, Secrets Manager) and the in-process simulators, driven by the
//! sample events of `events/`.
//!
//! `cargo lambda watch` answers every invocation synchronously (it ignores
//! `InvocationType=Event`), so the function's self-invocations go through
//! `sophos_cw_sim::lambda_queue::LambdaQueue`, which answers 202 at once and
//! delivers the event to watch in the background, as Lambda does.
//!
//! Needs `.venv/bin/cargo-lambda` (`make venv`). The first invocation may wait for
//! `cargo run` inside watch to build the binary.

mod support;

use serde_json::{Value, json};
use sophos_cw_sim::lambda_queue::LambdaQueue;
use sophos_cw_sim::{Api, Latency, Scenario, Sim};
use sophos_cw_sync::store::dynamodb::DynamoStore;
use sophos_cw_sync::store::{RunRecord, RunStatus, Store};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::app::{MONTH, demo_settings};
use support::moto;

const FUNCTION: &str = "sophos-cw-sync";
/// The function's own timeout under watch (how long an invoke request may wait).
const FUNCTION_TIMEOUT_SECS: u64 = 120;
/// The first invocation may build the binary first.
const FIRST_INVOKE: Duration = Duration::from_secs(300);
const INVOKE: Duration = Duration::from_secs(FUNCTION_TIMEOUT_SECS + 10);
/// A whole webhook cycle (with its continuations) through the queue.
const CYCLE: Duration = Duration::from_secs(180);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// `cargo lambda watch` under a tiny `sh` watchdog that reads our end of a pipe: when
/// the pipe closes (this guard is dropped, or the test process dies however it dies)
/// it sends watch SIGTERM, on which watch stops its function instances (each in its
/// own process group), then SIGKILL if watch is still there after 10 s. On a failing
/// test the guard prints the tail of watch's log first.
struct Watch {
    watchdog: Child,
    port: u16,
    log: PathBuf,
}

/// `$@` is the watch command line; Ctrl-C is left to the test process (whose exit
/// closes the pipe).
const WATCHDOG: &str = r#"trap '' INT
"$@" </dev/null & w=$!
cat >/dev/null
kill -TERM "$w" 2>/dev/null
( sleep 10; kill -KILL "$w" 2>/dev/null ) & k=$!
wait "$w"
kill "$k" 2>/dev/null"#;

impl Watch {
    fn spawn(port: u16, log: &Path, env: &[(&str, String)]) -> Watch {
        let root = manifest_dir();
        let venv_bin = root.join(".venv/bin");
        assert!(
            venv_bin.join("cargo-lambda").exists(),
            "{} is missing: run `make venv` (it installs cargo-lambda into .venv)",
            venv_bin.join("cargo-lambda").display()
        );
        let path = match std::env::var_os("PATH") {
            Some(p) => {
                let mut dirs = vec![venv_bin];
                dirs.extend(std::env::split_paths(&p));
                std::env::join_paths(dirs).expect("PATH joins")
            }
            None => venv_bin.into_os_string(),
        };
        let out = std::fs::File::create(log).expect("create the watch log");
        let err = out.try_clone().expect("clone the log handle");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WATCHDOG, "sh"])
            .args([
                "cargo",
                "lambda",
                "watch",
                "--bin",
                FUNCTION,
                "--ignore-changes",
            ])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .args(["--concurrency", "4", "--timeout"])
            .arg(FUNCTION_TIMEOUT_SECS.to_string())
            .current_dir(&root)
            .env("PATH", path)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let watchdog = cmd.spawn().expect("start cargo lambda watch");
        Watch {
            watchdog,
            port,
            log: log.to_owned(),
        }
    }

    /// Waits (bounded) until watch accepts connections on its invoke port.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                panic!("cargo lambda watch exited before it listened ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on port {} within 120 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- cargo lambda watch log ({}), last lines:\n{}\n----",
                self.log.display(),
                self.tail(120)
            );
        }
        // Closing the pipe stops watch; wait (bounded) until it has.
        drop(self.watchdog.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.watchdog.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Builds the function first (quick when `cargo test` has just built it) so that the
/// first invocation does not wait for a build within watch's invoke timeout.
async fn build_function(log: &Path) {
    let out = std::fs::File::create(log).expect("create the build log");
    let err = out.try_clone().expect("clone the log handle");
    let mut child = tokio::process::Command::new("cargo")
        .args(["build", "--quiet", "--bin", FUNCTION])
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .expect("start cargo build");
    let status = tokio::time::timeout(Duration::from_secs(600), child.wait())
        .await
        .unwrap_or_else(|_| panic!("cargo build --bin {FUNCTION} took over 10 minutes"))
        .expect("cargo build runs");
    assert!(
        status.success(),
        "cargo build --bin {FUNCTION} failed ({status}):\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Sends events to the function through watch's Invoke API.
struct Function {
    client: reqwest::Client,
    url: String,
}

impl Function {
    fn new(port: u16) -> Function {
        Function {
            client: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{port}/2015-03-31/functions/{FUNCTION}/invocations"),
        }
    }

    /// Invokes with `event` and returns the HTTP status of the invoke and the
    /// function's return value.
    async fn invoke_value(&self, event: &Value, timeout: Duration) -> (u16, Value) {
        let resp = self
            .client
            .post(&self.url)
            .timeout(timeout)
            .json(event)
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoking the function failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("the invoke answer's body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.to_owned()));
        (status, value)
    }

    /// Invokes with `events/<file>` and returns the function's return value; the
    /// invocation itself must succeed.
    async fn invoke(&self, file: &str) -> Value {
        self.invoke_with(file, INVOKE).await
    }

    async fn invoke_with(&self, file: &str, timeout: Duration) -> Value {
        let (status, value) = self.invoke_value(&event(file), timeout).await;
        assert_eq!(status, 200, "{file}: the invocation failed: {value}");
        value
    }

    /// Sends an HTTP API event; returns the response's status code and JSON body.
    async fn api(&self, file: &str) -> (i64, Value) {
        self.api_with(file, INVOKE).await
    }

    async fn api_with(&self, file: &str, timeout: Duration) -> (i64, Value) {
        let response = self.invoke_with(file, timeout).await;
        let status = response["statusCode"]
            .as_i64()
            .unwrap_or_else(|| panic!("{file}: not an HTTP API response: {response}"));
        assert_eq!(
            response["headers"]["content-type"], "application/json",
            "{file}: {response}"
        );
        let body = response["body"].as_str().unwrap_or("null");
        let body: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{file}: the body is not JSON ({e}): {body}"));
        (status, body)
    }
}

/// `events/<file>` as JSON.
fn event(file: &str) -> Value {
    let path = manifest_dir().join("events").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Active additions of an agreement in the simulator, as (product identifier, quantity).
fn additions_of(sim: &Sim, agreement_id: i64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = sim
        .collection("additions")
        .into_iter()
        .filter(|a| a["agreementId"].as_i64() == Some(agreement_id))
        .filter(|a| a["cancelledDate"].as_str().is_none_or(str::is_empty))
        .map(|a| {
            (
                a["product"]["identifier"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                a["quantity"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn addition_quantity(sim: &Sim, addition_id: i64) -> f64 {
    sim.collection("additions")
        .into_iter()
        .find(|a| a["id"].as_i64() == Some(addition_id))
        .unwrap_or_else(|| panic!("addition {addition_id} in the simulator"))["quantity"]
        .as_f64()
        .unwrap()
}

async fn runs(store: &DynamoStore) -> Vec<RunRecord> {
    store.list_runs(100, None).await.expect("list runs")
}

/// How many customer results the run stored, read a page at a time.
async fn run_customer_count(store: &DynamoStore, run_id: &str) -> usize {
    let (mut count, mut after) = (0, None::<String>);
    loop {
        let page = store
            .list_run_customers(run_id, 100, after.as_deref())
            .await
            .expect("list run customers");
        count += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return count,
        }
    }
}

async fn run(store: &DynamoStore, run_id: &str) -> RunRecord {
    store
        .get_run(run_id)
        .await
        .expect("get run")
        .unwrap_or_else(|| panic!("run {run_id} recorded in DynamoDB"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_function_under_cargo_lambda_watch_answers_every_sample_event() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());

    // The simulators, moto, the table and the secret.
    let scenario = Scenario::demo();
    let sim = Sim::start(scenario.clone())
        .await
        .expect("simulators start");
    let config = moto::aws_config().await;
    let moto_url = config
        .endpoint_url()
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .expect("the moto endpoint URL");
    let table = moto::unique_name("lambda-e2e-");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table.clone());
    store.create_table_if_missing().await.expect("create table");
    store.enable_ttl().await.expect("enable TTL");
    let secret_name = moto::unique_name("lambda-e2e-");
    let secret = json!({
        "sophos": {"clientId": scenario.sophos.client_id, "clientSecret": scenario.sophos.client_secret},
        "connectwise": {"site": sim.cw_url(), "companyId": scenario.connectwise.company_id,
            "publicKey": scenario.connectwise.public_key, "privateKey": scenario.connectwise.private_key,
            "clientId": scenario.connectwise.client_id},
        "webhookToken": "demo-webhook-token",
        "consoleToken": "demo-console-password"
    });
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(&secret_name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create the secret in moto");

    // Lambda's asynchronous front door, then the function under watch.
    let port = free_port();
    let queue = LambdaQueue::start(format!("http://127.0.0.1:{port}"))
        .await
        .expect("lambda queue starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("SYNC_STORE", format!("dynamodb:{table}")),
        ("SYNC_SECRETS", format!("secretsmanager:{secret_name}")),
        ("SOPHOS_ID_URL", sim.sophos_url()),
        ("SOPHOS_API_URL", sim.sophos_url()),
        ("SYNC_FUNCTION_NAME", FUNCTION.to_owned()),
        ("SYNC_DEADLINE_MARGIN_SECONDS", "10".to_owned()),
        ("AWS_ENDPOINT_URL", moto_url),
        ("AWS_ENDPOINT_URL_LAMBDA", queue.url()),
        ("AWS_REGION", moto::REGION.to_owned()),
        ("AWS_DEFAULT_REGION", moto::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    build_function(&dir.path().join("build.log")).await;
    step("function built");
    let mut watch = Watch::spawn(port, &dir.path().join("watch.log"), &env);
    watch.wait_ready().await;
    let function = Function::new(port);
    step("watch listens");

    // 401 for a missing or wrong token, and nothing written.
    let (status, body) = function
        .api_with("api-sync-no-token.json", FIRST_INVOKE)
        .await;
    assert_eq!(status, 401, "{body}");
    step("first invocation answered");
    let (status, body) = function.api("api-sync-bad-token.json").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(runs(&store).await.is_empty(), "no run recorded");
    assert_eq!(sim.counters().connectwise.writes, 0);
    assert_eq!(
        queue.pending() + queue.delivered().len(),
        0,
        "nothing started"
    );

    // Settings through the API, then pinned to the demo month (the sample says "current").
    let (status, body) = function.api("api-settings-put.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agreementType"], "Sophos MSP");
    store
        .put_settings(&demo_settings())
        .await
        .expect("put settings");
    let (status, body) = function.api("api-settings-get.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["month"], MONTH);
    assert_eq!(
        body["products"],
        json!([
            "Sophos_Intercept_X_Advanced",
            "Sophos_Intercept_X_Advanced_XDR"
        ])
    );

    // The webhook: 202 at once, then 409 naming the running cycle. Slow Sophos answers
    // keep the cycle running (holding the lease) while the second request arrives.
    sim.set_latency(
        Api::Sophos,
        Latency {
            fixed_ms: 1000,
            jitter_ms: 0,
        },
    );
    let (status, body) = function.api("api-sync.json").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let run_id = body["runId"].as_str().expect("a runId").to_owned();
    let queued = run(&store, &run_id).await;
    assert_eq!(queued.trigger, "webhook");
    assert_ne!(
        queued.status,
        RunStatus::Partial,
        "the 202 came before the cycle ended"
    );
    let (status, body) = function.api("api-sync.json").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["runId"],
        run_id.as_str(),
        "409 names the holder: {body}"
    );
    sim.set_latency(Api::Sophos, Latency::default());
    step("202 then 409");

    // The queued cycle (continued over as many invocations as it takes) ends.
    assert!(
        queue.wait_idle(CYCLE).await,
        "the cycle did not end within {CYCLE:?}: {} pending, delivered {:#?}",
        queue.pending(),
        queue.delivered()
    );
    step("webhook cycle done");
    let delivered = queue.delivered();
    assert!(!delivered.is_empty());
    for d in &delivered {
        assert_eq!(d.function, FUNCTION);
        assert_eq!(d.payload["sophosCwSync"], "run", "{d:?}");
        assert_eq!(d.payload["runId"], run_id.as_str(), "{d:?}");
        assert!(!d.function_error && d.status == 200, "{d:#?}");
        assert_eq!(d.attempts, 1, "no retry was needed: {d:#?}");
    }
    assert_eq!(
        delivered
            .iter()
            .filter(|d| d.payload["trigger"] == "webhook")
            .count(),
        1,
        "one start, the rest continuations: {delivered:#?}"
    );
    let last = delivered.last().unwrap();
    assert_eq!(last.response["runId"], run_id.as_str());
    assert_eq!(last.response["status"], "partial", "{last:#?}");

    // The run record in DynamoDB.
    let record = run(&store, &run_id).await;
    assert_eq!(
        record.status,
        RunStatus::Partial,
        "the demo has customer errors: {record:#?}"
    );
    assert_eq!(record.month, MONTH);
    assert!(record.finished_at.is_some());
    assert_eq!(run_customer_count(&store, &run_id).await, 14);
    assert_eq!(
        record.report["customerCounts"]["total"], 14,
        "{:#}",
        record.report
    );
    assert_eq!(record.report["writes"], 6, "{:#}", record.report);
    assert_eq!(runs(&store).await.len(), 1);

    // The final ConnectWise state: the demo's result, six writes.
    assert_eq!(
        sim.counters().connectwise.writes,
        6,
        "{:#?}",
        sim.requests()
    );
    assert_eq!(addition_quantity(&sim, 301), 8.0, "Beta updated 5 -> 8");
    assert_eq!(addition_quantity(&sim, 313), 0.0, "Mu zeroed");
    assert_eq!(
        additions_of(&sim, 201),
        [
            ("Sophos_Intercept_X_Advanced".to_owned(), 42.0),
            ("Sophos_Intercept_X_Advanced_XDR".to_owned(), 5.0)
        ],
        "Acme"
    );
    assert_eq!(additions_of(&sim, 213).len(), 1, "Nu");
    let mut identifiers: Vec<String> = sim
        .collection("catalog")
        .iter()
        .map(|c| c["identifier"].as_str().unwrap_or_default().to_owned())
        .collect();
    identifiers.sort();
    assert_eq!(
        identifiers,
        [
            "Sophos_Intercept_X_Advanced",
            "Sophos_Intercept_X_Advanced_XDR"
        ]
    );

    // What the API tells about it.
    let (status, body) = function.api("api-runs.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["runId"], run_id.as_str(), "{body}");
    assert_eq!(body["items"][0]["status"], "partial");
    let (status, body) = function.api("api-run.json").await;
    assert_eq!(status, 404, "a made-up run id: {body}");
    let (status, body) = function.api("api-status.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["customers"].as_array().map(Vec::len),
        Some(14),
        "{body}"
    );
    let (status, body) = function.api("api-review.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["items"].is_array() && body["next"].is_null(), "{body}");
    let (status, body) = function.api("api-review-approve.json").await;
    assert_eq!(status, 404, "a made-up held change id: {body}");
    // The console's sign-in form, through lambda_http: HTML, its one-time cookie in
    // the API Gateway 2.0 `cookies` field, the security headers.
    let page = function.invoke("console-login.json").await;
    assert_eq!(page["statusCode"], 200, "{page}");
    assert_eq!(
        page["headers"]["content-type"], "text/html; charset=utf-8",
        "{page}"
    );
    assert!(
        page["headers"]["content-security-policy"]
            .as_str()
            .unwrap_or("")
            .contains("frame-ancestors 'none'"),
        "{page}"
    );
    let cookies = page["cookies"].as_array().expect("cookies");
    assert!(
        cookies
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("scw_login=")
                && c.as_str().unwrap().contains("Secure")),
        "{page}"
    );
    assert!(
        page["body"].as_str().unwrap().contains("name=\"password\""),
        "{page}"
    );
    let (status, body) = function.api("api-audit.json").await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("audit items");
    // The settings put through the API above are on the trail as the API's change.
    let (audit, changes): (Vec<&Value>, Vec<&Value>) = items.iter().partition(|e| e["runId"] != "");
    assert_eq!(changes.len(), 1, "{body}");
    assert_eq!(
        (&changes[0]["action"], &changes[0]["actor"]),
        (&json!("updateSettings"), &json!("api:token")),
        "{body}"
    );
    // Six writes, and the demo's existing catalog item taken into the store.
    assert_eq!(audit.len(), 7, "{body}");
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["action"] == "adoptCatalogItem")
            .count(),
        1,
        "{body}"
    );
    assert!(audit.iter().all(|e| e["runId"] == run_id.as_str()));

    // Mappings: put, list, delete (no net change for the schedule below).
    let (status, body) = function.api("api-mapping-put.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["companyId"], 110);
    let (status, body) = function.api("api-mappings.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["items"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["companyId"] == 110)),
        "{body}"
    );
    let (status, body) = function.api("api-mapping-delete.json").await;
    assert_eq!((status, &body), (200, &json!({"deleted": true})));
    step("API reads");

    // The schedule: a new cycle with nothing left to write; the same event again is a
    // duplicate delivery. (Under watch the invocation deadline is already past, so the
    // cycle goes one customer per invocation and continues through the queue.)
    sim.clear_requests();
    let summary = function.invoke("schedule.json").await;
    let schedule_run = summary["runId"]
        .as_str()
        .unwrap_or_else(|| panic!("a run summary: {summary}"))
        .to_owned();
    assert_ne!(schedule_run, run_id);
    assert!(
        ["succeeded", "partial", "incomplete"].contains(&summary["status"].as_str().unwrap_or("")),
        "{summary}"
    );
    assert!(queue.wait_idle(CYCLE).await, "the scheduled cycle ended");
    let record = run(&store, &schedule_run).await;
    assert!(
        ["schedule", "continue"].contains(&record.trigger.as_str()),
        "{record:#?}"
    );
    assert!(
        matches!(record.status, RunStatus::Succeeded | RunStatus::Partial),
        "{record:#?}"
    );
    assert_eq!(record.report["writes"], 0, "nothing left to do");
    assert_eq!(record.report["customerCounts"]["total"], 14, "{record:#?}");
    assert_eq!(run_customer_count(&store, &record.run_id).await, 14);
    assert_eq!(sim.counters().connectwise.writes, 0);
    assert_eq!(runs(&store).await.len(), 2);
    let again = function.invoke("schedule.json").await;
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["tick"], "2026-11-29T06:00:00Z");
    assert_eq!(runs(&store).await.len(), 2, "no new run for a duplicate");
    // An EventBridge Scheduler delivery of the next day's tick: a new cycle, which
    // finds nothing to change; its redelivery is a duplicate.
    let scheduler = function.invoke("scheduler.json").await;
    assert!(scheduler["runId"].is_string(), "{scheduler}");
    assert_eq!(scheduler["writes"], 0, "{scheduler}");
    assert_eq!(sim.counters().connectwise.writes, 0);
    assert_eq!(runs(&store).await.len(), 3, "the next tick is a new run");
    let scheduler_again = function.invoke("scheduler.json").await;
    assert_eq!(scheduler_again["status"], "duplicate", "{scheduler_again}");
    assert_eq!(scheduler_again["tick"], "2026-11-30T06:00:00Z");
    assert_eq!(runs(&store).await.len(), 3, "no new run for a duplicate");
    step("schedule");

    // A dry run: 202, recorded as a dry run, nothing written.
    let (status, body) = function.api("api-sync-dry-run.json").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["dryRun"], true);
    let dry_run = body["runId"].as_str().expect("a runId").to_owned();
    assert!(queue.wait_idle(CYCLE).await, "the dry run ended");
    let record = run(&store, &dry_run).await;
    assert!(record.dry_run, "{record:#?}");
    assert!(
        matches!(record.status, RunStatus::Succeeded | RunStatus::Partial),
        "{record:#?}"
    );
    assert_eq!(sim.counters().connectwise.writes, 0);
    step("dry run");

    // The internal run event, as the function sends it itself: a run summary under
    // the event's run id.
    let summary = function.invoke("async-run.json").await;
    let async_run = event("async-run.json")["runId"]
        .as_str()
        .expect("runId")
        .to_owned();
    assert_eq!(summary["runId"], async_run.as_str(), "{summary}");
    assert!(queue.wait_idle(CYCLE).await, "the run ended");
    let record = run(&store, &async_run).await;
    assert!(
        matches!(record.status, RunStatus::Succeeded | RunStatus::Partial),
        "{record:#?}"
    );
    assert_eq!(record.report["writes"], 0, "{record:#?}");
    assert_eq!(sim.counters().connectwise.writes, 0);
    step("run event");

    // Every malformed request is refused with a 4xx, never a 5xx.
    let mut malformed: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("events/malformed"))
        .expect("events/malformed")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    malformed.sort();
    assert!(malformed.len() >= 10, "{malformed:?}");
    for path in &malformed {
        let file = format!("malformed/{}", path.file_name().unwrap().to_string_lossy());
        let (status, body) = function.api(&file).await;
        assert!(
            (400..500).contains(&status),
            "{file}: expected a 4xx, got {status}: {body}"
        );
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{file}: {body}"
        );
    }
    assert_eq!(sim.counters().connectwise.writes, 0);
    assert_eq!(queue.pending(), 0, "no malformed request started anything");
    step("malformed");
    drop(watch);
}
