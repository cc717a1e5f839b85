//! The real binary where processes meet: two `sync` cycles started at once on a
//! new SQLite file, and output piped into a reader that stops early.

mod support;

use serde_json::{Value, json};
use sophos_cw_sim::Scenario;
use sophos_cw_sync::store::{AuditEntry, CustomerStatus, Store};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use support::app::{Harness, demo_settings, tenant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the partner's agreements hold after a cycle: one line per addition.
fn additions_signature(h: &Harness) -> Vec<String> {
    let mut lines: Vec<String> = h
        .additions()
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["agreementId"], a["product"]["identifier"], a["quantity"]
            )
        })
        .collect();
    lines.sort();
    lines
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn syncs_started_at_once_on_a_new_file_wait_or_skip_and_write_once() {
    const ROUNDS: usize = 20;
    const PROCESSES: usize = 2;
    let h = Harness::start().await;

    // What one cycle alone writes, for the rounds to be compared with.
    let alone = h.dir.path().join("alone.db");
    let alone_store = format!("sqlite:{}", alone.display());
    let out = h.cli(&["sync"], &[("SYNC_STORE", &alone_store)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let expected = additions_signature(&h);
    let expected_writes = h.cw_writes();
    assert!(expected_writes > 0, "the demo's first cycle writes");

    for round in 0..ROUNDS {
        h.sim.load(Scenario::demo());
        let file = h.dir.path().join(format!("round-{round}.db"));
        let store = format!("sqlite:{}", file.display());
        let env = [("SYNC_STORE", store.as_str())];
        let runs = (0..PROCESSES).map(|_| h.cli(&["sync"], &env));
        let outs = futures::future::join_all(runs).await;
        let mut won = 0;
        for out in &outs {
            let stderr = stderr_of(out);
            assert!(
                !stderr.contains("locked"),
                "round {round}: no process may fail on the lock: {stderr}"
            );
            match out.status.code() {
                Some(0) => won += 1,
                Some(3) => {
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        stdout.contains("holds the lease"),
                        "round {round}: a skipped cycle says why: {stdout} {stderr}"
                    );
                }
                other => panic!("round {round}: exit {other:?}: {stderr}"),
            }
        }
        assert!(won >= 1, "round {round}: one cycle got the lease");
        assert_eq!(
            additions_signature(&h),
            expected,
            "round {round}: the partner's additions are those of one cycle"
        );
        assert_eq!(
            h.cw_writes(),
            expected_writes,
            "round {round}: only the first cycle to hold the lease wrote (a later one \
             found everything in step)"
        );
    }
}

/// One real customer status of the demo, copied to `n` tenants of the harness's store.
async fn many_customer_statuses(h: &Harness, n: u32) {
    h.run(&demo_settings()).await;
    let page = h.store.list_customer_statuses(1, None).await.unwrap();
    let model = page.items.into_iter().next().expect("a customer status");
    let statuses: Vec<CustomerStatus> = (0..n)
        .map(|i| {
            let mut report = model.report.clone();
            report["tenantId"] = json!(tenant(i));
            CustomerStatus {
                tenant_id: tenant(i),
                report,
                ..model.clone()
            }
        })
        .collect();
    h.store.put_customer_statuses(&statuses).await.unwrap();
}

/// Runs the binary with `args`, reads its first line and closes the pipe, as
/// `sophos-cw-sync … | head -1` does; the first line and how the process ended.
async fn first_line_then_close(
    h: &Harness,
    args: &[&str],
) -> (String, std::process::ExitStatus, String) {
    let mut child = h
        .cli_command(args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).await.unwrap();
    drop(stdout);
    let out = child.wait_with_output().await.unwrap();
    (first, out.status, stderr_of(&out))
}

/// The process ends as `cat` does under `head`: killed by SIGPIPE (the shell's
/// 141), quietly.
fn assert_ended_quietly_by_sigpipe(what: &str, status: std::process::ExitStatus, stderr: &str) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "{what}: {status:?}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: nothing on stderr about the closed pipe: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_into_a_reader_that_stops_after_one_line_ends_quietly() {
    let h = Harness::start().await;
    // About 100 bytes a line: far more than a pipe holds (64 KiB).
    many_customer_statuses(&h, 5000).await;
    let (first, status, stderr) = first_line_then_close(&h, &["status"]).await;
    assert!(first.starts_with("tenant"), "the header first: {first}");
    assert_ended_quietly_by_sigpipe("status", status, &stderr);

    let (first, status, stderr) = first_line_then_close(&h, &["status", "--json"]).await;
    assert!(!first.trim().is_empty(), "JSON begins: {first}");
    assert_ended_quietly_by_sigpipe("status --json", status, &stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_into_a_reader_that_stops_after_one_line_ends_quietly() {
    let h = Harness::start().await;
    // The 200 entries `audit` lists, each with a long identifier (the table
    // prints it) and detail (the JSON has it): far more than a pipe holds.
    let long = "Sophos_Central_Intercept_X_Advanced_with_XDR_".repeat(10);
    for seq in 0..200 {
        let entry = AuditEntry {
            run_id: "run-pipe".into(),
            seq,
            at: chrono::Utc::now(),
            actor: "cli:test".into(),
            action: "putMapping".into(),
            tenant_id: Some(tenant(seq)),
            agreement_id: None,
            identifier: long.clone(),
            entity_id: None,
            old_quantity: None,
            new_quantity: None,
            detail: Some(long.clone()),
        };
        h.store.append_audit(&entry).await.unwrap();
    }
    for args in [&["audit"][..], &["audit", "--json"][..]] {
        let (first, status, stderr) = first_line_then_close(&h, args).await;
        assert!(!first.trim().is_empty(), "{args:?}: a first line: {first}");
        assert_ended_quietly_by_sigpipe(&format!("{args:?}"), status, &stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_read_to_the_end_still_exits_0() {
    let h = Harness::start().await;
    many_customer_statuses(&h, 300).await;
    let out = h.cli(&["status", "--json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("whole JSON");
    assert!(
        listed.to_string().contains(&tenant(299)),
        "the last customer too"
    );
}
