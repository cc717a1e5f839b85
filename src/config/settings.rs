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
    /// While set, every run that would write (scheduled, webhook, console, CLI
    /// `sync`) is skipped with the reason; a dry run still plans. `true` in a
    /// settings document is a pause with no reason given.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "pause_switch"
    )]
    pub paused: Option<Pause>,
    /// Price and cost of the catalog items the sync creates, by identifier. Items
    /// that already exist (and their additions) are never repriced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
    /// The IANA time zone the billing month is counted in (`current`, `previous`,
    /// `monthClose`), e.g. "Europe/Berlin".
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// During the first this-many days of a month (0 to 10), a run without an
    /// explicit month syncs the previous one, so additions hold its final figures
    /// when ConnectWise invoices in arrears.
    #[serde(default)]
    pub month_close: u32,
    /// When more than this percentage of the customers that had usage in the last
    /// comparable run have none in this report, no quantity is lowered (0: off).
    #[serde(default = "default_usage_drop_guard")]
    pub usage_drop_guard: f64,
    /// Who may sign in to the console through the identity provider (OpenID
    /// Connect), and with which role (`crate::config::operators`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<crate::config::operators::OperatorRule>,
}

/// Who paused the sync, when and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Pause {
    /// "paused by console:alice on 2026-12-01 09:12 UTC: invoices being checked".
    pub fn describe(&self) -> String {
        let mut text = String::from("the sync is paused");
        if let Some(by) = &self.by {
            text.push_str(&format!(" by {by}"));
        }
        if let Some(at) = &self.at {
            text.push_str(&format!(" on {}", at.format("%Y-%m-%d %H:%M UTC")));
        }
        if let Some(reason) = self.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            text.push_str(&format!(": {}", reason.trim()));
        }
        text
    }
}

/// `"paused": true | false | null | {"by":…, "at":…, "reason":…}`.
fn pause_switch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Pause>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        On(bool),
        Details(Pause),
    }
    Ok(match Option::<Switch>::deserialize(d)? {
        None | Some(Switch::On(false)) => None,
        Some(Switch::On(true)) => Some(Pause::default()),
        Some(Switch::Details(p)) => Some(p),
    })
}

/// A created catalog item's price (what the customer is billed per unit) and
/// cost (what the partner pays Sophos).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    pub price: f64,
    #[serde(default)]
    pub cost: f64,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// The usage drop guard's threshold when the setting is absent (percent).
pub const DEFAULT_USAGE_DROP_GUARD: f64 = 20.0;
/// The longest month close the setting allows (days).
pub const MAX_MONTH_CLOSE: u32 = 10;

fn default_usage_drop_guard() -> f64 {
    DEFAULT_USAGE_DROP_GUARD
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
            paused: None,
            prices: BTreeMap::new(),
            timezone: default_timezone(),
            month_close: 0,
            usage_drop_guard: DEFAULT_USAGE_DROP_GUARD,
            operators: Vec::new(),
        }
    }
}

fn default_month() -> String {
    "current".to_owned()
}

