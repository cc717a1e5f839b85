//! What a cycle reports: the `sync --json` contract, per customer and per product,
//! with every error's code, message and advice.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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

/// Advice steps shared by several codes, one wording everywhere.
macro_rules! map_company {
    () => {
        "console: Mapping (pick the company, then its agreement); API: PUT /mappings/{tenantId} {\"companyId\": <companyId>}; CLI: `sophos-cw-sync map <tenantId> --company <companyId>`"
    };
}

macro_rules! map_agreement {
    () => {
        "console: Mapping (pick the company, then the agreement); API: PUT /mappings/{tenantId} {\"companyId\": <companyId>, \"agreementId\": <agreementId>}; CLI: `sophos-cw-sync map <tenantId> --company <companyId> --agreement <agreementId>`"
    };
}

macro_rules! change_settings {
    () => {
        "console: Settings; API: PUT /settings; CLI: `SYNC_SETTINGS=<file> sophos-cw-sync settings`, the file replacing the stored settings"
    };
}

macro_rules! sync_now {
    () => {
        "console: Runs (Sync now); API: POST /sync; CLI: `sophos-cw-sync sync`"
    };
}

impl ErrorCode {
    /// What a partner can do about it, wherever they operate from: each step names
    /// the console page and the API route beside the CLI command (most partners run
    /// the Lambda and never install the CLI).
    pub fn advice(self) -> &'static str {
        use ErrorCode::*;
        match self {
            CompanyNotFound => concat!(
                "No active ConnectWise company has exactly this customer's name. Rename the company (or the Sophos customer) so the names match, or map it by hand: ",
                map_company!(),
                ". To leave this customer out (e.g. it is not billed through ConnectWise): console: Customer (Ignore this customer); API: PUT /mappings/{tenantId} {\"ignore\": true}; CLI: `sophos-cw-sync map <tenantId> --ignore`."
            ),
            CompanyAmbiguous => concat!(
                "Several ConnectWise companies have this name, so none was picked. Merge or rename the duplicates (deleted companies in the recycle bin count too), or map the customer by hand: ",
                map_company!(),
                "."
            ),
            AgreementNotFound => concat!(
                "The company has no active, non-cancelled agreement of the configured agreement type. Create one in ConnectWise (Finance > Agreements), check the `agreementType` setting (",
                change_settings!(),
                "), or map the agreement by hand: ",
                map_agreement!(),
                "."
            ),
            AgreementAmbiguous => concat!(
                "The company has several active agreements of the configured type, so none was picked. Cancel the extra ones in ConnectWise (Finance > Agreements) or choose one: ",
                map_agreement!(),
                "."
            ),
            AgreementShared => concat!(
                "This agreement is already used by another Sophos customer; one agreement serves one customer only. Map one of the two customers to a different agreement of its company (create one in ConnectWise first if there is none): ",
                map_agreement!(),
                "."
            ),
            AdditionAmbiguous => concat!(
                "The agreement has several active additions for this product, so none was changed (a quantity could be billed twice). Cancel or delete the extra additions in ConnectWise, keeping one; the next sync adopts it. To sync now: ",
                sync_now!(),
                "."
            ),
            CatalogAmbiguous => concat!(
                "Several ConnectWise catalog items share this identifier. Deactivate or rename the duplicates in Procurement > Product Catalog so exactly one remains, then sync again: ",
                sync_now!(),
                "."
            ),
            ProductUnmapped => {
                "This Sophos billing product code has no catalog identifier; it is never mapped by its description. Tell from the description, sku and productGroup which of the 35 identifiers it is (console: Settings lists the known codes; API: GET /settings; CLI: `sophos-cw-sync settings`), then map it: console: Mapping (Unmapped billing product codes); API: PUT /settings with this line added to the settings: \"productCodes\": {\"CODE\": \"<identifier>\"}; CLI: the same line in a settings file, applied with `SYNC_SETTINGS=<file> sophos-cw-sync settings`."
            }
            CatalogSetup => concat!(
                "A catalog item could not be created because a reference it needs is missing, inactive or ambiguous, or a partner's own item named in `catalogItems` is missing or inactive. Check the `catalog` setting (type, category, subcategory, unit of measure) against the active names in ConnectWise (Setup Tables; a subcategory is looked up within the category), and the `catalogItems` setting against Procurement > Product Catalog. Change the settings in ",
                change_settings!(),
                "."
            ),
            CwPermission => concat!(
                "ConnectWise refused the request. Give the API member's security role: Companies > Company Maintenance Inquire All; Finance > Agreements Add, Edit, Inquire All; Procurement > Product Catalog Add, Inquire All (no Edit: the sync never changes a catalog item); System > Table Setup Inquire All (agreement types, product types, categories, subcategories, units of measure). README.md, \"Least-privilege vendor roles\", names the call behind each row. Then sync again: ",
                sync_now!(),
                "."
            ),
            CwValidation => concat!(
                "ConnectWise rejected the data we sent. Read the message for the field; check the catalog item and agreement in ConnectWise (console: Customer shows the customer's agreement and products; API: GET /status; CLI: `sophos-cw-sync status`), then sync again: ",
                sync_now!(),
                "."
            ),
            UpstreamUnavailable => concat!(
                "The vendor API did not answer after several retries. Nothing was guessed; the next run picks up from here, or start one now: ",
                sync_now!(),
                ". If it persists, check the vendor's status page and the network path."
            ),
            UsageUnassigned => {
                "These usage lines carry no customer (accountId), e.g. firewall subscriptions not assigned to a tenant. Assign them to a customer in Sophos Central Partner to bill them; the next sync bills them. The run lists them: console: Runs (the run's Usage without a customer); API: GET /runs/{runId}; CLI: `sophos-cw-sync runs <runId>`."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
    pub advice: String,
    /// For `PRODUCT_UNMAPPED`: what the usage lines say about the code, so the
    /// operator can tell which product it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Box<UnmappedProduct>>,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            advice: code.advice().to_owned(),
            product: None,
        }
    }

