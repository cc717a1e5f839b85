//! The ConnectWise resources the simulator serves, and what the server does to
//! a written record: resolve references, fill defaults and derived fields, stamp
//! `_info` (ConnectWise's API documentation).

use super::query::parse_datetime;
use super::validate::{FieldError, resource_name};
use crate::state::SimState;
use serde_json::{Map, Value, json};

/// A nested resource's parent: additions live under an agreement and carry
/// its id in `agreementId` (the field `state::NESTED` indexes them by).
pub struct Parent {
    pub collection: &'static str,
    pub label: &'static str,
}

pub struct Resource {
    /// Path under `/{codebase}apis/3.0/`; a nested one ends in `{item}/<name>`.
    pub path: &'static str,
    /// The state collection (see `state::Collections`).
    pub collection: &'static str,
    /// The component schema in the spec subset.
    pub schema: &'static str,
    pub parent: Option<Parent>,
}

const fn top(path: &'static str, collection: &'static str, schema: &'static str) -> Resource {
    Resource {
        path,
        collection,
        schema,
        parent: None,
    }
}

pub static RESOURCES: [Resource; 9] = [
    top("company/companies", "companies", "Company"),
    top("finance/agreements", "agreements", "Agreement"),
    top(
        "finance/agreements/types",
        "agreementTypes",
        "AgreementType",
    ),
    Resource {
        path: "finance/agreements/{item}/additions",
        collection: "additions",
        schema: "Addition",
        parent: Some(Parent {
            collection: "agreements",
            label: "Agreement",
        }),
    },
    top("procurement/catalog", "catalog", "CatalogItem"),
    top("procurement/types", "productTypes", "ProductType"),
    top("procurement/categories", "categories", "Category"),
    top("procurement/subcategories", "subcategories", "SubCategory"),
    top(
        "procurement/unitOfMeasures",
        "unitOfMeasures",
        "UnitOfMeasure",
    ),
];

/// Who `_info.updatedBy` names: the API member the keys belong to.
const API_MEMBER: &str = "SimAPI";

/// Fields an addition copies from its catalog item when not sent (ConnectWise
/// re-defaults them when `product` changes, ConnectWise's API documentation).
pub const FROM_CATALOG: [&str; 5] = ["description", "unitPrice", "unitCost", "uom", "taxableFlag"];

