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
}

impl Default for Settings {
    /// Nothing selected, so nothing is written until the operator chooses products.
    fn default() -> Self {
        Self {
            products: BTreeSet::new(),
            product_codes: BTreeMap::new(),
            agreement_type: None,
            catalog: CatalogSettings::default(),
            quantity_field: QuantityField::default(),
            zero_usage: ZeroUsage::default(),
            month: default_month(),
            connectwise_concurrency: default_connectwise_concurrency(),
        }
    }
}

fn default_month() -> String {
    "current".to_owned()
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

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Settings>(r#"{"prodcts":[]}"#).unwrap_err();
        assert!(err.to_string().contains("prodcts"));
    }
}