    /// `PRODUCT_UNMAPPED` for one code, with the line's details and advice that
    /// names the settings line to add. Nothing is written for the code.
    pub fn unmapped_product(product: UnmappedProduct) -> Self {
        let code = &product.product_code;
        let seen = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut message = format!(
            "billing product code {code} has no catalog identifier, so its {} licences are not billed (description {:?}, sku {}, productGroup {})",
            product.quantity,
            seen(&product.product_description),
            seen(&product.sku),
            seen(&product.product_group)
        );
        if let Some(known) = &product.known_as {
            message.push_str(&format!("; known code: {known}"));
        }
        Self {
            code: ErrorCode::ProductUnmapped,
            message,
            advice: unmapped_advice(code),
            product: Some(Box::new(product)),
        }
    }

    /// The advice this report must carry: its code's, naming the product code
    /// where there is one.
    pub fn expected_advice(&self) -> String {
        match &self.product {
            Some(p) => unmapped_advice(&p.product_code),
            None => self.code.advice().to_owned(),
        }
    }
}

/// `PRODUCT_UNMAPPED`'s advice with the settings line for `code` filled in.
fn unmapped_advice(code: &str) -> String {
    let key = serde_json::to_string(code).unwrap_or_default();
    ErrorCode::ProductUnmapped
        .advice()
        .replace("\"CODE\"", &key)
}

/// A billing product code of a customer's usage that maps to no identifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmappedProduct {
    pub product_code: String,
    /// As on the usage line (the first line of the code that has one).
    pub product_description: Option<String>,
    pub sku: Option<String>,
    pub product_group: Option<String>,
    /// Summed over the customer's lines of the code (the quantity field in force).
    pub quantity: f64,
    /// What the built-in evidence says about a known but unmapped code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_as: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CustomerState {
    Synced,
    /// Synced except for changes held for review (see the products' `heldChangeId`).
    Review,
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
    /// The planned change waits for a person (`heldChangeId`, `reviewRule`): nothing
    /// was written.
    Hold,
    /// The planned change was rejected for this month: nothing was written.
    Rejected,
    /// A lower quantity (decrease, zero or cancel) left as it is because the
    /// usage report shrank past `usageDropGuard` (`proposedQuantity`: what it
    /// would have set; the run's `USAGE_REPORT_SHRANK` warning says why).
    Guarded,
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
    /// What a held (or rejected) change would have set; ConnectWise keeps
    /// `previousQuantity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_quantity: Option<f64>,
    /// The held change behind a `hold`, `rejected` or approved write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_change_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_rule: Option<crate::store::ReviewRule>,
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
    /// The ConnectWise company's name, beside its identifier (absent from results
    /// stored before it was reported).
    #[serde(default)]
    pub company_name: Option<String>,
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
    /// How many customers ended in each state, across every invocation of the run.
    #[serde(default)]
    pub customer_counts: CustomerCounts,
    /// Every customer's result, in Sophos order (the CLI's `sync --json`). A run in
    /// the service keeps this empty: its customers are stored one record each
    /// (`Store::list_run_customers`), so nothing grows with the partner.
    #[serde(default)]
    pub customers: Vec<CustomerReport>,
    /// Usage lines without a customer, reported instead of guessed (at most
    /// [`MAX_UNASSIGNED`] in a stored summary; `unassignedUsageOmitted` counts the rest).
    pub unassigned_usage: Vec<UnassignedUsage>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unassigned_usage_omitted: u64,
    /// The billing product codes the run's customers had usage of but no catalog
    /// identifier for, once each (the details of the first customer seen with it),
    /// across every invocation of the run: what to add to `productCodes` without
    /// reading every customer. At most [`MAX_UNASSIGNED`]; `unmappedCodesOmitted`
    /// counts the further distinct codes.
    #[serde(default)]
    pub unmapped_codes: Vec<UnmappedProduct>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unmapped_codes_omitted: u64,
    pub api_calls: ApiCalls,
    pub writes: u64,
    /// How many times ConnectWise answered 429 (its instance was busy), across
    /// every invocation: each was waited out and retried at a lower concurrency.
    #[serde(default)]
    pub throttled: u64,
    /// The fewest ConnectWise requests in flight the client went down to
    /// (`connectwiseConcurrency` when it was never throttled); none in records
    /// from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_concurrency: Option<u64>,
    /// What a person should know although the run went through (a catalog item
    /// priced 0, a usage report that shrank), each once, across every invocation.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Why the run was skipped (paused, or another run holds the lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many customers had usage in this month's report (the usage drop
    /// guard compares it with an earlier run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers_with_usage: Option<u64>,
    /// The usage drop guard stopped this run from lowering any quantity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_drop_guarded: bool,
    /// The run was told to accept a usage report that shrank
    /// (`--accept-usage-drop`, `{"acceptUsageDrop":true}`, the console's checkbox).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_drop_accepted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WarningCode {
    /// A catalog item the run bills (created or found) has a price of 0.
    CatalogPriceZero,
    /// Fewer customers have usage than in the last comparable run, by more than
    /// `usageDropGuard`: no quantity was lowered.
    UsageReportShrank,
}

