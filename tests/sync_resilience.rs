//! Resilience of the sync cycle against the simulators: retries, POSTs that are
//! never repeated, writes whose answer was lost, crashes between writes, the
//! one-cycle-at-a-time lease, ConnectWise error codes, and secrets kept out of
//! every output. Assertions are on the simulator's final state and request log.

mod support;

use base64::Engine as _;
use chrono::Utc;
use serde_json::Value;
use sophos_cw_sim::{Api, FaultKind, Latency, LoggedRequest};
use sophos_cw_sync::config::{Settings, ZeroUsage};
use sophos_cw_sync::http::HttpPolicy;
use sophos_cw_sync::store::{LeaseOutcome, RunStatus, Store};
use sophos_cw_sync::sync::engine::CycleError;
use sophos_cw_sync::sync::report::{ErrorCode, RunReport};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::app::{Harness, customer, demo_settings, settings_with, tenant};
use support::sim_log::{cw_fault, cw_log, quick_policy};

/// Catalog item id of Sophos_Intercept_X_Advanced in the demo scenario.
const IXA: i64 = 901;
const IXA_ID: &str = "Sophos_Intercept_X_Advanced";
const XDR_ID: &str = "Sophos_Intercept_X_Advanced_XDR";

// ------------------------------------------------------------------ helpers

fn qty(v: &Value) -> f64 {
    v["quantity"].as_f64().unwrap()
}

fn active(additions: Vec<Value>) -> Vec<Value> {
    additions
        .into_iter()
        .filter(|a| a["cancelledDate"].as_str().is_none_or(str::is_empty))
        .collect()
}

