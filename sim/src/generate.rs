//! Generator of large, deterministic scenarios for benchmarks: `tenants` usage
//! customers, each with a ConnectWise company of exactly the same name and one
//! "Sophos MSP" agreement, and `products` usage products per tenant for
//! [`USAGE_MONTH`]. Realistic wrinkles: every 50th tenant has no company, and
//! about one product line in ten is split over two order lines (Sophos's API documentation).
//! The catalog starts empty (the sync creates its items); the reference data a
//! catalog item needs is there.

use crate::scenario::{ConnectWiseScenario, Scenario, SophosScenario};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The month the generated usage is reported for.
pub const USAGE_MONTH: &str = "2026-11";

/// Billing `productCode`s and descriptions, from the evidence the built-in code
/// table holds (`CIXA-MSP` is Sophos' own example; the others were seen in tools
/// that read real partner data, `XDR-MSP` in one fixture only). MDR lines carry
/// today's names (MDR Essentials, MDR Complete), as Sophos' lines do.
pub const PRODUCTS: [(&str, &str); 8] = [
    ("CIXA-MSP", "Intercept X Advanced - MSP Monthly"),
    ("XDR-MSP", "Intercept X Advanced with XDR - MSP Monthly"),
    (
        "SVRCLOUDADV-MSP",
        "Intercept X Advanced for Server - MSP Monthly",
    ),
    (
        "SVRCIXAMTR-STD-MSP",
        "MDR Essentials for Server - MSP Monthly",
    ),
    ("CIXAMTR-STD-MSP", "MDR Essentials - MSP Monthly"),
    ("CIXAMTR-ADV-MSP", "MDR Complete - MSP Monthly"),
    ("CMA-MSP", "Mobile Advanced - MSP Monthly"),
    ("CDE-MSP", "Device Encryption - MSP Monthly"),
];

/// Server products bill under the `Server` group, the rest per user.
fn product_group(code: &str) -> &'static str {
    if code.starts_with("SVR") {
        "Server"
    } else {
        "User"
    }
}

/// Every this-many-th tenant has no ConnectWise company (an unmapped customer).
const NO_COMPANY_EVERY: usize = 50;

const ADJECTIVES: [&str; 16] = [
    "Acme", "Blue", "Cedar", "Delta", "Eagle", "Falcon", "Granite", "Harbor", "Iron", "Juniper",
    "Keystone", "Lakeside", "Maple", "Northern", "Pioneer", "Summit",
];
const NOUNS: [&str; 12] = [
    "Dental",
    "Logistics",
    "Legal",
    "Motors",
    "Bakery",
    "Clinic",
    "Farms",
    "Software",
    "Builders",
    "Realty",
    "Foods",
    "Energy",
];
const SUFFIXES: [&str; 6] = ["Ltd", "LLC", "Inc", "GmbH", "Corp", "Group"];

// Fixed ids of the reference data, so tests and benchmarks can name them.
const AGREEMENT_TYPE_ID: i64 = 1;
const PRODUCT_TYPE_ID: i64 = 11;
const CATEGORY_ID: i64 = 21;
const SUBCATEGORY_ID: i64 = 31;
const UNIT_ID: i64 = 41;

/// A scenario with `tenants` usage customers and `products` products each
/// (at most [`PRODUCTS`]`.len()`; more is clamped). Same seed, same scenario.
pub fn generate(tenants: usize, products: usize, seed: u64) -> Scenario {
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(seed),
        sophos: SophosScenario::default(),
        cw: ConnectWiseScenario::default(),
        lines: Vec::new(),
    };
    g.reference_data();
    for i in 1..=tenants {
        g.tenant(i, products.min(PRODUCTS.len()));
    }
    let lines = std::mem::take(&mut g.lines);
    g.sophos.usage = BTreeMap::from([(USAGE_MONTH.to_owned(), lines)]);
    Scenario {
        sophos: g.sophos,
        connectwise: g.cw,
    }
}

