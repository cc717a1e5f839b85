//! The ConnectWise simulator over HTTP: auth, conditions, paging, fields,
//! count, validation errors, writes and their server-side fields.

mod common;

use common::{Cw, addition_body, as_f64, client, companies_scenario, ids, json, link};
use serde_json::{Value, json};
use sophos_cw_sim::{Scenario, Sim};
use std::collections::HashSet;

async fn demo() -> (Sim, Cw) {
    let sim = Sim::start(Scenario::demo()).await.unwrap();
    let cw = Cw::new(&sim);
    (sim, cw)
}

// ------------------------------------------------------------------ auth

#[tokio::test]
async fn missing_client_id_and_bad_keys_are_401_in_the_connectwise_shape() {
    let (_sim, cw) = demo().await;
    let url = format!("{}/company/companies", cw.base);
    let cases = [
        (
            "no clientId",
            client().get(&url).basic_auth(&cw.user, Some(&cw.password)),
        ),
        (
            "wrong clientId",
            client()
                .get(&url)
                .basic_auth(&cw.user, Some(&cw.password))
                .header("clientid", "x"),
        ),
        (
            "bad private key",
            client()
                .get(&url)
                .basic_auth(&cw.user, Some("nope"))
                .header("clientId", &cw.client_id),
        ),
        (
            "bad public key",
            client()
                .get(&url)
                .basic_auth("simmsp+other", Some(&cw.password))
                .header("clientId", &cw.client_id),
        ),
        (
            "no Authorization",
            client().get(&url).header("clientId", &cw.client_id),
        ),
    ];
    for (case, request) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        let body = json(response).await;
        assert_eq!(body["code"], "Unauthorized", "{case}");
        assert!(body["message"].is_string(), "{case}");
    }
    // Header name and company id are case-insensitive.
    let ok = client()
        .get(&url)
        .basic_auth("SIMMSP+sim-public-key", Some(&cw.password))
        .header("CLIENTID", &cw.client_id);
    assert_eq!(ok.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn company_info_needs_no_auth_and_names_the_codebase() {
    let (sim, _cw) = demo().await;
    let body = json(
        client()
            .get(format!("{}/login/companyinfo/simmsp", sim.cw_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["Codebase"], "v4_6_release/");
    assert_eq!(body["CompanyID"], "simmsp");
    assert_eq!(body["IsCloud"], true);
    let unknown = client()
        .get(format!("{}/login/companyinfo/other", sim.cw_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let wrong_codebase = Cw {
        base: format!("{}/v2099_1/apis/3.0", sim.cw_url()),
        ..Cw::new(&sim)
    };
    assert_eq!(
        wrong_codebase
            .get("company/companies")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

// ------------------------------------------------------------------ conditions

/// Every operator through HTTP against the demo data.
#[tokio::test]
async fn conditions_operators_over_http() {
    let (sim, cw) = demo().await;
    // Give one agreement a later start date, for the date comparisons.
    sim.with_state(|s| {
        let agreement = s
            .collection_mut("agreements")
            .iter_mut()
            .find(|a| a["id"] == 209)
            .unwrap();
        agreement["startDate"] = json!("2025-06-01T00:00:00Z");
    });
    let cases: &[(&str, &str, &[i64])] = &[
        ("company/companies", "id=101", &[101]),
        ("company/companies", "id!=101 and id<106", &[102, 104, 105]),
        ("company/companies", "id<104", &[101, 102]),
        ("company/companies", "id<=104", &[101, 102, 104]),
        ("company/companies", "id>113", &[114, 115]),
        ("company/companies", "id>=113", &[113, 114, 115]),
        ("company/companies", "name like \"delta*\"", &[104, 114]),
        (
            "company/companies",
            "name contains \"eta\"",
            &[102, 106, 107, 112],
        ),
        ("company/companies", "id in (101, 105, 999)", &[101, 105]),
        ("company/companies", "deletedFlag=true", &[115]),
        (
            "company/companies",
            "deletedFlag=false and id<104",
            &[101, 102],
        ),
        ("company/companies", "id=101 or id=105", &[101, 105]),
        (
            "company/companies",
            "(id=101 or id=115) and deletedFlag=false",
            &[101],
        ),
        (
            "company/companies",
            "status/name=\"Active\" and (identifier=\"AcmeLtd\" or identifier=\"GammaOld\")",
            &[101, 115],
        ),
        ("finance/agreements", "company/id=101", &[201, 209]),
        (
            "finance/agreements",
            "type/name=\"Sophos MSP\" and cancelledFlag=false and company/id=102",
            &[202],
        ),
        (
            "finance/agreements",
            "startDate>[2025-03-01T00:00:00Z]",
            &[209],
        ),
        (
            "finance/agreements",
            "startDate<=[2025-01-01T00:00:00Z] and company/identifier=\"AcmeLtd\"",
            &[201],
        ),
        (
            "finance/agreements/211/additions",
            "product/identifier=\"Sophos_Intercept_X_Advanced\"",
            &[311, 312],
        ),
    ];
    for (path, conditions, expected) in cases {
        let response = cw
            .get(path)
            .query(&[("conditions", conditions)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{conditions}");
        assert_eq!(
            ids(&json(response).await),
            *expected,
            "{path}?conditions={conditions}"
        );
    }
}

#[tokio::test]
async fn bad_conditions_are_400_api_find_condition() {
    let (_sim, cw) = demo().await;
    let cases = [
        ("name = ", ""),
        ("(id=1", ""),
        (
            "invoiceDate=[2025-01-01]",
            "invoiceDate is not a recognized name.",
        ),
        (
            "types/name=\"Client\"",
            "types/name is not a recognized name.",
        ),
    ];
    for (conditions, message) in cases {
        let response = cw
            .get("company/companies")
            .query(&[("conditions", conditions)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{conditions}");
        let body = json(response).await;
        assert_eq!(body["code"], "ApiFindCondition", "{conditions}");
        if !message.is_empty() {
            assert_eq!(body["message"], message);
        }
    }
    let bad_enum = cw
        .get("finance/agreements")
        .query(&[("conditions", "agreementStatus=\"Bogus\"")]);
    let body = json(bad_enum.send().await.unwrap()).await;
    assert_eq!(body["message"], "Enum value supplied was invalid");
}

// ------------------------------------------------------------------ paging

#[tokio::test]
async fn link_paging_at_page_size_1000_returns_every_id_once() {
    let sim = Sim::start(companies_scenario(2500)).await.unwrap();
    let cw = Cw::new(&sim);
    let mut url = format!(
        "{}/company/companies?pageSize=1000&conditions=id%3E0",
        cw.base
    );
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let response = cw.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        pages += 1;
        let next = link(&response, "next");
        if pages == 1 {
            assert!(link(&response, "last").unwrap().contains("page=3"));
            assert!(link(&response, "prev").is_none());
        }
        let body = json(response).await;
        seen.extend(ids(&body));
        match next {
            Some(n) => {
                assert!(
                    n.contains("conditions=id%3E0"),
                    "other parameters survive: {n}"
                );
                url = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 2500);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 2500);
}

#[tokio::test]
async fn page_size_is_capped_at_1000_and_defaults_to_25() {
    let sim = Sim::start(companies_scenario(1200)).await.unwrap();
    let cw = Cw::new(&sim);
    let capped = cw.get_ok("company/companies?pageSize=5000").await;
    assert_eq!(capped.as_array().unwrap().len(), 1000);
    let default = cw.get("company/companies").send().await.unwrap();
    assert!(link(&default, "last").unwrap().contains("page=48"));
    assert_eq!(json(default).await.as_array().unwrap().len(), 25);
    let middle = cw
        .get("company/companies?page=2&pageSize=500")
        .send()
        .await
        .unwrap();
    for rel in ["prev", "next", "first", "last"] {
        assert!(link(&middle, rel).is_some(), "{rel}");
    }
    assert_eq!(ids(&json(middle).await).first(), Some(&501));
    let beyond = cw.get_ok("company/companies?page=9&pageSize=500").await;
    assert_eq!(beyond, json!([]));
}

#[tokio::test]
async fn forward_only_paging_follows_page_id() {
    let sim = Sim::start(companies_scenario(2500)).await.unwrap();
    let cw = Cw::new(&sim);
    let mut url = format!(
        "{}/company/companies?pageSize=1000&conditions=deletedFlag%3Dfalse",
        cw.base
    );
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let response = cw
            .get(&url)
            .header("pagination-type", "forward-only")
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(
            response.headers().contains_key("link"),
            "forward-only always sends Link"
        );
        let next = link(&response, "next");
        let page: Vec<i64> = json(response)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        assert!(page.windows(2).all(|w| w[0] < w[1]), "ordered by id");
        seen.extend(page);
        match next {
            Some(n) => {
                assert!(n.contains(&format!("pageId={}", seen.last().unwrap())));
                url = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 2250, "deleted companies filtered out");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 2250);
    let ordered = cw
        .get("company/companies?orderBy=name")
        .header("pagination-type", "forward-only");
    assert_eq!(ordered.send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn default_order_is_by_id_and_order_by_sorts() {
    let (_sim, cw) = demo().await;
    let list = cw.get_ok("company/companies").await;
    let listed: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        listed,
        ids(&list),
        "scenario order is not id order; the response is"
    );
    let by_name = cw
        .get_ok("company/companies?orderBy=identifier%20desc")
        .await;
    let names: Vec<&str> = by_name
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"ZetaPartners"));
    assert_eq!(names.last(), Some(&"AcmeLtd"));
}

#[tokio::test]
async fn fields_keep_only_the_named_paths() {
    let (_sim, cw) = demo().await;
    let list = cw
        .get_ok("finance/agreements?fields=id,company/name&conditions=id=201")
        .await;
    assert_eq!(list, json!([{"id": 201, "company": {"name": "Acme Ltd"}}]));
    let one = cw.get_ok("finance/agreements/201?fields=name").await;
    assert_eq!(one, json!({"name": "Acme - Sophos"}));
}

#[tokio::test]
async fn count_honours_conditions_and_the_parent() {
    let (_sim, cw) = demo().await;
    assert_eq!(
        cw.get_ok("company/companies/count").await,
        json!({"count": 12})
    );
    assert_eq!(
        cw.get_ok("company/companies/count?conditions=deletedFlag=false")
            .await,
        json!({"count": 11})
    );
    assert_eq!(
        cw.get_ok("finance/agreements/211/additions/count").await,
        json!({"count": 2})
    );
    assert_eq!(
        cw.get("finance/agreements/999/additions/count")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn get_by_id_and_not_found() {
    let (_sim, cw) = demo().await;
    assert_eq!(
        cw.get_ok("procurement/catalog/901").await["identifier"],
        "Sophos_Intercept_X_Advanced"
    );
    assert_eq!(
        cw.get_ok("finance/agreements/202/additions/301").await["quantity"],
        5
    );
    for path in [
        "company/companies/9999",
        "finance/agreements/211/additions/301",
        "finance/agreements/999/additions",
        "procurement/types/abc",
    ] {
        let response = cw.get(path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(json(response).await["code"], "NotFound", "{path}");
    }
}

// ------------------------------------------------------------------ validation

async fn post_error(cw: &Cw, path: &str, body: &Value) -> Value {
    let response = cw.post(path, body).send().await.unwrap();
    assert_eq!(response.status(), 400, "POST {path} {body}");
    json(response).await
}

#[tokio::test]
async fn missing_product_is_the_vendors_400_body() {
    let (_sim, cw) = demo().await;
    let body = post_error(
        &cw,
        "finance/agreements/202/additions",
        &json!({"quantity": 3, "billCustomer": "Billable"}),
    )
    .await;
    assert_eq!(
        body,
        json!({"code": "InvalidObject", "message": "addition object is invalid",
               "errors": [{"code": "MissingRequiredField", "message": "The product field is required.",
                           "resource": "addition", "field": "product"}]})
    );
}

#[tokio::test]
async fn bad_enum_long_identifier_and_unknown_references_are_invalid_fields() {
    let (_sim, cw) = demo().await;
    let mut bad_enum = addition_body(3);
    bad_enum["billCustomer"] = json!("Sometimes");
    let body = post_error(&cw, "finance/agreements/202/additions", &bad_enum).await;
    assert_eq!(
        (
            body["errors"][0]["code"].as_str(),
            body["errors"][0]["field"].as_str()
        ),
        (Some("InvalidField"), Some("billCustomer"))
    );

    let item = json!({"identifier": "X".repeat(76), "description": "d", "customerDescription": "c",
                      "type": {"id": 11}, "subcategory": {"id": 31}});
    let body = post_error(&cw, "procurement/catalog", &item).await;
    assert_eq!(body["errors"][0]["field"], "identifier");
    assert_eq!(body["message"], "catalogItem object is invalid");

    let mut unknown_product = addition_body(3);
    unknown_product["product"] = json!({"id": 424242});
    let body = post_error(&cw, "finance/agreements/202/additions", &unknown_product).await;
    assert_eq!(
        (
            body["errors"][0]["code"].as_str(),
            body["errors"][0]["field"].as_str()
        ),
        (Some("InvalidField"), Some("product"))
    );

    let unknown_type = json!({"identifier": "Sophos_X", "description": "d", "customerDescription": "c",
                              "type": {"id": 999}, "subcategory": {"id": 31}, "unitOfMeasure": {"id": 998}});
    let body = post_error(&cw, "procurement/catalog", &unknown_type).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["type", "unitOfMeasure"]);

    let response = cw
        .request(reqwest::Method::POST, "procurement/catalog")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        json(response).await["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
}

// ------------------------------------------------------------------ writes

#[tokio::test]
async fn posted_addition_gets_server_fields() {
    let (sim, cw) = demo().await;
    let mut body = addition_body(12);
    body["lessIncluded"] = json!(2);
    body.as_object_mut().unwrap().remove("unitPrice");
    let response = cw
        .post("finance/agreements/202/additions", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert!(created["id"].as_i64().unwrap() > 901);
    assert_eq!(created["agreementId"], 202);
    assert_eq!(
        created["product"],
        json!({"id": 901, "identifier": "Sophos_Intercept_X_Advanced"})
    );
    assert_eq!(
        created["description"],
        "Sophos Central Intercept X Advanced"
    );
    assert_eq!(
        as_f64(&created["unitPrice"]),
        4.5,
        "defaulted from the catalog price"
    );
    assert_eq!(as_f64(&created["billedQuantity"]), 10.0);
    assert_eq!(created["additionStatus"], "Active");
    assert!(created.get("cancelledDate").is_none());
    assert!(created["_info"]["lastUpdated"].is_string());
    let stored = sim.collection("additions");
    assert_eq!(stored.last(), Some(&created));
    let fetched = cw
        .get_ok(&format!(
            "finance/agreements/202/additions/{}",
            created["id"]
        ))
        .await;
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn cancelled_date_in_the_past_cancels_and_less_included_defaults_to_zero() {
    let (_sim, cw) = demo().await;
    let mut body = addition_body(4);
    body["cancelledDate"] = json!("2020-01-31T00:00:00Z");
    let created = json(
        cw.post("finance/agreements/202/additions", &body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created["additionStatus"], "Cancelled");
    assert_eq!(as_f64(&created["lessIncluded"]), 0.0);
    assert_eq!(as_f64(&created["billedQuantity"]), 4.0);
}

#[tokio::test]
async fn duplicate_additions_and_catalog_items_are_accepted() {
    let (sim, cw) = demo().await;
    let first = json(
        cw.post("finance/agreements/202/additions", &addition_body(3))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let second = json(
        cw.post("finance/agreements/202/additions", &addition_body(3))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(first["id"], second["id"]);
    let listed = cw
        .get_ok("finance/agreements/202/additions?conditions=product/id=901")
        .await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "the demo's one plus two duplicates"
    );

    let item = json!({"identifier": "Sophos_Dup", "description": "d", "customerDescription": "c",
                      "type": {"name": "Software"}, "subcategory": {"name": "Endpoint"}});
    for _ in 0..2 {
        assert_eq!(
            cw.post("procurement/catalog", &item)
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let dupes = sim
        .collection("catalog")
        .into_iter()
        .filter(|c| c["identifier"] == "Sophos_Dup")
        .count();
    assert_eq!(dupes, 2);
}

#[tokio::test]
async fn posted_catalog_item_resolves_references_and_inherits_the_category() {
    let (_sim, cw) = demo().await;
    let item = json!({"identifier": "Sophos_Intercept_X_Advanced_XDR", "description": "Sophos Central Intercept X Advanced with XDR",
                      "customerDescription": "XDR", "type": {"name": "software"}, "subcategory": {"id": 31},
                      "unitOfMeasure": {"name": "Each"}, "productClass": "Agreement", "price": 6.5});
    let response = cw.post("procurement/catalog", &item).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert_eq!(created["type"], json!({"id": 11, "name": "Software"}));
    assert_eq!(created["category"], json!({"id": 21, "name": "Security"}));
    assert_eq!(created["unitOfMeasure"], json!({"id": 41, "name": "Each"}));
    assert_eq!(created["inactiveFlag"], false);
}

#[tokio::test]
async fn posted_catalog_price_and_cost_are_stored_and_a_wrong_type_is_a_400() {
    let (sim, cw) = demo().await;
    let item = json!({"identifier": "Sophos_Priced", "description": "Priced", "customerDescription": "c",
                      "type": {"id": 11}, "subcategory": {"id": 31}, "price": 4.5, "cost": 2.9});
    let response = cw.post("procurement/catalog", &item).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert_eq!(
        (as_f64(&created["price"]), as_f64(&created["cost"])),
        (4.5, 2.9)
    );
    let stored = cw
        .get_ok(&format!("procurement/catalog/{}", created["id"]))
        .await;
    assert_eq!(
        (as_f64(&stored["price"]), as_f64(&stored["cost"])),
        (4.5, 2.9)
    );
    for field in ["price", "cost"] {
        let mut bad = item.clone();
        bad["identifier"] = json!(format!("Sophos_Bad_{field}"));
        bad[field] = json!("4.50");
        let response = cw.post("procurement/catalog", &bad).send().await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let body = json(response).await;
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        assert_eq!(body["errors"][0]["code"], "InvalidField", "{body}");
    }
    let refused = sim
        .collection("catalog")
        .into_iter()
        .filter(|c| c["identifier"].as_str().unwrap().starts_with("Sophos_Bad"))
        .count();
    assert_eq!(refused, 0, "a refused item is not stored");
    // Left out, both are 0, as ConnectWise defaults them.
    let bare = json!({"identifier": "Sophos_Bare", "description": "Bare", "customerDescription": "c",
                      "type": {"id": 11}, "subcategory": {"id": 31}});
    let created = json(cw.post("procurement/catalog", &bare).send().await.unwrap()).await;
    assert_eq!(
        (as_f64(&created["price"]), as_f64(&created["cost"])),
        (0.0, 0.0)
    );
}

#[tokio::test]
async fn patch_quantity_with_bare_and_slash_paths_recomputes_billed_quantity() {
    let (_sim, cw) = demo().await;
    for (path, quantity) in [("quantity", 45), ("/quantity", 46)] {
        let ops = json!([{"op": "replace", "path": path, "value": quantity}]);
        let response = cw
            .patch("finance/agreements/202/additions/301", &ops)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = json(response).await;
        assert_eq!(body["quantity"], quantity);
        assert_eq!(as_f64(&body["billedQuantity"]), quantity as f64);
    }
    let stored = cw.get_ok("finance/agreements/202/additions/301").await;
    assert_eq!(stored["quantity"], 46);
    let bad = cw.patch(
        "finance/agreements/202/additions/301",
        &json!([{"op": "jump", "path": "quantity"}]),
    );
    assert_eq!(bad.send().await.unwrap().status(), 400);
    let not_array = cw.patch(
        "finance/agreements/202/additions/301",
        &json!({"quantity": 1}),
    );
    assert_eq!(not_array.send().await.unwrap().status(), 400);
    let bad_value = cw.patch(
        "finance/agreements/202/additions/301",
        &json!([{"op": "replace", "path": "billCustomer", "value": "Maybe"}]),
    );
    assert_eq!(bad_value.send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn patching_the_product_redefaults_catalog_fields() {
    let (_sim, cw) = demo().await;
    let item = json!({"identifier": "Sophos_MDR", "description": "MDR Complete", "customerDescription": "c",
                      "type": {"id": 11}, "subcategory": {"id": 31}, "price": 9.0});
    let new_id =
        json(cw.post("procurement/catalog", &item).send().await.unwrap()).await["id"].clone();
    let ops = json!([{"op": "replace", "path": "product", "value": {"id": new_id}}]);
    let body = json(
        cw.patch("finance/agreements/202/additions/301", &ops)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["product"]["identifier"], "Sophos_MDR");
    assert_eq!(body["description"], "MDR Complete");
    assert_eq!(as_f64(&body["unitPrice"]), 9.0);
}

#[tokio::test]
async fn put_replaces_and_delete_removes() {
    let (_sim, cw) = demo().await;
    let put = cw
        .put("finance/agreements/202/additions/301", &addition_body(8))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let body = json(put).await;
    assert_eq!(
        (body["id"].as_i64(), body["quantity"].as_i64()),
        (Some(301), Some(8))
    );
    let incomplete = cw.put(
        "finance/agreements/202/additions/301",
        &json!({"product": {"id": 901}}),
    );
    assert_eq!(incomplete.send().await.unwrap().status(), 400);

    let deleted = cw
        .delete("finance/agreements/202/additions/301")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        cw.get("finance/agreements/202/additions/301")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        cw.delete("finance/agreements/202/additions/301")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn company_identifiers_are_unique() {
    let (_sim, cw) = demo().await;
    let body = post_error(
        &cw,
        "company/companies",
        &json!({"identifier": "acmeltd", "name": "Another Acme"}),
    )
    .await;
    assert_eq!(body["errors"][0]["code"], "ObjectExists");
    assert_eq!(body["errors"][0]["message"], "Company ID already in use.");
    let fresh = cw
        .post(
            "company/companies",
            &json!({"identifier": "NewCo", "name": "New Co"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 201);
}

// ------------------------------------------------------------------ catalog setup references

#[tokio::test]
async fn subcategories_are_scoped_by_category_and_inactive_records_are_listed() {
    let (_sim, cw) = demo().await;
    let listed = |path: &'static str, conditions: &'static str| {
        let request = cw.get(path).query(&[("conditions", conditions)]);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{conditions}");
            json(response).await
        }
    };
    let sub = "procurement/subcategories";
    // "Endpoint" is under Security and under Hardware, and once more (inactive) under Security.
    assert_eq!(ids(&listed(sub, r#"name="Endpoint""#).await), [31, 32, 37]);
    let scoped = listed(sub, r#"category/id=21 and name="endpoint""#).await;
    assert_eq!(ids(&scoped), [31, 37]);
    assert_eq!(scoped[1]["inactiveFlag"], true);
    let active = r#"category/id=21 and name="Endpoint" and inactiveFlag=false"#;
    assert_eq!(ids(&listed(sub, active).await), [31]);
    let types = listed("procurement/types", r#"name="Software""#).await;
    assert_eq!(ids(&types), [11, 13]);
}

fn catalog_body(type_id: i64, category_id: i64, subcategory_id: i64, unit_id: i64) -> Value {
    json!({"identifier": "Sophos_X", "description": "d", "customerDescription": "c",
           "type": {"id": type_id}, "category": {"id": category_id},
           "subcategory": {"id": subcategory_id}, "unitOfMeasure": {"id": unit_id}})
}

#[tokio::test]
async fn catalog_create_refuses_inactive_and_mismatched_references() {
    let (sim, cw) = demo().await;
    let cases = [
        (
            catalog_body(13, 21, 31, 41),
            "type",
            r#"The type "Software" (id 13) is inactive"#,
        ),
        (
            catalog_body(11, 21, 32, 41),
            "subcategory",
            r#"The subcategory "Endpoint" (id 32) does not belong to the category "Security" (id 21)."#,
        ),
        (
            catalog_body(11, 21, 37, 41),
            "subcategory",
            "(id 37) is inactive",
        ),
        (
            catalog_body(11, 21, 31, 43),
            "unitOfMeasure",
            "(id 43) is inactive",
        ),
        (
            catalog_body(11, 25, 31, 41),
            "category",
            "(id 25) is inactive",
        ),
    ];
    for (body, field, message) in cases {
        let err = post_error(&cw, "procurement/catalog", &body).await;
        assert_eq!(err["code"], "InvalidObject", "{field}: {err}");
        let problems = err["errors"].as_array().unwrap();
        let hit = problems.iter().find(|e| e["field"] == field);
        let hit = hit.unwrap_or_else(|| panic!("{field} in {err}"));
        assert_eq!(hit["code"], "InvalidField");
        assert_eq!(hit["resource"], "catalogItem");
        assert!(hit["message"].as_str().unwrap().contains(message), "{err}");
    }
    // Nothing was written; a fitting set of references is accepted.
    assert_eq!(sim.collection("catalog").len(), 1);
    let response = cw
        .post("procurement/catalog", &catalog_body(11, 21, 31, 41))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    assert_eq!(created["subcategory"]["id"], 31);
    assert_eq!(created["category"]["id"], 21);
    assert_eq!(sim.collection("catalog").len(), 2);
}

// ------------------------------------------------------------------ additions by agreement

const AGREEMENTS: i64 = 40;

/// The demo plus [`AGREEMENTS`] agreements (ids 5000…) whose 400 additions are
/// interleaved in the collection: agreement `5000 + k % 40` has addition `10000 + k`.
fn many_agreements() -> Scenario {
    let mut scenario = Scenario::demo();
    let cw = &mut scenario.connectwise;
    let agreement = cw.agreements[0].clone();
    let addition = cw.additions[0].clone();
    for a in 0..AGREEMENTS {
        let mut record = agreement.clone();
        record["id"] = json!(5000 + a);
        cw.agreements.push(record);
    }
    for k in 0..400 {
        let mut record = addition.clone();
        record["id"] = json!(10000 + k);
        record["agreementId"] = json!(5000 + k % AGREEMENTS);
        cw.additions.push(record);
    }
    scenario
}

/// Each agreement's list and count hold exactly the additions that name it in
/// the simulator's state, in id order.
async fn assert_each_list_is_its_own(sim: &Sim, cw: &Cw) {
    let all = sim.collection("additions");
    for agreement in 5000..5000 + AGREEMENTS {
        let mut own: Vec<i64> = all
            .iter()
            .filter(|a| a["agreementId"].as_i64() == Some(agreement))
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        own.sort_unstable();
        let path = format!("finance/agreements/{agreement}/additions");
        let listed = cw.get_ok(&format!("{path}?pageSize=1000")).await;
        let listed_ids: Vec<i64> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            listed_ids, own,
            "agreement {agreement}'s additions, in order"
        );
        let count = cw.get_ok(&format!("{path}/count")).await;
        assert_eq!(count["count"], own.len(), "agreement {agreement}'s count");
    }
}

#[tokio::test]
async fn each_agreement_lists_exactly_its_own_additions_through_every_kind_of_write() {
    let sim = Sim::start(many_agreements()).await.unwrap();
    let cw = Cw::new(&sim);
    assert_each_list_is_its_own(&sim, &cw).await;

    let created = json(
        cw.post("finance/agreements/5003/additions", &addition_body(2))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let created_id = created["id"].as_i64().unwrap();
    let path = format!("finance/agreements/5003/additions/{created_id}");
    assert_eq!(cw.get_ok(&path).await["id"], created_id);
    assert_eq!(
        cw.get(&format!("finance/agreements/5004/additions/{created_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "another agreement's addition is not found under this one"
    );
    let ops = json!([{"op": "replace", "path": "quantity", "value": 6}]);
    assert_eq!(cw.patch(&path, &ops).send().await.unwrap().status(), 200);
    assert_eq!(
        cw.delete("finance/agreements/5007/additions/10007")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    // A change made straight to the state (as tests do) is seen by the lists too.
    sim.with_state(|s| {
        let moved = s
            .collection_mut("additions")
            .iter_mut()
            .find(|a| a["id"] == 10010)
            .unwrap();
        moved["agreementId"] = json!(5011);
    });
    assert_each_list_is_its_own(&sim, &cw).await;
    let own_5003 = cw
        .get_ok("finance/agreements/5003/additions?pageSize=1000")
        .await;
    assert!(ids(&own_5003).contains(&created_id));
    let own_5011 = cw
        .get_ok("finance/agreements/5011/additions?pageSize=1000")
        .await;
    assert!(ids(&own_5011).contains(&10010));
}
