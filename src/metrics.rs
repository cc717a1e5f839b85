//! One CloudWatch embedded-metric-format line per run (printed to stdout, where
//! Lambda's log agent turns it into metrics without an API call).

use crate::store::RunStatus;
use crate::sync::report::RunReport;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "SophosCwSync";

pub fn emf_line(report: &RunReport, duration_ms: u64) -> Value {
    // Counted as customers finished, across every invocation of the run.
    let counts = report.customer_counts;
    let failed = u64::from(report.status == RunStatus::Failed);
    let timestamp = report
        .finished_at
        .unwrap_or_else(chrono::Utc::now)
        .timestamp_millis();
    let metric = |name: &str, unit: &str| json!({"Name": name, "Unit": unit});
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [
                    metric("RunsFailed", "Count"),
                    metric("CustomersSynced", "Count"),
                    metric("CustomerErrors", "Count"),
                    metric("Writes", "Count"),
                    metric("SophosApiCalls", "Count"),
                    metric("ConnectWiseApiCalls", "Count"),
                    metric("DurationMs", "Milliseconds"),
                ]
            }]
        },
        "Service": "sophos-cw-sync",
        "runId": report.run_id,
        "status": report.status,
        "RunsFailed": failed,
        "CustomersSynced": counts.synced,
        "CustomerErrors": counts.with_errors,
        "Writes": report.writes,
        "SophosApiCalls": report.api_calls.sophos,
        "ConnectWiseApiCalls": report.api_calls.connectwise,
        "DurationMs": duration_ms,
    })
}

/// The metrics line of a run that ended in an error before it could report.
pub fn emf_failure_line(run_id: Option<&str>) -> Value {
    json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": "RunsFailed", "Unit": "Count"}]
            }]
        },
        "Service": "sophos-cw-sync",
        "runId": run_id,
        "status": "failed",
        "RunsFailed": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::report::*;

    fn report(status: RunStatus) -> RunReport {
        RunReport {
            run_id: "r1".into(),
            status,
            month: "2026-11".into(),
            dry_run: false,
            started_at: chrono::Utc::now(),
            finished_at: Some(chrono::Utc::now()),
            held_by: None,
            errors: vec![],
            usage_available: true,
            catalog: vec![],
            customer_counts: CustomerCounts {
                total: 10,
                synced: 7,
                with_errors: 2,
                ..CustomerCounts::default()
            },
            customers: vec![],
            unassigned_usage: vec![],
            unassigned_usage_omitted: 0,
            unmapped_codes: vec![],
            unmapped_codes_omitted: 0,
            api_calls: ApiCalls {
                sophos: 4,
                connectwise: 9,
            },
            writes: 3,
            warnings: vec![],
            reason: None,
            customers_with_usage: None,
            usage_drop_guarded: false,
            usage_drop_accepted: false,
        }
    }

    #[test]
    fn the_metrics_line_declares_every_value_it_carries() {
        let line = emf_line(&report(RunStatus::Failed), 1200);
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        for m in declared["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has a value");
        }
        assert_eq!(line["RunsFailed"], 1);
        assert_eq!(line["Writes"], 3);
        assert_eq!(line["ConnectWiseApiCalls"], 9);
        assert_eq!(line["CustomersSynced"], 7, "from the run's counts");
        assert_eq!(line["CustomerErrors"], 2);
        assert_eq!(emf_line(&report(RunStatus::Partial), 1)["RunsFailed"], 0);
        assert_eq!(emf_failure_line(Some("r2"))["RunsFailed"], 1);
    }
}