/// Something a person should look at in a run that still went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub code: WarningCode,
    /// The catalog identifier it is about (`CATALOG_PRICE_ZERO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// The ConnectWise catalog item (`CATALOG_PRICE_ZERO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_item_id: Option<i64>,
    /// Customers with usage in this report (`USAGE_REPORT_SHRANK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers_with_usage: Option<u64>,
    /// Customers with usage in the run compared with (`USAGE_REPORT_SHRANK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_customers_with_usage: Option<u64>,
    /// Of those, how many have no usage now (`USAGE_REPORT_SHRANK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers_missing: Option<u64>,
    /// The run compared with (`USAGE_REPORT_SHRANK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_run_id: Option<String>,
    pub message: String,
    pub advice: String,
}

impl Warning {
    /// `CATALOG_PRICE_ZERO`: the item bills 0 per unit. The write still happens
    /// (some partners bill bundles at 0 on purpose).
    pub fn catalog_price_zero(identifier: &str, catalog_item_id: Option<i64>) -> Self {
        let item = catalog_item_id
            .map(|id| format!(" (catalog item {id})"))
            .unwrap_or_default();
        Self {
            code: WarningCode::CatalogPriceZero,
            identifier: Some(identifier.to_owned()),
            catalog_item_id,
            customers_with_usage: None,
            previous_customers_with_usage: None,
            customers_missing: None,
            compared_run_id: None,
            message: format!(
                "the ConnectWise catalog item for {identifier}{item} has a price of 0, so its agreement additions bill nothing"
            ),
            advice: format!(
                "If {identifier} is not meant to be billed at 0, set its price in ConnectWise (Procurement > Product Catalog, the item's Price and Cost; existing additions keep the price they were created with, so correct those on the agreements too). For items the sync has yet to create, give the price in the settings: \"prices\": {{\"{identifier}\": {{\"price\": 4.5, \"cost\": 2.9}}}} (console: Settings; API: PUT /settings; CLI: a SYNC_SETTINGS file). If 0 is intended (a bundle), nothing needs doing."
            ),
        }
    }

    /// `USAGE_REPORT_SHRANK`: `missing` of the `previous` customers that had usage
    /// in run `compared_run_id` have none in this report (`now` have usage).
    pub fn usage_report_shrank(
        now: u64,
        previous: u64,
        missing: u64,
        compared_run_id: &str,
        guard_percent: f64,
    ) -> Self {
        let share = if previous == 0 {
            0.0
        } else {
            missing as f64 * 100.0 / previous as f64
        };
        Self {
            code: WarningCode::UsageReportShrank,
            identifier: None,
            catalog_item_id: None,
            customers_with_usage: Some(now),
            previous_customers_with_usage: Some(previous),
            customers_missing: Some(missing),
            compared_run_id: Some(compared_run_id.to_owned()),
            message: format!(
                "Sophos' usage report lists {now} customers with usage; {missing} of the {previous} customers that had usage in run {compared_run_id} have none now ({share:.0}%, more than the usageDropGuard of {guard_percent}%), so no quantity was lowered, zeroed or cancelled in this run; increases and new additions were written"
            ),
            advice: "A report this much shorter is more often incomplete (the first days of a month, a fault on Sophos' side) than true. Check the customers' usage in Sophos Central Partner (Billing > Usage); the next run compares again and lowers nothing while the drop lasts. If the drop is real (customers left), accept it for one run: console: tick \"Accept the usage drop\" beside Sync now; API: POST /sync {\"acceptUsageDrop\": true}; CLI: `sophos-cw-sync sync --accept-usage-drop`. To change the threshold, set usageDropGuard (0 turns the guard off).".to_owned(),
        }
    }
}

impl RunReport {
    /// Adds a warning unless the same one (code and identifier) is there already:
    /// each invocation of a run checks the catalog again.
    pub fn warn(&mut self, warning: Warning) {
        let same = |w: &Warning| w.code == warning.code && w.identifier == warning.identifier;
        if !self.warnings.iter().any(same) {
            self.warnings.push(warning);
        }
    }
}

