//! Benchmark: one sync cycle over a generated partner against the simulators, then a
//! second (idempotent) one, on the SQLite store and (with `AWS_ENDPOINT_URL`, as
//! `make bench` sets it to a moto it starts) on DynamoDB. Reports figures; asserts
//! nothing about speed.
//!
//! The simulators run in this process; the sync runs as a child process (the release
//! binary under `/usr/bin/time -v`), so the peak memory and CPU time reported are
//! the sync's alone. Two ways, each on a store of its own: `cli` (`sync --json`,
//! the CLI's path) and `service` (`serve`, then `POST /sync`: the Lambda's path,
//! `App::run_job`, one invocation with no deadline). `BENCH_VIA=cli` or
//! `BENCH_VIA=service` runs one of them; `BENCH_STORE=sqlite` or
//! `BENCH_STORE=dynamodb` one store.
//!
//! `make bench` or `cargo run --release --example bench_cycle -- [tenants] [products]
//! [latency_ms]`; `JITTER_MS` adds jitter (default 0), `CONCURRENCY` sets the
//! `connectwiseConcurrency` setting (default 4). Build the binary first
//! (`cargo build --release --bin sophos-cw-sync`; `make bench` does).

use serde_json::{Value, json};
use sophos_cw_sim::{Api, Latency, Sim, generate};
use sophos_cw_sync::store::dynamodb::DynamoStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn settings(concurrency: u64) -> Value {
    let mut s = json!({
        "agreementType": "Sophos MSP",
        "catalog": {"type": "Software", "category": "Security", "subcategory": "Endpoint", "unitOfMeasure": "Each"},
        "month": generate::USAGE_MONTH,
        "connectwiseConcurrency": concurrency,
    });
    // The generator bills codes of the built-in table (product-codes.md).
    let table = sophos_cw_sync::domain::products::code_table(&Default::default());
    let products: Vec<&String> = generate::PRODUCTS.iter().map(|(c, _)| &table[*c]).collect();
    s["products"] = json!(products);
    s
}

/// One run's figures.
struct Figures {
    wall_s: f64,
    status: String,
    customers: usize,
    sophos_calls: u64,
    cw_calls: u64,
    writes: u64,
    max_in_flight: u64,
    /// ConnectWise 429s the client met, and the lowest concurrency it fell to
    /// (from the report; "-" when never throttled).
    throttled: u64,
    lowest_concurrency: Option<u64>,
    peak_rss_mb: f64,
    /// The sync process's CPU time (user + system).
    cpu_s: f64,
    /// How long ConnectWise requests took inside the simulator, on average
    /// (its latency plus its own work).
    sim_ms: f64,
}

/// Runs `sync --json` as a child with `envs` under `/usr/bin/time -v` and reads its
/// report; returns the wall time, the sync's peak RSS in MB (None without
/// `/usr/bin/time`), its CPU seconds and the report.
///
/// `/usr/bin/time` forks the sync from its own small process. A child forked
/// straight from this process would not do: Linux keeps the high-water RSS across
/// `exec`, so its peak would include the simulators' memory (this process's).
fn run_sync(
    binary: &Path,
    envs: &[(String, String)],
    out: &Path,
) -> (f64, Option<f64>, f64, Value) {
    let stdout = std::fs::File::create(out).expect("report file");
    let rusage_file = out.with_extension("time");
    let mut cmd = timed(binary, &rusage_file);
    let started = Instant::now();
    let status = cmd
        .args(["sync", "--json"])
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let wall = started.elapsed().as_secs_f64();
    let (peak_mb, cpu_s) = rusage(&rusage_file);
    let text = std::fs::read_to_string(out).expect("read report");
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the sync printed no JSON report ({status}): {e}"));
    (wall, peak_mb, cpu_s, report)
}