fn codes_of(c: &Value) -> Vec<String> {
    c["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

fn codes(report: &RunReport, n: u32) -> Vec<String> {
    codes_of(&customer(report, &tenant(n)))
}

/// The action reported for `identifier` on tenant `n`.
fn action(report: &RunReport, n: u32, identifier: &str) -> String {
    let c = customer(report, &tenant(n));
    let p = c["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == identifier)
        .unwrap_or_else(|| panic!("{identifier} in {c}"))
        .clone();
    p["action"].as_str().unwrap().to_owned()
}

/// ConnectWise writes (non-GET) since the last clear, in the order received.
fn cw_write_log(h: &Harness) -> Vec<LoggedRequest> {
    cw_log(h)
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect()
}

fn requests_to(h: &Harness, method: &str, path_contains: &str) -> Vec<LoggedRequest> {
    cw_log(h)
        .into_iter()
        .filter(|r| r.method == method && r.path.contains(path_contains))
        .collect()
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The one request that got `status`, and proof that the same request was tried
/// again later on the same path and succeeded.
fn assert_retried_after(
    h: &Harness,
    method: &str,
    path_contains: &str,
    status: u16,
) -> (LoggedRequest, LoggedRequest) {
    let log = cw_log(h);
    let failed: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_contains) && r.status == status)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one {status} on {method} {path_contains}: {log:#?}"
    );
    let failed = failed[0].clone();
    assert!(
        failed.fault.is_some(),
        "the {status} was the injected fault: {failed:?}"
    );
    let retry = log
        .iter()
        .find(|r| r.seq > failed.seq && r.method == method && r.path == failed.path)
        .unwrap_or_else(|| panic!("no retry of {failed:?}: {log:#?}"))
        .clone();
    assert!(is_success(retry.status), "the retry succeeded: {retry:?}");
    let same_path = log
        .iter()
        .filter(|r| r.method == method && r.path == failed.path)
        .count();
    assert_eq!(
        same_path, 2,
        "one failure and one successful retry on {}",
        failed.path
    );
    (failed, retry)
}

fn xdr_catalog_id(h: &Harness) -> i64 {
    let xdr: Vec<Value> = h
        .catalog()
        .into_iter()
        .filter(|c| c["identifier"] == XDR_ID)
        .collect();
    assert_eq!(xdr.len(), 1, "one XDR catalog item: {:?}", h.catalog());
    xdr[0]["id"].as_i64().unwrap()
}

/// Exactly one catalog item per identifier, exactly one active addition per
/// (agreement, product) — except Lambda's two pre-existing duplicates, which the
/// sync must leave alone.
fn assert_no_duplicates(h: &Harness) {
    let catalog = h.catalog();
    for identifier in [IXA_ID, XDR_ID] {
        let n = catalog
            .iter()
            .filter(|c| c["identifier"] == identifier)
            .count();
        assert_eq!(n, 1, "catalog items of {identifier}: {catalog:#?}");
    }
    assert_eq!(catalog.len(), 2, "{catalog:#?}");
    let mut per_key: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for a in active(h.additions()) {
        let key = (
            a["agreementId"].as_i64().unwrap(),
            a["product"]["id"].as_i64().unwrap(),
        );
        *per_key.entry(key).or_default() += 1;
    }
    for (key, n) in &per_key {
        let expected = if *key == (211, IXA) { 2 } else { 1 };
        assert_eq!(
            *n,
            expected,
            "active additions of (agreement, product) {key:?}: {:#?}",
            h.additions()
        );
    }
}

/// The final ConnectWise state of a normal demo run.
fn assert_demo_result(h: &Harness) {
    assert_no_duplicates(h);
    let xdr = xdr_catalog_id(h);
    let acme = active(h.additions_of(201));
    assert_eq!(acme.len(), 2, "{acme:#?}");
    let acme_ixa = acme
        .iter()
        .find(|a| a["product"]["id"] == IXA)
        .expect("Acme IXA");
    assert_eq!(qty(acme_ixa), 42.0);
    let acme_xdr = acme
        .iter()
        .find(|a| a["product"]["id"] == xdr)
        .expect("Acme XDR");
    assert_eq!(qty(acme_xdr), 5.0);
    let beta = h.additions_of(202);
    assert_eq!(beta.len(), 1);
    assert_eq!((beta[0]["id"].as_i64(), qty(&beta[0])), (Some(301), 8.0));
    let mu = h.additions_of(212);
    assert_eq!(mu.len(), 1);
    assert_eq!((mu[0]["id"].as_i64(), qty(&mu[0])), (Some(313), 0.0));
    let nu = active(h.additions_of(213));
    assert_eq!(nu.len(), 1);
    assert_eq!(
        (nu[0]["product"]["id"].as_i64(), qty(&nu[0])),
        (Some(IXA), 1.0)
    );
    let lambda = h.additions_of(211);
    assert_eq!(
        lambda.iter().map(qty).collect::<Vec<_>>(),
        [7.0, 7.0],
        "Lambda untouched"
    );
    for untouched in [203, 204, 205, 206, 207, 209, 210] {
        assert!(
            h.additions_of(untouched).is_empty(),
            "agreement {untouched}"
        );
    }
}

/// Every error in the report (run-level and per customer) carries its advice.
fn assert_advice_everywhere(report: &RunReport) {
    let all = report
        .errors
        .iter()
        .chain(report.customers.iter().flat_map(|c| c.errors.iter()));
    for e in all {
        assert!(!e.advice.trim().is_empty(), "{e:?}");
        assert_eq!(e.advice, e.expected_advice());
    }
}

// -------------------------------------------------------------- 1. retries

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_and_server_error_on_idempotent_requests_are_retried() {
    let h = Harness::start().await;
    h.sim.add_fault(cw_fault(
        "GET",
        "/additions",
        FaultKind::RateLimit { retry_after: 1 },
    ));
    h.sim.add_fault(cw_fault(
        "PATCH",
        "/additions/",
        FaultKind::Status { status: 500 },
    ));

    let started = Instant::now();
    let report = h.run(&demo_settings()).await;
    let elapsed = started.elapsed();

    let (limited, _) = assert_retried_after(&h, "GET", "/additions", 429);
    assert!(
        limited.fault.as_deref().unwrap().contains("RateLimit"),
        "{limited:?}"
    );
    assert_retried_after(&h, "PATCH", "/additions/", 500);
    // The retry of the 429 waited for its Retry-After (1 s); the whole cycle
    // without faults takes far less, so it cannot have been retried at once.
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried before Retry-After: {elapsed:?}"
    );

    // Nothing was lost or doubled by the retries.
    assert_demo_result(&h);
    assert_eq!(report.writes, 6);
    assert_eq!(
        h.cw_writes(),
        7,
        "6 writes plus the one PATCH attempt that got a 500"
    );
    assert_eq!(action(&report, 2, IXA_ID), "update");
    assert_eq!(action(&report, 12, IXA_ID), "zero");
    assert_eq!(codes(&report, 2), ["PRODUCT_UNMAPPED"]);
    for n in [1, 12, 13] {
        assert!(
            codes(&report, n).is_empty(),
            "tenant {n}: {:?}",
            codes(&report, n)
        );
    }
}

// ------------------------------- 2. a lost create is read back, not repeated

/// The default policy with short backoff waits (the retries stay the same).
fn quick_backoff() -> HttpPolicy {
    quick_policy(HttpPolicy::default().timeout)
}

/// A short timeout, for a hang that must outlast it (the simulator drops a hung
/// request when the client gives up, so nothing waits for the hang to end).
fn impatient_policy() -> HttpPolicy {
    quick_policy(Duration::from_secs(1))
}

/// The requests on `path` (agreement additions) in order, as "METHOD status".
fn on_path(h: &Harness, path: &str) -> Vec<String> {
    cw_log(h)
        .into_iter()
        .filter(|r| r.path.ends_with(path))
        .map(|r| format!("{} {}", r.method, r.status))
        .collect()
}

/// Each attempt the simulator answered is counted in the report's API calls.
fn assert_calls_counted(h: &Harness, report: &RunReport) {
    assert_eq!(
        report.api_calls.connectwise,
        cw_log(h).len() as u64,
        "{:#?}",
        cw_log(h)
    );
}

/// A second run finds everything in step: no write at all.
async fn assert_second_run_writes_nothing(h: &Harness, policy: HttpPolicy) -> RunReport {
    h.sim.clear_requests();
    let again = h
        .run_with_policy(&demo_settings(), h.options(false), policy)
        .await
        .expect("second run");
    assert_eq!(
        (again.writes, h.cw_writes()),
        (0, 0),
        "{:#?}",
        cw_write_log(h)
    );
    for n in [1, 2, 12, 13] {
        assert_eq!(
            customer(&again, &tenant(n))["status"],
            if n == 2 { "error" } else { "synced" }
        );
    }
    assert_demo_result(h);
    again
}

/// A create that did not land (a 500, or a hang past the client's timeout) is
/// read back, found missing and sent again in the same run: one addition.
/// `lost_status` is what the simulator logged for the lost POST (499: the client
/// gave up).
async fn assert_missing_create_is_sent_again(
    kind: FaultKind,
    lost_status: u16,
    policy: HttpPolicy,
) {
    let h = Harness::start().await;
    let nu_path = "/agreements/213/additions";
    h.sim.add_fault(cw_fault("POST", nu_path, kind));

    let report = h
        .run_with_policy(&demo_settings(), h.options(false), policy.clone())
        .await
        .expect("cycle runs");
    // Read the additions (plan), POST (lost), read back (none), POST again.
    let lost = format!("POST {lost_status}");
    assert_eq!(
        on_path(&h, nu_path),
        ["GET 200", lost.as_str(), "GET 200", "POST 201"]
    );
    let nu = active(h.additions_of(213));
    assert_eq!(nu.len(), 1, "exactly one addition: {nu:#?}");
    assert_eq!(
        (nu[0]["product"]["id"].as_i64(), qty(&nu[0])),
        (Some(IXA), 1.0)
    );
    let c = customer(&report, &tenant(13));
    assert_eq!(c["status"], "synced", "{c}");
    assert!(codes_of(&c).is_empty(), "{c}");
    assert_eq!(action(&report, 13, IXA_ID), "create");
    assert_eq!(c["products"][0]["additionId"], nu[0]["id"]);
    // The POST that did not land is an API call, not a write.
    assert_eq!(report.writes, 6);
    assert_eq!(h.cw_writes(), 7, "{:#?}", cw_write_log(&h));
    assert_calls_counted(&h, &report);
    let trail = audit_quantities(&h, &report.run_id).await;
    let nu_id = nu[0]["id"].as_i64();
    assert_eq!(
        trail.iter().filter(|t| t.1 == nu_id).collect::<Vec<_>>(),
        [&("createAddition".to_owned(), nu_id, None, Some(1.0))]
    );
    assert_demo_result(&h);
    assert_second_run_writes_nothing(&h, policy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_behind_a_500_is_read_back_and_sent_again_in_the_same_run() {
    assert_missing_create_is_sent_again(
        FaultKind::Status { status: 500 },
        500,
        HttpPolicy::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_that_hangs_past_the_timeout_is_read_back_and_sent_again() {
    assert_missing_create_is_sent_again(FaultKind::Hang { ms: 10_000 }, 499, impatient_policy())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_whose_read_back_fails_is_not_repeated_and_the_next_run_creates_it_once() {
    let h = Harness::start().await;
    let nu_path = "/agreements/213/additions";
    h.sim
        .add_fault(cw_fault("POST", nu_path, FaultKind::Status { status: 500 }));
    // The read-back (the second GET) fails on each of its 1 + 5 attempts.
    let mut read_back = cw_fault("GET", nu_path, FaultKind::Status { status: 500 });
    read_back.nth = 2;
    read_back.times = 6;
    h.sim.add_fault(read_back);

    let report = h
        .run_with_policy(&demo_settings(), h.options(false), quick_backoff())
        .await
        .expect("cycle runs");
    let posts = requests_to(&h, "POST", nu_path);
    assert_eq!(posts.len(), 1, "not repeated unverified: {posts:#?}");
    assert_eq!(posts[0].status, 500);
    let gets = requests_to(&h, "GET", nu_path);
    assert_eq!(
        gets.len(),
        7,
        "the plan's read, then 1 + 5 read-back attempts"
    );
    assert!(gets[1..].iter().all(|g| g.status == 500));
    assert!(
        h.additions_of(213).is_empty(),
        "nothing created, nothing duplicated"
    );
    let nu = customer(&report, &tenant(13));
    assert_eq!(nu["status"], "error");
    assert_eq!(codes_of(&nu), ["UPSTREAM_UNAVAILABLE"]);
    let message = nu["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not repeated"), "{message}");
    assert!(
        message.contains("reading the additions back failed"),
        "{message}"
    );
    assert_eq!(action(&report, 13, IXA_ID), "skip");
    assert_eq!(report.writes, 5, "the POST that did not land is no write");
    assert_calls_counted(&h, &report);
    assert_advice_everywhere(&report);
    // The others are not held up by Nu's failure.
    assert_eq!(active(h.additions_of(201)).len(), 2);

    h.sim.clear_requests();
    let again = h.run(&demo_settings()).await;
    let posts = requests_to(&h, "POST", nu_path);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert!(is_success(posts[0].status));
    assert_eq!(
        h.cw_writes(),
        1,
        "only Nu's addition: {:#?}",
        cw_write_log(&h)
    );
    assert_eq!(action(&again, 13, IXA_ID), "create");
    assert_eq!(customer(&again, &tenant(13))["status"], "synced");
    assert_demo_result(&h);
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_that_never_land_stop_at_the_policy_attempts() {
    let h = Harness::start().await;
    let nu_path = "/agreements/213/additions";
    let policy = quick_backoff();
    let attempts = policy.max_retries as usize + 1;
    let mut failing = cw_fault("POST", nu_path, FaultKind::Status { status: 500 });
    failing.times = 100;
    h.sim.add_fault(failing);

    let report = h
        .run_with_policy(&demo_settings(), h.options(false), policy)
        .await
        .expect("cycle runs");
    let posts = requests_to(&h, "POST", nu_path);
    assert_eq!(posts.len(), attempts, "bounded by the policy: {posts:#?}");
    assert!(posts.iter().all(|p| p.status == 500));
    // The plan's read, then one read-back after each lost answer.
    assert_eq!(requests_to(&h, "GET", nu_path).len(), 1 + attempts);
    assert!(h.additions_of(213).is_empty());
    let nu = customer(&report, &tenant(13));
    assert_eq!(nu["status"], "error");
    assert_eq!(codes_of(&nu), ["UPSTREAM_UNAVAILABLE"]);
    let message = nu["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{attempts} creates did not land")),
        "{message}"
    );
    assert_eq!(report.writes, 5, "no POST landed");
    assert_calls_counted(&h, &report);
    assert_advice_everywhere(&report);
}

/// A create that landed although its answer was lost (a 500 after applying it,
/// a cut-short body, a hang after applying it) is found by the read-back and
/// adopted in the same run, never sent again.
async fn assert_landed_create_is_adopted(kind: FaultKind, lost_status: u16, policy: HttpPolicy) {
    let h = Harness::start().await;
    let acme_path = "/agreements/201/additions";
    let mut fault = cw_fault("POST", acme_path, kind);
    fault.after_apply = true;
    h.sim.add_fault(fault);

    let report = h
        .run_with_policy(&demo_settings(), h.options(false), policy.clone())
        .await
        .expect("cycle runs");
    // The first POST on Acme's agreement is Intercept X Advanced: written, its
    // answer lost; the read-back finds it, and XDR is created next.
    // Read (plan), POST IXA (answer lost), read back (found), POST XDR.
    let lost = format!("POST {lost_status}");
    assert_eq!(
        on_path(&h, acme_path),
        ["GET 200", lost.as_str(), "GET 200", "POST 201"]
    );
    let ixa_posts = requests_to(&h, "POST", acme_path)
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert_eq!(ixa_posts, 1, "IXA was not sent again");
    let written: Vec<Value> = active(h.additions_of(201))
        .into_iter()
        .filter(|a| a["product"]["id"] == IXA)
        .collect();
    assert_eq!(written.len(), 1, "one IXA addition: {written:#?}");
    let written_id = written[0]["id"].as_i64().unwrap();
    let acme = customer(&report, &tenant(1));
    assert_eq!(acme["status"], "synced", "{acme}");
    assert!(codes_of(&acme).is_empty(), "{acme}");
    assert_eq!(action(&report, 1, IXA_ID), "adopt");
    assert_eq!(action(&report, 1, XDR_ID), "create");
    let ixa = acme["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == IXA_ID)
        .unwrap()
        .clone();
    assert_eq!(ixa["additionId"].as_i64(), Some(written_id));
    // The POST that landed is a write, although its answer was lost.
    assert_eq!(report.writes, 6);
    assert_eq!(h.cw_writes(), 6, "{:#?}", cw_write_log(&h));
    assert_calls_counted(&h, &report);
    let remembered = h.store.list_additions().await.unwrap();
    let record = remembered
        .iter()
        .find(|r| r.tenant_id == tenant(1) && r.identifier == IXA_ID)
        .expect("adopted into the store");
    assert_eq!(
        (record.addition_id, record.agreement_id, record.quantity),
        (written_id, 201, 42.0)
    );
    let trail = audit_quantities(&h, &report.run_id).await;
    assert!(
        trail.contains(&(
            "adoptAddition".to_owned(),
            Some(written_id),
            None,
            Some(42.0)
        )),
        "{trail:#?}"
    );
    assert_demo_result(&h);

    let again = assert_second_run_writes_nothing(&h, policy).await;
    assert_eq!(action(&again, 1, IXA_ID), "unchanged");
    assert!(requests_to(&h, "POST", "").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_applied_behind_a_500_is_found_by_read_back_and_adopted_in_the_same_run() {
    assert_landed_create_is_adopted(
        FaultKind::Status { status: 500 },
        500,
        HttpPolicy::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_a_truncated_answer_is_found_by_read_back_and_adopted() {
    assert_landed_create_is_adopted(FaultKind::Truncate, 201, HttpPolicy::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_applied_then_hanging_past_the_timeout_is_found_and_adopted() {
    assert_landed_create_is_adopted(FaultKind::Hang { ms: 10_000 }, 499, impatient_policy()).await;
}

// ----------------------------------------------------- 4. crash and resume

/// What kind of write a logged request is.
fn write_kind(r: &LoggedRequest) -> &'static str {
    match r.method.as_str() {
        "POST" if r.path.ends_with("/procurement/catalog") => "catalog POST",
        "POST" if r.path.ends_with("/additions") => "addition POST",
        "PATCH" if r.path.contains("/additions/") => "addition PATCH",
        _ => "other",
    }
}

/// The ids of every addition and catalog item in the simulated ConnectWise.
fn entity_ids(h: &Harness) -> BTreeSet<i64> {
    h.additions()
        .iter()
        .chain(h.catalog().iter())
        .filter_map(|v| v["id"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_any_write_converges_on_the_next_runs() {
    let settings = demo_settings();
    let mut crashing_kinds = BTreeMap::<&'static str, Vec<u64>>::new();
    // One customer at a time makes the write order deterministic; the default
    // concurrency must converge all the same.
    for concurrency in [1, 4] {
        for k in 1..=6u64 {
            let h = Harness::start().await;
            let existing = entity_ids(&h);
            let mut opts = h.options(false);
            opts.concurrency = concurrency;
            if concurrency == 1 {
                opts.customers_in_progress = Some(1);
            }
            opts.crash_after_writes = Some(k);
            let crashed_id = opts.run_id.clone();
            match h.run_with(&settings, opts).await {
                Err(CycleError::Crashed(n)) => assert!(n >= k, "k={k}: crashed after {n}"),
                other => {
                    panic!("k={k}, concurrency {concurrency}: expected a crash, got {other:?}")
                }
            }
            let writes = cw_write_log(&h);
            assert!(writes.len() >= k as usize, "k={k}: {writes:#?}");
            assert!(writes.iter().all(|w| is_success(w.status)), "{writes:#?}");
            if concurrency == 1 {
                let order: Vec<&str> = writes.iter().map(write_kind).collect();
                let expected = [
                    "catalog POST",
                    "addition POST",
                    "addition POST",
                    "addition PATCH",
                    "addition PATCH",
                    "addition POST",
                ];
                // The first k writes are the engine's order; writes made after the
                // failpoint are not asserted (see the report: the failpoint does not
                // stop the other customers' writes).
                let k_usize = k as usize;
                assert_eq!(
                    order[..k_usize],
                    expected[..k_usize],
                    "k={k}: write order {writes:#?}"
                );
                crashing_kinds
                    .entry(write_kind(&writes[k_usize - 1]))
                    .or_default()
                    .push(k);
            }
            // The write that crashed (and any after it) never reached the audit trail.
            // One customer at a time, every earlier write did; with several in
            // flight, a write another customer made just before the crash may have
            // lost its entry with the process (the next run adopts what it created).
            let audit = h.store.list_audit(100, Some(&crashed_id)).await.unwrap();
            let audited_writes = audit
                .iter()
                .filter(|a| !a.action.starts_with("adopt"))
                .count() as u64;
            if concurrency == 1 {
                assert_eq!(audited_writes, k - 1, "k={k}: {audit:#?}");
            } else {
                assert!(audited_writes < k, "k={k}: {audit:#?}");
            }
            let patched: BTreeSet<i64> = writes
                .iter()
                .filter(|w| write_kind(w) == "addition PATCH")
                .filter_map(|w| w.path.rsplit('/').next()?.parse().ok())
                .collect();

            // The crashed run's lease has expired an hour later: the next run resumes.
            let mut resume = h.options(false);
            resume.concurrency = concurrency;
            resume.clock_offset = chrono::Duration::hours(1);
            let resumed = h.run_with(&settings, resume).await.expect("resumed run");
            assert_ne!(resumed.status, RunStatus::Skipped, "k={k}");
            assert!(resumed.held_by.is_none());
            assert_demo_result(&h);
            assert_advice_everywhere(&resumed);
            // What the crash cut off from the trail, the resumed run put on it:
            // each item and addition created and each addition changed has an entry.
            let trail: BTreeSet<i64> = h
                .store
                .list_audit(1000, None)
                .await
                .unwrap()
                .iter()
                .filter_map(|a| a.entity_id)
                .collect();
            let touched: BTreeSet<i64> = entity_ids(&h)
                .difference(&existing)
                .copied()
                .chain(patched)
                .collect();
            assert!(
                touched.is_subset(&trail),
                "k={k}, concurrency {concurrency}: {touched:?} not all in {trail:?}"
            );

            // And then there is nothing left to do.
            h.sim.clear_requests();
            let mut third = h.options(false);
            third.clock_offset = chrono::Duration::hours(1);
            let third = h.run_with(&settings, third).await.expect("third run");
            assert_ne!(third.status, RunStatus::Skipped, "k={k}");
            assert_eq!(
                h.cw_writes(),
                0,
                "k={k}, concurrency {concurrency}: {:#?}",
                cw_write_log(&h)
            );
            assert_eq!(third.writes, 0);
            assert_demo_result(&h);
        }
    }
    assert_eq!(
        crashing_kinds.get("catalog POST"),
        Some(&vec![1]),
        "{crashing_kinds:?}"
    );
    assert!(
        crashing_kinds.contains_key("addition POST"),
        "{crashing_kinds:?}"
    );
    assert!(
        crashing_kinds.contains_key("addition PATCH"),
        "{crashing_kinds:?}"
    );
}

/// Beta's addition (id 301): the quantity the store remembers for it.
async fn remembered_beta_quantity(h: &Harness) -> f64 {
    h.store
        .list_additions()
        .await
        .unwrap()
        .iter()
        .find(|r| r.addition_id == 301)
        .expect("Beta's addition remembered")
        .quantity
}

/// Runs `settings` with a crash right after the first ConnectWise write, which
/// must be to the addition `addition_id`; answers the crashed run's id.
async fn crash_after_the_write_to(h: &Harness, settings: &Settings, addition_id: i64) -> String {
    h.sim.clear_requests();
    let mut opts = h.options(false);
    opts.crash_after_writes = Some(1);
    let crashed_id = opts.run_id.clone();
    assert!(matches!(
        h.run_with(settings, opts).await,
        Err(CycleError::Crashed(1))
    ));
    let writes = cw_write_log(h);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(
        writes[0]
            .path
            .ends_with(&format!("/additions/{addition_id}")),
        "{writes:#?}"
    );
    crashed_id
}

/// A run an hour later, when a crashed run's lease has expired.
async fn run_an_hour_later(h: &Harness, settings: &Settings) -> RunReport {
    let mut opts = h.options(false);
    opts.clock_offset = chrono::Duration::hours(1);
    h.run_with(settings, opts)
        .await
        .expect("a run an hour later")
}

/// A run's audit trail as (action, entity id, old quantity, new quantity).
async fn audit_quantities(
    h: &Harness,
    run_id: &str,
) -> Vec<(String, Option<i64>, Option<f64>, Option<f64>)> {
    h.store
        .list_audit(100, Some(run_id))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.entity_id, a.old_quantity, a.new_quantity))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quantity_the_store_missed_is_reconciled_on_the_audit_trail() {
    let h = Harness::start().await;
    let settings = demo_settings();
    h.run(&settings).await;
    assert_eq!(remembered_beta_quantity(&h).await, 8.0);

    // Someone sets Beta's addition to 3 in ConnectWise by hand; the next run puts
    // that on the trail before it sets 8 again, and crashes after the PATCH.
    h.sim.with_state(|s| {
        for a in s.collection_mut("additions").iter_mut() {
            if a["id"] == 301 {
                a["quantity"] = serde_json::json!(3.0);
            }
        }
    });
    let crashed_id = crash_after_the_write_to(&h, &settings, 301).await;
    let crashed = audit_quantities(&h, &crashed_id).await;
    assert_eq!(
        crashed,
        [(
            "reconcileAddition".to_owned(),
            Some(301),
            Some(8.0),
            Some(3.0)
        )],
        "the hand edit is on the trail; the PATCH's entry died with the crash"
    );
    assert_eq!(remembered_beta_quantity(&h).await, 3.0);

    // The next run finds 8 in ConnectWise where the store says 3: the write the
    // crash cut off goes on the trail, and nothing is written again.
    h.sim.clear_requests();
    let resumed = run_an_hour_later(&h, &settings).await;
    assert_eq!((resumed.writes, h.cw_writes()), (0, 0));
    let trail = audit_quantities(&h, &resumed.run_id).await;
    assert_eq!(
        trail,
        [(
            "reconcileAddition".to_owned(),
            Some(301),
            Some(3.0),
            Some(8.0)
        )]
    );
    assert_eq!(remembered_beta_quantity(&h).await, 8.0);
    assert_demo_result(&h);

    // In step again: the run after that has nothing to say.
    let third = run_an_hour_later(&h, &settings).await;
    let audit = h.store.list_audit(100, Some(&third.run_id)).await.unwrap();
    assert!(audit.is_empty(), "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_the_store_missed_is_reconciled_on_the_audit_trail() {
    let h = Harness::start().await;
    // With `keep`, Mu's unused addition (313, quantity 7) is adopted and remembered.
    h.run(&settings_with(ZeroUsage::Keep)).await;
    let remembers_mu = |records: &[sophos_cw_sync::store::AdditionRecord]| {
        records.iter().any(|r| r.addition_id == 313)
    };
    assert!(remembers_mu(&h.store.list_additions().await.unwrap()));

    // `cancel` cancels it; the run crashes after the PATCH, before its entry.
    let cancel = settings_with(ZeroUsage::Cancel);
    let crashed_id = crash_after_the_write_to(&h, &cancel, 313).await;
    assert!(audit_quantities(&h, &crashed_id).await.is_empty());
    assert!(remembers_mu(&h.store.list_additions().await.unwrap()));

    // The next run finds 313 cancelled: the cancel goes on the trail, the store
    // forgets it, and nothing is written again.
    h.sim.clear_requests();
    let resumed = run_an_hour_later(&h, &cancel).await;
    assert_eq!((resumed.writes, h.cw_writes()), (0, 0));
    assert_eq!(
        audit_quantities(&h, &resumed.run_id).await,
        [("reconcileAddition".to_owned(), Some(313), Some(7.0), None)]
    );
    assert!(!remembers_mu(&h.store.list_additions().await.unwrap()));
    let mu = h.additions_of(212);
    assert_eq!(mu.len(), 1, "{mu:#?}");
    assert!(mu[0]["cancelledDate"].is_string(), "{mu:#?}");

    // Then there is nothing more to say.
    let third = run_an_hour_later(&h, &cancel).await;
    assert!(audit_quantities(&h, &third.run_id).await.is_empty());
}

// ------------------------------------------------------ 5. the lease stays

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_run_keeps_the_lease_until_it_expires() {
    let h = Harness::start().await;
    let mut opts = h.options(false);
    opts.crash_after_writes = Some(2);
    let crashed_id = opts.run_id.clone();
    assert!(matches!(
        h.run_with(&demo_settings(), opts).await,
        Err(CycleError::Crashed(_))
    ));
    let record = h
        .store
        .get_run(&crashed_id)
        .await
        .unwrap()
        .expect("the crashed run's record");
    assert_eq!(
        record.status,
        RunStatus::Running,
        "a dead process records nothing more"
    );

    h.sim.clear_requests();
    let next = h.run(&demo_settings()).await;
    assert_eq!(next.status, RunStatus::Skipped);
    assert_eq!(next.held_by.as_deref(), Some(crashed_id.as_str()));
    assert_eq!(next.writes, 0);
    assert!(next.customers.is_empty());
    assert_eq!(h.cw_writes(), 0, "{:#?}", cw_write_log(&h));
}

/// The engine writes the running counts into the run record as it stores its
/// customers: a run that dies part way still shows how far it got, counting
/// exactly the customers stored (what the console's progress reads).
#[tokio::test(flavor = "multi_thread")]
async fn a_running_record_counts_the_customers_stored_so_far() {
    let h = Harness::with_scenario(sophos_cw_sim::generate::generate(80, 1, 3)).await;
    let mut opts = h.options(false);
    opts.customers_in_progress = Some(1);
    opts.crash_after_writes = Some(60);
    let run_id = opts.run_id.clone();
    assert!(matches!(
        h.run_with(&support::app::generated_settings(), opts).await,
        Err(CycleError::Crashed(_))
    ));
    let record = h.store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Running);
    let stored = h
        .store
        .list_run_customer_ids(&run_id, sophos_cw_sync::store::MAX_PAGE, None)
        .await
        .unwrap();
    assert!(stored.items.len() >= 25, "{} stored", stored.items.len());
    assert!(stored.items.len() < 80, "the crash stopped it part way");
    assert_eq!(
        record.report["customerCounts"]["total"],
        stored.items.len(),
        "{}",
        record.report
    );
}

// ------------------------------------------------- 6. concurrent cycles

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_cycles_one_runs_one_is_skipped() {
    let h = Harness::start().await;
    h.sim.set_latency(
        Api::Sophos,
        Latency {
            fixed_ms: 100,
            jitter_ms: 0,
        },
    );
    let settings = demo_settings();
    let (a, b) = (h.options(false), h.options(false));
    let (id_a, id_b) = (a.run_id.clone(), b.run_id.clone());
    let (ra, rb) = tokio::join!(h.run_with(&settings, a), h.run_with(&settings, b));
    let (ra, rb) = (ra.expect("run a"), rb.expect("run b"));
    let skipped: Vec<&RunReport> = [&ra, &rb]
        .into_iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(
        skipped.len(),
        1,
        "exactly one skipped: {:?} / {:?}",
        ra.status,
        rb.status
    );
    let (ran, skipped) = if ra.status == RunStatus::Skipped {
        (&rb, &ra)
    } else {
        (&ra, &rb)
    };
    let ran_id = if ran.run_id == id_a { &id_a } else { &id_b };
    assert_eq!(skipped.held_by.as_deref(), Some(ran_id.as_str()));
    assert_eq!(skipped.writes, 0);
    assert_eq!(ran.writes, 6);
    assert_eq!(h.cw_writes(), 6, "{:#?}", cw_write_log(&h));
    assert_demo_result(&h);

    // The binary, while someone else holds the lease: exit 3, names the holder.
    let outcome = h
        .store
        .acquire_lease("r-other", Utc::now(), Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Acquired);
    h.sim.clear_requests();
    let out = h.cli(&["sync", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json["status"], "skipped", "{json}");
    assert_eq!(json["heldBy"], "r-other", "{json}");
    assert_eq!(h.cw_writes(), 0);
}

// ------------------------------------------------- 7. ConnectWise errors

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_create_is_cw_permission() {
    let h = Harness::start().await;
    let mut fault = cw_fault("POST", "/additions", FaultKind::Status { status: 403 });
    fault.times = 100;
    h.sim.add_fault(fault);
    let report = h.run(&demo_settings()).await;
    assert_eq!(
        codes(&report, 1),
        ["CW_PERMISSION", "CW_PERMISSION"],
        "both of Acme's creates"
    );
    assert_eq!(codes(&report, 13), ["CW_PERMISSION"]);
    assert!(h.additions_of(201).is_empty() && h.additions_of(213).is_empty());
    // Updates do not need the refused permission.
    assert_eq!(codes(&report, 2), ["PRODUCT_UNMAPPED"]);
    assert_eq!(qty(&h.additions_of(202)[0]), 8.0);
    assert!(codes(&report, 12).is_empty());
    assert_eq!(qty(&h.additions_of(212)[0]), 0.0);
    assert_eq!(
        requests_to(&h, "POST", "/additions").len(),
        3,
        "403 is not retried"
    );
    assert_advice_everywhere(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_patch_is_cw_validation() {
    let h = Harness::start().await;
    let mut fault = cw_fault("PATCH", "/additions/", FaultKind::Status { status: 400 });
    fault.times = 100;
    h.sim.add_fault(fault);
    let report = h.run(&demo_settings()).await;
    assert_eq!(codes(&report, 2), ["PRODUCT_UNMAPPED", "CW_VALIDATION"]);
    assert_eq!(codes(&report, 12), ["CW_VALIDATION"]);
    assert_eq!(qty(&h.additions_of(202)[0]), 5.0);
    assert_eq!(qty(&h.additions_of(212)[0]), 7.0);
    assert_eq!(
        requests_to(&h, "PATCH", "/additions/").len(),
        2,
        "400 is not retried"
    );
    // Creates are unaffected.
    assert!(codes(&report, 1).is_empty());
    assert_eq!(active(h.additions_of(201)).len(), 2);
    assert_advice_everywhere(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_500_on_reading_additions_is_upstream_unavailable() {
    let h = Harness::start().await;
    let mut fault = cw_fault("GET", "/additions", FaultKind::Status { status: 500 });
    fault.times = 100;
    h.sim.add_fault(fault);
    let report = h.run(&demo_settings()).await;
    // Every customer with an agreement needs its additions read first.
    for n in [1, 11, 12, 13] {
        assert_eq!(codes(&report, n), ["UPSTREAM_UNAVAILABLE"], "tenant {n}");
        assert_eq!(customer(&report, &tenant(n))["status"], "error");
    }
    assert_eq!(
        codes(&report, 2),
        ["PRODUCT_UNMAPPED", "UPSTREAM_UNAVAILABLE"]
    );
    // Retried (idempotent), but bounded: 1 attempt + 5 retries per agreement.
    for agreement in [201, 202, 211, 212, 213] {
        let gets = requests_to(&h, "GET", &format!("/agreements/{agreement}/additions"));
        assert_eq!(gets.len(), 6, "agreement {agreement}");
        assert!(gets.iter().all(|r| r.status == 500));
    }
    // Nothing guessed: only the missing catalog item was written.
    let writes = cw_write_log(&h);
    assert_eq!(
        writes.iter().map(write_kind).collect::<Vec<_>>(),
        ["catalog POST"]
    );
    assert_eq!(qty(&h.additions_of(202)[0]), 5.0);
    assert_eq!(qty(&h.additions_of(212)[0]), 7.0);
    assert!(h.additions_of(201).is_empty() && h.additions_of(213).is_empty());
    assert_advice_everywhere(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_catalog_reference_is_catalog_setup_and_the_rest_still_syncs() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.catalog.subcategory = "Nope".into();
    let report = h.run(&settings).await;

    let setup: Vec<_> = report
        .errors
        .iter()
        .filter(|e| e.code == ErrorCode::CatalogSetup)
        .collect();
    assert_eq!(setup.len(), 1, "{:#?}", report.errors);
    assert_eq!(
        serde_json::to_value(setup[0]).unwrap()["code"],
        "CATALOG_SETUP"
    );
    assert!(
        setup[0].message.contains("catalog.subcategory"),
        "{}",
        setup[0].message
    );
    assert!(setup[0].message.contains("Nope"), "{}", setup[0].message);
    assert!(requests_to(&h, "POST", "/procurement/catalog").is_empty());
    assert_eq!(h.catalog().len(), 1, "no catalog item created");
    let xdr = report
        .catalog
        .iter()
        .find(|c| c.identifier == XDR_ID)
        .unwrap();
    assert!(xdr.catalog_item_id.is_none(), "{xdr:?}");

    // Acme uses XDR: CATALOG_SETUP for it; its Intercept X Advanced still syncs.
    assert_eq!(codes(&report, 1), ["CATALOG_SETUP"]);
    assert_eq!(action(&report, 1, IXA_ID), "create");
    let acme = active(h.additions_of(201));
    assert_eq!(acme.len(), 1, "{acme:#?}");
    assert_eq!(
        (acme[0]["product"]["id"].as_i64(), qty(&acme[0])),
        (Some(IXA), 42.0)
    );
    assert_eq!(qty(&h.additions_of(202)[0]), 8.0);
    assert_eq!(qty(&h.additions_of(212)[0]), 0.0);
    assert_eq!(active(h.additions_of(213)).len(), 1);
    for n in [12, 13] {
        assert!(codes(&report, n).is_empty(), "tenant {n} has no XDR usage");
    }
    assert_advice_everywhere(&report);
}

// ------------------------------------------------------------ 9. secrets

/// Extra environment for one CLI invocation.
type Env<'a> = &'a [(&'a str, &'a str)];

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_any_output() {
    let h = Harness::start().await;
    let engine = base64::engine::general_purpose::STANDARD;
    let forbidden = [
        "sim-sophos-secret".to_owned(),
        "sim-private-key".to_owned(),
        "sim-public-key".to_owned(),
        "webhook-token-secret-value".to_owned(),
        "WRONG-PRIVATE-KEY-123".to_owned(),
        engine.encode("simmsp+sim-public-key:sim-private-key"),
        engine.encode("simmsp+sim-public-key:WRONG-PRIVATE-KEY-123"),
    ];
    let check = |what: &str, out: &std::process::Output| {
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in &forbidden {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} printed {secret}:\n{text}"
                );
            }
        }
    };

    let runs: &[(&[&str], Env)] = &[
        (&["sync"], &[]),
        (&["sync", "--json"], &[]),
        (&["sync", "--dry-run"], &[("RUST_LOG", "trace")]),
        (&["status"], &[]),
        (&["status", "--json"], &[]),
        (&["runs"], &[]),
        (&["runs", "--json"], &[]),
        (&["audit"], &[]),
        (&["audit", "--json"], &[]),
        (&["settings", "--json"], &[]),
    ];
    for (args, env) in runs {
        let out = h.cli(args, env).await;
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "{args:?} printed something");
        check(&format!("{args:?}"), &out);
    }
    assert_demo_result(&h);

    // A wrong private key: a configuration error (exit 2), still no secret.
    let mut secret: Value =
        serde_json::from_str(&std::fs::read_to_string(&h.secrets_path).unwrap()).unwrap();
    secret["connectwise"]["privateKey"] = "WRONG-PRIVATE-KEY-123".into();
    std::fs::write(&h.secrets_path, secret.to_string()).unwrap();
    for env in [&[][..], &[("RUST_LOG", "trace")][..]] {
        h.sim.clear_requests();
        let out = h.cli(&["sync"], env).await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(!out.stderr.is_empty());
        assert!(
            requests_to(&h, "GET", "").iter().any(|r| r.status == 401),
            "ConnectWise refused the key"
        );
        assert_eq!(h.cw_writes(), 0);
        check("sync with a wrong key", &out);
    }

    // A store spec that means nothing: exit 2, naming the variable.
    let out = h.cli(&["status"], &[("SYNC_STORE", "bogus:x")]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SYNC_STORE"),
        "{out:?}"
    );
    check("bad SYNC_STORE", &out);
}
