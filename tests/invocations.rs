//! A cycle too large for one invocation's deadline finishes over several
//! invocations, ending in the same ConnectWise state as one long run, with no
//! duplicate write.

mod support;

use async_trait::async_trait;
use sophos_cw_sim::{Api, Latency, generate};
use sophos_cw_sync::app::{App, Invoker, RunRequest, SecretsCache, StartOutcome};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::store::{RunStatus, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::app::Harness;

/// Records the asynchronous starts instead of running them: the test plays Lambda.
#[derive(Default)]
struct QueueInvoker(Mutex<Vec<RunRequest>>);

#[async_trait]
impl Invoker for QueueInvoker {
    async fn invoke_async(&self, request: &RunRequest) -> Result<(), String> {
        self.0.lock().unwrap().push(request.clone());
        Ok(())
    }
}

fn settings() -> Settings {
    let mut s = support::app::demo_settings();
    s.month = generate::USAGE_MONTH.into();
    // The generator's codes are all in the built-in table.
    let codes = sophos_cw_sync::domain::products::code_table(&s.product_codes);
    s.products = generate::PRODUCTS
        .iter()
        .map(|(c, _)| codes[*c].clone())
        .collect();
    s
}

async fn app_for(h: &Harness, invoker: Arc<QueueInvoker>) -> App {
    h.store.put_settings(&settings()).await.unwrap();
    let env = h.env();
    App {
        store: h.store.clone(),
        secrets: SecretsCache::new(env.secrets.clone(), None, Duration::from_secs(300)),
        env,
        invoker,
        lease_ttl: Duration::from_secs(1200),
        deadline_margin: Duration::ZERO,
    }
}

/// (agreement id, product identifier) -> quantities of active additions.
fn additions_by_key(h: &Harness) -> BTreeMap<(i64, String), Vec<f64>> {
    let mut map: BTreeMap<(i64, String), Vec<f64>> = BTreeMap::new();
    for a in h.additions() {
        if a["cancelledDate"].as_str().is_some_and(|d| !d.is_empty()) {
            continue;
        }
        let key = (
            a["agreementId"].as_i64().unwrap(),
            a["product"]["identifier"].as_str().unwrap().to_owned(),
        );
        map.entry(key)
            .or_default()
            .push(a["quantity"].as_f64().unwrap());
    }
    map
}

fn catalog_identifiers(h: &Harness) -> Vec<String> {
    let mut ids: Vec<String> = h
        .catalog()
        .iter()
        .map(|c| c["identifier"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_cycle_finishes_over_several_invocations_like_one_long_run() {
    let scenario = generate::generate(120, 2, 7);

    // Reference: one long run without a deadline.
    let long = Harness::with_scenario(scenario.clone()).await;
    let long_app = app_for(&long, Arc::new(QueueInvoker::default())).await;
    let request = RunRequest::new("r-long".into(), None, false, "test");
    let report = long_app.run_job(&request, None).await.unwrap();
    assert_eq!(
        report.status,
        RunStatus::Partial,
        "every 50th tenant has no company"
    );
    let long_writes = long.cw_writes();
    assert!(long_writes > 200, "{long_writes} writes");

    // The same cycle, each invocation given a deadline far too short for all of it.
    let h = Harness::with_scenario(scenario).await;
    h.sim.set_latency(
        Api::Connectwise,
        Latency {
            fixed_ms: 3,
            jitter_ms: 0,
        },
    );
    let queue = Arc::new(QueueInvoker::default());
    let app = app_for(&h, queue.clone()).await;
    let StartOutcome::Started { run_id } = app.start_sync(None, false).await.unwrap() else {
        panic!("the lease is free")
    };
    let mut invocations = 0;
    let mut last = None;
    loop {
        // Take the request out before running it: the run pushes its continuation.
        let next = queue.0.lock().unwrap().pop();
        let Some(next) = next else { break };
        invocations += 1;
        assert!(invocations < 500, "the cycle must make progress");
        assert_eq!(next.run_id, run_id, "continuations keep the run id");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(60);
        last = Some(app.run_job(&next, Some(deadline)).await.unwrap());
    }
    let last = last.unwrap();
    assert!(invocations > 2, "needed {invocations} invocations");
    assert_eq!(last.status, RunStatus::Partial);
    assert_eq!(
        last.customers.len(),
        120,
        "every tenant once in the final report"
    );
    let stored = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Partial);
    assert_eq!(stored.report["customers"].as_array().unwrap().len(), 120);

    // Same final state, same number of writes, no duplicates.
    assert_eq!(additions_by_key(&h), additions_by_key(&long));
    assert!(additions_by_key(&h).values().all(|q| q.len() == 1));
    assert_eq!(catalog_identifiers(&h), catalog_identifiers(&long));
    assert_eq!(h.cw_writes(), long_writes);
    assert_eq!(last.writes, long_writes);
    let audit = h.store.list_audit(10_000, Some(&run_id)).await.unwrap();
    assert_eq!(
        audit.len() as u64,
        long_writes,
        "one audit entry per write across invocations"
    );
    let lease_free = h
        .store
        .acquire_lease("r-after", chrono::Utc::now(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        lease_free,
        sophos_cw_sync::store::LeaseOutcome::Acquired,
        "released at the end"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_tick_runs_once_but_a_failed_one_runs_again_on_redelivery() {
    let h = Harness::start().await;
    h.store
        .put_settings(&support::app::demo_settings())
        .await
        .unwrap();
    let good_secret = std::fs::read_to_string(&h.secrets_path).unwrap();
    std::fs::write(
        &h.secrets_path,
        good_secret.replace("sim-sophos-secret", "wrong-secret"),
    )
    .unwrap();
    let env = h.env();
    let app = App {
        store: h.store.clone(),
        // Re-read on every use, so the repaired secret is seen by the retry.
        secrets: SecretsCache::new(env.secrets.clone(), None, Duration::ZERO),
        env,
        invoker: Arc::new(QueueInvoker::default()),
        lease_ttl: Duration::from_secs(1200),
        deadline_margin: Duration::ZERO,
    };
    let tick = "2026-11-29T06:00:00Z";
    let failed = app.on_schedule(tick, None).await;
    assert!(
        matches!(failed, Err(ref e) if !e.is_retryable()),
        "{failed:?}"
    );
    let runs = h.store.list_runs(10, None).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed);

    // Lambda redelivers the same tick after the operator fixed the secret: it runs.
    std::fs::write(&h.secrets_path, good_secret).unwrap();
    let report = app
        .on_schedule(tick, None)
        .await
        .unwrap()
        .expect("the failed tick runs again");
    assert_eq!(report.run_id, runs[0].run_id, "under the same run id");
    assert_eq!(report.status, RunStatus::Partial);
    assert_eq!(h.cw_writes(), 6);

    // A third delivery of the tick, now finished, is a duplicate.
    assert!(app.on_schedule(tick, None).await.unwrap().is_none());
    assert_eq!(h.cw_writes(), 6);
    assert_eq!(h.store.list_runs(10, None).await.unwrap().len(), 1);
    // A new tick is a new run.
    let next = app
        .on_schedule("2026-11-30T06:00:00Z", None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(next.run_id, report.run_id);
    assert_eq!(next.writes, 0);
}
