//! The console's own actions on the audit trail (logins, sync requests), named by
//! the console session. They belong to no run and no product. Changes of mappings
//! and settings are recorded by their use cases (`crate::app::changes`).

use crate::store::Store;

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
    crate::app::changes::append(
        store,
        &action.actor,
        action.action,
        action.tenant_id,
        action.agreement_id,
        action.detail,
    )
    .await
}