/// How many unassigned usage lines (and unmapped product codes) a stored run
/// summary keeps.
pub const MAX_UNASSIGNED: usize = 200;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Customers of a run by state, and how many had errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CustomerCounts {
    pub total: u64,
    pub synced: u64,
    /// Customers with changes held for review.
    #[serde(default)]
    pub review: u64,
    pub error: u64,
    pub ignored: u64,
    pub unmapped: u64,
    /// Customers with at least one error (errors and unmapped ones).
    pub with_errors: u64,
    /// Error reports across all customers.
    pub errors: u64,
    /// Product changes held for review across all customers (new or still held).
    #[serde(default)]
    pub held: u64,
}

impl CustomerCounts {
    pub fn add(&mut self, c: &CustomerReport) {
        self.total += 1;
        match c.status {
            CustomerState::Synced => self.synced += 1,
            CustomerState::Review => self.review += 1,
            CustomerState::Error => self.error += 1,
            CustomerState::Ignored => self.ignored += 1,
            CustomerState::Unmapped => self.unmapped += 1,
        }
        self.with_errors += u64::from(!c.errors.is_empty());
        self.errors += c.errors.len() as u64;
        self.held += c
            .products
            .iter()
            .filter(|p| p.action == ProductAction::Hold)
            .count() as u64;
    }
}

/// The product codes a run has met so far, so that each distinct code is listed
/// (or, past the bound, counted) once however many customers have it. Kept by the
/// engine beside the report for the run's whole invocation; a resumed invocation
/// starts it from the codes its summary lists (as it carries `customer_counts`).
#[derive(Debug, Default)]
pub struct UnmappedCodesSeen(BTreeSet<String>);

impl UnmappedCodesSeen {
    /// The codes `report` lists: what a resumed invocation carries over. Codes
    /// past [`MAX_UNASSIGNED`] were only counted, so one seen again in a later
    /// invocation is counted again in `unmapped_codes_omitted`.
    pub fn listed_in(report: &RunReport) -> Self {
        Self(
            report
                .unmapped_codes
                .iter()
                .map(|p| p.product_code.clone())
                .collect(),
        )
    }
}

impl RunReport {
    /// Adds a finished customer's unmapped product codes (from its
    /// `PRODUCT_UNMAPPED` errors) to `unmapped_codes`: a code already seen is
    /// skipped (the first customer's details stay), and past [`MAX_UNASSIGNED`]
    /// a new code is only counted in `unmapped_codes_omitted`.
    pub fn add_unmapped_codes(&mut self, c: &CustomerReport, seen: &mut UnmappedCodesSeen) {
        let products = c
            .errors
            .iter()
            .filter(|e| e.code == ErrorCode::ProductUnmapped)
            .filter_map(|e| e.product.as_deref());
        for product in products {
            if !seen.0.insert(product.product_code.clone()) {
                continue;
            }
            if self.unmapped_codes.len() < MAX_UNASSIGNED {
                self.unmapped_codes.push(product.clone());
            } else {
                self.unmapped_codes_omitted += 1;
            }
        }
    }

    /// Adds one invocation's throttling: the 429s add up, and the lowest
    /// concurrency is the lowest any invocation reached.
    pub fn add_throttling(&mut self, stats: crate::http::ThrottleStats) {
        self.throttled += stats.throttled;
        let lowest = stats.lowest_concurrency as u64;
        self.lowest_concurrency = Some(self.lowest_concurrency.map_or(lowest, |l| l.min(lowest)));
    }

    /// The report as a run record keeps it: without `customers` (stored one record
    /// each) and with the unassigned usage bounded (the unmapped codes are bounded
    /// as they are added).
    pub fn summary(&self) -> serde_json::Value {
        let mut summary = self.clone_without_lists();
        let kept = self.unassigned_usage.len().min(MAX_UNASSIGNED);
        summary.unassigned_usage = self.unassigned_usage[..kept].to_vec();
        summary.unassigned_usage_omitted += (self.unassigned_usage.len() - kept) as u64;
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            obj.remove("customers");
        }
        value
    }

    fn clone_without_lists(&self) -> RunReport {
        RunReport {
            run_id: self.run_id.clone(),
            status: self.status,
            month: self.month.clone(),
            dry_run: self.dry_run,
            started_at: self.started_at,
            finished_at: self.finished_at,
            held_by: self.held_by.clone(),
            errors: self.errors.clone(),
            usage_available: self.usage_available,
            catalog: self.catalog.clone(),
            customer_counts: self.customer_counts,
            customers: Vec::new(),
            unassigned_usage: Vec::new(),
            unassigned_usage_omitted: self.unassigned_usage_omitted,
            // Bounded as it is filled (`add_unmapped_codes`), so kept whole.
            unmapped_codes: self.unmapped_codes.clone(),
            unmapped_codes_omitted: self.unmapped_codes_omitted,
            api_calls: self.api_calls,
            writes: self.writes,
            throttled: self.throttled,
            lowest_concurrency: self.lowest_concurrency,
            warnings: self.warnings.clone(),
            reason: self.reason.clone(),
            customers_with_usage: self.customers_with_usage,
            usage_drop_guarded: self.usage_drop_guarded,
            usage_drop_accepted: self.usage_drop_accepted,
        }
    }
}

