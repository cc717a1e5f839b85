//! A cycle too large for one invocation's deadline finishes over several
//! invocations, ending in the same ConnectWise state as one long run, with no
//! duplicate write.

mod support;

use sophos_cw_sim::{Api, Latency, Scenario, generate};
use sophos_cw_sync::app::{App, RunRequest, StartOutcome};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::store::dynamodb::DynamoStore;
use sophos_cw_sync::store::{MAX_PAGE, RunStatus, Store};
use sophos_cw_sync::sync::report::CustomerReport;
use sophos_cw_sync::web::router;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::app::{Harness, QueueInvoker};
use support::console::{Client, test_config};

fn settings() -> Settings {
    support::app::generated_settings()
}

async fn app_for(h: &Harness, invoker: Arc<QueueInvoker>) -> App {
    app_on(h, h.store.clone(), invoker).await
}

/// The app over `store` (e.g. DynamoDB on moto) with the harness's simulators.
async fn app_on(h: &Harness, store: Arc<dyn Store>, invoker: Arc<QueueInvoker>) -> App {
    store.put_settings(&settings()).await.unwrap();
    let env = h.lambda_env(sophos_cw_sync::config::env::DEFAULT_SECRETS_REFRESH);
    App::new(env, store, invoker, None)
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

/// A run's stored customer results, read a page at a time.
async fn run_customers(store: &dyn Store, run_id: &str) -> Vec<CustomerReport> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_run_customers(run_id, MAX_PAGE, after.as_deref())
            .await
            .unwrap();
        out.extend(
            page.items
                .into_iter()
                .map(|c| serde_json::from_value::<CustomerReport>(c.report).unwrap()),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// How many customers of a run are stored, counted from their keys only.
async fn stored_tenants(store: &dyn Store, run_id: &str) -> usize {
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_run_customer_ids(run_id, MAX_PAGE, after.as_deref())
            .await
            .unwrap();
        count += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return count,
        }
    }
}

/// What ConnectWise must end with for a generated scenario, from its usage lines:
/// tenant `i` (1-based) has agreement 200000+i unless it is every 50th (no
/// company); one addition per product with the month's summed quantity.
fn expected_additions(scenario: &Scenario) -> BTreeMap<(i64, String), Vec<f64>> {
    let codes = sophos_cw_sync::domain::products::code_table(&settings().product_codes);
    let agreement_of: BTreeMap<&str, i64> = scenario
        .sophos
        .tenants
        .iter()
        .enumerate()
        .map(|(k, t)| (t["id"].as_str().unwrap(), k as i64 + 1))
        .filter(|(_, i)| i % 50 != 0)
        .map(|(id, i)| (id, 200_000 + i))
        .collect();
    let mut sums: BTreeMap<(i64, String), f64> = BTreeMap::new();
    for line in &scenario.sophos.usage[generate::USAGE_MONTH] {
        let Some(agreement) = agreement_of.get(line["accountId"].as_str().unwrap()) else {
            continue;
        };
        let identifier = codes[line["productCode"].as_str().unwrap()].clone();
        *sums.entry((*agreement, identifier)).or_default() +=
            line["billableQuantity"].as_f64().unwrap();
    }
    sums.into_iter().map(|(k, q)| (k, vec![q])).collect()
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
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
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
        assert_eq!(
            next.started_by.as_deref(),
            Some("test"),
            "and who started it"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_millis(60);
        last = Some(app.run_job(&next, Some(deadline)).await.unwrap());
    }
    let last = last.unwrap();
    assert!(invocations > 2, "needed {invocations} invocations");
    assert_eq!(last.status, RunStatus::Partial);
    assert_eq!(
        last.customer_counts.total, 120,
        "every tenant counted once across invocations"
    );
    assert!(
        last.customers.is_empty(),
        "the service keeps results in the store"
    );
    let stored = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Partial);
    assert_eq!(stored.started_by.as_deref(), Some("test"));
    assert_eq!(stored.report["customerCounts"]["total"], 120);
    let customers = run_customers(h.store.as_ref(), &run_id).await;
    assert_eq!(
        customers.len(),
        120,
        "every tenant once in the stored results"
    );

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
    let app = App::new(
        // Secrets re-read on every use, so the repaired secret is seen by the retry.
        h.lambda_env(Duration::ZERO),
        h.store.clone(),
        Arc::new(QueueInvoker::default()),
        None,
    );
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

