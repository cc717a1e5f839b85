//! Operator settings: which products to sync, how to build catalog items, and the
//! rules for quantities. Stored in the store; a JSON file (`SYNC_SETTINGS`) can be
//! applied on top before a command runs.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Catalog identifiers (from the built-in 35) to create and sync. Empty: nothing is written.
    #[serde(default)]
    pub products: BTreeSet<String>,
    /// Extra or overriding billing `productCode` -> identifier entries.
    #[serde(default)]
    pub product_codes: BTreeMap<String, String>,
    /// The ConnectWise agreement type whose agreements receive additions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_type: Option<String>,
    #[serde(default)]
    pub catalog: CatalogSettings,
    /// The partner's own catalog items: a selected identifier -> the identifier of
    /// an existing ConnectWise catalog item (their brand or bundle) to bill it as.
    /// Such an item is looked up, never created or edited.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub catalog_items: BTreeMap<String, String>,
    #[serde(default)]
    pub quantity_field: QuantityField,
    #[serde(default)]
    pub zero_usage: ZeroUsage,
    /// "current", "previous" or "YYYY-MM".
    #[serde(default = "default_month")]
    pub month: String,
    /// ConnectWise requests in flight at once (1..=32); partners' instances differ in
    /// how much they take.
    #[serde(default = "default_connectwise_concurrency")]
    pub connectwise_concurrency: usize,
    /// Which planned addition changes wait for a person's approval instead of being
    /// written (`sync::review`). Off by default: every rule is off when absent.
    #[serde(default, skip_serializing_if = "ReviewPolicy::is_off")]
    pub review: ReviewPolicy,
}

impl Default for Settings {
    /// Nothing selected, so nothing is written until the operator chooses products.
    fn default() -> Self {
        Self {
            products: BTreeSet::new(),
            product_codes: BTreeMap::new(),
            agreement_type: None,
            catalog: CatalogSettings::default(),
            catalog_items: BTreeMap::new(),
            quantity_field: QuantityField::default(),
            zero_usage: ZeroUsage::default(),
            month: default_month(),
            connectwise_concurrency: default_connectwise_concurrency(),
            review: ReviewPolicy::default(),
        }
    }
}

fn default_month() -> String {
    "current".to_owned()
}

impl Settings {
    /// The ConnectWise identifier a selected product is billed as: the partner's
    /// own item when `catalogItems` maps it, else the product's own identifier.
    pub fn own_catalog_item(&self, identifier: &str) -> Option<&str> {
        self.catalog_items.get(identifier).map(|s| s.trim())
    }

    /// Checks `catalogItems`: every key a selected product, every value a
    /// non-empty identifier, and one ConnectWise item per product (one addition
    /// per product and agreement, so two products cannot share an item).
    pub fn check_catalog_items(&self) -> Result<(), String> {
        let mut users: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (identifier, item) in &self.catalog_items {
            if !self.products.contains(identifier) {
                return Err(format!(
                    "catalogItems maps {identifier:?}, which is not among the selected products: \
                     add it to products or remove it from catalogItems"
                ));
            }
            if item.trim().is_empty() {
                return Err(format!(
                    "catalogItems maps {identifier:?} to an empty identifier: give the \
                     identifier of an existing ConnectWise catalog item, or remove the entry"
                ));
            }
            users
                .entry(item.trim().to_lowercase())
                .or_default()
                .push(identifier);
        }
        // A product billed under its own identifier uses that catalog item too.
        for identifier in &self.products {
            if !self.catalog_items.contains_key(identifier) {
                if let Some(u) = users.get_mut(&identifier.to_lowercase()) {
                    u.push(identifier);
                }
            }
        }
        match users.iter().find(|(_, u)| u.len() > 1) {
            Some((item, u)) => Err(format!(
                "catalogItems: {u:?} would all be billed as the ConnectWise catalog item \
                 {item:?}; one catalog item can stand for one product only: map each product \
                 to its own item in catalogItems"
            )),
            None => Ok(()),
        }
    }
}

/// The review policy: each rule that is set holds the planned changes it matches
/// for a person (see `sync::review::rule_for`). Every field is optional; an absent
/// one is a rule that is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewPolicy {
    /// A decrease of more than this many units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrease_over_units: Option<f64>,
    /// A decrease of more than this percentage of the current quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrease_over_percent: Option<f64>,
    /// A drop to zero, or a cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_or_cancel: Option<bool>,
    /// A customer's first addition of a product above this many units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_addition_over: Option<f64>,
    /// Any change on a customer mapped for the first time in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newly_mapped: Option<bool>,
    /// Any change to a quantity above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_over: Option<f64>,
}

impl ReviewPolicy {
    /// No rule is on: every planned change is written as before.
    pub fn is_off(&self) -> bool {
        self.decrease_over_units.is_none()
            && self.decrease_over_percent.is_none()
            && self.zero_or_cancel != Some(true)
            && self.first_addition_over.is_none()
            && self.newly_mapped != Some(true)
            && self.quantity_over.is_none()
    }

