//! One CloudWatch embedded-metric-format line per run (printed to stdout, where
//! Lambda's log agent turns it into metrics without an API call).

use crate::store::RunStatus;
use crate::sync::report::{CustomerState, RunReport};
use serde_json::{Value, json};

pub const NAMESPACE: &str = "SophosCwSync";

pub fn emf_line(report: &RunReport, duration_ms: u64) -> Value {
    let count = |state| {
        report
            .customers
            .iter()
            .filter(|c| c.status == state)
            .count()
    };
    let errors = report
        .customers
        .iter()
        .filter(|c| !c.errors.is_empty())
        .count();
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
        "CustomersSynced": count(CustomerState::Synced),
        "CustomerErrors": errors,
        "Writes": report.writes,
        "SophosApiCalls": report.api_calls.sophos,
        "ConnectWiseApiCalls": report.api_calls.connectwise,
        "DurationMs": duration_ms,
    })
}
