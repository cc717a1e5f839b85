//! The records the store keeps. Adapters persist them as JSON next to their keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a Sophos tenant is tied to ConnectWise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MappingKind {
    /// Set by the operator (`map <tenant> --company`): always wins.
    Manual,
    /// Found by the exact-name rule and remembered so renames do not break it.
    Discovered,
    /// The operator told us to leave this tenant alone.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    pub tenant_id: String,
    pub kind: MappingKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// A ConnectWise catalog item we created or found for a Sophos identifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRecord {
    pub identifier: String,
    pub catalog_item_id: i64,
    pub updated_at: DateTime<Utc>,
}

/// An agreement addition we manage, keyed by (tenant_id, identifier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionRecord {
    pub tenant_id: String,
    pub identifier: String,
    pub agreement_id: i64,
    pub addition_id: i64,
    pub product_id: i64,
    pub quantity: f64,
    pub updated_at: DateTime<Utc>,
}

/// The latest sync result of one customer, as partners see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatus {
    pub tenant_id: String,
    pub run_id: String,
    pub updated_at: DateTime<Utc>,
    /// The customer's entry of the run report (`sync::report::CustomerReport` as JSON).
    pub report: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Partial,
    Failed,
    Skipped,
    /// Stopped before the invocation deadline; the next invocation carries on.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub month: String,
    pub dry_run: bool,
    /// What started it: "cli", "schedule", "webhook", ...
    pub trigger: String,
    /// Who started it, as the audit trail names actors: `console:<email>`,
    /// `console:password`, `api:token`, `schedule`, `cli:<user>`. None on runs
    /// recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The run's summary (`sync::report::RunReport` as JSON without `customers`:
    /// counts, catalog, cycle errors), bounded whatever the partner's size. Each
    /// customer's result is a [`RunCustomer`] of its own.
    #[serde(default)]
    pub report: serde_json::Value,
    /// When the record may be dropped (DynamoDB TTL); None keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// The run's summary, read into its type. What does not read is left out and
    /// logged as a warning (naming the run), never a failed page.
    pub fn summary(&self) -> crate::sync::report::RunSummary {
        let (summary, problems) = crate::sync::report::RunSummary::read(&self.report);
        if !problems.is_empty() {
            tracing::warn!(
                run_id = %self.run_id,
                problems = %problems.join("; "),
                "a run summary does not read whole; showing what reads"
            );
        }
        summary
    }
}

/// One customer's result in one run, keyed by (run_id, tenant_id): a run's results
/// are many small records, never one item that grows with the partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCustomer {
    pub run_id: String,
    pub tenant_id: String,
    /// The customer's entry of the run report (`sync::report::CustomerReport` as JSON).
    pub report: serde_json::Value,
    /// Dropped with its run (DynamoDB TTL); None keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// One page of a keyed list; `next` is the cursor (exclusive) of the following page,
/// None on the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One ConnectWise write, one change the store caught up with, or one action of the
/// operator console (a login, a mapping or settings change, a sync requested), kept
/// forever.
///
/// The console's own entries belong to no run and no product: they have an empty
/// `run_id` and an empty `identifier`. Entries are keyed by `{at}#{run_id}#{seq:06}`
/// (`at` to the millisecond) and a second entry with the same key replaces the
/// first, so a writer without a run must still give entries of the same millisecond
/// distinct `seq`s (e.g. from a counter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The run that wrote it; empty for the console's own entries.
    pub run_id: String,
    /// Orders entries of one run (and of one instant).
    pub seq: u32,
    pub at: DateTime<Utc>,
    /// Who wrote: e.g. "cli:alice@host" or "lambda:schedule".
    pub actor: String,
    /// "createCatalogItem", "createAddition", "updateAddition", "zeroAddition",
    /// "cancelAddition", "adoptCatalogItem", "adoptAddition", "reconcileAddition",
    /// or one of the console's (e.g. "login", "putMapping", "putSettings").
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<i64>,
    /// The Sophos product identifier; empty when the entry is about no product.
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_quantity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_quantity: Option<f64>,
    /// A human sentence, e.g. "mapped to company 110, agreement 210" or
    /// "wrong password".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEntry {
    /// The `seq` of an entry that belongs to no run: a counter of this process
    /// from a random start, so entries one process writes in the same millisecond
    /// keep the order they were written in (listed latest first), and entries of
    /// two processes (two Lambda containers) in the same millisecond share a key,
    /// replacing one another, about once in a million.
    pub fn seq_outside_run() -> u32 {
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU32, Ordering};
        static WRITTEN: OnceLock<AtomicU32> = OnceLock::new();
        let counter = WRITTEN
            .get_or_init(|| AtomicU32::new((uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32));
        counter.fetch_add(1, Ordering::Relaxed) % 1_000_000
    }
}

