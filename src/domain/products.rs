//! The 35 Sophos products that Sophos' own ConnectWise integration knows, and the
//! billing `productCode` → identifier table.

use std::collections::BTreeMap;

/// (identifier, description) as in Sophos' "initial synchronization" page.
pub const PRODUCTS: [(&str, &str); 35] = [
    (
        "Sophos_Endpoint_Protection",
        "Sophos Central Endpoint Protection",
    ),
    ("Sophos_Intercept_X", "Sophos Central Intercept X"),
    (
        "Sophos_Intercept_X_Advanced",
        "Sophos Central Intercept X Advanced",
    ),
    (
        "Sophos_Intercept_X_Advanced_XDR",
        "Sophos Central Intercept X Advanced with XDR",
    ),
    (
        "Sophos_MTR_Standard",
        "Intercept X Advanced with XDR and MTR Standard",
    ),
    (
        "Sophos_MTR_Advanced",
        "Intercept X Advanced with XDR and MTR Advanced",
    ),
    (
        "Sophos_Mobile_Standard",
        "Sophos Central Mobile Control Standard",
    ),
    (
        "Sophos_Mobile_Advanced",
        "Sophos Central Mobile Control Advanced",
    ),
    (
        "Sophos_Email_Portal_Encryption",
        "Sophos Central Portal Encryption Add-on for Email Advanced",
    ),
    ("Sophos_Mobile_Security", "Sophos Central Mobile Security"),
    ("Sophos_Srv_Protection", "Sophos Central Server Protection"),
    (
        "Sophos_Intercept_X_Adv_Srv",
        "Sophos Central Server Intercept X Advanced for Server",
    ),
    (
        "Sophos_Intercept_X_Adv_Srv_XDR",
        "Sophos Central Intercept X Advanced for Server with XDR",
    ),
    (
        "Sophos_MTR_Standard_Srv",
        "Intercept X Advanced for Server with XDR and MTR Standard",
    ),
    (
        "Sophos_MTR_Advanced_Srv",
        "Intercept X Advanced for Server with XDR and MTR Advanced",
    ),
    (
        "Sophos_Device_Encryption",
        "Sophos Central Device Encryption",
    ),
    ("Sophos_Central_Phish_Threat", "Sophos Central Phish Threat"),
    (
        "Sophos_Wireless_Perf_Standard",
        "Sophos Wireless Performance Standard",
    ),
    (
        "Sophos_Wireless_Entry_Standard",
        "Sophos Wireless Entry Standard",
    ),
    ("Sophos_Wireless_Standard", "Sophos Wireless Standard"),
    ("Sophos_XDR_30", "Sophos Central XDR"),
    ("Sophos_Email_Advanced", "Sophos Email Advanced"),
    ("Sophos_Cloud_Optix", "Sophos Cloud Optix"),
    (
        "Sophos_Intercept_X_Ess",
        "Sophos Central Intercept X Essentials",
    ),
    (
        "Sophos_Intercept_X_Ess_Srv",
        "Sophos Central Intercept X Essentials for Server",
    ),
    (
        "Sophos_Central_Firewall_Adv",
        "Sophos Central Firewall Advanced",
    ),
    (
        "extsup_win7",
        "Extended Support for Windows 7, Server 2008 R2 and SBS 2011",
    ),
    (
        "Central_Zero_Trust_Network_Acc",
        "Sophos Zero Trust Network Access",
    ),
    (
        "Network_Detection_And_Response",
        "Central Network Detection and Response",
    ),
    (
        "Central_Public_Cloud_Addon",
        "Central Public Cloud Integration Pack",
    ),
    ("Central_Email_Addon", "Central Email Integration Pack"),
    (
        "Central_Identity_Addon",
        "Central Identity Integration Pack",
    ),
    ("Central_Network_Addon", "Central Network Integration Pack"),
    (
        "Central_Firewall_Addon",
        "Central Firewall Integration Pack",
    ),
    ("Sophos_XDR_365", "Central Data Storage – 1 yr Pack"),
];

/// Built-in billing `productCode` → identifier entries. Sophos does not publish this
/// table; only `CIXA-MSP` is confirmed by its documentation. The others follow the
/// same naming and can be corrected or extended with the `productCodes` setting.
pub const DEFAULT_PRODUCT_CODES: [(&str, &str); 12] = [
    ("CIXA-MSP", "Sophos_Intercept_X_Advanced"),
    ("CIXAXDR-MSP", "Sophos_Intercept_X_Advanced_XDR"),
    ("CIXE-MSP", "Sophos_Intercept_X_Ess"),
    ("CIX-MSP", "Sophos_Intercept_X"),
    ("CEP-MSP", "Sophos_Endpoint_Protection"),
    ("CMTRS-MSP", "Sophos_MTR_Standard"),
    ("CMTRA-MSP", "Sophos_MTR_Advanced"),
    ("CIXASRV-MSP", "Sophos_Intercept_X_Adv_Srv"),
    ("CIXASRVXDR-MSP", "Sophos_Intercept_X_Adv_Srv_XDR"),
    ("CSP-MSP", "Sophos_Srv_Protection"),
    ("CDE-MSP", "Sophos_Device_Encryption"),
    ("CEMA-MSP", "Sophos_Email_Advanced"),
];

pub fn description(identifier: &str) -> Option<&'static str> {
    PRODUCTS
        .iter()
        .find(|(id, _)| *id == identifier)
        .map(|(_, d)| *d)
}

/// ConnectWise limits a catalog item's `description` to 50 characters; the full text
/// goes into `customerDescription`.
pub fn catalog_description(identifier: &str) -> String {
    description(identifier)
        .unwrap_or(identifier)
        .chars()
        .take(50)
        .collect()
}

pub fn is_known(identifier: &str) -> bool {
    description(identifier).is_some()
}

/// The effective code table: built-in defaults overridden by the settings' entries.
pub fn code_table(overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut table: BTreeMap<String, String> = DEFAULT_PRODUCT_CODES
        .iter()
        .map(|(c, i)| ((*c).to_owned(), (*i).to_owned()))
        .collect();
    table.extend(overrides.iter().map(|(c, i)| (c.clone(), i.clone())));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_unique_and_fit_connectwise_limits() {
        let mut ids: Vec<_> = PRODUCTS.iter().map(|(i, _)| *i).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 35);
        // ConnectWise: identifier ≤ 60, description ≤ 50 characters.
        assert!(PRODUCTS.iter().all(|(i, _)| i.len() <= 60));
        assert!(
            PRODUCTS
                .iter()
                .all(|(i, _)| catalog_description(i).chars().count() <= 50)
        );
        assert_eq!(catalog_description("Sophos_XDR_30"), "Sophos Central XDR");
    }

    #[test]
    fn default_codes_point_at_known_identifiers() {
        assert!(DEFAULT_PRODUCT_CODES.iter().all(|(_, i)| is_known(i)));
    }

    #[test]
    fn settings_override_and_extend_the_code_table() {
        let mut o = BTreeMap::new();
        o.insert("CIXA-MSP".to_owned(), "Sophos_XDR_30".to_owned());
        o.insert("NEW-MSP".to_owned(), "Sophos_Cloud_Optix".to_owned());
        let t = code_table(&o);
        assert_eq!(t["CIXA-MSP"], "Sophos_XDR_30");
        assert_eq!(t["NEW-MSP"], "Sophos_Cloud_Optix");
        assert_eq!(t["CEP-MSP"], "Sophos_Endpoint_Protection");
    }
}
