//! The simulators' responses, the demo scenario and the request bodies the
//! ConnectWise simulator accepts all validate against the spec subsets in
//! `sim/fixtures/` (copies of /work/shared/reference/specs).
//!
//! ConnectWise schemas are used as published. OpenAPI's `nullable` is not JSON
//! Schema, and the vendor leaves unset fields out rather than sending null
//! (ConnectWise's OpenAPI document: nullable enums reject null), so instead of translating
//! `nullable` every ConnectWise body is also asserted to contain no null.

mod common;

use common::{Cw, Sophos, addition_body, client, json};
use jsonschema::Validator;
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, Sim};

fn spec(file: &str) -> Value {
    let path = format!("{}/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cw_spec() -> Value {
    spec("connectwise-subset.json")
}

/// A validator for `#/components/schemas/{name}` (or an array of them).
fn validator(spec: &Value, name: &str, array: bool) -> Validator {
    let reference = json!({"$ref": format!("#/components/schemas/{name}")});
    let mut root = if array {
        json!({"type": "array", "items": reference})
    } else {
        reference
    };
    root["components"] = spec["components"].clone();
    jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {name}: {e}"))
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the spec: {errors:#?}\n{instance}"
    );
}

fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| assert_no_nulls(v, &format!("{path}/{k}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{path}/{i}"))),
        _ => {}
    }
}

fn assert_cw(spec: &Value, schema: &str, instance: &Value, what: &str) {
    assert_no_nulls(instance, what);
    assert_valid(
        &validator(spec, schema, instance.is_array()),
        instance,
        what,
    );
}

/// (API path, schema) of every collection; additions are per agreement.
const COLLECTIONS: [(&str, &str); 8] = [
    ("company/companies", "Company"),
    ("finance/agreements", "Agreement"),
    ("finance/agreements/types", "AgreementType"),
    ("procurement/catalog", "CatalogItem"),
    ("procurement/types", "ProductType"),
    ("procurement/categories", "Category"),
    ("procurement/subcategories", "SubCategory"),
    ("procurement/unitOfMeasures", "UnitOfMeasure"),
];

#[test]
fn the_validators_are_not_vacuous() {
    let spec = cw_spec();
    let addition = validator(&spec, "Addition", false);
    assert!(addition.is_valid(&json!({"product": {"id": 1}, "billCustomer": "Billable"})));
    assert!(!addition.is_valid(&json!({"product": {"id": 1}, "billCustomer": "Sometimes"})));
    assert!(!addition.is_valid(&json!({"billCustomer": "Billable"})));
    assert!(
        !addition
            .is_valid(&json!({"product": {"id": 1}, "billCustomer": "Billable", "quantity": "3"}))
    );
    let sophos = spec_for_sophos();
    assert!(
        !validator(&sophos, "Whoami", false)
            .is_valid(&json!({"id": "x", "idType": "robot", "apiHosts": {}}))
    );
}

#[test]
fn demo_scenario_entities_match_the_schemas() {
    let spec = cw_spec();
    let cw = Scenario::demo().connectwise;
    let sets = [
        ("Company", &cw.companies),
        ("Agreement", &cw.agreements),
        ("AgreementType", &cw.agreement_types),
        ("Addition", &cw.additions),
        ("CatalogItem", &cw.catalog),
        ("ProductType", &cw.product_types),
        ("Category", &cw.categories),
        ("SubCategory", &cw.subcategories),
        ("UnitOfMeasure", &cw.unit_of_measures),
    ];
    for (schema, items) in sets {
        assert!(!items.is_empty(), "the demo has {schema}s");
        assert_cw(
            &spec,
            schema,
            &Value::Array(items.clone()),
            &format!("demo {schema}s"),
        );
    }
    let sophos = spec_for_sophos();
    let demo = Scenario::demo().sophos;
    assert_valid(
        &validator(&sophos, "Tenant", true),
        &Value::Array(demo.tenants),
        "demo tenants",
    );
    for (month, items) in demo.usage {
        assert_valid(
            &validator(&sophos, "UsageItem", true),
            &Value::Array(items),
            &format!("demo usage {month}"),
        );
    }
}

