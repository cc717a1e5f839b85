//! Pure catalog decisions: which setup record a setting names (scoped the way
//! ConnectWise scopes them: a subcategory belongs to a category), what a partner's
//! own catalog item stands as, and what to look up. No I/O; the engine reads
//! ConnectWise and applies these.

use crate::config::Settings;
use crate::connectwise::client::NamedKind;
use crate::connectwise::model::{CatalogItem, NamedRecord};
use crate::sync::plan::CatalogState;
use crate::sync::report::{ErrorCode, ErrorReport};
use std::collections::BTreeSet;

/// The setup tables a new catalog item refers to, with the setting naming each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupTable {
    ProductType,
    Category,
    Subcategory,
    UnitOfMeasure,
}

impl SetupTable {
    pub fn kind(self) -> NamedKind {
        match self {
            Self::ProductType => NamedKind::ProductType,
            Self::Category => NamedKind::Category,
            Self::Subcategory => NamedKind::Subcategory,
            Self::UnitOfMeasure => NamedKind::UnitOfMeasure,
        }
    }

    /// The setting that names the record, e.g. `catalog.unitOfMeasure`.
    pub fn setting(self) -> &'static str {
        match self {
            Self::ProductType => "catalog.type",
            Self::Category => "catalog.category",
            Self::Subcategory => "catalog.subcategory",
            Self::UnitOfMeasure => "catalog.unitOfMeasure",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::ProductType => "product type",
            Self::Category => "category",
            Self::Subcategory => "subcategory",
            Self::UnitOfMeasure => "unit of measure",
        }
    }
}

/// A category a subcategory was looked up under.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope<'a> {
    pub id: i64,
    pub name: &'a str,
}

/// Picks the one active record named exactly `name` (trimmed, case-insensitive)
/// from `records`, under `scope` when given. Inactive records are never chosen.
/// `elsewhere` are records of the name outside the scope, named in the error when
/// nothing fits, so the partner sees where the name does exist.
pub fn choose_reference(
    table: SetupTable,
    name: &str,
    records: &[NamedRecord],
    scope: Option<&Scope>,
    elsewhere: &[NamedRecord],
) -> Result<i64, ErrorReport> {
    let named: Vec<&NamedRecord> = records
        .iter()
        .filter(|r| same_name(&r.name, name))
        .filter(|r| scope.is_none_or(|s| parent_id(r) == Some(s.id)))
        .collect();
    let (active, inactive): (Vec<&NamedRecord>, Vec<&NamedRecord>) = named
        .into_iter()
        .partition(|r| r.inactive_flag != Some(true));
    let under = scope
        .map(|s| format!(" under the category {:?} (id {})", s.name, s.id))
        .unwrap_or_default();
    let (label, setting) = (table.label(), table.setting());
    let message = match (active.as_slice(), inactive.as_slice()) {
        ([one], _) => return Ok(one.id),
        ([], []) => {
            let mut m = format!(
                "ConnectWise has no {label} named {name:?}{under} (setting {setting}): set \
                 {setting} to the name of an active {label}"
            );
            let other = elsewhere_list(name, elsewhere, scope);
            if !other.is_empty() {
                m.push_str(&format!(
                    "; {name:?} exists {other}: set catalog.category to that category, or \
                     create {name:?} under the configured one"
                ));
            }
            m
        }
        ([], retired) => format!(
            "ConnectWise has the {label} {name:?}{under} only as inactive records ({}), and \
             an inactive record cannot be used: reactivate one in ConnectWise (Setup Tables) \
             or set {setting} to the name of an active {label}",
            candidates(retired)
        ),
        (many, _) => format!(
            "ConnectWise has {} active {label} records named {name:?}{under}: {}; none was \
             chosen. Deactivate or rename all but one in ConnectWise (Setup Tables), or set \
             {setting} to a name that is unique",
            many.len(),
            candidates(many)
        ),
    };
    Err(ErrorReport::new(ErrorCode::CatalogSetup, message))
}

/// Setup-table names match trimmed and case-insensitive (SQL Server compares
/// case-insensitively; stray spaces are common in hand-kept tables).
fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

fn parent_id(r: &NamedRecord) -> Option<i64> {
    r.category.as_ref().and_then(|c| c.id)
}

/// `id 31 (category "Security" id 21), id 32 (…)`.
fn candidates(records: &[&NamedRecord]) -> String {
    let list: Vec<String> = records
        .iter()
        .map(|r| match &r.category {
            Some(c) => format!(
                "id {} (category {:?} id {})",
                r.id,
                c.name.as_deref().unwrap_or(""),
                c.id.unwrap_or_default()
            ),
            None => format!("id {}", r.id),
        })
        .collect();
    list.join(", ")
}

