//! Human-readable tables for the CLI (the `--json` forms carry the same data).

use crate::store::{AuditEntry, RunRecord};
use crate::sync::report::{CustomerReport, RunReport};

fn code(c: crate::sync::report::ErrorCode) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn qty(q: Option<f64>) -> String {
    q.map(|v| format!("{v}")).unwrap_or_else(|| "-".into())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn print_report(r: &RunReport) {
    println!(
        "run {}  month {}  status {:?}{}",
        r.run_id,
        r.month,
        r.status,
        if r.dry_run {
            "  (dry run: nothing written)"
        } else {
            ""
        }
    );
    if let Some(holder) = &r.held_by {
        println!("skipped: run {holder} holds the lease");
    }
    if !r.usage_available && r.held_by.is_none() {
        println!(
            "Sophos has no usage report for {} yet: no quantity was changed.",
            r.month
        );
    }
    for e in &r.errors {
        println!(
            "ERROR {}: {}\n  advice: {}",
            code(e.code),
            e.message,
            e.advice
        );
    }
    if !r.catalog.is_empty() {
        println!("\nCatalog");
        for c in &r.catalog {
            println!(
                "  {:<34} {:<10} {:?}",
                c.identifier,
                opt(&c.catalog_item_id),
                c.action
            );
        }
    }
    println!(
        "\n{:<38} {:<24} {:<9} {:<8} {:<10} agreement type",
        "tenant", "name", "status", "company", "agreement"
    );
    for c in &r.customers {
        print_customer(c);
    }
    for u in &r.unassigned_usage {
        println!(
            "usage without a customer: {} x{} ({})",
            opt(&u.product_code),
            u.quantity,
            opt(&u.product_description)
        );
    }
    println!(
        "\nAPI calls: sophos {}, connectwise {}; ConnectWise writes: {}",
        r.api_calls.sophos, r.api_calls.connectwise, r.writes
    );
}

fn print_customer(c: &CustomerReport) {
    let name: String = c.tenant_name.chars().take(24).collect();
    println!(
        "{:<38} {:<24} {:<9} {:<8} {:<10} {}",
        c.tenant_id,
        name,
        format!("{:?}", c.status).to_lowercase(),
        opt(&c.company_id),
        opt(&c.agreement_id),
        opt(&c.agreement_type)
    );
    if let Some(reason) = &c.reason {
        println!("    reason: {reason}");
    }
    for p in &c.products {
        println!(
            "    {:<34} sophos {:<6} cw {} -> {}  {:?}{}",
            p.identifier,
            p.sophos_quantity,
            qty(p.previous_quantity),
            qty(p.new_quantity),
            p.action,
            p.addition_id
                .map(|a| format!(" (addition {a})"))
                .unwrap_or_default()
        );
    }
    for e in &c.errors {
        println!(
            "    {}: {}\n      advice: {}",
            code(e.code),
            e.message,
            e.advice
        );
    }
}

pub fn print_status(reports: &[serde_json::Value]) {
    let customers: Vec<CustomerReport> = reports
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    if customers.is_empty() {
        println!("no sync has run yet: run `sophos-cw-sync sync`");
        return;
    }
    println!(
        "{:<38} {:<24} {:<9} {:<8} {:<10} agreement type",
        "tenant", "name", "status", "company", "agreement"
    );
    for c in &customers {
        print_customer(c);
    }
}

pub fn print_runs(runs: &[RunRecord]) {
    println!(
        "{:<34} {:<10} {:<8} {:<8} started",
        "run", "status", "month", "trigger"
    );
    for r in runs {
        println!(
            "{:<34} {:<10} {:<8} {:<8} {}{}",
            r.run_id,
            format!("{:?}", r.status).to_lowercase(),
            r.month,
            r.trigger,
            r.started_at.to_rfc3339(),
            if r.dry_run { " (dry run)" } else { "" }
        );
    }
}

pub fn print_audit(entries: &[AuditEntry]) {
    println!(
        "{:<25} {:<20} {:<32} {:<10} {:<10} {:<8} run / actor",
        "at", "action", "identifier", "agreement", "entity", "qty"
    );
    for e in entries {
        println!(
            "{:<25} {:<20} {:<32} {:<10} {:<10} {:<8} {} / {}",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.action,
            e.identifier,
            opt(&e.agreement_id),
            opt(&e.entity_id),
            format!("{}->{}", qty(e.old_quantity), qty(e.new_quantity)),
            e.run_id,
            e.actor
        );
    }
}