/// Runs one cycle the way the Lambda does (`App::run_job`: results stored as
/// customers finish, none kept in the report): `serve` as a child under
/// `/usr/bin/time -v`, `POST /sync` with the webhook token, `GET /runs/{id}`
/// until the run has ended, then SIGTERM (serve waits for its cycles and exits).
/// Returns the wall time of the run, the serve process's peak RSS and CPU
/// seconds, and the run record's summary with its status.
async fn run_service(
    binary: &Path,
    envs: &[(String, String)],
    out: &Path,
) -> (f64, Option<f64>, f64, Value) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rusage_file = out.with_extension("time");
    let mut cmd = timed(binary, &rusage_file);
    let mut child = cmd
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let auth = format!("Bearer {SERVICE_TOKEN}");
    // Polling is fine here: this is a benchmark reporting figures, not a test.
    let tick = std::time::Duration::from_millis(200);
    let started = Instant::now();
    let run_id = loop {
        let answer = http
            .post(format!("{base}/sync"))
            .header("authorization", &auth)
            .json(&json!({}))
            .send()
            .await;
        if let Ok(answer) = answer {
            let body: Value = answer.json().await.expect("POST /sync answers JSON");
            break body["runId"].as_str().expect("a run id").to_owned();
        }
        assert!(started.elapsed().as_secs() < 60, "serve did not start");
        tokio::time::sleep(tick).await;
    };
    let record = loop {
        tokio::time::sleep(tick).await;
        let record: Value = http
            .get(format!("{base}/runs/{run_id}?limit=1"))
            .header("authorization", &auth)
            .send()
            .await
            .expect("GET /runs/{id}")
            .json()
            .await
            .expect("the run record");
        if !matches!(record["status"].as_str(), Some("running" | "incomplete")) {
            break record;
        }
    };
    let wall = started.elapsed().as_secs_f64();
    // The serve process: /usr/bin/time's child, or the child itself.
    let serve_pid = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .ok()
        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(child.id() as i32);
    // SAFETY: kill(2) with a pid we started and a plain signal number.
    unsafe { libc::kill(serve_pid, libc::SIGTERM) };
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let (peak_mb, cpu_s) = rusage(&rusage_file);
    let mut report = record["report"].clone();
    report["status"] = record["status"].clone();
    (wall, peak_mb, cpu_s, report)
}

/// The webhook token the bench gives the service.
const SERVICE_TOKEN: &str = "bench-webhook-token";

/// `binary` under `/usr/bin/time -v -o rusage_file` (or alone without GNU time).
fn timed(binary: &Path, rusage_file: &Path) -> Command {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Command::new(binary);
    }
    let mut c = Command::new(time);
    c.arg("-v").arg("-o").arg(rusage_file).arg(binary);
    c
}

