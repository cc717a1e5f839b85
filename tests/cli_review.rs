//! `sophos-cw-sync review` as the built binary: listing held changes (JSON and the
//! table grouped by customer), approve and reject with the CLI's actor, refusals
//! with a non-zero exit and the reason, and `approve --sync` running a cycle.

mod support;

use serde_json::Value;
use sophos_cw_sync::store::{HeldStatus, Store};
use support::app::{Harness, MONTH, tenant};
use support::review::{held, put, with_status};

const XA: &str = "Sophos_Intercept_X_Advanced";
const USER: [(&str, &str); 1] = [("USER", "tester")];

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

#[tokio::test(flavor = "multi_thread")]
async fn review_lists_approves_and_rejects_held_changes() {
    let h = Harness::start().await;
    let empty = h.cli(&["review"], &[]).await;
    assert!(empty.status.success(), "{}", stderr(&empty));
    assert!(stdout(&empty).contains("no change waits for review"));
    assert_eq!(
        json(&h.cli(&["review", "--json"], &[]).await),
        Value::Array(vec![])
    );

    let acme = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 28.0);
    let beta = held(MONTH, &tenant(4), "Beta GmbH", XA, 30.0, 10.0);
    let applied = with_status(
        &held("2026-10", &tenant(5), "Gamma Inc", XA, 9.0, 1.0),
        HeldStatus::Applied,
    );
    for c in [&acme, &beta, &applied] {
        put(h.store.as_ref(), c).await;
    }

    let out = h.cli(&["review", "--json"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = json(&out);
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    for item in items {
        for field in support::review::LISTED_FIELDS {
            assert!(!item[field].is_null(), "{field} missing in {item}");
        }
    }
    let all = json(&h.cli(&["review", "--all", "--json"], &[]).await);
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");

    // The table: a heading per customer, the change, the rule and why.
    let table = stdout(&h.cli(&["review"], &[]).await);
    for part in [
        "2026-11  Acme Ltd  company AcmeLtdCo  agreement 201",
        "Beta GmbH",
        acme.id.as_str(),
        "40 -> 28 (-12)",
        "decreaseOverUnits",
        "why: a decrease of 12 units (from 40 to 28)",
    ] {
        assert!(table.contains(part), "{part:?} not in:\n{table}");
    }
    assert!(!table.contains("Gamma"), "{table}");

    // Approve, as cli:$USER.
    let out = h
        .cli(&["review", "approve", &acme.id, "--json"], &USER)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = json(&out);
    assert_eq!(answer["decisions"][0]["id"], acme.id.as_str());
    assert_eq!(answer["decisions"][0]["change"]["status"], "approved");
    assert_eq!(answer["decisions"][0]["change"]["decidedBy"], "cli:tester");
    assert!(answer.get("runs").is_none(), "no --sync, no run: {answer}");

    // Reject, in words.
    let out = h.cli(&["review", "reject", &beta.id], &USER).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{}: rejected: Beta GmbH", beta.id)),
        "{}",
        stdout(&out)
    );
    let stored = h.store.get_held_change(&beta.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HeldStatus::Rejected);
    assert_eq!(stored.decided_by.as_deref(), Some("cli:tester"));
    let trail = h.store.list_audit(10, None).await.unwrap();
    // The first command applied SYNC_SETTINGS (an updateSettings entry): not a decision.
    let decisions: Vec<(&str, &str)> = trail
        .iter()
        .filter(|e| e.action != "updateSettings")
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("rejectChange", "cli:tester"),
            ("approveChange", "cli:tester")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_ids_exit_non_zero_with_the_reason_and_the_others_are_decided() {
    let h = Harness::start().await;
    let acme = held(MONTH, &tenant(1), "Acme Ltd", XA, 40.0, 28.0);
    let applied = with_status(
        &held("2026-10", &tenant(5), "Gamma Inc", XA, 9.0, 1.0),
        HeldStatus::Applied,
    );
    put(h.store.as_ref(), &acme).await;
    put(h.store.as_ref(), &applied).await;

    let out = h
        .cli(&["review", "approve", "2026-11-000000000000"], &USER)
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("error: no held change has the id \"2026-11-000000000000\""),
        "{}",
        stderr(&out)
    );
    let out = h
        .cli(&["review", "reject", &applied.id, "--json"], &USER)
        .await;
    assert_eq!(out.status.code(), Some(1));
    let answer = json(&out);
    assert!(
        answer["decisions"][0]["error"]
            .as_str()
            .unwrap()
            .contains("is applied (written by run r-writer): there is nothing left to reject"),
        "{answer}"
    );
    // One good id among bad ones is still decided; the exit says not all were.
    let out = h.cli(&["review", "approve", &acme.id, "nope"], &USER).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&format!("{}: approved", acme.id)));
    let stored = h.store.get_held_change(&acme.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HeldStatus::Approved);
    // No id at all: clap's usage error.
    let out = h.cli(&["review", "approve"], &USER).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<ID>"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_with_sync_runs_a_cycle_of_the_changes_month() {
    let h = Harness::start().await;
    // A real held change: the first sync holds Acme's first addition of 42.
    let mut settings = serde_json::to_value(support::app::demo_settings()).unwrap();
    settings["review"] = serde_json::json!({"firstAdditionOver": 40});
    std::fs::write(h.dir.path().join("settings.json"), settings.to_string()).unwrap();
    let first = h.cli(&["sync"], &USER).await;
    assert!(first.status.code().is_some(), "{}", stderr(&first));
    let listed = h.cli(&["review", "--json"], &USER).await;
    let listed = json(&listed);
    let acme = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenantId"] == tenant(1).as_str() && c["identifier"] == XA)
        .cloned()
        .unwrap_or_else(|| panic!("Acme held: {listed}"));
    let id = acme["id"].as_str().unwrap();
    // The human form: the decision as it stands after the sync, then its report.
    let out = h.cli(&["review", "approve", id, "--sync"], &USER).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    let run_id = stdout
        .split("written by run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the writing run named: {stdout}"))
        .to_owned();
    assert!(
        stdout.contains(&format!("run {run_id}  month {MONTH}")),
        "{stdout}"
    );
    let run = h.store.get_run(&run_id).await.unwrap().expect("recorded");
    assert!(!run.dry_run);
    let ixa: Vec<_> = h
        .additions_of(201)
        .into_iter()
        .filter(|a| a["product"]["id"] == 901)
        .collect();
    assert_eq!(ixa.len(), 1, "written once");
    assert_eq!(ixa[0]["quantity"], 42.0);
    let all = json(&h.cli(&["review", "--all", "--json"], &USER).await);
    let now = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(
        (now["status"].as_str(), now["appliedByRun"].as_str()),
        (Some("applied"), Some(run_id.as_str()))
    );
}