#[test]
fn generated_scenario_entities_match_the_schemas() {
    let spec = cw_spec();
    let generated = sophos_cw_sim::generate::generate(60, 3, 5);
    let cw = &generated.connectwise;
    let sets = [
        ("Company", &cw.companies),
        ("Agreement", &cw.agreements),
        ("AgreementType", &cw.agreement_types),
        ("ProductType", &cw.product_types),
        ("Category", &cw.categories),
        ("SubCategory", &cw.subcategories),
        ("UnitOfMeasure", &cw.unit_of_measures),
    ];
    for (schema, items) in sets {
        assert_cw(
            &spec,
            schema,
            &Value::Array(items.clone()),
            &format!("generated {schema}s"),
        );
    }
    let sophos = spec_for_sophos();
    assert_valid(
        &validator(&sophos, "Tenant", true),
        &Value::Array(generated.sophos.tenants),
        "generated tenants",
    );
    for items in generated.sophos.usage.into_values() {
        assert_valid(
            &validator(&sophos, "UsageItem", true),
            &Value::Array(items),
            "generated usage",
        );
    }
}

#[tokio::test]
async fn every_connectwise_get_matches_the_schemas() {
    let spec = cw_spec();
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let cw = Cw::new(&sim);
    for (path, schema) in COLLECTIONS {
        let list = cw.get_ok(&format!("{path}?pageSize=1000")).await;
        assert_cw(&spec, schema, &list, path);
        for item in list.as_array().unwrap() {
            let one = cw.get_ok(&format!("{path}/{}", item["id"])).await;
            assert_cw(&spec, schema, &one, &format!("{path}/{}", item["id"]));
        }
        assert_cw(
            &spec,
            "Count",
            &cw.get_ok(&format!("{path}/count")).await,
            &format!("{path}/count"),
        );
    }
    for agreement in sim.collection("agreements") {
        let path = format!("finance/agreements/{}/additions", agreement["id"]);
        let list = cw.get_ok(&path).await;
        assert_cw(&spec, "Addition", &list, &path);
        for item in list.as_array().unwrap() {
            assert_cw(
                &spec,
                "Addition",
                &cw.get_ok(&format!("{path}/{}", item["id"])).await,
                &path,
            );
        }
    }
}

/// Request bodies the simulator accepts (valid per the spec) and its answers.
fn accepted_posts() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "company/companies",
            "Company",
            json!({"identifier": "NewCo", "name": "New Co"}),
        ),
        (
            "finance/agreements/types",
            "AgreementType",
            json!({
            "name": "Sophos Usage", "employeeCompRate": "Actual", "employeeCompNotExceed": "Billing",
            "invoicingCycle": "CalendarYear", "billTime": "Billable", "billExpenses": "Billable", "billProducts": "Billable"}),
        ),
        (
            "finance/agreements",
            "Agreement",
            json!({
            "name": "New - Sophos", "type": {"id": 1}, "company": {"identifier": "NuShared"}, "contact": {"id": 1113}}),
        ),
        (
            "procurement/types",
            "ProductType",
            json!({"name": "Subscription"}),
        ),
        (
            "procurement/categories",
            "Category",
            json!({"name": "Cloud"}),
        ),
        (
            "procurement/subcategories",
            "SubCategory",
            json!({"name": "XDR", "category": {"id": 21}}),
        ),
        (
            "procurement/unitOfMeasures",
            "UnitOfMeasure",
            json!({"name": "Device"}),
        ),
        (
            "procurement/catalog",
            "CatalogItem",
            json!({
            "identifier": "Sophos_MTR_Standard", "description": "Intercept X Advanced with XDR and MTR Standard",
            "customerDescription": "MTR Standard", "type": {"id": 11}, "subcategory": {"id": 31},
            "unitOfMeasure": {"id": 41}, "productClass": "Agreement", "price": 8.0, "cost": 5.5}),
        ),
        (
            "finance/agreements/202/additions",
            "Addition",
            addition_body(17),
        ),
        (
            "finance/agreements/202/additions",
            "Addition",
            json!({
            "product": {"identifier": "Sophos_Intercept_X_Advanced"}, "billCustomer": "DoNotBill", "quantity": 2.5,
            "lessIncluded": 1, "cancelledDate": "2026-12-31T00:00:00Z", "invoiceDescription": "Nov usage"}),
        ),
    ]
}