/// A stored run summary ([`RunReport::summary`]) as the pages read it: only what
/// they show, every field optional or defaulted, so a record from before a field
/// existed (or a failed run's `{"error": ...}`) still reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunSummary {
    /// None in a summary without counts (a failed run's, an old one).
    pub customer_counts: Option<CustomerCounts>,
    /// Why the whole cycle failed.
    pub errors: Vec<ErrorReport>,
    pub unassigned_usage: Vec<UnassignedUsage>,
    pub unassigned_usage_omitted: u64,
    pub unmapped_codes: Vec<UnmappedProduct>,
    pub unmapped_codes_omitted: u64,
    /// None in a summary without it.
    pub writes: Option<u64>,
    /// None in records from before throttling was kept.
    pub throttled: Option<u64>,
    pub lowest_concurrency: Option<u64>,
    pub warnings: Vec<Warning>,
}

impl RunSummary {
    /// Reads a stored summary. What does not read (a field of the wrong shape,
    /// a summary that is not an object) is left at its default and described in
    /// the returned problems, so a page still shows the rest.
    pub fn read(value: &serde_json::Value) -> (Self, Vec<String>) {
        match serde_json::from_value(value.clone()) {
            Ok(summary) => (summary, Vec::new()),
            Err(_) => Self::read_each_field(value),
        }
    }

    /// [`RunSummary::read`] field by field, for a summary that does not read whole.
    fn read_each_field(value: &serde_json::Value) -> (Self, Vec<String>) {
        use serde::de::DeserializeOwned;
        let mut problems = Vec::new();
        let Some(obj) = value.as_object() else {
            if !value.is_null() {
                problems.push(format!(
                    "the summary is not an object: {}",
                    json_kind(value)
                ));
            }
            return (Self::default(), problems);
        };
        fn read<T: DeserializeOwned + Default>(
            obj: &serde_json::Map<String, serde_json::Value>,
            key: &str,
            problems: &mut Vec<String>,
        ) -> T {
            let Some(value) = obj.get(key) else {
                return T::default();
            };
            serde_json::from_value(value.clone()).unwrap_or_else(|e| {
                problems.push(format!("{key}: {e}"));
                T::default()
            })
        }
        /// A list keeps the entries that read.
        fn read_list<T: DeserializeOwned>(
            obj: &serde_json::Map<String, serde_json::Value>,
            key: &str,
            problems: &mut Vec<String>,
        ) -> Vec<T> {
            let Some(entries) = obj.get(key).and_then(serde_json::Value::as_array) else {
                return read(obj, key, problems);
            };
            entries
                .iter()
                .enumerate()
                .filter_map(|(i, entry)| {
                    serde_json::from_value(entry.clone())
                        .map_err(|e| problems.push(format!("{key}[{i}]: {e}")))
                        .ok()
                })
                .collect()
        }
        let p = &mut problems;
        let summary = Self {
            customer_counts: read(obj, "customerCounts", p),
            errors: read_list(obj, "errors", p),
            unassigned_usage: read_list(obj, "unassignedUsage", p),
            unassigned_usage_omitted: read(obj, "unassignedUsageOmitted", p),
            unmapped_codes: read_list(obj, "unmappedCodes", p),
            unmapped_codes_omitted: read(obj, "unmappedCodesOmitted", p),
            writes: read(obj, "writes", p),
            throttled: read(obj, "throttled", p),
            lowest_concurrency: read(obj, "lowestConcurrency", p),
            warnings: read_list(obj, "warnings", p),
        };
        (summary, problems)
    }

    /// Every unmapped product code the run met: those listed and those only counted.
    pub fn unmapped_code_count(&self) -> u64 {
        self.unmapped_codes.len() as u64 + self.unmapped_codes_omitted
    }
}

