//! Request-body validation against ConnectWise's own OpenAPI component
//! schemas (a verbatim subset embedded from `fixtures/`), reproducing the
//! checks ConnectWise makes: required fields, enums, `Max length: N;`
//! descriptions and JSON types. Unknown properties are ignored, as
//! ConnectWise ignores them.

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value};

use super::query::parse_datetime;

/// The embedded spec; embedded rather than read so the simulator stands alone.
static SPEC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fixtures/connectwise-subset.json"))
        .expect("embedded ConnectWise spec is valid JSON")
});

/// One entry of a ConnectWise error response's `errors` array
/// (`ValidationError` in the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub code: String,
    pub message: String,
    pub resource: String,
    pub field: String,
}

impl FieldError {
    fn new(code: &str, message: String, resource: &str, field: &str) -> Self {
        FieldError {
            code: code.to_string(),
            message,
            resource: resource.to_string(),
            field: field.to_string(),
        }
    }

    fn invalid(message: String, resource: &str, field: &str) -> Self {
        Self::new("InvalidField", message, resource, field)
    }
}

/// The component schema `name` (e.g. `Addition`, `CatalogItem`).
pub fn schema(name: &str) -> Option<&'static Value> {
    let spec: &'static Value = &SPEC;
    spec.get("components")?.get("schemas")?.get(name)
}