#[tokio::test]
async fn accepted_bodies_and_write_results_match_the_schemas() {
    let spec = cw_spec();
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let cw = Cw::new(&sim);
    for (path, schema, body) in accepted_posts() {
        assert_cw(&spec, schema, &body, &format!("request body for {path}"));
        let response = cw.post(path, &body).send().await.unwrap();
        assert_eq!(response.status(), 201, "POST {path}");
        assert_cw(
            &spec,
            schema,
            &json(response).await,
            &format!("POST {path}"),
        );
    }
    let ops = json!([{"op": "replace", "path": "quantity", "value": 9}]);
    let patched = json(
        cw.patch("finance/agreements/202/additions/301", &ops)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_cw(&spec, "Addition", &patched, "PATCH result");
    let put = json(
        cw.put("finance/agreements/202/additions/301", &addition_body(4))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_cw(&spec, "Addition", &put, "PUT result");
    let catalog_ops = json!([{"op": "replace", "path": "price", "value": 4.75}]);
    let item = json(
        cw.patch("procurement/catalog/901", &catalog_ops)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_cw(&spec, "CatalogItem", &item, "catalog PATCH result");
}

#[tokio::test]
async fn connectwise_error_bodies_match_error_response_message() {
    let spec = cw_spec();
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let cw = Cw::new(&sim);
    let invalid = cw
        .post("finance/agreements/202/additions", &json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    let missing = cw.get("company/companies/424242").send().await.unwrap();
    let denied = client()
        .get(format!("{}/company/companies", cw.base))
        .send()
        .await
        .unwrap();
    for response in [invalid, missing, denied] {
        let status = response.status();
        assert_cw(
            &spec,
            "ErrorResponseMessage",
            &json(response).await,
            &format!("{status} body"),
        );
    }
}

// ------------------------------------------------------------------ Sophos

/// The Sophos subset, with `Tenant.apiHost` nullable: Sophos's API documentation has
/// null for a tenant whose account is not activated (the demo has one).
fn spec_for_sophos() -> Value {
    let mut spec = spec("sophos-partner-subset.json");
    spec["components"]["schemas"]["Tenant"]["properties"]["apiHost"]["nullable"] = json!(true);
    nullable_to_type_union(&mut spec);
    spec
}

/// OpenAPI 3.0 `nullable: true` → JSON Schema `type: [T, "null"]`.
fn nullable_to_type_union(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let nullable = map.remove("nullable") == Some(json!(true));
            if let (true, Some(Value::String(ty))) = (nullable, map.get("type").cloned()) {
                map.insert("type".into(), json!([ty, "null"]));
            }
            map.values_mut().for_each(nullable_to_type_union);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_type_union),
        _ => {}
    }
}

#[tokio::test]
async fn sophos_responses_match_the_partner_subset() {
    let spec = spec_for_sophos();
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "sim-sophos-client"),
        ("client_secret", "sim-sophos-secret"),
        ("scope", "token"),
    ];
    let url = format!("{}/api/v2/oauth2/token", sim.sophos_url());
    let token = json(client().post(url).form(&form).send().await.unwrap()).await;
    assert_valid(&validator(&spec, "TokenResponse", false), &token, "token");
    let sophos = Sophos::login(&sim).await;
    let checks = [
        ("/whoami/v1", "Whoami"),
        (
            "/partner/v1/tenants?pageTotal=true&pageSize=5",
            "TenantList",
        ),
        (
            "/partner/v1/tenants/a0000000-0000-4000-8000-000000000001",
            "Tenant",
        ),
        (
            "/partner/v1/billing/usage/2026/11?pageSize=4&pageTotal=true",
            "UsageReport",
        ),
        ("/partner/v1/billing/usage/2026/10", "UsageReport"),
        ("/partner/v1/billing/usage/2020/01", "Error"),
        ("/partner/v1/tenants?pageSize=500", "Error"),
    ];
    for (path, schema) in checks {
        let body = json(sophos.get(path).send().await.unwrap()).await;
        assert_valid(&validator(&spec, schema, false), &body, path);
    }
    let next = json(
        sophos
            .get("/partner/v1/billing/usage/2026/11?pageSize=4")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let key = next["pages"]["nextKey"]
        .as_str()
        .expect("more than one page")
        .to_owned();
    let second = json(
        sophos
            .get("/partner/v1/billing/usage/2026/11?pageSize=4")
            .query(&[("pageFromKey", key)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_valid(
        &validator(&spec, "UsageReport", false),
        &second,
        "second usage page",
    );
}
