//! ConnectWise PSA shapes we read and write (schemas in the vendor OpenAPI subset).
//! Optional fields are skipped when absent: the vendor marks several as nullable
//! enums, and sending null for those is refused.

use serde::{Deserialize, Serialize};

/// A `{id, name}` or `{id, identifier}` reference as ConnectWise embeds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Reference {
    pub fn id(id: i64) -> Self {
        Self {
            id: Some(id),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    pub id: i64,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub deleted_flag: Option<bool>,
    #[serde(default)]
    pub status: Option<Reference>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub agreement_type: Option<Reference>,
    #[serde(default)]
    pub company: Option<Reference>,
    #[serde(default)]
    pub cancelled_flag: Option<bool>,
    /// Active | Cancelled | Expired | Inactive
    #[serde(default)]
    pub agreement_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementType {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub inactive_flag: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addition {
    pub id: i64,
    #[serde(default)]
    pub product: Option<Reference>,
    #[serde(default)]
    pub quantity: Option<f64>,
    #[serde(default)]
    pub effective_date: Option<String>,
    /// Empty string or absent when not cancelled.
    #[serde(default)]
    pub cancelled_date: Option<String>,
    #[serde(default)]
    pub agreement_id: Option<i64>,
    #[serde(default)]
    pub addition_status: Option<String>,
    #[serde(default)]
    pub agreement_status: Option<String>,
}

impl Addition {
    /// Active means: not cancelled (no cancelledDate) and not marked otherwise.
    pub fn is_active(&self) -> bool {
        let cancelled = self
            .cancelled_date
            .as_deref()
            .is_some_and(|d| !d.is_empty());
        let status_ok = self
            .addition_status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("Active"));
        !cancelled && status_ok
    }
    pub fn product_id(&self) -> Option<i64> {
        self.product.as_ref().and_then(|p| p.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAddition {
    pub product: Reference,
    pub quantity: f64,
    pub bill_customer: String,
    pub effective_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogItem {
    pub id: i64,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub inactive_flag: Option<bool>,
    /// What a customer is billed per unit; ConnectWise leaves an unset price out.
    #[serde(default)]
    pub price: Option<f64>,
}

impl CatalogItem {
    /// Whether additions of this item bill nothing (no price counts as 0).
    pub fn bills_zero(&self) -> bool {
        self.price.unwrap_or(0.0) == 0.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCatalogItem {
    pub identifier: String,
    pub description: String,
    pub customer_description: String,
    #[serde(rename = "type")]
    pub product_type: Reference,
    pub category: Reference,
    pub subcategory: Reference,
    pub unit_of_measure: Reference,
    pub product_class: String,
    pub taxable_flag: bool,
    /// What a customer is billed per unit (`prices` in the settings, else 0).
    pub price: f64,
    /// What the partner pays per unit.
    pub cost: f64,
}

/// A named reference record (product type, category, subcategory, unit of measure).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedRecord {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub inactive_flag: Option<bool>,
    /// Subcategories carry their category.
    #[serde(default)]
    pub category: Option<Reference>,
}

/// One JSON Patch operation, as ConnectWise takes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: &'static str,
    pub path: &'static str,
    pub value: serde_json::Value,
}

impl PatchOp {
    /// `{"op":"replace","path":<path>,"value":<value>}`, e.g. `replace("quantity", 45)`.
    pub fn replace(path: &'static str, value: impl Into<serde_json::Value>) -> Self {
        Self {
            op: "replace",
            path,
            value: value.into(),
        }
    }
}
