//! The review half of a customer's additions: read the customer's held changes of
//! the month, let `sync::review::judge` decide each product's plan, and keep the
//! held changes as the run leaves them. The writes themselves stay in `additions`.

use super::{AuditDraft, Ctx, CycleError};
use crate::config::ReviewPolicy;
use crate::connectwise::model::{Addition, Agreement};
use crate::domain::month::Month;
use crate::sophos::model::Tenant;
use crate::store::{HeldChange, Store, StoreResult};
use crate::sync::plan::{ProductPlan, TenantUsage};
use crate::sync::report::*;
use crate::sync::review::{self, Verdict};
use std::collections::BTreeMap;

/// What one customer's review needs to know beyond its plans.
pub(super) struct CustomerReview<'a> {
    pub tenant: &'a Tenant,
    pub agreement: &'a Agreement,
    pub usage: Option<&'a TenantUsage>,
    pub newly_mapped: bool,
    /// The customer's held changes of the run's month, by product identifier.
    pub held: BTreeMap<String, HeldChange>,
}

/// Whether a run looks at held changes at all: the policy holds something, or
/// changes are still open (approved ones wait to be written even after the policy
/// is switched off). One small read per run.
pub(super) async fn active(store: &dyn Store, policy: &ReviewPolicy) -> StoreResult<bool> {
    if !policy.is_off() {
        return Ok(true);
    }
    let open = store.list_held_changes(true, 1, None).await?;
    Ok(!open.items.is_empty() || open.next.is_some())
}

