//! One customer's part of a cycle: turn its resolution (mapping, company,
//! agreement) into its report, remember a newly discovered mapping, report its
//! unmapped product codes, read its agreement's additions and carry out the plan
//! for each selected product (the writes themselves are in `additions`).

use super::review::CustomerReview;
use super::{Ctx, CycleError, Reads, write_error};
use crate::connectwise::model::Agreement;
use crate::store::{AdditionRecord, Mapping, MappingKind};
use crate::sync::plan::{self, AdditionRules, Resolution, TenantUsage};
use crate::sync::report::*;
use chrono::Utc;

impl Ctx<'_> {
    pub(super) async fn sync_customer(
        &self,
        tenant: &crate::sophos::model::Tenant,
        resolution: Resolution,
        reads: &Reads,
        rules: &AdditionRules<'_>,
    ) -> Result<CustomerReport, CycleError> {
        let mut c = CustomerReport {
            tenant_id: tenant.id.clone(),
            tenant_name: tenant.name.clone(),
            status: CustomerState::Synced,
            reason: None,
            company_id: None,
            company_identifier: None,
            company_name: None,
            agreement_id: None,
            agreement_name: None,
            agreement_type: None,
            products: Vec::new(),
            errors: Vec::new(),
        };
        let (company, agreement, newly_discovered) = match resolution {
            Resolution::Ignored(reason) => {
                self.close_unsynced(&tenant.id, &reason).await?;
                c.status = CustomerState::Ignored;
                c.reason = Some(reason);
                return Ok(c);
            }
            Resolution::Unmapped(e) => {
                self.close_unsynced(&tenant.id, &e.message).await?;
                c.status = CustomerState::Unmapped;
                c.reason = Some(e.message.clone());
                c.errors.push(e);
                return Ok(c);
            }
            Resolution::AgreementProblem(company, e) => {
                self.close_unsynced(&tenant.id, &e.message).await?;
                c.company_id = Some(company.id);
                c.company_identifier = Some(company.identifier);
                c.company_name = Some(company.name);
                c.status = CustomerState::Unmapped;
                c.reason = Some(e.message.clone());
                c.errors.push(e);
                return Ok(c);
            }
            Resolution::Mapped {
                company,
                agreement,
                newly_discovered,
            } => (company, agreement, newly_discovered),
        };
        c.company_id = Some(company.id);
        c.company_identifier = Some(company.identifier.clone());
        c.company_name = Some(company.name.clone());
        c.agreement_id = Some(agreement.id);
        c.agreement_name = Some(agreement.name.clone());
        c.agreement_type = agreement
            .agreement_type
            .as_ref()
            .and_then(|t| t.name.clone());
        if newly_discovered && !self.opts.dry_run {
            let kind = reads
                .mappings
                .get(&tenant.id)
                .map(|m| m.kind)
                .unwrap_or(MappingKind::Discovered);
            let mapping = Mapping {
                tenant_id: tenant.id.clone(),
                kind,
                company_id: Some(company.id),
                agreement_id: Some(agreement.id),
                updated_at: Utc::now(),
            };
            self.engine.store.put_mapping(&mapping).await?;
        }
        let usage: Option<&TenantUsage> =
            reads.usage.as_ref().and_then(|u| u.tenants.get(&tenant.id));
        if let Some(u) = usage {
            for product in u.unmapped_codes.values() {
                c.errors
                    .push(ErrorReport::unmapped_product(product.clone()));
            }
        }
        // A month without usage data (404) changes nothing: unknown is not zero.
        if reads.usage.is_some() && !rules.selected.is_empty() {
            let newly_mapped = newly_discovered && !reads.mappings.contains_key(&tenant.id)
                || first_billing(tenant, reads);
            self.sync_additions(
                tenant,
                &agreement,
                usage,
                newly_mapped,
                reads,
                rules,
                &mut c,
            )
            .await?;
        }
        if !c.errors.is_empty() {
            c.status = CustomerState::Error;
        } else if c.products.iter().any(|p| p.action == ProductAction::Hold) {
            c.status = CustomerState::Review;
        }
        Ok(c)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_additions(
        &self,
        tenant: &crate::sophos::model::Tenant,
        agreement: &Agreement,
        usage: Option<&TenantUsage>,
        newly_mapped: bool,
        reads: &Reads,
        rules: &AdditionRules<'_>,
        c: &mut CustomerReport,
    ) -> Result<(), CycleError> {
        let additions = match self.cw.additions(agreement.id).await {
            Ok(a) => a,
            Err(e) => {
                c.errors.push(write_error(&e));
                return Ok(());
            }
        };
        let records: &[AdditionRecord] = reads.records.get(&tenant.id).map_or(&[], Vec::as_slice);
        if !self.opts.dry_run {
            for r in plan::cancelled_records(&additions, records) {
                self.forget_cancelled(tenant, agreement, r).await?;
            }
        }
        let plans = plan::plan_additions(usage, &additions, records, rules);
        if !self.review_active {
            for p in plans {
                let product = self.carry_out(tenant, agreement, &additions, &p, c).await?;
                c.products.push(product);
            }
            return Ok(());
        }
        let review = CustomerReview {
            tenant,
            agreement,
            usage,
            newly_mapped,
            held: self.held_of(&tenant.id).await?,
        };
        for p in &plans {
            let product = self.reviewed(&review, &additions, p, c).await?;
            c.products.push(product);
        }
        self.settle_unplanned(&review, &plans).await?;
        Ok(())
    }
}

/// A customer billed for the first time: mapped by hand (or remembered) but no
/// addition of it is remembered yet. With a mapping discovered in this run, this
/// is what the `newlyMapped` review rule means by "mapped for the first time".
fn first_billing(tenant: &crate::sophos::model::Tenant, reads: &Reads) -> bool {
    reads
        .mappings
        .get(&tenant.id)
        .is_some_and(|m| m.kind == MappingKind::Manual)
        && !reads.records.contains_key(&tenant.id)
}
