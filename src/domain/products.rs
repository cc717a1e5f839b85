//! The 35 Sophos products that Sophos' own ConnectWise integration knows, and the
//! billing `productCode` → identifier table with the evidence for each row.

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

/// How sure the evidence is (see `KnownCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Confidence {
    /// In Sophos' own material.
    Confirmed,
    /// In third-party code that reads real partner data.
    Likely,
    /// Naming inference or hand-made fixtures only.
    Guess,
}

/// A billing `productCode` that public material shows, with what it bills as
/// and how sure that is. Sophos publishes no such table: every row below
/// `confirmed` is a default the operator can override with `productCodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownCode {
    pub product_code: &'static str,
    /// The catalog identifier it bills as; `None` when the evidence names none
    /// of the 35 (never billed by guess: the operator maps it or not).
    pub identifier: Option<&'static str>,
    /// What else the evidence says: an alternative identifier, or what an
    /// unmapped code is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// That the code exists and is spelled so.
    pub code_confidence: Confidence,
    /// That it bills as `identifier` (`None`: nothing to map it to).
    pub mapping_confidence: Option<Confidence>,
    pub seen_in: &'static str,
}

const fn row(
    product_code: &'static str,
    identifier: Option<&'static str>,
    note: Option<&'static str>,
    code_confidence: Confidence,
    mapping_confidence: Option<Confidence>,
    seen_in: &'static str,
) -> KnownCode {
    KnownCode {
        product_code,
        identifier,
        note,
        code_confidence,
        mapping_confidence,
        seen_in,
    }
}

use Confidence::{Confirmed, Guess, Likely};

const ISCPP: &str =
    "xasz/ISCPP database/factories/SCTenantFactory.php (captured from a live database)";
const MSPBYTE: &str =
    "MSPByte/monorepo-v4 packages/trpc/src/routers/vendor.ts (licensing API of real tenants)";
const ONE_FIXTURE: &str = "one project's test fixture only";

/// The built-in table: the rows of the evidence gathered (each row's `seen_in`
/// names its sources). Where the evidence offers "X (or Y)" the first
/// is taken and the other kept in `note`.
pub const KNOWN_CODES: [KnownCode; 18] = [
    row(
        "CIXA-MSP",
        Some("Sophos_Intercept_X_Advanced"),
        None,
        Confirmed,
        Some(Likely),
        "Sophos' Postman collection (billing usage example, 2021-2026); tenant and licence data in xasz/ISCPP and MSPByte/monorepo-v4",
    ),
    row(
        "CIXAMTR-STD-MSP",
        Some("Sophos_MTR_Standard"),
        Some("now sold as MDR Essentials"),
        Likely,
        Some(Likely),
        MSPBYTE,
    ),
    row(
        "CIXAMTR-ADV-MSP",
        Some("Sophos_MTR_Advanced"),
        Some("now sold as MDR Complete"),
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "SVRCIXAMTR-STD-MSP",
        Some("Sophos_MTR_Standard_Srv"),
        None,
        Likely,
        Some(Likely),
        MSPBYTE,
    ),
    row(
        "SVRCIXAMTR-ADV-MSP",
        Some("Sophos_MTR_Advanced_Srv"),
        None,
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "SVRCLOUDADV-MSP",
        Some("Sophos_Intercept_X_Adv_Srv"),
        Some("or Sophos_Srv_Protection (MSPByte treats it as the base server tier)"),
        Likely,
        Some(Guess),
        ISCPP,
    ),
    row(
        "CEMA-MSP",
        Some("Sophos_Email_Advanced"),
        None,
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "CEMA-PE-ADDON-MSP",
        Some("Sophos_Email_Portal_Encryption"),
        None,
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "CDE-MSP",
        Some("Sophos_Device_Encryption"),
        None,
        Likely,
        Some(Likely),
        "xasz/ISCPP factory; another client looks up code === \"CDE-MSP\"",
    ),
    row(
        "CPHISH-MSP",
        Some("Sophos_Central_Phish_Threat"),
        None,
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "CW7-SUP-MSP",
        Some("extsup_win7"),
        Some("term twin CW7-SUP = \"Sophos Endpoint for Legacy Platforms\""),
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "NDR-MSP",
        Some("Network_Detection_And_Response"),
        None,
        Likely,
        Some(Likely),
        ISCPP,
    ),
    row(
        "CMS-MSP",
        Some("Sophos_Mobile_Standard"),
        Some("or Sophos_Mobile_Security"),
        Likely,
        Some(Guess),
        ISCPP,
    ),
    row(
        "CMA-MSP",
        Some("Sophos_Mobile_Advanced"),
        None,
        Likely,
        Some(Guess),
        ISCPP,
    ),
    row(
        "AP6-840-SUP-MSP",
        None,
        Some("one of the Sophos_Wireless_* tiers, unknown which: not mapped"),
        Likely,
        Some(Guess),
        ISCPP,
    ),
    row(
        "XDR-MSP",
        Some("Sophos_Intercept_X_Advanced_XDR"),
        Some("or Sophos_XDR_30"),
        Guess,
        Some(Guess),
        ONE_FIXTURE,
    ),
    row(
        "COPX-MSP",
        Some("Sophos_Cloud_Optix"),
        None,
        Guess,
        Some(Guess),
        ONE_FIXTURE,
    ),
    row(
        "xg_email_std",
        None,
        Some("a firewall module, none of the 35 identifiers: not mapped"),
        Likely,
        None,
        ISCPP,
    ),
];

