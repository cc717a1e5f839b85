//! ConnectWise throttling absorbed: against a simulator that answers 429 while
//! more than [`ABOVE`] requests are in flight, a run with a higher
//! `connectwiseConcurrency` lowers its concurrency and finishes with the same
//! result as without throttling, only slower; the report, the CLI and the run
//! page say how often it was throttled and how low the concurrency went.

mod support;

use serde_json::Value;
use sophos_cw_sim::{Api, Latency, LoggedRequest, Throttle, generate};
use sophos_cw_sync::config::Settings;
use sophos_cw_sync::store::Store;
use sophos_cw_sync::sync::report::RunReport;
use sophos_cw_sync::web::router;
use support::app::{Harness, generated_settings};
use support::console::{Client, app, test_config};
use support::sim_log::cw_log;

/// The simulator refuses requests above this many in flight.
const ABOVE: u64 = 2;
/// The setting, well above what the simulator accepts.
const CONCURRENCY: usize = 8;

fn settings() -> Settings {
    Settings {
        connectwise_concurrency: CONCURRENCY,
        ..generated_settings()
    }
}

async fn partner() -> Harness {
    Harness::with_scenario(generate::generate(40, 2, 16)).await
}

/// Each addition as (agreement, catalog identifier, quantity, cancelled), sorted:
/// what must be the same with and without throttling (ids are given out in
/// the order the writes arrive, so they differ).
fn additions(h: &Harness) -> Vec<(i64, String, String, bool)> {
    let mut all: Vec<_> = h
        .additions()
        .iter()
        .map(|a: &Value| {
            (
                a["agreementId"].as_i64().unwrap(),
                a["product"]["identifier"].as_str().unwrap().to_owned(),
                a["quantity"].to_string(),
                a["cancelledDate"].is_string(),
            )
        })
        .collect();
    all.sort();
    all
}

/// Every customer's stored status and number of errors, by tenant.
async fn statuses(h: &Harness) -> Vec<(String, String, usize)> {
    let page = h.store.list_customer_statuses(500, None).await.unwrap();
    assert!(page.next.is_none(), "one page holds the partner");
    let mut all: Vec<_> = page
        .items
        .iter()
        .map(|c| {
            let errors = c.report["errors"].as_array().map_or(0, Vec::len);
            (c.tenant_id.clone(), c.report["status"].to_string(), errors)
        })
        .collect();
    all.sort();
    all
}

/// One run with [`CONCURRENCY`], as the service takes it from the settings.
async fn run(h: &Harness) -> RunReport {
    let mut opts = h.options(false);
    opts.concurrency = settings().connectwise_concurrency;
    h.run_with(&settings(), opts).await.expect("cycle runs")
}

/// The run without throttling: what the throttled run must end with.
async fn unthrottled() -> (Harness, RunReport) {
    let h = partner().await;
    let report = run(&h).await;
    (h, report)
}

/// The run against a simulator throttling above [`ABOVE`] in flight. Each
/// ConnectWise answer takes a few milliseconds, so that requests overlap.
async fn throttled() -> (Harness, RunReport) {
    let h = partner().await;
    h.sim.set_throttle(Some(Throttle {
        above_in_flight: ABOVE,
        retry_after: 0,
    }));
    h.sim.set_latency(
        Api::Connectwise,
        Latency {
            fixed_ms: 20,
            jitter_ms: 0,
        },
    );
    let report = run(&h).await;
    (h, report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_run_finishes_correct_and_complete_at_a_lower_concurrency() {
    let (plain, expected) = unthrottled().await;
    let (h, report) = throttled().await;

    // The same result as without throttling: every addition, none twice.
    assert!(!additions(&plain).is_empty(), "the run writes additions");
    assert_eq!(additions(&h), additions(&plain));
    assert_eq!(report.status, expected.status, "{:?}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.customer_counts, expected.customer_counts);
    assert_eq!(report.writes, expected.writes);
    assert_eq!(statuses(&h).await, statuses(&plain).await);
    assert_eq!(
        (expected.throttled, expected.lowest_concurrency),
        (0, Some(8))
    );

    // ConnectWise throttled it, and the report says how often and how low.
    let log = cw_log(&h);
    let refused: Vec<&LoggedRequest> = log.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty(), "the simulator throttled the run");
    for r in &refused {
        assert!(r.in_flight > ABOVE, "{r:?}");
        assert_eq!(r.fault.as_deref(), Some("Throttled"));
    }
    assert_eq!(report.throttled, refused.len() as u64, "every 429 counted");
    let lowest = report.lowest_concurrency.expect("a lowest concurrency");
    assert!(lowest <= ABOVE, "went down to {lowest}");

    // Fewer requests in flight after the first 429 than in the burst that met
    // it: once adapted, the client keeps at most one above the limit (its probe
    // to grow back, which the simulator refuses).
    let first = log.iter().position(|r| r.status == 429).unwrap();
    let peak = log.iter().map(|r| r.in_flight).max().unwrap();
    let peak_at = log.iter().position(|r| r.in_flight == peak).unwrap();
    let second_half = &log[log.len() / 2..];
    let later = second_half.iter().map(|r| r.in_flight).max().unwrap();
    assert!(
        peak > ABOVE + 1,
        "the burst met the first 429 with {peak} in flight"
    );
    assert!(peak_at < log.len() / 2 && first < log.len() / 2);
    assert!(later <= ABOVE + 1, "{later} in flight late in the run");
    assert!(
        second_half.iter().filter(|r| r.status != 429).count() > 0,
        "the second half does work"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_the_run_page_show_the_throttling() {
    let (h, report) = throttled().await;
    assert!(report.throttled > 0);
    let n = report.throttled;
    let lowest = report.lowest_concurrency.unwrap();
    let stored = h.store.get_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(stored.report["throttled"], n);
    assert_eq!(stored.report["lowestConcurrency"], lowest);

    let out = h.cli(&["runs", &report.run_id], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!(
        "ConnectWise throttling: {n} answer(s) 429 (busy), waited out and retried; \
         requests in flight went down to {lowest}"
    );
    assert!(text.contains(&line), "{text}");

    let mut console = Client::new(router(app(&h).0, test_config()));
    console.sign_in().await;
    let page = console
        .get(&format!("/console/runs/{}", report.run_id))
        .await;
    let shown = format!(
        r#"<dd id="run-throttling">{n} × 429 (busy), retried; requests in flight went down to {lowest}</dd>"#
    );
    assert!(page.body.contains(&shown), "{}", page.body);
}
