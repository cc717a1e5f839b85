//! Changes held for review: which planned addition changes a `review` rule holds
//! instead of writing, and what a person's approve or reject does to a held change.
//!
//! Pure functions, like `plan`: the engine reads the customer's held changes and
//! ConnectWise, asks [`judge`] what to do with each product's plan, and carries it
//! out; [`decide`] is the one place a decision is taken (CLI, API, Lambda and console
//! all call it).

mod decide;

pub use decide::{Decision, DecisionOutcome, decide};

use crate::config::ReviewPolicy;
use crate::domain::month::Month;
use crate::store::{HeldChange, HeldOp, HeldStatus, HeldUsageLine, ReviewRule};
use crate::sync::plan::{AdditionOp, ProductPlan};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// How many usage lines a held change keeps as its evidence.
pub const MAX_LINES: usize = 50;

/// How long a held change's record is kept after its month ends (DynamoDB TTL).
pub const RETENTION_DAYS: i64 = 90;

/// One held change per month, customer and product: `2026-11-3fa92c01be7d`. The
/// same inputs give the same id in every run and process, so concurrent or repeated
/// runs update one record instead of making two.
pub fn held_change_id(month: Month, tenant_id: &str, identifier: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant_id.as_bytes());
    hash.update([0]);
    hash.update(identifier.to_ascii_lowercase().as_bytes());
    format!("{month}-{}", hex::encode(&hash.finalize()[..6]))
}

/// A quantity in words: f64's Display already drops a whole number's decimals.
fn q(v: f64) -> String {
    v.to_string()
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A planned change to an agreement: what ConnectWise holds and what the plan
/// would write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub op: HeldOp,
    pub addition_id: Option<i64>,
    pub product_id: Option<i64>,
    pub current: f64,
    pub proposed: f64,
}

impl Change {
    /// The change a plan makes, if it makes one.
    pub fn of(plan: &ProductPlan) -> Option<Change> {
        match &plan.op {
            AdditionOp::Create {
                product_id,
                quantity,
                ..
            } => Some(Change {
                op: HeldOp::Create,
                addition_id: None,
                product_id: *product_id,
                current: 0.0,
                proposed: *quantity,
            }),
            AdditionOp::Update {
                addition_id,
                old,
                new,
            } => Some(Change {
                op: if *new == 0.0 {
                    HeldOp::Zero
                } else {
                    HeldOp::Update
                },
                addition_id: Some(*addition_id),
                product_id: None,
                current: *old,
                proposed: *new,
            }),
            AdditionOp::Cancel {
                addition_id, old, ..
            } => Some(Change {
                op: HeldOp::Cancel,
                addition_id: Some(*addition_id),
                product_id: None,
                current: *old,
                proposed: 0.0,
            }),
            _ => None,
        }
    }
}

/// The first rule of `policy` that `change` matches, with why in words. Checked in
/// the order of the README's table, so one change names one rule.
pub fn rule_for(
    policy: &ReviewPolicy,
    change: &Change,
    newly_mapped: bool,
) -> Option<(ReviewRule, String)> {
    let (from, to) = (change.current, change.proposed);
    let decrease = from - to;
    if policy.zero_or_cancel == Some(true) && matches!(change.op, HeldOp::Zero | HeldOp::Cancel) {
        let what = if change.op == HeldOp::Cancel {
            format!("a cancellation (at {})", q(from))
        } else {
            format!("a drop to zero (from {})", q(from))
        };
        return Some((ReviewRule::ZeroOrCancel, what));
    }
    if let Some(n) = policy.decrease_over_units
        && decrease > n
    {
        return Some((
            ReviewRule::DecreaseOverUnits,
            format!(
                "a decrease of {} units (from {} to {}), more than {}",
                q(decrease),
                q(from),
                q(to),
                q(n)
            ),
        ));
    }
    if let Some(p) = policy.decrease_over_percent
        && from > 0.0
        && decrease / from * 100.0 > p
    {
        return Some((
            ReviewRule::DecreaseOverPercent,
            format!(
                "a decrease of {:.0}% (from {} to {}), more than {}%",
                decrease / from * 100.0,
                q(from),
                q(to),
                q(p)
            ),
        ));
    }
    if let Some(n) = policy.first_addition_over
        && change.op == HeldOp::Create
        && to > n
    {
        return Some((
            ReviewRule::FirstAdditionOver,
            format!("a first addition of {} units, more than {}", q(to), q(n)),
        ));
    }
    if let Some(n) = policy.quantity_over
        && to > n
    {
        return Some((
            ReviewRule::QuantityOver,
            format!(
                "a change to {} units (from {}), more than {}",
                q(to),
                q(from),
                q(n)
            ),
        ));
    }
    if policy.newly_mapped == Some(true) && newly_mapped {
        return Some((
            ReviewRule::NewlyMapped,
            format!(
                "a change (from {} to {}) on a customer mapped for the first time",
                q(from),
                q(to)
            ),
        ));
    }
    None
}