impl Settings {
    /// The time zone of `timezone` (checked by [`Settings::check_month`]; UTC if
    /// it does not parse).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.trim().parse().unwrap_or(chrono_tz::UTC)
    }

    /// The billing month a run without an explicit month syncs at `now`: the
    /// `month` setting counted in `timezone`, and during the first `monthClose`
    /// days of a month the previous one (see [`crate::domain::month::Month::for_run`]).
    pub fn run_month(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::domain::month::Month, String> {
        crate::domain::month::Month::for_run(&self.month, self.tz(), self.month_close, now)
    }

    /// Checks `timezone`, `monthClose`, `usageDropGuard` and `prices`, with a
    /// message that names the key and says what to give.
    pub fn check_month_and_money(&self) -> Result<(), String> {
        if self.timezone.trim().parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "timezone {:?} is not an IANA time zone name: give e.g. \"UTC\", \"Europe/Berlin\" or \"America/New_York\" (the zone your ConnectWise invoices are dated in)",
                self.timezone
            ));
        }
        if self.month_close > MAX_MONTH_CLOSE {
            return Err(format!(
                "monthClose is {}: give the number of days, from 0 to {MAX_MONTH_CLOSE}, during which a new month still syncs the previous one (0: off)",
                self.month_close
            ));
        }
        let guard = self.usage_drop_guard;
        if !guard.is_finite() || !(0.0..=100.0).contains(&guard) {
            return Err(format!(
                "usageDropGuard is {guard}: give a percentage from 0 to 100 (default {DEFAULT_USAGE_DROP_GUARD}; 0 turns the guard off)"
            ));
        }
        for (identifier, p) in &self.prices {
            if !crate::domain::products::is_known(identifier) {
                return Err(format!(
                    "prices names {identifier:?}, which is not a known product identifier: use identifiers from the README's product table (e.g. Sophos_Intercept_X_Advanced)"
                ));
            }
            for (name, v) in [("price", p.price), ("cost", p.cost)] {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!(
                        "prices.{identifier}.{name} is {v}: give an amount of 0 or more, e.g. {{\"price\": 4.5, \"cost\": 2.9}}"
                    ));
                }
            }
        }
        Ok(())
    }

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
    /// Whether the catalog items the sync creates are taxable.
    #[serde(default)]
    pub taxable: bool,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            product_type: String::new(),
            category: String::new(),
            subcategory: String::new(),
            unit_of_measure: String::new(),
            product_class: ProductClass::Agreement,
            taxable: false,
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
    fn the_pause_switch_takes_true_false_or_who_and_why() {
        let on: Settings = serde_json::from_str(r#"{"paused":true}"#).unwrap();
        assert_eq!(on.paused, Some(Pause::default()));
        let off: Settings = serde_json::from_str(r#"{"paused":false}"#).unwrap();
        assert_eq!(off.paused, None);
        let null: Settings = serde_json::from_str(r#"{"paused":null}"#).unwrap();
        assert_eq!(null.paused, None);
        let why: Settings = serde_json::from_str(
            r#"{"paused":{"by":"cli:ann","at":"2026-12-01T09:12:00Z","reason":"invoices"}}"#,
        )
        .unwrap();
        let pause = why.paused.clone().unwrap();
        assert_eq!(
            pause.describe(),
            "the sync is paused by cli:ann on 2026-12-01 09:12 UTC: invoices"
        );
        // Written back as it was given; absent when not paused.
        let back = serde_json::to_value(&why).unwrap();
        assert_eq!(back["paused"]["reason"], "invoices");
        assert!(serde_json::to_value(&off).unwrap().get("paused").is_none());
        assert!(serde_json::from_str::<Settings>(r#"{"paused":{"who":"x"}}"#).is_err());
        assert!(serde_json::from_str::<Settings>(r#"{"paused":"yes"}"#).is_err());
    }

    #[test]
    fn month_and_money_settings_are_checked_with_what_to_fix() {
        let parse = |json: &str| serde_json::from_str::<Settings>(json).unwrap();
        assert_eq!(Settings::default().check_month_and_money(), Ok(()));
        assert_eq!(Settings::default().timezone, "UTC");
        assert_eq!(Settings::default().usage_drop_guard, 20.0);
        let fine = parse(
            r#"{"timezone":"Europe/Berlin","monthClose":10,"usageDropGuard":0,
                "prices":{"Sophos_Intercept_X_Advanced":{"price":4.5,"cost":2.9}}}"#,
        );
        assert_eq!(fine.check_month_and_money(), Ok(()));
        assert_eq!(fine.tz(), chrono_tz::Europe::Berlin);
        assert_eq!(fine.prices[IXA].cost, 2.9);
        for (json, says) in [
            (r#"{"timezone":"Mars/Olympus"}"#, "IANA"),
            (r#"{"monthClose":11}"#, "monthClose"),
            (r#"{"usageDropGuard":120}"#, "usageDropGuard"),
            (r#"{"usageDropGuard":-1}"#, "usageDropGuard"),
            (r#"{"prices":{"Sophos_Nope":{"price":1}}}"#, "Sophos_Nope"),
            (
                r#"{"prices":{"Sophos_Intercept_X_Advanced":{"price":-1}}}"#,
                "price is -1",
            ),
        ] {
            let err = parse(json).check_month_and_money().unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
        // A price needs its amount; unknown keys are refused.
        assert!(
            serde_json::from_str::<Settings>(
                r#"{"prices":{"Sophos_Intercept_X_Advanced":{"cost":1}}}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<Settings>(r#"{"monthClose":-1}"#).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Settings>(r#"{"prodcts":[]}"#).unwrap_err();
        assert!(err.to_string().contains("prodcts"));
    }
}