/// Which audit entries [`Store::list_audit_page`](super::Store::list_audit_page)
/// returns: every field that is set must match exactly (None: any value).
///
/// An empty string matches entries without that value: `run_id: Some("")` selects
/// the console's own entries (they have no run), `tenant_id: Some("")` the entries
/// about no customer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub run_id: Option<String>,
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    /// Who wrote it, e.g. `console:alice@example.com`, `cli:bob`, `api:token`.
    pub actor: Option<String>,
}

impl AuditFilter {
    /// Whether `entry` passes the filter: the definition every adapter follows.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let run = self.run_id.as_deref().is_none_or(|r| entry.run_id == r);
        let tenant = self
            .tenant_id
            .as_deref()
            .is_none_or(|t| entry.tenant_id.as_deref().unwrap_or("") == t);
        let action = self.action.as_deref().is_none_or(|a| entry.action == a);
        let actor = self.actor.as_deref().is_none_or(|a| entry.actor == a);
        run && tenant && action && actor
    }

    /// Whether no field is set (every entry passes).
    pub fn is_empty(&self) -> bool {
        self.run_id.is_none()
            && self.tenant_id.is_none()
            && self.action.is_none()
            && self.actor.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub run_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LeaseOutcome {
    Acquired,
    HeldBy(Lease),
}

/// Where a held change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeldStatus {
    /// Waiting for a person: nothing was written.
    Held,
    /// Approved: the next run of its month writes it (after checking ConnectWise
    /// still holds `current_quantity`).
    Approved,
    /// Rejected: the same month's same proposal is not made again.
    Rejected,
    /// Written to ConnectWise by `applied_by_run`.
    Applied,
    /// Over without a write: usage came back to the ConnectWise quantity, the
    /// month ended, or the product or customer left the sync (`closed_reason`).
    Closed,
}

impl HeldStatus {
    /// Still waiting for a decision or for the run that writes it.
    pub fn is_open(self) -> bool {
        matches!(self, HeldStatus::Held | HeldStatus::Approved)
    }
}

/// Which review rule held a change (the `review` settings' keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReviewRule {
    DecreaseOverUnits,
    DecreaseOverPercent,
    ZeroOrCancel,
    FirstAdditionOver,
    NewlyMapped,
    QuantityOver,
}

/// What the held change would do to the agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeldOp {
    Create,
    Update,
    Zero,
    Cancel,
}

/// One Sophos usage line behind a proposal (the evidence shown beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldUsageLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_description: Option<String>,
    pub quantity: f64,
}

/// A planned addition change that a review rule held instead of writing, keyed by
/// `id` (one per month, customer and product: see `sync::review::held_change_id`).
/// A later run updates the same record, so a proposal is never duplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldChange {
    pub id: String,
    /// The usage month (`YYYY-MM`) the proposal is for.
    pub month: String,
    pub tenant_id: String,
    pub tenant_name: String,
    /// The ConnectWise company's identifier (as `status` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    pub agreement_id: i64,
    /// None for a first addition (a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addition_id: Option<i64>,
    /// The Sophos product identifier.
    pub identifier: String,
    /// The ConnectWise catalog item the addition is (or would be) of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<i64>,
    pub op: HeldOp,
    /// What ConnectWise held when the change was proposed (0 for a create).
    pub current_quantity: f64,
    pub proposed_quantity: f64,
    /// The usage lines behind the proposal (at most `sync::review::MAX_LINES`).
    #[serde(default)]
    pub usage_lines: Vec<HeldUsageLine>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage_lines_omitted: u64,
    pub rule: ReviewRule,
    /// Why the rule matched, in words ("a decrease of 12 units (from 40 to 28)").
    pub reason: String,
    /// The run that proposed (or last updated) it.
    pub run_id: String,
    pub status: HeldStatus,
    /// Rejected proposals of this month: not proposed again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_quantities: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by_run: Option<String>,
    /// Why it closed, or why an approval went back to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the record may be dropped (DynamoDB TTL): well after its month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Bumped by every write: [`Store::put_held_change`](super::Store::put_held_change)
    /// writes only over the version it read, so a decision and a run never overwrite
    /// each other unseen.
    #[serde(default)]
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_outside_a_run_keep_their_order_within_one_millisecond() {
        let (a, b) = (AuditEntry::seq_outside_run(), AuditEntry::seq_outside_run());
        // One in a million runs starts right at the wrap; the next pair is clear of it.
        let (a, b) = if b < a {
            (b, AuditEntry::seq_outside_run())
        } else {
            (a, b)
        };
        assert!(a < b, "{a} then {b}: the order written is kept");
        assert!(b < 1_000_000, "six digits, as the key pads them");
    }
}
