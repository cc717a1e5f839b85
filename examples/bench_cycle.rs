//! Benchmark: one sync cycle over a generated partner against the simulators,
//! then a second (idempotent) cycle. Reports figures; asserts nothing about speed.
//!
//! `make bench` or `cargo run --release --example bench_cycle -- [tenants] [products] [latency_ms]`

use sophos_cw_sim::{Api, Latency, Sim, generate};
use sophos_cw_sync::cli::build_clients;
use sophos_cw_sync::config::{Environment, Secrets, SecretsSpec, Settings, StoreSpec};
use sophos_cw_sync::http::ApiCounters;
use sophos_cw_sync::store::sqlite::SqliteStore;
use sophos_cw_sync::sync::engine::{Engine, RunOptions};
use std::sync::Arc;
use std::time::Instant;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn settings() -> Settings {
    let mut s: Settings = serde_json::from_value(serde_json::json!({
        "agreementType": "Sophos MSP",
        "catalog": {"type": "Software", "category": "Security", "subcategory": "Endpoint", "unitOfMeasure": "Each"},
        "month": generate::USAGE_MONTH
    }))
    .expect("valid settings");
    let codes = sophos_cw_sync::domain::products::code_table(&s.product_codes);
    s.products = generate::PRODUCTS
        .iter()
        .map(|(c, _)| codes[*c].clone())
        .collect();
    s
}

#[tokio::main]
async fn main() {
    let (tenants, products, latency) = (arg(1, 2000) as usize, arg(2, 3) as usize, arg(3, 0));
    let scenario = generate::generate(tenants, products, 42);
    let sim = Sim::start(scenario.clone()).await.expect("simulators");
    sim.set_latency(
        Api::Connectwise,
        Latency {
            fixed_ms: latency,
            jitter_ms: latency / 2,
        },
    );
    sim.set_latency(
        Api::Sophos,
        Latency {
            fixed_ms: latency,
            jitter_ms: latency / 2,
        },
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).expect("store");
    let secret = serde_json::json!({
        "sophos": {"clientId": scenario.sophos.client_id, "clientSecret": scenario.sophos.client_secret},
        "connectwise": {"site": sim.cw_url(), "companyId": scenario.connectwise.company_id,
            "publicKey": scenario.connectwise.public_key, "privateKey": scenario.connectwise.private_key,
            "clientId": scenario.connectwise.client_id}
    });
    let secrets = Secrets::parse(&secret.to_string(), "bench").expect("secrets");
    let env = Environment {
        store: StoreSpec::Sqlite(dir.path().join("bench.db")),
        secrets: SecretsSpec::File(dir.path().join("unused.json")),
        sophos_id_url: sim.sophos_url(),
        sophos_api_url: sim.sophos_url(),
        settings_file: None,
    };
    let settings = settings();
    println!(
        "tenants {tenants}, products per tenant {products}, simulated latency {latency} ms (+ jitter)"
    );
    for label in ["first cycle (creates)", "second cycle (no changes)"] {
        let counters = Arc::new(ApiCounters::default());
        let (sophos, cw) = build_clients(&env, &secrets, counters.clone())
            .await
            .expect("clients");
        let engine = Engine {
            store: &store,
            sophos: &sophos,
            cw: &cw,
            counters,
            settings: &settings,
        };
        let opts = RunOptions::new(generate::USAGE_MONTH.parse().unwrap(), false, "bench");
        let started = Instant::now();
        let report = engine.run(&opts).await.expect("cycle");
        let secs = started.elapsed().as_secs_f64();
        let calls = report.api_calls.sophos + report.api_calls.connectwise;
        println!(
            "{label:<28} {secs:>7.2} s  status {:?}  customers {}  writes {}  calls sophos {} connectwise {}  ({:.0} calls/s)",
            report.status,
            report.customers.len(),
            report.writes,
            report.api_calls.sophos,
            report.api_calls.connectwise,
            calls as f64 / secs
        );
    }
}