/// "a string", "an array", ...: what a summary that is not an object is.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignedUsage {
    pub product_code: Option<String>,
    pub product_description: Option<String>,
    pub quantity: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run summary as stored before the unmapped codes were reported: the new
    /// fields default, so old run records still read.
    fn old_report() -> RunReport {
        serde_json::from_value(json!({
            "runId": "r1", "status": "running", "month": "2026-11", "dryRun": false,
            "startedAt": "2026-11-29T00:50:12Z", "finishedAt": null, "errors": [],
            "usageAvailable": true, "catalog": [], "unassignedUsage": [],
            "apiCalls": {"sophos": 0, "connectwise": 0}, "writes": 0
        }))
        .expect("an old summary reads")
    }

    fn product(code: &str, quantity: f64) -> UnmappedProduct {
        UnmappedProduct {
            product_code: code.into(),
            product_description: Some(format!("{code} description")),
            sku: None,
            product_group: None,
            quantity,
            known_as: None,
        }
    }

    fn customer(tenant_id: &str, codes: &[(&str, f64)]) -> CustomerReport {
        let mut errors: Vec<ErrorReport> = codes
            .iter()
            .map(|(code, q)| ErrorReport::unmapped_product(product(code, *q)))
            .collect();
        // Other errors name no product code and must not count.
        errors.push(ErrorReport::new(ErrorCode::CwValidation, "rejected"));
        CustomerReport {
            tenant_id: tenant_id.into(),
            tenant_name: tenant_id.into(),
            status: CustomerState::Error,
            reason: None,
            company_id: Some(1),
            company_identifier: Some("Acme".into()),
            company_name: Some("Acme Ltd".into()),
            agreement_id: Some(2),
            agreement_name: None,
            agreement_type: None,
            products: Vec::new(),
            errors,
        }
    }

    fn codes(report: &RunReport) -> Vec<&str> {
        report
            .unmapped_codes
            .iter()
            .map(|p| p.product_code.as_str())
            .collect()
    }

    #[test]
    fn a_code_two_customers_have_is_listed_once_with_the_first_customers_details() {
        let mut report = old_report();
        assert!(report.unmapped_codes.is_empty());
        let mut seen = UnmappedCodesSeen::default();
        report.add_unmapped_codes(&customer("t1", &[("ZZ-A", 3.0)]), &mut seen);
        report.add_unmapped_codes(&customer("t2", &[("ZZ-A", 7.0), ("ZZ-B", 1.0)]), &mut seen);
        assert_eq!(codes(&report), ["ZZ-A", "ZZ-B"]);
        assert_eq!(report.unmapped_codes[0].quantity, 3.0, "first seen wins");
        assert_eq!(report.unmapped_codes_omitted, 0);
        let summary = report.summary();
        assert_eq!(summary["unmappedCodes"][0]["productCode"], "ZZ-A");
        assert_eq!(summary["unmappedCodes"].as_array().map(Vec::len), Some(2));
        assert!(
            summary.get("unmappedCodesOmitted").is_none(),
            "zero is left out: {summary}"
        );
    }

    #[test]
    fn past_the_bound_further_distinct_codes_are_counted_once_each() {
        let mut report = old_report();
        let mut seen = UnmappedCodesSeen::default();
        let many: Vec<String> = (0..MAX_UNASSIGNED + 5)
            .map(|i| format!("ZZ-{i:03}"))
            .collect();
        let all: Vec<(&str, f64)> = many.iter().map(|c| (c.as_str(), 1.0)).collect();
        report.add_unmapped_codes(&customer("t1", &all), &mut seen);
        // A second customer with codes past the bound, one already counted.
        let again = [(many[MAX_UNASSIGNED + 4].as_str(), 1.0), ("ZZ-NEW", 1.0)];
        report.add_unmapped_codes(&customer("t2", &again), &mut seen);
        assert_eq!(report.unmapped_codes.len(), MAX_UNASSIGNED);
        assert_eq!(
            report.unmapped_codes[MAX_UNASSIGNED - 1].product_code,
            many[MAX_UNASSIGNED - 1]
        );
        assert_eq!(report.unmapped_codes_omitted, 6);
        let summary = report.summary();
        assert_eq!(
            summary["unmappedCodes"].as_array().map(Vec::len),
            Some(MAX_UNASSIGNED)
        );
        assert_eq!(summary["unmappedCodesOmitted"], 6);
        let back: RunReport = serde_json::from_value(summary).expect("the summary reads back");
        assert_eq!(back.unmapped_codes, report.unmapped_codes);
        assert_eq!(back.unmapped_codes_omitted, 6);
    }

    #[test]
    fn throttling_adds_up_over_invocations_and_old_records_read_without_it() {
        let mut report = old_report();
        assert_eq!((report.throttled, report.lowest_concurrency), (0, None));
        assert!(report.summary().get("lowestConcurrency").is_none());
        let stats = |throttled, lowest_concurrency| crate::http::ThrottleStats {
            throttled,
            lowest_concurrency,
        };
        report.add_throttling(stats(3, 2));
        report.add_throttling(stats(0, 4));
        assert_eq!((report.throttled, report.lowest_concurrency), (3, Some(2)));
        let summary = report.summary();
        assert_eq!(summary["throttled"], 3);
        assert_eq!(summary["lowestConcurrency"], 2);
        let back: RunReport = serde_json::from_value(summary).expect("reads back");
        assert_eq!(back.lowest_concurrency, Some(2));
    }

    /// A full summary reads whole, and the field-by-field path reads it the same.
    #[test]
    fn a_summary_reads_into_its_type_whole_and_field_by_field_alike() {
        let mut report = old_report();
        let mut seen = UnmappedCodesSeen::default();
        let mut c = customer("t1", &[("ZZ-A", 3.0)]);
        report.customer_counts.add(&c);
        c.tenant_id = "t2".into();
        report.customer_counts.add(&c);
        report.add_unmapped_codes(&c, &mut seen);
        report.add_throttling(crate::http::ThrottleStats {
            throttled: 2,
            lowest_concurrency: 3,
        });
        report.writes = 5;
        report
            .errors
            .push(ErrorReport::new(ErrorCode::UpstreamUnavailable, "down"));
        report.unassigned_usage.push(UnassignedUsage {
            product_code: Some("FW".into()),
            product_description: None,
            quantity: 2.0,
        });
        report.warn(Warning::catalog_price_zero("Sophos_Email", Some(9)));
        let stored = report.summary();
        let (summary, problems) = RunSummary::read(&stored);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(summary.customer_counts.map(|n| n.total), Some(2));
        assert_eq!(summary.customer_counts.map(|n| n.error), Some(2));
        assert_eq!(summary.writes, Some(5));
        assert_eq!(
            (summary.throttled, summary.lowest_concurrency),
            (Some(2), Some(3))
        );
        assert_eq!(summary.errors, report.errors);
        assert_eq!(summary.unassigned_usage, report.unassigned_usage);
        assert_eq!(summary.unmapped_codes, report.unmapped_codes);
        assert_eq!(summary.unmapped_code_count(), 1);
        assert_eq!(summary.warnings, report.warnings);
        assert_eq!(RunSummary::read_each_field(&stored), (summary, Vec::new()));
    }

    #[test]
    fn an_old_or_failed_runs_summary_reads_with_what_it_has() {
        let (old, problems) = RunSummary::read(&report_without_counts());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(old.customer_counts, None);
        assert_eq!((old.writes, old.throttled), (Some(0), None));
        for stored in [
            json!({"error": "the store is down"}),
            serde_json::Value::Null,
        ] {
            let (summary, problems) = RunSummary::read(&stored);
            assert_eq!((summary, problems), (RunSummary::default(), Vec::new()));
        }
    }

    fn report_without_counts() -> serde_json::Value {
        let mut stored = old_report().summary();
        let obj = stored.as_object_mut().unwrap();
        obj.remove("customerCounts");
        obj.remove("throttled");
        stored
    }

    #[test]
    fn a_summary_that_does_not_read_whole_keeps_what_reads_and_names_the_rest() {
        let mut stored = old_report().summary();
        stored["writes"] = json!(4);
        stored["warnings"] = json!("not a list");
        stored["customerCounts"] = json!({"total": "many"});
        stored["unmappedCodes"] = json!([
            {"productCode": "ZZ-A", "quantity": 1.0},
            {"quantity": 2.0},
            {"productCode": "ZZ-C", "quantity": 3.0}
        ]);
        let (summary, problems) = RunSummary::read(&stored);
        assert_eq!(summary.writes, Some(4));
        assert_eq!(summary.warnings, Vec::new());
        assert_eq!(summary.customer_counts, None);
        let codes: Vec<&str> = summary
            .unmapped_codes
            .iter()
            .map(|p| p.product_code.as_str())
            .collect();
        assert_eq!(
            codes,
            ["ZZ-A", "ZZ-C"],
            "the entry that does not read is left out"
        );
        let named: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            named,
            ["customerCounts", "unmappedCodes[1]", "warnings"],
            "{problems:?}"
        );

        let (summary, problems) = RunSummary::read(&json!(["not", "a", "summary"]));
        assert_eq!(summary, RunSummary::default());
        assert_eq!(problems, ["the summary is not an object: an array"]);
    }

    #[test]
    fn a_customer_result_stored_without_a_company_name_still_reads() {
        let mut stored = serde_json::to_value(customer("t1", &[])).unwrap();
        assert_eq!(stored["companyName"], "Acme Ltd");
        stored.as_object_mut().unwrap().remove("companyName");
        let c: CustomerReport = serde_json::from_value(stored).expect("reads");
        assert_eq!(c.company_name, None);
        assert_eq!(c.company_identifier.as_deref(), Some("Acme"));
    }
}

