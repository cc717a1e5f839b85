//! Sophos Central Partner API shapes we read (see sim/fixtures/sophos-partner-subset.json).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    pub id: String,
    pub id_type: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub show_as: Option<String>,
    /// `usage`, `term`, `trial` (the full enum is not published).
    #[serde(default)]
    pub billing_type: Option<String>,
    /// Null while the customer's account is not activated.
    #[serde(default)]
    pub api_host: Option<String>,
    #[serde(default)]
    pub data_region: Option<String>,
}

/// One line of the monthly billing usage report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageLine {
    /// The tenant id; absent on some lines (e.g. stand-alone firewall subscriptions).
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub product_code: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub product_description: Option<String>,
    /// `User`, `Server`, `Device` (firewalls) as far as is known.
    #[serde(default)]
    pub product_group: Option<String>,
    #[serde(default)]
    pub order_line_item_number: Option<String>,
    #[serde(default)]
    pub billable_quantity: Option<f64>,
    #[serde(default)]
    pub actual_quantity: Option<f64>,
    #[serde(default)]
    pub account_status: Option<String>,
}
