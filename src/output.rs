//! Human-readable tables for the CLI (the `--json` forms carry the same data).

use crate::store::{AuditEntry, HeldChange, RunRecord};
use crate::sync::kept::KeptCustomers;
use crate::sync::report::{CustomerReport, RunReport};
use crate::sync::review::{Decision, DecisionOutcome};

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
    print_report_head(r);
    for c in &r.customers {
        print_customer(c);
    }
    print_report_tail(r);
}

/// [`print_report`] with the customers read from `kept` (the CLI's sync, whose
/// report keeps none in memory), in Sophos order, one at a time.
pub fn print_report_kept(r: &RunReport, kept: &mut KeptCustomers) -> std::io::Result<()> {
    print_report_head(r);
    kept.for_each(|c| {
        print_customer(&c);
        Ok(())
    })?;
    print_report_tail(r);
    print_lost(kept);
    Ok(())
}

/// `--json` of a report whose customers are in `kept`: the same document as
/// `serde_json::to_string_pretty(report)` with them in it, written a customer at a
/// time instead of built whole.
pub fn print_report_json_kept(r: &RunReport, kept: &mut KeptCustomers) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_report_json_kept(&mut out, r, kept)?;
    out.flush()?;
    drop(out);
    print_lost(kept);
    Ok(())
}

fn write_report_json_kept(
    out: &mut impl std::io::Write,
    r: &RunReport,
    kept: &mut KeptCustomers,
) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    // The top-level field, at the first level of indentation (nested fields are
    // indented further, and a string holding the text would be escaped).
    const EMPTY: &str = "\n  \"customers\": []";
    let Some(at) = text.find(EMPTY) else {
        return writeln!(out, "{text}");
    };
    write!(out, "{}\n  \"customers\": [", &text[..at])?;
    let mut first = true;
    kept.for_each(|c| {
        let item = serde_json::to_string_pretty(&c).map_err(std::io::Error::other)?;
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        for (i, line) in item.lines().enumerate() {
            if i > 0 {
                out.write_all(b"\n")?;
            }
            write!(out, "    {line}")?;
        }
        Ok(())
    })?;
    if !first {
        out.write_all(b"\n  ")?;
    }
    writeln!(out, "]{}", &text[at + EMPTY.len()..])
}

/// Says (on stderr) that some results are missing from the printout, and where
/// they are.
fn print_lost(kept: &KeptCustomers) {
    if kept.lost() > 0 {
        eprintln!(
            "warning: {} customer result(s) could not be kept for this printout (the temporary directory failed: check TMPDIR's free space); a real run stored them: see `sophos-cw-sync runs <run id>`",
            kept.lost()
        );
    }
}