    /// Checks the thresholds: each a finite number of at least 0 (a percentage at
    /// most 100).
    pub fn check(&self) -> Result<(), String> {
        let numbers = [
            ("decreaseOverUnits", self.decrease_over_units, None),
            (
                "decreaseOverPercent",
                self.decrease_over_percent,
                Some(100.0),
            ),
            ("firstAdditionOver", self.first_addition_over, None),
            ("quantityOver", self.quantity_over, None),
        ];
        for (name, value, most) in numbers {
            let Some(v) = value else { continue };
            if !v.is_finite() || v < 0.0 || most.is_some_and(|m| v > m) {
                let range = match most {
                    Some(m) => format!("between 0 and {m}"),
                    None => "0 or more".to_owned(),
                };
                return Err(format!(
                    "review.{name} is {v}: give a number {range}, or leave the key out to switch the rule off"
                ));
            }
        }
        Ok(())
    }
}

/// The ConnectWise concurrency when the setting is absent.
pub const DEFAULT_CONNECTWISE_CONCURRENCY: usize = 4;
/// The most ConnectWise requests in flight the setting allows.
pub const MAX_CONNECTWISE_CONCURRENCY: usize = 32;

fn default_connectwise_concurrency() -> usize {
    DEFAULT_CONNECTWISE_CONCURRENCY
}

/// Names (not ids) of the ConnectWise reference records a new catalog item uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogSettings {
    #[serde(default, rename = "type")]
    pub product_type: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub subcategory: String,
    #[serde(default)]
    pub unit_of_measure: String,
    #[serde(default)]
    pub product_class: ProductClass,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            product_type: String::new(),
            category: String::new(),
            subcategory: String::new(),
            unit_of_measure: String::new(),
            product_class: ProductClass::Agreement,
        }
    }
}

/// ConnectWise `productClass`; Bundle is left out because bundles cannot be additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ProductClass {
    #[default]
    Agreement,
    NonInventory,
    Service,
    Inventory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum QuantityField {
    #[default]
    BillableQuantity,
    ActualQuantity,
}

/// What happens to an addition whose product has no usage this month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ZeroUsage {
    /// Leave the quantity as it is.
    Keep,
    /// Set the quantity to 0 (the addition stays, visible on the agreement).
    #[default]
    Zero,
    /// Cancel the addition (cancelledDate = end of the month).
    Cancel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_an_empty_json_document() {
        let parsed: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, Settings::default());
        assert_eq!(parsed.month, "current");
        assert!(parsed.products.is_empty());
    }

    fn with_items(products: &[&str], items: &[(&str, &str)]) -> Settings {
        Settings {
            products: products.iter().map(|p| p.to_string()).collect(),
            catalog_items: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Settings::default()
        }
    }

    const IXA: &str = "Sophos_Intercept_X_Advanced";
    const XDR: &str = "Sophos_Intercept_X_Advanced_XDR";

    #[test]
    fn catalog_items_parse_and_name_the_own_item() {
        let s: Settings = serde_json::from_str(
            r#"{"products":["Sophos_Intercept_X_Advanced"],
                "catalogItems":{"Sophos_Intercept_X_Advanced":" ACME-EDR-SEAT "}}"#,
        )
        .unwrap();
        assert_eq!(s.own_catalog_item(IXA), Some("ACME-EDR-SEAT"));
        assert_eq!(s.own_catalog_item(XDR), None);
        assert_eq!(s.check_catalog_items(), Ok(()));
        // Absent when empty, so older settings documents read back unchanged.
        let json = serde_json::to_value(Settings::default()).unwrap();
        assert!(json.get("catalogItems").is_none(), "{json}");
    }

    #[test]
    fn catalog_items_are_refused_with_what_to_fix() {
        let outside = with_items(&[IXA], &[(XDR, "ACME-XDR")]);
        let err = outside.check_catalog_items().unwrap_err();
        assert!(
            err.contains(XDR) && err.contains("not among the selected products"),
            "{err}"
        );

        let shared = with_items(&[IXA, XDR], &[(IXA, "ACME-EDR"), (XDR, "acme-edr ")]);
        let err = shared.check_catalog_items().unwrap_err();
        assert!(err.contains(IXA) && err.contains(XDR), "{err}");
        assert!(err.contains("its own item"), "{err}");

        // XDR keeps its own identifier, which IXA would be billed as too.
        let onto_selected = with_items(&[IXA, XDR], &[(IXA, XDR)]);
        let err = onto_selected.check_catalog_items().unwrap_err();
        assert!(err.contains(IXA) && err.contains(XDR), "{err}");

        let empty = with_items(&[IXA], &[(IXA, "  ")]);
        assert!(empty.check_catalog_items().unwrap_err().contains("empty"));

        let fine = with_items(&[IXA, XDR], &[(IXA, "ACME-EDR"), (XDR, "ACME-XDR")]);
        assert_eq!(fine.check_catalog_items(), Ok(()));
        // Mapping a product to its own identifier only forbids creating it.
        assert_eq!(
            with_items(&[IXA], &[(IXA, IXA)]).check_catalog_items(),
            Ok(())
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Settings>(r#"{"prodcts":[]}"#).unwrap_err();
        assert!(err.to_string().contains("prodcts"));
    }
}
