//! The operator's changes outside the HTTP API: the CLI's `map`, `map --clear`,
//! `SYNC_SETTINGS`, `pause` and `resume` on the audit trail as `cli:$USER` with
//! old → new; a paused sync skipping the CLI's `sync` (exit 3, the reason) and a
//! scheduled run while a dry run still plans; `--accept-usage-drop` reaching the run.

mod support;

use serde_json::Value;
use sophos_cw_sync::app::App;
use sophos_cw_sync::store::{AuditEntry, RunStatus, Store};
use std::sync::Arc;
use std::time::Duration;
use support::app::{Harness, QueueInvoker, demo_settings, tenant};

const USER: [(&str, &str); 1] = [("USER", "tester")];

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The trail's entries of no run (the operator's), latest first.
async fn changes(h: &Harness) -> Vec<AuditEntry> {
    let all = h.store.list_audit(1000, None).await.unwrap();
    all.into_iter().filter(|e| e.run_id.is_empty()).collect()
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.action.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_map_clear_and_the_settings_file_are_audited_as_the_cli_user() {
    let h = Harness::start().await;
    let kappa = tenant(10);
    let out = h.cli(&["map", &kappa, "--company", "110"], &USER).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The first command applied SYNC_SETTINGS over the empty store.
    let entries = changes(&h).await;
    // Both entries of one command can share an instant, whose order the trail does
    // not fix (entries outside a run carry a random seq): compared as a set.
    let mut both = actions(&entries);
    both.sort_unstable();
    assert_eq!(both, ["setMapping", "updateSettings"]);
    assert!(
        entries.iter().all(|e| e.actor == "cli:tester"),
        "{entries:#?}"
    );
    let of = |action: &str| entries.iter().find(|e| e.action == action).unwrap();
    assert_eq!(
        of("setMapping").detail.as_deref(),
        Some("no mapping → manual: company 110")
    );
    let applied = of("updateSettings").detail.as_deref().unwrap();
    assert!(
        applied.starts_with("applied SYNC_SETTINGS (")
            && applied.contains(r#"agreementType: null → "Sophos MSP""#),
        "{applied}"
    );

    let out = h.cli(&["map", &kappa, "--clear"], &USER).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cleared"));
    // Clearing what is not there, and the unchanged settings file: no entry.
    let out = h.cli(&["map", &kappa, "--clear"], &USER).await;
    assert!(stdout(&out).contains("had no mapping"), "{}", stdout(&out));
    let entries = changes(&h).await;
    let mut seen = actions(&entries);
    assert_eq!(seen.first(), Some(&"clearMapping"), "{seen:?}");
    seen[1..].sort_unstable();
    assert_eq!(seen, ["clearMapping", "setMapping", "updateSettings"]);
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("manual: company 110 → no mapping")
    );
    assert_eq!(entries[0].tenant_id.as_deref(), Some(kappa.as_str()));

    // A changed file: only what changed, old → new.
    let mut next = demo_settings();
    next.month = "previous".into();
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&next).unwrap(),
    )
    .unwrap();
    let out = h.cli(&["settings"], &USER).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = changes(&h).await;
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries[0].detail.as_deref(),
        Some(r#"applied SYNC_SETTINGS (month: "2026-11" → "previous")"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_cli_sync_exits_3_with_the_reason_and_a_dry_run_still_plans() {
    let h = Harness::start().await;
    let out = h
        .cli(&["pause", "--reason", "invoices being checked"], &USER)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("paused by cli:tester"),
        "{}",
        stdout(&out)
    );
    // Pausing twice changes nothing.
    let again = h.cli(&["pause"], &USER).await;
    assert!(
        stdout(&again).contains("already paused"),
        "{}",
        stdout(&again)
    );
    let paused = h
        .store
        .get_settings()
        .await
        .unwrap()
        .unwrap()
        .paused
        .unwrap();
    assert_eq!(paused.by.as_deref(), Some("cli:tester"));
    assert_eq!(paused.reason.as_deref(), Some("invoices being checked"));

    let out = h.cli(&["sync"], &USER).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("skipped: the sync is paused by cli:tester")
            && err.contains("invoices being checked")
            && err.contains("sophos-cw-sync resume"),
        "{err}"
    );
    assert_eq!(h.cw_writes(), 0);
    let runs = h.store.list_runs(5, None).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Skipped);

    let plan = h.cli(&["sync", "--dry-run", "--json"], &USER).await;
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    let report: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(report["dryRun"], true);
    assert!(
        report["customerCounts"]["total"].as_u64() > Some(0),
        "{report}"
    );
    assert_eq!(h.cw_writes(), 0);

    let out = h.cli(&["resume"], &USER).await;
    assert!(stdout(&out).contains("resumed"), "{}", stdout(&out));
    let entries = changes(&h).await;
    let pauses: Vec<&str> = actions(&entries)
        .into_iter()
        .filter(|a| a.ends_with("Sync"))
        .collect();
    assert_eq!(pauses, ["resumeSync", "pauseSync"], "{entries:#?}");
    assert!(entries.iter().all(|e| e.actor == "cli:tester"));
    assert!(entries[0].detail.as_deref().unwrap().ends_with("→ null"));

    let out = h
        .cli(&["sync", "--accept-usage-drop", "--json"], &USER)
        .await;
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_ne!(report["status"], "skipped", "{report}");
    assert_eq!(report["usageDropAccepted"], true, "{report}");
    assert!(h.cw_writes() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_run_while_paused_is_recorded_skipped_and_writes_nothing() {
    let h = Harness::start().await;
    let app = App::new(
        h.lambda_env(Duration::from_secs(300)),
        h.store.clone(),
        Arc::new(QueueInvoker(Default::default())),
        None,
    );
    h.store.put_settings(&demo_settings()).await.unwrap();
    let saved = app
        .pause("console:1a2b3c4d", Some("month end".into()))
        .await
        .unwrap();
    assert!(saved.changed);
    let report = app
        .on_schedule("2026-12-01T06:00", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.status, RunStatus::Skipped);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("paused by console:1a2b3c4d"),
        "{:?}",
        report.reason
    );
    let run = h.store.get_run(&report.run_id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.trigger.as_str()),
        (RunStatus::Skipped, "schedule")
    );
    assert_eq!(h.cw_writes(), 0);
    let trail = changes(&h).await;
    assert_eq!(actions(&trail), ["pauseSync"]);
    assert_eq!(trail[0].actor, "console:1a2b3c4d");
    // The lease was given back: after resuming, the next tick writes.
    assert!(app.resume("console:1a2b3c4d").await.unwrap().changed);
    let report = app
        .on_schedule("2026-12-02T06:00", None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(report.status, RunStatus::Skipped);
    assert!(h.cw_writes() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settings_file_naming_an_agreement_type_connectwise_lacks_is_not_applied() {
    let h = Harness::start().await;
    let mut wrong = demo_settings();
    wrong.agreement_type = Some("Sophos MPS".into());
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&wrong).unwrap(),
    )
    .unwrap();
    let out = h.cli(&["settings"], &USER).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("SYNC_SETTINGS")
            && err.contains("\"Sophos MPS\"")
            && err.contains("Sophos MSP"),
        "{err}"
    );
    assert!(h.store.get_settings().await.unwrap().is_none());
    assert!(changes(&h).await.is_empty());
}