/// Every advice must work where the operator is: a console page, an API route the
/// API answers and a command the CLI accepts.
#[cfg(test)]
mod advice_tests {
    use super::ErrorCode;
    use crate::api::routes::probe::methods_of;
    use crate::cli::Cli;
    use clap::{CommandFactory, Parser};

    /// The console's pages (src/console/pages/), as the advice names them.
    const CONSOLE_PAGES: [&str; 8] = [
        "Home",
        "Customers",
        "Customer",
        "Mapping",
        "Review",
        "Runs",
        "Audit",
        "Settings",
    ];

    /// Every code, in declaration order: the exhaustive match makes a new code
    /// fail to compile until it is placed in the chain.
    fn every_code() -> Vec<ErrorCode> {
        fn after(code: ErrorCode) -> Option<ErrorCode> {
            use ErrorCode::*;
            match code {
                CompanyNotFound => Some(CompanyAmbiguous),
                CompanyAmbiguous => Some(AgreementNotFound),
                AgreementNotFound => Some(AgreementAmbiguous),
                AgreementAmbiguous => Some(AgreementShared),
                AgreementShared => Some(AdditionAmbiguous),
                AdditionAmbiguous => Some(CatalogAmbiguous),
                CatalogAmbiguous => Some(ProductUnmapped),
                ProductUnmapped => Some(CatalogSetup),
                CatalogSetup => Some(CwPermission),
                CwPermission => Some(CwValidation),
                CwValidation => Some(UpstreamUnavailable),
                UpstreamUnavailable => Some(UsageUnassigned),
                UsageUnassigned => None,
            }
        }
        std::iter::successors(Some(ErrorCode::CompanyNotFound), |c| after(*c)).collect()
    }

