//! One customer's part of a cycle: turn its resolution (mapping, company,
//! agreement) into its report, remember a newly discovered mapping, report its
//! unmapped product codes, read its agreement's additions and carry out the plan
//! for each selected product (the writes themselves are in `additions`).

use super::review::CustomerReview;
use super::{Ctx, CycleError, Reads, write_error};
use crate::connectwise::model::Agreement;
use crate::store::{AdditionRecord, Mapping, MappingKind};
use crate::sync::plan::ProductPlan;
use crate::sync::plan::{self, AdditionRules, Resolution, TenantUsage};
use crate::sync::report::*;
use chrono::Utc;
use std::sync::atomic::Ordering;

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
            let records = self.engine.store.list_additions_of(&tenant.id).await?;
            let newly_mapped = newly_discovered && !reads.mappings.contains_key(&tenant.id)
                || first_billing(tenant, reads, &records);
            let customer = CustomerAdditions {
                tenant,
                agreement: &agreement,
                usage,
                records: &records,
                newly_mapped,
            };
            self.sync_additions(&customer, rules, &mut c).await?;
        }
        if !c.errors.is_empty() {
            c.status = CustomerState::Error;
        } else if c.products.iter().any(|p| p.action == ProductAction::Hold) {
            c.status = CustomerState::Review;
        }
        Ok(c)
    }

    async fn sync_additions(
        &self,
        customer: &CustomerAdditions<'_>,
        rules: &AdditionRules<'_>,
        c: &mut CustomerReport,
    ) -> Result<(), CycleError> {
        let CustomerAdditions {
            tenant,
            agreement,
            usage,
            records,
            newly_mapped,
        } = *customer;
        let additions = match self.cw.additions(agreement.id).await {
            Ok(a) => a,
            Err(e) => {
                c.errors.push(write_error(&e));
                return Ok(());
            }
        };
        if !self.opts.dry_run {
            for r in plan::cancelled_records(&additions, records) {
                self.forget_cancelled(tenant, agreement, r).await?;
            }
        }
        let plans = plan::plan_additions(usage, &additions, records, rules);
        let held_back = self.lowering_held.load(Ordering::SeqCst);
        if !self.review_active {
            for p in plans {
                let product = match plan::lowered_to(&p).filter(|_| held_back) {
                    Some(proposed) => guarded(&p, proposed, c),
                    None => self.carry_out(tenant, agreement, &additions, &p, c).await?,
                };
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
            // Held back before the review: nothing is lowered, so nothing is
            // proposed either; a held change of it waits as it is (still planned,
            // so `settle_unplanned` leaves it open).
            let product = match plan::lowered_to(p).filter(|_| held_back) {
                Some(proposed) => guarded(p, proposed, c),
                None => self.reviewed(&review, &additions, p, c).await?,
            };
            c.products.push(product);
        }
        self.settle_unplanned(&review, &plans).await?;
        Ok(())
    }
}

/// A customer billed for the first time: mapped by hand (or remembered) but no
/// addition of it is remembered yet. With a mapping discovered in this run, this
/// is what the `newlyMapped` review rule means by "mapped for the first time".
fn first_billing(
    tenant: &crate::sophos::model::Tenant,
    reads: &Reads,
    records: &[AdditionRecord],
) -> bool {
    reads
        .mappings
        .get(&tenant.id)
        .is_some_and(|m| m.kind == MappingKind::Manual)
        && records.is_empty()
}

/// What one mapped customer's additions are planned from.
#[derive(Clone, Copy)]
struct CustomerAdditions<'a> {
    tenant: &'a crate::sophos::model::Tenant,
    agreement: &'a Agreement,
    usage: Option<&'a TenantUsage>,
    /// The store's remembered additions of this tenant.
    records: &'a [AdditionRecord],
    newly_mapped: bool,
}

/// The report of a product whose lower quantity the usage drop guard held back:
/// ConnectWise keeps what it holds, `proposedQuantity` says what the plan would
/// have set, and the customer's reason says why.
fn guarded(p: &ProductPlan, proposed: f64, c: &mut CustomerReport) -> ProductReport {
    let (addition_id, current) = p.op.existing().unzip();
    c.reason = Some(GUARDED_REASON.to_owned());
    ProductReport {
        identifier: p.identifier.clone(),
        sophos_quantity: p.sophos_quantity,
        previous_quantity: current,
        new_quantity: current,
        addition_id,
        action: ProductAction::Guarded,
        proposed_quantity: Some(proposed),
        held_change_id: None,
        review_rule: None,
    }
}

const GUARDED_REASON: &str = "not lowered: Sophos' usage report lists far fewer customers with usage than the last comparable run (see the run's USAGE_REPORT_SHRANK warning), so this customer's lower quantities were left as they are. If the drop is real, accept it for one run: console: tick \"Accept the usage drop\" beside Sync now; API: POST /sync {\"acceptUsageDrop\": true}; CLI: `sophos-cw-sync sync --accept-usage-drop`";
