//! A person's approve or reject of held changes: the one implementation behind the
//! CLI, the HTTP API, the Lambda and the console. Each decision is a conditional
//! write over the version read (a run or another person deciding at the same time
//! is seen, never overwritten) and goes on the audit trail with who made it.

use crate::store::{AuditEntry, HeldChange, HeldStatus, Store, StoreResult};
use chrono::Utc;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    fn action(self) -> &'static str {
        match self {
            Decision::Approve => "approveChange",
            Decision::Reject => "rejectChange",
        }
    }
    fn verb(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        }
    }
}

/// What became of one id: the change as it now stands, or why nothing was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionOutcome {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<HeldChange>,
    /// Why the decision was refused (unknown id, already applied or closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DecisionOutcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// How many times a decision re-reads a change that was written meanwhile.
const ATTEMPTS: usize = 5;

/// Approves or rejects each of `ids` (duplicates once each), as `actor`. A store
/// failure stops at once (what was decided before it stays decided and audited).
pub async fn decide(
    store: &dyn Store,
    ids: &[String],
    decision: Decision,
    actor: &str,
) -> StoreResult<Vec<DecisionOutcome>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for id in ids
        .iter()
        .map(|i| i.trim())
        .filter(|i| seen.insert(i.to_owned()))
    {
        out.push(decide_one(store, id, decision, actor).await?);
    }
    Ok(out)
}

async fn decide_one(
    store: &dyn Store,
    id: &str,
    decision: Decision,
    actor: &str,
) -> StoreResult<DecisionOutcome> {
    let refused = |error: String| DecisionOutcome {
        id: id.to_owned(),
        change: None,
        error: Some(error),
    };
    for _ in 0..ATTEMPTS {
        let Some(before) = store.get_held_change(id).await? else {
            return Ok(refused(format!(
                "no held change has the id {id:?}: list them with `sophos-cw-sync review` (or GET /review)"
            )));
        };
        let after = match decided(&before, decision, actor) {
            Ok(None) => {
                return Ok(DecisionOutcome {
                    id: id.to_owned(),
                    change: Some(before),
                    error: None,
                });
            }
            Ok(Some(after)) => after,
            Err(e) => return Ok(refused(e)),
        };
        if store.put_held_change(&after, Some(before.version)).await? {
            store
                .append_audit(&audit_entry(&after, decision, actor))
                .await?;
            return Ok(DecisionOutcome {
                id: id.to_owned(),
                change: Some(after),
                error: None,
            });
        }
        // Written meanwhile (a run, or another person): decide on what is there now.
    }
    Ok(refused(format!(
        "held change {id} kept changing while being decided (a run is working on it): try again"
    )))
}

/// The change after `decision`; `Ok(None)` when it already stands so (a repeated
/// click or request); `Err` when the decision no longer applies.
fn decided(h: &HeldChange, decision: Decision, actor: &str) -> Result<Option<HeldChange>, String> {
    let wanted = match decision {
        Decision::Approve => HeldStatus::Approved,
        Decision::Reject => HeldStatus::Rejected,
    };
    if h.status == wanted {
        return Ok(None);
    }
    if matches!(h.status, HeldStatus::Applied | HeldStatus::Closed) {
        let status = serde_json::to_value(h.status).unwrap_or_default();
        return Err(format!(
            "held change {} is {} ({}): there is nothing left to {}",
            h.id,
            status.as_str().unwrap_or("over"),
            h.note.as_deref().unwrap_or("no longer open"),
            match decision {
                Decision::Approve => "approve",
                Decision::Reject => "reject",
            }
        ));
    }
    let mut after = h.clone();
    after.status = wanted;
    after.decided_by = Some(actor.to_owned());
    after.decided_at = Some(Utc::now());
    after.updated_at = Utc::now();
    after.version = h.version + 1;
    after.note = None;
    let proposal = h.proposed_quantity;
    let is_proposal = |q: &f64| (q - proposal).abs() < 1e-9;
    match decision {
        Decision::Reject => {
            if !after.rejected_quantities.iter().any(is_proposal) {
                after.rejected_quantities.push(proposal);
            }
        }
        // Approving a rejected change takes the rejection back.
        Decision::Approve => after.rejected_quantities.retain(|q| !is_proposal(q)),
    }
    Ok(Some(after))
}

fn audit_entry(h: &HeldChange, decision: Decision, actor: &str) -> AuditEntry {
    let at = Utc::now();
    AuditEntry {
        run_id: String::new(),
        seq: AuditEntry::seq_outside_run(),
        at,
        actor: actor.to_owned(),
        action: decision.action().to_owned(),
        tenant_id: Some(h.tenant_id.clone()),
        agreement_id: Some(h.agreement_id),
        identifier: h.identifier.clone(),
        entity_id: h.addition_id,
        old_quantity: Some(h.current_quantity),
        new_quantity: Some(h.proposed_quantity),
        detail: Some(format!(
            "{} held change {} of {} ({}: {})",
            decision.verb(),
            h.id,
            h.month,
            serde_json::to_value(h.rule)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            h.reason
        )),
    }
}