    /// What follows each `label` in `advice` (e.g. "console: ").
    fn after_each<'a>(advice: &'a str, label: &str) -> Vec<&'a str> {
        advice.split(label).skip(1).collect()
    }

    /// The `code`-quoted spans of an advice.
    fn quoted(advice: &str) -> Vec<&str> {
        advice.split('`').skip(1).step_by(2).collect()
    }

    /// The CLI's words of a quoted command (leading `VAR=value` assignments
    /// dropped), placeholders such as `<tenantId>` filled with an id.
    fn command_words(span: &str) -> Vec<String> {
        span.split_whitespace()
            .skip_while(|w| w.contains('=') && !w.starts_with('-'))
            .map(|w| match w.starts_with('<') && w.ends_with('>') {
                true => "110".to_owned(),
                false => w.to_owned(),
            })
            .collect()
    }

    /// Why the CLI's parser refuses `words`, if it does.
    fn refused(words: &[String]) -> Option<String> {
        Cli::try_parse_from(words).err().map(|e| e.to_string())
    }

    /// Why the API does not answer `METHOD /path` at the start of `step`, if it does not.
    fn unanswered(step: &str) -> Option<String> {
        let mut words = step.split_whitespace();
        let method = words.next().unwrap_or_default();
        let raw = words.next().unwrap_or_default();
        let path: String = raw
            .trim_end_matches([';', ',', '.', ')'])
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        match methods_of(&path) {
            Ok(allow) if allow.iter().any(|m| m == method) => None,
            Ok(allow) => Some(format!("{path} answers {allow:?}, not {method}")),
            Err(e) => Some(format!("{path}: {e}")),
        }
    }

    #[test]
    fn every_cli_command_an_advice_names_is_one_the_cli_accepts() {
        let subcommands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        for code in every_code() {
            let advice = code.advice();
            let mut commands = 0;
            for span in quoted(advice) {
                let words = command_words(span);
                match words.first().map(String::as_str) {
                    Some("sophos-cw-sync") => {
                        commands += 1;
                        if let Some(why) = refused(&words) {
                            panic!(
                                "{code:?}'s advice names `{span}`, which the CLI refuses: {why}"
                            );
                        }
                    }
                    Some(w) if subcommands.iter().any(|s| s == w) => {
                        panic!("{code:?}: write `{span}` in full, as `sophos-cw-sync {span}`")
                    }
                    _ => {}
                }
            }
            assert!(commands > 0, "{code:?}'s advice names no CLI command");
            assert!(advice.contains("CLI: "), "{code:?}: {advice}");
        }
    }

    #[test]
    fn every_advice_names_a_console_page_and_an_api_route() {
        for code in every_code() {
            let advice = code.advice();
            let pages = after_each(advice, "console: ");
            assert!(
                !pages.is_empty(),
                "{code:?} names no console page: {advice}"
            );
            for page in pages {
                let name: String = page.chars().take_while(char::is_ascii_alphabetic).collect();
                assert!(
                    CONSOLE_PAGES.contains(&name.as_str()),
                    "{code:?} names console page {name:?}, not one of {CONSOLE_PAGES:?}"
                );
            }
            let routes = after_each(advice, "API: ");
            assert!(!routes.is_empty(), "{code:?} names no API route: {advice}");
            for step in routes {
                if let Some(why) = unanswered(step) {
                    panic!("{code:?}'s advice names a route the API does not answer: {why}");
                }
            }
        }
    }

    #[test]
    fn the_checks_refuse_what_the_cli_and_the_api_refuse() {
        // The old AGREEMENT_SHARED advice: `--agreement` requires `--company`.
        let old = command_words("sophos-cw-sync map <tenantId> --agreement <agreementId>");
        assert!(refused(&old).unwrap().contains("--company"));
        let env = command_words("SYNC_SETTINGS=<file> sophos-cw-sync settings");
        assert_eq!(env, ["sophos-cw-sync", "settings"]);
        assert!(refused(&env).is_none());
        assert!(unanswered("PUT /mappings/{tenantId} {\"ignore\": true};").is_none());
        assert!(unanswered("GET /runs/{runId};").is_none());
        assert!(
            unanswered("POST /mappings/{tenantId};").is_some(),
            "PUT or DELETE only"
        );
        assert!(unanswered("PUT /nowhere;").is_some());
        assert_eq!(every_code().len(), 13);
    }
}