#[tokio::test]
async fn a_settings_file_that_leaves_no_admin_is_not_applied_while_oidc_is_the_only_way_in() {
    let h = Harness::start().await;
    let mut stored = demo_settings();
    stored.operators = serde_json::from_value(serde_json::json!([
        {"email": "alice@example.com", "role": "admin"}
    ]))
    .unwrap();
    h.store.put_settings(&stored).await.unwrap();
    let mut demoted = stored.clone();
    demoted.operators[0].role = sophos_cw_sync::config::operators::Role::Viewer;
    std::fs::write(
        h.dir.path().join("settings.json"),
        serde_json::to_string(&demoted).unwrap(),
    )
    .unwrap();
    let oidc = [
        ("USER", "tester"),
        (
            "CONSOLE_OIDC_ISSUER",
            "https://login.example.com/tenant/v2.0",
        ),
        ("CONSOLE_OIDC_CLIENT_ID", "console"),
    ];
    h.set_secret_fields(serde_json::json!({"consoleToken": null, "consoleOidcClientSecret": "s"}));
    let out = h.cli(&["settings"], &oidc).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("SYNC_SETTINGS")
            && err.contains("no \"admin\"")
            && err.contains("consoleToken"),
        "{err}"
    );
    assert_eq!(h.store.get_settings().await.unwrap(), Some(stored.clone()));
    assert!(changes(&h).await.is_empty());

    // With the password as a break-glass the same file is applied.
    h.set_secret_fields(serde_json::json!({"consoleToken": "a-long-random-password"}));
    let out = h.cli(&["settings"], &oidc).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let now = h.store.get_settings().await.unwrap().unwrap();
    assert_eq!(now.operators, demoted.operators);
}
