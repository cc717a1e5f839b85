//! What a cycle reports: the `sync --json` contract, per customer and per product,
//! with every error's code, message and advice.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    CompanyNotFound,
    CompanyAmbiguous,
    AgreementNotFound,
    AgreementAmbiguous,
    AgreementShared,
    AdditionAmbiguous,
    CatalogAmbiguous,
    ProductUnmapped,
    CatalogSetup,
    CwPermission,
    CwValidation,
    UpstreamUnavailable,
    UsageUnassigned,
}

impl ErrorCode {
    /// What a partner can do about it.
    pub fn advice(self) -> &'static str {
        use ErrorCode::*;
        match self {
            CompanyNotFound => {
                "No active ConnectWise company has exactly this customer's name. Rename the company (or the Sophos customer) so the names match, or map it by hand: `sophos-cw-sync map <tenantId> --company <companyId>`. To leave this customer out, use `map <tenantId> --ignore`."
            }
            CompanyAmbiguous => {
                "Several ConnectWise companies have this name, so none was picked. Merge or rename the duplicates (deleted companies in the recycle bin count too), or map the customer by hand with `map <tenantId> --company <companyId>`."
            }
            AgreementNotFound => {
                "The company has no active, non-cancelled agreement of the configured agreement type. Create one in ConnectWise (Finance > Agreements), check the `agreementType` setting, or map the agreement by hand with `map <tenantId> --company <id> --agreement <agreementId>`."
            }
            AgreementAmbiguous => {
                "The company has several active agreements of the configured type, so none was picked. Cancel the extra ones or choose one with `map <tenantId> --company <id> --agreement <agreementId>`."
            }
            AgreementShared => {
                "This agreement is already used by another Sophos customer; one agreement serves one customer only. Map one of the two customers to a different agreement with `map <tenantId> --agreement <agreementId>`."
            }
            AdditionAmbiguous => {
                "The agreement has several active additions for this product, so none was changed (a quantity could be billed twice). Cancel or delete the extra additions in ConnectWise, keeping one; the next sync adopts it."
            }
            CatalogAmbiguous => {
                "Several ConnectWise catalog items share this identifier. Deactivate or rename the duplicates in Procurement > Product Catalog so exactly one remains."
            }
            ProductUnmapped => {
                "This Sophos billing product code has no catalog identifier. Add it to the `productCodes` setting, e.g. {\"productCodes\":{\"CODE\":\"Sophos_Intercept_X_Advanced\"}}."
            }
            CatalogSetup => {
                "A catalog item could not be created because a reference it needs is missing, inactive or ambiguous, or a partner's own item named in `catalogItems` is missing or inactive. Check the `catalog` setting (type, category, subcategory, unit of measure) against the active names in ConnectWise (Setup Tables; a subcategory is looked up within the category), and the `catalogItems` setting against Procurement > Product Catalog."
            }
            CwPermission => {
                "ConnectWise refused the request. Give the API member's security role: Companies > Company Maintenance Inquire All; Finance > Agreements Add, Edit, Inquire All; Procurement > Product Catalog Add, Edit, Inquire All."
            }
            CwValidation => {
                "ConnectWise rejected the data we sent. Read the message for the field; check the catalog item and agreement in ConnectWise, then run the sync again."
            }
            UpstreamUnavailable => {
                "The vendor API did not answer after several retries. Nothing was guessed; the next run picks up from here. If it persists, check the vendor's status page and the network path."
            }
            UsageUnassigned => {
                "These usage lines carry no customer (accountId), e.g. firewall subscriptions not assigned to a tenant. Assign them to a customer in Sophos Central Partner to bill them."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
    pub advice: String,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            advice: code.advice().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CustomerState {
    Synced,
    Error,
    Ignored,
    Unmapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProductAction {
    Create,
    Update,
    Unchanged,
    Zero,
    Cancel,
    /// An existing addition the store did not know, taken over (no duplicate made).
    Adopt,
    /// Not touched because of an error (see the customer's errors).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductReport {
    pub identifier: String,
    pub sophos_quantity: f64,
    pub previous_quantity: Option<f64>,
    pub new_quantity: Option<f64>,
    pub addition_id: Option<i64>,
    pub action: ProductAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerReport {
    pub tenant_id: String,
    pub tenant_name: String,
    pub status: CustomerState,
    pub reason: Option<String>,
    pub company_id: Option<i64>,
    pub company_identifier: Option<String>,
    pub agreement_id: Option<i64>,
    pub agreement_name: Option<String>,
    pub agreement_type: Option<String>,
    pub products: Vec<ProductReport>,
    pub errors: Vec<ErrorReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CatalogAction {
    Existing,
    Create,
    Ambiguous,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogReport {
    pub identifier: String,
    pub catalog_item_id: Option<i64>,
    pub action: CatalogAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApiCalls {
    pub sophos: u64,
    pub connectwise: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run_id: String,
    pub status: crate::store::RunStatus,
    pub month: String,
    pub dry_run: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// For a skipped run: the run that holds the lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// Why the whole cycle failed (per-customer errors are under `customers`).
    pub errors: Vec<ErrorReport>,
    /// Whether the month had usage data (a 404 month has none: nothing changes).
    pub usage_available: bool,
    pub catalog: Vec<CatalogReport>,
    pub customers: Vec<CustomerReport>,
    /// Usage lines without a customer, reported instead of guessed.
    pub unassigned_usage: Vec<UnassignedUsage>,
    pub api_calls: ApiCalls,
    pub writes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignedUsage {
    pub product_code: Option<String>,
    pub product_description: Option<String>,
    pub quantity: f64,
}
