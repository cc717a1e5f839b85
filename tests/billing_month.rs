//! The billing month and the pause, against the simulators: `timezone` and
//! `monthClose` choosing the month of a run without an explicit month (the real
//! binary, its clock fixed by the test build's `SOPHOS_CW_SYNC_NOW`), held changes
//! of the month being closed staying open, and `paused` skipping every writing run
//! while a dry run still plans.

mod support;

use serde_json::{Value, json};
use sophos_cw_sync::config::{Pause, Settings};
use sophos_cw_sync::domain::month::Month;
use sophos_cw_sync::store::{HeldStatus, LeaseOutcome, RunStatus, Store};
use sophos_cw_sync::sync::report::ProductAction;
use support::app::{Harness, MONTH, demo_settings, tenant};
use support::review::{held, put};

const XA: &str = "Sophos_Intercept_X_Advanced";

fn settings_with(fields: Value) -> Settings {
    let mut doc = serde_json::to_value(demo_settings()).unwrap();
    for (k, v) in fields.as_object().unwrap() {
        doc[k] = v.clone();
    }
    serde_json::from_value(doc).expect("valid settings")
}

/// `sync --dry-run --json` at `now` with `settings`: the month the run chose.
async fn month_chosen(h: &Harness, settings: &Settings, now: &str) -> String {
    let path = h.dir.path().join("settings.json");
    std::fs::write(&path, serde_json::to_string(settings).unwrap()).unwrap();
    let out = h
        .cli(
            &["sync", "--dry-run", "--json"],
            &[("SOPHOS_CW_SYNC_NOW", now)],
        )
        .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["month"]
        .as_str()
        .expect("the report names its month")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timezone_and_the_month_close_choose_the_month_of_a_run() {
    let h = Harness::start().await;
    let current = |tz: &str, close: u32| {
        settings_with(json!({"month": "current", "timezone": tz, "monthClose": close}))
    };
    // 03:00 UTC on 1 December: December in UTC, still November in New York.
    let early = "2026-12-01T03:00:00Z";
    assert_eq!(month_chosen(&h, &current("UTC", 0), early).await, "2026-12");
    assert_eq!(
        month_chosen(&h, &current("America/New_York", 0), early).await,
        "2026-11"
    );
    // 23:30 UTC on 30 November is December in Berlin.
    let late = "2026-11-30T23:30:00Z";
    assert_eq!(month_chosen(&h, &current("UTC", 0), late).await, "2026-11");
    assert_eq!(
        month_chosen(&h, &current("Europe/Berlin", 0), late).await,
        "2026-12"
    );
    // monthClose 3: the 2nd of December still syncs November, the 4th December.
    assert_eq!(
        month_chosen(&h, &current("UTC", 3), "2026-12-02T12:00:00Z").await,
        "2026-11"
    );
    assert_eq!(
        month_chosen(&h, &current("UTC", 3), "2026-12-04T00:00:01Z").await,
        "2026-12"
    );
    // "previous" steps back from the month in force.
    let previous = settings_with(json!({"month": "previous", "monthClose": 3}));
    assert_eq!(
        month_chosen(&h, &previous, "2026-12-02T12:00:00Z").await,
        "2026-10"
    );
    // An explicit --month is the month, whatever the clock.
    let out = h
        .cli(
            &["sync", "--dry-run", "--json", "--month", "2026-05"],
            &[("SOPHOS_CW_SYNC_NOW", early)],
        )
        .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["month"], "2026-05");
    // The November run chosen in the close period reads November's usage.
    h.sim.clear_requests();
    assert_eq!(
        month_chosen(&h, &current("UTC", 3), "2026-12-02T12:00:00Z").await,
        MONTH
    );
    let usage: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/billing/usage/"))
        .map(|r| r.path)
        .collect();
    assert!(
        !usage.is_empty() && usage.iter().all(|p| p.ends_with("/usage/2026/11")),
        "November's usage read: {usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_timezone_or_month_close_stops_the_command_with_what_to_fix() {
    let h = Harness::start().await;
    for (fields, says) in [
        (json!({"timezone": "Europe/Atlantis"}), "IANA"),
        (json!({"monthClose": 12}), "monthClose"),
    ] {
        let mut doc = serde_json::to_value(demo_settings()).unwrap();
        for (k, v) in fields.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let path = h.dir.path().join("settings.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let out = h.cli(&["sync", "--dry-run"], &[]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{says:?} not in {err}");
    }
    assert_eq!(h.cw_writes(), 0);
}

/// Runs December with the clock at `now` and the review policy on, after a
/// November change was held: whether that change is still open.
async fn november_change_open_after_december_run(close: u32, now: &str) -> bool {
    let h = Harness::start().await;
    let change = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 28.0);
    put(h.store.as_ref(), &change).await;
    let settings = settings_with(json!({
        "monthClose": close,
        "review": {"zeroOrCancel": true}
    }));
    let mut opts = h.options(false);
    opts.month = "2026-12".parse::<Month>().unwrap();
    let fixed: chrono::DateTime<chrono::Utc> = now.parse().unwrap();
    opts.clock_offset = fixed - chrono::Utc::now();
    h.run_with(&settings, opts).await.expect("the run ends");
    let after = h.store.get_held_change(&change.id).await.unwrap().unwrap();
    after.status == HeldStatus::Held
}