/// `under the category "Hardware" (id 22), …`, for the active records of `name`
/// outside `scope`.
fn elsewhere_list(name: &str, elsewhere: &[NamedRecord], scope: Option<&Scope>) -> String {
    let outside: Vec<&NamedRecord> = elsewhere
        .iter()
        .filter(|r| same_name(&r.name, name) && r.inactive_flag != Some(true))
        .filter(|r| scope.is_none_or(|s| parent_id(r) != Some(s.id)))
        .collect();
    if outside.is_empty() {
        return String::new();
    }
    format!("as {}", candidates(&outside))
}

/// The ConnectWise identifiers the cycle looks up: each selected product's own
/// identifier, or the partner's item it is mapped to in `catalogItems`.
pub fn lookup_identifiers(settings: &Settings) -> Vec<String> {
    let wanted: BTreeSet<String> = settings
        .products
        .iter()
        .map(|p| settings.own_catalog_item(p).unwrap_or(p).to_owned())
        .collect();
    wanted.into_iter().collect()
}

/// Where a product mapped to the partner's own item stands: found, or unusable
/// (missing or only inactive) with the error saying what to do. Never `Missing`:
/// an own item is never created.
pub fn own_item_state(
    identifier: &str,
    item: &str,
    found: &[CatalogItem],
) -> (CatalogState, Option<ErrorReport>) {
    let named: Vec<&CatalogItem> = found
        .iter()
        .filter(|c| c.identifier.trim().eq_ignore_ascii_case(item.trim()))
        .collect();
    let active: Vec<i64> = named
        .iter()
        .filter(|c| c.inactive_flag != Some(true))
        .map(|c| c.id)
        .collect();
    let inactive: Vec<i64> = named
        .iter()
        .filter(|c| c.inactive_flag == Some(true))
        .map(|c| c.id)
        .collect();
    let problem = match (active.as_slice(), inactive.as_slice()) {
        ([id], _) => return (CatalogState::Existing(*id), None),
        ([], []) => format!(
            "catalogItems maps {identifier} to the ConnectWise catalog item {item:?}, which does \
             not exist; nothing was written for {identifier}. Create the item in Procurement > \
             Product Catalog, correct the identifier in catalogItems, or remove the entry to \
             let the sync create {identifier}"
        ),
        ([], ids) => format!(
            "catalogItems maps {identifier} to the ConnectWise catalog item {item:?}, which is \
             inactive (ids {ids:?}); nothing was written for {identifier}. Reactivate it in \
             Procurement > Product Catalog or map {identifier} to an active item in catalogItems"
        ),
        _ => return (CatalogState::Ambiguous(active), None),
    };
    (
        CatalogState::Unavailable,
        Some(ErrorReport::new(ErrorCode::CatalogSetup, problem)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectwise::model::Reference;

    fn rec(id: i64, name: &str, inactive: bool, category: Option<(i64, &str)>) -> NamedRecord {
        NamedRecord {
            id,
            name: name.to_owned(),
            inactive_flag: Some(inactive),
            category: category.map(|(id, name)| Reference {
                id: Some(id),
                name: Some(name.to_owned()),
                identifier: None,
            }),
        }
    }

    const SECURITY: Scope<'static> = Scope {
        id: 21,
        name: "Security",
    };

    fn sub(id: i64, name: &str, inactive: bool, category: (i64, &str)) -> NamedRecord {
        rec(id, name, inactive, Some(category))
    }

    fn err(r: Result<i64, ErrorReport>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::CatalogSetup);
        e.message
    }

    #[test]
    fn a_name_repeated_under_other_categories_resolves_within_the_configured_one() {
        let records = [
            sub(32, "Endpoint", false, (22, "Hardware")),
            sub(31, "Endpoint", false, (21, "Security")),
            sub(37, "Endpoint", true, (21, "Security")),
        ];
        let got = choose_reference(
            SetupTable::Subcategory,
            "Endpoint",
            &records,
            Some(&SECURITY),
            &[],
        );
        assert_eq!(got, Ok(31));
    }

    #[test]
    fn names_match_trimmed_and_case_insensitive_but_not_partially() {
        let records = [
            rec(11, " software ", false, None),
            rec(15, "Software Licences", false, None),
        ];
        let got = choose_reference(SetupTable::ProductType, "Software", &records, None, &[]);
        assert_eq!(got, Ok(11));
    }

    #[test]
    fn an_inactive_record_is_never_chosen() {
        let records = [
            rec(13, "Software", true, None),
            rec(11, "Software", false, None),
        ];
        assert_eq!(
            choose_reference(SetupTable::ProductType, "Software", &records, None, &[]),
            Ok(11)
        );
        let only_inactive = [rec(43, "Each", true, None)];
        let m = err(choose_reference(
            SetupTable::UnitOfMeasure,
            "Each",
            &only_inactive,
            None,
            &[],
        ));
        assert!(m.contains("only as inactive records (id 43)"), "{m}");
        assert!(m.contains("catalog.unitOfMeasure"), "{m}");
    }

    #[test]
    fn a_truly_ambiguous_name_lists_candidates_with_ids_and_parents_and_the_setting() {
        let records = [
            sub(31, "Endpoint", false, (21, "Security")),
            sub(39, "endpoint ", false, (21, "Security")),
        ];
        let m = err(choose_reference(
            SetupTable::Subcategory,
            "Endpoint",
            &records,
            Some(&SECURITY),
            &[],
        ));
        assert!(m.contains("2 active subcategory records"), "{m}");
        assert!(m.contains(r#"id 31 (category "Security" id 21)"#), "{m}");
        assert!(m.contains(r#"id 39 (category "Security" id 21)"#), "{m}");
        assert!(m.contains("catalog.subcategory"), "{m}");
        let types = [
            rec(11, "Software", false, None),
            rec(16, "SOFTWARE", false, None),
        ];
        let m = err(choose_reference(
            SetupTable::ProductType,
            "Software",
            &types,
            None,
            &[],
        ));
        assert!(
            m.contains("id 11, id 16") && m.contains("catalog.type"),
            "{m}"
        );
    }

    #[test]
    fn a_name_only_under_other_categories_says_where_it_is() {
        let elsewhere = [
            sub(33, "Licensing", false, (22, "Hardware")),
            sub(34, "Licensing", false, (23, "Software")),
        ];
        let m = err(choose_reference(
            SetupTable::Subcategory,
            "Licensing",
            &[],
            Some(&SECURITY),
            &elsewhere,
        ));
        assert!(
            m.contains(r#"under the category "Security" (id 21)"#),
            "{m}"
        );
        assert!(m.contains(r#"id 33 (category "Hardware" id 22)"#), "{m}");
        assert!(m.contains(r#"id 34 (category "Software" id 23)"#), "{m}");
        assert!(m.contains("catalog.category"), "{m}");
        let m = err(choose_reference(
            SetupTable::Subcategory,
            "Nope",
            &[],
            Some(&SECURITY),
            &[],
        ));
        assert!(!m.contains("exists"), "{m}");
        assert!(m.contains("catalog.subcategory"), "{m}");
    }

    #[test]
    fn a_record_outside_the_scope_is_not_taken_even_if_the_list_has_it() {
        // Defensive: the scoped query should not return it, but a list that does
        // must still not lead to a subcategory of another category.
        let records = [sub(32, "Endpoint", false, (22, "Hardware"))];
        assert!(
            choose_reference(
                SetupTable::Subcategory,
                "Endpoint",
                &records,
                Some(&SECURITY),
                &[]
            )
            .is_err()
        );
    }

    fn item(id: i64, identifier: &str, inactive: bool) -> CatalogItem {
        CatalogItem {
            id,
            identifier: identifier.to_owned(),
            description: String::new(),
            inactive_flag: Some(inactive),
            price: None,
        }
    }

    const IXA: &str = "Sophos_Intercept_X_Advanced";

    #[test]
    fn own_item_found_missing_inactive_or_ambiguous() {
        let found = [
            item(901, IXA, false),
            item(950, "ACME-EDR-SEAT", false),
            item(951, "ACME-OLD", true),
            item(952, "ACME-TWICE", false),
            item(953, "acme-twice", false),
        ];
        assert_eq!(
            own_item_state(IXA, "acme-edr-seat", &found),
            (CatalogState::Existing(950), None)
        );
        let (state, e) = own_item_state(IXA, "ACME-NOPE", &found);
        assert_eq!(state, CatalogState::Unavailable);
        let m = e.unwrap().message;
        assert!(
            m.contains("does not exist") && m.contains("catalogItems"),
            "{m}"
        );
        let (state, e) = own_item_state(IXA, "ACME-OLD", &found);
        assert_eq!(state, CatalogState::Unavailable);
        assert!(e.unwrap().message.contains("inactive (ids [951])"));
        assert_eq!(
            own_item_state(IXA, "ACME-TWICE", &found),
            (CatalogState::Ambiguous(vec![952, 953]), None)
        );
    }

    #[test]
    fn lookups_use_the_own_item_instead_of_the_sophos_identifier() {
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "products": [IXA, "Sophos_Intercept_X_Advanced_XDR"],
            "catalogItems": {IXA: "ACME-EDR-SEAT"}
        }))
        .unwrap();
        assert_eq!(
            lookup_identifiers(&settings),
            ["ACME-EDR-SEAT", "Sophos_Intercept_X_Advanced_XDR"]
        );
    }
}