/// The failing case: a run over more than 2,000 customers, in Lambda (short
/// invocations continuing each other) on DynamoDB (moto, which enforces the 400 KB
/// item limit). The run is recorded whole, customer by customer; ConnectWise ends
/// with exactly the usage, one addition each.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_over_2000_customers_on_dynamodb_is_recorded_whole_across_invocations() {
    let tenants = 2_100;
    let scenario = generate::generate(tenants, 1, 11);
    let expected = expected_additions(&scenario);
    let h = Harness::with_scenario(scenario).await;
    let conf = support::moto::aws_config().await;
    let dynamo = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&conf),
        support::moto::unique_name("invocations-"),
    );
    dynamo.create_table_if_missing().await.unwrap();
    dynamo.enable_ttl().await.unwrap();
    let dynamo = Arc::new(dynamo);
    let store: Arc<dyn Store> = dynamo.clone();
    let queue = Arc::new(QueueInvoker::default());
    let app = Arc::new(app_on(&h, store.clone(), queue.clone()).await);
    let mut console = Client::new(router(app.clone(), test_config()));
    let mut checked = 0;
    console.sign_in().await;
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
        panic!("the lease is free")
    };
    let mut invocations = 0;
    let mut last = None;
    loop {
        let next = queue.0.lock().unwrap().pop();
        let Some(next) = next else { break };
        invocations += 1;
        assert!(invocations < 10, "the cycle must make progress");
        // The first invocation is out of time at once (it syncs one customer), the
        // next two get a few seconds, the last runs to the end: several invocations
        // whatever the machine's speed, each re-reading a growing stored part.
        let now = tokio::time::Instant::now();
        let deadline = match invocations {
            1 => Some(now),
            2 | 3 => Some(now + Duration::from_secs(3)),
            _ => None,
        };
        let report = app.run_job(&next, deadline).await.unwrap();
        if report.status == RunStatus::Incomplete {
            // Between invocations, the summary counts exactly the stored customers
            // and the run page's progress says so, from that one record.
            let stored = stored_tenants(store.as_ref(), &run_id).await;
            let record = store.get_run(&run_id).await.unwrap().unwrap();
            assert_eq!(
                record.report["customerCounts"]["total"], stored,
                "{invocations}"
            );
            let progress = console
                .get(&format!("/console/runs/{run_id}/progress"))
                .await;
            assert!(
                progress
                    .body
                    .contains(&format!("<span id=\"progress-finished\">{stored}</span>")),
                "{stored} finished: {}",
                progress.body
            );
            checked += 1;
        }
        last = Some(report);
    }
    let last = last.unwrap();
    assert!(invocations >= 2, "needed {invocations} invocations");
    assert!(
        checked >= 1,
        "the first invocation, out of time at once, is incomplete"
    );
    assert_eq!(last.status, RunStatus::Partial, "every 50th has no company");
    assert_eq!(
        dynamo.reads().run_customers(),
        0,
        "no invocation (nor the progress poll) read a stored result back: the counts \
         were carried and the done set read as keys"
    );

    // Recorded whole: the summary's counts and every customer, read back in pages.
    let stored = store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Partial);
    let counts = &stored.report["customerCounts"];
    assert_eq!(counts["total"], tenants, "{counts}");
    assert_eq!(counts["unmapped"], tenants / 50, "{counts}");
    assert!(stored.report.get("customers").is_none());
    let customers = run_customers(store.as_ref(), &run_id).await;
    let ids: std::collections::BTreeSet<&str> =
        customers.iter().map(|c| c.tenant_id.as_str()).collect();
    assert_eq!(customers.len(), tenants, "every customer recorded");
    assert_eq!(ids.len(), tenants, "each once");
    let statuses = store.list_customer_statuses(MAX_PAGE, None).await.unwrap();
    assert_eq!(statuses.items.len(), MAX_PAGE, "statuses page too");
    assert!(statuses.next.is_some());

    // ConnectWise: exactly the usage, one active addition per product, no duplicate.
    let actual = additions_by_key(&h);
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
    assert_eq!(last.writes, h.cw_writes(), "every write counted once");
    let audit = store.list_audit(100_000, Some(&run_id)).await.unwrap();
    assert_eq!(
        audit.len() as u64,
        h.cw_writes(),
        "one audit entry per write"
    );
}

/// A summary that does not count every stored customer (one written before counts
/// were carried) is not trusted: the resumed invocation counts the stored results
/// again, and the run ends counting each customer once.
#[tokio::test(flavor = "multi_thread")]
async fn a_summary_that_misses_stored_customers_is_counted_again_from_them() {
    let h = Harness::with_scenario(generate::generate(60, 1, 5)).await;
    let sqlite = Arc::new(sophos_cw_sync::store::sqlite::SqliteStore::open_in_memory().unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let queue = Arc::new(QueueInvoker::default());
    let app = app_on(&h, store.clone(), queue.clone()).await;
    let StartOutcome::Started { run_id } = app.start_sync(None, false, "test").await.unwrap()
    else {
        panic!("the lease is free")
    };
    let first = queue.0.lock().unwrap().pop().unwrap();
    let now = tokio::time::Instant::now();
    let report = app.run_job(&first, Some(now)).await.unwrap();
    assert_eq!(report.status, RunStatus::Incomplete);
    let stored = stored_tenants(store.as_ref(), &run_id).await;
    assert!(stored >= 1);
    // The summary as an older version wrote it: no counts.
    let mut record = store.get_run(&run_id).await.unwrap().unwrap();
    record
        .report
        .as_object_mut()
        .unwrap()
        .remove("customerCounts");
    store.put_run(&record).await.unwrap();
    assert_eq!(sqlite.reads().run_customers(), 0);

    let next = queue.0.lock().unwrap().pop().unwrap();
    let last = app.run_job(&next, None).await.unwrap();
    assert_eq!(last.customer_counts.total, 60, "each customer counted once");
    assert_eq!(
        sqlite.reads().run_customers(),
        stored as u64,
        "the stored results were read back, once each"
    );
}
