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
    /// The run's summary (`sync::report::RunReport` as JSON without `customers`:
    /// counts, catalog, cycle errors), bounded whatever the partner's size. Each
    /// customer's result is a [`RunCustomer`] of its own.
    #[serde(default)]
    pub report: serde_json::Value,
    /// When the record may be dropped (DynamoDB TTL); None keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
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

/// One ConnectWise write, or one change the store caught up with, kept forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub run_id: String,
    /// Orders entries of one run (and of one instant).
    pub seq: u32,
    pub at: DateTime<Utc>,
    /// Who wrote: e.g. "cli:alice@host" or "lambda:schedule".
    pub actor: String,
    /// "createCatalogItem", "createAddition", "updateAddition", "zeroAddition",
    /// "cancelAddition", "adoptCatalogItem", "adoptAddition", "reconcileAddition".
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<i64>,
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_quantity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_quantity: Option<f64>,
    /// What a console action did, in words (e.g. "mapped to company 110, agreement
    /// 210", "sign-in refused: wrong password").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which audit entries to list; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub run_id: Option<String>,
    pub tenant_id: Option<String>,
    pub action: Option<String>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.run_id.as_ref().is_none_or(|r| *r == e.run_id)
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|t| Some(t) == e.tenant_id.as_ref())
            && self.action.as_ref().is_none_or(|a| *a == e.action)
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