/// What the server adds to a valid body: resolved references, defaults and
/// derived fields. `own_id` is the record's id on updates. Errors are the
/// `errors` entries of a 400.
pub fn complete(
    schema: &str,
    st: &SimState,
    parent: Option<&Value>,
    own_id: Option<i64>,
    record: Value,
) -> Result<Value, Vec<FieldError>> {
    let mut map = match record {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut w = Writer {
        st,
        resource: resource_name(schema),
        errors: Vec::new(),
    };
    match schema {
        "Addition" => w.addition(&mut map, parent),
        "CatalogItem" => w.catalog_item(&mut map),
        "Agreement" => w.agreement(&mut map),
        "SubCategory" => {
            w.reference(&mut map, &CATEGORY, true);
        }
        "Company" => w.company(&mut map, own_id),
        _ => {}
    }
    if w.errors.is_empty() {
        Ok(Value::Object(map))
    } else {
        Err(w.errors)
    }
}

/// Gives the record its id and `_info`, and drops nulls: ConnectWise leaves
/// unset fields out rather than sending null (ConnectWise's OpenAPI document, nullable enums).
pub fn stamp(record: Value, id: i64, st: &SimState, previous: Option<&Value>) -> Value {
    let mut record = strip_nulls(record);
    let now = st.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut info = previous
        .and_then(|p| p.get("_info"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(|| {
            let mut fresh = Map::new();
            fresh.insert("dateEntered".into(), json!(now));
            fresh.insert("enteredBy".into(), json!(API_MEMBER));
            fresh
        });
    info.insert("lastUpdated".into(), json!(now));
    info.insert("updatedBy".into(), json!(API_MEMBER));
    if let Some(map) = record.as_object_mut() {
        map.insert("id".into(), json!(id));
        map.insert("_info".into(), Value::Object(info));
    }
    record
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// How a reference field points into another collection.
struct RefSpec {
    field: &'static str,
    collection: &'static str,
    /// The alternative key a reference may name its target by.
    key: &'static str,
    /// The target's fields the stored reference carries.
    keep: &'static [&'static str],
}

const PRODUCT: RefSpec = RefSpec {
    field: "product",
    collection: "catalog",
    key: "identifier",
    keep: &["id", "identifier"],
};
const PRODUCT_TYPE: RefSpec = RefSpec {
    field: "type",
    collection: "productTypes",
    key: "name",
    keep: &["id", "name"],
};
const SUBCATEGORY: RefSpec = RefSpec {
    field: "subcategory",
    collection: "subcategories",
    key: "name",
    keep: &["id", "name"],
};
const CATEGORY: RefSpec = RefSpec {
    field: "category",
    collection: "categories",
    key: "name",
    keep: &["id", "name"],
};
const UNIT: RefSpec = RefSpec {
    field: "unitOfMeasure",
    collection: "unitOfMeasures",
    key: "name",
    keep: &["id", "name"],
};
const AGREEMENT_TYPE: RefSpec = RefSpec {
    field: "type",
    collection: "agreementTypes",
    key: "name",
    keep: &["id", "name"],
};
const COMPANY: RefSpec = RefSpec {
    field: "company",
    collection: "companies",
    key: "identifier",
    keep: &["id", "identifier", "name"],
};

struct Writer<'a> {
    st: &'a SimState,
    resource: String,
    errors: Vec<FieldError>,
}

impl Writer<'_> {
    fn invalid(&mut self, code: &str, field: &str, message: String) {
        let resource = self.resource.clone();
        self.errors.push(FieldError {
            code: code.into(),
            message,
            resource,
            field: field.into(),
        });
    }

    /// Resolves `record[spec.field]` (by `id`, else by `spec.key`) and rewrites
    /// it as ConnectWise returns references. `None` when absent or unknown;
    /// unknown is an `InvalidField` error.
    fn reference(
        &mut self,
        record: &mut Map<String, Value>,
        spec: &RefSpec,
        required: bool,
    ) -> Option<Value> {
        let Some(given) = record.get(spec.field).filter(|v| !v.is_null()) else {
            if required {
                self.invalid(
                    "MissingRequiredField",
                    spec.field,
                    format!("The {} field is required.", spec.field),
                );
            }
            return None;
        };
        let Some(target) = lookup(self.st.collection(spec.collection), given, spec.key).cloned()
        else {
            let msg = format!(
                "The {} {} was not found.",
                spec.field,
                describe(given, spec.key)
            );
            self.invalid("InvalidField", spec.field, msg);
            return None;
        };
        let kept: Map<String, Value> = spec
            .keep
            .iter()
            .filter_map(|k| target.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        record.insert(spec.field.into(), Value::Object(kept));
        Some(target)
    }

    fn addition(&mut self, record: &mut Map<String, Value>, parent: Option<&Value>) {
        if let Some(item) = self.reference(record, &PRODUCT, true) {
            let uom = item.pointer("/unitOfMeasure/name").cloned();
            let defaults = [
                ("description", item.get("description").cloned()),
                ("unitPrice", Some(json!(number(&item, "price")))),
                ("unitCost", Some(json!(number(&item, "cost")))),
                ("uom", uom),
                (
                    "taxableFlag",
                    Some(item.get("taxableFlag").cloned().unwrap_or(json!(false))),
                ),
            ];
            for (field, value) in defaults {
                if let Some(value) = value.filter(|_| !record.contains_key(field)) {
                    record.insert(field.into(), value);
                }
            }
        }
        if let Some(agreement) = parent {
            record.insert("agreementId".into(), agreement["id"].clone());
            if let Some(status) = agreement.get("agreementStatus").filter(|s| s.is_string()) {
                record.insert("agreementStatus".into(), status.clone());
            }
        }
        self.addition_derived(record);
    }

    /// billedQuantity = quantity − lessIncluded (ConnectWise's API documentation); status from the
    /// cancelled date: an addition cancelled in the future still bills until then.
    fn addition_derived(&self, record: &mut Map<String, Value>) {
        for field in ["quantity", "lessIncluded"] {
            record.entry(field).or_insert(json!(0.0));
        }
        let billed = number_of(record, "quantity") - number_of(record, "lessIncluded");
        let ext_price = billed * number_of(record, "unitPrice");
        let ext_cost = billed * number_of(record, "unitCost");
        record.insert("billedQuantity".into(), json!(billed));
        record.insert("extPrice".into(), json!(ext_price));
        record.insert("extCost".into(), json!(ext_cost));
        let cancelled = record
            .get("cancelledDate")
            .and_then(Value::as_str)
            .and_then(parse_datetime)
            .is_some_and(|at| at <= self.st.now());
        let status = if cancelled { "Cancelled" } else { "Active" };
        record.insert("additionStatus".into(), json!(status));
    }

    fn catalog_item(&mut self, record: &mut Map<String, Value>) {
        let product_type = self.reference(record, &PRODUCT_TYPE, true);
        let subcategory = self.reference(record, &SUBCATEGORY, true);
        let unit = self.reference(record, &UNIT, false);
        let category = self.reference(record, &CATEGORY, false);
        for (spec, target) in [
            (&PRODUCT_TYPE, &product_type),
            (&SUBCATEGORY, &subcategory),
            (&UNIT, &unit),
            (&CATEGORY, &category),
        ] {
            if let Some(target) = target {
                self.refuse_inactive(spec, target);
            }
        }
        if let (Some(sub), Some(cat)) = (&subcategory, &category) {
            self.refuse_foreign_subcategory(sub, cat);
        }
        if category.is_none() {
            // A subcategory belongs to one category, which the item inherits.
            if let Some(category) = subcategory.as_ref().and_then(|s| s.get("category")) {
                record.entry("category").or_insert(category.clone());
            }
        }
        let defaults = [
            ("productClass", json!("NonInventory")),
            ("inactiveFlag", json!(false)),
            ("taxableFlag", json!(false)),
            ("price", json!(0.0)),
            ("cost", json!(0.0)),
        ];
        for (field, value) in defaults {
            record.entry(field).or_insert(value);
        }
    }

    /// ConnectWise lists inactive setup records but refuses them on a new record.
    fn refuse_inactive(&mut self, spec: &RefSpec, target: &Value) {
        if target.get("inactiveFlag").and_then(Value::as_bool) == Some(true) {
            let msg = format!(
                "The {} {} is inactive and cannot be used.",
                spec.field,
                label(target)
            );
            self.invalid("InvalidField", spec.field, msg);
        }
    }

    /// A subcategory belongs to one category: the item's category must be it.
    fn refuse_foreign_subcategory(&mut self, subcategory: &Value, category: &Value) {
        let parent = subcategory.pointer("/category/id").and_then(Value::as_i64);
        if parent != category.get("id").and_then(Value::as_i64) {
            let msg = format!(
                "The subcategory {} does not belong to the category {}.",
                label(subcategory),
                label(category)
            );
            self.invalid("InvalidField", "subcategory", msg);
        }
    }

    fn agreement(&mut self, record: &mut Map<String, Value>) {
        self.reference(record, &COMPANY, true);
        self.reference(record, &AGREEMENT_TYPE, true);
        record.entry("cancelledFlag").or_insert(json!(false));
        record.entry("agreementStatus").or_insert(json!("Active"));
    }

    /// A company identifier is unique; the message is the one ConnectWise sends
    /// (ConnectWise's API documentation). Nothing else is unique: catalog items and additions may repeat.
    fn company(&mut self, record: &mut Map<String, Value>, own_id: Option<i64>) {
        let identifier = record
            .get("identifier")
            .and_then(Value::as_str)
            .unwrap_or("");
        let taken = self.st.collection("companies").iter().any(|c| {
            c["id"].as_i64() != own_id
                && c["identifier"]
                    .as_str()
                    .is_some_and(|i| i.eq_ignore_ascii_case(identifier))
        });
        if taken {
            self.invalid(
                "ObjectExists",
                "identifier",
                "Company ID already in use.".into(),
            );
        }
        record.entry("deletedFlag").or_insert(json!(false));
    }
}

/// The entity a reference names: by `id` when given, else by `key`
/// (case-insensitive, the first of several).
fn lookup<'a>(items: &'a [Value], reference: &Value, key: &str) -> Option<&'a Value> {
    if let Some(id) = reference.get("id").filter(|v| !v.is_null()) {
        return items
            .iter()
            .find(|i| i.get("id").and_then(Value::as_i64) == id.as_i64());
    }
    let wanted = reference.get(key)?.as_str()?;
    items.iter().find(|i| {
        i.get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(wanted))
    })
}

fn describe(reference: &Value, key: &str) -> String {
    match (reference.get("id"), reference.get(key)) {
        (Some(id), _) if !id.is_null() => format!("with id {id}"),
        (_, Some(k)) => format!("{k}"),
        _ => "reference".to_owned(),
    }
}

/// `"Endpoint" (id 31)`, how the messages name a setup record.
fn label(record: &Value) -> String {
    let name = record.get("name").and_then(Value::as_str).unwrap_or("");
    let id = record.get("id").and_then(Value::as_i64).unwrap_or_default();
    format!("{name:?} (id {id})")
}

fn number(item: &Value, field: &str) -> f64 {
    item.get(field).and_then(Value::as_f64).unwrap_or(0.0)
}

fn number_of(record: &Map<String, Value>, field: &str) -> f64 {
    record.get(field).and_then(Value::as_f64).unwrap_or(0.0)
}