#[tokio::test(flavor = "multi_thread")]
async fn held_changes_of_the_month_being_closed_stay_open_until_the_close_ends() {
    // In the close period a December run (asked for explicitly) leaves November's
    // held change open: November is still being invoiced.
    assert!(november_change_open_after_december_run(3, "2026-12-02T12:00:00Z").await);
    // After the close period, or without one, it is closed.
    assert!(!november_change_open_after_december_run(3, "2026-12-04T12:00:00Z").await);
    assert!(!november_change_open_after_december_run(0, "2026-12-02T12:00:00Z").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_skips_every_writing_run_while_a_dry_run_still_plans() {
    let h = Harness::start().await;
    let mut settings = demo_settings();
    settings.paused = Some(Pause {
        by: Some("cli:ann".into()),
        at: None,
        reason: Some("checking November's invoices".into()),
    });
    h.sim.clear_requests();
    let report = h.run(&settings).await;
    assert_eq!(report.status, RunStatus::Skipped);
    let reason = report.reason.clone().expect("a skipped run says why");
    assert!(
        reason.contains("paused by cli:ann") && reason.contains("checking November's invoices"),
        "{reason}"
    );
    assert!(reason.contains("resume"), "says how to resume: {reason}");
    assert!(report.customers.is_empty());
    assert_eq!(h.cw_writes(), 0, "nothing written to ConnectWise");
    // (Building the ConnectWise client looks up the codebase; the run reads nothing.)
    let read: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| !p.contains("companyinfo"))
        .collect();
    assert!(
        read.is_empty(),
        "a paused run reads neither vendor: {read:?}"
    );
    // Recorded, so the console and the API show it; the lease is free again.
    let runs = h.store.list_runs(5, None).await.unwrap();
    assert_eq!(runs[0].run_id, report.run_id);
    assert_eq!(runs[0].status, RunStatus::Skipped);
    assert_eq!(runs[0].report["reason"], reason.as_str());
    let free = h
        .store
        .acquire_lease(
            "r-next",
            chrono::Utc::now(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(free, LeaseOutcome::Acquired, "the lease was given back");
    h.store.release_lease("r-next").await.unwrap();

    // A dry run still plans, and writes nothing.
    let plan = h.run_with(&settings, h.options(true)).await.unwrap();
    assert_ne!(plan.status, RunStatus::Skipped);
    let creates = plan
        .customers
        .iter()
        .flat_map(|c| &c.products)
        .filter(|p| p.action == ProductAction::Create)
        .count();
    assert!(creates > 0, "the plan shows the additions it would create");
    assert_eq!(h.cw_writes(), 0);

    // Resumed, the same settings write.
    settings.paused = None;
    let report = h.run(&settings).await;
    assert_ne!(report.status, RunStatus::Skipped);
    assert!(h.cw_writes() > 0);
}