/// What the engine does with one product's plan, given its held change (if any).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write the plan as usual. `held`: an open held change this write settles (an
    /// approval being carried out, or a proposal no rule holds any more), to be
    /// stored as it stands after the write.
    Write { held: Option<HeldChange> },
    /// Do not write; store `held` (new or updated) when `store` is set (a held
    /// change already as it should be is not written again).
    Hold { held: HeldChange, store: bool },
    /// Do not write: this very proposal was rejected for the month.
    Rejected { held: HeldChange },
    /// No change planned; `close`: an open held change that closes by itself.
    Quiet { close: Option<HeldChange> },
}

/// Everything about the customer and run that a held change records.
pub struct Context<'a> {
    pub policy: &'a ReviewPolicy,
    pub month: Month,
    pub run_id: &'a str,
    pub now: DateTime<Utc>,
    pub tenant_id: &'a str,
    pub tenant_name: &'a str,
    pub company_id: Option<i64>,
    pub company_identifier: Option<&'a str>,
    pub agreement_id: i64,
    pub newly_mapped: bool,
    /// The usage lines behind the product's sum (made for this product only).
    pub lines: Vec<HeldUsageLine>,
}

/// Decides one product: `plan` is what the sync would do now (None: nothing at all),
/// `held` the product's held change of this month.
pub fn judge(
    ctx: &Context,
    identifier: &str,
    plan: Option<&ProductPlan>,
    held: Option<&HeldChange>,
) -> Verdict {
    let open = held.filter(|h| h.status.is_open());
    let Some(change) = plan.and_then(Change::of) else {
        // Nothing to write: usage is back at the ConnectWise quantity (or an
        // approved change is already there). An ambiguous or unavailable product
        // cannot be judged: its held change waits.
        let judgeable = plan.is_none_or(|p| matches!(p.op, AdditionOp::Unchanged { .. }));
        let close = open.filter(|_| judgeable).map(|h| {
            let at_proposal = plan
                .and_then(|p| p.op.existing())
                .is_some_and(|(_, q)| same(q, h.proposed_quantity));
            let (status, note) = if h.status == HeldStatus::Approved && at_proposal {
                (
                    HeldStatus::Applied,
                    "ConnectWise already holds the approved quantity",
                )
            } else {
                (
                    HeldStatus::Closed,
                    "usage came back to the quantity ConnectWise holds: nothing to change",
                )
            };
            settled(h, ctx, status, note)
        });
        return Verdict::Quiet { close };
    };
    if let Some(h) = held {
        let same_proposal = same(h.proposed_quantity, change.proposed);
        let same_current = same(h.current_quantity, change.current);
        if h.status == HeldStatus::Approved && same_proposal && same_current {
            return Verdict::Write {
                held: Some(settled(h, ctx, HeldStatus::Applied, "written as approved")),
            };
        }
        if h.rejected_quantities
            .iter()
            .any(|q| same(*q, change.proposed))
        {
            let mut kept = h.clone();
            if h.status.is_open() {
                // Usage moved back to a proposal rejected before: not asked again.
                kept = settled(
                    h,
                    ctx,
                    HeldStatus::Rejected,
                    "this proposal was rejected before",
                );
            }
            return Verdict::Rejected { held: kept };
        }
    }
    let Some((rule, reason)) = rule_for(ctx.policy, &change, ctx.newly_mapped) else {
        let held = open.map(|h| {
            settled(
                h,
                ctx,
                HeldStatus::Closed,
                "superseded: the new proposal needs no review and was written",
            )
        });
        return Verdict::Write { held };
    };
    // Back to review when the approval no longer fits what ConnectWise holds or
    // what usage says: an approval covers one proposal against one quantity.
    let note = held.and_then(|h| match h.status {
        HeldStatus::Approved if !same(h.current_quantity, change.current) => Some(format!(
            "back to review: ConnectWise changed meanwhile (from {} to {})",
            q(h.current_quantity),
            q(change.current)
        )),
        HeldStatus::Approved => Some(format!(
            "back to review: usage changed after the approval (proposal {} now {})",
            q(h.proposed_quantity),
            q(change.proposed)
        )),
        _ => h.note.clone().filter(|_| h.status == HeldStatus::Held),
    });
    let proposal = proposed(ctx, identifier, &change, rule, reason, note, held);
    let store = held.is_none_or(|h| !unchanged_hold(h, &proposal));
    Verdict::Hold {
        held: proposal,
        store,
    }
}