/// The resource name ConnectWise reports in errors: `CatalogItem` → `catalogItem`.
pub fn resource_name(schema_name: &str) -> String {
    let mut chars = schema_name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// Validates a POST (`for_update == false`) or PUT (`true`) body. An empty
/// result means the body is acceptable.
pub fn validate_body(schema_name: &str, body: &Value, for_update: bool) -> Vec<FieldError> {
    let resource = resource_name(schema_name);
    let Some(entity) = schema(schema_name) else {
        let message = format!("Unknown resource type {schema_name}.");
        return vec![FieldError::new("InvalidObject", message, &resource, "")];
    };
    let Some(obj) = body.as_object() else {
        let message = format!("The {resource} object is invalid: the body must be a JSON object.");
        return vec![FieldError::new("InvalidObject", message, &resource, "")];
    };
    let mut errors: Vec<FieldError> = required_fields(entity, for_update)
        .into_iter()
        .filter(|name| !required_satisfied(entity, name, obj.get(*name)))
        .map(|name| {
            let message = format!("The {name} field is required.");
            FieldError::new("MissingRequiredField", message, &resource, name)
        })
        .collect();
    for (name, prop) in properties(entity).into_iter().flatten() {
        // Server-side fields are ignored on input; one error per field is enough.
        if is_read_only(name) || errors.iter().any(|e| &e.field == name) {
            continue;
        }
        if let Some(value) = obj.get(name) {
            errors.extend(check_value(prop, value, name, &resource, true));
        }
    }
    errors
}

/// The schema's `required` list; on updates also the properties described
/// as " Required On Updates;" (e.g. `Agreement.billTime`).
fn required_fields(entity: &'static Value, for_update: bool) -> Vec<&'static str> {
    let listed = entity.get("required").and_then(Value::as_array);
    let mut names: Vec<&str> = listed
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if for_update {
        let on_update = properties(entity)
            .into_iter()
            .flatten()
            .filter(|(name, prop)| {
                description(prop).contains("Required On Updates") && !names.contains(&name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>();
        names.extend(on_update);
    }
    names
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn description(prop: &Value) -> &str {
    prop.get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_read_only(name: &str) -> bool {
    name == "id" || name == "_info"
}

/// Present, non-null, non-blank; a required reference must also identify
/// its target by `id`, `identifier` or `name`.
fn required_satisfied(entity: &Value, name: &str, value: Option<&Value>) -> bool {
    let is_reference = properties(entity)
        .and_then(|props| resolve_ref(props.get(name)?))
        .is_some_and(|(target, _)| target.ends_with("Reference"));
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Object(m)) if is_reference => identifies(m),
        Some(_) => true,
    }
}

fn identifies(reference: &Map<String, Value>) -> bool {
    let has_id = reference.get("id").is_some_and(|v| !v.is_null());
    let has_key = ["identifier", "name"].iter().any(|k| {
        reference
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    });
    has_id || has_key
}

/// `{"$ref": "#/components/schemas/X"}` → `("X", schema X)`.
fn resolve_ref(prop: &Value) -> Option<(&str, &'static Value)> {
    let name = prop
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    Some((name, schema(name)?))
}

/// Checks one property value. `follow_refs` allows descending into a
/// referenced object; it is cleared there so only one level is checked.
fn check_value(
    prop: &Value,
    value: &Value,
    field: &str,
    resource: &str,
    follow_refs: bool,
) -> Vec<FieldError> {
    // Nullability isn't enforced: ConnectWise treats null as "not given".
    if value.is_null() {
        return Vec::new();
    }
    if let Some((_, target)) = resolve_ref(prop) {
        return if follow_refs {
            check_reference(target, value, field, resource)
        } else {
            Vec::new()
        };
    }
    type_problem(prop, value, field)
        .or_else(|| enum_problem(prop, value, field))
        .or_else(|| length_problem(prop, value, field))
        .map(|message| FieldError::invalid(message, resource, field))
        .into_iter()
        .collect()
}

/// A reference (`product`, `type`, …) must be an object; its own properties
/// get the scalar checks. Placeholder schemas have no properties: anything goes.
fn check_reference(target: &Value, value: &Value, field: &str, resource: &str) -> Vec<FieldError> {
    let Some(obj) = value.as_object() else {
        return vec![FieldError::invalid(
            format!("{field} must be an object."),
            resource,
            field,
        )];
    };
    let mut errors = Vec::new();
    for (name, prop) in properties(target).into_iter().flatten() {
        if let Some(v) = obj.get(name).filter(|_| name != "_info") {
            errors.extend(check_value(
                prop,
                v,
                &format!("{field}/{name}"),
                resource,
                false,
            ));
        }
    }
    errors
}

fn type_problem(prop: &Value, value: &Value, field: &str) -> Option<String> {
    let ty = prop.get("type")?.as_str()?;
    let format = prop.get("format").and_then(Value::as_str);
    let ok = match ty {
        "string" => value.is_string(),
        "integer" => is_integer(value, format == Some("int32")),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !ok {
        let article = if ty == "integer" || ty == "array" || ty == "object" {
            "an"
        } else {
            "a"
        };
        return Some(format!("{field} must be {article} {ty}."));
    }
    let bad_date =
        format == Some("date-time") && value.as_str().is_some_and(|s| parse_datetime(s).is_none());
    bad_date.then(|| format!("{field} must be a date-time such as 2025-01-01T00:00:00Z."))
}

/// Whole numbers only (`3` or `3.0`), within i32 for `int32` fields.
fn is_integer(value: &Value, int32: bool) -> bool {
    let whole = value
        .as_i64()
        .map(|n| n as f64)
        .or_else(|| value.as_f64().filter(|f| f.fract() == 0.0));
    whole.is_some_and(|n| !int32 || (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&n))
}

/// Enum values are matched exactly, so a simulator catches misspellings.
fn enum_problem(prop: &Value, value: &Value, field: &str) -> Option<String> {
    let allowed = prop.get("enum")?.as_array()?;
    if allowed.contains(value) {
        return None;
    }
    let list: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    Some(format!(
        "{value} is not a valid value for {field}. Allowed values: {}.",
        list.join(", ")
    ))
}

fn length_problem(prop: &Value, value: &Value, field: &str) -> Option<String> {
    let max = max_length(prop)?;
    let len = value.as_str()?.chars().count();
    (len > max).then(|| format!("{field} cannot be longer than {max} characters."))
}

/// ConnectWise states limits only in prose: `"... Max length: 50;"`.
fn max_length(prop: &Value) -> Option<usize> {
    let rest = description(prop).split("Max length:").nth(1)?;
    rest.split(';').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addition() -> Value {
        json!({
            "product": {"identifier": "SOPHOS-XDR"},
            "billCustomer": "Billable",
            "quantity": 12,
            "unitPrice": 4.5,
            "taxableFlag": false,
            "effectiveDate": "2025-01-01T00:00:00Z",
            "agreementId": 7,
            "invoiceDescription": "Sophos XDR"
        })
    }

    fn catalog_item() -> Value {
        json!({
            "identifier": "SOPHOS-XDR",
            "description": "Sophos Intercept X Advanced with XDR",
            "customerDescription": "Sophos XDR per endpoint",
            "subcategory": {"id": 4},
            "type": {"name": "Sophos MSP"},
            "productClass": "Service",
            "price": 5,
            "inactiveFlag": false
        })
    }

    fn codes_and_fields(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.code.as_str(), e.field.as_str()))
            .collect()
    }

    fn without(mut body: Value, field: &str) -> Value {
        body.as_object_mut().unwrap().remove(field);
        body
    }

    fn with(mut body: Value, field: &str, value: Value) -> Value {
        body[field] = value;
        body
    }

    #[test]
    fn schemas_are_embedded() {
        assert!(schema("Addition").is_some());
        assert!(schema("CatalogItem").is_some());
        assert!(schema("Nope").is_none());
        assert_eq!(resource_name("CatalogItem"), "catalogItem");
        assert_eq!(resource_name("Addition"), "addition");
        assert_eq!(resource_name(""), "");
    }

    #[test]
    fn valid_bodies_pass() {
        assert_eq!(validate_body("Addition", &addition(), false), vec![]);
        assert_eq!(validate_body("Addition", &addition(), true), vec![]);
        assert_eq!(validate_body("CatalogItem", &catalog_item(), false), vec![]);
    }

    #[test]
    fn ignores_unknown_and_read_only_fields() {
        let body = with(addition(), "someUnknownThing", json!([1, 2]));
        let body = with(body, "id", json!("not a number"));
        let body = with(body, "_info", json!("whatever"));
        assert_eq!(validate_body("Addition", &body, false), vec![]);
    }

    #[test]
    fn addition_missing_product() {
        let errors = validate_body("Addition", &without(addition(), "product"), false);
        assert_eq!(
            errors,
            vec![FieldError {
                code: "MissingRequiredField".into(),
                message: "The product field is required.".into(),
                resource: "addition".into(),
                field: "product".into(),
            }]
        );
    }

    #[test]
    fn addition_missing_bill_customer_and_null_product() {
        let body = with(without(addition(), "billCustomer"), "product", Value::Null);
        let errors = validate_body("Addition", &body, false);
        assert_eq!(
            codes_and_fields(&errors),
            vec![
                ("MissingRequiredField", "product"),
                ("MissingRequiredField", "billCustomer")
            ]
        );
        assert_eq!(errors[1].message, "The billCustomer field is required.");
    }

    #[test]
    fn required_reference_needs_id_or_identifier() {
        let body = with(addition(), "product", json!({"serializedFlag": true}));
        let errors = validate_body("Addition", &body, false);
        assert_eq!(
            codes_and_fields(&errors),
            vec![("MissingRequiredField", "product")]
        );
        let body = with(addition(), "product", json!({"id": 9}));
        assert_eq!(validate_body("Addition", &body, false), vec![]);
        let body = with(addition(), "product", json!({"identifier": "  "}));
        assert_eq!(validate_body("Addition", &body, false).len(), 1);
    }

    #[test]
    fn catalog_item_missing_each_required_field() {
        let required = [
            "identifier",
            "description",
            "subcategory",
            "type",
            "customerDescription",
        ];
        for field in required {
            let errors = validate_body("CatalogItem", &without(catalog_item(), field), false);
            assert_eq!(
                codes_and_fields(&errors),
                vec![("MissingRequiredField", field)]
            );
            assert_eq!(errors[0].resource, "catalogItem");
        }
        let errors = validate_body("CatalogItem", &json!({}), false);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, required);
        let blank = with(catalog_item(), "identifier", json!(""));
        assert_eq!(
            codes_and_fields(&validate_body("CatalogItem", &blank, false)),
            vec![("MissingRequiredField", "identifier")]
        );
    }

    #[test]
    fn bad_enum_value() {
        let body = with(addition(), "billCustomer", json!("Sometimes"));
        let errors = validate_body("Addition", &body, false);
        assert_eq!(
            codes_and_fields(&errors),
            vec![("InvalidField", "billCustomer")]
        );
        assert!(
            errors[0].message.contains("Billable, DoNotBill, NoCharge"),
            "{}",
            errors[0].message
        );
        // Exact match: a simulator should catch a misspelt case.
        let body = with(addition(), "billCustomer", json!("billable"));
        assert_eq!(validate_body("Addition", &body, false).len(), 1);
    }

    #[test]
    fn max_length() {
        // CatalogItem.description is " Max length: 60;", identifier is 75.
        let body = with(catalog_item(), "description", json!("x".repeat(61)));
        let errors = validate_body("CatalogItem", &body, false);
        assert_eq!(
            codes_and_fields(&errors),
            vec![("InvalidField", "description")]
        );
        assert_eq!(
            errors[0].message,
            "description cannot be longer than 60 characters."
        );
        let body = with(catalog_item(), "description", json!("é".repeat(60)));
        assert_eq!(validate_body("CatalogItem", &body, false), vec![]);
        let body = with(catalog_item(), "identifier", json!("x".repeat(76)));
        let errors = validate_body("CatalogItem", &body, true);
        assert_eq!(
            errors[0].message,
            "identifier cannot be longer than 75 characters."
        );
        let body = with(addition(), "serialNumber", json!("x".repeat(51)));
        assert_eq!(validate_body("Addition", &body, false).len(), 1);
    }

    #[test]
    fn wrong_types() {
        let cases = [
            ("quantity", json!("12"), "quantity must be a number."),
            ("agreementId", json!(1.5), "agreementId must be an integer."),
            (
                "agreementId",
                json!(4_000_000_000_i64),
                "agreementId must be an integer.",
            ),
            (
                "taxableFlag",
                json!("yes"),
                "taxableFlag must be a boolean.",
            ),
            ("description", json!(42), "description must be a string."),
            ("product", json!(5), "product must be an object."),
            (
                "effectiveDate",
                json!("tomorrow"),
                "effectiveDate must be a date-time such as 2025-01-01T00:00:00Z.",
            ),
        ];
        for (field, value, message) in cases {
            let errors = validate_body("Addition", &with(addition(), field, value), false);
            assert_eq!(
                codes_and_fields(&errors),
                vec![("InvalidField", field)],
                "{field}"
            );
            assert_eq!(errors[0].message, message);
        }
        let ok = with(addition(), "agreementId", json!(7.0));
        assert_eq!(validate_body("Addition", &ok, false), vec![]);
    }

    #[test]
    fn reference_properties_checked_one_level() {
        let body = with(addition(), "product", json!({"id": "nine"}));
        let errors = validate_body("Addition", &body, false);
        assert_eq!(
            codes_and_fields(&errors),
            vec![("InvalidField", "product/id")]
        );
        // A placeholder reference schema accepts anything.
        let body = with(
            addition(),
            "opportunity",
            json!({"id": "x", "deep": {"a": 1}}),
        );
        assert_eq!(validate_body("Addition", &body, false), vec![]);
    }

    #[test]
    fn non_object_body() {
        let errors = validate_body("Addition", &json!([1]), false);
        assert_eq!(codes_and_fields(&errors), vec![("InvalidObject", "")]);
        assert_eq!(errors[0].resource, "addition");
    }

    #[test]
    fn required_on_updates_applies_to_put_only() {
        let agreement = json!({
            "name": "Acme Sophos",
            "type": {"id": 1},
            "company": {"id": 2},
            "contact": {"id": 3}
        });
        assert_eq!(validate_body("Agreement", &agreement, false), vec![]);
        let mut fields: Vec<String> = validate_body("Agreement", &agreement, true)
            .into_iter()
            .map(|e| e.field)
            .collect();
        // Property order depends on serde_json's preserve_order feature.
        fields.sort();
        assert_eq!(
            fields,
            [
                "billExpenses",
                "billProducts",
                "billTime",
                "employeeCompRate",
                "invoicingCycle"
            ]
        );
    }
}