/// Peak RSS (MB) and CPU seconds (user + system) from GNU time's `-v` report.
fn rusage(file: &Path) -> (Option<f64>, f64) {
    let time_report = std::fs::read_to_string(file).unwrap_or_default();
    let field = |name: &str| {
        time_report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // GNU time reports kbytes.
    let peak_mb = field("Maximum resident set size (kbytes):").map(|kb| kb / 1024.0);
    let cpu_s = field("User time (seconds):").unwrap_or(0.0)
        + field("System time (seconds):").unwrap_or(0.0);
    (peak_mb, cpu_s)
}

fn figures(sim: &Sim, wall_s: f64, peak_rss_mb: f64, report: &Value) -> Figures {
    Figures {
        wall_s,
        status: report["status"].as_str().unwrap_or("?").to_owned(),
        // The CLI's report lists them; the service's run record counts them.
        customers: report["customers"].as_array().map_or_else(
            || report["customerCounts"]["total"].as_u64().unwrap_or(0) as usize,
            Vec::len,
        ),
        sophos_calls: report["apiCalls"]["sophos"].as_u64().unwrap_or(0),
        cw_calls: report["apiCalls"]["connectwise"].as_u64().unwrap_or(0),
        writes: report["writes"].as_u64().unwrap_or(0),
        max_in_flight: sim.counters().connectwise.max_in_flight,
        throttled: report["throttled"].as_u64().unwrap_or(0),
        lowest_concurrency: report["lowestConcurrency"].as_u64(),
        sim_ms: {
            let cw: Vec<u64> = sim
                .requests()
                .iter()
                .filter(|r| r.api == Api::Connectwise)
                .map(|r| r.duration_ms)
                .collect();
            cw.iter().sum::<u64>() as f64 / cw.len().max(1) as f64
        },
        peak_rss_mb,
        cpu_s: 0.0,
    }
}

fn print_row(store: &str, via: &str, label: &str, f: &Figures, latency_ms: f64, concurrency: u64) {
    let calls = f.sophos_calls + f.cw_calls;
    let bound = 1.25 * calls as f64 * latency_ms / 1000.0 / concurrency as f64;
    let within = if f.wall_s <= bound { "yes" } else { "NO" };
    println!(
        "| {store:<8} | {via:<7} | {label:<6} | {:>8.2} | {:>6.2} | {:>6} | {:>6} | {:>6} | {:>7} | {:>3} | {:>4} / {:>2} | {:>5.1} | {:>8.2} ({within}) | {:>7.1} ({}) | {} |",
        f.wall_s,
        f.cpu_s,
        f.sophos_calls,
        f.cw_calls,
        f.writes,
        f.customers,
        f.max_in_flight,
        f.throttled,
        f.lowest_concurrency
            .map_or_else(|| "-".to_owned(), |l| l.to_string()),
        f.sim_ms,
        bound,
        f.peak_rss_mb,
        if f.peak_rss_mb < 128.0 {
            "< 128"
        } else {
            "NOT < 128"
        },
        f.status,
    );
}

/// The sync binary: the release build, or `BENCH_SYNC_BIN` (e.g. a wrapper that runs
/// it under a heap profiler).
fn binary() -> PathBuf {
    let path = std::env::var_os("BENCH_SYNC_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/sophos-cw-sync"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bin sophos-cw-sync` (make bench does)",
        path.display()
    );
    path
}

#[tokio::main]
async fn main() {
    let (tenants, products, latency) = (arg(1, 5000) as usize, arg(2, 3) as usize, arg(3, 20));
    let jitter = env_number("JITTER_MS", 0);
    let concurrency = env_number("CONCURRENCY", 4);
    let binary = binary();
    let scenario = generate::generate(tenants, products, 42);
    let sim = Sim::start(scenario.clone()).await.expect("simulators");
    for api in [Api::Connectwise, Api::Sophos] {
        sim.set_latency(
            api,
            Latency {
                fixed_ms: latency,
                jitter_ms: jitter,
            },
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = json!({
        "sophos": {"clientId": scenario.sophos.client_id, "clientSecret": scenario.sophos.client_secret},
        "connectwise": {"site": sim.cw_url(), "companyId": scenario.connectwise.company_id,
            "publicKey": scenario.connectwise.public_key, "privateKey": scenario.connectwise.private_key,
            "clientId": scenario.connectwise.client_id},
        "webhookToken": SERVICE_TOKEN
    });
    let secrets_path = dir.path().join("secrets.json");
    std::fs::write(&secrets_path, secret.to_string()).expect("secrets file");
    let settings_path = dir.path().join("settings.json");
    std::fs::write(&settings_path, settings(concurrency).to_string()).expect("settings file");
    let common = vec![
        (
            "SYNC_SECRETS".to_owned(),
            format!("file:{}", secrets_path.display()),
        ),
        (
            "SYNC_SETTINGS".to_owned(),
            settings_path.display().to_string(),
        ),
        ("SOPHOS_ID_URL".to_owned(), sim.sophos_url()),
        ("SOPHOS_API_URL".to_owned(), sim.sophos_url()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];

    // Each way of running gets its own store, so both start from nothing.
    let vias: Vec<&str> = match std::env::var("BENCH_VIA").ok().as_deref() {
        Some("cli") => vec!["cli"],
        Some("service") => vec!["service"],
        _ => vec!["cli", "service"],
    };
    // `BENCH_STORE=sqlite` or `BENCH_STORE=dynamodb` runs one store.
    let only_store = std::env::var("BENCH_STORE").ok().filter(|s| !s.is_empty());
    let wants = |store: &str| only_store.as_deref().is_none_or(|only| only == store);
    let mut stores: Vec<(&str, &str, String)> = vias
        .iter()
        .filter(|_| wants("sqlite"))
        .map(|via| {
            let file = dir.path().join(format!("bench-{via}.db"));
            ("sqlite", *via, format!("sqlite:{}", file.display()))
        })
        .collect();
    let aws = std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty());
    if wants("dynamodb") && aws {
        let conf = aws_config::load_from_env().await;
        for via in &vias {
            let table = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), &table);
            store.create_table_if_missing().await.expect("create table");
            store.enable_ttl().await.expect("enable ttl");
            stores.push(("dynamodb", *via, format!("dynamodb:{table}")));
        }
    } else if wants("dynamodb") {
        println!("(AWS_ENDPOINT_URL is not set: DynamoDB is skipped; `make bench` starts moto)");
    }

    let mean_latency = latency as f64 + jitter as f64 / 2.0;
    println!(
        "tenants {tenants}, products per tenant {products}, latency {latency} ms + jitter 0..{jitter} ms, \
         connectwiseConcurrency {concurrency}"
    );
    println!(
        "bound = 1.25 x calls x {mean_latency} ms / {concurrency}; peak RSS of the sync process\n"
    );
    println!(
        "| store    | via     | run    | wall (s) | sync CPU (s) | sophos calls | cw calls | cw writes | customers | max cw in flight | throttled / lowest concurrency | cw ms in sim | bound (s) | peak RSS (MB) | status |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, via, spec) in &stores {
        sim.load(scenario.clone());
        for api in [Api::Connectwise, Api::Sophos] {
            sim.set_latency(
                api,
                Latency {
                    fixed_ms: latency,
                    jitter_ms: jitter,
                },
            );
        }
        let mut envs = common.clone();
        envs.push(("SYNC_STORE".to_owned(), spec.clone()));
        for label in ["first", "second"] {
            sim.clear_requests();
            let out = dir.path().join(format!("{name}-{via}-{label}.json"));
            let (wall, peak, cpu, report) = if *via == "service" {
                run_service(&binary, &envs, &out).await
            } else {
                let (binary, envs, out2) = (binary.clone(), envs.clone(), out.clone());
                tokio::task::spawn_blocking(move || run_sync(&binary, &envs, &out2))
                    .await
                    .expect("sync child")
            };
            let mut f = figures(&sim, wall, peak.unwrap_or(f64::NAN), &report);
            f.cpu_s = cpu;
            print_row(name, via, label, &f, mean_latency, concurrency);
        }
    }
}
