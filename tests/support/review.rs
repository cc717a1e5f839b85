//! Held changes put straight into a store (the engine makes them on main; these
//! tests only need records to review).

use chrono::Utc;
use sophos_cw_sync::domain::month::Month;
use sophos_cw_sync::store::{HeldChange, HeldOp, HeldStatus, HeldUsageLine, ReviewRule, Store};
use sophos_cw_sync::sync::review::held_change_id;

/// A held decrease of `identifier` for `tenant_id` in `month`, proposed by run
/// `r-proposer`, from `current` to `proposed` units.
pub fn held(
    month: &str,
    tenant_id: &str,
    tenant_name: &str,
    identifier: &str,
    current: f64,
    proposed: f64,
) -> HeldChange {
    let now = Utc::now();
    HeldChange {
        id: held_change_id(month.parse::<Month>().unwrap(), tenant_id, identifier),
        month: month.to_owned(),
        tenant_id: tenant_id.to_owned(),
        tenant_name: tenant_name.to_owned(),
        company_identifier: Some(format!("{}Co", tenant_name.replace(' ', ""))),
        company_id: Some(101),
        agreement_id: 201,
        addition_id: Some(301),
        identifier: identifier.to_owned(),
        product_id: Some(401),
        op: HeldOp::Update,
        current_quantity: current,
        proposed_quantity: proposed,
        usage_lines: vec![HeldUsageLine {
            product_code: Some("CIXA-MSP".into()),
            sku: None,
            product_description: Some("Central Intercept X Advanced".into()),
            quantity: proposed,
        }],
        usage_lines_omitted: 0,
        rule: ReviewRule::DecreaseOverUnits,
        reason: format!(
            "a decrease of {} units (from {current} to {proposed})",
            current - proposed
        ),
        run_id: "r-proposer".into(),
        status: HeldStatus::Held,
        rejected_quantities: Vec::new(),
        decided_by: None,
        decided_at: None,
        applied_by_run: None,
        note: None,
        created_at: now,
        updated_at: now,
        expires_at: None,
        version: 0,
    }
}

/// Writes `change` as a new record (or over whatever version is stored).
pub async fn put(store: &dyn Store, change: &HeldChange) {
    let expected = store
        .get_held_change(&change.id)
        .await
        .unwrap()
        .map(|h| h.version);
    let mut c = change.clone();
    if let Some(v) = expected {
        c.version = v + 1;
    }
    assert!(
        store.put_held_change(&c, expected).await.unwrap(),
        "the held change {} was written",
        c.id
    );
}

/// The same change in `status` (e.g. applied by a run).
pub fn with_status(change: &HeldChange, status: HeldStatus) -> HeldChange {
    let mut c = change.clone();
    c.status = status;
    if status == HeldStatus::Applied {
        c.applied_by_run = Some("r-writer".into());
        c.note = Some("written by run r-writer".into());
    }
    c
}

/// The fields every listed held change carries (`review --json`, `GET /review`).
pub const LISTED_FIELDS: [&str; 11] = [
    "id",
    "tenantId",
    "identifier",
    "agreementId",
    "additionId",
    "currentQuantity",
    "proposedQuantity",
    "rule",
    "runId",
    "month",
    "status",
];