/// The evidence on `code`, if the built-in table has a row for it.
pub fn known_code(code: &str) -> Option<&'static KnownCode> {
    KNOWN_CODES.iter().find(|k| k.product_code == code)
}

/// One row of the code table in force, as `settings` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeRow {
    pub product_code: String,
    /// `None`: known but not mapped (reported, never billed).
    pub identifier: Option<String>,
    /// `builtIn` or `settings` (a `productCodes` line, which wins).
    pub source: &'static str,
    /// The built-in evidence on the code, if any (also under a settings line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<KnownCode>,
}

/// The code table in force with its evidence: the built-in rows in the
/// evidence's order (mapped or not), a settings line replacing its code's row,
/// then the settings' other codes.
pub fn code_rows(overrides: &BTreeMap<String, String>) -> Vec<CodeRow> {
    let built_in = KNOWN_CODES
        .iter()
        .map(|k| match overrides.get(k.product_code) {
            Some(identifier) => settings_row(k.product_code, identifier),
            None => CodeRow {
                product_code: k.product_code.to_owned(),
                identifier: k.identifier.map(str::to_owned),
                source: "builtIn",
                evidence: Some(*k),
            },
        });
    let extra = overrides
        .iter()
        .filter(|(code, _)| known_code(code).is_none())
        .map(|(code, identifier)| settings_row(code, identifier));
    built_in.chain(extra).collect()
}

fn settings_row(code: &str, identifier: &str) -> CodeRow {
    CodeRow {
        product_code: code.to_owned(),
        identifier: Some(identifier.to_owned()),
        source: "settings",
        evidence: known_code(code).copied(),
    }
}

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