impl Ctx<'_> {
    /// Closes the open held changes of earlier months (a held change never outlives
    /// its month), a page at a time. Not in a dry run.
    pub(super) async fn close_outlived(&self) -> StoreResult<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        let store = self.engine.store;
        // The month still being closed (`monthClose`) keeps its held changes open
        // until its close period ends, even when a run of the new month comes first.
        let settings = self.engine.settings;
        let (now, tz) = (self.opts.now(), settings.tz());
        let closing = Month::in_close(now, tz, settings.month_close)
            .then(|| Month::of(now, tz).previous().to_string());
        // Ids begin with their month and list in descending order: starting after
        // the run's month reads only earlier months' changes.
        let mut after: Option<String> = Some(self.opts.month.to_string());
        loop {
            let page = store.list_held_changes(true, 200, after.as_deref()).await?;
            for h in page
                .items
                .iter()
                .filter(|h| Some(&h.month) != closing.as_ref())
            {
                if let Some(closed) =
                    review::outlived(h, self.opts.month, &self.opts.run_id, self.opts.now())
                {
                    // Lost to a decision made meanwhile: the next run closes it.
                    store.put_held_change(&closed, Some(h.version)).await?;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The customer's held changes of the month, one read for every known product
    /// (a product taken out of `products` may still have one, to be closed).
    pub(super) async fn held_of(
        &self,
        tenant_id: &str,
    ) -> StoreResult<BTreeMap<String, HeldChange>> {
        let month = self.opts.month;
        let ids: Vec<String> = crate::domain::products::PRODUCTS
            .iter()
            .map(|(identifier, _)| review::held_change_id(month, tenant_id, identifier))
            .collect();
        let mut held = BTreeMap::new();
        for chunk in ids.chunks(crate::store::MAX_HELD_IDS) {
            for h in self.engine.store.get_held_changes(chunk).await? {
                held.insert(h.identifier.clone(), h);
            }
        }
        Ok(held)
    }

    /// Closes the open held changes of a customer this run does not sync (ignored,
    /// unmapped, or its agreement unusable): nothing of it is written, and an
    /// approval would wait for nothing. A later run proposes again if it syncs.
    pub(super) async fn close_unsynced(&self, tenant_id: &str, why: &str) -> StoreResult<()> {
        if !self.review_active || self.opts.dry_run {
            return Ok(());
        }
        let note = format!("the customer is not synced any more: {why}");
        for h in self.held_of(tenant_id).await?.values() {
            if let Some(closed) = review::closed(h, &self.opts.run_id, self.opts.now(), &note) {
                self.keep_held(&closed).await?;
            }
        }
        Ok(())
    }

    /// Carries out one product's plan as the review allows, and keeps its held
    /// change as the run leaves it.
    pub(super) async fn reviewed(
        &self,
        r: &CustomerReview<'_>,
        additions: &[Addition],
        p: &ProductPlan,
        c: &mut CustomerReport,
    ) -> Result<ProductReport, CycleError> {
        let held = r.held.get(&p.identifier);
        let verdict = review::judge(
            &self.review_context(r, &p.identifier),
            &p.identifier,
            Some(p),
            held,
        );
        match verdict {
            Verdict::Write { held: settled } => {
                let errors = c.errors.len();
                let mut out = self
                    .carry_out(r.tenant, r.agreement, additions, p, c)
                    .await?;
                let written = out.action != ProductAction::Skip && c.errors.len() == errors;
                if let Some(h) = settled.filter(|_| written) {
                    out.held_change_id = Some(h.id.clone());
                    self.keep_held(&h).await?;
                }
                Ok(out)
            }
            Verdict::Quiet { close } => {
                let out = self
                    .carry_out(r.tenant, r.agreement, additions, p, c)
                    .await?;
                if let Some(h) = close {
                    self.keep_held(&h).await?;
                }
                Ok(out)
            }
            Verdict::Hold { held: h, store } => {
                if store && !self.opts.dry_run {
                    self.audit_hold(&h).await?;
                    self.keep_held(&h).await?;
                }
                Ok(not_written(p, &h, ProductAction::Hold))
            }
            Verdict::Rejected { held: h } => {
                if held.is_some_and(|before| before.status != h.status) {
                    self.keep_held(&h).await?;
                }
                Ok(not_written(p, &h, ProductAction::Rejected))
            }
        }
    }

    /// Closes the open held changes of products that have no plan at all this run
    /// (no usage and no addition left): nothing is left to review.
    pub(super) async fn settle_unplanned(
        &self,
        r: &CustomerReview<'_>,
        planned: &[ProductPlan],
    ) -> StoreResult<()> {
        for (identifier, h) in &r.held {
            if planned.iter().any(|p| &p.identifier == identifier) {
                continue;
            }
            if !self.engine.settings.products.contains(identifier) {
                let note = "the product is not among the selected products any more";
                if let Some(closed) = review::closed(h, &self.opts.run_id, self.opts.now(), note) {
                    self.keep_held(&closed).await?;
                }
                continue;
            }
            let verdict = review::judge(
                &self.review_context(r, identifier),
                identifier,
                None,
                Some(h),
            );
            if let Verdict::Quiet {
                close: Some(closed),
            } = verdict
            {
                self.keep_held(&closed).await?;
            }
        }
        Ok(())
    }

    fn review_context<'r>(
        &'r self,
        r: &'r CustomerReview<'_>,
        identifier: &str,
    ) -> review::Context<'r> {
        let lines = r.usage.map(|u| u.lines(identifier)).unwrap_or_default();
        review::Context {
            policy: &self.engine.settings.review,
            month: self.opts.month,
            run_id: &self.opts.run_id,
            now: self.opts.now(),
            tenant_id: &r.tenant.id,
            tenant_name: &r.tenant.name,
            company_id: r.agreement.company.as_ref().and_then(|co| co.id),
            company_identifier: r
                .agreement
                .company
                .as_ref()
                .and_then(|co| co.identifier.as_deref()),
            agreement_id: r.agreement.id,
            newly_mapped: r.newly_mapped,
            lines,
        }
    }

    /// Stores a held change over the version it was read at. Not in a dry run. A
    /// decision made meanwhile wins: the change is left as the person left it, and
    /// the next run judges again.
    async fn keep_held(&self, h: &HeldChange) -> StoreResult<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        let expected = h.version.checked_sub(1).filter(|v| *v > 0);
        if !self.engine.store.put_held_change(h, expected).await? {
            tracing::warn!(id = %h.id, "held change was decided while the run worked on it; left as decided");
        }
        Ok(())
    }

    /// A new or updated proposal goes on the trail (the evidence of why nothing was
    /// written).
    async fn audit_hold(&self, h: &HeldChange) -> StoreResult<()> {
        let d = AuditDraft {
            action: "holdChange",
            tenant_id: Some(&h.tenant_id),
            agreement_id: Some(h.agreement_id),
            identifier: &h.identifier,
            entity_id: h.addition_id,
            old: Some(h.current_quantity),
            new: Some(h.proposed_quantity),
        };
        self.audit(d).await
    }
}

/// The report of a product whose planned change was not written.
fn not_written(p: &ProductPlan, h: &HeldChange, action: ProductAction) -> ProductReport {
    ProductReport {
        identifier: p.identifier.clone(),
        sophos_quantity: p.sophos_quantity,
        previous_quantity: Some(h.current_quantity),
        new_quantity: Some(h.current_quantity),
        addition_id: h.addition_id,
        action,
        proposed_quantity: Some(h.proposed_quantity),
        held_change_id: Some(h.id.clone()),
        review_rule: Some(h.rule),
    }
}
