//! The addition writes of a cycle: create (verified when its answer is lost),
//! update, zero, cancel and adopt an agreement's additions as a product's plan
//! says, and put each write on the audit trail before the store remembers it.

use super::verified_create::{ReadBack, Verified, create_verified};
use super::{AuditDraft, Ctx, CycleError, write_error};
use crate::connectwise::model::{Addition, Agreement, NewAddition, PatchOp, Reference};
use crate::domain::products;
use crate::http::ApiError;
use crate::store::{AdditionChange, AdditionRecord, StoreResult};
use crate::sync::plan::{AdditionOp, ProductPlan};
use crate::sync::report::*;
use chrono::Utc;

impl Ctx<'_> {
    /// Puts a cancel the store missed on the trail (old: the remembered quantity),
    /// then forgets the addition.
    pub(super) async fn forget_cancelled(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        record: &AdditionRecord,
    ) -> StoreResult<()> {
        let d = AuditDraft {
            action: "reconcileAddition",
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &record.identifier,
            entity_id: Some(record.addition_id),
            old: Some(record.quantity),
            new: None,
        };
        self.forget_addition(d, tenant).await
    }

    pub(super) async fn carry_out(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        additions: &[Addition],
        p: &ProductPlan,
        c: &mut CustomerReport,
    ) -> Result<ProductReport, CycleError> {
        let mut out = ProductReport {
            identifier: p.identifier.clone(),
            sophos_quantity: p.sophos_quantity,
            previous_quantity: None,
            new_quantity: None,
            addition_id: None,
            action: ProductAction::Skip,
            proposed_quantity: None,
            held_change_id: None,
            review_rule: None,
        };
        let dry = self.opts.dry_run;
        let draft = |action, entity_id, old, new| AuditDraft {
            action,
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &p.identifier,
            entity_id,
            old,
            new,
        };
        if let (Some(remembered), Some((addition_id, current)), false) =
            (p.drifted_from, p.op.existing(), dry)
        {
            // The store is behind ConnectWise (a write whose bookkeeping a crash cut
            // off, or a hand edit): catch up first, so the trail says it once.
            let product_id = product_of(additions, addition_id);
            self.record_addition(
                draft(
                    "reconcileAddition",
                    Some(addition_id),
                    Some(remembered),
                    Some(current),
                ),
                tenant,
                agreement,
                addition_id,
                product_id,
                current,
            )
            .await?;
        }
        match &p.op {
            AdditionOp::Create {
                product_id,
                quantity,
                effective_date,
            } => {
                out.new_quantity = Some(*quantity);
                out.action = ProductAction::Create;
                let Some(product_id) = product_id.filter(|_| !dry) else {
                    return Ok(out);
                };
                let new = NewAddition {
                    product: Reference::id(product_id),
                    quantity: *quantity,
                    bill_customer: "Billable".into(),
                    effective_date: effective_date.clone(),
                    invoice_description: products::description(&p.identifier).map(str::to_owned),
                };
                self.create(tenant, agreement, p, &new, &mut out, c).await?;
            }
            AdditionOp::Update {
                addition_id,
                old,
                new,
            } => {
                let zero = *new == 0.0;
                out.previous_quantity = Some(*old);
                out.new_quantity = Some(*new);
                out.addition_id = Some(*addition_id);
                out.action = if zero {
                    ProductAction::Zero
                } else {
                    ProductAction::Update
                };
                if dry
                    || !self
                        .patch(
                            agreement,
                            *addition_id,
                            PatchOp::replace("quantity", *new),
                            &mut out,
                            c,
                        )
                        .await?
                {
                    return Ok(out);
                }
                let product_id = product_of(additions, *addition_id);
                let action = if zero {
                    "zeroAddition"
                } else {
                    "updateAddition"
                };
                self.record_addition(
                    draft(action, Some(*addition_id), Some(*old), Some(*new)),
                    tenant,
                    agreement,
                    *addition_id,
                    product_id,
                    *new,
                )
                .await?;
            }
            AdditionOp::Cancel {
                addition_id,
                old,
                cancelled_date,
            } => {
                out.previous_quantity = Some(*old);
                out.new_quantity = Some(*old);
                out.addition_id = Some(*addition_id);
                out.action = ProductAction::Cancel;
                let op = PatchOp::replace("cancelledDate", cancelled_date.as_str());
                if dry || !self.patch(agreement, *addition_id, op, &mut out, c).await? {
                    return Ok(out);
                }
                self.forget_addition(
                    draft("cancelAddition", Some(*addition_id), Some(*old), None),
                    tenant,
                )
                .await?;
            }
            AdditionOp::Unchanged {
                addition_id,
                quantity,
            } => {
                out.previous_quantity = Some(*quantity);
                out.new_quantity = Some(*quantity);
                out.addition_id = Some(*addition_id);
                out.action = if p.adopted {
                    ProductAction::Adopt
                } else {
                    ProductAction::Unchanged
                };
                if p.adopted && !dry {
                    let product_id = product_of(additions, *addition_id);
                    self.record_addition(
                        draft(
                            "adoptAddition",
                            Some(*addition_id),
                            Some(*quantity),
                            Some(*quantity),
                        ),
                        tenant,
                        agreement,
                        *addition_id,
                        product_id,
                        *quantity,
                    )
                    .await?;
                }
            }
            AdditionOp::Ambiguous { addition_ids } => {
                c.errors.push(ErrorReport::new(
                    ErrorCode::AdditionAmbiguous,
                    format!(
                        "agreement {} has {} active additions of {} (ids {:?}); none was changed",
                        agreement.id,
                        addition_ids.len(),
                        p.identifier,
                        addition_ids
                    ),
                ));
            }
            AdditionOp::CatalogUnavailable => {
                c.errors.push(ErrorReport::new(
                    ErrorCode::CatalogSetup,
                    format!(
                        "no usable catalog item for {}; see the run's catalog errors",
                        p.identifier
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Creates an addition (verified, see `create_verified`) and puts the outcome
    /// in the report, on the trail and in the store.
    async fn create(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        p: &ProductPlan,
        new: &NewAddition,
        out: &mut ProductReport,
        c: &mut CustomerReport,
    ) -> Result<(), CycleError> {
        let product_id = new.product.id.unwrap_or_default();
        let wanted = new.quantity;
        let created = self.create_verified(agreement.id, new).await?;
        let draft = |action, id, old, new| AuditDraft {
            action,
            tenant_id: Some(&tenant.id),
            agreement_id: Some(agreement.id),
            identifier: &p.identifier,
            entity_id: Some(id),
            old,
            new,
        };
        let found = match created {
            Created::Answered(created) => {
                out.addition_id = Some(created.id);
                let d = draft("createAddition", created.id, None, Some(wanted));
                self.record_addition(d, tenant, agreement, created.id, product_id, wanted)
                    .await?;
                return Ok(());
            }
            Created::FoundOnReadBack(found) => found,
            Created::Ambiguous(ids) => {
                out.action = ProductAction::Skip;
                c.errors.push(ErrorReport::new(
                    ErrorCode::AdditionAmbiguous,
                    format!(
                        "the answer to creating {} on agreement {} was lost, and reading back found {} active additions of it (ids {ids:?}); none was changed",
                        p.identifier,
                        agreement.id,
                        ids.len()
                    ),
                ));
                return Ok(());
            }
            Created::Failed(e) => {
                self.failed(out, c, &e);
                return Ok(());
            }
        };
        // The answer was lost but the read-back shows the addition: adopted, so
        // the customer is in step in this run.
        let current = found.quantity.unwrap_or(0.0);
        out.action = ProductAction::Adopt;
        out.addition_id = Some(found.id);
        out.new_quantity = Some(current);
        let d = draft("adoptAddition", found.id, None, Some(current));
        self.record_addition(d, tenant, agreement, found.id, product_id, current)
            .await?;
        if (current - wanted).abs() < 1e-9 {
            return Ok(());
        }
        // Someone else's, with another quantity: set ours.
        out.previous_quantity = Some(current);
        out.new_quantity = Some(wanted);
        out.action = ProductAction::Update;
        let op = PatchOp::replace("quantity", wanted);
        if self.patch(agreement, found.id, op, out, c).await? {
            let d = draft("updateAddition", found.id, Some(current), Some(wanted));
            self.record_addition(d, tenant, agreement, found.id, product_id, wanted)
                .await?;
        }
        Ok(())
    }

    /// Creates an addition; when the answer is lost (a 5xx, a timeout, a broken
    /// connection or a body cut short, see `ApiError::outcome_unknown`) it reads
    /// the agreement's additions back before deciding, because ConnectWise has no
    /// idempotency key and a blind repeat could bill twice. Found once: that is
    /// the addition (adopted). Not found: the POST did not land, so it is sent
    /// again. Found several: nothing is written (ambiguous). A read-back that
    /// fails ends it with the POST's error.
    ///
    /// The budget is the client's own: at most `HttpPolicy::max_retries + 1` POSTs
    /// in all (each may itself be retried by the HTTP layer only where it surely
    /// did not reach ConnectWise: 429, refused connection), each lost answer
    /// followed by one backoff wait and one read-back (a GET with the normal
    /// retries). Only a POST that landed counts as a write.
    async fn create_verified(
        &self,
        agreement_id: i64,
        new: &NewAddition,
    ) -> Result<Created, CycleError> {
        let cw = &self.cw;
        let policy = cw.policy();
        let ended = create_verified(
            policy,
            "addition",
            || cw.create_addition(agreement_id, new),
            || async move {
                let additions = cw.additions(agreement_id).await?;
                let mut same: Vec<Addition> = additions
                    .into_iter()
                    .filter(|a| a.is_active() && a.product_id() == new.product.id)
                    .collect();
                Ok(match same.len() {
                    0 => ReadBack::Nothing,
                    1 => ReadBack::One(same.remove(0)),
                    _ => ReadBack::Several(same.iter().map(|a| a.id).collect()),
                })
            },
        )
        .await;
        Ok(match ended {
            Verified::Answered(created) => {
                self.wrote()?;
                Created::Answered(created)
            }
            Verified::FoundOnReadBack(found) => {
                // The plan saw none of this product, so one now is ours if it
                // carries our quantity (a write). One with another quantity was
                // made by someone else and ours did not land (else there would
                // be two): adopted all the same, and `create` sets our quantity.
                let quantity = found.quantity.unwrap_or(0.0);
                if (quantity - new.quantity).abs() < 1e-9 {
                    self.wrote()?;
                }
                Created::FoundOnReadBack(found)
            }
            Verified::Ambiguous(ids) => Created::Ambiguous(ids),
            Verified::Refused(e) => Created::Failed(e),
            Verified::Unverified { lost, read } => Created::Failed(with_note(
                lost,
                &format!("reading the additions back failed too ({read})"),
            )),
            Verified::NotLanded { lost, attempts } => {
                let note = format!("{attempts} creates did not land (read back after each)");
                Created::Failed(with_note(lost, &note))
            }
        })
    }

    /// PATCHes one field of an addition: true when written, false when ConnectWise
    /// refused it (the error is in the customer's report).
    async fn patch(
        &self,
        agreement: &Agreement,
        addition_id: i64,
        op: PatchOp,
        out: &mut ProductReport,
        c: &mut CustomerReport,
    ) -> Result<bool, CycleError> {
        match self
            .cw
            .patch_addition(agreement.id, addition_id, &[op])
            .await
        {
            Ok(_) => {
                self.wrote()?;
                Ok(true)
            }
            Err(e) => {
                self.failed(out, c, &e);
                Ok(false)
            }
        }
    }

    fn failed(&self, out: &mut ProductReport, c: &mut CustomerReport, e: &ApiError) {
        out.action = ProductAction::Skip;
        c.errors.push(write_error(e));
    }

    /// Puts a change on the trail and remembers the addition as it now stands,
    /// never the memory before the trail (see `audit` and `Store::audit_addition`).
    async fn record_addition(
        &self,
        d: AuditDraft<'_>,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        addition_id: i64,
        product_id: i64,
        quantity: f64,
    ) -> StoreResult<()> {
        let record = AdditionRecord {
            tenant_id: tenant.id.clone(),
            identifier: d.identifier.to_owned(),
            agreement_id: agreement.id,
            addition_id,
            product_id,
            quantity,
            updated_at: Utc::now(),
        };
        self.engine
            .store
            .audit_addition(&self.audit_entry(d), AdditionChange::Remember(&record))
            .await
    }

    /// Puts a change on the trail and forgets the addition, never the memory
    /// before the trail (see `audit` and `Store::audit_addition`).
    async fn forget_addition(
        &self,
        d: AuditDraft<'_>,
        tenant: &crate::sophos::model::Tenant,
    ) -> StoreResult<()> {
        let forget = AdditionChange::Forget {
            tenant_id: &tenant.id,
            identifier: d.identifier,
        };
        self.engine
            .store
            .audit_addition(&self.audit_entry(d), forget)
            .await
    }
}

/// How a verified addition create ended (see `Ctx::create_verified`).
enum Created {
    /// ConnectWise answered with the new addition.
    Answered(Addition),
    /// The answer was lost; reading back found exactly one active addition of
    /// the product.
    FoundOnReadBack(Addition),
    /// The answer was lost; reading back found several: none is touched.
    Ambiguous(Vec<i64>),
    /// Refused, or not verifiable (the read-back failed, or the budget ran out).
    Failed(ApiError),
}

/// The POST's error with what the read-back found, for the customer's report.
fn with_note(mut e: ApiError, note: &str) -> ApiError {
    e.message = format!("{}; {note}", e.message);
    e
}

fn product_of(additions: &[Addition], addition_id: i64) -> i64 {
    additions
        .iter()
        .find(|a| a.id == addition_id)
        .and_then(Addition::product_id)
        .unwrap_or_default()
}