struct Generator {
    rng: ChaCha8Rng,
    sophos: SophosScenario,
    cw: ConnectWiseScenario,
    lines: Vec<Value>,
}

impl Generator {
    fn reference_data(&mut self) {
        let cw = &mut self.cw;
        cw.agreement_types = vec![json!({
            "id": AGREEMENT_TYPE_ID, "name": "Sophos MSP", "defaultFlag": false, "inactiveFlag": false,
            "employeeCompRate": "Actual", "employeeCompNotExceed": "Billing", "invoicingCycle": "CalendarYear",
            "billTime": "Billable", "billExpenses": "Billable", "billProducts": "Billable",
        })];
        // As messy as a real setup table: the names the settings use also occur
        // under other categories, retired (inactive) and in other categories.
        cw.product_types = vec![
            json!({"id": PRODUCT_TYPE_ID, "name": "Software", "inactiveFlag": false}),
            json!({"id": 12, "name": "Hardware", "inactiveFlag": false}),
            json!({"id": 13, "name": "Software", "inactiveFlag": true}),
        ];
        cw.categories = vec![
            json!({"id": CATEGORY_ID, "name": "Security", "inactiveFlag": false}),
            json!({"id": 22, "name": "Hardware", "inactiveFlag": false}),
            json!({"id": 23, "name": "Software", "inactiveFlag": false}),
            json!({"id": 24, "name": "Security", "inactiveFlag": true}),
        ];
        let sub = |id: i64, name: &str, category: (i64, &str), inactive: bool| {
            json!({"id": id, "name": name, "inactiveFlag": inactive,
                   "category": {"id": category.0, "name": category.1}})
        };
        cw.subcategories = vec![
            sub(SUBCATEGORY_ID, "Endpoint", (CATEGORY_ID, "Security"), false),
            sub(32, "Endpoint", (22, "Hardware"), false),
            sub(33, "Licensing", (22, "Hardware"), false),
            sub(34, "Licensing", (23, "Software"), false),
            sub(35, "Security", (23, "Software"), false),
            sub(36, "Endpoint", (CATEGORY_ID, "Security"), true),
        ];
        cw.unit_of_measures = vec![
            json!({"id": UNIT_ID, "name": "Each", "inactiveFlag": false}),
            json!({"id": 42, "name": "Each", "inactiveFlag": true}),
        ];
    }

    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes[..]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.rng.random_range(0..words.len())]
    }

    fn tenant(&mut self, i: usize, products: usize) {
        let name = format!(
            "{} {} {i:05} {}",
            self.pick(&ADJECTIVES),
            self.pick(&NOUNS),
            self.pick(&SUFFIXES)
        );
        let id = self.uuid();
        let partner = self.sophos.partner_id.clone();
        self.sophos.tenants.push(json!({
            "id": id, "showAs": name, "name": name, "dataGeography": "US", "dataRegion": "us01",
            "billingType": "usage", "partner": {"id": partner}, "organization": {"id": partner},
            "apiHost": "https://api-us01.central.sophos.com",
        }));
        if !i.is_multiple_of(NO_COMPANY_EVERY) {
            self.company_and_agreement(i as i64, &name);
        }
        let external_id = self.uuid();
        for product in self.choose_products(products) {
            self.usage_lines(i, &id, &external_id, PRODUCTS[product]);
        }
    }

    fn company_and_agreement(&mut self, i: i64, name: &str) {
        let identifier: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let company = json!({"id": 100_000 + i, "identifier": identifier, "name": name});
        let mut full = company.clone();
        full["status"] = json!({"id": 1, "name": "Active"});
        full["types"] = json!([{"id": 1, "name": "Client"}]);
        full["deletedFlag"] = json!(false);
        self.cw.companies.push(full);
        self.cw.agreements.push(json!({
            "id": 200_000 + i, "name": format!("{name} - Sophos"),
            "type": {"id": AGREEMENT_TYPE_ID, "name": "Sophos MSP"}, "company": company,
            "contact": {"id": 300_000 + i, "name": "Billing Contact"},
            "startDate": "2025-01-01T00:00:00Z", "noEndingDateFlag": true, "cancelledFlag": false,
            "agreementStatus": "Active", "billingCycle": {"id": 1, "name": "Monthly"},
            "billProducts": "Billable", "prorateFlag": false,
        }));
    }

    /// `count` distinct indices into [`PRODUCTS`] (a partial Fisher–Yates shuffle).
    fn choose_products(&mut self, count: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..PRODUCTS.len()).collect();
        for k in 0..count {
            let j = self.rng.random_range(k..all.len());
            all.swap(k, j);
        }
        all.truncate(count);
        all
    }

    /// One product's usage, split over two order lines about one time in ten.
    fn usage_lines(&mut self, i: usize, tenant: &str, external_id: &str, product: (&str, &str)) {
        let total: u32 = self.rng.random_range(1..=250);
        let split = total > 1 && self.rng.random_range(0..10) == 0;
        let first = if split {
            self.rng.random_range(1..total)
        } else {
            total
        };
        for quantity in [first, total - first].into_iter().filter(|q| *q > 0) {
            let line = self.lines.len() + 1;
            self.lines.push(json!({
                "partnerAccountId": self.sophos.partner_id, "partnerEdiAccountNumber": "1234567",
                "partnerAccountName": "Sim MSP Inc",
                "billingStartDate": format!("{USAGE_MONTH}-01"), "billingEndDate": format!("{USAGE_MONTH}-30"),
                "orderNumber": format!("ORD-{line}"), "orderLineItemNumber": line.to_string(),
                "accountNumberOrSerialNumber": format!("ACC-{i}"), "productDescription": product.1,
                "productGroup": product_group(product.0), "sku": format!("{}-SKU", product.0),
                "billableQuantity": quantity, "actualQuantity": quantity, "externalId": external_id,
                "accountStatus": "active", "productCode": product.0, "accountId": tenant,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn same_seed_same_scenario_other_seed_differs() {
        assert_eq!(generate(120, 3, 7), generate(120, 3, 7));
        assert_ne!(generate(120, 3, 7), generate(120, 3, 8));
    }

    #[test]
    fn companies_match_tenant_names_except_every_fiftieth() {
        let s = generate(120, 2, 1);
        assert_eq!(s.sophos.tenants.len(), 120);
        assert_eq!(s.connectwise.companies.len(), 118);
        assert_eq!(s.connectwise.agreements.len(), 118);
        let companies: HashSet<&str> = s
            .connectwise
            .companies
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let unmapped: Vec<&Value> = s
            .sophos
            .tenants
            .iter()
            .filter(|t| !companies.contains(t["name"].as_str().unwrap()))
            .collect();
        assert_eq!(unmapped.len(), 2);
        assert_eq!(
            unmapped[0]["name"].as_str().unwrap().split(' ').nth(2),
            Some("00050")
        );
    }

    #[test]
    fn each_tenant_has_exactly_m_distinct_known_products() {
        let s = generate(200, 3, 42);
        let mut per_tenant: HashMap<&str, HashSet<&str>> = HashMap::new();
        for line in &s.sophos.usage[USAGE_MONTH] {
            let code = line["productCode"].as_str().unwrap();
            assert!(PRODUCTS.iter().any(|(c, _)| *c == code), "{code}");
            per_tenant
                .entry(line["accountId"].as_str().unwrap())
                .or_default()
                .insert(code);
        }
        assert_eq!(per_tenant.len(), 200);
        assert!(per_tenant.values().all(|codes| codes.len() == 3));
        // Some product usage is split across order lines.
        assert!(s.sophos.usage[USAGE_MONTH].len() > 600);
    }

    #[test]
    fn products_beyond_the_list_are_clamped() {
        let s = generate(2, 99, 1);
        assert!(s.sophos.usage[USAGE_MONTH].len() >= 2 * PRODUCTS.len());
    }
}