fn print_report_head(r: &RunReport) {
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
    // A paused run's reason goes to stderr (`cli::sync`); it read no usage.
    if !r.usage_available && r.held_by.is_none() && r.reason.is_none() {
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
    // Written (or held back) but worth a look: before the long customer table.
    for w in &r.warnings {
        println!(
            "WARNING {}: {}\n  advice: {}",
            serde_json::to_value(w.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            w.message,
            w.advice
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
    println!();
    print_customer_header();
}

fn print_report_tail(r: &RunReport) {
    for u in &r.unassigned_usage {
        println!(
            "usage without a customer: {} x{} ({})",
            opt(&u.product_code),
            u.quantity,
            opt(&u.product_description)
        );
    }
    let held = r.customer_counts.held;
    if held > 0 {
        println!(
            "\n{held} change(s) held for review, nothing written for them: see `sophos-cw-sync review`"
        );
    }
    println!(
        "\nAPI calls: sophos {}, connectwise {}; ConnectWise writes: {}",
        r.api_calls.sophos, r.api_calls.connectwise, r.writes
    );
    println!("{}", throttling_line(r.throttled, r.lowest_concurrency));
}

/// How often ConnectWise throttled the run, and what that cost in concurrency.
fn throttling_line(throttled: u64, lowest_concurrency: Option<u64>) -> String {
    match (throttled, lowest_concurrency) {
        (0, _) => "ConnectWise throttling: none".to_string(),
        (n, Some(lowest)) => format!(
            "ConnectWise throttling: {n} answer(s) 429 (busy), waited out and retried; \
             requests in flight went down to {lowest}"
        ),
        (n, None) => {
            format!("ConnectWise throttling: {n} answer(s) 429 (busy), waited out and retried")
        }
    }
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
        if let (Some(id), Some(proposed)) = (&p.held_change_id, p.proposed_quantity) {
            println!("      proposed {proposed}, not written: held change {id}");
        }
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

/// What the streamed lists share: one JSON array printed item by item (never held
/// whole), or a note when nothing was listed.
struct Streamed {
    json: bool,
    empty_note: &'static str,
    printed: usize,
}

impl Streamed {
    fn new(json: bool, empty_note: &'static str) -> Self {
        Self {
            json,
            empty_note,
            printed: 0,
        }
    }

    fn json_item<T: serde::Serialize>(&mut self, item: &T) {
        let text = serde_json::to_string_pretty(item).unwrap_or_default();
        let sep = if self.printed == 0 { "[" } else { "," };
        println!("{sep}\n{}", indent(&text));
        self.printed += 1;
    }

    fn finish(&self) {
        match (self.json, self.printed) {
            (true, 0) => println!("[]"),
            (true, _) => println!("]"),
            (false, 0) => println!("{}", self.empty_note),
            (false, _) => {}
        }
    }
}

/// Prints customers' results as they are read, a page at a time: a table (header
/// once) or one JSON array, so a partner of any size is never held in memory whole.
pub struct CustomerList(Streamed);

impl CustomerList {
    pub fn new(json: bool, empty_note: &'static str) -> Self {
        Self(Streamed::new(json, empty_note))
    }

    pub fn page(&mut self, reports: impl IntoIterator<Item = serde_json::Value>) {
        for report in reports {
            if self.0.json {
                self.0.json_item(&report);
                continue;
            }
            let Ok(c) = serde_json::from_value::<CustomerReport>(report) else {
                continue;
            };
            if self.0.printed == 0 {
                print_customer_header();
            }
            print_customer(&c);
            self.0.printed += 1;
        }
    }

    pub fn finish(self) {
        self.0.finish();
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_customer_header() {
    println!(
        "{:<38} {:<24} {:<9} {:<8} {:<10} agreement type",
        "tenant", "name", "status", "company", "agreement"
    );
}

/// The head of `runs <id>`: the run's record and its summary counts.
pub fn print_run_summary(run: &RunRecord) {
    println!(
        "run {}  month {}  status {}  trigger {}{}",
        run.run_id,
        run.month,
        format!("{:?}", run.status).to_lowercase(),
        run.trigger,
        if run.dry_run { "  (dry run)" } else { "" }
    );
    let summary = run.summary();
    if let Some(n) = &summary.customer_counts {
        println!(
            "customers: {} ({} synced, {} error, {} unmapped, {} ignored; {} with errors)",
            n.total, n.synced, n.error, n.unmapped, n.ignored, n.with_errors
        );
    }
    for e in &summary.errors {
        println!("ERROR {}: {}", code(e.code), e.message);
    }
    if let Some(writes) = summary.writes {
        println!("ConnectWise writes: {writes}");
    }
    // Records from before throttling was kept have no count.
    if let Some(throttled) = summary.throttled {
        println!("{}", throttling_line(throttled, summary.lowest_concurrency));
    }
    println!();
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

/// An enum's serde spelling ("decreaseOverUnits", "held"), as the JSON has it.
fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// "40 -> 28 (-12)".
fn change_of(h: &HeldChange) -> String {
    let diff = h.proposed_quantity - h.current_quantity;
    let sign = if diff > 0.0 { "+" } else { "" };
    format!(
        "{} -> {} ({sign}{diff})",
        h.current_quantity, h.proposed_quantity
    )
}

/// Prints held changes as they are read, a page at a time: one JSON array, or a
/// table grouped by month and customer (a customer's changes are grouped within a
/// page of the store's reading; one spread over two pages shows its heading twice).
pub struct HeldList {
    list: Streamed,
    /// (month, tenant id) of the last heading printed.
    group: Option<(String, String)>,
}

impl HeldList {
    pub fn new(json: bool, empty_note: &'static str) -> Self {
        Self {
            list: Streamed::new(json, empty_note),
            group: None,
        }
    }

    pub fn page(&mut self, mut changes: Vec<HeldChange>) {
        if !self.list.json {
            // Latest month first (the store's order), then by customer.
            changes.sort_by(|a, b| {
                b.month
                    .cmp(&a.month)
                    .then_with(|| a.tenant_name.cmp(&b.tenant_name))
                    .then_with(|| a.tenant_id.cmp(&b.tenant_id))
                    .then_with(|| a.identifier.cmp(&b.identifier))
            });
        }
        for h in changes {
            if self.list.json {
                self.list.json_item(&h);
            } else {
                self.print_row(&h);
                self.list.printed += 1;
            }
        }
    }

    fn print_row(&mut self, h: &HeldChange) {
        let key = (h.month.clone(), h.tenant_id.clone());
        if self.group.as_ref() != Some(&key) {
            if self.group.is_some() {
                println!();
            }
            println!(
                "{}  {}  company {}  agreement {}  tenant {}",
                h.month,
                h.tenant_name,
                h.company_identifier.as_deref().unwrap_or("-"),
                h.agreement_id,
                h.tenant_id
            );
            println!(
                "  {:<20} {:<32} {:<7} {:<20} {:<20} {:<9} run",
                "id", "product", "op", "connectwise -> new", "rule", "status"
            );
            self.group = Some(key);
        }
        println!(
            "  {:<20} {:<32} {:<7} {:<20} {:<20} {:<9} {}",
            h.id,
            h.identifier,
            wire(&h.op),
            change_of(h),
            wire(&h.rule),
            wire(&h.status),
            h.run_id
        );
        println!("      why: {}", h.reason);
        if let Some(by) = &h.decided_by {
            println!(
                "      decided by {by}{}",
                h.decided_at
                    .map(|at| format!(" at {}", at.format("%Y-%m-%d %H:%M:%S UTC")))
                    .unwrap_or_default()
            );
        }
        if let Some(note) = &h.note {
            println!("      note: {note}");
        }
    }

    pub fn finish(self) {
        self.list.finish();
    }
}

/// A line per decided id (refusals are reported on stderr by the caller).
pub fn print_decisions(outcomes: &[DecisionOutcome], decision: Decision) {
    for o in outcomes {
        let Some(h) = &o.change else { continue };
        if o.error.is_some() {
            continue;
        }
        let what = format!(
            "{} {} of {} ({})",
            h.tenant_name,
            h.identifier,
            h.month,
            change_of(h)
        );
        match decision {
            // As the change stands now: after `--sync`, what that run made of it.
            Decision::Approve if h.status == crate::store::HeldStatus::Applied => println!(
                "{}: approved: {what}; written by run {}",
                o.id,
                h.applied_by_run.as_deref().unwrap_or("-")
            ),
            Decision::Approve if h.status != crate::store::HeldStatus::Approved => println!(
                "{}: approved: {what}; not written: {}",
                o.id,
                h.note
                    .as_deref()
                    .unwrap_or("see `sophos-cw-sync review --all`")
            ),
            Decision::Approve => println!(
                "{}: approved: {what}; the next sync of {} writes it",
                o.id, h.month
            ),
            Decision::Reject => println!(
                "{}: rejected: {what}; this proposal is not made again this month",
                o.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::report::CustomerReport;

    fn report(customers: Vec<CustomerReport>) -> RunReport {
        let mut r: RunReport = serde_json::from_value(serde_json::json!({
            "runId": "r1", "status": "succeeded", "month": "2026-11", "dryRun": false,
            "startedAt": "2026-11-29T00:50:12Z", "finishedAt": null, "errors": [],
            "usageAvailable": true, "catalog": [], "unassignedUsage": [],
            "apiCalls": {"sophos": 3, "connectwise": 9}, "writes": 2
        }))
        .expect("a report");
        r.customers = customers;
        r
    }

    fn customer(id: &str) -> CustomerReport {
        serde_json::from_value(serde_json::json!({
            "tenantId": id, "tenantName": format!("Tenant \"{id}\""), "status": "synced",
            "companyId": 7, "products": [{"identifier": "X", "action": "create",
            "sophosQuantity": 3.0, "newQuantity": 3.0}], "errors": []
        }))
        .expect("a customer")
    }

    #[test]
    fn a_report_with_kept_customers_prints_as_the_whole_report_would() {
        let customers: Vec<CustomerReport> = ["a", "b", "c"].into_iter().map(customer).collect();
        let whole = serde_json::to_string_pretty(&report(customers.clone())).unwrap() + "\n";
        let mut kept = KeptCustomers::new().unwrap();
        // Kept as they finished, printed in Sophos order.
        for place in [1, 2, 0] {
            kept.keep(place, &customers[place]);
        }
        let mut out = Vec::new();
        write_report_json_kept(&mut out, &report(Vec::new()), &mut kept).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole);
    }

    #[test]
    fn a_report_with_no_customers_kept_prints_an_empty_list() {
        let whole = serde_json::to_string_pretty(&report(Vec::new())).unwrap() + "\n";
        let mut kept = KeptCustomers::new().unwrap();
        let mut out = Vec::new();
        write_report_json_kept(&mut out, &report(Vec::new()), &mut kept).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole);
    }
}