/// The effective code table: the built-in rows that name an identifier,
/// overridden and extended by the settings' entries.
pub fn code_table(overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut table: BTreeMap<String, String> = KNOWN_CODES
        .iter()
        .filter_map(|k| Some((k.product_code.to_owned(), k.identifier?.to_owned())))
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

    /// (productCode, identifier, code confidence, mapping confidence, seen in):
    /// the rows of the evidence, as gathered (each row's last field).
    const EVIDENCE: [(&str, &str, &str, &str, &str); 18] = [
        (
            "CIXA-MSP",
            "Sophos_Intercept_X_Advanced",
            "confirmed",
            "likely",
            "Postman",
        ),
        (
            "CIXAMTR-STD-MSP",
            "Sophos_MTR_Standard",
            "likely",
            "likely",
            "MSPByte",
        ),
        (
            "CIXAMTR-ADV-MSP",
            "Sophos_MTR_Advanced",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "SVRCIXAMTR-STD-MSP",
            "Sophos_MTR_Standard_Srv",
            "likely",
            "likely",
            "MSPByte",
        ),
        (
            "SVRCIXAMTR-ADV-MSP",
            "Sophos_MTR_Advanced_Srv",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "SVRCLOUDADV-MSP",
            "Sophos_Intercept_X_Adv_Srv",
            "likely",
            "guess",
            "ISCPP",
        ),
        (
            "CEMA-MSP",
            "Sophos_Email_Advanced",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "CEMA-PE-ADDON-MSP",
            "Sophos_Email_Portal_Encryption",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "CDE-MSP",
            "Sophos_Device_Encryption",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "CPHISH-MSP",
            "Sophos_Central_Phish_Threat",
            "likely",
            "likely",
            "ISCPP",
        ),
        ("CW7-SUP-MSP", "extsup_win7", "likely", "likely", "ISCPP"),
        (
            "NDR-MSP",
            "Network_Detection_And_Response",
            "likely",
            "likely",
            "ISCPP",
        ),
        (
            "CMS-MSP",
            "Sophos_Mobile_Standard",
            "likely",
            "guess",
            "ISCPP",
        ),
        (
            "CMA-MSP",
            "Sophos_Mobile_Advanced",
            "likely",
            "guess",
            "ISCPP",
        ),
        ("AP6-840-SUP-MSP", "", "likely", "guess", "ISCPP"),
        (
            "XDR-MSP",
            "Sophos_Intercept_X_Advanced_XDR",
            "guess",
            "guess",
            "fixture",
        ),
        (
            "COPX-MSP",
            "Sophos_Cloud_Optix",
            "guess",
            "guess",
            "fixture",
        ),
        ("xg_email_std", "", "likely", "", "ISCPP"),
    ];

    fn word(c: Option<Confidence>) -> String {
        c.map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .unwrap_or_default()
    }

    #[test]
    fn every_evidence_row_is_built_in_with_its_confidence() {
        assert_eq!(KNOWN_CODES.len(), EVIDENCE.len());
        for (code, identifier, code_conf, mapping_conf, seen) in EVIDENCE {
            let k = known_code(code).unwrap_or_else(|| panic!("{code} is built in"));
            assert_eq!(k.identifier.unwrap_or(""), identifier, "{code}");
            assert_eq!(word(Some(k.code_confidence)), code_conf, "{code}");
            assert_eq!(word(k.mapping_confidence), mapping_conf, "{code}");
            assert!(k.seen_in.contains(seen), "{code}: {}", k.seen_in);
        }
    }

    #[test]
    fn built_in_codes_point_at_known_identifiers() {
        for k in &KNOWN_CODES {
            assert!(k.identifier.is_none_or(is_known), "{k:?}");
        }
        let table = code_table(&BTreeMap::new());
        assert_eq!(table.len(), 16);
        assert!(table.values().all(|i| is_known(i)));
    }

    #[test]
    fn uncertain_rows_take_the_first_identifier_and_keep_the_other_as_a_note() {
        let table = code_table(&BTreeMap::new());
        assert_eq!(table["SVRCLOUDADV-MSP"], "Sophos_Intercept_X_Adv_Srv");
        assert_eq!(table["CMS-MSP"], "Sophos_Mobile_Standard");
        assert_eq!(table["XDR-MSP"], "Sophos_Intercept_X_Advanced_XDR");
        for (code, other) in [
            ("SVRCLOUDADV-MSP", "Sophos_Srv_Protection"),
            ("CMS-MSP", "Sophos_Mobile_Security"),
            ("XDR-MSP", "Sophos_XDR_30"),
        ] {
            assert!(known_code(code).unwrap().note.unwrap().contains(other));
        }
    }

    #[test]
    fn rows_without_an_identifier_are_known_but_never_mapped() {
        let table = code_table(&BTreeMap::new());
        for code in ["AP6-840-SUP-MSP", "xg_email_std"] {
            assert!(
                !table.contains_key(code),
                "{code} must not be billed by guess"
            );
            let k = known_code(code).unwrap();
            assert!(k.identifier.is_none());
            assert!(k.note.unwrap().contains("not mapped"), "{k:?}");
        }
        // The old guesses are gone.
        for old in ["CIXAXDR-MSP", "CEP-MSP", "CIX-MSP", "CMTRS-MSP", "CSP-MSP"] {
            assert!(
                !table.contains_key(old) && known_code(old).is_none(),
                "{old}"
            );
        }
    }

    #[test]
    fn code_rows_show_evidence_and_settings_lines() {
        let mut o = BTreeMap::new();
        o.insert(
            "AP6-840-SUP-MSP".to_owned(),
            "Sophos_Wireless_Standard".to_owned(),
        );
        o.insert("ZZ-MSP".to_owned(), "Sophos_Cloud_Optix".to_owned());
        let rows = code_rows(&o);
        assert_eq!(rows.len(), 19);
        assert_eq!(rows[0].product_code, "CIXA-MSP", "the evidence's order");
        assert_eq!(rows[18].product_code, "ZZ-MSP", "settings-only codes last");
        let find = |c: &str| rows.iter().find(|r| r.product_code == c).unwrap().clone();
        let ap = find("AP6-840-SUP-MSP");
        assert_eq!(
            (ap.identifier.as_deref(), ap.source),
            (Some("Sophos_Wireless_Standard"), "settings")
        );
        assert_eq!(ap.evidence.unwrap().code_confidence, Confidence::Likely);
        let zz = find("ZZ-MSP");
        assert_eq!((zz.source, zz.evidence), ("settings", None));
        let xg = find("xg_email_std");
        assert_eq!((xg.identifier, xg.source), (None, "builtIn"));
        let json = serde_json::to_value(find("CIXA-MSP")).unwrap();
        assert_eq!(json["evidence"]["codeConfidence"], "confirmed");
        assert_eq!(json["evidence"]["mappingConfidence"], "likely");
        assert!(
            json["evidence"]["seenIn"]
                .as_str()
                .unwrap()
                .contains("Postman")
        );
    }

    #[test]
    fn settings_override_and_extend_the_code_table() {
        let mut o = BTreeMap::new();
        o.insert("CIXA-MSP".to_owned(), "Sophos_XDR_30".to_owned());
        o.insert("NEW-MSP".to_owned(), "Sophos_Cloud_Optix".to_owned());
        let t = code_table(&o);
        assert_eq!(t["CIXA-MSP"], "Sophos_XDR_30");
        assert_eq!(t["NEW-MSP"], "Sophos_Cloud_Optix");
        assert_eq!(t["CDE-MSP"], "Sophos_Device_Encryption");
    }
}
