//! The console's own actions on the audit trail (logins, mappings, settings, sync
//! requests), named by the console session. They belong to no run and no product.

use crate::store::{AuditEntry, Store};

/// What the console did, for the audit trail.
pub struct ConsoleAction<'a> {
    pub actor: String,
    /// e.g. "consoleLogin", "setMapping", "updateSettings", "requestSync".
    pub action: &'a str,
    pub tenant_id: Option<&'a str>,
    pub agreement_id: Option<i64>,
    pub detail: String,
}

/// Appends the entry. A failure is logged and returned: a change the trail cannot
/// record is reported to the operator rather than passed over in silence.
pub async fn record(
    store: &dyn Store,
    action: ConsoleAction<'_>,
) -> Result<(), crate::store::StoreError> {
    let entry = AuditEntry {
        run_id: String::new(),
        // Orders entries of one instant; console entries have no run to count in.
        seq: rand_seq(),
        at: chrono::Utc::now(),
        actor: action.actor,
        action: action.action.to_owned(),
        tenant_id: action.tenant_id.map(str::to_owned),
        agreement_id: action.agreement_id,
        identifier: String::new(),
        entity_id: None,
        old_quantity: None,
        new_quantity: None,
        detail: Some(action.detail),
    };
    store.append_audit(&entry).await.inspect_err(|e| {
        tracing::error!(error = %e, action = %entry.action, "console: cannot append to the audit trail");
    })
}

fn rand_seq() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32
}