/// Whether `before` already holds `after`'s proposal (only the run id and times
/// would change): a second run then writes nothing.
fn unchanged_hold(before: &HeldChange, after: &HeldChange) -> bool {
    before.status == HeldStatus::Held
        && same(before.proposed_quantity, after.proposed_quantity)
        && same(before.current_quantity, after.current_quantity)
        && before.rule == after.rule
        && before.op == after.op
        && before.addition_id == after.addition_id
        && before.usage_lines == after.usage_lines
}

fn proposed(
    ctx: &Context,
    identifier: &str,
    change: &Change,
    rule: ReviewRule,
    reason: String,
    note: Option<String>,
    held: Option<&HeldChange>,
) -> HeldChange {
    let lines: Vec<HeldUsageLine> = ctx.lines.iter().take(MAX_LINES).cloned().collect();
    let omitted = ctx.lines.len().saturating_sub(MAX_LINES) as u64;
    HeldChange {
        id: held_change_id(ctx.month, ctx.tenant_id, identifier),
        month: ctx.month.to_string(),
        tenant_id: ctx.tenant_id.to_owned(),
        tenant_name: ctx.tenant_name.to_owned(),
        company_identifier: ctx.company_identifier.map(str::to_owned),
        company_id: ctx.company_id,
        agreement_id: ctx.agreement_id,
        addition_id: change.addition_id,
        identifier: identifier.to_owned(),
        product_id: change.product_id.or(held.and_then(|h| h.product_id)),
        op: change.op,
        current_quantity: change.current,
        proposed_quantity: change.proposed,
        usage_lines: lines,
        usage_lines_omitted: omitted,
        rule,
        reason,
        run_id: ctx.run_id.to_owned(),
        status: HeldStatus::Held,
        rejected_quantities: held
            .map(|h| h.rejected_quantities.clone())
            .unwrap_or_default(),
        decided_by: None,
        decided_at: None,
        applied_by_run: None,
        note,
        created_at: held.map_or(ctx.now, |h| h.created_at),
        updated_at: ctx.now,
        expires_at: Some(expiry(ctx.month)),
        version: held.map_or(1, |h| h.version + 1),
    }
}

/// `h` as run `run_id` leaves it at `now`: `status` with why (an applied one
/// names the run).
fn settle(
    h: &HeldChange,
    run_id: &str,
    now: DateTime<Utc>,
    status: HeldStatus,
    note: &str,
) -> HeldChange {
    HeldChange {
        status,
        note: Some(note.to_owned()),
        applied_by_run: (status == HeldStatus::Applied).then(|| run_id.to_owned()),
        updated_at: now,
        version: h.version + 1,
        ..h.clone()
    }
}

fn settled(h: &HeldChange, ctx: &Context, status: HeldStatus, note: &str) -> HeldChange {
    settle(h, ctx.run_id, ctx.now, status, note)
}

/// A held change of an earlier month than the run's closes: a held change never
/// outlives its month (the new month's usage makes new proposals).
pub fn outlived(
    h: &HeldChange,
    month: Month,
    run_id: &str,
    now: DateTime<Utc>,
) -> Option<HeldChange> {
    let older = h.month.parse::<Month>().is_ok_and(|m| m < month);
    if !older {
        return None;
    }
    let note = format!(
        "its month {} is over (the run of {month} plans afresh)",
        h.month
    );
    closed(h, run_id, now, &note)
}

/// An open held change closed by run `run_id` for `note` (its month ended, or its
/// customer or product left the sync).
pub fn closed(h: &HeldChange, run_id: &str, now: DateTime<Utc>, note: &str) -> Option<HeldChange> {
    h.status.is_open().then(|| HeldChange {
        run_id: run_id.to_owned(),
        ..settle(h, run_id, now, HeldStatus::Closed, note)
    })
}

/// When a held change of `month` may be dropped from the store.
pub fn expiry(month: Month) -> DateTime<Utc> {
    let last = month.last_day();
    last.and_hms_opt(23, 59, 59)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now)
        + chrono::Duration::days(RETENTION_DAYS)
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
