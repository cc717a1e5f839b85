//! The catalog half of a cycle: find each selected product's catalog item (or the
//! partner's own item it is mapped to), create the missing ones with references
//! resolved the way ConnectWise scopes them, and verify a create whose answer was
//! lost before deciding to repeat it. The choices are pure (`sync::catalog`).

use super::verified_create::{ReadBack, Verified, create_verified};
use super::{AuditDraft, Ctx, CycleError, write_error};
use crate::config::Price;
use crate::connectwise::model::{CatalogItem, NewCatalogItem, Reference};
use crate::domain::products;
use crate::http::ApiError;
use crate::store::{CatalogRecord, StoreResult};
use crate::sync::catalog::{self, Scope, SetupTable};
use crate::sync::plan::{self, CatalogState};
use crate::sync::report::*;
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};

/// The ids of the setup records a new catalog item refers to.
struct CatalogRefs {
    product_type: i64,
    category: i64,
    subcategory: i64,
    unit_of_measure: i64,
    product_class: String,
}

/// How a catalog item came to exist in this run.
enum Made {
    /// ConnectWise answered the create.
    Created(i64),
    /// The answer was lost, but reading back found the item: it landed.
    Landed(i64),
}

impl Ctx<'_> {
    /// Finds or creates the catalog item of each selected product. An item that
    /// cannot be created (or a partner's own item that is missing) is reported and
    /// its product left alone this run.
    pub(super) async fn ensure_catalog(
        &self,
        selected: &BTreeSet<String>,
        found: &[CatalogItem],
        report: &mut RunReport,
    ) -> Result<BTreeMap<String, CatalogState>, CycleError> {
        let settings = self.engine.settings;
        let ours: BTreeSet<String> = selected
            .iter()
            .filter(|i| settings.own_catalog_item(i).is_none())
            .cloned()
            .collect();
        let mut states = plan::plan_catalog(&ours, found);
        for identifier in selected.difference(&ours) {
            let item = settings.own_catalog_item(identifier).unwrap_or(identifier);
            let (state, problem) = catalog::own_item_state(identifier, item, found);
            report.errors.extend(problem);
            states.insert(identifier.clone(), state);
        }
        let missing: Vec<String> = states
            .iter()
            .filter(|(_, s)| **s == CatalogState::Missing)
            .map(|(i, _)| i.clone())
            .collect();
        let remembered: BTreeMap<String, i64> = self
            .engine
            .store
            .list_catalog_items()
            .await?
            .into_iter()
            .map(|r| (r.identifier, r.catalog_item_id))
            .collect();
        let mut created = BTreeSet::new();
        if !missing.is_empty() && !self.opts.dry_run {
            let refs = self.catalog_refs().await;
            for identifier in missing {
                let outcome = match &refs {
                    Ok(r) => self.create_catalog_item(&identifier, r).await?,
                    Err(e) => Err(e.clone()),
                };
                let state = match outcome {
                    Ok(Made::Created(id) | Made::Landed(id)) => {
                        created.insert(identifier.clone());
                        CatalogState::Existing(id)
                    }
                    Err(e) => {
                        report.errors.push(e);
                        CatalogState::Unavailable
                    }
                };
                states.insert(identifier, state);
            }
        }
        for (identifier, state) in &states {
            let (catalog_item_id, action) = match state {
                CatalogState::Existing(id) if created.contains(identifier) => {
                    (Some(*id), CatalogAction::Create)
                }
                CatalogState::Existing(id) => {
                    if remembered.get(identifier) != Some(id) {
                        self.adopt_catalog_item(identifier, *id).await?;
                    }
                    (Some(*id), CatalogAction::Existing)
                }
                CatalogState::Missing => (None, CatalogAction::Create),
                CatalogState::Unavailable => (None, CatalogAction::Failed),
                CatalogState::Ambiguous(ids) => {
                    let item = settings.own_catalog_item(identifier).unwrap_or(identifier);
                    report.errors.push(ErrorReport::new(
                        ErrorCode::CatalogAmbiguous,
                        format!("catalog identifier {item} is used by items {ids:?}"),
                    ));
                    (None, CatalogAction::Ambiguous)
                }
            };
            report.catalog.push(CatalogReport {
                identifier: identifier.clone(),
                catalog_item_id,
                action,
            });
        }
        self.warn_unpriced(&states, &created, found, report);
        Ok(states)
    }

    /// Reports every item the run bills at 0: a created one by the price it was
    /// given (or, in a dry run, would be given), a found one by ConnectWise's price.
    /// Only reported: some partners bill bundles at 0 on purpose.
    fn warn_unpriced(
        &self,
        states: &BTreeMap<String, CatalogState>,
        created: &BTreeSet<String>,
        found: &[CatalogItem],
        report: &mut RunReport,
    ) {
        for (identifier, state) in states {
            let (id, zero) = match state {
                CatalogState::Existing(id) if created.contains(identifier) => {
                    (Some(*id), self.configured_price(identifier).price == 0.0)
                }
                CatalogState::Existing(id) => {
                    let item = found.iter().find(|item| item.id == *id);
                    (Some(*id), item.is_some_and(CatalogItem::bills_zero))
                }
                CatalogState::Missing => (None, self.configured_price(identifier).price == 0.0),
                _ => continue,
            };
            if zero {
                report.warn(Warning::catalog_price_zero(identifier, id));
            }
        }
    }

    /// The price and cost a new catalog item gets: the `prices` setting, else 0.
    fn configured_price(&self, identifier: &str) -> Price {
        let prices = &self.engine.settings.prices;
        prices.get(identifier).copied().unwrap_or(Price {
            price: 0.0,
            cost: 0.0,
        })
    }

    /// Remembers a catalog item the store did not know (made by hand, or created
    /// by a run that crashed before it could say so) and puts it on the trail.
    async fn adopt_catalog_item(&self, identifier: &str, id: i64) -> StoreResult<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        self.record_catalog("adoptCatalogItem", identifier, id)
            .await
    }

    /// Puts a catalog item on the trail, then remembers it (in that order: see
    /// `audit`).
    async fn record_catalog(
        &self,
        action: &'static str,
        identifier: &str,
        id: i64,
    ) -> StoreResult<()> {
        self.audit(AuditDraft {
            action,
            tenant_id: None,
            agreement_id: None,
            identifier,
            entity_id: Some(id),
            old: None,
            new: None,
        })
        .await?;
        let record = CatalogRecord {
            identifier: identifier.to_owned(),
            catalog_item_id: id,
            updated_at: Utc::now(),
        };
        self.engine.store.put_catalog_item(&record).await
    }

    /// Looks up the setup records a new catalog item needs, by name: the
    /// subcategory within the configured category, as ConnectWise scopes it.
    async fn catalog_refs(&self) -> Result<CatalogRefs, ErrorReport> {
        let c = &self.engine.settings.catalog;
        let category = self
            .reference(SetupTable::Category, &c.category, None)
            .await?;
        let scope = Scope {
            id: category,
            name: c.category.trim(),
        };
        Ok(CatalogRefs {
            product_type: self
                .reference(SetupTable::ProductType, &c.product_type, None)
                .await?,
            category,
            subcategory: self
                .reference(SetupTable::Subcategory, &c.subcategory, Some(&scope))
                .await?,
            unit_of_measure: self
                .reference(SetupTable::UnitOfMeasure, &c.unit_of_measure, None)
                .await?,
            product_class: format!("{:?}", c.product_class),
        })
    }

    /// The id of the one active `table` record named `name` (under `scope`).
    async fn reference(
        &self,
        table: SetupTable,
        name: &str,
        scope: Option<&Scope<'_>>,
    ) -> Result<i64, ErrorReport> {
        if name.trim().is_empty() {
            return Err(ErrorReport::new(
                ErrorCode::CatalogSetup,
                format!("the {} setting is empty", table.setting()),
            ));
        }
        let cw = &self.cw;
        let records = cw
            .find_named(table.kind(), name, scope.map(|s| s.id))
            .await
            .map_err(|e| write_error(&e))?;
        let chosen = catalog::choose_reference(table, name, &records, scope, &[]);
        if chosen.is_ok() || scope.is_none() {
            return chosen;
        }
        // Nothing fits within the scope: say where the name does exist.
        let elsewhere = cw
            .find_named(table.kind(), name, None)
            .await
            .map_err(|e| write_error(&e))?;
        catalog::choose_reference(table, name, &records, scope, &elsewhere)
    }

    /// Creates a catalog item. ConnectWise has no idempotency key, so a create
    /// whose outcome is unknown (5xx, timeout, broken answer) is never repeated
    /// blindly: the catalog is read back first, and the item adopted if it landed,
    /// or created again (within the client's retry budget) if it did not.
    async fn create_catalog_item(
        &self,
        identifier: &str,
        refs: &CatalogRefs,
    ) -> Result<Result<Made, ErrorReport>, CycleError> {
        // Only new items are priced: an existing item's price is the partner's.
        let price = self.configured_price(identifier);
        let item = NewCatalogItem {
            identifier: identifier.to_owned(),
            description: products::catalog_description(identifier),
            customer_description: products::description(identifier)
                .unwrap_or(identifier)
                .to_owned(),
            product_type: Reference::id(refs.product_type),
            category: Reference::id(refs.category),
            subcategory: Reference::id(refs.subcategory),
            unit_of_measure: Reference::id(refs.unit_of_measure),
            product_class: refs.product_class.clone(),
            taxable_flag: self.engine.settings.catalog.taxable,
            price: price.price,
            cost: price.cost,
        };
        let cw = &self.cw;
        let wanted = &BTreeSet::from([identifier.to_owned()]);
        let ended = create_verified(
            cw.policy(),
            "catalog item",
            || cw.create_catalog_item(&item),
            || async {
                let items = cw
                    .catalog_items_by_identifiers(&[identifier.to_owned()])
                    .await?;
                Ok(
                    match plan::plan_catalog(wanted, &items).remove(identifier) {
                        Some(CatalogState::Existing(id)) => ReadBack::One(id),
                        Some(CatalogState::Ambiguous(ids)) => ReadBack::Several(ids),
                        _ => ReadBack::Nothing,
                    },
                )
            },
        )
        .await;
        match ended {
            Verified::Answered(created) => {
                self.wrote()?;
                self.record_catalog("createCatalogItem", identifier, created.id)
                    .await?;
                Ok(Ok(Made::Created(created.id)))
            }
            Verified::FoundOnReadBack(id) => {
                // It landed although its answer was lost: that was a write.
                self.wrote()?;
                self.record_catalog("adoptCatalogItem", identifier, id)
                    .await?;
                Ok(Ok(Made::Landed(id)))
            }
            Verified::Ambiguous(ids) => Ok(Err(ErrorReport::new(
                ErrorCode::CatalogAmbiguous,
                format!("catalog identifier {identifier} is used by items {ids:?}"),
            ))),
            Verified::Refused(e) => Ok(Err(write_error(&e))),
            Verified::Unverified { lost, read } => Ok(Err(unverified(identifier, &lost, &read))),
            Verified::NotLanded { lost, attempts } => {
                let mut e = write_error(&lost);
                e.message.push_str(&format!(
                    "; tried {attempts} times, each time read back and not created"
                ));
                Ok(Err(e))
            }
        }
    }
}

/// A create whose answer was lost and whose read-back failed: not repeated (it
/// may have landed); the next run reads the catalog before creating.
fn unverified(identifier: &str, lost: &ApiError, read: &ApiError) -> ErrorReport {
    let mut e = write_error(lost);
    e.message = format!(
        "the create of catalog item {identifier} got no usable answer ({lost}) and reading \
         the catalog back failed too ({read}); it was not repeated, because it may have \
         landed: the next run looks it up before creating"
    );
    e
}
