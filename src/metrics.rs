//! One CloudWatch embedded-metric-format line per run (printed to stdout, where
//! Lambda's log agent turns it into metrics without an API call).

use crate::store::RunStatus;
use crate::sync::report::RunReport;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "SophosCwSync";

/// The metrics of a run that are failures: what the alarms read. A dry run emits
/// none of them (a preview is not an alarm).
const FAILURE_METRICS: [&str; 2] = ["RunsFailed", "CustomerErrors"];

pub fn emf_line(report: &RunReport, duration_ms: u64) -> Value {
    let values: Vec<Metric> = run_values(report, duration_ms)
        .into_iter()
        .filter(|(name, _, _)| !(report.dry_run && FAILURE_METRICS.contains(name)))
        .collect();
    let timestamp = report
        .finished_at
        .unwrap_or_else(chrono::Utc::now)
        .timestamp_millis();
    let mut line = envelope(timestamp, &values);
    line["runId"] = json!(report.run_id);
    line["status"] = json!(report.status);
    line["dryRun"] = json!(report.dry_run);
    line
}

/// A metric's name, unit and value.
type Metric = (&'static str, &'static str, u64);

/// Every metric of a run.
fn run_values(report: &RunReport, duration_ms: u64) -> Vec<Metric> {
    // Counted as customers finished, across every invocation of the run.
    let counts = report.customer_counts;
    // Every unmapped customer carries its mapping error; it is counted as unmapped
    // only, so tenants deliberately not billed through ConnectWise do not keep
    // CustomerErrorsAlarm on for good.
    let customer_errors = counts.with_errors.saturating_sub(counts.unmapped);
    vec![
        (
            "RunsFailed",
            "Count",
            u64::from(report.status == RunStatus::Failed),
        ),
        ("CustomersSynced", "Count", counts.synced),
        ("CustomerErrors", "Count", customer_errors),
        ("CustomersUnmapped", "Count", counts.unmapped),
        ("Writes", "Count", report.writes),
        ("SophosApiCalls", "Count", report.api_calls.sophos),
        ("ConnectWiseApiCalls", "Count", report.api_calls.connectwise),
        ("DurationMs", "Milliseconds", duration_ms),
    ]
}

/// The EMF line declaring `metrics` and carrying their values: CloudWatch makes a
/// metric of every declared name, and of no other.
fn envelope(timestamp: i64, metrics: &[Metric]) -> Value {
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }]
        },
        "Service": "sophos-cw-sync",
    });
    for (name, _, value) in metrics {
        line[*name] = json!(value);
    }
    line
}

/// The metrics line of a run that ended in an error before it could report; none
/// for a dry run.
pub fn emf_failure_line(run_id: Option<&str>, dry_run: bool) -> Option<Value> {
    if dry_run {
        return None;
    }
    let mut line = envelope(
        chrono::Utc::now().timestamp_millis(),
        &[("RunsFailed", "Count", 1)],
    );
    line["runId"] = json!(run_id);
    line["status"] = json!("failed");
    Some(line)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sync::report::*;

    /// A finished run of 10 customers: 7 synced, 2 in error, 3 writes.
    pub(crate) fn report(status: RunStatus) -> RunReport {
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
            throttled: 0,
            lowest_concurrency: None,
            warnings: vec![],
            reason: None,
            customers_with_usage: None,
            usage_drop_guarded: false,
            usage_drop_accepted: false,
        }
    }

    /// The metric names the line declares, checking each carries a number.
    fn declared(line: &Value) -> Vec<String> {
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], NAMESPACE);
        let names: Vec<String> = declared["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_owned())
            .collect();
        for name in &names {
            assert!(line[name].is_number(), "{name} has a value: {line}");
        }
        names
    }

    #[test]
    fn the_metrics_line_declares_every_value_it_carries() {
        let line = emf_line(&report(RunStatus::Failed), 1200);
        assert_eq!(declared(&line).len(), 8, "{line}");
        assert_eq!(line["RunsFailed"], 1);
        assert_eq!(line["Writes"], 3);
        assert_eq!(line["ConnectWiseApiCalls"], 9);
        assert_eq!(line["CustomersSynced"], 7, "from the run's counts");
        assert_eq!(line["CustomerErrors"], 2);
        assert_eq!(line["CustomersUnmapped"], 0);
        assert_eq!(emf_line(&report(RunStatus::Partial), 1)["RunsFailed"], 0);
        let failure = emf_failure_line(Some("r2"), false).unwrap();
        assert_eq!(declared(&failure), ["RunsFailed"]);
        assert_eq!(failure["RunsFailed"], 1);
        assert_eq!(failure["runId"], "r2");
    }

    #[test]
    fn unmapped_customers_have_their_own_metric_and_are_no_customer_errors() {
        let mut r = report(RunStatus::Partial);
        // 3 unmapped customers (each with its mapping error) and 2 in error.
        r.customer_counts.unmapped = 3;
        r.customer_counts.with_errors = 5;
        let line = emf_line(&r, 1);
        assert_eq!(line["CustomersUnmapped"], 3);
        assert_eq!(line["CustomerErrors"], 2, "{line}");
        assert!(declared(&line).contains(&"CustomersUnmapped".to_owned()));
        // Only unmapped customers: the error alarm's metric is 0.
        r.customer_counts.with_errors = 3;
        assert_eq!(emf_line(&r, 1)["CustomerErrors"], 0);
    }

    #[test]
    fn a_dry_run_emits_no_failure_metric() {
        let mut r = report(RunStatus::Failed);
        r.dry_run = true;
        r.customer_counts.unmapped = 1;
        r.customer_counts.with_errors = 3;
        let line = emf_line(&r, 5);
        let names = declared(&line);
        for failure in FAILURE_METRICS {
            assert!(!names.iter().any(|n| n == failure), "{failure} in {line}");
            assert!(line.get(failure).is_none(), "{failure} carried in {line}");
        }
        assert_eq!(
            line["CustomersSynced"], 7,
            "the preview's other figures stay"
        );
        assert_eq!(line["CustomersUnmapped"], 1);
        assert_eq!(line["dryRun"], true);
        assert!(emf_failure_line(Some("r3"), true).is_none());
    }
}
